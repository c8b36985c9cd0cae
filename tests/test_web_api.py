"""REST API: every endpoint over real HTTP against a real Hub, good input and bad."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from hub import hookimpl
from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.drivers import DeviceSink, Driver, DriverSettings, Endpoint
from hub.hookspecs import Candidate, DriverSpec
from hub.model import Command, CommandKind, CommandResult, InvalidValueError, NotSupportedError
from hub.plugins import PluginHost
from hub.testing import eventually
from hub.web import routing
from hub.web.metrics import device_series
from tests.mosquitto import MqttProbe, TestBroker

TOKEN = "test-token-123-rest"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class BenchReceiver(Driver):
    """A two-channel receiver living in the test process, driven through the real device path."""

    async def connect(self) -> None:
        self.sink.identify(unique_id=self.endpoint.host, family="bench", model="BR-2", channel_count=2, name="Rack A")
        self.sink.update_channel(1, {"name": "Vox 1", "battery_bars": 4, "tx_present": True, "frequency_mhz": 560.1})
        self.sink.update_channel(2, {"name": "Vox 2", "battery_bars": 1, "tx_present": True})

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None

    async def apply(self, command: Command) -> CommandResult:
        if command.kind == CommandKind.NAME and command.channel is not None:
            if not isinstance(command.value, str) or len(command.value) > 8:
                raise InvalidValueError("names are 1-8 characters")
            self.sink.update_channel(command.channel, {"name": command.value})
            return CommandResult(ok=True, value=command.value)
        raise NotSupportedError(f"bench receivers have no {command.kind.value} control")


class BenchPlugin:
    @hookimpl
    def register_drivers(self, register: Any) -> None:
        def factory(endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> Driver:
            return BenchReceiver(endpoint, sink, settings)

        register(DriverSpec(scheme="bench", vendor="bench", families=("bench",), factory=factory, default_port=1))


def make_hub(data_dir: Path, mqtt_url: str = "off", **http: Any) -> Hub:
    config = HubConfig(
        hub_id="webtest",
        data_dir=data_dir,
        mqtt=MqttSettings(url=mqtt_url),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(host="127.0.0.1", port=0, **http),
    )
    plugins = PluginHost()
    plugins.register(BenchPlugin(), "bench")
    return compose_hub(config, plugins)


@contextlib.asynccontextmanager
async def serving(data_dir: Path, **http: Any) -> AsyncIterator[tuple[Hub, aiohttp.ClientSession]]:
    async with make_hub(data_dir, **http) as hub, client(hub) as session:
        yield hub, session


def client(hub: Hub) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", timeout=aiohttp.ClientTimeout(total=10))


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with make_hub(tmp_path, token=TOKEN) as running:
        await running.add_device("bench://rack-a", source="test")
        await eventually(lambda: running.store.get("bench-rack-a"), what="bench device")
        yield running


@pytest.fixture
async def http(hub: Hub) -> AsyncIterator[aiohttp.ClientSession]:
    async with client(hub) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    async with http.request(method, path, **kwargs) as response:
        assert "X-Response-Time" in response.headers
        body = await response.json() if response.content_type == "application/json" else await response.text()
        assert response.status == expect, body
        if expect >= 400:
            assert set(body) == {"error", "code", "details"} and body["error"], body
        return body


async def test_rest_writes_times_as_mqtt_does(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """An outside audit: REST wrote a channel's updated_at as `...Z`, MQTT the same instant as `...+00:00` (as
    docs/api.md and docs/mqtt.md show), so a consumer of both saw one time written two ways."""
    async with make_hub(tmp_path, mqtt_url=mqtt_broker.url) as running, client(running) as http:
        async with MqttProbe(mqtt_broker) as probe:
            topic = "wmhub/devices/bench-rack-a/channels/1"
            await probe.subscribe(topic)
            await running.add_device("bench://rack-a", source="test")
            on_mqtt = await probe.json(topic, lambda channel: channel["updated_at"] is not None)
        on_rest = await call(http, "GET", "/api/v1/channels/bench-rack-a:1", 200)
        assert on_rest["updated_at"] == on_mqtt["updated_at"]
        assert on_rest["updated_at"].endswith("+00:00")
        device = await call(http, "GET", "/api/v1/devices/bench-rack-a", 200)
        assert device["last_seen"].endswith("+00:00")
        assert device["channels"][0]["updated_at"] == on_mqtt["updated_at"]


async def test_device_list_has_model_fields_and_channels(http: aiohttp.ClientSession) -> None:
    body = await call(http, "GET", "/api/v1/devices", 200)
    assert body["total"] == 1
    device = body["items"][0]
    assert device["id"] == "bench-rack-a" and device["online"] is True and device["name"] == "Rack A"
    assert [ch["id"] for ch in device["channels"]] == ["bench-rack-a:1", "bench-rack-a:2"]
    assert device["channels"][0]["battery_bars"] == 4 and device["channels"][0]["rf_dbm"] is None
    assert device["connection"]["connected"] is True


async def test_device_list_filters_and_pages(hub: Hub, http: aiohttp.ClientSession) -> None:
    await hub.add_device("bench://rack-b", source="test")
    await eventually(lambda: hub.store.get("bench-rack-b"), what="second device")
    hub.store.update_channel("bench-rack-b", 2, {"battery_bars": 5})
    page = await call(http, "GET", "/api/v1/devices?limit=1&offset=1", 200)
    assert page["total"] == 2 and [d["id"] for d in page["items"]] == ["bench-rack-b"]
    low = await call(http, "GET", "/api/v1/devices?low_battery=true", 200)
    assert [d["id"] for d in low["items"]] == ["bench-rack-a"]
    assert (await call(http, "GET", "/api/v1/devices?vendor=shure", 200))["total"] == 0
    assert (await call(http, "GET", "/api/v1/devices?online=false", 200))["total"] == 0
    channels = await call(http, "GET", "/api/v1/channels?low_battery=true", 200)
    assert [c["id"] for c in channels["items"]] == ["bench-rack-a:2"]


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "offset=-1", "online=maybe", "limit=5000"])
async def test_bad_list_query_is_422(http: aiohttp.ClientSession, query: str) -> None:
    body = await call(http, "GET", f"/api/v1/devices?{query}", 422)
    assert body["code"] == "invalid_query" and body["details"]


async def test_device_and_channel_by_id(http: aiohttp.ClientSession) -> None:
    assert (await call(http, "GET", "/api/v1/devices/bench-rack-a", 200))["model"] == "BR-2"
    channel = await call(http, "GET", "/api/v1/channels/bench-rack-a:1", 200)
    assert channel["name"] == "Vox 1" and channel["device_id"] == "bench-rack-a"
    for path in ("/api/v1/devices/nope", "/api/v1/channels/bench-rack-a:9", "/api/v1/channels/bench-rack-a:x"):
        assert (await call(http, "GET", path, 404))["code"] == "not_found"
    # as docs/api.md quotes it (an outside audit: the hint came before "not found")
    for ref in ("bench-rack-a:9", "no-index"):
        missing = await call(http, "GET", f"/api/v1/channels/{ref}", 404)
        assert missing["error"] == f"channel '{ref}' not found (ids look like '<device_id>:<index>')"
    # digits int() cannot read: a superscript two, 5,000 nines
    for index in ("\u00b2", "9" * 5000):
        assert (await call(http, "GET", f"/api/v1/channels/bench-rack-a:{index}", 404))["code"] == "not_found"
    suggest = {"channel": "bench-rack-a:\u00b2"}
    await call(http, "POST", "/api/v1/frequency-plan/suggest", 404, json=suggest, headers=AUTH)


async def test_head_answers_where_get_does(http: aiohttp.ClientSession) -> None:
    """Uptime checkers ask with HEAD."""
    for path in ("/api/health", "/api/v1/devices", "/api/v1/channels/bench-rack-a:1"):
        async with http.head(path) as response:
            assert response.status == 200 and response.content_type == "application/json", path


async def test_channel_rename_reaches_the_device(hub: Hub, http: aiohttp.ClientSession) -> None:
    body = await call(
        http,
        "POST",
        "/api/v1/channels/bench-rack-a:1/commands",
        200,
        json={"kind": "name", "value": "Lead"},
        headers=AUTH,
    )
    assert body == {"ok": True, "value": "Lead", "error": None, "code": None}
    device = hub.store.get("bench-rack-a")
    assert device is not None and device.channel(1) is not None and device.channel(1).name == "Lead"  # type: ignore[union-attr]
    # the audit found by the channel's id as the API writes it, as by the device's (which also finds the
    # device's own entries under its URL: its device.add)
    for target, actions in (("bench-rack-a:1", ["command.name"]), ("bench-rack-a", ["command.name", "device.add"])):
        entries = (await call(http, "GET", f"/api/v1/audit?target={target}", 200))["items"]
        assert [entry["action"] for entry in entries] == actions, target
        assert entries[0]["target"] == "bench-rack-a/1"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/api/v1/channels/bench-rack-a:1/commands", {"kind": "name", "value": "far too long"}, 422, "invalid"),
        ("/api/v1/channels/bench-rack-a:1/commands", {"kind": "frequency", "value": 560.0}, 409, "not_supported"),
        ("/api/v1/devices/bench-rack-a/commands", {"kind": "identify"}, 409, "not_supported"),
        ("/api/v1/channels/bench-rack-a:1/commands", {"kind": "explode"}, 422, "invalid_body"),
        ("/api/v1/channels/bench-rack-a:1/commands", {"kind": "mute", "value": [1]}, 422, "invalid_body"),
        ("/api/v1/channels/bench-rack-a:1/commands", {"kind": "mute", "extra": 1}, 422, "invalid_body"),
        ("/api/v1/channels/bench-rack-a:7/commands", {"kind": "mute", "value": True}, 404, "not_found"),
        ("/api/v1/devices/ghost/commands", {"kind": "identify"}, 404, "not_found"),
    ],
)
async def test_failed_commands_map_to_status(
    http: aiohttp.ClientSession, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    assert (await call(http, "POST", path, status, json=body, headers=AUTH))["code"] == code


async def test_a_body_of_thousands_of_unknown_keys_is_answered_in_a_few_kilobytes(http: aiohttp.ClientSession) -> None:
    """A security audit, on MQTT's set: a 64 KB message of 6,500 unknown keys was answered at twice its size.
    REST listed each in ``details``, seven times the body's size: it lists the first few and counts them all."""
    body = orjson.dumps({"kind": "mute", "value": True, **{f"k{n}": 0 for n in range(6500)}})
    path = "/api/v1/channels/bench-rack-a:1/commands"
    async with http.post(path, data=body, headers={**AUTH, "Content-Type": "application/json"}) as response:
        assert response.status == 422
        raw = await response.read()
    answer = orjson.loads(raw)
    assert answer["code"] == "invalid_body" and answer["error"] == (
        "the request body is not valid (6500 problems, the first 20 in details)"
    )
    assert [problem["loc"] for problem in answer["details"]] == [[f"k{n}"] for n in range(20)]
    assert len(body) > 60_000 and len(raw) < 4096


