"""The status board in a real browser: live updates, renaming through the UI, hostile names shown as text."""

from __future__ import annotations

import asyncio
import re
import time

from playwright.async_api import Browser, Dialog, Page, Route, expect

from hub.model import SlotState
from hub.persistence.history import encode_bucket
from hub.testing import eventually
from tests.browser.rig import Board

HOSTILE = "<img src=x onerror=alert(1)>"


async def test_board_shows_every_channel_and_a_battery_change_arrives_live(page: Page, board: Board) -> None:
    await page.goto(board.url)
    await expect(page.locator(".tile")).to_have_count(6)
    await expect(page.locator("#link")).to_have_text("live")
    ulxd = board.simulators[0]
    ulxd.set_tx_present(1, True)
    ulxd.set_channel(1, battery_bars=5)
    card = page.locator(f'.tile[data-channel="{board.device_id(ulxd)}:1"]')
    await expect(card.locator(".battery i.on")).to_have_count(5)
    ulxd.set_channel(1, battery_bars=1)
    await expect(card.locator(".battery i.on")).to_have_count(1)
    await expect(card.locator(".state")).to_have_text("low battery")
    await expect(card).to_have_class("tile alert low")


async def test_rename_through_the_board_reaches_the_receiver(page: Page, board: Board) -> None:
    ulxd = board.simulators[0]
    channel_id = f"{board.device_id(ulxd)}:2"
    await page.goto(board.url)
    await page.fill("#token", board.token)
    await page.press("#token", "Enter")
    await page.locator(f'.tile[data-channel="{channel_id}"] .edit').click()
    await page.fill("#editor-name", "LEADVOX")
    await page.click("#editor-save")
    await expect(page.locator("#editor")).not_to_be_visible()
    await eventually(lambda: ulxd.state["channels"][2].get("name") == "LEADVOX", what="simulator renamed")
    await expect(page.locator(f'.tile[data-channel="{channel_id}"] .name')).to_have_text("LEADVOX")


async def test_rename_without_the_token_is_refused_and_says_why(page: Page, board: Board) -> None:
    ulxd = board.simulators[0]
    before = ulxd.state["channels"][1].get("name")
    await page.goto(board.url)
    await page.locator(f'.tile[data-channel="{board.device_id(ulxd)}:1"] .edit').click()
    await page.fill("#editor-name", "NOPE")
    await page.click("#editor-save")
    await expect(page.locator("#editor-error")).to_contain_text("token")
    assert ulxd.state["channels"][1].get("name") == before


