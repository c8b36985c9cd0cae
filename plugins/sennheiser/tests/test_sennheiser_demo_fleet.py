"""The plugin's demo fleet: every simulated receiver comes online through the plugin's own drivers."""

from __future__ import annotations

from hub.testing import DriverHarness, eventually


async def test_the_demo_fleet_comes_online_with_live_channels() -> None:
    async with DriverHarness("sennheiser") as hub:
        fleets = [fleet for plugin, fleet in hub.plugins.collect("register_simulators") if plugin == "sennheiser"]
        assert fleets
        urls = [url for fleet in fleets for url in await fleet.start()]
        try:
            assert any(url.startswith("sennheiser-ssc://") for url in urls)
            assert any(url.startswith("sennheiser-g4://") for url in urls)
            devices = [await hub.device(hub.add(url)) for url in urls]
            models = {device.model for device in devices}
            assert {"EW-DX EM 4", "EM6000", "EM 300-500 G4"} <= models

            def metering() -> bool:
                shown = [hub.store.get(device.id) for device in devices]
                return all(d is not None and all(c.rf_quality_percent is not None for c in d.channels) for d in shown)

            await eventually(metering, 3.0, "meters from every receiver")
        finally:
            for fleet in fleets:
                await fleet.stop()
