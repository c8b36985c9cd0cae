"""The board's layout on a phone and on a side-stage TV, in a real browser: a long device warning inside its tile,
chart and spectrum text legible at 360 px, TV type in proportion to the screen, antenna names apart."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator

from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from tests.browser.rig import TOKEN, Board


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(
        viewport={"width": 360, "height": 640}, device_scale_factor=3, is_mobile=True, has_touch=True
    )
    yield await context.new_page()
    await context.close()


async def test_a_long_device_warning_wraps_inside_its_tile_on_a_phone(phone: Page, board: Board) -> None:
    ulxd = board.simulators[0]
    ulxd.set_tx_present(2, True)
    ulxd.set_channel(2, warnings={"battery_communication_warning"})
    await phone.goto(board.url)
    tile = phone.locator(f'.tile[data-channel="{board.device_id(ulxd)}:2"]')
    state = tile.locator(".state")
    await expect(state).to_have_text("battery communication warning", timeout=10_000)  # words, not the enum
    state_box, tile_box = await state.bounding_box(), await tile.bounding_box()
    assert state_box and tile_box
    assert state_box["x"] + state_box["width"] <= tile_box["x"] + tile_box["width"], (state_box, tile_box)
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 360, "the page scrolls sideways"


TEXT_HEIGHTS = "(texts) => texts.map((text) => text.getBoundingClientRect().height)"
# how much wider than tall the spectrum's units are drawn: 1 is undistorted
SQUEEZE = "(view) => { const m = view.getScreenCTM(); return m.a / m.d; }"


async def test_chart_and_spectrum_text_is_legible_on_a_phone(phone: Page, board: Board) -> None:
    await phone.goto(board.url)
    labels = phone.locator("#spectrum text.axis")
    await expect(labels.first).to_be_attached(timeout=15_000)
    assert await phone.locator("#spectrum").evaluate(SQUEEZE) == pytest.approx(1, abs=0.05)
    assert min(await labels.evaluate_all(TEXT_HEIGHTS)) >= 11
    # the MHz labels do not run into each other at this width
    lefts_rights = await labels.evaluate_all("(ts) => ts.map((t) => t.getBBox()).map((b) => [b.x, b.x + b.width])")
    assert all(a[1] < b[0] for a, b in itertools.pairwise(lefts_rights)), lefts_rights
    await phone.locator("#board .tile .name").first.tap()
    texts = phone.locator("#detail-charts svg text")
    await expect(texts.first).to_be_attached(timeout=10_000)
    assert min(await texts.evaluate_all(TEXT_HEIGHTS)) >= 11


async def tv_font_sizes(browser: Browser, url: str, width: int, height: int) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    await page.goto(url + "?tv=1")
    await expect(page.locator("#board .tile .meter-label").first).to_be_attached()
    sizes: dict[str, float] = await page.evaluate(
        """() => Object.fromEntries(['.tile .name', '.tile .state', '.tile .meter-label'].map((query) =>
            [query, parseFloat(getComputedStyle(document.querySelector('#board ' + query)).fontSize)]))"""
    )
    await context.close()
    return sizes


async def test_tv_type_grows_with_a_4k_screen(browser: Browser, board: Board) -> None:
    full_hd = await tv_font_sizes(browser, board.url, 1920, 1080)
    four_k = await tv_font_sizes(browser, board.url, 3840, 2160)
    assert all(four_k[what] >= 1.9 * full_hd[what] for what in full_hd), (full_hd, four_k)
    small = await tv_font_sizes(browser, board.url, 1280, 720)  # never below the type it always had
    assert small == full_hd, (small, full_hd)


@pytest.fixture
async def em6000_board(browser: Browser, tmp_path: Path) -> AsyncIterator[BrowserContext]:
    plugins = PluginHost()
    plugins.load_entry_points(only="sennheiser")
    config = HubConfig(
        hub_id="boardtest",
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN),
    )
    async with Ssc1Simulator("em6000", tick_s=0.2) as simulator, compose_hub(config, plugins) as hub:
        await hub.add_device(simulator.url, source="test")
        context = await browser.new_context(
            viewport={"width": 1920, "height": 1080}, base_url=f"http://127.0.0.1:{hub.web.port}"
        )
        yield context
        await context.close()


async def test_antenna_names_stand_apart_in_tv_type(em6000_board: BrowserContext) -> None:
    page = await em6000_board.new_page()
    await page.goto("/?tv=1")
    names = page.locator("#board .tile .antenna > b")
    await expect(names.first).to_have_text(re.compile(r"^RF1$"), timeout=15_000)
    # the text of each name, not its box: the box of an overflowing name is narrower than its text
    spans = await names.evaluate_all(
        """(labels) => labels.map((label) => { const range = document.createRange(); range.selectNodeContents(label);
            const box = range.getBoundingClientRect(); return [label.textContent, box.left, box.right]; })"""
    )
    for before, after in itertools.pairwise(spans):
        if before[0] == "RF1":
            assert after[0] == "RF2" and before[2] <= after[1], spans


# A meter fill's layout box and its transform, as the page lays it out.
FILL_BOX = "fill => ({ width: fill.offsetWidth, transform: getComputedStyle(fill).transform })"


async def test_a_moving_meter_changes_no_layout_only_its_fill_s_transform(page: Page, board: Board) -> None:
    # a width that moves lays out the whole grid at frame rate for 0.3 s after every live message: with a hundred
    # channels the browser's main thread is busy most of the time
    ulxd = board.simulators[0]
    ulxd.set_tx_present(1, True)
    ulxd.set_channel(1, rf_dbm=-90)
    await page.goto(board.url)
    tile = page.locator(f'.tile[data-channel="{board.device_id(ulxd)}:1"]')
    reading, fill = tile.locator(".meter-box").first.locator(".meter-label span").last, tile.locator(".meter.rf > span")
    await expect(reading).to_have_text("-90 dBm")
    low = await fill.evaluate(FILL_BOX)
    ulxd.set_channel(1, rf_dbm=-50)
    await expect(reading).to_have_text("-50 dBm")
    high = await fill.evaluate(FILL_BOX)
    assert high["transform"] != low["transform"], (low, high)
    assert high["width"] == low["width"], f"the fill was resized (laid out) instead of scaled: {low} {high}"
    # nor animated: a transition on every meter (a compositor layer each) took half a 1,000-channel board's CPU
    assert await fill.evaluate("fill => fill.getAnimations().length") == 0


# Every element of #board a mutation touched, as the tile's channel and the class of the touched node's nearest
# element ("meters" for anything in a tile's meters).
WATCH_BOARD = """() => { window.touched = [];
  new MutationObserver((records) => records.forEach((record) => {
    const node = record.target.nodeType === 1 ? record.target : record.target.parentElement;
    const tile = node.closest('.tile');
    window.touched.push([tile ? tile.dataset.channel : null, node.closest('.meters') ? 'meters' : node.className]);
  })).observe(document.getElementById('board'),
    { subtree: true, attributes: true, childList: true, characterData: true });
}"""


async def test_a_live_change_touches_only_what_changed_on_its_own_tile(page: Page, board: Board) -> None:
    """An outside audit: a 1,000-channel board drew every tile on every live message (and all of a receiver's
    neighbours for any change of a receiver), which kept the main thread busy. A change now writes only what
    it changed: a level only its own meter, a receiver going offline only its own tiles."""
    ulxd, axient = board.simulators
    ulxd.set_tx_present(1, True)
    ulxd.set_channel(1, rf_dbm=-80)
    await page.goto(board.url)
    tile = page.locator(f'.tile[data-channel="{board.device_id(ulxd)}:1"]')
    reading = tile.locator(".meter-box").first.locator(".meter-label span").last
    await expect(reading).to_have_text("-80 dBm")
    await page.evaluate(WATCH_BOARD)
    ulxd.set_channel(1, rf_dbm=-70)
    await expect(reading).to_have_text("-70 dBm")
    touched = await page.evaluate("window.touched")
    assert touched and all(item == [f"{board.device_id(ulxd)}:1", "meters"] for item in touched), touched
    await page.evaluate("window.touched = []")
    axient_id = board.device_id(axient)
    await axient.stop()
    await expect(page.locator(f'.tile[data-device="{axient_id}"].offline')).to_have_count(4, timeout=15_000)
    touched = await page.evaluate("window.touched")
    assert {channel for channel, _ in touched} == {f"{axient_id}:{index}" for index in range(1, 5)}, touched
