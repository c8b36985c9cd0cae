"""What the board tests share: the browser to launch and the running hub with its simulators."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from wmhub_shure.simulator import ShureSimulator

from hub.app import Hub
from hub.persistence import Persistence

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "board-test-token"
# a small rack like the demo's: a dual ULX-D, a quad Axient Digital
FAMILIES = ("ulxd4d", "ad4q")


@dataclass
class Board:
    hub: Hub
    simulators: list[ShureSimulator]
    url: str
    token: str

    @property
    def store(self) -> Persistence:
        store: Persistence = self.hub.persistence  # type: ignore[attr-defined]
        return store

    def device_id(self, simulator: ShureSimulator) -> str:
        for managed in self.hub.devices.by_url.values():
            if managed.url == simulator.url and managed.handle.device_id:
                return managed.handle.device_id
        raise LookupError(simulator.url)


class SilentPath:
    """A loopback TCP path from the browser to the hub that can fall silent without closing: what a hung hub or
    a dropped Wi-Fi link looks like from the browser, where TCP tells neither side anything for minutes. While
    silent, bytes are taken from both ends and held; they flow again (held ones first) when it is restored."""

    def __init__(self, hub_port: int) -> None:
        self.hub_port = hub_port
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pipes: set[asyncio.Task[None]] = set()
        self._away = False
        self.live_refused_at: list[float] = []

    def fall_silent(self) -> None:
        self._flowing.clear()

    def go_away(self) -> None:
        """Close every connection and hang up on each new one until :meth:`restore`: a hub restarting. When each
        refused attempt at the live feed came is in :attr:`live_refused_at` (monotonic seconds)."""
        self._away = True
        for writer in self._writers:
            writer.close()

    def restore(self) -> None:
        self._away = False
        self._flowing.set()

    async def __aenter__(self) -> SilentPath:
        self._server = await asyncio.start_server(self._join, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _join(self, browser_reader: asyncio.StreamReader, browser_writer: asyncio.StreamWriter) -> None:
        if self._away:
            request_line = await browser_reader.readline()
            if b" /api/v1/live" in request_line:
                self.live_refused_at.append(time.monotonic())
            browser_writer.close()
            return
        hub_reader, hub_writer = await asyncio.open_connection("127.0.0.1", self.hub_port)
        self._writers += [browser_writer, hub_writer]
        for source, sink in ((browser_reader, hub_writer), (hub_reader, browser_writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        sink.close()
