"""What the UDP simulators share: the truth of a channel, its animation, fault injection, mDNS.

A simulator keeps each channel's state in hub terms (:class:`SimChannel`) and renders it in its own
protocol's encoding; ``expected_channels()`` says what a correct client must show from that encoding.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Self

from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

Client = tuple[str, int]
TICK_S: Final = 0.02


@dataclass
class SimChannel:
    """One receiver channel and its transmitter, as the simulated device knows them."""

    index: int
    name: str
    frequency_khz: int
    muted: bool = False
    gain_db: int = 0
    tx_on: bool = True
    tx_model: str = "SKM"
    tx_muted: bool = False
    battery_percent: int = 90
    battery_runtime_min: int = 420
    battery_type: str = "Battery"
    rf_quality: int = 80  # percent of a good link
    rssi_dbm: float = -55.0
    antenna: int = 1  # 1 = A, 2 = B
    af_dbfs: float = -30.0
    rx_warnings: list[str] = field(default_factory=list)
    tx_locked: bool = False
    tx_trim_db: int = 0
    battery_health_percent: int = 96
    battery_cycles: int = 41
    bank: int = 1
    preset: int = 3  # the channel within the bank
    encrypted: bool = True

    def tx_warnings(self) -> list[str]:
        if not self.tx_on:
            return []
        return ["LowBattery"] if self.battery_percent <= 20 else []

    def animate(self, rng: random.Random, tx_churn: float) -> None:
        """One step of life: the battery drains, RF and audio wander, a transmitter may switch off or on."""
        if rng.random() < tx_churn:
            self.tx_on = not self.tx_on
        if rng.random() < 0.1 and self.battery_percent > 0:
            self.battery_percent -= 1
            self.battery_runtime_min = max(0, self.battery_runtime_min - 5)
        self.rf_quality = max(5, min(100, self.rf_quality + rng.randint(-6, 6)))
        self.rssi_dbm = max(-95.0, min(-20.0, self.rssi_dbm + rng.choice((-1.5, -0.5, 0.5, 1.5))))
        self.af_dbfs = max(-60.0, min(0.0, self.af_dbfs + rng.choice((-3.0, -1.0, 1.0, 3.0))))
        if rng.random() < 0.1:
            self.antenna = 3 - self.antenna


def default_channels(count: int, base_khz: int, names: str = "Mic") -> list[SimChannel]:
    return [
        SimChannel(index=n, name=f"{names} {n}", frequency_khz=base_khz + 1200 * n, gain_db=3 * (n % 4))
        for n in range(1, count + 1)
    ]


def mismatches(channels: Iterable[Any], expected: Mapping[int, Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """Where a client's channels (hub.model.Channel) differ from ``expected_channels()``: field -> (shown, due)."""
    shown = {channel.index: channel.model_dump() for channel in channels}
    found: dict[int, dict[str, Any]] = {}
    for index, fields in expected.items():
        actual = shown.get(index, {})
        wrong = {name: (actual.get(name), due) for name, due in fields.items() if actual.get(name) != due}
        if wrong:
            found[index] = wrong
    return found


