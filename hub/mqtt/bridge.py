"""The MQTT edge of the hub: publishes the state store, answers requests and set/get commands.

The parts, one module each: :mod:`~hub.mqtt.publisher` (state and meters out), :mod:`~hub.mqtt.control`
(set/get), :mod:`~hub.mqtt.requests` (hub requests), :mod:`~hub.mqtt.presence` (availability, Home
Assistant's birth message, a previous run's leftovers). This module starts and stops them and routes each
inbound message.

Inbound messages (requests, set/get, Home Assistant's status) are handled in arrival order per target
(one queue per device, one for hub requests); every one gets an answer on the hub's response topic.
Whoever can publish to the broker can send them: who may is the broker's to decide (its password file and
ACL, docs/mqtt.md "Securing the broker"). The hub adds two limits of its own: requests that change which
devices it watches are off unless ``mqtt.admin`` is on, and a message larger than ``mqtt.max_payload_bytes``
is refused before it is parsed. Nothing a message carries is echoed or logged beyond a short preview.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from typing import Any, Final

from hub.model import METER_FIELDS
from hub.mqtt import payloads
from hub.mqtt.brokers import BrokerAddress, TlsFiles, Will, parse_broker_urls
from hub.mqtt.client import MqttClient
from hub.mqtt.control import ControlHandler
from hub.mqtt.embedded import EmbeddedBroker, EmbeddedBrokerError
from hub.mqtt.messages import RequestError, parse_object
from hub.mqtt.presence import PREVIOUS_CONFIGS_S, Presence
from hub.mqtt.publisher import METER_SLICE, STATE_COALESCE_S, STATE_FIELDS
from hub.mqtt.requests import HubRequests
from hub.mqtt.topics import ControlTarget
from hub.service import HubService, Subscription, VenueService
from hub.text import preview, small_number

log = logging.getLogger("hub.mqtt")

# Inbound messages waiting per target (one device, or the hub's requests) before more are refused. Far more
# than a person or a control desk sends; only a runaway client reaches it.
MAX_WAITING_PER_TARGET = 1000
# How long a stop waits for the broker to acknowledge the offline marks before it drops the connection. The
# whole stop is bounded by 15 s (hub.cli.STOP_DEADLINE_S): the commands still running get command_timeout_s
# (5 s) before, and the other steps take a fraction of a second.
STOP_FLUSH_S = 6.0
# Longer than any request name: such a request is not answered, as its answer topic would echo the name.
MAX_COMMAND_CHARS = 64

__all__ = ["METER_SLICE", "MqttBridge"]


class MqttBridge(ControlHandler, HubRequests, Presence):
    """``MqttBridge(hub, venue)``; ``await start()`` after the devices started, ``await stop()`` at shutdown."""

    name = "mqtt"

    def __init__(self, hub: HubService, venue: VenueService) -> None:
        super().__init__(hub, venue)
        self.embedded: EmbeddedBroker | None = None
        self._subscriptions: list[Subscription] = []
        self._release_meters: Callable[[], None] | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._queues: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._waiting: Counter[str] = Counter()

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
            clock=self.hub.clock,
        )
        client = self.client
        client.publish(self.topics.hub_state, payloads.HUB_ONLINE, qos, retain=True)
        client.publish(self.topics.hub_info, payloads.encode(self.hub.info()), qos, retain=True)
        self._publish_hub_homeassistant()
        if settings.control:
            client.subscribe(self.topics.requests, qos)
        if settings.homeassistant:
            client.subscribe(self.topics.homeassistant_status, qos)
            # for a while: the configs the broker kept from before this run name entities to remove
            client.subscribe(self.topics.every_homeassistant_config, qos)
            self._forget_previous_configs = asyncio.get_running_loop().call_later(
                PREVIOUS_CONFIGS_S, self._stop_reading_configs
            )
        # once: the retained device list tells which devices the previous run of this hub left behind
        # every hub's list: this hub's previous run's tells what it left behind, the others' what they own
        client.subscribe(self.topics.every_hub_devices, qos)
        client.subscribe(self.topics.every_hub_state, qos)  # which hub carries out sets to a shared receiver
        for device in list(self.hub.state.devices.values()):
            self._publish_device(device)
        self._device_list.send_now()
        self._listen_to_venue()
        state = self.hub.state.subscribe(fields=STATE_FIELDS, min_interval=STATE_COALESCE_S)
        meters = self.hub.state.subscribe(fields=METER_FIELDS, min_interval=settings.meter_interval_s)
        self._release_meters = self.hub.need_meters(settings.meter_interval_s)
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
        self._stop_listening_to_venue()
        if self._release_meters is not None:
            self._release_meters()
            self._release_meters = None
        for sub in self._subscriptions:
            sub.close()
        if self._birth_answer is not None:
            self._birth_answer.cancel()
            self._birth_answer = None
        if self._forget_previous_configs is not None:
            self._forget_previous_configs.cancel()
            self._forget_previous_configs = None
        # the previous run's devices not back yet are settled at the next start: a receiver switched off held
        # every stop within DEPARTED_GRACE_S of a start for command_timeout_s
        timers = [
            *self._loops,
            *(task for task in (self._meter_snapshot, self._settling_left_behind) if task is not None),
        ]
        for task in timers:
            task.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        if self.client is not None and self._subscriptions:
            # the offline marks of the devices the hub just closed may still be coalescing: publish them, or
            # their retained availability would keep saying online after a clean stop
            self._publish_pending_state()
            self._device_list.flush()
            self._alert_list.flush()
        self._device_list.cancel()  # without a broker to send them to, nothing may fire after the stop
        self._alert_list.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.hub.config.command_timeout_s)
            for task in self._tasks:
                task.cancel()
        if self.client is not None:
            if not self.client.connected:
                log.warning(
                    "MQTT broker %s is not connected at the stop: the offline marks are not sent, and the devices' "
                    "availability topics may keep saying online until the hub's next start corrects them",
                    self.client.address,
                )
            self._say_offline()
            unacknowledged = await self.client.stop(STOP_FLUSH_S)
            if unacknowledged:
                log.warning(
                    "MQTT broker %s did not acknowledge %d message(s) within %g s of the stop, the offline marks "
                    "among them: the devices' availability topics may keep saying online until the hub's next "
                    "start corrects them",
                    self.client.address,
                    unacknowledged,
                    STOP_FLUSH_S,
                )
        if self.embedded is not None:
            await self.embedded.stop()

    def _publish_pending_state(self) -> None:
        if self.client is not None and self._subscriptions:
            pending = self._subscriptions[0].drain()
            if pending:
                self._on_state_batch(pending)
                self.client.flush()

    # Inbound

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """Called by the client for each message, in order; nothing here awaits, nothing is dropped."""
        command = self.topics.request_command(topic)
        if command is not None:
            if not payload and self._takes_values(command):
                self._ignore_empty(topic)
            elif retained:
                self._ignore_retained(topic)
            elif len(command) > MAX_COMMAND_CHARS:  # its answer would go to a topic that long
                log.warning("MQTT request %s ignored: no command is that long", preview(command))
            elif not self._oversized(command, payload, {}):
                self._spawn("hub", self._answer_request(command, payload), command, payload, {})
            return
        hub_id = self.topics.device_list_hub(topic)
        if hub_id is not None:
            self._on_device_list(hub_id, payload)
            return
        hub_id = self.topics.state_hub(topic)
        if hub_id is not None:
            self._on_hub_state(hub_id, payload)
            return
        if self._on_left_behind_state(topic, payload, retained):
            return
        if self._on_previous_channel_state(topic, payload, retained):
            return
        target = self.topics.control_target(topic)
        if target is not None:
            channel = target.channel if target.not_a_channel is None else _channel_as_addressed(target.not_a_channel)
            where = {"device_id": target.device_id, "channel": channel}
            if not payload and target.action == "set":
                self._ignore_empty(topic)
                return
            if retained:
                self._ignore_retained(topic)
                return
            if target.action == "set" and self._commanded_elsewhere(target.device_id):
                return  # that hub carries it out and answers
            if self._oversized(target.action, payload, where):
                return
            if target.not_a_channel is not None:
                self._refuse_channel(target, payload)
                return
            self._spawn(
                target.device_id,
                self._answer_control(target.device_id, target.channel, target.action, payload),
                target.action,
                payload,
                where,
            )
            return
        if topic == self.topics.homeassistant_status and payload.strip() == b"online":
            self._republish_for_homeassistant()
        elif self.topics.is_homeassistant_config(topic) and retained and payload:
            self._on_previous_config(topic, payload)

    def _stop_reading_configs(self) -> None:
        self._forget_previous_configs = None
        # a device of this hub (this run's, or its previous run's not published yet) that has not identified
        # itself yet (off, slow to boot) still gets the entities it no longer has removed when it does, however
        # late; the other configs read are let go
        expected, _ = self.hub.expected_device_ids()
        waiting = {
            self.topics.homeassistant_config(device_id) for device_id in expected | self._previous_channels.keys()
        }
        for topic in self._previous_configs.keys() - waiting:
            del self._previous_configs[topic]
        if self.client is not None:
            self.client.unsubscribe(self.topics.every_homeassistant_config)

    def _refuse_channel(self, target: ControlTarget, payload: bytes) -> None:
        """A set or get on ``channels/0`` or ``channels/x``: answered, as every message is, saying why."""
        level = target.not_a_channel or ""
        given = preview(level)  # the error's and the log's: quoted, so an empty or odd level shows
        log.warning("MQTT %s on %s channel %s refused: no such channel number", target.action, target.device_id, given)
        where = {"device_id": target.device_id, "channel": _channel_as_addressed(level)}
        error = f"no channel {given}: channels are numbered from 1"
        self._respond(target.action, _request_or_none(payload), "error", where, error)

    def _ignore_empty(self, topic: str) -> None:
        """An empty payload is what clearing a retained message delivers (``mosquitto_pub -r -n -t <topic>``,
        as the warning below advises), and it can be no set nor a request that takes values: nothing is done
        and nothing answered."""
        log.debug("MQTT: the empty message on %s ignored (a retained message cleared)", preview(topic))

    def _ignore_retained(self, topic: str) -> None:
        """A command the broker kept would run again at every (re)connect of the hub, a mute in the middle of
        a show say: only a message published now is carried out (a retained one is carried out once, as it
        is published, since subscribers then receive it unflagged)."""
        log.warning(
            "MQTT: the retained message on %s was not carried out: commands are never taken from the broker's "
            "store (clear it: mosquitto_pub -r -n -t '<topic>')",
            preview(topic),
        )

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

    def _spawn(
        self, queue: str, work: Coroutine[Any, Any, None], command: str, payload: bytes, where: dict[str, Any]
    ) -> None:
        """Run ``work`` after everything queued before it for the same target; refuse it (answering on the
        ``command`` response topic, with the request's transaction) when the target already has too much
        waiting, so a flood of messages cannot pile up tasks without end."""
        if self._waiting[queue] >= MAX_WAITING_PER_TARGET:
            work.close()
            log.warning("MQTT: %d messages for %s still waiting; refusing more", self._waiting[queue], queue)
            error = f"too many requests waiting for {queue}; try again later"
            self._respond(command, _request_or_none(payload), "error", where, error)
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


# the most of a refused channel's topic level an answer repeats: a topic level may be 65,535 bytes long
MAX_CHANNEL_ECHO_CHARS: Final = 64


def _channel_as_addressed(level: str) -> int | str:
    """A refused channel's topic level as its answer's ``data.channel`` names it, for a client to match against
    what it sent (docs/mqtt.md, Securing the broker): the number when the level is one as written (``0``,
    ``-1``), else the text itself (``abc``, ``00``, empty), cut after MAX_CHANNEL_ECHO_CHARS characters."""
    number = small_number(level, signed=True)
    if number is not None and str(number) == level:
        return number
    return level if len(level) <= MAX_CHANNEL_ECHO_CHARS else level[:MAX_CHANNEL_ECHO_CHARS] + "…"


def _request_or_none(payload: bytes) -> dict[str, Any] | None:
    """A refused message's request, for its transaction id in the answer; None when it is no JSON object."""
    try:
        return parse_object(payload)
    except RequestError:
        return None
