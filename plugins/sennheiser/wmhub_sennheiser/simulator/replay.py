"""A fake device that replays a transcript: literal request/reply exchanges taken from public sources.

The simulators in this package are written from the same notes as the drivers; this one knows nothing but a
transcript (``plugins/sennheiser/tests/transcripts/*.txt``, format in that folder's README). It answers every
request the transcript holds with the transcript's reply, every other request with the protocol's error, and
stays silent where the transcript says the device is silent. It also checks the other direction: every
request the hub sends that the transcript does not hold is kept in :attr:`Replay.unexpected`.

Three transports, all on real loopback sockets:

* ``mcp`` (ew G3/G4, 2000): ASCII lines over UDP; a request matches an exchange when the line is the same.
* ``ssc1`` (EW-DX, Digital 6000, SpeechLine DW): JSON over UDP, matched leaf by leaf. A hub bundles the
  leaves it asks for differently from any one source, so every leaf of a transcript's requests is answered
  from that exchange's reply, and a request is answered with the merged answers of its leaves (its ``osc/xid``
  reflected). Subscriptions follow the vendor's one stated rule (SpeechLine DW guide p.24, quoted in the
  reference): the request comes back with its ``#`` parameters, then the current values of its leaves.
* ``ssc2`` (Spectera, TCC M): HTTPS with Basic auth; a request matches on method, path and JSON body (a
  subscription's path list may be any part of the transcript's). ``!`` lines are written, as they stand, to
  the open event streams.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from wmhub_sennheiser.simulator.common import Client
from wmhub_sennheiser.simulator.ssc2 import SelfSignedCertificate
from wmhub_sennheiser.simulator.ssc_json import SUBSCRIBE, leaves, lookup, message, nest
from wmhub_sennheiser.simulator.ssc_json import errors as error_message

PROTOCOLS: Final = ("mcp", "ssc1", "ssc2")
_ESCAPES: Final = {"\\r": "\r", "\\n": "\n", "\\\\": "\\"}
# SSCv1 subscription parameters the vendor documents (reference 1.4); anything else the hub sends is noted
SUBSCRIPTION_PARAMETERS: Final = frozenset({"min", "max", "bw", "lifetime", "count", "cancel"})
SSC1_UNKNOWN_ADDRESS: Final = 404
SSC1_NOT_ACCEPTABLE: Final = 406
SSC1_NOT_IN_SUBSCRIPTION: Final = 454


class TranscriptError(ValueError):
    """A transcript file that does not follow the format; the message names the file and line."""


@dataclass(frozen=True)
class Exchange:
    """One request and what the device does about it."""

    request: str
    replies: tuple[str, ...]  # sent in order; each one datagram (UDP) or the HTTP answer (SSCv2)
    pushed: tuple[str, ...]  # sent after the replies: datagrams (UDP) or raw SSE text (SSCv2)
    silent: bool
    delay_s: float
    source: str
    notes: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class Transcript:
    path: Path
    family: str
    protocol: str
    header: Mapping[str, str]
    exchanges: tuple[Exchange, ...]

    def exchange(self, request: str) -> Exchange | None:
        return next((exchange for exchange in self.exchanges if exchange.request == request), None)


def unescape(text: str) -> str:
    """``\\r``, ``\\n`` and ``\\\\`` as the characters they name (MCP lines and raw SSE text)."""
    out, index = [], 0
    while index < len(text):
        pair = text[index : index + 2]
        if pair in _ESCAPES:
            out.append(_ESCAPES[pair])
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def load(path: Path) -> Transcript:
    """Read one transcript. Header ``key: value`` lines first, then exchanges separated by blank lines."""
    header: dict[str, str] = {}
    exchanges: list[Exchange] = []
    block: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, raw in enumerate([*lines, ""], start=1):
        line = raw.rstrip("\n")
        if line.startswith("#"):
            continue
        if not line.strip():
            if block:
                exchanges.append(_exchange(path, block, header.get("protocol", "")))
                block = []
            continue
        if not exchanges and not block and not line.startswith(("source:", ">", "<", "!", "~", "note:")):
            key, sep, value = line.partition(":")
            if not sep:
                raise TranscriptError(f"{path.name}:{number}: expected 'key: value' in the header")
            header[key.strip()] = value.strip()
            continue
        block.append((number, line))
    protocol = header.get("protocol", "")
    if protocol not in PROTOCOLS or "family" not in header:
        raise TranscriptError(f"{path.name}: the header needs 'family:' and 'protocol:' ({', '.join(PROTOCOLS)})")
    return Transcript(path, header["family"], protocol, header, tuple(exchanges))


def _exchange(path: Path, block: list[tuple[int, str]], protocol: str) -> Exchange:
    first = block[0][0]
    parts: dict[str, list[str]] = {"source:": [], "note:": [], ">": [], "<": [], "!": [], "~": []}
    for number, line in block:
        marker = next((m for m in parts if line.startswith(m)), None)
        if marker is None:
            raise TranscriptError(f"{path.name}:{number}: a line in an exchange starts with one of {', '.join(parts)}")
        text = line[len(marker) :].removeprefix(" ")
        parts[marker].append(unescape(text) if protocol == "mcp" or (marker == "!" and protocol == "ssc2") else text)
    if len(parts[">"]) != 1 or len(parts["source:"]) != 1:
        raise TranscriptError(f"{path.name}:{first}: an exchange has one '>' request and one 'source:' line")
    directives = [d.split() for d in parts["~"]]
    silent = ["silent"] in directives
    delays = [float(d[1]) for d in directives if len(d) == 2 and d[0] == "delay"]
    if silent == bool(parts["<"]) or len(directives) != silent + len(delays):
        raise TranscriptError(f"{path.name}:{first}: an exchange has '<' replies or '~ silent' (and '~ delay N')")
    return Exchange(
        request=parts[">"][0],
        replies=tuple(parts["<"]),
        pushed=tuple(parts["!"]),
        silent=silent,
        delay_s=delays[0] if delays else 0.0,
        source=parts["source:"][0],
        notes=tuple(parts["note:"]),
        line=first,
    )


def load_corpus(folder: Path) -> list[Transcript]:
    return [load(path) for path in sorted(folder.glob("*.txt"))]


# --- the fake devices ---------------------------------------------------------------------------------


@dataclass
class Replay:
    """What every replaying device records: what the hub sent and what the transcript did not hold."""

    transcript: Transcript
    heard: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    used: set[int] = field(default_factory=set)  # lines of the exchanges that answered something
    host: str = "127.0.0.1"
    port: int = 0

    def unused(self) -> list[Exchange]:
        return [exchange for exchange in self.transcript.exchanges if exchange.line not in self.used]


class _UdpReplay(Replay, asyncio.DatagramProtocol):
    """Shared by the MCP and SSCv1 replays: the socket, delayed sends, and a split-reply fault."""

    def __init__(self, transcript: Transcript, *, split_lines: bool = False) -> None:
        Replay.__init__(self, transcript)
        self.split_lines = split_lines  # fault: every CR-terminated line of a reply in its own datagram
        self._transport: asyncio.DatagramTransport | None = None
        self._later: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> _UdpReplay:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, 0))
        self.port = int(self._transport.get_extra_info("sockname")[1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._later:
            task.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        client = (str(addr[0]), int(addr[1]))
        for delay_s, datagrams in self.answer(data):
            if delay_s > 0:
                task = asyncio.ensure_future(self._send_later(delay_s, datagrams, client))
                self._later.add(task)
                task.add_done_callback(self._later.discard)
            else:
                self._send(datagrams, client)

    async def _send_later(self, delay_s: float, datagrams: list[bytes], client: Client) -> None:
        await asyncio.sleep(delay_s)
        self._send(datagrams, client)

    def _send(self, datagrams: Iterable[bytes], client: Client) -> None:
        if self._transport is None:
            return
        for datagram in datagrams:
            pieces = [p + b"\r" for p in datagram.split(b"\r") if p] if self.split_lines else [datagram]
            for piece in pieces:
                self._transport.sendto(piece, client)

    def answer(self, data: bytes) -> list[tuple[float, list[bytes]]]:
        """The datagrams to send for one received, each batch with its delay."""
        raise NotImplementedError


class McpReplay(_UdpReplay):
    """An ew G3/G4/2000 receiver (or, with ``scheme="sennheiser-iem-g4"``, an IEM transmitter) that knows only
    its transcript."""

    def __init__(self, transcript: Transcript, *, split_lines: bool = False, scheme: str = "sennheiser-g4") -> None:
        super().__init__(transcript, split_lines=split_lines)
        self.scheme = scheme

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}?local_port=0"

    def answer(self, data: bytes) -> list[tuple[float, list[bytes]]]:
        text = data.decode("ascii", errors="replace")
        if not text.endswith("\r"):
            self.unexpected.append(text)
            return [(0.0, [f"1050: Incorrect termination [ {text} ]\r".encode()])]
        batches = []
        for line in text[:-1].split("\r"):
            self.heard.append(line)
            exchange = self.transcript.exchange(line)
            if exchange is None:
                self.unexpected.append(line)
                batches.append((0.0, [f"1000: Invalid command [ {line} ]\r".encode()]))
                continue
            self.used.add(exchange.line)
            if not exchange.silent:
                sent = [reply.encode("ascii") for reply in (*exchange.replies, *exchange.pushed)]
                batches.append((exchange.delay_s, sent))
        return batches


def _leaf_key(path: tuple[str, ...], value: Any) -> str:
    return json.dumps([list(path), value], sort_keys=True)


@dataclass(frozen=True)
class _Answer:
    """What one SSCv1 leaf gets: a value, or an error (``[code]`` or ``[code, {"desc": ...}]``), or nothing."""

    exchange: Exchange
    found: bool = False
    value: Any = None
    error: list[Any] | None = None


class Ssc1Replay(_UdpReplay):
    """An SSCv1 device that knows only its transcript, answered leaf by leaf."""

    def __init__(self, transcript: Transcript, *, split_lines: bool = False) -> None:
        super().__init__(transcript, split_lines=split_lines)
        self.answers: dict[str, _Answer] = {}
        for exchange in transcript.exchanges:
            request = json.loads(exchange.request)
            if "osc" in request and "state" in request["osc"]:
                continue  # a subscription: answered by the rule, the exchange documents it
            reply = json.loads(exchange.replies[0]) if exchange.replies else {}
            failures = (reply.get("osc") or {}).get("error") or [{}]
            for path, value in leaves(request).items():
                found, answered = lookup(reply, path)
                failed, code = lookup(failures[0], path)
                error = code if failed and isinstance(code, list) else None
                self.answers[_leaf_key(path, value)] = _Answer(exchange, found, answered, error)

    @property
    def url(self) -> str:
        return f"sennheiser-ssc://{self.host}:{self.port}"

    def answer(self, data: bytes) -> list[tuple[float, list[bytes]]]:
        text = data.decode("utf-8", errors="replace")
        self.heard.append(text)
        try:
            request = json.loads(text)
            osc = request.pop("osc", {})
            xid, subscribe = osc.get("xid"), (osc.get("state") or {}).get("subscribe")
        except (ValueError, AttributeError):
            self.unexpected.append(text)
            return [(0.0, [message({"osc": {"error": [400]}})])]
        if subscribe is not None:
            return self._subscribe(subscribe, xid)
        values: dict[tuple[str, ...], Any] = {}
        failed: dict[tuple[str, ...], list[Any]] = {}
        delay_s, silent = 0.0, False
        for path, value in leaves(request).items():
            answer = self.answers.get(_leaf_key(path, value))
            if answer is None:
                known = value is not None and _leaf_key(path, None) in self.answers
                self.unexpected.append("/" + "/".join(path) + ("" if value is None else f" = {json.dumps(value)}"))
                failed[path] = [SSC1_NOT_ACCEPTABLE if known else SSC1_UNKNOWN_ADDRESS]
                continue
            self.used.add(answer.exchange.line)
            silent = silent or answer.exchange.silent
            delay_s = max(delay_s, answer.exchange.delay_s)
            if answer.error is not None:
                failed[path] = answer.error
            elif answer.found:
                values[path] = answer.value
        if silent:
            return []
        body = nest(values)
        if failed:
            body["osc"] = {"error": [nest(failed)]}
        return [(delay_s, [message(body, xid)])]

    def _subscribe(self, sets: Any, xid: Any) -> list[tuple[float, list[bytes]]]:
        if not isinstance(sets, list):
            self.unexpected.append(f"subscribe {sets!r}")
            return [(0.0, [message(error_message({SUBSCRIBE: 400}), xid)])]
        echo: list[dict[str, Any]] = []
        values: dict[tuple[str, ...], Any] = {}
        failed: dict[tuple[str, ...], list[Any]] = {}
        for item in sets:
            params = dict(item.get("#") or {}) if isinstance(item, Mapping) else {}
            self.unexpected.extend(f"subscription parameter {name}" for name in params.keys() - SUBSCRIPTION_PARAMETERS)
            tree = {key: value for key, value in item.items() if key != "#"} if isinstance(item, Mapping) else {}
            for path in leaves(tree):
                answer = self.answers.get(_leaf_key(path, None))
                if answer is None or answer.exchange.silent:
                    self.unexpected.append("subscribe /" + "/".join(path))
                    failed[path] = [SSC1_NOT_IN_SUBSCRIPTION]
                    continue
                self.used.add(answer.exchange.line)
                if answer.error is not None:
                    failed[path] = answer.error
                elif answer.found:
                    values[path] = answer.value
            echo.append({"#": {"lifetime": 10, **params}, **tree})
        sent = [message({"osc": {"state": {"subscribe": echo}}}, xid)]
        if values:
            sent.append(message(nest(values)))
        if failed:
            sent.append(message({"osc": {"error": [nest(failed)]}}))
        return [(0.0, sent)]


class Ssc2Replay(Replay):
    """An SSCv2 device (HTTPS, Basic auth, SSE) that knows only its transcript.

    ``split_events_at``: fault, each SSE write goes out in pieces of this many bytes.
    """

    def __init__(self, transcript: Transcript, *, password: str = "Stage-Pass-2026", split_events_at: int = 0) -> None:
        Replay.__init__(self, transcript)
        self.user = transcript.header.get("user", "api")
        self.password = password
        self.open_paths = frozenset(transcript.header.get("open", "").split())
        self.split_events_at = split_events_at
        self.refused = 0
        self.certificate = SelfSignedCertificate.generate(self.host)
        self._streams: list[asyncio.Queue[bytes | None]] = []
        self._runner: web.AppRunner | None = None

    def url(self, **options: str) -> str:
        query = "&".join(f"{key}={value}" for key, value in {"password": self.password, **options}.items())
        return f"sennheiser-ssc2://{self.host}:{self.port}?fingerprint={self.certificate.sha256}&{query}"

    async def __aenter__(self) -> Ssc2Replay:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.certificate.server_context())
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for stream in self._streams:
            stream.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        if request.path in self.open_paths:
            return True
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        with contextlib.suppress(ValueError):
            return scheme == "Basic" and base64.b64decode(encoded).decode() == f"{self.user}:{self.password}"
        return False

    def _match(self, method: str, path: str, body: Any) -> Exchange | None:
        for exchange in self.transcript.exchanges:
            want_method, _, rest = exchange.request.partition(" ")
            want_path, _, want_body = rest.partition(" ")
            if (want_method, want_path) != (method, path):
                continue
            wanted = json.loads(want_body) if want_body else None
            if wanted == body or (
                path.endswith(("/add", "/remove"))
                and isinstance(body, list)
                and isinstance(wanted, list)
                and set(map(str, body)) <= set(map(str, wanted))
            ):
                return exchange
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()
        body: Any = None
        with contextlib.suppress(ValueError):
            body = json.loads(text) if text else None
        line = f"{request.method} {request.path}" + (f" {text}" if text else "")
        self.heard.append(line)
        if not self._authorised(request):
            self.refused += 1
            return web.json_response({"path": request.path, "error": 401}, status=401)
        exchange = self._match(request.method, request.path, body)
        if exchange is None:
            self.unexpected.append(line)
            return web.json_response({"path": request.path, "error": 404}, status=404)
        self.used.add(exchange.line)
        if exchange.silent:
            await asyncio.Event().wait()  # never answers; the client's timeout ends it
        await asyncio.sleep(exchange.delay_s)
        status, _, reply = exchange.replies[0].partition(" ")
        if reply == "text/event-stream":
            return await self._stream(request, exchange)
        for event in exchange.pushed:
            for stream in self._streams:
                stream.put_nowait(event.encode())
        if not reply:
            return web.Response(status=int(status))
        return web.Response(status=int(status), text=reply, content_type="application/json")

    async def _stream(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        for event in exchange.pushed:
            queue.put_nowait(event.encode())
        self._streams.append(queue)
        try:
            with contextlib.suppress(ConnectionError):
                while (chunk := await queue.get()) is not None:
                    size = self.split_events_at or len(chunk)
                    for start in range(0, len(chunk), size):
                        await response.write(chunk[start : start + size])
                        if self.split_events_at:
                            await asyncio.sleep(0.01)  # separate TCP segments, as a slow device sends them
        finally:
            self._streams.remove(queue)
        return response


def replay_for(transcript: Transcript, **options: Any) -> McpReplay | Ssc1Replay | Ssc2Replay:
    """The fake device for a transcript's protocol (``async with`` it)."""
    kinds: dict[str, type[McpReplay] | type[Ssc1Replay] | type[Ssc2Replay]] = {
        "mcp": McpReplay,
        "ssc1": Ssc1Replay,
        "ssc2": Ssc2Replay,
    }
    return kinds[transcript.protocol](transcript, **options)