async def test_command_on_offline_device_is_503(hub: Hub, http: aiohttp.ClientSession) -> None:
    hub.store.set_online("bench-rack-a", False)
    body = await call(
        http, "POST", "/api/v1/devices/bench-rack-a/commands", 503, json={"kind": "identify"}, headers=AUTH
    )
    assert body["code"] == "unavailable" and body["details"]["ok"] is False


async def test_body_that_is_not_json_is_400(http: aiohttp.ClientSession) -> None:
    body = await call(http, "POST", "/api/v1/devices", 400, data=b"{nope", headers=AUTH)
    assert body["code"] == "bad_json"


@pytest.mark.parametrize(
    "path",
    ["/api/v1/devices", "/api/v1/performers", "/api/v1/locations", "/api/v1/channels/bench-rack-a:1/commands"],
)
async def test_a_deeply_nested_body_is_400_not_json(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """An outside audit: 4 KB of nested brackets (far below the body limit) answered 500 and logged a
    RecursionError traceback on every write."""
    nested = b"[" * 2000 + b"]" * 2000
    body = await call(http, "POST", path, 400, data=nested, headers={**AUTH, "Content-Type": "application/json"})
    assert body["code"] == "bad_json"
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_stalled_body_is_answered_408_instead_of_holding_the_handler(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routing, "BODY_TIMEOUT_S", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.web.port)
    try:
        writer.write(
            b"POST /api/v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b'\r\nContent-Length: 100\r\n\r\n{"url": '
        )
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read(4096)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"code":"body_timeout"' in answer


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/devices"),
        ("DELETE", "/api/v1/devices/bench-rack-a"),
        ("POST", "/api/v1/devices/bench-rack-a/commands"),
        ("POST", "/api/v1/channels/bench-rack-a:1/commands"),
        ("POST", "/api/v1/candidates/approve"),
        ("PUT", "/api/v1/channels/bench-rack-a:1/extended-name"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
async def test_writes_need_the_token(
    hub: Hub, http: aiohttp.ClientSession, method: str, path: str, headers: dict[str, str]
) -> None:
    body = await call(http, method, path, 401, json={"kind": "identify", "url": "bench://x"}, headers=headers)
    assert body["code"] == "unauthorized"
    assert "bench-rack-a" in hub.store.devices and "bench://x" not in hub.devices.by_url


async def test_extended_name_set_and_cleared(hub: Hub, http: aiohttp.ClientSession) -> None:
    path = "/api/v1/channels/bench-rack-a:2/extended-name"
    body = await call(http, "PUT", path, 200, json={"name": " Pastor Jim "}, headers=AUTH)
    assert body["extended_name"] == "Pastor Jim" and body["name"] == "Vox 2"
    listed = await call(http, "GET", "/api/v1/channels/bench-rack-a:2", 200)
    assert listed["extended_name"] == "Pastor Jim"
    assert (await call(http, "PUT", path, 200, json={"name": None}, headers=AUTH))["extended_name"] is None
    assert (await call(http, "PUT", path, 422, json={"name": 7}, headers=AUTH))["code"] == "invalid_body"
    assert (await call(http, "PUT", path, 422, json={"name": "x" * 65}, headers=AUTH))["code"] == "invalid_body"
    missing = "/api/v1/channels/bench-rack-a:3/extended-name"
    assert (await call(http, "PUT", missing, 404, json={"name": "A"}, headers=AUTH))["code"] == "not_found"


async def test_a_password_with_quotes_and_commas_is_masked_whole(hub: Hub, http: aiohttp.ClientSession) -> None:
    """The driver reads everything up to the next ``&`` as the password (parse_qsl): so does the mask."""
    url = 'bench://rack-q?password=Tr0ub",horse)LEAKED-TAIL&user=api'
    added = await call(http, "POST", "/api/v1/devices", 201, json={"url": url}, headers=AUTH)
    assert added["url"] == "bench://rack-q?password=***&user=api"
    await eventually(lambda: hub.store.get("bench-rack-q"), what="the device")
    shown = [await call(http, "GET", path, 200) for path in ("/api/v1/devices", "/api/health", "/api/v1/audit")]
    shown.append(await call(http, "GET", "/metrics", 200))
    assert "LEAKED-TAIL" not in str(shown) and "horse" not in str(shown)
    audit = shown[2]["items"]
    assert audit[0]["action"] == "device.add" and audit[0]["target"] == "bench://rack-q?password=***&user=api"


# Passwords as people type them into a URL: the driver would read a different password (parse_qsl ends a
# value at '&', urlsplit at '#', and reads '+' as a space), and no mask can tell where they end in a log line.
AMBIGUOUS_PASSWORDS = ("Sec ret+Plus9!", "Secret#HashPart9", "Secret&AmpPart9", "Plus+Part9")


@pytest.mark.parametrize("password", AMBIGUOUS_PASSWORDS)
async def test_a_password_a_url_would_cut_or_change_is_refused_without_repeating_it(
    hub: Hub, http: aiohttp.ClientSession, password: str
) -> None:
    url = f"bench://rack-p?user=api&password={password}"
    refused = await call(http, "POST", "/api/v1/devices", 422, json={"url": url}, headers=AUTH)
    assert "%23" in refused["error"] and "%2B" in refused["error"], refused
    shown = [await call(http, "GET", path, 200) for path in ("/api/v1/devices", "/api/health", "/api/v1/audit")]
    for piece in ("Part9", "Plus9", "ret", "Secret"):
        assert piece not in str(refused) + str(shown), (piece, refused)
    assert hub.store.get("bench-rack-p") is None
    encoded = "bench://rack-p?user=api&password=" + password.replace("%", "%25").replace("#", "%23").replace(
        "&", "%26"
    ).replace("+", "%2B").replace(" ", "%20")
    assert (await call(http, "POST", "/api/v1/devices", 201, json={"url": encoded}, headers=AUTH))["url"] == (
        "bench://rack-p?user=api&password=***"
    )


async def test_add_and_remove_device(hub: Hub, http: aiohttp.ClientSession) -> None:
    added = await call(http, "POST", "/api/v1/devices", 201, json={"url": "bench://rack-c"}, headers=AUTH)
    assert added["url"] == "bench://rack-c"
    await eventually(lambda: hub.store.get("bench-rack-c"), what="added device online")
    assert await call(http, "POST", "/api/v1/devices", 200, json={"url": "bench://rack-c"}, headers=AUTH)
    assert await call(http, "DELETE", "/api/v1/devices/bench-rack-c", 204, headers=AUTH) == ""
    assert hub.store.get("bench-rack-c") is None
    await call(http, "DELETE", "/api/v1/devices/bench-rack-c", 404, headers=AUTH)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://10.0.0.1"}, "invalid_url"),
        ({"url": "bench://["}, "invalid_url"),
        ({"url": "bench://rack-z:0"}, "invalid_url"),
        # an outside audit: hosts no name or address can be were taken, and retried for ever
        ({"url": "bench://10.0.0.5 10.0.0.6"}, "invalid_url"),
        ({"url": "bench://10.0.0.5,10.0.0.6"}, "invalid_url"),
        ({"url": 'bench://"quoted"'}, "invalid_url"),
        ({"url": "bench://x<img src=x onerror=alert(1)>"}, "invalid_url"),
        ({"url": "bench://-rack"}, "invalid_url"),
        ({"url": "bench://rack..z"}, "invalid_url"),
        ({"url": "bench://10.0.0.300"}, "invalid_url"),
        ({"url": "bench://" + "a" * 64}, "invalid_url"),
        # an outside audit: addresses no receiver has were taken and sent to for ever (0.0.0.0 reaches this
        # machine; a UDP family flooded a multicast group, mDNS's with 224.0.0.251)
        ({"url": "bench://0.0.0.0"}, "invalid_url"),
        ({"url": "bench://[::]:2202"}, "invalid_url"),
        ({"url": "bench://224.0.0.251"}, "invalid_url"),
        ({"url": "bench://[ff02::1]"}, "invalid_url"),
        ({"url": "bench://255.255.255.255"}, "invalid_url"),
        ({"url": "bench://[::ffff:0.0.0.0]"}, "invalid_url"),
        ({"url": "10.0.0.1"}, "invalid_body"),
        ({"url": 5}, "invalid_body"),
        ({}, "invalid_body"),
    ],
)
async def test_add_device_bad_input(http: aiohttp.ClientSession, body: dict[str, Any], code: str) -> None:
    assert (await call(http, "POST", "/api/v1/devices", 422, json=body, headers=AUTH))["code"] == code


