"""A driver narrows its device's capabilities to what the device said of itself (DeviceSink.update_capabilities),
checked like the plugin's device_capabilities answer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from hub import hookimpl
from hub.drivers import DeviceSink, Driver, DriverSettings, Endpoint
from hub.hookspecs import DriverSpec
from hub.model import Capabilities, Command, CommandKind, CommandLimits, CommandResult, NumberLimits
from hub.testing import DriverHarness, eventually


def frequency_range(low: float, high: float) -> Capabilities:
    limits = CommandLimits(number=NumberLimits(min=low, max=high, step=0.025, unit="MHz"))
    return Capabilities(channel_fields=frozenset({"frequency_mhz"}), commands={CommandKind.FREQUENCY: limits})


FAMILY_RANGE = frequency_range(470.0, 960.0)
# what each tuner's device says of its own range once connected (tuner://<host>)
OWN_RANGE: dict[str, Any] = {
    "narrow": frequency_range(566.0, 608.0),
    "inverted": frequency_range(608.0, 566.0),
    "garbage": "566-608",
}


class Tuner(Driver):
    """A one-channel receiver that reads its own tuning range after identifying itself."""

    async def connect(self) -> None:
        self.sink.identify(unique_id=self.endpoint.host, family="tuner", model="T-1", channel_count=1)
        self.sink.update_capabilities(OWN_RANGE[self.endpoint.host])

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None

    async def apply(self, command: Command) -> CommandResult:
        return CommandResult(ok=True, value=command.value)


class TunerPlugin:
    @hookimpl
    def register_drivers(self, register: Any) -> None:
        def factory(endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> Driver:
            return Tuner(endpoint, sink, settings)

        register(DriverSpec(scheme="tuner", vendor="tuner", families=("tuner",), factory=factory, default_port=1))

    @hookimpl
    def device_capabilities(self, family: str | None, model: str | None) -> Capabilities | None:
        return FAMILY_RANGE


async def frequency(hub: DriverHarness, device_id: str, mhz: float) -> CommandResult:
    return await hub.apply(Command(device_id=device_id, channel=1, kind=CommandKind.FREQUENCY, value=mhz))


async def test_a_device_advertises_and_is_held_to_the_range_its_driver_read_from_it() -> None:
    async with DriverHarness() as hub:
        hub.plugins.register(TunerPlugin(), "tuners")
        device = await hub.device(hub.add("tuner://narrow"))

        def advertised() -> NumberLimits | None:
            stored = hub.store.get(device.id)
            limits = stored.capabilities.commands.get(CommandKind.FREQUENCY) if stored and stored.capabilities else None
            return limits.number if limits is not None else None

        await eventually(lambda: advertised() == NumberLimits(min=566.0, max=608.0, step=0.025, unit="MHz"))
        refused = await frequency(hub, device.id, 500.0)
        assert (refused.ok, refused.code) == (False, "invalid")
        assert "566" in (refused.error or "")
        assert (await frequency(hub, device.id, 590.0)).ok


@pytest.mark.parametrize(
    ("host", "kept", "problem"),
    [
        # an unusable range is left out as if never declared, like one the hook declares
        (
            "inverted",
            set(),
            "update_capabilities: commands[frequency].number: min 608 above max 566 (inverted): "
            "the command is left out, as if not declared",
        ),
        # no Capabilities at all: the family's stand
        ("garbage", {CommandKind.FREQUENCY}, "update_capabilities returned '566-608', not Capabilities"),
    ],
)
async def test_capabilities_a_driver_cannot_have_meant_are_refused_and_said_once(
    host: str, kept: set[CommandKind], problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with DriverHarness() as hub:
        hub.plugins.register(TunerPlugin(), "tuners")
        device = await hub.device(hub.add(f"tuner://{host}"))

        def commands() -> set[CommandKind]:
            stored = hub.store.get(device.id)
            return set(stored.capabilities.commands) if stored and stored.capabilities else set()

        await eventually(lambda: commands() == kept, what=f"the commands {kept}")
        assert hub.plugins.records["tuners"].error == problem
        assert [r.getMessage() for r in caplog.records if "update_capabilities" in r.getMessage()] == [
            f"plugin tuners: {problem}"
        ]
