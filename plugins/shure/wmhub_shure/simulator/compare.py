"""Compare the hub's normalised state with a simulator's, field by field (for tests and benchmarks)."""

from __future__ import annotations

from typing import Any

from hub.model import Device
from hub.testing import DriverHarness, eventually
from wmhub_shure.simulator.core import ShureSimulator


def hub_state(harness: DriverHarness, device_id: str | None, sim: ShureSimulator) -> dict[str, Any] | None:
    """The hub's view of the device, restricted to the fields the simulator's family reports."""
    device: Device | None = harness.store.get(device_id) if device_id else None
    if device is None:
        return None
    wanted = sim.state
    channels = {
        channel.index: {name: getattr(channel, name) for name in wanted["channels"][channel.index]}
        for channel in device.channels
        if channel.index in wanted["channels"]
    }
    return {"device": {name: getattr(device, name) for name in wanted["device"]}, "channels": channels}


def differences(harness: DriverHarness, device_id: str | None, sim: ShureSimulator) -> list[str]:
    """Every field where the hub and the simulator disagree ([] when they agree)."""
    seen = hub_state(harness, device_id, sim)
    if seen is None:
        return ["device not known to the hub"]
    wanted = sim.state
    found = [
        f"device.{name}: hub {seen['device'][name]!r} != sim {value!r}"
        for name, value in wanted["device"].items()
        if seen["device"][name] != value
    ]
    for index, fields in wanted["channels"].items():
        hub_fields = seen["channels"].get(index, {})
        found.extend(
            f"ch{index}.{name}: hub {hub_fields.get(name)!r} != sim {value!r}"
            for name, value in fields.items()
            if hub_fields.get(name) != value
        )
    return found


async def wait_until_agreed(
    harness: DriverHarness, device_id: str | None, sim: ShureSimulator, what: str, timeout: float = 5.0
) -> None:
    """Wait until the hub agrees with the simulator on every field; fail listing the disagreements."""
    try:
        await eventually(lambda: not differences(harness, device_id, sim), timeout, what)
    except AssertionError:
        raise AssertionError(f"{what}: {differences(harness, device_id, sim)}") from None
