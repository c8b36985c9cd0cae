"""The HTTP edge from the outside, as an attacker on the venue LAN would try it: half-sent requests and
connection floods over raw sockets (bounded counts, loopback only), a foreign Host header (DNS rebinding),
framing, a foreign page opening the live feed, short tokens, the inputs that used to answer 500, a store
that cannot write, and what an anonymous reader learns about a host and port that never answered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from wmhub_shure.simulator import ShureSimulator

from hub.config import ConfigError, HttpSettings, load_config
from hub.devices import NO_ANSWER
from hub.testing import eventually
from tests.fault_harness import TOKEN, Api, hub_config, is_online, running_hub
from tests.mosquitto import free_port
from tests.reliability_report import record_check

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def hardened(tmp_path: Path, devices: list[str] | None = None, **http: Any) -> Any:
    return hub_config(tmp_path, devices or [], http=HttpSettings(port=0, token=TOKEN, **http))


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True once the hub closed (or reset) the connection; False if it was still open at the deadline."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def test_half_sent_requests_are_dropped(tmp_path: Path) -> None:
    """Connections that send part of a request's headers and then trickle or stop are closed after
    ``header_timeout_s``; the API answers throughout."""
    count = 40
    async with running_hub(hardened(tmp_path, header_timeout_s=1.0, max_connections_per_client=100)) as hub:
        port = hub.web.port
        streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]
        for index, (_, writer) in enumerate(streams):
            writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (b"X-a: b\r\n" if index % 2 else b""))
            await writer.drain()
        started = time.monotonic()
        async with Api(hub) as api:
            health = await api.get("/api/health")  # answered while the half requests are still open
        closed = await asyncio.gather(*(closed_by_server(reader, 10.0) for reader, _ in streams))
        seconds = round(time.monotonic() - started, 2)
        for _, writer in streams:
            writer.close()
        timed_out = hub.web.limits.timed_out
    record_check(
        "HTTP",
        f"{count} connections that send half a request's headers and stop (header_timeout_s = 1)",
        f"{sum(closed)} of {count} closed by the hub within {seconds} s; the API answered meanwhile",
    )
    assert health["status"] == "ok"
    assert all(closed) and timed_out >= count, (closed, timed_out)


async def test_connections_per_client_are_capped(tmp_path: Path) -> None:
    cap = 8
    async with running_hub(hardened(tmp_path, max_connections_per_client=cap)) as hub:
        port = hub.web.port
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(cap)]
        extra = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        refused = await asyncio.gather(*(closed_by_server(reader, 5.0) for reader, _ in extra))
        for _, writer in held:
            writer.close()
        await eventually(lambda: not hub.web.limits.open, 5, "the held connections released")
        async with Api(hub) as api:
            health = await api.get("/api/health")
    record_check(
        "HTTP",
        f"one client address opens {cap} idle connections, then 4 more (max_connections_per_client = {cap})",
        f"{sum(refused)} of 4 extra closed at once; served again once the others closed",
    )
    assert all(refused) and health["status"] == "ok"


async def raw_status(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            return (await reader.readline()).strip()
    finally:
        writer.close()


MALFORMED_REQUESTS = {
    "a byte beyond ASCII in the path": b"GET /api/v1/devices/\xc3\xa9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "a 9 KB header": b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"A" * 9000 + b"\r\n\r\n",
    "200 headers": b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    + b"".join(b"X-%d: a\r\n" % n for n in range(200))
    + b"\r\n",
    "two Host headers": b"GET /api/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "Content-Length with Transfer-Encoding": b"POST /api/v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "a GET body in br": b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: br\r\n"
    b"Content-Length: 1\r\n\r\nx",
    "a GET body in zstd": b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: zstd\r\n"
    b"Content-Length: 1\r\n\r\nx",
}


async def raw_answer(port: int, request: bytes) -> tuple[bytes, bytes, bytes]:
    """The status line, headers and body of the hub's answer to ``request`` (it closes the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status, _, headers = head.partition(b"\r\n")
    return status, headers.lower(), body


