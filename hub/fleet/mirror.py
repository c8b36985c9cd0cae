"""The fleet's picture of every hub on a broker, built from their MQTT topics alone (docs/mqtt.md).

One subscription to ``<base>/#`` feeds a :class:`~hub.state.StateStore` the way drivers feed a hub's: the
hubs' device lists say which hub owns which receiver, device and channel topics fill in the state, meters
the levels, a hub's state topic (and its last will) whether anyone is watching its receivers. A receiver
counts as online only while its hub is online and its own availability says so: a hub that died leaves
its receivers' retained availability at ``online``, and only its will tells otherwise.

Meters are not retained, so the fleet sends each receiver's ``get`` once, when it first hears of it: the
owning hub re-publishes that receiver's state and levels. Control goes back the same way: a command becomes
a ``set`` message on the receiver's own topic, which only the owning hub subscribes to, and its answer is
matched by a transaction id no one can guess, on that hub's ``response/set`` topic only, naming the receiver and
channel the set went to: whoever may publish a ``set`` (Home Assistant's login) can make any hub answer with
any transaction, yet cannot answer the fleet's commands for it. Its deadline keeps a hub that gets to it
after the fleet stopped waiting from carrying it out (docs/mqtt.md, "Deadlines"). The deadline is written in
that hub's clock, learnt from the ``hub_time`` of its answers: the machines' clocks may be far apart.
Everything read from the broker is validated against the model; anything else is counted in ``rejected`` and
ignored, never trusted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from pydantic import ValidationError

from hub.clock import Clock
from hub.config import HubConfig
from hub.model import (
    CHANNEL_FIELDS,
    DEVICE_FIELDS,
    EXPIRED_PREFIX,
    METER_FIELDS,
    Channel,
    Command,
    CommandKind,
    CommandResult,
    Device,
    command_field,
)
from hub.mqtt import payloads
from hub.mqtt.brokers import TlsFiles, parse_broker_urls
from hub.mqtt.client import MqttClient
from hub.mqtt.topics import Topics
from hub.records import Alert
from hub.state import StateStore
from hub.text import small_number

log = logging.getLogger("hub.fleet")

# How long after sending a request the fleet lets the hub begin it (the trip there, the receiver's queue on the
# hub): the request carries that deadline, and a hub that gets to it later (stalled, cut off) refuses it rather
# than carry it out after the fleet answered that it failed (docs/mqtt.md, "Deadlines").
START_WITHIN_S: Final = 2.0
# A hub answers a command once the receiver confirmed it (its own command timeout, then a second of grace); this
# covers that grace and the trip back.
ANSWER_MARGIN_S: Final = 2.0
# A hub's clock is read from its latest answers: each one's hub_time less when it arrived is the hub's clock less
# the fleet's, short by the answer's trip back, so the largest of them is the truest (and, while the hub's clock
# holds, never lets it begin a request later than meant). A hub clock set back is followed once this many answers
# came since; one set forward at once.
CLOCK_ANSWERS: Final = 8
# A hub clock this far from the fleet's is named in the log, once per hub: commands keep working, but the hubs'
# timestamps (alerts, history) are that far from the other hubs'.
CLOCK_SKEW_WARNING_S: Final = 5.0
# After each (re)connect the broker hands over every retained topic at once; this long without one more, the
# fleet takes it that the broker has said all it holds (docs/scaling.md, "One board for the whole venue").
RETAINED_SETTLE_S: Final = 1.0
# A channel's state that comes before the device state naming the channel (a hub of an earlier release sent a
# new channel's topic first; a broker may hand the retained topics over in any order) is kept, the last one of
# each channel, and shown once the device state names the channel: at most HELD_CHANNELS of them, HELD_BYTES
# together, each for HELD_FOR_S, the oldest let go first, however many channel numbers a publisher makes up.
HELD_CHANNELS: Final = 256
HELD_BYTES: Final = 1024 * 1024
HELD_FOR_S: Final = 30.0
_CHANNEL_KEYS: Final = frozenset(Channel.model_fields)


class FleetRequestError(Exception):
    """A hub refused a request from the fleet, or did not answer it."""


@dataclass
class HubView:
    """One hub as its topics describe it."""

    hub_id: str
    online: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    device_ids: list[str] = field(default_factory=list)
    online_device_ids: frozenset[str] = frozenset()  # those its list says it has online
    alerts: list[Alert] = field(default_factory=list)
    # which of its retained topics (state, info, devices, alerts) the broker holds: a hub retired by clearing
    # them (docs/mqtt.md, "Retiring a hub") is forgotten
    topics: set[str] = field(default_factory=set)
    # its clock less the fleet's monotonic one, from each of its latest answers (CLOCK_ANSWERS)
    clock_offsets: deque[float] = field(default_factory=lambda: deque(maxlen=CLOCK_ANSWERS))
    clock_skew_told: bool = False  # whether the log said its clock is far from the fleet's


@dataclass
class PendingAnswer:
    """A request of the fleet's awaiting its answer, and where only that answer may come from."""

    waiter: asyncio.Future[dict[str, Any]]
    hub_id: str
    command: str  # the answer's topic is the hub's response/<command>
    where: dict[str, Any] | None  # a set's: the device_id and channel its answer's data names


