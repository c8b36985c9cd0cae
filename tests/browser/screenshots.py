"""Screenshots of the board with the demo running: ``.venv/bin/python -m tests.browser.screenshots [OUT_DIR]``.

Starts a hub in demo mode (the plugins' simulators, through the normal driver path) on a free port,
waits until every demo receiver reports, and saves the board at desktop, phone and TV sizes and its spectrum
view; then lets the demo run for a minute so the history has something to draw, sets a show end four hours
away, and saves a channel's detail and the battery swap panel.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from playwright.async_api import Browser, async_playwright

from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.model import Command, CommandKind
from hub.testing import eventually
from tests.browser.rig import CHROMIUM, CHROMIUM_ARGS

SIZES = {
    "desktop": ({"width": 1440, "height": 900}, ""),
    "phone": ({"width": 390, "height": 844}, ""),
    "tv": ({"width": 1920, "height": 1080}, "?tv=1"),
}


async def take(out_dir: Path) -> list[Path]:
    with tempfile.TemporaryDirectory() as data_dir:
        config = HubConfig(
            hub_id="demo",
            data_dir=Path(data_dir),
            demo=True,
            meter_rate_ms=200,
            mqtt=MqttSettings(url="off"),
            discovery=DiscoverySettings(enabled=False),
            http=HttpSettings(port=0),
        )
        async with compose_hub(config) as hub:
            await eventually(
                lambda: any(d.online and d.channels for d in hub.store.devices.values()),
                timeout=15,
                what="a demo receiver online",
            )
            await asyncio.sleep(3)  # let the rest connect and the meters move: this is a picture, not a test
            saved = []
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for name, (viewport, query) in SIZES.items():
                    page = await browser.new_page(viewport=viewport, is_mobile=name == "phone")
                    await page.goto(f"http://127.0.0.1:{hub.web.port}/{query}")
                    await page.wait_for_selector(".tile[data-channel]")
                    await page.wait_for_timeout(1200)
                    path = out_dir / f"board-{name}.png"
                    await page.screenshot(path=str(path), full_page=name != "tv")
                    saved.append(path)
                    if name == "desktop":  # the spectrum view, with a conflict the demo's clean plan lacks
                        await make_a_conflict(hub)
                        await page.wait_for_selector("#spectrum g[data-finding]")
                        await page.locator("#spectrum g[data-finding]").first.dispatch_event("click")
                        path = out_dir / "board-spectrum.png"
                        await page.locator("#spectrum-panel").screenshot(path=str(path))
                        saved.append(path)
                    await page.close()
                saved += await take_show(browser, hub, out_dir)
                await browser.close()
    return saved


async def make_a_conflict(hub: Hub) -> None:
    """Retune the demo's QLX-D onto 2f1-f2 of the ULX-D's first two channels (472.025 and 476.350 MHz), as a
    hurried change at a show would: the spectrum then has a conflict to draw and explain."""
    command = Command(device_id="shure-demo-qlxd4", channel=1, kind=CommandKind.FREQUENCY, value=480.675)
    result = await hub.apply(command, "screenshots")
    assert result.ok, result


async def take_show(browser: Browser, hub: Hub, out_dir: Path) -> list[Path]:
    await asyncio.sleep(60)  # a minute of history: six 10 s buckets to draw
    base = f"http://127.0.0.1:{hub.web.port}"
    end = datetime.fromtimestamp(time.time() + 4 * 3600, UTC).isoformat()
    auth = {"Authorization": f"Bearer {hub.web.token}"}
    async with (
        aiohttp.ClientSession(headers=auth) as http,
        http.put(f"{base}/api/v1/show", json={"end_at": end, "margin_min": 15}) as response,
    ):
        response.raise_for_status()
    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    await page.goto(base + "/")
    swap_panel = page.locator("#swap-panel")
    await swap_panel.locator(".swap-item").first.wait_for()
    await page.wait_for_timeout(1200)
    swaps = out_dir / "board-swaps.png"
    await swap_panel.screenshot(path=str(swaps))
    channel_id = await page.locator("#swaps .swap-item").first.get_attribute("data-channel")
    await page.goto(f"{base}/?channel={channel_id}")
    await page.locator("#detail-charts polyline").first.wait_for()
    await page.wait_for_timeout(800)
    detail = out_dir / "board-detail.png"
    await page.screenshot(path=str(detail))
    await page.close()
    return [swaps, detail]


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(take(out_dir)):
        print(path)


if __name__ == "__main__":
    main()
