"""A screenshot of the fleet board: ``.venv/bin/python -m tests.browser.fleet_screenshot [OUT_DIR]``.

Three hubs (a front-of-house rack, monitor world, a second stage) with Shure simulators publish to a
Mosquitto of their own; a fleet board shows them all. The second stage's hub is then stopped, so the
picture shows one hub's tiles offline. Saves ``fleet-board.png``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright
from wmhub_shure.simulator import ShureSimulator

from tests.browser.rig import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_fleet_board import site_hub
from tests.mosquitto import running_broker
from tests.test_scale_fleet import running_fleet

METERS_SHOWN = "[...document.querySelectorAll('.meter-label')].filter(l => /\\d dBm/.test(l.textContent)).length >= 6"
RACKS = {"foh": ("ulxd4q", "ad4d"), "monitors": ("ad4q",), "stage2": ("ulxd4d",)}


async def take(out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory() as data_dir:
        async with running_broker() as broker, contextlib.AsyncExitStack() as stack:
            hubs = {}
            for seed, (hub_id, families) in enumerate(RACKS.items()):
                receivers = [await stack.enter_async_context(ShureSimulator(f, seed=seed)) for f in families]
                hubs[hub_id] = await stack.enter_async_context(
                    site_hub(broker, hub_id, receivers, Path(data_dir) / hub_id)
                )
            _, base = await stack.enter_async_context(running_fleet(broker.url, Path(data_dir) / "fleet"))
            await hubs["stage2"].stop()
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = await browser.new_page(viewport={"width": 1440, "height": 900})
                await page.goto(base + "/")
                await page.wait_for_selector(".tile.offline")
                # meters reach the fleet a second or two after the state: a picture with levels in it
                await page.wait_for_function(METERS_SHOWN)
                path = out_dir / "fleet-board.png"
                await page.screenshot(path=str(path), full_page=True)
                await browser.close()
    return path


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots")
    out_dir.mkdir(parents=True, exist_ok=True)
    print(asyncio.run(take(out_dir)))


if __name__ == "__main__":
    main()
