"""The live feed: browsers get state changes at most every live_interval_s, and a stalled one is dropped."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import itertools
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from hub.app import Hub
from hub.cli import GC_YOUNG_THRESHOLD
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.model import Channel, Device
from hub.plugins import PluginHost
from hub.testing import eventually


def fleet(count: int, channels: int) -> list[Device]:
    return [
        Device(
            id=f"rack-{n:03d}",
            vendor="bench",
            name=f"Rack {n}",
            host="127.0.0.1",
            port=1,
            online=True,
            channels=[Channel(index=i, name=f"Mic {n}.{i}", battery_bars=5) for i in range(1, channels + 1)],
        )
        for n in range(count)
    ]


@pytest.fixture
async def hub(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    http: dict[str, Any] = getattr(request, "param", {})
    config = HubConfig(
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token="live-feed-test-token", **http),
    )
    async with compose_hub(config, PluginHost()) as running:
        for device in fleet(2, 2):
            running.store.add_device(device)
        yield running


async def next_message(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    message = await ws.receive(timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    data: dict[str, Any] = orjson.loads(message.data)
    return data


def live_url(hub: Hub) -> str:
    return f"http://127.0.0.1:{hub.web.port}/api/v1/live"


async def test_a_calm_hub_sends_keepalives_so_silence_means_it_is_gone(hub: Hub) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(live_url(hub)) as ws:
        assert (await next_message(ws))["type"] == "snapshot"
        for _ in range(2):  # nothing changes, yet every 2 s there is word from the hub
            assert await next_message(ws, timeout=3) == {"type": "keepalive"}
        hub.store.update_channel("rack-000", 1, {"battery_bars": 3})
        assert (await next_message(ws, timeout=3))["type"] == "changes"


async def test_snapshot_then_changes(hub: Hub) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(live_url(hub)) as ws:
        snapshot = await next_message(ws)
        assert snapshot["type"] == "snapshot"
        assert [d["id"] for d in snapshot["devices"]] == ["rack-000", "rack-001"]
        assert snapshot["devices"][0]["channels"][1]["id"] == "rack-000:2"
        hub.store.update_channel("rack-001", 2, {"battery_bars": 2})
        changes = await next_message(ws)
        assert changes["type"] == "changes"
        assert [(c["id"], c["battery_bars"]) for c in changes["channels"]] == [("rack-001:2", 2)]
        hub.store.set_online("rack-000", False)
        hub.store.remove_device("rack-001")
        changes = await next_message(ws)
        assert [(d["id"], d["online"]) for d in changes["devices"]] == [("rack-000", False)]
        assert changes["removed_devices"] == ["rack-001"]
        assert sorted(changes["removed_channels"]) == ["rack-001:1", "rack-001:2"]


async def test_a_receiver_removed_and_added_back_within_one_batch_is_sent_whole_after_its_removal(hub: Hub) -> None:
    """DELETE then POST of one receiver (a URL corrected) within the feed's 0.5 s: the message named it removed
    only, with its channels beside it, so a board deleted it, dropped the channels of a receiver it no longer knew
    and never heard of it again. It is now also sent whole, channels included: a board applies removals first."""
    async with aiohttp.ClientSession() as session, session.ws_connect(live_url(hub)) as ws:
        await next_message(ws)
        device = hub.store.remove_device("rack-001")
        assert device is not None
        hub.store.add_device(device)
        changes = await next_message(ws)
        assert changes["removed_devices"] == ["rack-001"]
        assert [(d["id"], [c["id"] for c in d["channels"]]) for d in changes["devices"]] == [
            ("rack-001", ["rack-001:1", "rack-001:2"])
        ]
        # its channels are in it, not again beside it or as removed
        assert changes["channels"] == [] and changes["removed_channels"] == []
        # a board that applies the message as board.js does ends with what a fresh snapshot shows
        shown = {d["id"]: d for d in (await live_snapshot(hub))["devices"]}
        board = {"rack-000": shown["rack-000"], "rack-001": {"id": "rack-001", "stale": True}}
        for removed in changes["removed_devices"]:
            board.pop(removed)
        for update in changes["devices"]:
            board[update["id"]] = {**board.get(update["id"], {"channels": []}), **update}
        assert board == shown


async def live_snapshot(hub: Hub) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.ws_connect(live_url(hub)) as ws:
        return await next_message(ws)


async def test_a_channel_reaches_a_browser_with_the_receiver_s_first_report_of_it(hub: Hub) -> None:
    """A receiver tells its channel count before its channels' state: the channels made from the count alone were
    sent as they were, every field null (a nameless channel with no transmitter), the real state a moment later."""
    async with aiohttp.ClientSession() as session, session.ws_connect(live_url(hub)) as ws:
        await next_message(ws)
        hub.store.set_channel_count("rack-000", 3)
        hub.store.update_channel("rack-000", 1, {"battery_bars": 4})
        changes = await next_message(ws)
        assert [channel["id"] for channel in changes["channels"]] == ["rack-000:1"]
        hub.store.update_channel("rack-000", 3, {"name": "Mic 0.3", "tx_present": True})
        changes = await next_message(ws)
        assert [(channel["id"], channel["name"]) for channel in changes["channels"]] == [("rack-000:3", "Mic 0.3")]
        assert changes["channels"][0]["updated_at"] is not None


async def test_meters_reach_a_browser_at_most_twice_a_second(hub: Hub) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(live_url(hub)) as ws:
        await next_message(ws)
        arrivals = []
        level = -60.0
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:
            level = -60.0 if level > -10 else level + 1
            hub.store.update_channel("rack-000", 1, {"audio_dbfs": level, "rf_dbm": level})
            try:
                await next_message(ws, timeout=0.02)
                arrivals.append(time.monotonic())
            except TimeoutError:
                pass
        assert 2 <= len(arrivals) <= 4
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert min(gaps) >= 0.45


@pytest.mark.parametrize("hub", [{"live_interval_s": 0.05, "live_queue": 2}], indirect=True)
async def test_a_stalled_browser_is_dropped_and_others_keep_up(hub: Hub) -> None:
    for device in fleet(150, 8):
        hub.store.add_device(device)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(live_url(hub)) as stalled,
        session.ws_connect(live_url(hub)) as reader,
    ):
        await next_message(reader)
        received = 0
        step = 0
        started = time.monotonic()
        # every batch rewrites every meter (about 1 MB of JSON); the stalled browser never reads
        while hub.web.live.dropped == 0:
            step += 1
            for device in list(hub.store.devices.values()):
                for channel in device.channels:
                    hub.store.update_channel(device.id, channel.index, {"audio_dbfs": -float(step % 60)})
            received += (await next_message(reader))["type"] == "changes"
            assert time.monotonic() - started < 30, "the stalled client was never dropped"
        assert len(hub.web.live.clients) == 1
        message = await stalled.receive(5)
        while message.type == aiohttp.WSMsgType.TEXT:
            message = await stalled.receive(5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        hub.store.update_channel("rack-000", 1, {"battery_bars": 1})
        await eventually(
            lambda: hub.web.live.messages_sent > 0 and len(hub.web.live.clients) == 1, what="reader still served"
        )
        while True:
            changes = await next_message(reader)
            if any(c["id"] == "rack-000:1" and c["battery_bars"] == 1 for c in changes["channels"]):
                break
    assert received >= 1


@pytest.mark.parametrize("hub", [{"open_reads": False}], indirect=True)
async def test_closed_reads_need_the_token_on_the_live_feed_too(hub: Hub) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(live_url(hub))
        assert refused.value.status == 401
        async with session.ws_connect(live_url(hub) + "?token=live-feed-test-token") as ws:
            assert (await next_message(ws))["type"] == "snapshot"


async def test_a_batch_that_cannot_be_encoded_does_not_end_the_feed(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert hub.web is not None
    feed = hub.web.live
    encode = feed.changes
    failures = iter([True])

    def changes_failing_once(batch: Any) -> dict[str, Any]:
        if next(failures, False):
            raise ValueError("a device sent something the board cannot show")
        return encode(batch)

    monkeypatch.setattr(feed, "changes", changes_failing_once)
    async with aiohttp.ClientSession() as session, session.ws_connect(live_url(hub)) as ws:
        await next_message(ws)
        hub.store.update_channel("rack-000", 1, {"battery_bars": 3})
        await eventually(lambda: "could not be sent" in caplog.text, what="the failed batch logged")
        hub.store.update_channel("rack-000", 2, {"battery_bars": 1})
        changes = await next_message(ws)
        assert [(c["id"], c["battery_bars"]) for c in changes["channels"]] == [("rack-000:2", 1)]


async def test_a_browser_that_reconnects_gets_a_fresh_snapshot_and_changes_again(hub: Hub) -> None:
    # the feed watches the store only while a browser is connected; leaving and coming back loses nothing
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(live_url(hub)) as ws:
            await next_message(ws)
        await eventually(lambda: not hub.web.live.clients)
        hub.store.update_channel("rack-000", 1, {"battery_bars": 1})  # while no board is open
        async with session.ws_connect(live_url(hub)) as ws:
            snapshot = await next_message(ws)
            assert snapshot["devices"][0]["channels"][0]["battery_bars"] == 1
            hub.store.update_channel("rack-000", 2, {"battery_bars": 3})
            changes = await next_message(ws)
            assert [(c["id"], c["battery_bars"]) for c in changes["channels"]] == [("rack-000:2", 3)]


@contextlib.contextmanager
def collector_tuned_as_wmhub_run_tunes_it() -> Iterator[None]:
    """The collector's young-generation threshold as `wmhub run` sets it (hub.cli): collections are rare."""
    before = gc.get_threshold()
    gc.collect()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 10)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def server_websockets() -> int:
    """The hub's WebSockets still in memory, closed or not (the client's are of another class)."""
    return sum(type(tracked) is web.WebSocketResponse for tracked in gc.get_objects())


