"""The MQTT edge of the hub: publishes the state store, answers requests and set/get commands.

Two store subscriptions feed it. State (every non-meter field and lifecycle change) is coalesced over a
few milliseconds and published retained at once. Meters are delivered at most every
``meter_interval_s`` and a channel's levels are published only when one moved by more than
``meter_threshold_db`` (or the antenna, clip or known/unknown changed), so a 10 Hz meter stream costs
at most one small message per channel per interval, and nothing when the levels stand still.

Inbound messages (requests, set/get, Home Assistant's status) are handled in arrival order per target
(one queue per device, one for hub requests); every one gets an answer on the hub's response topic.
Whoever can publish to the broker can send them: who may is the broker's to decide (its password file and
ACL, docs/mqtt.md "Securing the broker"). The hub adds two limits of its own: requests that change which
devices it watches are off unless ``mqtt.admin`` is on, and a message larger than ``mqtt.max_payload_bytes``
is refused before it is parsed. Nothing a message carries is echoed or logged beyond a short preview.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.model import (
    CHANNEL_FIELDS,
    DEVICE_FIELDS,
    METER_FIELDS,
    Command,
    CommandKind,
    CommandResult,
    Device,
    field_values,
)
from hub.mqtt import topics as payloads
from hub.mqtt.client import BrokerAddress, MqttClient, TlsFiles, Will, parse_broker_urls
from hub.mqtt.embedded import EmbeddedBroker, EmbeddedBrokerError
from hub.mqtt.homeassistant import EntityOptions, discovery_config, hub_discovery_config
from hub.mqtt.topics import Topics
from hub.redact import redact
from hub.service import ADDED, ONLINE, REMOVED, Batch, ChangeKey, HubService, Subscription
from hub.store import AlertEvent
from hub.store.show import SwapList
from hub.text import DEFAULT_TEXT_WIDTH, preview

log = logging.getLogger("hub.mqtt")

SOURCE = "mqtt"
STATE_FIELDS = (CHANNEL_FIELDS - METER_FIELDS) | DEVICE_FIELDS
# Long enough to merge the burst of updates one device report makes, short enough to stay well under
# the 100 ms change-to-MQTT budget.
STATE_COALESCE_S = 0.02
# channels whose meters are published in one event-loop turn (a few ms): a large batch is cut into slices
METER_SLICE = 500
# Home Assistant subscribes to state topics after it has processed the configs; meters are not retained,
# so their snapshot waits a moment after the configs went out.
HOMEASSISTANT_METER_DELAY_S = 2.0
# How long a previous run's device may take to identify itself again before this run decides it is gone
# (removed from the configuration) and clears its retained topics: a driver's connect timeout, and some.
DEPARTED_GRACE_S = 15.0
# Inbound messages waiting per target (one device, or the hub's requests) before more are refused. Far more
# than a person or a control desk sends; only a runaway client reaches it.
MAX_WAITING_PER_TARGET = 1000
# Requests that change which devices the hub watches (and so which hosts and ports it connects to).
ADMIN_REQUESTS = frozenset({"device/add", "device/remove", "candidate/approve"})
# Longer than any device URL or id a person types; a longer one is refused, not echoed.
MAX_URL_CHARS = 2048
# Longer than any request name: such a request is not answered, as its answer topic would echo the name.
MAX_COMMAND_CHARS = 64


class RequestError(Exception):
    """A request that cannot be carried out; the message goes back to the requester."""


class _Strict(BaseModel):
    # strict: JSON's own types only, as REST takes them ("yes", 1 or "3" are not true, true or 3)
    model_config = ConfigDict(extra="forbid", strict=True)


class ChannelSet(_Strict):
    """``<base>/devices/<id>/channels/<n>/set``: one or more of these keys."""

    name: str | None = Field(default=None, min_length=1, max_length=DEFAULT_TEXT_WIDTH)
    muted: bool | Literal["toggle"] | None = None
    gain_db: float | None = None
    gain_step_db: float | None = None
    frequency_mhz: float | None = Field(default=None, gt=0)
    identify: bool | None = None
    rf_output: bool | None = None


class DeviceSet(_Strict):
    """``<base>/devices/<id>/set``."""

    name: str | None = Field(default=None, min_length=1, max_length=DEFAULT_TEXT_WIDTH)
    identify: bool | None = None
    meter_rate_ms: int | None = Field(default=None, ge=0, le=99999)


_CHANNEL_COMMANDS: dict[str, CommandKind] = {
    "name": CommandKind.NAME,
    "muted": CommandKind.MUTE,
    "gain_db": CommandKind.GAIN,
    "gain_step_db": CommandKind.GAIN_STEP,
    "frequency_mhz": CommandKind.FREQUENCY,
    "identify": CommandKind.IDENTIFY,
    "rf_output": CommandKind.RF_OUTPUT,
}
_DEVICE_COMMANDS: dict[str, CommandKind] = {
    "name": CommandKind.DEVICE_NAME,
    "identify": CommandKind.IDENTIFY,
    "meter_rate_ms": CommandKind.METER_RATE,
}


class UrlRequest(_Strict):
    url: str = Field(min_length=1, max_length=MAX_URL_CHARS)


class RemoveRequest(_Strict):
    id: str = Field(min_length=1, max_length=MAX_URL_CHARS, description="device id or URL")


class RenameRequest(_Strict):
    device_id: str
    channel: int = Field(ge=1)
    name: str | None = Field(max_length=DEFAULT_TEXT_WIDTH, description="the extended name; null clears it")


class MeterRateRequest(_Strict):
    ms: int = Field(ge=0, le=99999)
    device_id: str | None = None


class EmptyRequest(_Strict):
    pass


RequestHandler = Callable[[Any], Awaitable[Any]]


class MqttBridge:
    """``MqttBridge(hub)``; ``await start()`` after the devices started, ``await stop()`` at shutdown."""

    name = "mqtt"

    def __init__(self, hub: HubService) -> None:
        self.hub = hub
        self.settings = hub.config.mqtt
        self.topics = Topics(self.settings.base_topic, hub.config.hub_id, self.settings.homeassistant_prefix)
        self.embedded: EmbeddedBroker | None = None
        self.client: MqttClient | None = None
        self._subscriptions: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._queues: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._waiting: Counter[str] = Counter()
        # per channel: its meters topic and the values last sent there (formatting the topic per message, and
        # reading the QoS through the pydantic settings, cost as much as the JSON payload)
        self._last_meters: dict[tuple[str, int], tuple[str, tuple[Any, ...]]] = {}
        self._qos_meters = self.settings.qos_meters
        self._controlled: set[str] = set()
        self._left_behind_checked = False
        self._remove_alert_listener: Callable[[], None] | None = None
        self._remove_swap_listener: Callable[[], None] | None = None
        self._remove_plan_listener: Callable[[], None] | None = None
        self._requests: dict[str, tuple[type[_Strict], RequestHandler]] = {
            "info": (EmptyRequest, self._request_info),
            "devices": (EmptyRequest, self._request_devices),
            "device/add": (UrlRequest, self._request_add),
            "device/remove": (RemoveRequest, self._request_remove),
            "candidates": (EmptyRequest, self._request_candidates),
            "candidate/approve": (UrlRequest, self._request_approve),
            "channel/rename": (RenameRequest, self._request_rename),
            "meter_rate": (MeterRateRequest, self._request_meter_rate),
            "discovery/restart": (EmptyRequest, self._request_discovery_restart),
        }

    # Lifecycle

    async def start(self) -> None:
        settings = self.settings
        if settings.url == "embedded":
            self.embedded = EmbeddedBroker(settings.embedded_port)
            try:
                port = await self.embedded.start()
            except EmbeddedBrokerError as exc:
                log.error("%s; MQTT is off for this run", exc)
                self.embedded = None
                return
            addresses: tuple[BrokerAddress, ...] = (BrokerAddress("127.0.0.1", port),)
        else:
            addresses = parse_broker_urls(settings.url)
        qos = settings.qos_state
        self.client = MqttClient(
            addresses,
            settings.client_id or self.hub.config.hub_id,
            on_message=self._on_message,
            keepalive=settings.keepalive,
            will=Will(self.topics.hub_state, payloads.HUB_OFFLINE, qos, True),
            tls=TlsFiles(settings.ca_file, settings.cert_file, settings.key_file, settings.tls_insecure),
            connect_timeout=self.hub.config.io_timeout_s,
            max_subscription_qos=settings.subscription_qos,
        )
        client = self.client
        client.publish(self.topics.hub_state, payloads.HUB_ONLINE, qos, retain=True)
        client.publish(self.topics.hub_info, payloads.encode(self.hub.info()), qos, retain=True)
        self._publish_hub_homeassistant()
        if settings.control:
            client.subscribe(self.topics.requests, qos)
        if settings.homeassistant:
            client.subscribe(self.topics.homeassistant_status, qos)
        # once: the retained device list tells which devices the previous run of this hub left behind
        client.subscribe(self.topics.hub_devices, qos)
        for device in list(self.hub.state.devices.values()):
            self._publish_device(device)
        self._publish_device_list()
        venue = self.hub.venue
        if venue is not None:
            self._publish_alerts()
            self._remove_alert_listener = venue.alerts.add_listener(self._on_alert_event)
            self._remove_swap_listener = venue.show.add_listener(self._on_swap_list)
            plan = venue.frequency
            self._publish_frequency_plan(plan.summary())
            self._remove_plan_listener = plan.add_listener(self._publish_frequency_plan)
        state = self.hub.state.subscribe(fields=STATE_FIELDS, min_interval=STATE_COALESCE_S)
        meters = self.hub.state.subscribe(fields=METER_FIELDS, min_interval=settings.meter_interval_s)
        self._subscriptions = [state, meters]
        self._loops = [
            asyncio.create_task(self._consume(state, self._on_state_batch), name="mqtt state"),
            asyncio.create_task(self._consume_meters(meters), name="mqtt meters"),
        ]
        for task in self._loops:
            self.hub.watch(task, f"the {task.get_name()} publisher")
        client.start()
        if not await client.wait_connected(self.hub.config.io_timeout_s):
            log.warning("MQTT broker %s not reachable yet; the hub keeps trying in the background", client.address)

    async def stop(self) -> None:
        """Say offline (hub and devices, retained), deliver it, disconnect cleanly, stop the embedded broker."""
        for remove in (self._remove_alert_listener, self._remove_swap_listener, self._remove_plan_listener):
            if remove is not None:
                remove()
        self._remove_alert_listener = self._remove_swap_listener = self._remove_plan_listener = None
        for sub in self._subscriptions:
            sub.close()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self.client is not None and self._subscriptions:
            # the offline marks of the devices the hub just closed may still be coalescing: publish them, or
            # their retained availability would keep saying online after a clean stop
            pending = self._subscriptions[0].drain()
            if pending:
                self._on_state_batch(pending)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.hub.config.command_timeout_s)
            for task in self._tasks:
                task.cancel()
        client = self.client
        if client is not None:
            # nobody watches the receivers once the hub is gone: say so on each, not only on the hub
            for device_id in list(self.hub.state.devices):
                self._publish(self.topics.availability(device_id), payloads.availability_payload(False))
            client.publish(self.topics.hub_state, payloads.HUB_OFFLINE, self.settings.qos_state, retain=True)
            await client.stop()
        if self.embedded is not None:
            await self.embedded.stop()

    async def _consume(self, subscription: Subscription, handle: Callable[[Batch], None]) -> None:
        async for batch in subscription:
            try:
                handle(batch)
            except Exception:  # a publishing bug must not stop every later update
                log.exception("MQTT publishing failed for %d change(s)", len(batch))
            if self.client is not None:
                self.client.flush()  # state changes leave now, not an event-loop iteration later

    async def _consume_meters(self, subscription: Subscription) -> None:
        # One meter batch holds every channel that moved in the last interval: thousands at a large site.
        # Publishing it in slices lets device input and state changes run in between.
        async for batch in subscription:
            items = list(batch.items())
            for start in range(0, len(items), METER_SLICE):
                if start:
                    await asyncio.sleep(0)
                try:
                    self._on_meter_batch(items[start : start + METER_SLICE])
                except Exception:
                    log.exception("MQTT meter publishing failed for %d channel(s)", len(items))

    # Outbound: state

    def _publish(self, topic: str, payload: bytes, retain: bool = True) -> None:
        assert self.client is not None
        self.client.publish(topic, payload, self.settings.qos_state, retain)

    def _on_state_batch(self, batch: Batch) -> None:
        devices = self.hub.state.devices
        list_changed = False
        configs: set[str] = set()
        for (device_id, index), changed in batch.items():
            device = devices.get(device_id)
            if device is None:
                if index is None and REMOVED in changed:
                    self._clear_device(device_id)
                    list_changed = True
                continue
            if index is None:
                if ADDED in changed or REMOVED in changed:
                    self._publish_device(device)
                    list_changed = True
                    continue
                self._publish(self.topics.device(device_id), payloads.encode(payloads.device_state(device)))
                if ONLINE in changed:
                    self._publish(self.topics.availability(device_id), payloads.availability_payload(device.online))
                    list_changed = True
                if changed & DEVICE_FIELDS:
                    configs.add(device_id)
                    list_changed = True
            else:
                channel = device.channel(index)
                if channel is None:
                    continue
                self._publish(self.topics.channel(device_id, index), payloads.encode(payloads.channel_state(channel)))
                if ADDED in changed:
                    configs.add(device_id)
        for device_id in configs:
            self._publish_homeassistant(devices[device_id], only_if_changed=True)
        if list_changed:
            self._publish_device_list()

    def _publish_device(self, device: Device, meters: bool = True) -> None:
        """Every retained topic of one device, its Home Assistant config, and control subscriptions."""
        self._publish(self.topics.device(device.id), payloads.encode(payloads.device_state(device)))
        self._publish(self.topics.availability(device.id), payloads.availability_payload(device.online))
        for channel in device.channels:
            self._publish(
                self.topics.channel(device.id, channel.index), payloads.encode(payloads.channel_state(channel))
            )
            if meters:
                self._publish_meters(device.id, channel.index, payloads.meter_values(field_values(channel)))
        self._publish_homeassistant(device)
        if self.settings.control and device.id not in self._controlled:
            assert self.client is not None
            for topic_filter in self.topics.control_filters(device.id):
                self.client.subscribe(topic_filter, self.settings.qos_state)
            self._controlled.add(device.id)

    def _entity_options(self) -> EntityOptions:
        return EntityOptions(
            meter_entities=self.settings.homeassistant_meter_entities, configuration_url=self.hub.board_url()
        )

    def _publish_homeassistant(self, device: Device, only_if_changed: bool = False) -> None:
        if not self.settings.homeassistant:
            return
        config = discovery_config(device, self.topics, self.settings.qos_state, self._entity_options())
        self._publish_config(self.topics.homeassistant_config(device.id), config, only_if_changed)

    def _publish_hub_homeassistant(self, only_if_changed: bool = False) -> None:
        if self.settings.homeassistant:
            config = hub_discovery_config(self.topics, self.settings.qos_state, self._entity_options())
            self._publish_config(self.topics.homeassistant_hub_config, config, only_if_changed)

    def _publish_config(self, topic: str, config: dict[str, Any], only_if_changed: bool) -> None:
        assert self.client is not None
        payload = payloads.encode(config)
        # a config is ~11 KB per receiver and a receiver's first reports repeat it unchanged
        if only_if_changed and self.client.retains(topic, payload, self.settings.qos_state):
            return
        self._publish(topic, payload)

    def _clear_device(self, device_id: str) -> None:
        """Empty retained payloads on every topic the device had, so no ghost is left on the broker."""
        assert self.client is not None
        prefix = self.topics.device(device_id)
        stale = [topic for topic in self.client.retained_topics if topic == prefix or topic.startswith(prefix + "/")]
        if self.settings.homeassistant:
            stale.append(self.topics.homeassistant_config(device_id))
        for topic in stale:
            self._publish(topic, b"")
        if device_id in self._controlled:
            for topic_filter in self.topics.control_filters(device_id):
                self.client.unsubscribe(topic_filter)
            self._controlled.discard(device_id)
        for key in [key for key in self._last_meters if key[0] == device_id]:
            del self._last_meters[key]

    def _publish_alerts(self) -> None:
        """The retained list of open alerts (raised or acknowledged, not yet cleared)."""
        if self.client is None or self.hub.venue is None:
            return
        alerts = [alert.model_dump(mode="json") for alert in self.hub.open_alerts()]
        self._publish(self.topics.hub_alerts, payloads.encode(alerts))

    def _on_alert_event(self, event: AlertEvent) -> None:
        if self.client is None:
            return
        body = {"action": event.action, "alert": event.alert.model_dump(mode="json")}
        self._publish(self.topics.hub_alert_events, payloads.encode(body), retain=False)
        self._publish_alerts()

    def _on_swap_list(self, swap: SwapList) -> None:
        """The battery swap list, retained, after every check of the show (for Companion and Home Assistant)."""
        self._publish(self.topics.hub_swap_list, payloads.encode(swap.model_dump(mode="json")))

    def _publish_frequency_plan(self, summary: dict[str, Any]) -> None:
        """The retained summary of the live frequency plan (counts and the worst findings)."""
        if self.client is not None:
            self._publish(self.topics.hub_frequency_plan, payloads.encode(summary))

    def _publish_device_list(self) -> None:
        self._publish(self.topics.hub_devices, payloads.encode(self._device_summaries()))
        self._publish(self.topics.hub_info, payloads.encode(self.hub.info()))
        # the board's address is known once the web server is listening, after this edge started
        self._publish_hub_homeassistant(only_if_changed=True)

    def _device_summaries(self) -> list[dict[str, Any]]:
        urls = {health["device_id"]: health["url"] for health in self.hub.connections()}
        return [
            {**payloads.device_summary(device), "url": urls.get(device.id)}
            for device in self.hub.state.devices.values()
        ]

    # Outbound: meters (the hot path)

    def _on_meter_batch(self, changes: Iterable[tuple[ChangeKey, frozenset[str]]]) -> None:
        channel_fields = self.hub.state.channel_fields
        threshold = self.settings.meter_threshold_db
        last = self._last_meters
        for key, changed in changes:
            device_id, index = key
            if index is None or METER_FIELDS.isdisjoint(changed):
                continue
            fields = channel_fields(device_id, index)
            if fields is None:
                continue
            values = payloads.meter_values(fields)
            sent = last.get((device_id, index))
            if payloads.meters_moved(sent[1] if sent is not None else None, values, threshold):
                self._publish_meters(device_id, index, values)

    def _publish_meters(self, device_id: str, index: int, values: tuple[Any, ...]) -> None:
        assert self.client is not None
        key = (device_id, index)
        sent = self._last_meters.get(key)
        topic = sent[0] if sent is not None else self.topics.meters(device_id, index)
        self._last_meters[key] = (topic, values)
        self.client.publish(topic, payloads.meters_payload(values), self._qos_meters)

    def _publish_meter_snapshot(self) -> None:
        for device in list(self.hub.state.devices.values()):
            for channel in device.channels:
                self._publish_meters(device.id, channel.index, payloads.meter_values(field_values(channel)))

    # Inbound

    def _on_message(self, topic: str, payload: bytes) -> None:
        """Called by the client for each message, in order; nothing here awaits, nothing is dropped."""
        command = self.topics.request_command(topic)
        if command is not None:
            if len(command) > MAX_COMMAND_CHARS:  # its answer would go to a topic that long
                log.warning("MQTT request %s ignored: no command is that long", preview(command))
            elif not self._oversized(command, payload, {}):
                self._spawn("hub", self._answer_request(command, payload), command)
            return
        if topic == self.topics.hub_devices:
            self._mark_left_behind_offline(payload)
            return
        target = self.topics.control_target(topic)
        if target is not None:
            where = {"device_id": target.device_id, "channel": target.channel}
            if self._oversized(target.action, payload, where):
                return
            self._spawn(
                target.device_id,
                self._answer_control(target.device_id, target.channel, target.action, payload),
                target.action,
            )
            return
        if topic == self.topics.homeassistant_status and payload.strip() == b"online":
            self._republish_for_homeassistant()

    def _oversized(self, command: str, payload: bytes, where: dict[str, Any]) -> bool:
        """Refuse a message over ``max_payload_bytes`` unread: parsing, queueing or echoing a flood costs the hub
        memory and time in proportion to it."""
        limit = self.settings.max_payload_bytes
        if len(payload) <= limit:
            return False
        log.warning(
            "MQTT %s refused unread: %d bytes (mqtt.max_payload_bytes = %d)", preview(command), len(payload), limit
        )
        self._respond(command, None, "error", where, f"payload of {len(payload)} bytes refused; the limit is {limit}")
        return True

    def _mark_left_behind_offline(self, payload: bytes) -> None:
        """Devices in the list a previous run of this hub left retained, and unknown to this run, get an
        ``offline`` availability (the last will covers only the hub's own state topic); those that turn out
        to be gone from the configuration get their retained topics cleared once this run's devices have
        identified themselves."""
        assert self.client is not None
        if self._left_behind_checked:
            return
        self._left_behind_checked = True
        self.client.unsubscribe(self.topics.hub_devices)
        try:
            previous = {str(entry["id"]): int(entry.get("channel_count") or 0) for entry in orjson.loads(payload)}
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError):
            return
        for device_id in sorted(set(previous) - set(self.hub.state.devices)):
            log.info("device %s from this hub's previous run is not here (yet): marked offline", device_id)
            availability = self.topics.availability(device_id)
            self.client.publish(availability, b"offline", self.settings.qos_state, retain=True, keep=False)
        if previous:
            task = asyncio.create_task(self._clear_departed(previous), name="mqtt departed devices")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _clear_departed(self, previous: dict[str, int]) -> None:
        """Clear the retained topics of the previous run's devices that this run does not have: removed from
        the configuration (or the store) while the hub was stopped. Waits until every device of this run
        has an id (this run's, or the one it had last run), at most DEPARTED_GRACE_S."""
        deadline = asyncio.get_running_loop().time() + DEPARTED_GRACE_S
        expected, complete = self.hub.expected_device_ids()
        while not complete and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
            expected, complete = self.hub.expected_device_ids()
        for device_id, channel_count in sorted(previous.items()):
            if device_id in expected or self.client is None:
                continue
            log.info("device %s of this hub's previous run is gone: clearing its retained topics", device_id)
            topics = [self.topics.device(device_id), self.topics.availability(device_id)]
            topics += [self.topics.channel(device_id, index) for index in range(1, channel_count + 1)]
            if self.settings.homeassistant:
                topics.append(self.topics.homeassistant_config(device_id))
            for topic in topics:
                self._publish(topic, b"")
            self.client.flush()

    def _spawn(self, queue: str, work: Coroutine[Any, Any, None], command: str) -> None:
        """Run ``work`` after everything queued before it for the same target; refuse it (answering on the
        ``command`` response topic) when the target already has too much waiting, so a flood of messages
        cannot pile up tasks without end."""
        if self._waiting[queue] >= MAX_WAITING_PER_TARGET:
            work.close()
            log.warning("MQTT: %d messages for %s still waiting; refusing more", self._waiting[queue], queue)
            self._respond(command, None, "error", {}, f"too many requests waiting for {queue}; try again later")
            return
        self._waiting[queue] += 1

        # Tasks start in creation order and the lock is fair, so each queue is served first come, first served.
        async def in_order() -> None:
            try:
                async with self._queues[queue]:
                    await work
            finally:
                self._waiting[queue] -= 1
                if not self._waiting[queue]:
                    # nothing holds or waits for the lock any more: forget it, or removed devices' locks pile up
                    del self._waiting[queue]
                    self._queues.pop(queue, None)

        task = asyncio.create_task(in_order())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _respond(self, command: str, request: dict[str, Any] | None, status: str, data: Any, error: str | None) -> None:
        response: dict[str, Any] = {"status": status, "data": data, "error": None if error is None else redact(error)}
        if request is not None and "transaction" in request:
            response["transaction"] = request["transaction"]
        assert self.client is not None
        self.client.publish(self.topics.response(command), payloads.encode(response), self.settings.qos_state)

    async def _answer_request(self, command: str, raw: bytes) -> None:
        request: dict[str, Any] | None = None
        try:
            request = _parse_object(raw)
            entry = self._requests.get(command)
            if entry is None:
                raise RequestError(f"unknown request {preview(command)}; known: {', '.join(sorted(self._requests))}")
            if command in ADMIN_REQUESTS and not self.settings.admin:
                raise RequestError(
                    f"{command} is off over MQTT (mqtt.admin = false); use the REST API, or turn mqtt.admin on "
                    "once the broker's ACL limits who may publish requests"
                )
            model, handler = entry
            data = await handler(_validate(model, request))
        except (RequestError, ValueError, LookupError) as exc:  # ValueError: hub.drivers.EndpointError, a bad URL
            message = _shortened(str(exc))
            log.warning("MQTT request %s refused: %s", preview(command), message)
            self._respond(command, request, "error", {}, message)
        except Exception as exc:
            log.exception("MQTT request %s failed", preview(command))
            self._respond(command, request, "error", {}, f"internal error: {_shortened(str(exc))}")
        else:
            self._respond(command, request, "ok", data, None)

    async def _answer_control(self, device_id: str, channel: int | None, action: str, raw: bytes) -> None:
        request: dict[str, Any] | None = None
        where: dict[str, Any] = {"device_id": device_id, "channel": channel}
        try:
            request = _parse_object(raw)
            if action == "get":
                self._respond("get", request, "ok", {**where, "state": self._republish(device_id, channel)}, None)
                return
            results = await self._apply_set(device_id, channel, request)
        except RequestError as exc:
            log.warning("MQTT %s on %s channel %s refused: %s", action, device_id, channel, exc)
            self._respond(action, request, "error", where, str(exc))
            self._restore(device_id, channel)
            return
        except Exception as exc:  # the requester still gets an answer, and the device's queue goes on
            log.exception("MQTT %s on %s channel %s failed", action, device_id, channel)
            self._respond(action, request, "error", where, f"internal error: {_shortened(str(exc))}")
            self._restore(device_id, channel)
            return
        failed = {key: result for key, result in results.items() if not result.ok}
        data = {**where, "results": {key: result.model_dump() for key, result in results.items()}}
        error = "; ".join(f"{key}: {result.error or result.code}" for key, result in failed.items()) or None
        self._respond("set", request, "error" if failed else "ok", data, error)
        if failed:
            log.warning("MQTT set on %s channel %s not carried out: %s", device_id, channel, error)
            self._restore(device_id, channel)

    def _restore(self, device_id: str, channel: int | None) -> None:
        """Publish the current state again after a refused or failed set. A Home Assistant entity that
        showed the value the user asked for (a text field, a number) then returns to what the device has."""
        device = self.hub.state.devices.get(device_id)
        if device is None or self.client is None:
            return
        found = device.channel(channel) if channel is not None else None
        if found is not None:
            self._publish(self.topics.channel(device_id, found.index), payloads.encode(payloads.channel_state(found)))
        else:
            self._publish(self.topics.device(device_id), payloads.encode(payloads.device_state(device)))
        self.client.flush()

    async def _apply_set(
        self, device_id: str, channel: int | None, request: dict[str, Any]
    ) -> dict[str, CommandResult]:
        model: type[ChannelSet | DeviceSet] = DeviceSet if channel is None else ChannelSet
        kinds = _DEVICE_COMMANDS if channel is None else _CHANNEL_COMMANDS
        values = _validate(model, request).model_dump(exclude_none=True)
        values = {key: value for key, value in values.items() if not (key == "identify" and value is False)}
        if not values:
            raise RequestError(f"nothing to set; use one or more of: {', '.join(kinds)}")
        if device_id not in self.hub.state.devices:
            raise RequestError(f"unknown device {device_id!r}")
        results: dict[str, CommandResult] = {}
        for key, value in values.items():
            command = Command(device_id=device_id, channel=channel, kind=kinds[key], value=value)
            results[key] = await self.hub.apply(command, SOURCE)
        return results

    def _republish(self, device_id: str, channel: int | None) -> dict[str, Any]:
        device = self.hub.state.devices.get(device_id)
        if device is None:
            raise RequestError(f"unknown device {device_id!r}")
        if channel is None:
            self._publish_device(device)
            return payloads.device_state(device)
        found = device.channel(channel)
        if found is None:
            raise RequestError(f"device {device_id} has no channel {channel}")
        self._publish(self.topics.channel(device_id, channel), payloads.encode(payloads.channel_state(found)))
        values = payloads.meter_values(field_values(found))
        self._publish_meters(device_id, channel, values)
        return {**payloads.channel_state(found), **dict(zip(payloads.METER_ORDER, values, strict=True))}

    def _republish_for_homeassistant(self) -> None:
        log.info("Home Assistant came online: re-publishing discovery and state")
        assert self.client is not None
        self._publish(self.topics.hub_state, payloads.HUB_ONLINE)
        self._publish_hub_homeassistant()
        for device in list(self.hub.state.devices.values()):
            self._publish_device(device, meters=False)
        asyncio.get_running_loop().call_later(HOMEASSISTANT_METER_DELAY_S, self._publish_meter_snapshot)

    # Hub requests (<base>/hubs/<hub_id>/request/<command>)

    async def _request_info(self, request: EmptyRequest) -> Any:
        return self.hub.info()

    async def _request_devices(self, request: EmptyRequest) -> Any:
        return self._device_summaries()

    async def _request_add(self, request: UrlRequest) -> Any:
        managed = await self.hub.add_device(request.url, SOURCE)
        return {"url": managed.url, "plugin": managed.plugin, "device_id": managed.device_id}

    async def _request_remove(self, request: RemoveRequest) -> Any:
        if not await self.hub.remove_device(request.id, SOURCE):
            raise RequestError(f"unknown device {preview(request.id)}")
        return {"id": request.id}

    async def _request_candidates(self, request: EmptyRequest) -> Any:
        return [dataclasses.asdict(candidate) for candidate in self.hub.candidates()]

    async def _request_approve(self, request: UrlRequest) -> Any:
        managed = await self.hub.approve_candidate(request.url, SOURCE)
        return {"url": managed.url, "plugin": managed.plugin, "device_id": managed.device_id}

    async def _request_rename(self, request: RenameRequest) -> Any:
        await self.hub.rename_channel(request.device_id, request.channel, request.name, SOURCE)
        return request.model_dump()

    async def _request_meter_rate(self, request: MeterRateRequest) -> Any:
        results = await self.hub.set_meter_rate(request.ms, request.device_id, SOURCE)
        failed = [result.error or result.code for result in results if not result.ok]
        if failed:
            raise RequestError("; ".join(str(message) for message in failed))
        return {"ms": request.ms, "devices": len(results)}

    async def _request_discovery_restart(self, request: EmptyRequest) -> Any:
        await self.hub.restart_discovery()
        return {}


def _parse_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"payload is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RequestError("payload must be a JSON object")
    return value


ModelT = TypeVar("ModelT", bound=BaseModel)


def _validate(model: type[ModelT], request: dict[str, Any]) -> ModelT:
    """Validate a request without its ``transaction``; the message names each bad key."""
    body = {key: value for key, value in request.items() if key != "transaction"}
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # by key, without the value (it may be huge); a key of several types lists each one it failed
        problems: dict[str, list[str]] = {}
        for problem in exc.errors():
            key = preview(problem["loc"][0]) if problem["loc"] else "payload"
            message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
            problems.setdefault(key.strip("'"), []).append(message)
        raise RequestError("; ".join(f"{key}: {' or '.join(messages)}" for key, messages in problems.items())) from None


def _shortened(message: str) -> str:
    """An error message cut to a length fit for a log line and a response (it may quote what was sent)."""
    return message if len(message) <= 300 else f"{message[:300]}… ({len(message)} characters)"