async def test_a_malformed_request_gets_the_json_error_and_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: requests the HTTP parser refuses were answered in aiohttp's plain text, which echoed
    the request's bytes, and each logged an error with a traceback ('Error handling request'), so anyone on
    the LAN could fill the hub's log. They get the API's JSON error now, and a debug line."""
    async with running_hub(hardened(tmp_path)) as hub:
        caplog.clear()
        answers = {case: await raw_answer(hub.web.port, request) for case, request in MALFORMED_REQUESTS.items()}
        async with Api(hub) as api:
            health = await api.get("/api/health")
    record_check(
        "HTTP",
        "malformed requests (" + ", ".join(MALFORMED_REQUESTS) + ")",
        "; ".join(f"{case}: {status.decode()}" for case, (status, _, _) in answers.items()),
    )
    for case, (status, headers, body) in answers.items():
        assert status.startswith(b"HTTP/1.1 400") or status.startswith(b"HTTP/1.0 400"), (case, status)
        assert b"content-type: application/json" in headers, (case, headers)
        assert orjson.loads(body) == {"error": "the request is not valid HTTP", "code": "bad_request", "details": None}
    noisy = [record for record in caplog.records if record.levelno > logging.DEBUG or record.exc_info]
    assert not noisy, [record.getMessage() for record in noisy]
    assert health["status"] == "ok"


async def test_host_header_must_name_this_hub(tmp_path: Path) -> None:
    async with running_hub(hardened(tmp_path, allowed_hosts=["wmhub.venue.lan"])) as hub:
        port = hub.web.port
        answers = {
            host: await raw_status(port, f"GET /api/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            for host in (
                "attacker.example",
                f"attacker.example:{port}",
                f"127.0.0.1:{port}",
                "localhost",
                f"[::1]:{port}",
                "wmhub.venue.lan",
                f"WMHUB.venue.lan.:{port}",
            )
        }
    record_check(
        "HTTP",
        "Host header naming another site (DNS rebinding), and the hub's own names",
        "; ".join(f"{host}: {status.decode()}" for host, status in answers.items()),
    )
    assert answers["attacker.example"].startswith(b"HTTP/1.1 421")
    assert answers[f"attacker.example:{port}"].startswith(b"HTTP/1.1 421")
    assert all(status.startswith(b"HTTP/1.1 200") for host, status in answers.items() if "attacker" not in host)


async def test_board_cannot_be_framed_and_live_feed_checks_origin(tmp_path: Path) -> None:
    async with running_hub(hardened(tmp_path)) as hub, aiohttp.ClientSession() as session:
        own = f"http://127.0.0.1:{hub.web.port}"
        base = own
        async with session.get(base + "/") as page:
            frame, policy = page.headers.get("X-Frame-Options"), page.headers.get("Content-Security-Policy")
        outcomes: dict[str, int] = {}
        # another service on this machine (a page of it, or one injected into it) is another site too
        neighbour = f"http://127.0.0.1:{hub.web.port + 1}"
        for origin in ("http://attacker.example", neighbour, own, None):
            headers = {"Origin": origin} if origin else {}
            try:
                async with session.ws_connect(base + "/api/v1/live", headers=headers) as live:
                    await live.receive_json(timeout=5)
                    outcomes[origin or "no Origin"] = 101
            except aiohttp.WSServerHandshakeError as exc:
                outcomes[origin or "no Origin"] = exc.status
    record_check(
        "HTTP",
        "the board in a frame; the live feed opened with a foreign, a neighbour's, our own, and no Origin",
        f"X-Frame-Options {frame}, CSP {policy}; live feed: "
        + ", ".join(f"{origin} -> {status}" for origin, status in outcomes.items()),
    )
    assert frame == "DENY" and policy == "frame-ancestors 'none'"
    assert outcomes == {"http://attacker.example": 403, neighbour: 403, own: 101, "no Origin": 101}


def test_a_short_hand_set_token_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(None, {"http": {"token": "Sh0rtT0ken"}}, {})
    message = str(refused.value)
    record_check("HTTP", "http.token set by hand to 10 characters", f"refused: {message}")
    assert "http.token" in message and "16" in message and "Sh0rtT0ken" not in message


async def test_inputs_that_answered_500_are_refused(tmp_path: Path) -> None:
    async with ShureSimulator("ulxd4d") as sim, running_hub(hardened(tmp_path, [sim.url])) as hub:
        await eventually(lambda: is_online(hub, sim.url), 10, "device online")
        channel = f"{next(iter(hub.store.devices))}:1"
        base = f"http://127.0.0.1:{hub.web.port}"
        cases = {
            "extended name with a NUL": ("PUT", f"/api/v1/channels/{channel}/extended-name", {"name": "Vox\u0000"}),
            "extended name with a newline": ("PUT", f"/api/v1/channels/{channel}/extended-name", {"name": "a\nb"}),
            "alert id 2**63": ("POST", "/api/v1/alerts/9223372036854775808/acknowledge", {}),
            'acknowledged {"by": "a\\u0000"}': ("POST", "/api/v1/alerts/1/acknowledge", {"by": "a\u0000"}),
            "location name with an escape": ("POST", "/api/v1/locations", {"name": "\x1b[2J", "kind": "room"}),
        }
        statuses: dict[str, int] = {}
        async with aiohttp.ClientSession(headers=AUTH) as session:
            for case, (method, path, body) in cases.items():
                async with session.request(method, base + path, json=body) as response:
                    statuses[case] = response.status
            async with session.get(base + "/api/v1/audit") as response:
                audit = await response.text()
    record_check(
        "REST", "inputs that answered 500", "; ".join(f"{case}: {status}" for case, status in statuses.items())
    )
    assert statuses.pop("alert id 2**63") == 404
    assert set(statuses.values()) == {422}, statuses  # refused before any lookup
    assert "\\u0000" not in audit


async def test_health_says_degraded_while_the_database_cannot_be_written(tmp_path: Path) -> None:
    """A database another program holds locked (a file that is not a database is set aside and replaced at
    start instead): the hub monitors on, holding changes in memory, and says so."""
    holder = sqlite3.connect(tmp_path / "wmhub.sqlite3", isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        async with running_hub(hardened(tmp_path)) as hub, Api(hub) as api:
            async with api.session.get(api.base + "/api/health") as response:
                health_status, health = response.status, await response.json()
            status, _ = await api.post("/api/v1/locations", {"name": "Stage left", "kind": "room"})
            async with api.session.get(api.base + "/metrics") as response:
                lines = (await response.text()).splitlines()
                metric = next(line for line in lines if line.startswith("wmhub_database_w"))
    finally:
        holder.close()
    record_check(
        "Storage",
        "database file unwritable (locked by another program) while the hub runs",
        f"health {health['status']}, {metric}, a new location answered {status}",
    )
    assert health["status"] == "degraded" and metric == "wmhub_database_writable 0.0" and status == 202
    assert health_status == 200  # as docs/api.md says: a monitor keyed on the HTTP code alone sees nothing


@contextlib.asynccontextmanager
async def never_identifying_port(answer: bytes | None) -> Any:
    """A port that accepts connections and never identifies as a device: it says nothing (``answer`` None),
    or answers whatever it is sent with ``answer``."""
    accepted: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


def series_of(metrics: str, url: str) -> dict[str, float]:
    """The per-device series /metrics serves for ``url``, by family name."""
    label = f'{{url="{url}"}} '
    return {line.partition("{")[0]: float(line.rpartition(" ")[2]) for line in metrics.splitlines() if label in line}


async def test_a_closed_port_a_silent_one_and_one_answering_junk_read_alike_without_the_token(
    tmp_path: Path,
) -> None:
    """An outside audit: without the token, /metrics counted protocol errors only for the port that answered
    junk, /api/health's attempts and reconnects grew fast only for the closed port, and last_error was null
    only while an open port held the first attempt: a port scanner for anyone on the LAN."""
    junk = b"< REP garbage ??? >\r\nHTTP/1.0 400 Bad Request\r\n\r\n"
    async with never_identifying_port(None) as silent, never_identifying_port(junk) as answering:
        urls = {
            "closed port": f"shure://127.0.0.1:{free_port()}",
            "silent open port": f"shure://127.0.0.1:{silent}",
            "open port answering junk": f"shure://127.0.0.1:{answering}",
        }
        async with running_hub(hardened(tmp_path)) as hub, Api(hub) as api:
            for url in urls.values():
                assert (await api.post("/api/v1/devices", {"url": url}))[0] == 201

            async def read(path: str, headers: dict[str, str]) -> Any:
                async with api.session.get(api.base + path, headers=headers) as response:
                    return await (response.json() if path == "/api/health" else response.text())

            async def views(headers: dict[str, str]) -> dict[str, dict[str, Any]]:
                """Per port: its /api/health connection, and its /metrics series under "metrics"."""
                connections = (await read("/api/health", headers))["connections"]
                metrics = await read("/metrics", headers)
                return {
                    name: {
                        **{k: v for k, v in next(c for c in connections if c["url"] == url).items() if k != "url"},
                        "metrics": series_of(metrics, url),
                    }
                    for name, url in urls.items()
                }

            first = await views({})  # the silent port still holds its first attempt

            async def each_told_itself_apart() -> bool:
                detailed = await views(AUTH)
                return (
                    detailed["closed port"]["reconnects"] >= 2
                    and detailed["silent open port"]["attempts"] >= 1
                    and detailed["open port answering junk"]["metrics"]["wmhub_device_protocol_errors_total"] > 0
                )

            deadline = time.monotonic() + 20
            while not await each_told_itself_apart():
                assert time.monotonic() < deadline, "the token holder saw no retry and no junk within 20 s"
                await asyncio.sleep(0.1)
            anonymous, detailed = await views({}), await views(AUTH)
    alike = {
        "device_id": None,
        "plugin": "shure",
        "connected": False,
        "connected_since": None,
        "attempts": 0,
        "reconnects": 0,
        "last_error": NO_ANSWER,
        "metrics": {
            "wmhub_device_connected": 0.0,
            "wmhub_device_connection_attempts_total": 0.0,
            "wmhub_device_reconnects_total": 0.0,
            "wmhub_device_protocol_errors_total": 0.0,
        },
    }
    differing = {name: view for name, view in anonymous.items() if view != alike}
    record_check(
        "Disclosure",
        "/api/health and /metrics without the token on device URLs at a closed port, an open port that never "
        "answers and an open port that answers junk",
        f"all three read connected False, attempts, reconnects and every per-device series 0, last_error {NO_ANSWER!r}"
        if not differing
        else f"DIFFER: {differing}",
    )
    assert [view["last_error"] for view in first.values()] == [NO_ANSWER] * 3, first
    assert not differing, differing
    # the token holder sees why, and how often
    assert detailed["closed port"]["last_error"] != NO_ANSWER
    assert detailed["closed port"]["metrics"]["wmhub_device_reconnects_total"] >= 2
    assert detailed["open port answering junk"]["metrics"]["wmhub_device_protocol_errors_total"] > 0
