"""Demand-driven metering (hub/metering.py): receivers meter as fast as the fastest consumer present needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from wmhub_shure.simulator import ShureSimulator

from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.metering import IDLE_RATE_MS, MeterDemand
from hub.plugins import PluginHost
from hub.testing import eventually

TOKEN = "metering-test-token"


async def test_the_fastest_need_wins_at_once_and_a_released_one_after_the_grace() -> None:
    changes: list[int] = []
    demand = MeterDemand(None, changes.append, release_grace_s=0)
    assert demand.rate_ms == IDLE_RATE_MS and "idle" in demand.describe()
    release_mqtt = demand.need(500)
    release_board = demand.need(250)
    assert demand.rate_ms == 250 and changes == [500, 250]
    release_board()
    release_board()  # twice is once
    await eventually(lambda: demand.rate_ms == 500, 2, "back to the MQTT consumer's rate")
    release_mqtt()
    await eventually(lambda: demand.rate_ms == IDLE_RATE_MS, 2, "back to idle")
    assert changes == [500, 250, 500, IDLE_RATE_MS]
    assert demand.need(20) and demand.rate_ms == 100, "never faster than receivers take"


async def test_a_pinned_rate_stays_whoever_comes() -> None:
    changes: list[int] = []
    demand = MeterDemand(200, changes.append, release_grace_s=0)
    assert demand.look_interval_s == IDLE_RATE_MS / 1000
    release = demand.need(500)
    # held readings are still merged only as often as the consumers look: samples in between cost no decode
    assert demand.rate_ms == 200 and demand.look_interval_s == 0.5
    release()
    assert demand.rate_ms == 200 and changes == [] and demand.describe() == "pinned by meter_rate_ms"
    assert demand.look_interval_s == IDLE_RATE_MS / 1000
    demand.close()


@pytest.fixture
async def quad() -> AsyncIterator[ShureSimulator]:
    sim = await ShureSimulator("ad4q", seed=5).start()
    try:
        yield sim
    finally:
        await sim.stop()


async def started_hub(tmp_path: Path, sim: ShureSimulator, meter_rate_ms: int | None) -> Hub:
    config = HubConfig(
        data_dir=tmp_path,
        meter_rate_ms=meter_rate_ms,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN),
    )
    plugins = PluginHost()
    plugins.load_entry_points(only="shure")
    hub = compose_hub(config, plugins)
    await hub.start()
    hub.metering.release_grace_s = 0.0
    await hub.add_device(sim.url, source="test")
    return hub


def metering_every(sim: ShureSimulator, rate_ms: int) -> bool:
    return all(channel.meter_rate_ms == rate_ms for channel in sim.channels.values())


async def test_an_open_board_speeds_receivers_up_and_closing_it_slows_them_down(
    tmp_path: Path, quad: ShureSimulator
) -> None:
    hub = await started_hub(tmp_path, quad, meter_rate_ms=None)
    try:
        await eventually(lambda: metering_every(quad, IDLE_RATE_MS), 5, "idle metering: history and alerts only")
        assert hub.web is not None
        live = f"http://127.0.0.1:{hub.web.port}/api/v1/live"
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(live, headers={"Authorization": f"Bearer {TOKEN}"}),
        ):
            board_ms = round(hub.web.live.interval * 1000)
            await eventually(lambda: metering_every(quad, board_ms), 5, f"metering every {board_ms} ms for the board")
            async with session.get(f"http://127.0.0.1:{hub.web.port}/api/v1/hub") as reply:
                said = (await reply.json())["config"]
            assert said["meter_rate_ms"] == board_ms and "the fastest every 500 ms" in said["meter_rate"]
        await eventually(lambda: metering_every(quad, IDLE_RATE_MS), 5, "idle again once the board closed")
        assert hub.persistence is not None
        actions = [entry.action for entry in await hub.persistence.audit.query()]
        assert actions == ["device.add"], "the hub's own rate changes are not user commands"
    finally:
        await hub.stop()


async def test_a_pinned_rate_ignores_the_board(tmp_path: Path, quad: ShureSimulator) -> None:
    hub = await started_hub(tmp_path, quad, meter_rate_ms=200)
    try:
        await eventually(lambda: metering_every(quad, 200), 5, "metering at the pinned 200 ms")
        assert hub.web is not None
        live = f"http://127.0.0.1:{hub.web.port}/api/v1/live"
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(live, headers={"Authorization": f"Bearer {TOKEN}"}) as ws,
        ):
            assert (await ws.receive_json(timeout=5))["type"] == "snapshot"
            assert metering_every(quad, 200) and hub.metering.rate_ms == 200
    finally:
        await hub.stop()
