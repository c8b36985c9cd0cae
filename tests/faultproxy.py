"""A loopback TCP/UDP proxy that injects network faults between the hub and a (simulated) device.

    async with TcpFaultProxy("127.0.0.1", sim.port) as proxy:
        hub.add(f"shure://127.0.0.1:{proxy.port}")
        proxy.delay_s = 0.5        # every chunk waits, both ways (a slow link or a device answering slowly)
        proxy.blackhole()          # half-open: sockets stay open, nothing more gets through, new ones too
        proxy.babble(b"~")         # a byte to the hub on every connection (stray bytes from a device gone wrong)
        proxy.heal()               # new connections work again; the blackholed ones stay dead, as after a
                                   # real cable pull, so the hub has to notice and reconnect
        proxy.cut()                # every connection reset at once (a device reboot, as seen on the wire)
        proxy.refuse = True        # new connections are closed at once (a device still booting)
        proxy.corrupt_rate = 0.1   # a random byte of some chunks flipped

``UdpFaultProxy`` does the same for datagrams, plus ``loss_rate`` (each datagram, each way). Faults are
attributes so a test can switch them mid-run; randomness is seeded so a failing run can be repeated.
Everything listens on 127.0.0.1 with an OS-chosen port and forwards only to the loopback target it was
given.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self, cast

LOOPBACK = "127.0.0.1"
READ_SIZE = 65536


@dataclass
class Counters:
    """What went through (or was thrown away by) a proxy, for the loss figures in the report."""

    upstream: int = 0  # chunks or datagrams hub -> device
    downstream: int = 0  # device -> hub
    dropped: int = 0
    corrupted: int = 0
    connections: int = 0
    resets: int = 0
    refused: int = 0
    upstream_bytes: bytearray = field(default_factory=bytearray)  # everything hub -> device, for a test to wait on


@dataclass
class _Faults:
    delay_s: float = 0.0
    loss_rate: float = 0.0
    corrupt_rate: float = 0.0
    seed: int = 7
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def mangle(self, data: bytes, counters: Counters) -> bytes:
        if self.corrupt_rate and data and self.rng.random() < self.corrupt_rate:
            position = self.rng.randrange(len(data))
            counters.corrupted += 1
            return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]
        return data


class _FaultKnobs:
    """The fault settings both proxies expose as attributes, kept in their shared ``_Faults``."""

    faults: _Faults

    @property
    def delay_s(self) -> float:
        return self.faults.delay_s

    @delay_s.setter
    def delay_s(self, value: float) -> None:
        self.faults.delay_s = value

    @property
    def corrupt_rate(self) -> float:
        return self.faults.corrupt_rate

    @corrupt_rate.setter
    def corrupt_rate(self, value: float) -> None:
        self.faults.corrupt_rate = value


class _Pipe:
    """One proxied TCP connection: per direction a reader and a writer, so a delay is latency (each chunk
    leaves ``delay_s`` after it arrived, in order) and never throttles throughput."""

    def __init__(self, proxy: TcpFaultProxy, client: asyncio.StreamWriter, device: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.writers = (client, device)
        self.blackholed = proxy.blackholed
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, client_reader: asyncio.StreamReader, device_reader: asyncio.StreamReader) -> None:
        client_writer, device_writer = self.writers
        for reader, writer, upstream in ((client_reader, device_writer, True), (device_reader, client_writer, False)):
            queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
            self.tasks.append(asyncio.create_task(self._read(reader, queue, upstream)))
            self.tasks.append(asyncio.create_task(self._write(queue, writer)))

    async def _read(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes] | None], upstream: bool
    ) -> None:
        counters = self.proxy.counters
        try:
            while data := await reader.read(READ_SIZE):
                if self.blackholed:
                    counters.dropped += 1
                    continue
                if upstream:
                    counters.upstream += 1
                    counters.upstream_bytes += data
                else:
                    counters.downstream += 1
                queue.put_nowait((time.monotonic() + self.proxy.delay_s, data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait(None)

    async def _write(self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter) -> None:
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                if self.blackholed:
                    continue
                writer.write(self.proxy.faults.mangle(data, self.proxy.counters))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not self.blackholed:  # a blackholed connection stays open: that is the point
                self.close()

    def close(self, reset: bool = False) -> None:
        for writer in self.writers:
            transport = writer.transport
            if reset:
                transport.abort()
            else:
                transport.close()


class TcpFaultProxy(_FaultKnobs):
    """``TcpFaultProxy(target_host, target_port)``: listens on 127.0.0.1:``port`` once started."""

    def __init__(self, target_host: str, target_port: int, *, seed: int = 7) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.faults = _Faults(seed=seed)
        self.counters = Counters()
        self.refuse = False
        self.blackholed = False
        self._pipes: set[_Pipe] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def open_connections(self) -> int:
        return len(self._pipes)

    def blackhole(self) -> None:
        """Half-open: every current and new connection stays open and silently swallows what it gets."""
        self.blackholed = True
        for pipe in self._pipes:
            pipe.blackholed = True

    def babble(self, data: bytes) -> None:
        """Send ``data`` to the hub on every connection, as a device gone wrong that still emits bytes."""
        for pipe in self._pipes:
            pipe.writers[0].write(data)

    def heal(self) -> None:
        """New connections work again. Blackholed ones stay dead until an end closes them."""
        self.blackholed = False

    def cut(self) -> None:
        """Reset every connection (RST both ways), as a rebooting device or a failing switch port does."""
        for pipe in list(self._pipes):
            pipe.close(reset=True)
            self.counters.resets += 1
        self._pipes.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        if self.refuse:
            self.counters.refused += 1
            client_writer.transport.abort()
            return
        try:
            device_reader, device_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 2)
        except (OSError, TimeoutError):
            self.counters.refused += 1
            client_writer.transport.abort()
            return
        pipe = _Pipe(self, client_writer, device_writer)
        self._pipes.add(pipe)
        pipe.start(client_reader, device_reader)
        self._tasks.update(pipe.tasks)
        for task in pipe.tasks:
            task.add_done_callback(self._tasks.discard)
        pipe.tasks[-1].add_done_callback(lambda _: self._pipes.discard(pipe))


class _UdpSide(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable while the device is down
        pass


class UdpFaultProxy(_FaultKnobs):
    """``UdpFaultProxy(target_host, target_port)``: one upstream socket per client address, so each client's
    replies come back to it from the proxy's own port (the device's address, as far as the hub knows)."""

    def __init__(self, target_host: str, target_port: int, *, seed: int = 7) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.faults = _Faults(seed=seed)
        self.counters = Counters()
        self.blackholed = False
        self._front: _UdpSide | None = None
        self._upstreams: dict[tuple[str, int], _UdpSide] = {}
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def loss_rate(self) -> float:
        return self.faults.loss_rate

    @loss_rate.setter
    def loss_rate(self, value: float) -> None:
        self.faults.loss_rate = value

    def blackhole(self) -> None:
        self.blackholed = True

    def heal(self) -> None:
        self.blackholed = False

    def inject(self, data: bytes) -> None:
        """Send ``data`` to every client as if the device had sent it (garbage, oversized datagrams)."""
        if self._front is not None and self._front.transport is not None:
            for client in self._upstreams:
                self._front.transport.sendto(data, client)

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        transport, front = await loop.create_datagram_endpoint(
            lambda: _UdpSide(self._from_client), local_addr=(LOOPBACK, 0)
        )
        self._front = front
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._pending:
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        for side in [self._front, *self._upstreams.values()]:
            if side is not None and side.transport is not None:
                side.transport.close()

    def _passes(self) -> bool:
        if self.blackholed or (self.faults.loss_rate and self.faults.rng.random() < self.faults.loss_rate):
            self.counters.dropped += 1
            return False
        return True

    def _forward(self, side: _UdpSide | None, data: bytes, address: tuple[str, int]) -> None:
        if side is None or side.transport is None:
            return
        data = self.faults.mangle(data, self.counters)
        if not self.faults.delay_s:
            side.transport.sendto(data, address)
            return

        async def later() -> None:
            await asyncio.sleep(self.faults.delay_s)
            if side.transport is not None and not side.transport.is_closing():
                side.transport.sendto(data, address)

        task = asyncio.ensure_future(later())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _from_client(self, data: bytes, client: tuple[str, int]) -> None:
        upstream = self._upstreams.get(client)
        if upstream is None:
            upstream = _UdpSide(lambda reply, _source: self._from_device(reply, client))
            self._upstreams[client] = upstream
            task = asyncio.ensure_future(self._open_upstream(upstream, data))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return
        if self._passes():
            self.counters.upstream += 1
            self._forward(upstream, data, self.target)

    async def _open_upstream(self, upstream: _UdpSide, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: upstream, local_addr=(LOOPBACK, 0))
        if self._passes():
            self.counters.upstream += 1
            self._forward(upstream, first, self.target)

    def _from_device(self, data: bytes, client: tuple[str, int]) -> None:
        if self._passes():
            self.counters.downstream += 1
            self._forward(self._front, data, client)