async def test_browsers_that_came_and_went_leave_nothing_in_memory(hub: Hub) -> None:
    """An outside audit (a churn soak): every browser that opened and closed the live feed left 100-400 KB in
    the hub (aiohttp's closed WebSocket is held in reference cycles, and the hub's collector ran only after
    about a thousand of them): the hub's memory went from 95 to 344 MB under boards reloaded and phones
    reconnecting, then fell back and climbed again."""
    with collector_tuned_as_wmhub_run_tunes_it():
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.ws_connect(live_url(hub)) as ws:
                    await next_message(ws)
            await eventually(lambda: not hub.web.live.clients, what="every browser gone")
            await eventually(lambda: server_websockets() == 0, 5, "the closed WebSockets freed")


def ping_and_hang_up(port: int) -> None:
    """Open the live feed from a raw socket, send pings faster than the hub answers them, and hang up with a
    reset (SO_LINGER 0): the hub still has pings to answer on a connection that is gone."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(
            f"GET /api/v1/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ping = bytes([0x89, 0x80 | 100]) + b"\0\0\0\0" + b"p" * 100  # masked, as a client's frames are
        with contextlib.suppress(OSError):
            for _ in range(5000):
                raw.sendall(ping)


async def test_a_client_that_hangs_up_while_pinging_is_a_quiet_disconnect(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: such a client was logged as 'GET /api/v1/live failed' at error level with a
    ClientConnectionResetError traceback; a client going away is no failure of the hub."""
    for _ in range(5):
        await asyncio.to_thread(ping_and_hang_up, hub.web.port)
        await eventually(lambda: not hub.web.live.clients, 5, "the live client gone")
    # the loop monitor's lateness warning is the machine's load, not the client's going
    noisy = [
        record
        for record in caplog.records
        if (record.levelno >= logging.WARNING or record.exc_info) and record.module != "lag"
    ]
    assert not noisy, [record.getMessage() for record in noisy]
    async with aiohttp.ClientSession() as session, session.ws_connect(live_url(hub)) as ws:
        assert (await next_message(ws))["type"] == "snapshot"  # the feed still serves the next browser


