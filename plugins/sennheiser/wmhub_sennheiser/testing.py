"""Helpers for tests that run the hub's device path against this plugin's UDP simulators (SSCv1, G4)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Protocol, Self

from hub.model import Device
from hub.testing import DriverHarness, eventually
from wmhub_sennheiser.simulator.common import mismatches


class SimulatedDevice(Protocol):
    """What the UDP simulators offer a test: their URL and what a correct client must show."""

    @property
    def url(self) -> str: ...

    def expected_channels(self) -> dict[int, dict[str, Any]]: ...


async def online(hub: DriverHarness, simulator: SimulatedDevice, query: str = "") -> Device:
    """Add the simulator's URL (plus ``query``) and wait until the driver has finished connecting.

    A device shows online as soon as it is identified, before the driver has subscribed; a test that
    looks at the simulator's subscriptions right away must wait for the whole of ``connect``.
    """
    managed = hub.add(simulator.url + query)
    device = await hub.device(managed)
    await eventually(lambda: managed.supervisor.connected_since is not None, 5.0, "the driver to finish connecting")
    return device


async def shows(hub: DriverHarness, device_id: str, simulator: SimulatedDevice, timeout: float = 3.0) -> None:
    """Wait until every channel the hub shows equals what the simulator says it must show."""

    def same() -> bool:
        device = hub.store.get(device_id)
        return device is not None and not mismatches(device.channels, simulator.expected_channels())

    try:
        await eventually(same, timeout, "the hub to show the simulator's state")
    except AssertionError:
        # fail with the differing fields rather than a bare timeout
        device = hub.store.get(device_id)
        assert device is not None
        assert mismatches(device.channels, simulator.expected_channels()) == {}


class UdpPeer(asyncio.DatagramProtocol):
    """A bare UDP socket on loopback for tests of a simulator's own side of the protocol.

    ``async with UdpPeer(port) as peer``: ``peer.send(data)``, then ``await peer.receive()`` for each datagram.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._received: asyncio.Queue[bytes] = asyncio.Queue()
        self._transport: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self, remote_addr=("127.0.0.1", self.port))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._transport is not None:
            self._transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._received.put_nowait(data)

    def send(self, data: bytes) -> None:
        assert self._transport is not None, "use UdpPeer in an async with block"
        self._transport.sendto(data)

    async def receive(self, timeout: float = 2.0) -> bytes:
        """The next datagram; TimeoutError if none arrives within ``timeout``."""
        async with asyncio.timeout(timeout):
            return await self._received.get()

    def discard_received(self) -> None:
        while not self._received.empty():
            self._received.get_nowait()
