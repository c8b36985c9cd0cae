"""A command that meets a broken or control-less plugin still gets a clear answer, and the hub goes on."""

from __future__ import annotations

from typing import Any

import pytest

from hub import hookimpl
from hub.drivers import DeviceSink, Driver, DriverSettings, Endpoint
from hub.hookspecs import DriverSpec
from hub.model import Command, CommandKind, CommandResult, InvalidValueError, NumberLimits
from hub.testing import DriverHarness
from tests.test_web_api import BenchReceiver


class ReadOnlyReceiver(BenchReceiver):
    """A receiver whose driver keeps the Driver base class's apply: it has no controls."""

    apply = Driver.apply


class BuggyReceiver(BenchReceiver):
    """A receiver whose driver's apply has a bug."""

    async def apply(self, command: Command) -> CommandResult:
        raise ZeroDivisionError("division by zero")


class Watching:
    """A plugin that reads receivers (scheme ``watch``) and has no controls at all."""

    scheme = "watch"
    driver: type[Driver] = ReadOnlyReceiver

    @hookimpl
    def register_drivers(self, register: Any) -> None:
        def factory(endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> Driver:
            return self.driver(endpoint, sink, settings)

        register(DriverSpec(scheme=self.scheme, vendor=self.scheme, families=(), factory=factory, default_port=1))


class Buggy(Watching):
    """A plugin whose driver's control has a bug."""

    scheme = "buggy"
    driver = BuggyReceiver


async def test_a_plugin_bug_and_a_plugin_without_controls_each_answer_with_a_code() -> None:
    async with DriverHarness() as hub:
        hub.plugins.register(Watching(), "watching")
        hub.plugins.register(Buggy(), "buggy")
        results = {}
        for scheme in ("watch", "buggy"):
            device = await hub.device(hub.add(f"{scheme}://rack-a"))
            command = Command(device_id=device.id, channel=1, kind=CommandKind.NAME, value="Vox")
            results[scheme] = await hub.apply(command)
        assert (results["watch"].ok, results["watch"].code) == (False, "not_supported")
        assert results["watch"].error == "ReadOnlyReceiver has no controls"
        assert (results["buggy"].ok, results["buggy"].code) == (False, "plugin_error")
        assert results["buggy"].error == "plugin buggy raised ZeroDivisionError: 'division by zero'"
        # the bug cost that one command only: the device is still watched
        assert all(device.online for device in hub.store.devices.values())


def test_a_value_off_the_grid_is_named_as_it_was_given() -> None:
    """Rounded for the message, 473.3751 would read 473.375, a value that is on the grid."""
    limits = NumberLimits(min=470.0, max=608.0, step=0.025, unit="MHz")
    with pytest.raises(InvalidValueError, match=r"frequency 473\.3751 MHz is not on the device's 0\.025 MHz grid"):
        limits.check(473.3751, "frequency")
