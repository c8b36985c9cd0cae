"""Many receivers in one simulator process and one hub: all connect, all stream, all switch metering off."""

from __future__ import annotations

import asyncio

from wmhub_shure.simulator import start_many

from hub.drivers import DriverSettings
from hub.testing import DriverHarness, eventually

RECEIVERS = 30  # 120 channels at 10 SAMPLE/s each (the benchmark in bench/ goes further)


async def test_many_receivers_connect_stream_and_close_cleanly() -> None:
    simulators = await start_many("ulxd4q", RECEIVERS)
    try:
        settings = DriverSettings(meter_rate_ms=100, io_timeout_s=2.0, offline_after_s=5.0)
        async with DriverHarness("shure", settings=settings) as hub:
            devices = [hub.add(sim.url) for sim in simulators]
            await eventually(
                lambda: all(d.handle.device_id and hub.store.get(d.handle.device_id) for d in devices),
                timeout=15.0,
                what="every receiver identified",
            )
            await eventually(lambda: all(sim.metering_on for sim in simulators), timeout=10.0, what="metering on")
            for sim in simulators:
                for index in sim.channels:
                    sim.set_meters(index, rf_dbm=-77, audio_dbfs=-9)  # travels in SAMPLE only
            await eventually(
                lambda: all(
                    (channel.rf_dbm, channel.audio_dbfs) == (-77, -9)
                    for device in hub.store.devices.values()
                    for channel in device.channels
                ),
                timeout=10.0,
                what="new meter values on every channel",
            )
            assert all(device.supervisor.reconnects == 0 for device in devices)
        await eventually(lambda: not any(sim.peers for sim in simulators), what="connections closed")
        assert not any(record.metering_left_on for sim in simulators for record in sim.closed_clients)
    finally:
        await asyncio.gather(*(sim.stop() for sim in simulators))
