"""Receivers removed and added back while the board is open: one added back shows its channels again, without a
reload."""

from __future__ import annotations

import json
import re

from playwright.async_api import Page, WebSocketRoute, expect

from hub.testing import eventually
from tests.browser.rig import Board


async def open_board(page: Page, board: Board, victim: str) -> None:
    await page.goto(board.url)
    await expect(page.locator("#board .tile")).to_have_count(6)
    await expect(page.locator(f'#board .tile[data-channel^="{victim}:"]')).to_have_count(4)


async def test_a_receiver_removed_and_added_back_within_one_live_batch_shows_its_channels(
    page: Page, board: Board
) -> None:
    """Removed and added back within the live feed's 0.5 s (a URL corrected by DELETE then POST, MQTT
    device/remove then device/add): its channel tiles went, one red 'receiver offline' tile stayed, for good,
    while the hub had it online with all its channels. Done here in one step, so within one batch whatever the
    feed's timing."""
    victim = board.device_id(board.simulators[1])
    await open_board(page, board, victim)
    device = board.hub.store.remove_device(victim)
    assert device is not None
    board.hub.store.add_device(device)
    await expect(page.locator(f'#board .tile[data-channel^="{victim}:"]:not(.offline)')).to_have_count(4)
    await expect(page.locator("#board .tile")).to_have_count(6)
    # and they are live: a change on the receiver reaches its tile
    board.simulators[1].set_channel(2, name="BACK AGAIN")
    await expect(page.locator(f'#board .tile[data-channel="{victim}:2"] .name')).to_have_text("BACK AGAIN")


async def test_a_channel_of_a_receiver_the_board_does_not_know_brings_a_fresh_snapshot_once(
    page: Page, board: Board
) -> None:
    """A safety net under the live feed: a change for a channel of a receiver the board does not hold (a message
    lost, a hub that leaves the receiver out) makes the board read the feed afresh, so the receiver shows; a hub
    that keeps sending such channels does not make it reconnect again and again."""
    victim = board.device_id(board.simulators[1])
    hide: tuple[str, ...] = ()  # the messages the victim is taken out of (its channels left in)
    sockets: list[WebSocketRoute] = []
    orphans = 0  # change messages with channels of the victim and not the victim

    async def live(ws: WebSocketRoute) -> None:
        sockets.append(ws)
        server = ws.connect_to_server()

        def from_hub(message: str | bytes) -> None:
            nonlocal orphans
            data = json.loads(message)
            if data["type"] in hide:
                data["devices"] = [device for device in data["devices"] if device["id"] != victim]
            if data["type"] == "changes" and any(channel["device_id"] == victim for channel in data["channels"]):
                orphans += victim not in [device["id"] for device in data["devices"]]
            ws.send(json.dumps(data))

        server.on_message(from_hub)

    await page.route_web_socket(re.compile(r"/api/v1/live"), live)
    await open_board(page, board, victim)
    hide = ("changes",)
    device = board.hub.store.remove_device(victim)
    assert device is not None
    await expect(page.locator(f'#board .tile[data-channel^="{victim}:"]')).to_have_count(0)
    board.hub.store.add_device(device)  # back, and the board hears only of its channels
    board.simulators[1].set_channel(2, name="BACK AGAIN")
    await expect(page.locator(f'#board .tile[data-channel="{victim}:2"] .name')).to_have_text("BACK AGAIN")
    await expect(page.locator("#board .tile")).to_have_count(6)
    assert len(sockets) == 2  # the fresh snapshot showed it
    # a hub that never sends it, not even in a snapshot, while its channels keep changing
    hide = ("changes", "snapshot")
    board.hub.store.remove_device(victim)
    await expect(page.locator(f'#board .tile[data-channel^="{victim}:"]')).to_have_count(0)
    board.hub.store.add_device(device)
    for n in range(5):
        seen = orphans
        board.simulators[1].set_channel(2, name=f"AGAIN {n}")
        await eventually(lambda: orphans > seen, timeout=10, what="a change of a receiver left out")  # noqa: B023
    await page.evaluate("() => new Promise((done) => setTimeout(done, 0))")  # the last one taken in
    assert len(sockets) <= 3, f"{len(sockets)} live connections"