@pytest.mark.parametrize(
    "url",
    [
        "bench://10.0.0.5",
        "bench://[fe80::1%25eth0]:2202",
        "bench://Rack-A.venue.lan.",
        "bench://xn--bcher-kva",
        "bench://rx_foh",  # a re-audit: names with '_' resolve (/etc/hosts, Docker) and were refused
    ],
)
async def test_a_device_url_with_an_address_or_a_host_name_is_taken(http: aiohttp.ClientSession, url: str) -> None:
    assert (await call(http, "POST", "/api/v1/devices", 201, json={"url": url}, headers=AUTH))["url"] == url


CONTROL_URLS = (
    "bench://rack-q?id=\x1b]0;PWNED\x07\x1b[2J\n12:00:00 ERROR hub: forged line",
    "bench://rack-q?id=a\tb",
    "bench://rack-q?id=a\x7f",
    "bench://rack-q?id=a\x9b31m",
    "bench://rack-q\r\n",
    "bench://rack\x00-q",
)


@pytest.mark.parametrize("url", CONTROL_URLS)
async def test_a_device_url_with_a_control_character_is_refused_and_shown_nowhere(
    hub: Hub, http: aiohttp.ClientSession, url: str
) -> None:
    """An ESC sequence or a line break in a device URL would reach the terminal log, /metrics and
    /api/health raw (a forged log line, a retitled terminal), and come back after every restart."""
    refused = await call(http, "POST", "/api/v1/devices", 422, json={"url": url}, headers=AUTH)
    assert refused["code"] == "invalid_url" and "control characters" in refused["error"], refused
    shown = [await call(http, "GET", path, 200) for path in ("/api/v1/devices", "/api/health", "/metrics")]
    assert "rack-q" not in str(refused) + str(shown)
    assert not any(known.url.startswith("bench://rack-q") for known in hub.persistence.devices.all())


