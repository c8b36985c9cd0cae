"""Live updates for browsers over a WebSocket (``/api/v1/live``).

One coalescing StateStore subscription feeds every browser: each batch becomes one JSON message, encoded
once and offered to every client's bounded queue. The subscription exists only while a browser is
connected: with no board open, meter samples cost the hub nothing here, and while one is, the hub asks
receivers for levels at least every ``interval`` (hub.metering). Batches are at least
``interval`` apart (0.5 s: meters reach a browser at most at 2 Hz). Offering never waits, so a slow or
stalled browser cannot slow the hub: when its queue is full it is dropped (closed with 1013 "try again
later") and the board reconnects, starting again from a fresh snapshot. Each client's own writer task
bounds every send with a timeout, and sends a keepalive message when it has had nothing to send for
``keepalive`` seconds: a board can then tell a calm hub from one that went silent without closing the socket
(a hung hub, a dropped Wi-Fi path), which TCP alone would report only many minutes later.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from hub.service import REMOVED, Batch, HubService, Subscription
from hub.web.api import channel_id, channel_json, device_json
from hub.web.routing import dumps

log = logging.getLogger("hub.web.live")
KEEPALIVE_MESSAGE = dumps({"type": "keepalive"})
# aiohttp leaves a closed WebSocket's socket, request and buffers in reference cycles, which only the garbage
# collector frees, and the hub runs it rarely (hub.cli, _tune_garbage_collector): browsers that came and went
# (a board reloaded, phones reconnecting) piled up 100-400 KB each, for about a thousand of them. The young
# generations are collected this long after a browser leaves (one collection for a burst; a few ms).
COLLECT_AFTER_S = 1.0


class LiveClient:
    def __init__(self, ws: web.WebSocketResponse, queue_limit: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_limit)
        self.writer: asyncio.Task[None] | None = None


class LiveFeed:
    """Fans state changes out to browsers; ``clients`` and ``dropped`` are exported as metrics."""

    def __init__(
        self,
        hub: HubService,
        interval: float = 0.5,
        queue_limit: int = 16,
        send_timeout: float = 5.0,
        keepalive: float = 2.0,
        heartbeat: float = 20.0,
    ) -> None:
        self._hub = hub
        self.interval = interval
        self.keepalive = keepalive
        self.heartbeat = heartbeat
        self.queue_limit = queue_limit
        self.send_timeout = send_timeout
        self.clients: set[LiveClient] = set()
        self.dropped = 0
        self.messages_sent = 0
        self._pump: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._release_meters: Callable[[], None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._collection: asyncio.TimerHandle | None = None

    async def stop(self) -> None:
        pump = self._pump
        self._unwatch()
        if self._collection is not None:
            self._collection.cancel()
            self._collection = None
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        for client in list(self.clients):
            self._disconnect(client, WSCloseCode.GOING_AWAY, b"hub stopping")
        await asyncio.gather(*self._closing, return_exceptions=True)

    def snapshot(self) -> dict[str, Any]:
        devices = sorted(self._hub.state.devices.values(), key=lambda device: device.id)
        return {
            "type": "snapshot",
            "devices": [device_json(self._hub, device) for device in devices],
        }

    def changes(self, batch: Batch) -> dict[str, Any]:
        """The message for one batch: current values of what changed (the store holds the values)."""
        devices: list[dict[str, Any]] = []
        channels: list[dict[str, Any]] = []
        removed_devices: list[str] = []
        removed_channels: list[str] = []
        whole: set[str] = set()  # devices sent with every channel: their changed channels are in them
        for (device_id, index), fields in sorted(batch.items(), key=lambda item: (item[0][0], item[0][1] or 0)):
            device = self._hub.state.get(device_id)
            channel = device.channel(index) if device is not None and index is not None else None
            if index is None:
                if device is None or REMOVED in fields:
                    removed_devices.append(device_id)
                if device is not None and REMOVED in fields:
                    # removed and added back within the batch (DELETE then POST, MQTT remove then add): a board
                    # applies removals first, then this, as it would a snapshot of it (hub.mqtt.publisher too
                    # republishes such a device whole)
                    devices.append(device_json(self._hub, device))
                    whole.add(device_id)
                elif device is not None:
                    devices.append(device_json(self._hub, device, channels=False))
            elif device_id in whole:
                continue
            elif device is None or channel is None:
                removed_channels.append(channel_id(device_id, index))
            elif channel.reported:  # a channel the receiver has not reported yet is sent with its first report
                channels.append(channel_json(device, channel))
        return {
            "type": "changes",
            "devices": devices,
            "channels": channels,
            "removed_devices": removed_devices,
            "removed_channels": removed_channels,
        }

    def _watch(self) -> None:
        if self._subscription is None:
            self._release_meters = self._hub.need_meters(self.interval)
            self._subscription = self._hub.state.subscribe(min_interval=self.interval)
            self._pump = asyncio.create_task(self._run(self._subscription), name="web live feed")

    def _unwatch(self) -> None:
        if self._release_meters is not None:
            self._release_meters()
            self._release_meters = None
        if self._subscription is not None:
            self._subscription.close()  # ends the pump's loop
            self._subscription = None
            self._pump = None

    def _remove(self, client: LiveClient) -> None:
        self.clients.discard(client)
        if not self.clients:
            self._unwatch()

    async def _run(self, subscription: Subscription) -> None:
        async for batch in subscription:  # the subscription ends with the last client: someone is watching
            try:
                message = dumps(self.changes(batch))
            except Exception:  # one device's bad data must not end the live feed of every browser
                log.exception("live feed: %d change(s) could not be sent", len(batch))
                continue
            for client in list(self.clients):
                self._offer(client, message)

    def _offer(self, client: LiveClient, message: str) -> None:
        try:
            client.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("dropping a live client that does not keep up (%d messages queued)", client.queue.qsize())
            self._disconnect(client, WSCloseCode.TRY_AGAIN_LATER, b"too slow")

    def _disconnect(self, client: LiveClient, code: int, reason: bytes) -> None:
        self._remove(client)
        if client.writer is not None:
            client.writer.cancel()
        closing = asyncio.create_task(self._close(client.ws, code, reason))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _close(self, ws: web.WebSocketResponse, code: int, reason: bytes) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.send_timeout):
                await ws.close(code=code, message=reason)

    async def _write(self, client: LiveClient) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(self.keepalive):
                        message = await client.queue.get()
                except TimeoutError:
                    message = KEEPALIVE_MESSAGE
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the cancel of a dropped client
                async with asyncio.timeout(self.send_timeout):
                    await asyncio.shield(self._sending(client.ws, message))
                self.messages_sent += 1
        except TimeoutError:
            if client in self.clients:
                self.dropped += 1
                log.warning("dropping a live client that took over %g s to take a message", self.send_timeout)
                self._disconnect(client, WSCloseCode.TRY_AGAIN_LATER, b"too slow")
        except ConnectionError as exc:
            if client in self.clients:
                log.debug("a live client went away: %s", exc)
                self._disconnect(client, WSCloseCode.GOING_AWAY, b"")

    @staticmethod
    def _sending(ws: web.WebSocketResponse, message: str) -> asyncio.Task[None]:
        """The send as a task that always has its outcome taken. aiohttp compresses a large message in a task of its
        own, shielded from its sender's cancel; a client dropped or gone meanwhile (the sender cancelled) left that
        task to fail on the closed transport with nobody awaiting it: "Task exception was never retrieved" at
        error level in the log, for a browser that merely went away. This task awaits aiohttp's to its end, and
        its own outcome is taken here when the sender is no longer there to take it."""
        task = asyncio.ensure_future(ws.send_str(message))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        return task

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=self.heartbeat)
        await ws.prepare(request)
        client = LiveClient(ws, self.queue_limit)
        client.queue.put_nowait(dumps(self.snapshot()))
        self.clients.add(client)
        self._watch()  # no await since the snapshot: the subscription starts exactly where it ends
        client.writer = asyncio.create_task(self._write(client), name="web live writer")
        try:
            # browsers send nothing but pings; reading keeps the close handshake and heartbeat working
            async for message in ws:
                if message.type == WSMsgType.ERROR:
                    # aiohttp's heartbeat: no pong within half of it. A browser too busy to read its socket leaves
                    # the ping unread behind the messages: a client that does not keep up, counted and said as
                    # such (it was closed without a word, while the board said "reconnecting…")
                    if isinstance(ws.exception(), TimeoutError) and client in self.clients:
                        self.dropped += 1
                        log.warning(
                            "dropping a live client that did not answer its ping within %g s", self.heartbeat / 2
                        )
                    break
        except ConnectionError as exc:  # gone while the hub answered its ping: a disconnect like any other
            log.debug("a live client went away: %s", exc)
        finally:
            if client in self.clients:
                self._remove(client)
                client.writer.cancel()
            await asyncio.gather(client.writer, return_exceptions=True)
            # the ended writer's CancelledError holds its frame, which holds the client, which holds the
            # writer: a cycle only the garbage collector frees, which the hub runs rarely (hub.cli), and with
            # it the socket, the request and the WebSocket (100-400 KB a browser that came and went)
            client.writer = None
            self._collect_soon()
        return ws

    def _collect_soon(self) -> None:
        if self._collection is None:
            self._collection = asyncio.get_running_loop().call_later(COLLECT_AFTER_S, self._collect)

    def _collect(self) -> None:
        self._collection = None
        gc.collect(1)
