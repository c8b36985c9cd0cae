"""Board tests in headless Chromium (Debian's package, see scripts/install-browser.sh) against a real Hub
connected through the Shure driver to Shure protocol simulators on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright
from wmhub_shure.simulator import ShureSimulator

from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.frequency import Band, PlanSettings, coordinate
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.browser.rig import CHROMIUM, CHROMIUM_ARGS, FAMILIES, TOKEN, Board


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        await browser.close()


@pytest.fixture
async def board(tmp_path: Path) -> AsyncIterator[Board]:
    simulators = [await ShureSimulator(family, seed=n).start() for n, family in enumerate(FAMILIES)]
    # a coordinated plan: the simulators' own frequencies would raise frequency conflicts of their own
    slots = [(simulator, index) for simulator in simulators for index in simulator.channels]
    plan = coordinate(len(slots), [], Band(470.0, 534.0, 25.0), PlanSettings())
    for (simulator, index), candidate in zip(slots, plan.frequencies, strict=True):
        simulator.set_channel(index, frequency_mhz=candidate.frequency_mhz)
    config = HubConfig(
        hub_id="boardtest",
        data_dir=tmp_path,
        meter_rate_ms=200,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN),
    )
    plugins = PluginHost()
    plugins.load_entry_points(only="shure")
    hub = compose_hub(config, plugins)
    try:
        async with hub:
            for simulator in simulators:
                await hub.add_device(simulator.url, source="test")
            await eventually(
                lambda: len(hub.store.devices) == len(simulators) and all(d.online for d in hub.store.devices.values()),
                timeout=10,
                what="simulated receivers online",
            )
            yield Board(hub, simulators, f"http://127.0.0.1:{hub.web.port}/", TOKEN)
    finally:
        for simulator in simulators:
            await simulator.stop()


@pytest.fixture
async def page(browser: Browser, board: Board) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    yield page
    await context.close()