class UdpSimulator(asyncio.DatagramProtocol, ABC):
    """A UDP device on loopback with fault injection. Subclasses implement :meth:`handle` and :meth:`tick`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tick_s: float = 1.0, seed: int = 1) -> None:
        self.host = host
        self.port = port
        self.tick_s = tick_s  # how often the state changes by itself; 0 freezes it (tests change it by hand)
        self.tx_churn = 0.0  # chance per tick that a transmitter switches off or on
        self.loss_percent = 0.0  # datagrams dropped at random, each way
        self.silent = False  # neither hears nor answers
        self.boots = 1
        self.received = 0  # datagrams that reached the device, for tests counting retries
        self.clients: set[Client] = set()
        self.rng = random.Random(seed)  # nosec B311 # simulated values, seeded for reproducible tests
        self._transport: asyncio.DatagramTransport | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._down_until = 0.0

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        self._ticker = asyncio.create_task(self._tick_forever())
        return self.port

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    @abstractmethod
    def url(self) -> str:
        """The device URL a hub connects to."""

    def _dropped(self) -> bool:
        if self.silent or time.monotonic() < self._down_until:
            return True
        return self.loss_percent > 0 and self.rng.random() * 100 < self.loss_percent

    def datagram_received(self, data: bytes, addr: Client) -> None:
        if self._dropped():
            return
        self.received += 1
        self.clients.add(addr)
        self.handle(data, addr)

    def send(self, data: bytes, client: Client) -> None:
        if self._transport is not None and not self._dropped():
            self._transport.sendto(data, client)

    def send_garbage(self) -> None:
        """Fault: every client receives a datagram that is not a valid message."""
        for client in self.clients:
            self.send(b"\xff\x00garbage{]\r", client)

    def reboot(self, down_s: float = 0.3) -> None:
        """Fault: forget every subscription and hear nothing for ``down_s``, as a power cycle does."""
        self.boots += 1
        self._down_until = time.monotonic() + down_s
        self.forget_clients()

    def boot(self) -> None:
        """End a reboot now: one with ``down_s=math.inf`` lasts until a test has seen what it wanted."""
        self._down_until = 0.0

    async def _tick_forever(self) -> None:
        next_animation = time.monotonic() + self.tick_s
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            if self.tick_s > 0 and now >= next_animation:
                next_animation = now + self.tick_s
                self.animate()
            if now >= self._down_until:
                self.tick(now)

    @abstractmethod
    def handle(self, data: bytes, client: Client) -> None:
        """Answer one datagram."""

    @abstractmethod
    def tick(self, now: float) -> None:
        """Send what is due (periodic reports), end what expired."""

    @abstractmethod
    def animate(self) -> None:
        """Change the state by itself, and tell subscribers."""

    @abstractmethod
    def forget_clients(self) -> None:
        """Drop subscriptions and keep-alives (a reboot)."""


def command_line(description: str, models: Iterable[str], default_model: str) -> argparse.ArgumentParser:
    """The options every UDP simulator's ``main`` takes; a simulator may add its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=default_model, choices=sorted(models))
    parser.add_argument("--port", type=int, default=0, help="UDP port of the first device; 0 = any free port")
    parser.add_argument("--count", type=int, default=1, help="how many devices")
    parser.add_argument("--loss", type=float, default=0.0, help="datagrams dropped each way, percent")
    parser.add_argument("--tx-churn", type=float, default=0.02, help="chance per second a transmitter toggles")
    return parser


def serve(make: Callable[[int], UdpSimulator], arguments: argparse.Namespace) -> None:
    """Run ``arguments.count`` simulators (``make(n)`` builds the n-th) and print their URLs, until Ctrl-C."""

    async def run() -> None:
        simulators = [make(n) for n in range(arguments.count)]
        try:
            for simulator in simulators:
                simulator.tx_churn = arguments.tx_churn
                simulator.loss_percent = arguments.loss
                await simulator.start()
                print(simulator.url, flush=True)
            await asyncio.Event().wait()
        finally:
            for simulator in simulators:
                await simulator.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


class MdnsAdvertisement:
    """A DNS-SD registration on loopback only, as an SSC device announces itself."""

    def __init__(
        self, service_type: str, instance: str, port: int, properties: Mapping[str, str], host: str = "127.0.0.1"
    ) -> None:
        self.info = AsyncServiceInfo(
            service_type,
            f"{instance}.{service_type}",
            addresses=[socket.inet_aton(host)],
            port=port,
            properties=dict(properties),
            server=f"{instance.replace(' ', '-').lower()}.local.",
        )
        self._host = host
        self._zeroconf: AsyncZeroconf | None = None

    async def start(self) -> None:
        self._zeroconf = AsyncZeroconf(interfaces=[self._host])
        await self._zeroconf.async_register_service(self.info)

    async def stop(self) -> None:
        if self._zeroconf is not None:
            with contextlib.suppress(Exception):  # shutting down: nothing left to tell
                # the call hands back the task that sends the goodbye: closing before it ran sent none
                await (await self._zeroconf.async_unregister_service(self.info))
            await self._zeroconf.async_close()
            self._zeroconf = None