def sends_in_flight() -> list[asyncio.Task[Any]]:
    """aiohttp's own tasks that compress and send one large message (it shields them from the sender's cancel)."""
    return [task for task in asyncio.all_tasks() if "_send_compressed_frame" in repr(task.get_coro())]


async def test_a_browser_gone_while_a_large_message_is_compressed_leaves_no_unretrieved_error(hub: Hub) -> None:
    """An outside audit: 'Task exception was never retrieved … Cannot write to closing transport' at error level
    when a board closed while its 1,000-channel snapshot was on its way. The compression is held in the executor
    until the browser has gone, so the send fails after its sender was cancelled, every time."""
    for device in fleet(60, 4):  # a snapshot well over aiohttp's 16 KB compressed in the executor
        hub.store.add_device(device)
    loop = asyncio.get_running_loop()
    unretrieved: list[str] = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context["message"]))
    held = threading.Event()
    executor = ThreadPoolExecutor(1)
    loop.set_default_executor(executor)
    blocker = loop.run_in_executor(None, held.wait)
    try:
        try:
            async with aiohttp.ClientSession() as session, session.ws_connect(live_url(hub), compress=15) as ws:
                await eventually(sends_in_flight, 5, "the snapshot being compressed")
                await ws.close()
            await eventually(lambda: not hub.web.live.clients, 5, "the live client gone")
        finally:
            held.set()
            await blocker
        await eventually(lambda: not sends_in_flight(), 5, "the send over")
        gc.collect()  # a task's unretrieved exception is reported when the task is freed
        assert not unretrieved
    finally:
        loop.set_exception_handler(None)
        executor.shutdown()


def open_and_never_read(port: int, closed: threading.Event) -> None:
    """Open the live feed from a raw socket and read nothing (no pong either), as a browser whose page is too
    busy to take its messages: Chromium then leaves the hub's ping unread behind them. Returns when the hub
    has closed the connection."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.sendall(
            f"GET /api/v1/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        closed.wait(30)


async def test_a_browser_that_does_not_answer_its_ping_is_counted_and_said_as_dropped(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: a 1,000-channel board fell to "reconnecting…" every minute or so while the hub said it
    dropped no client. A page too busy to read its socket leaves the hub's ping unanswered, and aiohttp's
    heartbeat closed it with no count and no word. Such a close is a drop like the others now."""
    hub.web.live.heartbeat = 1.0  # the hub's 20 s, shortened for the test
    closed = threading.Event()
    client = asyncio.create_task(asyncio.to_thread(open_and_never_read, hub.web.port, closed))
    try:
        await eventually(lambda: hub.web.live.dropped == 1, 10, "the silent browser dropped")
    finally:
        closed.set()
        await client
    assert not hub.web.live.clients
    assert any("did not answer" in record.getMessage() for record in caplog.records), caplog.records
