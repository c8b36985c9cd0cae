"""The fleet board in Chromium: two hubs with Shure simulators on one Mosquitto, one fleet showing both.

The board is the hub's own, unchanged: each hub is a group (keys 1-9), the tiles of a hub whose receivers
went away say so, and a rename typed on the fleet board reaches the receiver through its own hub.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Browser, expect
from wmhub_shure.simulator import ShureSimulator

from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.mosquitto import TestBroker
from tests.test_scale_fleet import TOKEN, running_fleet


@contextlib.asynccontextmanager
async def site_hub(
    broker: TestBroker, hub_id: str, receivers: list[ShureSimulator], data_dir: Path
) -> AsyncIterator[Hub]:
    """A hub with Shure receivers, publishing to ``broker``, with no board of its own."""
    plugins = PluginHost()
    plugins.load_entry_points(only="shure")
    config = HubConfig(
        hub_id=hub_id,
        data_dir=data_dir,
        devices=[receiver.url for receiver in receivers],
        mqtt=MqttSettings(url=broker.url),
        http=HttpSettings(enabled=False),
        discovery=DiscoverySettings(enabled=False),
    )
    async with compose_hub(config, plugins) as hub:
        await eventually(
            lambda: sum(d.online for d in hub.store.devices.values()) == len(receivers), 10, f"{hub_id}'s receivers"
        )
        yield hub


async def test_fleet_board_groups_tiles_by_hub_and_renames_through_the_owner(
    browser: Browser, mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    async with (
        ShureSimulator("ulxd4d") as foh_receiver,
        ShureSimulator("ad4q") as monitor_receiver,
        site_hub(mqtt_broker, "foh", [foh_receiver], tmp_path / "foh") as foh,
        site_hub(mqtt_broker, "monitors", [monitor_receiver], tmp_path / "monitors") as monitors,
        running_fleet(mqtt_broker.url, tmp_path / "fleet") as (_, base),
    ):
        foh_device = next(iter(foh.store.devices))
        page = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
        await page.goto(base + "/")
        await expect(page.locator(".tile[data-channel]")).to_have_count(6)
        await expect(page.locator("#groups button")).to_have_text(["All", "1 foh", "2 monitors"])

        await page.keyboard.press("1")
        await expect(page.locator(".tile[data-channel]")).to_have_count(2)
        await expect(page.locator(f'.tile[data-channel^="{foh_device}:"]')).to_have_count(2)

        await page.fill("#token", TOKEN)
        await page.press("#token", "Enter")
        await page.locator(f'.tile[data-channel="{foh_device}:2"] .edit').click()
        await page.fill("#editor-name", "FLEETVOX")
        await page.click("#editor-save")
        await expect(page.locator("#editor")).not_to_be_visible()
        await eventually(lambda: foh_receiver.channels[2].values["name"] == "FLEETVOX", 5, "the receiver renamed")
        await expect(page.locator(f'.tile[data-channel="{foh_device}:2"] .name')).to_have_text("FLEETVOX")

        # the monitors hub shuts down: its receivers' tiles turn offline on the fleet board
        await page.keyboard.press("0")
        await monitors.stop()
        monitor_tiles = page.locator(f'.tile[data-channel^="{next(iter(monitors.store.devices))}:"]')
        await expect(monitor_tiles.locator(".state")).to_have_text(["receiver offline"] * 4)
        await expect(page.locator(f'.tile[data-channel="{foh_device}:1"]')).not_to_have_class("tile offline")
