"""The plugin's demo fleet and the simulators' command line: what they start comes online through the drivers."""

from __future__ import annotations

import asyncio
import sys

import pytest

from hub.model import Device
from hub.testing import DriverHarness, eventually, interrupt


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
            # an in-ear transmitter and a charger too
            assert {"EW-DX EM 4", "EM6000", "EM 300-500 G4", "SR IEM G4", "CHG 70N"} <= models

            def live(device: Device) -> bool:
                # a receiver meters its link; an in-ear transmitter, which has none, its audio; a charger's
                # bays say whether a pack is in
                fields = device.capabilities.channel_fields if device.capabilities else frozenset()
                meter = next(f for f in ("rf_quality_percent", "audio_dbfs", "tx_present") if f in fields)
                return all(getattr(channel, meter) is not None for channel in device.channels)

            def metering() -> bool:
                shown = [hub.store.get(device.id) for device in devices]
                return all(d is not None and live(d) for d in shown)

            await eventually(metering, 3.0, "meters from every receiver")
        finally:
            for fleet in fleets:
                await fleet.stop()


@pytest.mark.parametrize(
    ("protocol", "scheme"),
    [
        ("ssc1", "sennheiser-ssc://"),
        ("g4", "sennheiser-g4://"),
        ("iem", "sennheiser-iem-g4://"),
        ("ssc2", "sennheiser-ssc2://"),
    ],
)
async def test_the_command_line_starts_simulators_a_hub_can_reach_and_stops_on_ctrl_c(
    hub: DriverHarness, protocol: str, scheme: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wmhub_sennheiser.simulator", "--protocol", protocol, "--count", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        urls = []
        for _ in range(2):
            async with asyncio.timeout(10.0):
                urls.append((await process.stdout.readline()).decode().strip())
        assert all(url.startswith(scheme + "127.0.0.1:") for url in urls) and len(set(urls)) == 2
        device = await hub.device(hub.add(urls[1]))
        assert device.channels
    finally:
        status = await interrupt(process)
    assert status == 0 and await process.stderr.read() == b""


async def test_the_command_line_names_the_protocols_when_given_another() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wmhub_sennheiser.simulator", "--protocol", "ssc9",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert "invalid choice: 'ssc9'" in stderr.decode() and "g4" in stderr.decode()
