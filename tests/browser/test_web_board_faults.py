"""The status board when its hub falls silent, goes away, or has receivers that have not answered since it
started: what the board shows must not pass for live values."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from playwright.async_api import Browser, Page, Route, expect
from wmhub_shure.simulator import ShureSimulator

from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.browser.rig import TOKEN, Board, SilentPath


async def test_a_hub_fallen_silent_marks_the_board_stale_and_the_board_reconnects(page: Page, board: Board) -> None:
    async with SilentPath(board.hub.web.port) as path:
        await page.goto(f"http://127.0.0.1:{path.port}/")
        tiles = page.locator("#board .tile")
        await expect(tiles).to_have_count(6)
        await expect(page.locator("#link")).to_have_text("live")
        path.fall_silent()  # no close, no reset: the socket just stops carrying anything
        await expect(page.locator("#link")).to_have_text(re.compile("reconnecting"), timeout=10_000)
        await expect(page.locator("#board .tile.stale")).to_have_count(6)
        await expect(tiles.locator(".state")).to_have_text(["stale"] * 6)
        path.restore()
        await expect(page.locator("#link")).to_have_text("live", timeout=20_000)
        await expect(page.locator("#board .tile.stale")).to_have_count(0)


async def test_a_failed_venue_poll_keeps_the_slots_and_marks_their_values_stale(page: Page, board: Board) -> None:
    ulxd, axient = board.simulators
    ulxd_id, axient_id = board.device_id(ulxd), board.device_id(axient)
    layout = [f"{axient_id}:3", f"{ulxd_id}:2", f"{ulxd_id}:1"]  # slot numbers not in channel order
    for number, channel_id in enumerate(layout, 1):
        device_id, _, index = channel_id.rpartition(":")
        await board.store.slots.set(number, device_id, int(index), source="test")
    await page.goto(board.url)
    tiles = page.locator("#board .tile")
    await expect(tiles).to_have_count(3)
    assert await tiles.evaluate_all("tiles => tiles.map((tile) => tile.dataset.channel)") == layout

    refused = asyncio.Event()

    async def refuse(route: Route) -> None:
        refused.set()
        await route.abort("connectionrefused")

    await page.route("**/api/v1/slots", refuse)
    await asyncio.wait_for(refused.wait(), timeout=15)  # the board reads the venue every 10 s
    await expect(page.locator("#board .tile.stale")).to_have_count(3)
    assert await tiles.evaluate_all("tiles => tiles.map((tile) => tile.dataset.channel)") == layout
    await expect(tiles.locator(".num")).to_have_text(["1", "2", "3"])
    await page.unroute("**/api/v1/slots")
    await expect(page.locator("#board .tile.stale")).to_have_count(0, timeout=15_000)


def hub_config(data_dir: Path, open_reads: bool = True) -> HubConfig:
    return HubConfig(
        hub_id="boardtest",
        data_dir=data_dir,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN, open_reads=open_reads),
    )


async def test_a_receiver_down_since_the_hub_started_is_offline_in_its_slot_and_listed(
    browser: Browser, tmp_path: Path
) -> None:
    plugins = PluginHost()
    plugins.load_entry_points(only="shure")
    simulator = await ShureSimulator("ulxd4d", seed=0).start()
    try:
        async with compose_hub(hub_config(tmp_path), plugins) as hub:
            await hub.add_device(simulator.url, source="test")
            device_id = await eventually(lambda: next(iter(hub.store.devices), None), timeout=10, what="identified")
            await hub.persistence.slots.set(1, device_id, 2, source="test")
    finally:
        await simulator.stop()
    async with compose_hub(hub_config(tmp_path), plugins) as hub:  # started again, the receiver still down
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{hub.web.port}/")
        tile = page.locator("#board .tile")
        await expect(tile).to_have_count(1)
        await expect(tile).to_have_class(re.compile(r"\boffline\b"))
        await expect(tile.locator(".state")).to_have_text("receiver offline")
        await expect(tile).to_have_attribute("data-channel", f"{device_id}:2")
        # the Devices panel lists it from the hub's connection health, refreshed every 5 s
        row = page.locator("#devices tr", has_text=device_id)
        await expect(row).to_contain_text("no answer from device", timeout=15_000)
        await context.close()


async def test_a_hub_closed_to_reads_says_the_board_needs_the_token(browser: Browser, tmp_path: Path) -> None:
    async with compose_hub(hub_config(tmp_path, open_reads=False), PluginHost()) as hub:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{hub.web.port}/")
        hint = page.locator("#token-hint")
        await expect(hint).to_be_visible()
        await expect(hint).to_contain_text("token")
        await page.fill("#token", TOKEN)
        await page.press("#token", "Enter")
        await expect(hint).to_be_hidden()
        await expect(page.locator("#link")).to_have_text("live")
        await context.close()


async def test_panels_keep_what_they_showed_marked_stale_while_their_reads_fail(page: Page, board: Board) -> None:
    ulxd = board.simulators[0]
    ulxd.set_tx_present(1, True)
    ulxd.set_channel(1, battery_bars=1)  # an alert to keep showing
    await page.goto(board.url)
    panels = [page.locator(f"#{name}-panel") for name in ("alerts", "swap", "spectrum")]
    alerts = page.locator("#alerts li")
    await expect(alerts).to_have_count(1, timeout=15_000)
    carriers = page.locator("#spectrum [data-carrier]")
    await expect(carriers).to_have_count(6, timeout=15_000)
    for panel in panels:
        await expect(panel).to_be_visible()

    async def refuse(route: Route) -> None:
        await route.abort("internetdisconnected")  # the phone off the Wi-Fi

    away = re.compile(r"/api/v1/(alerts|swap-list|show|frequency-plan)(\?limit=\d+)?$")
    await page.route(away, refuse)
    for panel in panels:  # each on its next poll (3 s, 5 s, 3 s)
        await expect(panel).to_have_class(re.compile(r"\bstale\b"), timeout=10_000)
        await expect(panel).to_be_visible()
        await expect(panel.locator("summary")).to_contain_text("stale: last read ")
    await expect(alerts).to_have_count(1)
    await expect(carriers).to_have_count(6)
    await page.unroute(away)
    for panel in panels:
        await expect(panel).not_to_have_class(re.compile(r"\bstale\b"), timeout=10_000)
        await expect(panel.locator(".stale-note")).to_be_empty()


async def test_a_board_is_live_again_within_seconds_of_its_hub_coming_back(page: Page, board: Board) -> None:
    async with SilentPath(board.hub.web.port) as path:
        await page.goto(f"http://127.0.0.1:{path.port}/")
        await expect(page.locator("#link")).to_have_text("live")
        path.go_away()  # the hub restarting: connections close, new ones are hung up on
        await expect(page.locator("#link")).to_have_text(re.compile("reconnecting"))
        # the board keeps trying every few seconds however long the hub was away, not every 10 s
        await eventually(lambda: len(path.live_refused_at) >= 6, timeout=20, what="the board's attempts")
        gaps = [after - before for before, after in itertools.pairwise(path.live_refused_at)]
        assert max(gaps) < 4, gaps  # at most 2.5 s apart, and the time to be hung up on
        path.restore()
        await expect(page.locator("#link")).to_have_text("live", timeout=4_000)
        await expect(page.locator("#board .tile.stale")).to_have_count(0)


async def test_a_wrong_token_typed_after_a_good_one_is_said_to_be_refused(browser: Browser, tmp_path: Path) -> None:
    async with compose_hub(hub_config(tmp_path, open_reads=False), PluginHost()) as hub:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{hub.web.port}/")
        await page.fill("#token", TOKEN)
        await page.press("#token", "Enter")
        hint = page.locator("#token-hint")
        await expect(page.locator("#link")).to_have_text("live")
        await expect(hint).to_be_hidden()
        await page.fill("#token", "a-typo")
        await page.press("#token", "Enter")
        await expect(hint).to_be_visible(timeout=15_000)
        await expect(hint).to_contain_text("refused the token")
        await page.fill("#token", TOKEN)
        await page.press("#token", "Enter")
        await expect(hint).to_be_hidden()
        await context.close()


async def test_a_board_without_the_token_stops_asking_until_one_is_typed(browser: Browser, tmp_path: Path) -> None:
    async with compose_hub(hub_config(tmp_path, open_reads=False), PluginHost()) as hub:
        context = await browser.new_context()
        page = await context.new_page()
        refused: list[str] = []
        sockets: list[str] = []
        page.on(
            "response", lambda response: refused.append(urlparse(response.url).path) if response.status == 401 else None
        )
        page.on("websocket", lambda socket: sockets.append(socket.url))
        await page.clock.install()  # the page's timers run when the test says, not on the wall clock
        await page.goto(f"http://127.0.0.1:{hub.web.port}/")
        await expect(page.locator("#token-hint")).to_be_visible()
        # every poll comes round again (alerts 3 s, health and swaps 5 s): a 401 in the console each time, for a
        # hub that will refuse them all until the token is typed
        await page.clock.run_for(7_000)
        await page.evaluate("() => fetch('/').catch(() => null)")  # a request after all of them
        assert sorted(refused) == sorted(set(refused)), f"asked again after a 401: {sorted(refused)}"
        assert len(sockets) <= 2, sockets
        await page.fill("#token", TOKEN)
        await page.press("#token", "Enter")
        await expect(page.locator("#link")).to_have_text("live")
        await expect(page.locator("#token-hint")).to_be_hidden()
        await context.close()


async def test_an_unknown_channel_s_detail_does_not_keep_asking_for_its_history(page: Page, board: Board) -> None:
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/history" in request.url else None)
    await page.clock.install()  # the page's timers run when the test says, not on the wall clock
    await page.goto(f"{board.url}?channel=shure-gone:1")
    await expect(page.locator("#detail-title")).to_have_text("Unknown channel")
    asked.clear()
    await page.locator("#detail-ranges").get_by_role("button", name="1 h").click()
    await page.clock.run_for(11_000)  # the detail refreshed every 10 s: a 404 in the console each time
    await page.evaluate("() => fetch('/').catch(() => null)")  # a request after any it sent
    assert asked == []


async def test_a_receiver_down_since_the_hub_started_keeps_a_named_tile_per_channel_in_their_places(
    browser: Browser, tmp_path: Path
) -> None:
    """Without venue slots a receiver down when the hub started vanished from the grid (later tiles renumbered),
    then showed as one "receiver offline" tile: an engineer looking for "Lead Vocal" found no tile of that name.
    Each of its channels keeps its tile, with the name it had, offline; and the receiver answering again moves
    no tile."""
    plugins = PluginHost()
    plugins.load_entry_points(only="shure")
    names = ["Lead Vocal", "Guitar"]
    down, up = ShureSimulator("slxd4d", seed=0), ShureSimulator("ulxd4d", seed=1)
    async with up:
        await down.start()
        try:
            async with compose_hub(hub_config(tmp_path), plugins) as hub:
                for simulator in (down, up):
                    await hub.add_device(simulator.url, source="test")
                down_id = await eventually(
                    lambda: next((m.device_id for m in hub.devices.by_url.values() if m.url == down.url), None),
                    timeout=10,
                    what="the receiver identified",
                )
                for index, name in enumerate(names, start=1):
                    down.set_name(index, name)
                await eventually(
                    lambda: [channel.name for channel in hub.store.devices[down_id].channels] == names,
                    timeout=10,
                    what="its channels named",
                )
        finally:
            await down.stop()
        async with compose_hub(hub_config(tmp_path), plugins) as hub:  # started again, one receiver still down
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(f"http://127.0.0.1:{hub.web.port}/")
            tiles = page.locator("#board .tile")
            await expect(tiles).to_have_count(len(up.channels) + len(names), timeout=15_000)
            offline = page.locator(f'#board .tile[data-device="{down_id}"]')
            await expect(offline).to_have_count(len(names))
            await expect(offline.locator(".name")).to_have_text(names)
            await expect(offline.locator(".state")).to_have_text(["receiver offline"] * len(names))
            for tile in await offline.all():
                await expect(tile).to_have_class(re.compile(r"\boffline\b"))
            shown = await tiles.evaluate_all("tiles => tiles.map((tile) => tile.dataset.channel)")
            assert shown == sorted(shown), shown  # in device-id order, like the receivers that answer
            numbers = await tiles.locator(".num").all_text_contents()

            async with ShureSimulator("slxd4d", seed=0, port=urlparse(down.url).port):  # switched on again
                await expect(page.locator("#board .tile.offline")).to_have_count(0, timeout=15_000)
                assert await tiles.evaluate_all("tiles => tiles.map((tile) => tile.dataset.channel)") == shown
                assert await tiles.locator(".num").all_text_contents() == numbers
            await context.close()


async def test_with_over_a_hundred_open_alerts_the_newest_is_listed_counted_and_said(
    browser: Browser, tmp_path: Path
) -> None:
    """101 receivers that never answer: 101 device_offline alerts. The 101st, the newest, was the one left out
    (the board asked with the API's default limit of 100, and the hub cut the newest)."""
    with socket.socket() as probe:  # a loopback port nothing listens on: every receiver there refuses at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plugins = PluginHost()
    plugins.load_entry_points(only="shure")
    async with compose_hub(hub_config(tmp_path), plugins) as hub:
        for host in range(2, 102):
            await hub.add_device(f"shure://127.0.0.{host}:{port}", source="test")
        alerts = hub.persistence.alerts
        await eventually(lambda: len(alerts.open_alerts()) == 100, timeout=30, what="100 offline alerts")
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{hub.web.port}/")
        await expect(page.locator("#alerts .alert-item")).to_have_count(100, timeout=10_000)
        newest = f"127.0.0.102:{port}"
        await hub.add_device(f"shure://{newest}", source="test")
        await eventually(lambda: len(alerts.open_alerts()) == 101, timeout=30, what="the 101st offline alert")
        await expect(page.locator("#alerts .alert-item", has_text=newest)).to_have_count(1, timeout=10_000)
        await expect(page.locator("#alerts .alert-item")).to_have_count(101)
        await expect(page.locator("#alert-count")).to_have_text("(101, 101 new)")
        await expect(page.locator("#alert-urgent")).to_contain_text(newest)
        # a client asking for fewer gets the newest ones, and how many there are in all
        answer = await page.request.get(f"http://127.0.0.1:{hub.web.port}/api/v1/alerts?limit=100")
        listed = await answer.json()
        assert listed["total"] == 101
        assert [alert["id"] for alert in listed["items"]] == [alert.id for alert in alerts.open_alerts()[1:]]
        await context.close()
