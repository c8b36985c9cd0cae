"""Helpers for tests that run the hub's device path against this plugin's UDP simulators (SSCv1, G4)."""

from __future__ import annotations

from typing import Any, Protocol

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