async def test_a_remembered_device_url_no_longer_taken_is_skipped_at_start(tmp_path: Path) -> None:
    """A URL stored by a version that took control characters in it does not stop the hub from starting."""
    async with make_hub(tmp_path, token=TOKEN) as running:
        await running.add_device("bench://rack-r", source="test")
    with contextlib.closing(sqlite3.connect(tmp_path / "wmhub.sqlite3")) as db, db:
        db.execute("UPDATE known_devices SET url = ? WHERE url = ?", ("bench://rack-r?id=\x1b[2J", "bench://rack-r"))
    async with make_hub(tmp_path, token=TOKEN) as running:
        await running.add_device("bench://rack-a", source="test")
        assert list(running.devices.by_url) == ["bench://rack-a"]


async def test_candidates_list_and_approve(hub: Hub, http: aiohttp.ClientSession) -> None:
    assert await call(http, "GET", "/api/v1/candidates", 200) == {"items": []}
    await hub.offer_candidate(Candidate(url="bench://found", vendor="bench", model="BR-2"))
    listed = await call(http, "GET", "/api/v1/candidates", 200)
    assert [c["url"] for c in listed["items"]] == ["bench://found"]
    await call(http, "POST", "/api/v1/candidates/approve", 201, json={"url": "bench://found"}, headers=AUTH)
    await eventually(lambda: hub.store.get("bench-found"), what="approved device")
    body = await call(http, "POST", "/api/v1/candidates/approve", 404, json={"url": "bench://other"}, headers=AUTH)
    assert body["code"] == "not_found"


