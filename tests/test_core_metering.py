"""Demand-driven metering (hub/metering.py): receivers meter as fast as the fastest consumer present needs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from wmhub_shure.simulator import ShureSimulator

from hub import hookimpl
from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.drivers import PollingDriver
from hub.hookspecs import DriverSpec
from hub.metering import IDLE_RATE_MS, MeterDemand, fitted_rate
from hub.model import Capabilities, Command, CommandKind, CommandLimits, CommandResult, NumberLimits
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


class GridReceiver:
    """A receiver over TCP whose meter rate menu goes in 50 ms steps: ``RATE <ms>`` sets it, ``PING`` is
    answered; every line it was sent is kept."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def start(self) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := (await reader.readline()).decode().strip():
                self.lines.append(line)
                writer.write(b"OK\n")
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port


class GridDriver(PollingDriver):
    poll_interval_s = 0.2

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.endpoint.host, self.endpoint.port)
        await self._ask("PING")
        self.sink.identify(unique_id="G1", family="grid", model="G-1", channel_count=1)

    async def _ask(self, line: str) -> None:
        self._writer.write(line.encode() + b"\n")
        async with asyncio.timeout(self.settings.io_timeout_s):
            if not await self._reader.readline():
                raise ConnectionError("the receiver closed the connection")

    async def poll(self) -> None:
        await self._ask("PING")

    async def close(self) -> None:
        self._writer.close()

    async def apply(self, command: Command) -> CommandResult:
        await self._ask(f"RATE {command.value:g}")  # numbers arrive as floats
        return CommandResult(ok=True, value=command.value)


GRID_CAPABILITIES = Capabilities(
    channel_fields=frozenset({"name"}),
    commands={
        CommandKind.METER_RATE: CommandLimits(
            channel=False, device=True, number=NumberLimits(min=0, max=10000, step=50, unit="ms")
        )
    },
)


class GridPlugin:
    @hookimpl
    def register_drivers(self, register: Callable[[DriverSpec], None]) -> None:
        register(DriverSpec(scheme="grid", vendor="grid", families=("grid",), factory=GridDriver, default_port=1))

    @hookimpl
    def device_capabilities(self, family: str | None) -> Capabilities | None:
        return GRID_CAPABILITIES if family == "grid" else None


async def test_the_hubs_own_rate_is_fitted_to_a_familys_meter_rate_grid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: a board wanting levels every 330 ms, and a family whose METER_RATE goes in 50 ms
    steps. The hub refused its own 330 ms against the family's limits, at debug level, and said receivers
    now metered every 330 ms; the receiver kept its old rate. It gets 300 ms (at least as fast as asked)."""
    receiver = GridReceiver()
    port = await receiver.start()
    plugins = PluginHost()
    plugins.register(GridPlugin(), name="grid")
    config = HubConfig(
        data_dir=tmp_path,
        devices=[f"grid://127.0.0.1:{port}"],
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN, live_interval_s=0.33),
    )
    caplog.set_level(logging.INFO, logger="hub")
    try:
        async with compose_hub(config, plugins) as hub:
            await eventually(lambda: (device := hub.store.get("grid-G1")) and device.online, 10, "the receiver")
            assert hub.web is not None
            live = f"http://127.0.0.1:{hub.web.port}/api/v1/live"
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(live, headers={"Authorization": f"Bearer {TOKEN}"}),
            ):
                await eventually(lambda: "RATE 300" in receiver.lines, 5, "the board's rate, on the receiver's grid")
                await eventually(
                    lambda: "grid receivers (family grid) meter every 300 ms" in caplog.text, 5, "the rate said"
                )
        assert not [line for line in receiver.lines if line.startswith("RATE") and line not in ("RATE 300",)]
    finally:
        receiver.server.close()


def test_a_fitted_rate_is_on_the_grid_at_least_as_fast_and_never_off() -> None:
    grid = NumberLimits(min=0, max=10000, step=50, unit="ms")
    assert fitted_rate(grid, 330) == 300 and fitted_rate(grid, 350) == 350
    assert fitted_rate(grid, 30) == 50, "0 is metering off: the fastest rate on the grid instead"
    assert fitted_rate(grid, 20000) == 10000
    assert fitted_rate(NumberLimits(min=100, max=99999, step=1, unit="ms"), 330) == 330
    assert fitted_rate(NumberLimits(min=0, max=0, step=1, unit="ms"), 330) == 330, "no rate: the family says"
    assert fitted_rate(None, 330) == 330
