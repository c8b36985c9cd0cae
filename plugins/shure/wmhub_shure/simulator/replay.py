"""A transcript-driven fake receiver: it knows only the exchanges written down in a transcript.

Transcripts (``plugins/shure/tests/transcripts/*.txt``, format in that folder's README) hold literal
request/reply exchanges from public sources. :class:`ReplayDevice` serves one over a real loopback socket:
each request gets the transcript's replies, ``ERR`` for anything the transcript does not list, and nothing
where the transcript says the device is silent. Every request is recorded, so a test can compare what the
hub sent with the transcript too. Nothing here shares code with the driver's tables or the simulator.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from hub.model import Device
from wmhub_shure.protocol import ANGLE, STAR, Framer, Framing

SILENT = "silent"


class TranscriptError(ValueError):
    """A transcript line that does not follow the format; the message names the file and line."""


@dataclass
class Exchange:
    """One request and what the device answers to it (nothing at all when ``silent``)."""

    request: str  # the wire message as written, e.g. "< GET 0 ALL >"
    replies: list[str] = field(default_factory=list)
    silent: bool = False
    delay_s: float = 0.0  # the device answers this (and so everything after it) only this late
    sources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Expectation:
    """What the hub must show once it has heard the transcript: ``scope`` is "device" or a channel index."""

    scope: str | int
    name: str
    value: Any

    def shown(self, device: Device | None) -> Any:
        """The hub's value for this expectation, as JSON (the form a transcript states it in: transmitter slots
        are models of their own); ``"missing"`` when the device or channel is not there."""
        part = device if self.scope == "device" or device is None else device.channel(int(self.scope))
        if part is None or self.name not in type(part).model_fields:
            return "missing"
        return part.model_dump(mode="json", include={self.name})[self.name]


@dataclass
class Transcript:
    """A parsed transcript file, with its includes applied (a later exchange for a request replaces one
    from an included file)."""

    path: Path
    family: str | None = None
    framing: Framing = ANGLE
    sources: dict[str, str] = field(default_factory=dict)
    exchanges: dict[str, Exchange] = field(default_factory=dict)
    expected: list[Expectation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lines: list[tuple[str, list[str]]] = field(default_factory=list)  # (wire message, source tags) in order

    @classmethod
    def load(cls, path: Path) -> Transcript:
        transcript = cls(path)
        transcript._read(path)
        return transcript

    def key(self, message: str) -> str:
        """A request as the device compares it: the body between the delimiters, whitespace collapsed."""
        bodies = Framer(self.framing).feed(message.strip().encode("ascii"))
        if len(bodies) != 1:
            raise TranscriptError(f"{self.path.name}: {message!r} is not one message")
        return " ".join(bodies[0].decode("ascii").split())

    def _read(self, path: Path) -> None:
        current: Exchange | None = None
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            where = f"{path.name}:{number}"
            if not line or line.startswith("#"):
                continue
            marker, _, rest = line.partition(" ")
            if marker == "@source":
                tag, _, text = rest.partition(" ")
                self.sources[tag] = text.strip()
            elif marker == "@family":
                self.family = rest.strip()
            elif marker == "@framing":
                self.framing = STAR if rest.strip() == "star" else ANGLE
            elif marker == "@include":
                self._read(path.parent / rest.strip())
            elif marker == "@delay":
                seconds, _, request = rest.partition(" ")
                delayed = self.exchanges.get(self.key(request))
                if delayed is None:
                    raise TranscriptError(f"{where}: @delay names a request the transcript does not have")
                delayed.delay_s = float(seconds)
            elif marker == "!!":
                self.notes.append(rest)
            elif marker == "==":
                expectation = _expectation(rest, where)  # replaces one for the same field from an included file
                self.expected = [e for e in self.expected if (e.scope, e.name) != (expectation.scope, expectation.name)]
                self.expected.append(expectation)
            elif marker in (">>", "<<", "--"):
                wire, tags = _tagged(rest, where)
                for tag in tags:
                    if tag not in self.sources:
                        raise TranscriptError(f"{where}: source [{tag}] is not declared with @source")
                if marker == ">>":
                    current = Exchange(wire, sources=tags)
                    self.exchanges[self.key(wire)] = current
                elif current is None:
                    raise TranscriptError(f"{where}: a reply before any request")
                elif marker == "--":
                    if wire != SILENT:
                        raise TranscriptError(f"{where}: '--' lines say 'silent'")
                    current.silent = True
                else:
                    self.key(wire)  # one well-formed message per line
                    current.replies.append(wire)
                if marker != "--":
                    self.lines.append((wire, tags))
            else:
                raise TranscriptError(f"{where}: unknown line {raw!r}")


def _tagged(text: str, where: str) -> tuple[str, list[str]]:
    """``< REP ERR >  [CO-SLXP, MB-CFG]`` -> the message and its source tags (every line names one)."""
    head, bracket, tail = text.rpartition("[")
    if not bracket or not tail.endswith("]"):
        raise TranscriptError(f"{where}: no [SOURCE] at the end of {text!r}")
    tags = [tag.strip() for tag in tail[:-1].split(",") if tag.strip()]
    if not tags:
        raise TranscriptError(f"{where}: empty source")
    return head.strip(), tags


def _expectation(text: str, where: str) -> Expectation:
    parts = text.split(None, 2)
    if len(parts) != 3:
        raise TranscriptError(f"{where}: '== <device|channel> <field> <json value>'")
    scope, name, value = parts
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        raise TranscriptError(f"{where}: {value!r} is not JSON ({exc})") from None
    return Expectation(scope if scope == "device" else int(scope), name, decoded)


class _Connection(asyncio.Protocol):
    """One client: requests are answered in order, each after the delay its exchange asks for."""

    def __init__(self, device: ReplayDevice) -> None:
        self.device = device
        self.framer = Framer(device.transcript.framing)
        self.transport: asyncio.Transport | None = None
        self.outbox: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.writer: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.writer = asyncio.ensure_future(self._write_in_order())
        self.device.connections.append(self)

    def data_received(self, data: bytes) -> None:
        for body in self.framer.feed(data):
            delay, answer = self.device.answer(" ".join(body.decode("ascii", "replace").split()))
            if answer or delay:
                self.outbox.put_nowait((delay, answer))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.writer is not None:
            self.writer.cancel()
        if self in self.device.connections:
            self.device.connections.remove(self)

    async def _write_in_order(self) -> None:
        while True:
            delay, data = await self.outbox.get()
            if delay:
                await asyncio.sleep(delay)
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            cut = data.find(b"{") + 2 if self.device.split_inside_braces else 0
            if 1 < cut < len(data):
                transport.write(data[:cut])
                await asyncio.sleep(0.02)  # separate segments: the reader sees the brace field cut in two
                data = data[cut:]
            transport.write(data)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, device: ReplayDevice) -> None:
        self.device = device
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        for body in Framer(self.device.transcript.framing).feed(data):
            _, answer = self.device.answer(" ".join(body.decode("ascii", "replace").split()))
            if answer and self.transport is not None:
                self.transport.sendto(answer, addr)


class ReplayDevice:
    """``async with ReplayDevice(Transcript.load(path)) as device: device.url ...``.

    ``received`` lists every request in arrival order; ``unlisted`` those the transcript does not know
    (answered with ERR). ``split_inside_braces`` cuts every reply inside its first brace field.
    """

    def __init__(
        self, transcript: Transcript, host: str = "127.0.0.1", split_inside_braces: bool = False, port: int = 0
    ) -> None:
        self.transcript = transcript
        self.host = host
        self.port = port  # 0: any free port; another one: a receiver swapped in at an address the hub knows
        self.split_inside_braces = split_inside_braces
        self.received: list[str] = []
        self.unlisted: list[str] = []
        self.connections: list[_Connection] = []
        self._server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None

    @property
    def udp(self) -> bool:
        return self.transcript.framing is STAR

    @property
    def url(self) -> str:
        return f"{'shure-uhfr' if self.udp else 'shure'}://{self.host}:{self.port}"

    def answer(self, request: str) -> tuple[float, bytes]:
        """(delay, bytes to send) for one request body."""
        self.received.append(request)
        exchange = self.transcript.exchanges.get(request)
        if exchange is None:
            self.unlisted.append(request)
            error = "* REPORT ERR *" if self.udp else "< REP ERR >"  # the UHF-R error form is unverified
            return 0.0, error.encode("ascii")
        if exchange.silent:
            return exchange.delay_s, b""
        return exchange.delay_s, "".join(exchange.replies).encode("ascii")

    def drop_clients(self) -> None:
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()

    async def start(self) -> ReplayDevice:
        loop = asyncio.get_running_loop()
        if self.udp:
            address = (self.host, self.port)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), local_addr=address)
            self._udp = transport
            self.port = transport.get_extra_info("sockname")[1]
        else:
            self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.drop_clients()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._udp is not None:
            self._udp.close()

    async def __aenter__(self) -> ReplayDevice:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