async def test_a_hostile_name_is_shown_as_text_and_runs_nothing(page: Page, board: Board) -> None:
    dialogs: list[str] = []

    async def refuse(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", refuse)
    axient = board.simulators[1]
    device_id = board.device_id(axient)
    await page.goto(board.url)
    await expect(page.locator(".tile")).to_have_count(6)
    axient.set_name(3, HOSTILE)

    def hostile_name_in_hub() -> str | None:
        channel = board.hub.store.devices[device_id].channel(3)
        return channel.name if channel is not None and channel.name and "<img" in channel.name else None

    stored = await eventually(hostile_name_in_hub, what="the hostile name in the hub")
    name = page.locator(f'.tile[data-channel="{device_id}:3"] .name')
    await expect(name).to_have_text(stored)
    assert await page.locator("#board img, #devices img").count() == 0
    # a script that ran would have raised its dialog by the time the page answers a round trip
    assert await page.evaluate("1 + 1") == 2
    assert dialogs == []


async def test_slots_groups_by_keyboard_and_an_alert_acknowledged(page: Page, board: Board) -> None:
    ulxd, axient = board.simulators
    ulxd_id, axient_id = board.device_id(ulxd), board.device_id(axient)
    await board.store.slots.set(1, ulxd_id, 1, source="test")
    await board.store.slots.set(2, ulxd_id, 2, source="test")
    await board.store.slots.set(5, axient_id, 1, source="test")
    await board.store.groups.create(1, "Band", [5], source="test")
    await board.store.groups.create(2, "Speech", [2, 1], source="test")
    await page.goto(board.url)
    tiles = page.locator("#board .tile")
    await expect(tiles).to_have_count(5)
    await expect(page.locator("#board .tile.empty")).to_have_count(2)
    await page.keyboard.press("1")
    await expect(tiles).to_have_count(1)
    await expect(tiles.first).to_have_attribute("data-channel", f"{axient_id}:1")
    await page.keyboard.press("2")
    await expect(tiles.locator(".num")).to_have_text(["2", "1"])
    await page.keyboard.press("0")
    await expect(tiles).to_have_count(5)

    ulxd.set_tx_present(1, True)
    ulxd.set_channel(1, battery_bars=1)
    alert = page.locator("#alerts .alert-item.new")
    await expect(alert).to_have_count(1, timeout=10_000)
    await page.fill("#token", board.token)
    await page.press("#token", "Enter")
    await alert.get_by_role("button", name="Acknowledge").click()
    await eventually(
        lambda: [a.acknowledged_at is not None for a in board.store.alerts.open_alerts()] == [True],
        what="the alert acknowledged in the store",
    )
    await expect(page.locator("#alerts .alert-item.new")).to_have_count(0)


async def test_a_channel_detail_draws_its_history_with_dropouts_and_a_time_axis(page: Page, board: Board) -> None:
    ulxd = board.simulators[0]
    device_id = board.device_id(ulxd)
    history = board.store.history
    series = history.series(device_id, 1)
    start = int(time.time()) // 10 * 10 - 300
    for k in range(30):  # five minutes of buckets: the transmitter off in the 16th, the hub away for the 21st
        if k == 20:
            continue
        values = [80.0, 81.0, 82.0, -62.0, -58.0, -55.0, -35.0, -22.0, -12.0]
        if k == 15:
            values = [None, None, None, -100.0, -100.0, -99.0, -60.0, -60.0, -60.0]
        history.add_bucket(series, start + 10 * k, encode_bucket(values))
    await page.goto(board.url)
    await page.locator(f'.tile[data-channel="{device_id}:1"] .name').click()
    detail = page.locator("#detail")
    await expect(detail).to_be_visible()
    assert f"channel={device_id}:1" in page.url.replace("%3A", ":"), "the detail has its own address"
    charts = detail.locator("svg.chart[data-series]")
    await expect(charts).to_have_count(3)
    # the missing bucket breaks every line; the battery's also where the transmitter was off
    for name, pieces in (("battery", 3), ("rf_dbm", 2), ("audio_dbfs", 2)):
        await expect(detail.locator(f'polyline.series[data-series="{name}"]')).to_have_count(pieces)
    await expect(detail.locator(f'.dropout[data-t="{start + 150}"]')).to_have_count(3)  # the off bucket, per chart
    assert await detail.locator(".time-axis text").count() >= 2
    await expect(detail.locator("#detail-facts")).to_contain_text("MHz")
    await detail.get_by_role("button", name="1 h").click()
    await expect(detail.get_by_role("button", name="1 h")).to_have_attribute("aria-pressed", "true")

    await page.goto(f"{board.url}?channel={device_id}:1")
    await expect(page.locator("#detail")).to_be_visible()
    await expect(page.locator("#detail-charts svg.chart[data-series]")).to_have_count(3)


async def test_the_swap_panel_lists_a_short_pack_with_a_countdown_and_marks_its_tile(page: Page, board: Board) -> None:
    ulxd = board.simulators[0]
    for simulator in board.simulators:
        for index in simulator.channels:
            simulator.set_tx_present(index, True)
            simulator.set_channel(index, battery_runtime_min=600)
    ulxd.set_channel(2, battery_runtime_min=40)
    channel_id = f"{board.device_id(ulxd)}:2"
    await eventually(
        lambda: board.hub.store.devices[board.device_id(ulxd)].channel(2).battery_runtime_min == 40, what="runtime"
    )
    await page.goto(board.url)
    await page.fill("#token", board.token)
    await page.press("#token", "Enter")
    in_an_hour = await page.evaluate("localInputValue(Date.now() / 1000 + 3600)")
    await page.fill("#show-end", in_an_hour)
    await page.fill("#show-margin", "15")
    await page.click("#show-save")
    swaps = page.locator("#swaps .swap-item")
    await expect(swaps).to_have_count(1)
    await expect(swaps.first).to_have_attribute("data-channel", channel_id)
    await expect(swaps.first.locator(".countdown")).to_have_text(re.compile(r"^(39|40):\d\d$"))
    await expect(page.locator(f'.tile[data-channel="{channel_id}"]')).to_have_class(re.compile(r"\bswap\b"))
    assert await page.locator(".tile.swap").count() == 1
    await page.click("#tv-toggle")
    await expect(page.locator("#swap-strip .swap-item")).to_have_count(1)
    await expect(page.locator("#swap-strip")).to_be_visible()


async def test_the_editor_offers_only_the_renames_the_family_takes(page: Page, board: Board) -> None:
    ulxd = board.simulators[0]
    device_id = board.device_id(ulxd)
    await page.goto(board.url)
    await page.locator(f'.tile[data-channel="{device_id}:1"] .edit').click()
    name = page.locator("#editor-name")
    await expect(name).to_be_visible()
    assert await name.evaluate("input => input.maxLength") == 8  # ULX-D channel names
    await name.fill("a{b}")
    assert not await name.evaluate("input => input.checkValidity()"), "the family's characters only"
    await page.click("#editor-cancel")
    # a family without a channel rename and without RF levels: no rename field, no RF bar
    capabilities = board.hub.store.devices[device_id].capabilities
    assert capabilities is not None
    narrower = capabilities.model_copy(
        update={
            "commands": {kind: limits for kind, limits in capabilities.commands.items() if kind.value != "name"},
            "channel_fields": capabilities.channel_fields - {"rf_dbm"},
        }
    )
    tile = page.locator(f'.tile[data-channel="{device_id}:1"]')
    await expect(tile.locator(".meter.rf")).to_have_count(1)
    board.hub.store.update_device(device_id, {"capabilities": narrower})
    await expect(tile.locator(".meter.rf")).to_have_count(0)
    await expect(tile.locator(".meter.audio")).to_have_count(1)
    await tile.locator(".edit").click()
    await expect(page.locator("#editor-name-row")).to_be_hidden()
    await expect(page.locator("#editor-extended")).to_be_visible()


async def test_per_antenna_levels_are_bars_and_the_detail_shows_battery_health(page: Page, board: Board) -> None:
    # levels written to the store as a driver would: the ULX-D simulator reports no per-antenna levels of
    # its own that could overwrite them between the write and the check (the Axient one does)
    ulxd = board.simulators[0]
    device_id = board.device_id(ulxd)
    await page.goto(board.url)
    tile = page.locator(f'.tile[data-channel="{device_id}:2"]')
    await expect(tile).to_be_visible()
    board.hub.store.update_channel(
        device_id,
        2,
        {
            "rf_antennas": {"A": -55.0, "B": -97.0},
            "battery_health_percent": 91,
            "battery_cycles": 212,
            "battery_temp_c": 31.0,
            "tx_power": "10mW",
            "tx_slots": [
                SlotState(slot=1, status="linked.active", tx_model="AD2", battery_percent=80, rf_power_mode="normal"),
                SlotState(slot=2, status="empty"),
            ],
        },
    )
    bars = tile.locator(".antennas .antenna")
    await expect(bars).to_have_count(2)
    await expect(bars.nth(1)).to_have_attribute("title", "B -97 dBm")
    heights = [await bars.nth(n).locator("i").evaluate("bar => bar.getBoundingClientRect().height") for n in range(2)]
    assert heights[1] < heights[0], "the dead antenna's bar is the short one"
    await tile.locator(".name").click()
    facts = page.locator("#detail-facts")
    await expect(facts).to_contain_text("91% health · 212 cycles · 31 °C")
    await expect(facts).to_contain_text("10mW")
    await expect(facts).to_contain_text("A -55 · B -97 dBm")
    await expect(facts).to_contain_text("slot 1: AD2, linked.active, 80%, power normal · slot 2: empty")


async def test_live_values_update_a_tile_in_place_so_a_click_lands(page: Page, board: Board) -> None:
    ulxd, axient = board.simulators
    ulxd_id = board.device_id(ulxd)
    await board.store.slots.set(1, ulxd_id, 1, source="test")
    await board.store.slots.set(2, board.device_id(axient), 1, source="test")
    await board.store.groups.create(1, "Lead", [1], source="test")
    await page.goto(board.url)
    await expect(page.locator("#board .tile")).to_have_count(2)
    await page.keyboard.press("1")
    tile = page.locator("#board .tile")
    await expect(tile).to_have_count(1)
    # the element a pointer is pressing on: it must still be there when the press is released
    pencil = await tile.locator(".edit").element_handle()
    axient.set_tx_present(1, True)
    axient.set_channel(1, battery_bars=2)  # a channel that is not on screen ...
    ulxd.set_tx_present(1, True)
    ulxd.set_channel(1, battery_bars=3)  # ... then one that is: both reached the board once this shows
    await expect(tile.locator(".battery i.on")).to_have_count(3)
    assert await pencil.evaluate("button => button.isConnected"), "the tile was rebuilt under the pointer"
    await pencil.click()
    await expect(page.locator("#editor")).to_be_visible()


async def test_an_unknown_channel_address_says_so(page: Page, board: Board) -> None:
    await page.goto(f"{board.url}?channel=bogus")
    await expect(page.locator("#detail")).to_be_visible()
    await expect(page.locator("#detail-title")).to_have_text("Unknown channel")
    await expect(page.locator("#detail-facts")).to_contain_text("no channel bogus on this hub")


async def test_long_unbroken_names_stay_inside_a_phone_and_the_tv_strip(browser: Browser, board: Board) -> None:
    ulxd = board.simulators[0]
    device_id = board.device_id(ulxd)
    long_name = "W" * 64
    await board.hub.rename_channel(device_id, 2, long_name, source="test")
    performer = await board.store.performers.create(long_name, source="test")
    await board.store.performers.assign(performer.id, device_id, 2, source="test")
    for simulator in board.simulators:
        for index in simulator.channels:
            simulator.set_tx_present(index, True)
            simulator.set_channel(index, battery_runtime_min=600)
    ulxd.set_channel(2, battery_runtime_min=40)
    await board.store.show.set(end_at=time.time() + 3600, margin_min=15, source="test")
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = await context.new_page()
    await page.goto(board.url)
    await expect(page.locator(f'.tile[data-channel="{device_id}:2"] .name')).to_have_text(long_name)
    await expect(page.locator("#swaps .swap-item")).to_have_count(1)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.set_viewport_size({"width": 1280, "height": 800})
    await page.click("#tv-toggle")
    strip = page.locator("#swap-strip .swap-item")
    await expect(strip).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 1280
    box = await strip.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1280
    await context.close()


async def test_a_double_click_on_save_renames_once_and_save_waits_for_the_receiver(page: Page, board: Board) -> None:
    ulxd = board.simulators[0]
    channel_id = f"{board.device_id(ulxd)}:2"
    await page.goto(board.url)
    await page.fill("#token", board.token)
    await page.press("#token", "Enter")
    sent: list[str | None] = []
    arrived, answer = asyncio.Event(), asyncio.Event()

    async def slow_receiver(route: Route) -> None:  # a receiver that takes its time to confirm the rename
        sent.append(route.request.post_data)
        arrived.set()
        await answer.wait()
        await route.continue_()

    await page.route("**/commands", slow_receiver)
    await page.locator(f'.tile[data-channel="{channel_id}"] .edit').click()
    await page.fill("#editor-name", "TWICE")
    await page.dblclick("#editor-save")
    await asyncio.wait_for(arrived.wait(), timeout=10)
    save = page.locator("#editor-save")
    await expect(save).to_be_disabled()
    await expect(save).to_have_text("Saving…")
    answer.set()
    await expect(page.locator("#editor")).not_to_be_visible()
    await eventually(lambda: ulxd.state["channels"][2].get("name") == "TWICE", what="simulator renamed")
    assert len(sent) == 1, sent
    await page.locator(f'.tile[data-channel="{channel_id}"] .edit').click()
    await expect(save).to_be_enabled()
    await expect(save).to_have_text("Save")


async def test_a_refused_rename_says_what_the_hub_found_wrong(page: Page, board: Board) -> None:
    ulxd = board.simulators[0]
    await page.goto(board.url)
    await page.fill("#token", board.token)
    await page.press("#token", "Enter")
    await page.locator(f'.tile[data-channel="{board.device_id(ulxd)}:1"] .edit').click()
    # a name pasted from a document that carries an invisible right-to-left override
    await page.fill("#editor-extended", "Pastor\u202e Jim")
    await page.click("#editor-save")
    error = page.locator("#editor-error")
    await expect(error).to_contain_text("the request body is not valid")
    await expect(error).to_contain_text("name: must not contain control characters")
    await expect(error).to_contain_text("direction overrides")
    await expect(page.locator("#editor")).to_be_visible()


async def test_a_name_of_255_characters_keeps_its_tile_short_and_shows_whole_elsewhere(
    browser: Browser, board: Board
) -> None:
    ulxd = board.simulators[0]
    device_id = board.device_id(ulxd)
    long_name = "W" * 255  # Sennheiser's SSC allows names this long, without a space
    board.hub.store.update_channel(device_id, 2, {"name": long_name})
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    page = await context.new_page()
    await page.goto(board.url + "?tv=1")
    tile = page.locator(f'.tile[data-channel="{device_id}:2"]')
    await expect(tile.locator(".name")).to_have_text(long_name)
    lines = await tile.locator(".name").evaluate(
        "name => name.getBoundingClientRect().height / parseFloat(getComputedStyle(name).lineHeight)"
    )
    assert lines <= 3.05, f"the name takes {lines:.1f} lines"
    box = await tile.bounding_box()
    assert box is not None and box["height"] < 1080 / 3, box
    await expect(tile).to_have_attribute("title", long_name)
    await page.click("#tv-toggle")
    await tile.locator(".name").click()
    await expect(page.locator("#detail-title")).to_contain_text(long_name)
    await context.close()


async def test_a_rename_with_a_wrong_token_says_the_hub_refused_it(page: Page, board: Board) -> None:
    """An outside audit: a wrong or changed token read 'needs the API token', word for word what an empty field
    says, and nothing marked the field (on a hub open to reads nothing else tells the token is wrong)."""
    ulxd = board.simulators[0]
    before = ulxd.state["channels"][1].get("name")
    await page.goto(board.url)
    await page.fill("#token", "a-typo")
    await page.press("#token", "Enter")
    await page.locator(f'.tile[data-channel="{board.device_id(ulxd)}:1"] .edit').click()
    await page.fill("#editor-name", "NOPE")
    await page.click("#editor-save")
    await expect(page.locator("#editor-error")).to_contain_text("the hub refused the token in the Token field")
    await expect(page.locator("#token-hint")).to_contain_text("refused the token")
    await expect(page.locator("#token")).to_have_attribute("aria-invalid", "true")
    assert ulxd.state["channels"][1].get("name") == before
    await page.click("#editor-cancel")
    await page.fill("#token", board.token)
    await page.press("#token", "Enter")
    await expect(page.locator("#token-hint")).to_be_hidden()
    await expect(page.locator("#token")).to_have_attribute("aria-invalid", "false")