@dataclass
class ListedDevice:
    """One entry of a hub's device list, validated."""

    device: Device
    channel_indexes: tuple[int, ...]
    online: bool


def _json(payload: bytes) -> Any:
    return orjson.loads(payload) if payload else None


def _listed_devices(summaries: Any) -> list[ListedDevice]:
    """A hub's device list, every entry validated before any is used: a list with one bad entry is ignored
    whole (as one that is no list), so it changes nothing."""
    if not isinstance(summaries, list):
        raise ValueError("no device list")
    entries = []
    for summary in summaries:
        if not isinstance(summary, dict):
            raise ValueError(f"no device in a device list: {str(summary)[:40]!r}")
        device = payloads.listed_device(summary)
        entries.append(ListedDevice(device, payloads.channel_indexes(summary), summary.get("online") is True))
    return entries


class FleetMirror:
    """``await start()`` subscribes and keeps ``store`` in step with the broker; ``await stop()``. The broker
    connection backs off on ``clock``, the fleet hub's."""

    name = "fleet mirror"

    def __init__(self, store: StateStore, config: HubConfig, clock: Clock) -> None:
        self.store = store
        settings = config.mqtt
        self.settings = settings
        self.topics = Topics(settings.base_topic, "", settings.homeassistant_prefix)
        self._prefix = f"{settings.base_topic}/"
        self.clock = clock
        self.command_timeout_s = START_WITHIN_S + config.command_timeout_s + ANSWER_MARGIN_S
        # a hub request answered at once (info), without a receiver to wait for
        self.quick_answer_s = START_WITHIN_S + ANSWER_MARGIN_S
        self.hubs: dict[str, HubView] = {}
        # device id -> the hubs whose lists name it (more than one when a receiver was given to two hubs)
        self.listing: dict[str, set[str]] = {}
        self._available: dict[str, bool] = {}  # device id -> its own availability topic
        self._pending: dict[str, PendingAnswer] = {}  # by transaction
        # a fleet must never take a hub's client id: the broker would disconnect the hub
        self.client_id = settings.client_id or f"{config.hub_id}-fleet"
        self.rejected = 0
        # hub topics (hub id, kind) known from before the last (re)connect and not handed over again since
        self._unconfirmed: set[tuple[str, str]] = set()
        self._last_retained = 0.0  # loop time of the last retained message
        # (device id, channel) -> (loop time, payload): channel states a device state has not named yet
        self._held: OrderedDict[tuple[str, int], tuple[float, bytes]] = OrderedDict()
        self._held_bytes = 0
        self._sweep: asyncio.TimerHandle | None = None
        self.client = MqttClient(
            parse_broker_urls(settings.url),
            self.client_id,
            on_message=self._on_message,
            on_connect=self._on_connected,
            on_disconnect=self._on_disconnected,
            keepalive=settings.keepalive,
            tls=TlsFiles(settings.ca_file, settings.cert_file, settings.key_file, settings.tls_insecure),
            connect_timeout=config.io_timeout_s,
            max_subscription_qos=settings.subscription_qos,
            clock=clock,
        )
        self._io_timeout_s = config.io_timeout_s

    async def start(self) -> None:
        self.client.subscribe(f"{self.settings.base_topic}/#", self.settings.qos_state)
        self.client.start()
        if not await self.client.wait_connected(self._io_timeout_s):
            log.warning("MQTT broker %s not reachable yet; the fleet keeps trying", self.client.address)

    async def stop(self) -> None:
        self._cancel_sweep()
        for pending in self._pending.values():
            pending.waiter.cancel()
        await self.client.stop()

    # Reading the hubs' topics

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        # a hub's topics are retained: a mirror starting up reads every hub's state from them
        if not topic.startswith(self._prefix):
            return
        if retained:
            self._last_retained = asyncio.get_running_loop().time()
        parts = topic[len(self._prefix) :].split("/")
        try:
            if parts[0] == "hubs" and len(parts) >= 3:
                self._on_hub_topic(parts[1], parts[2:], payload, retained)
            elif parts[0] == "devices" and len(parts) >= 2:
                self._on_device_topic(parts[1], parts[2:], payload)
        except (orjson.JSONDecodeError, ValidationError, TypeError, ValueError, KeyError, AttributeError) as exc:
            self.rejected += 1
            log.debug("ignoring %s: %s", topic, exc)

    def _hub(self, hub_id: str, topic: str) -> HubView:
        """The hub a valid payload on its ``topic`` came from, made up only by such a payload."""
        view = self.hubs.get(hub_id)
        if view is None:
            view = self.hubs[hub_id] = HubView(hub_id)
        view.topics.add(topic)
        self._unconfirmed.discard((hub_id, topic))
        return view

    def _on_hub_topic(self, hub_id: str, rest: list[str], payload: bytes, retained: bool) -> None:
        kind = rest[0]
        if kind == "response" and len(rest) >= 2:
            self._on_response(hub_id, "/".join(rest[1:]), payload, retained)
        elif len(rest) != 1 or kind not in ("state", "info", "devices", "alerts"):
            return
        elif not payload:
            self._on_hub_topic_cleared(hub_id, kind)
        elif kind == "state":
            running = payloads.hub_running(payload)
            if running is None:
                raise ValueError(f"no hub state: {payload[:40]!r}")  # a stray [] took a hub offline
            view = self._hub(hub_id, kind)
            view.online = running
            for device_id in view.device_ids:
                self._update_online(device_id)
        elif kind == "info":
            info = _json(payload)
            if not isinstance(info, dict) or info.get("hub_id") != hub_id:
                raise ValueError(f"no info of hub {hub_id!r}")  # a retained {} made up a hub
            self._hub(hub_id, kind).info = info
        elif kind == "devices":
            self._on_device_list(hub_id, _listed_devices(_json(payload)))
        else:
            alerts = _json(payload)
            if not isinstance(alerts, list):
                raise ValueError(f"no alert list: {payload[:40]!r}")
            self._hub(hub_id, kind).alerts = [Alert.model_validate(alert) for alert in alerts]

    def _on_hub_topic_cleared(self, hub_id: str, kind: str) -> None:
        """One of a hub's retained topics emptied: what it said is gone, and the hub with the last of them."""
        view = self.hubs.get(hub_id)
        if view is None:
            return
        if kind == "devices":
            self._on_device_list(hub_id, [])
        elif kind == "state":
            view.online = False
            for device_id in view.device_ids:
                self._update_online(device_id)
        elif kind == "info":
            view.info = {}
        else:
            view.alerts = []
        view.topics.discard(kind)
        if not view.topics:
            log.info("hub %s retired: its topics are cleared", hub_id)
            del self.hubs[hub_id]

    def _on_device_list(self, hub_id: str, entries: list[ListedDevice]) -> None:
        view = self._hub(hub_id, "devices") if entries else self.hubs.get(hub_id)
        if view is None:
            return
        listed = [entry.device.id for entry in entries]
        gone = set(view.device_ids) - set(listed)
        view.device_ids = listed
        view.online_device_ids = frozenset(entry.device.id for entry in entries if entry.online)
        if not entries:
            view.topics.discard("devices")
        for entry in entries:
            device = entry.device
            self.listing.setdefault(device.id, set()).add(hub_id)
            self._available.setdefault(device.id, entry.online)
            if entry.online or not self._online_elsewhere(device.id, hub_id) or device.id not in self.store.devices:
                self._add_or_update(device, entry.channel_indexes)
            else:
                self._update_online(device.id)
        for device_id in gone:
            hubs = self.listing.get(device_id, set())
            hubs.discard(hub_id)
            if hubs:  # another hub still lists it
                self._update_online(device_id)
            else:
                self.listing.pop(device_id, None)
                self._available.pop(device_id, None)
                self._let_go_held(device_id)
                self.store.remove_device(device_id)

    def _online_elsewhere(self, device_id: str, hub_id: str) -> bool:
        """Another running hub lists the device online: what a hub with it offline (at an old address, say)
        says of it does not overwrite that hub's."""
        return any(
            other != hub_id and self.hubs[other].online and device_id in self.hubs[other].online_device_ids
            for other in self.listing.get(device_id, ())
        )

    def home_hub(self, device_id: str) -> str | None:
        """The hub the board shows a device under and sends its requests to: of the hubs listing it, the online
        one whose id sorts first (the one that carries out sets to it, docs/mqtt.md), else the first."""
        hubs = sorted(self.listing.get(device_id, ()))
        return next((hub_id for hub_id in hubs if self.hubs[hub_id].online), hubs[0] if hubs else None)

    def _add_or_update(self, device: Device, channel_indexes: tuple[int, ...]) -> None:
        if device.id in self.store.devices:
            known = self.store.devices[device.id]
            if (known.vendor, known.host, known.port) != (device.vendor, device.host, device.port):
                device.channels = known.channels
                self.store.add_device(device)
            else:
                self.store.update_device(device.id, {key: getattr(device, key) for key in DEVICE_FIELDS})
        else:
            self.store.add_device(device)
            # meters are not retained: a fleet started after the hub would show no levels until they move.
            # A device's get makes its hub re-publish the device's state and meters, once per new device.
            self.client.publish(f"{self.topics.device(device.id)}/get", b"{}", self.settings.qos_state)
        if channel_indexes:
            self.store.set_channels(device.id, channel_indexes)
        self._show_held(device.id)
        self._update_online(device.id)

    def _on_device_topic(self, device_id: str, rest: list[str], payload: bytes) -> None:
        if device_id not in self.listing:
            # a hub's device list says which devices there are: topics of a device no hub lists (a stranger's,
            # or one whose hub removed it) make none appear
            return
        if not rest:
            state = _json(payload)
            if state is None:  # the topic cleared; the owning hub's list, which still names it, decides
                return
            device = payloads.listed_device(state)
            if device.id != device_id:
                raise ValueError(f"device state of {device.id!r} on the topic of {device_id!r}")
            self._add_or_update(device, payloads.channel_indexes(state))
        elif rest == ["availability"]:
            if payload in (b"online", b"offline"):
                self._available[device_id] = payload == b"online"
                self._update_online(device_id)
        elif len(rest) >= 2 and rest[0] == "channels" and device_id in self.store.devices:
            index = small_number(rest[1])
            if index is None:
                return
            if len(rest) == 2:
                if self.store.devices[device_id].channel(index) is None:
                    self._hold(device_id, index, payload)
                elif payload:
                    self._merge_channel(device_id, index, _json(payload), CHANNEL_FIELDS - METER_FIELDS)
            elif rest[2:] == ["meters"]:
                self._merge_channel(device_id, index, _json(payload), METER_FIELDS)

    def _merge_channel(self, device_id: str, index: int, values: dict[str, Any], wanted: frozenset[str]) -> None:
        if self.store.devices[device_id].channel(index) is None:
            # the device's state lists its channels: a topic of another makes no channel
            raise ValueError(f"{device_id} has no channel {index}")
        given = self._channel_fields(values, wanted)
        # validated as a whole channel, so a battery of 250 % or a name of the wrong type never gets in
        channel = Channel.model_validate({**given, "index": index})
        self.store.update_channel(device_id, index, {key: getattr(channel, key) for key in given})

    def _hold(self, device_id: str, index: int, payload: bytes) -> None:
        """Keep the state of a channel the device's state does not name (yet), in place of the one kept before;
        an emptied topic (the channel gone again) keeps none."""
        self._let_go_held(device_id, index)
        if not payload:
            return
        if len(payload) > HELD_BYTES:
            raise ValueError(f"{device_id} has no channel {index}, and its state is too large to keep")
        values = _json(payload)
        # what would be refused once the channel is there is refused now, and not kept
        Channel.model_validate({**self._channel_fields(values, CHANNEL_FIELDS - METER_FIELDS), "index": index})
        loop = asyncio.get_running_loop()
        self._held[(device_id, index)] = (loop.time(), payload)
        self._held_bytes += len(payload)
        expired_before = loop.time() - HELD_FOR_S
        while self._held and (
            len(self._held) > HELD_CHANNELS
            or self._held_bytes > HELD_BYTES
            or next(iter(self._held.values()))[0] < expired_before
        ):
            _, (_, dropped) = self._held.popitem(last=False)
            self._held_bytes -= len(dropped)

    def _show_held(self, device_id: str) -> None:
        """Merge the kept states of the device's channels, now that its state names them."""
        device = self.store.devices.get(device_id)
        if not self._held or device is None:
            return
        expired_before = asyncio.get_running_loop().time() - HELD_FOR_S
        for channel in list(device.channels):
            held = self._held.pop((device_id, channel.index), None)
            if held is None:
                continue
            kept_at, payload = held
            self._held_bytes -= len(payload)
            if kept_at < expired_before:
                continue
            try:  # validated when kept: this does not fail, and must not stop the rest of a device list
                self._merge_channel(device_id, channel.index, _json(payload), CHANNEL_FIELDS - METER_FIELDS)
            except (orjson.JSONDecodeError, ValidationError, ValueError) as exc:
                self.rejected += 1
                log.debug("ignoring the kept state of %s channel %d: %s", device_id, channel.index, exc)

    def _let_go_held(self, device_id: str, index: int | None = None) -> None:
        """Forget the kept state of one channel, or of each channel of the device (``index`` None)."""
        keys = [key for key in self._held if key[0] == device_id] if index is None else [(device_id, index)]
        for key in keys:
            held = self._held.pop(key, None)
            if held is not None:
                self._held_bytes -= len(held[1])

    def held_channels(self) -> int:
        """How many channel states are kept for channels no device state has named yet."""
        return len(self._held)

    @staticmethod
    def _channel_fields(values: Any, wanted: frozenset[str]) -> dict[str, Any]:
        if not isinstance(values, dict):
            raise ValueError(f"no channel state: {str(values)[:40]!r}")
        return {key: value for key, value in values.items() if key in wanted}

    def _on_disconnected(self) -> None:
        """Cut off from the broker, the fleet cannot know whether anyone watches a receiver: none shows online
        until the broker hands over the retained state again."""
        self._cancel_sweep()
        for device_id in list(self.store.devices):
            self._update_online(device_id)

    def _on_connected(self) -> None:
        """Mark: while the fleet was away a hub may have been retired (its topics cleared) or the broker
        restarted without its store, and no message says so. Every hub topic known is unconfirmed until the
        broker hands it over again; once its retained messages have settled, those it did not are swept as if
        cleared. What it confirms stays as shown meanwhile (no board flashes empty); a receiver shows online
        again once its hub's state is confirmed."""
        self._unconfirmed = {(hub_id, kind) for hub_id, view in self.hubs.items() for kind in view.topics}
        self._last_retained = asyncio.get_running_loop().time()
        self._cancel_sweep()
        self._sweep = asyncio.get_running_loop().call_later(RETAINED_SETTLE_S, self._sweep_unconfirmed)

    def _sweep_unconfirmed(self) -> None:
        loop = asyncio.get_running_loop()
        quiet_for = loop.time() - self._last_retained
        if quiet_for < RETAINED_SETTLE_S:  # still handing over
            self._sweep = loop.call_later(RETAINED_SETTLE_S - quiet_for, self._sweep_unconfirmed)
            return
        self._sweep = None
        unconfirmed, self._unconfirmed = self._unconfirmed, set()
        for hub_id, kind in sorted(unconfirmed):
            view = self.hubs.get(hub_id)
            if view is not None and kind in view.topics:
                log.info("hub %s: its %s topic is no longer on the broker", hub_id, kind)
                self._on_hub_topic_cleared(hub_id, kind)

    def _cancel_sweep(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def _update_online(self, device_id: str) -> None:
        hub_online = any(
            self.hubs[hub_id].online and (hub_id, "state") not in self._unconfirmed
            for hub_id in self.listing.get(device_id, ())
        )
        watched = hub_online and self._available.get(device_id, False) and self.client.connected
        self.store.set_online(device_id, watched)

    # Control, through the owning hub

    async def apply(self, command: Command) -> CommandResult:
        owner = self.home_hub(command.device_id)
        if owner is None or not self.hubs[owner].online:
            return CommandResult(ok=False, code="unavailable", error=f"no hub online owns {command.device_id!r}")
        row = command_field(command.kind, command.channel is not None)  # the set keys, as the hubs read them
        if row is None or command.slot is not None:
            return CommandResult(ok=False, code="not_supported", error=f"{command.kind} cannot be sent over MQTT")
        value = True if command.kind is CommandKind.IDENTIFY else command.value
        topic = self.topics.device(command.device_id)
        if command.channel is not None:
            topic = f"{topic}/channels/{command.channel}"
        where = {"device_id": command.device_id, "channel": command.channel}
        try:
            answer = await self._exchange(owner, f"{topic}/set", {row.key: value}, "set", where)
        except FleetRequestError as exc:
            return CommandResult(ok=False, code="timeout", error=str(exc))
        result = (answer.get("data") or {}).get("results", {}).get(row.key)
        if result is not None:
            return CommandResult.model_validate(result)
        error = str(answer.get("error") or "refused by the hub")
        if error.startswith(EXPIRED_PREFIX):
            # the hub did not get to it in time (stalled, or the receiver busy with another command): not sent,
            # which the REST API says as a timeout whose error starts "not sent:" (docs/api.md)
            return CommandResult(
                ok=False,
                code="timeout",
                error=f"not sent: hub {owner} did not begin it within {START_WITHIN_S:g} s ({error})",
            )
        return CommandResult(ok=False, code="refused", error=error)

    async def request(self, hub_id: str, command: str, body: dict[str, Any]) -> Any:
        """A hub request (docs/mqtt.md, "Hub requests"); its ``data``, or FleetRequestError."""
        answer = await self._exchange(hub_id, self._request_topic(hub_id, command), body, command)
        if answer.get("status") != "ok":
            raise FleetRequestError(str(answer.get("error") or "refused by the hub"))
        return answer.get("data")

    def _request_topic(self, hub_id: str, command: str) -> str:
        return f"{self.settings.base_topic}/hubs/{hub_id}/request/{command}"

    async def _exchange(
        self, hub_id: str, topic: str, body: dict[str, Any], command: str, where: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send a request with its deadline, written in the hub's clock, and wait for its answer on the hub's
        ``response/<command>`` (naming ``where``, for a set)."""
        hub_clock = await self._hub_clock(hub_id)
        request = (
            body if hub_clock is None else {**body, "deadline": self.clock.monotonic() + hub_clock + START_WITHIN_S}
        )
        try:
            return await self._send(topic, request, self.command_timeout_s, hub_id, command, where)
        except TimeoutError:
            raise FleetRequestError(
                f"no answer on {topic} within {self.command_timeout_s:g} s; not carried out unless the hub began it "
                f"within {START_WITHIN_S:g} s"
            ) from None

    async def _hub_clock(self, hub_id: str) -> float | None:
        """The hub's wall clock less the fleet's monotonic one (which no one sets): the fleet's own wall clock
        plays no part in the deadlines. Until an answer of the hub has said it since the fleet started (its
        answer to a receiver's first get mostly has), the hub is asked for its info first; one that does not
        answer that within ``quick_answer_s`` is sent nothing (docs/mqtt.md, "Deadlines"). None for a hub whose
        answers carry no clock: a release before deadlines, which refuses a request with one as unknown."""
        view = self.hubs.get(hub_id)
        if view is None:
            raise FleetRequestError(f"no hub {hub_id!r} on the broker")
        if not view.clock_offsets:
            try:
                await self._send(self._request_topic(hub_id, "info"), {}, self.quick_answer_s, hub_id, "info")
            except TimeoutError:
                raise FleetRequestError(
                    f"hub {hub_id} did not answer within {self.quick_answer_s:g} s (asked for its clock); not sent"
                ) from None
        return max(view.clock_offsets, default=None)

    async def _send(
        self,
        topic: str,
        body: dict[str, Any],
        timeout: float,
        hub_id: str,
        command: str,
        where: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Publish a request and wait ``timeout`` for its answer (TimeoutError): the one on ``hub_id``'s
        ``response/<command>`` that echoes the request's transaction (and names ``where``, for a set)."""
        # unguessable: anyone allowed a set can make a hub answer it with any transaction they like
        transaction = f"{self.client_id}-{secrets.token_urlsafe(16)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = PendingAnswer(waiter, hub_id, command, where)
        try:
            self.client.publish(topic, orjson.dumps({**body, "transaction": transaction}), self.settings.qos_state)
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._pending.pop(transaction, None)

    def _on_response(self, hub_id: str, command: str, payload: bytes, retained: bool) -> None:
        answer = _json(payload)
        if not isinstance(answer, dict):
            return
        if not retained:  # a retained answer is as old as anyone's guess
            self._note_hub_clock(hub_id, answer.get("hub_time"))
        transaction = answer.get("transaction")
        pending = self._pending.get(transaction) if isinstance(transaction, str) else None
        if pending is None or pending.waiter.done():
            return
        data = answer.get("data")
        answered_where = (
            {key: data.get(key) for key in pending.where} if pending.where and isinstance(data, dict) else None
        )
        if (pending.hub_id, pending.command) != (hub_id, command) or answered_where != pending.where:
            # another hub's answer, or one to another set (forged through it with the fleet's transaction)
            self.rejected += 1
            log.debug("ignoring an answer on %s/%s that is not to the request %s", hub_id, command, transaction)
            return
        pending.waiter.set_result(answer)

    def _note_hub_clock(self, hub_id: str, hub_time: Any) -> None:
        """Any answer of a hub's, to the fleet or to anyone, tells its clock (CLOCK_ANSWERS)."""
        view = self.hubs.get(hub_id)
        if view is None or isinstance(hub_time, bool) or not isinstance(hub_time, int | float):
            return
        view.clock_offsets.append(hub_time - self.clock.monotonic())
        skew = max(view.clock_offsets) + self.clock.monotonic() - self.clock.now()
        if abs(skew) > CLOCK_SKEW_WARNING_S and not view.clock_skew_told:
            view.clock_skew_told = True
            log.warning(
                "hub %s's clock is %.0f s %s this machine's; the fleet's commands allow for it, but keep the clocks "
                "in step with NTP",
                hub_id,
                abs(skew),
                "ahead of" if skew > 0 else "behind",
            )