async def test_health(http: aiohttp.ClientSession) -> None:
    body = await call(http, "GET", "/api/health", 200)
    assert body["status"] == "ok" and body["devices_online"] == 1
    assert body["connections"][0]["url"] == "bench://rack-a" and body["connections"][0]["connected"] is True
    assert body["connections"][0]["device_id"] == "bench-rack-a"  # how a client ties it to its device


async def test_hub_info_lists_plugins(http: aiohttp.ClientSession) -> None:
    info = await call(http, "GET", "/api/v1/hub", 200)
    assert info["hub_id"] == "webtest" and [p["name"] for p in info["plugins"]] == ["bench"]
    assert TOKEN not in str(info)


def documented_metrics() -> set[str]:
    """The metric names docs/api.md's /metrics table gives."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    return set(re.findall(r"`(wmhub_\w+)`", docs[docs.index("`GET /metrics`") : docs.index("## Live feed")]))


async def test_api_md_lists_every_metric_the_hub_serves_by_its_name(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """An outside audit: docs/api.md named `wmhub_discovery_dropped`, /metrics serves `..._total` (and five
    metrics were not listed). Every series of a hub with MQTT, a receiver and the venue store, against the table."""
    async with make_hub(tmp_path, mqtt_url=mqtt_broker.url) as running, client(running) as http:
        await running.add_device("bench://rack-a", source="test")
        await eventually(lambda: running.store.get("bench-rack-a"), what="bench device")
        await call(http, "GET", "/api/health", 200)  # a request counted: its series (and `_created`) are served
        text = await call(http, "GET", "/metrics", 200)
    # a family without samples (no open alert) has only its TYPE line; prometheus_client's `_created` series of
    # the request counter is served too, and listed
    served = set(re.findall(r"^(?:# TYPE )?(wmhub_\w+)", text, re.MULTILINE))
    assert documented_metrics() == served


async def test_metrics_are_prometheus_text(http: aiohttp.ClientSession) -> None:
    await call(http, "GET", "/api/v1/devices", 200)
    text = await call(http, "GET", "/metrics", 200)
    assert 'wmhub_devices{state="online"} 1.0' in text
    assert 'wmhub_device_connected{url="bench://rack-a"} 1.0' in text
    assert 'wmhub_http_requests_total{method="GET",route="/api/v1/devices",status="200"} 1.0' in text


def test_per_device_series_are_what_prometheus_client_writes_and_read_back() -> None:
    connections = [
        {"url": 'shure://a"b\\c\nd', "connected": True, "attempts": 3, "reconnects": 1_234_567, "protocol_errors": 0},
        {"url": "sennheiser://127.0.0.1", "connected": False, "attempts": 0, "reconnects": 0, "protocol_errors": 12},
    ]

    class AsTheLibraryWritesThem(Collector):
        def collect(self) -> Iterator[Metric]:
            connected = GaugeMetricFamily("wmhub_device_connected", "1 while the driver is connected", labels=["url"])
            attempts = CounterMetricFamily("wmhub_device_connection_attempts", "Connection attempts", labels=["url"])
            reconnects = CounterMetricFamily("wmhub_device_reconnects", "Lost connections retried", labels=["url"])
            errors = CounterMetricFamily(
                "wmhub_device_protocol_errors", "Data from the device that could not be parsed", labels=["url"]
            )
            for health in connections:
                connected.add_metric([health["url"]], 1 if health["connected"] else 0)
                attempts.add_metric([health["url"]], health["attempts"])
                reconnects.add_metric([health["url"]], health["reconnects"])
                errors.add_metric([health["url"]], health["protocol_errors"])
            yield from (connected, attempts, reconnects, errors)

    registry = CollectorRegistry()
    registry.register(AsTheLibraryWritesThem())
    text = device_series(connections)
    assert text.encode() == generate_latest(registry)
    read = {family.name: family for family in text_string_to_metric_families(text)}
    assert {(s.labels["url"], s.value) for s in read["wmhub_device_connected"].samples} == {
        ('shure://a"b\\c\nd', 1.0),
        ("sennheiser://127.0.0.1", 0.0),
    }
    assert read["wmhub_device_reconnects"].samples[0].value == 1_234_567


async def test_openapi_documents_every_endpoint(http: aiohttp.ClientSession) -> None:
    document = await call(http, "GET", "/api/openapi.json", 200)
    assert document["openapi"].startswith("3.")
    assert {"/api/v1/devices", "/api/v1/channels/{channel_id}/commands", "/api/health"} <= set(document["paths"])
    assert "CommandBody" in document["components"]["schemas"]


async def test_unknown_path_and_method_are_json_errors(http: aiohttp.ClientSession) -> None:
    assert (await call(http, "GET", "/api/v1/nothing", 404))["code"] == "not_found"
    assert (await call(http, "PATCH", "/api/v1/devices", 405))["code"] == "method_not_allowed"


async def test_closed_reads_need_the_token(tmp_path: Path) -> None:
    async with serving(tmp_path, token=TOKEN, open_reads=False) as (_, http):
        await call(http, "GET", "/api/v1/devices", 401)
        assert (await call(http, "GET", "/api/v1/devices", 200, headers=AUTH))["total"] == 0


async def test_generated_token_is_stored_private_and_reused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with make_hub(tmp_path) as hub:
        token = hub.web.token
    path = tmp_path / "api-token"
    assert path.read_text().strip() == token and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token in caplog.text
    caplog.clear()
    async with serving(tmp_path) as (hub, http):
        assert hub.web.token == token
        headers = {"Authorization": f"Bearer {token}"}
        await call(http, "POST", "/api/v1/devices", 201, json={"url": "bench://r"}, headers=headers)
        # where to find it, by name (it said "see <data_dir>/api-token", literally), not by the server's path
        refused = await call(http, "POST", "/api/v1/devices", 401, json={"url": "bench://r"})
        expected = "this needs 'Authorization: Bearer <token>' (see the file api-token in the hub's data_dir)"
        assert refused["error"] == expected
    assert token not in caplog.text


async def test_cors_is_off_unless_the_origin_is_configured(tmp_path: Path) -> None:
    async with serving(tmp_path, token=TOKEN, cors_origins=["http://desk.local"]) as (_, http):
        for origin, allowed in (("http://desk.local", True), ("http://evil.example", False)):
            async with http.get("/api/v1/devices", headers={"Origin": origin}) as response:
                assert (response.headers.get("Access-Control-Allow-Origin") == origin) is allowed
            preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
            async with http.options("/api/v1/devices", headers=preflight) as response:
                assert (response.status == 204) is allowed


async def test_board_page_and_assets_are_served(http: aiohttp.ClientSession) -> None:
    page = await call(http, "GET", "/", 200)
    assert "<title>wmhub board</title>" in page and "/static/board.js" in page
    script = await call(http, "GET", "/static/board.js", 200)
    # names come from devices and users: the board must never parse them as HTML
    assert not any(sink in script for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write"))
    assert "textContent" in script
    await call(http, "GET", "/static/board.css", 200)
    assert (await call(http, "GET", "/static/missing.js", 404))["code"] == "not_found"
