"""The device manager finds a device by its id through an index kept as devices take, change and lose ids."""

from __future__ import annotations

import asyncio

from hub import hookimpl
from hub.devices import DeviceManager
from hub.drivers import DeviceSink, Driver, DriverSettings, Endpoint
from hub.hookspecs import DriverSpec
from hub.model import Command, CommandResult
from hub.plugins import PluginHost
from hub.state import StateStore
from hub.testing import eventually

# what each in-process receiver calls itself, by port
SERIALS: dict[int, str] = {}


class NamedReceiver(Driver):
    async def connect(self) -> None:
        self.sink.identify(unique_id=SERIALS[self.endpoint.port], family="rx", model="R-1", channel_count=1)

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None

    async def apply(self, command: Command) -> CommandResult:
        return CommandResult(ok=True)


class NamedPlugin:
    @hookimpl
    def register_drivers(self, register: object) -> None:
        def factory(endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> Driver:
            return NamedReceiver(endpoint, sink, settings)

        register(DriverSpec(scheme="named", vendor="named", families=("rx",), factory=factory, default_port=1))  # type: ignore[operator]


def manager() -> DeviceManager:
    plugins = PluginHost()
    plugins.register(NamedPlugin(), "named")
    return DeviceManager(plugins, StateStore(), DriverSettings(io_timeout_s=1.0, offline_after_s=5.0))


async def test_a_device_is_found_by_the_id_it_took_and_no_longer_by_one_it_gave_up() -> None:
    SERIALS.update({1: "A1", 2: "B2"})
    devices = manager()
    try:
        first, second = devices.add("named://127.0.0.1:1"), devices.add("named://127.0.0.1:2")
        await eventually(lambda: devices.find("named-A1") and devices.find("named-B2"), what="both identified")
        assert devices.find("named-A1") is first and devices.find("named-B2") is second
        assert devices.find("named://127.0.0.1:2") is second, "by URL too"

        # the receiver at port 1 was swapped for another: its driver identifies a new device
        first.handle.identify(unique_id="C3", family="rx", model="R-1", channel_count=1)
        assert devices.find("named-C3") is first
        assert devices.find("named-A1") is None

        assert await devices.remove("named-B2")
        assert devices.find("named-B2") is None and devices.find("named-C3") is first
    finally:
        await devices.close()


async def test_a_restored_id_is_found_before_the_device_answers() -> None:
    SERIALS[3] = "D4"
    devices = manager()
    try:
        restored = devices.add("named://127.0.0.1:3", device_id="named-D4")
        assert devices.find("named-D4") is restored
    finally:
        await devices.close()
