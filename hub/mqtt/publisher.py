"""The MQTT edge's outbound side: the state store and the venue store published on the hub's topics.

Two store subscriptions feed it. State (every non-meter field and lifecycle change) is coalesced over a
few milliseconds and published retained at once. Meters are delivered at most every
``meter_interval_s`` and a channel's levels are published only when one moved by more than
``meter_threshold_db`` (or the antenna, clip or known/unknown changed), so a 10 Hz meter stream costs
at most one small message per channel per interval, and nothing when the levels stand still.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from hub.model import CHANNEL_FIELDS, DEVICE_FIELDS, METER_FIELDS, Device, field_values
from hub.mqtt import payloads
from hub.mqtt.client import MqttClient
from hub.mqtt.frames import topic_field
from hub.mqtt.homeassistant import DEVICE_READING_FIELDS, EntityOptions, discovery_config, hub_discovery_config
from hub.mqtt.paced import Paced
from hub.mqtt.payloads import meter_values, meters_moved, meters_payload
from hub.mqtt.retained import expand
from hub.mqtt.topics import Topics, homeassistant_node_id
from hub.records import AlertEvent, SwapList
from hub.redact import redact
from hub.service import ADDED, ONLINE, REMOVED, Batch, ChangeKey, HubService, Subscription, VenueService

log = logging.getLogger("hub.mqtt")

STATE_FIELDS = (CHANNEL_FIELDS - METER_FIELDS) | DEVICE_FIELDS
# Long enough to merge the burst of updates one device report makes, short enough to stay well under
# the 100 ms change-to-MQTT budget.
STATE_COALESCE_S = 0.02
# channels whose meters are published in one event-loop turn (a few ms): a large batch is cut into slices
METER_SLICE = 500
# The device list names every device. When thousands come online at once (the hub starting at a large
# site) nearly every state batch changes it, and rebuilding it for each one stopped the hub for seconds.
# It goes out at once after a quiet spell and, during a burst, at most every millisecond per device listed
# (its cost grows with the list: at most a few percent of the hub's time), and at most a second apart;
# always the newest list. A small site's list is never held back noticeably.
DEVICE_LIST_EVERY_S = 1.0
DEVICE_LIST_S_PER_DEVICE = 0.001
# The list of open alerts is every open alert (hundreds in a crowded frequency plan): each alert event goes out
# at once, the list after them at most this often.
ALERT_LIST_EVERY_S = 0.5


class _SentMeters:
    """One channel's meters topic, as a string and encoded for the wire, and the values last sent there."""

    __slots__ = ("topic", "topic_field", "values")

    def __init__(self, topic: str, values: tuple[Any, ...]) -> None:
        self.topic = topic
        self.topic_field = topic_field(topic)
        self.values = values


class StatePublisher:
    """Publishes devices, channels, meters, alerts, the swap list and the frequency plan; answers on the
    response topics. The other parts of the bridge (control, requests, presence) build on it."""

    def __init__(self, hub: HubService, venue: VenueService) -> None:
        self.hub = hub
        self.venue = venue
        self.settings = hub.config.mqtt
        self.topics = Topics(self.settings.base_topic, hub.config.hub_id, self.settings.homeassistant_prefix)
        self.client: MqttClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # per channel: its meters topic and the values last sent there (formatting the topic per message, and
        # reading the QoS through the pydantic settings, cost as much as the JSON payload)
        self._last_meters: dict[ChangeKey, _SentMeters] = {}
        self._qos_meters = self.settings.qos_meters
        self._controlled: set[str] = set()
        # per device: every Home Assistant component its configs have held this run, with its platform
        self._homeassistant_components: dict[str, dict[str, str]] = {}
        # per device: the device readings Home Assistant has entities of, and the model (or family) of the
        # receiver that reported them
        self._kept_readings: dict[str, tuple[str | None, frozenset[str]]] = {}
        # per config topic: the config the broker retained from before this run (perhaps an older version's,
        # with entities this one no longer makes, or another model's at the same address), until the
        # device's config is sent
        self._previous_configs: dict[str, payloads.RetainedConfig] = {}
        self._config_topic_device: dict[str, str] = {}  # config topic -> device id, for those sent this run
        # per device of this hub's previous run (its retained device list): the numbers of the channels it had then
        # (not always 1 to its count: a driver may report one above it), until this run publishes the device and
        # clears the topics of channels it no longer has
        self._previous_channels: dict[str, tuple[int, ...]] = {}
        # the previous run's list entries, listed (offline) while this run has no state of their devices: a
        # receiver down for a whole run stays this hub's, and is cleared at a later start if it was removed. The
        # store has one it kept the identity of from the start (hub.devices); these are the others (the first
        # start after an upgrade, a database file the hub could not open at start)
        self._carried_entries: dict[str, dict[str, Any]] = {}
        # the devices held offline from the identity they last gave (no channel reported this run) whose channel
        # topics are read: the states the previous run left there are kept as this run's until the receiver
        # reports, so a reconnect puts them back as it does those of a receiver that went down while the hub ran
        # (each topic by name: RabbitMQ 3.x sends a retained message only to a subscription naming its topic)
        self._reading_previous_channels: dict[str, list[str]] = {}
        # the devices each other hub on the broker lists as its own (its retained device list, kept current)
        self._owned_elsewhere: dict[str, frozenset[str]] = {}
        self._shared_said: set[tuple[str, str]] = set()  # (device, other hub) already said to be on both
        self._running_elsewhere: set[str] = set()  # the other hubs whose retained state says online
        self._online_elsewhere: dict[str, frozenset[str]] = {}  # the devices each other hub's list says online
        # offline here while another running hub has it online: its topics are that hub's until this one has
        # it online again or no other running hub does
        self._deferred: set[str] = set()
        self._remove_alert_listener: Callable[[], None] | None = None
        self._remove_swap_listener: Callable[[], None] | None = None
        self._remove_plan_listener: Callable[[], None] | None = None
        self._device_list = Paced(
            self._publish_device_list,
            lambda: min(DEVICE_LIST_EVERY_S, len(self.hub.state.devices) * DEVICE_LIST_S_PER_DEVICE),
        )
        self._alert_list = Paced(self._publish_alerts, lambda: ALERT_LIST_EVERY_S)

    def _listen_to_venue(self) -> None:
        self._alert_list.send_now()
        self._remove_alert_listener = self.venue.alerts.add_listener(self._on_alert_event)
        self._remove_swap_listener = self.venue.show.add_listener(self._on_swap_list)
        plan = self.venue.frequency
        if plan.checked_at is not None:
            # else the broker keeps the previous run's plan until this run's first check: a plan of no carriers,
            # unchecked yet, would read as an all-clear for a moment at every start
            self._publish_frequency_plan(plan.summary())
        self._remove_plan_listener = plan.add_listener(self._publish_frequency_plan)

    def _stop_listening_to_venue(self) -> None:
        for remove in (self._remove_alert_listener, self._remove_swap_listener, self._remove_plan_listener):
            if remove is not None:
                remove()
        self._remove_alert_listener = self._remove_swap_listener = self._remove_plan_listener = None

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
        dropped: list[tuple[str, int]] = []
        state_sent: set[str] = set()  # devices whose device state this batch has published: once each
        answered: list[Device] = []  # devices first online this run: the previous run's extra channels go
        # devices whose every topic this batch publishes: their changed channels go out with them, once
        published_whole = {
            device_id for (device_id, index), changed in batch.items() if index is None and changed & {ADDED, REMOVED}
        }
        for (device_id, index), changed in batch.items():
            device = devices.get(device_id)
            if device is None:
                if index is None and REMOVED in changed:
                    self._clear_device(device_id)
                    list_changed = True
                continue
            if self._take_back(device):
                published_whole.add(device_id)
                list_changed = True
                continue
            if self._still_deferred(device):
                list_changed = list_changed or index is None  # the list is this hub's own: it says offline here
                continue
            if index is None:
                if ADDED in changed or REMOVED in changed:
                    # its meters follow in the meter batch that has them, once a level is known
                    self._publish_device(device, meters=False)
                    state_sent.add(device_id)
                    list_changed = True
                    continue
                self._publish_device_state(device, state_sent)
                if ONLINE in changed:
                    self._publish(self.topics.availability(device_id), payloads.availability_payload(device.online))
                    if device.online and device_id in self._previous_channels:  # listed offline from the start
                        answered.append(device)
                        configs.add(device_id)
                    if device.online:
                        self._stop_reading_previous_channels(device_id)
                    list_changed = True
                if changed & DEVICE_FIELDS:
                    configs.add(device_id)
                    list_changed = True
            elif REMOVED in changed and device.channel(index) is None:  # the device has fewer channels now
                dropped.append((device_id, index))
                self._publish_device_state(device, state_sent)
                configs.add(device_id)
                list_changed = True
            else:
                channel = device.channel(index)
                if channel is None:
                    continue
                if ADDED in changed:  # a channel more (a pack paired): a new channel_count and channel_indexes
                    configs.add(device_id)
                    list_changed = True
                    if device_id not in published_whole:
                        # before the channel's own topic: a consumer that takes only the channels a device state
                        # names (wmhub fleet) would refuse a channel it has not heard of yet
                        self._publish_device_state(device, state_sent)
                if channel.reported:  # its state goes out with the receiver's first report of it
                    if device_id not in published_whole:
                        self._publish(
                            self.topics.channel(device_id, index), payloads.encode(payloads.channel_state(channel))
                        )
                elif "extended_name" in changed:
                    self._rename_previous_channel(device_id, index, channel.extended_name)
        for device_id in configs:
            self._publish_homeassistant(devices[device_id], only_if_changed=True)
        # after the configs without their entities: Home Assistant would render an entity's template against
        # its topic's empty payload, an error in its log per entity
        for device_id, index in dropped:
            self._clear_channel(device_id, index)
        for device in answered:
            self._clear_previous_channels(device)
        if list_changed:
            self._device_list.changed()

    def _publish_device_state(self, device: Device, state_sent: set[str]) -> None:
        """A device's state, once per batch: what it says is the device as it is once the whole batch is in
        the store, so one copy, the first, serves every change of it in the batch."""
        if device.id not in state_sent:
            self._publish(self.topics.device(device.id), payloads.encode(payloads.device_state(device)))
            state_sent.add(device.id)

    def _publish_device(self, device: Device, meters: bool = True) -> None:
        """Control subscriptions, then every retained topic of one device and its Home Assistant config; only the
        subscriptions while another hub's state of it stands (:meth:`_defer_to_another_hub`)."""
        # subscribed first: a consumer that answers the device's Home Assistant config with a command at once
        # finds it heard (a broker takes one client's packets in order)
        if self.settings.control and device.id not in self._controlled:
            assert self.client is not None
            for topic_filter in self.topics.control_filters(device.id):
                self.client.subscribe(topic_filter, self.settings.qos_state)
            self._controlled.add(device.id)
        if not self._defer_to_another_hub(device):
            self._publish_device_topics(device, meters)

    def _publish_device_topics(self, device: Device, meters: bool) -> None:
        self._publish(self.topics.device(device.id), payloads.encode(payloads.device_state(device)))
        self._publish(self.topics.availability(device.id), payloads.availability_payload(device.online))
        for channel in device.channels:
            if not channel.reported:  # it goes out with the receiver's first report of it
                continue
            self._publish(
                self.topics.channel(device.id, channel.index), payloads.encode(payloads.channel_state(channel))
            )
            if meters:
                self._publish_meters(device.id, channel.index, meter_values(field_values(channel)))
        self._publish_homeassistant(device)
        self._clear_previous_channels(device)
        if not device.online and device.channels and not any(channel.reported for channel in device.channels):
            self._read_previous_channels(device)

    def _read_previous_channels(self, device: Device) -> None:
        """Read the channel states the broker kept of a device held offline from before this run (its
        identity, hub.devices), none of whose channels the receiver has reported: this run publishes none of
        them until it does, so without them a reconnect to a broker that lost its retained store (restarted
        without persistence, another node of a cluster) would leave that receiver without channel topics, where
        one that went down while the hub ran gets its last states back."""
        if device.id in self._reading_previous_channels:
            return
        assert self.client is not None
        topics = self._reading_previous_channels[device.id] = [
            self.topics.channel(device.id, channel.index) for channel in device.channels
        ]
        for topic in topics:
            self.client.subscribe(topic, self.settings.qos_state)

    def _stop_reading_previous_channels(self, device_id: str) -> None:
        for topic in self._reading_previous_channels.pop(device_id, ()):
            if self.client is not None:
                self.client.unsubscribe(topic)

    def _rename_previous_channel(self, device_id: str, index: int, extended_name: str | None) -> None:
        """The user's name for a channel given while the receiver has not reported it: on the state the previous
        run left for it (:meth:`_on_previous_channel_state`), as it goes on the state of a receiver that went down
        while the hub ran."""
        assert self.client is not None
        topic = self.topics.channel(device_id, index)
        kept = self.client.retained_topics.get(topic)
        if kept is not None:
            self._publish(topic, payloads.with_extended_name(expand(kept[0]), extended_name, datetime.now(UTC)))

    def _on_previous_channel_state(self, topic: str, payload: bytes, retained: bool) -> bool:
        """Keep a channel state the broker held from before this run for a device read by
        :meth:`_read_previous_channels`, as this run's own, while the receiver has not reported that channel. True
        when ``topic`` is a channel topic of such a device (also one this run published: it comes back not
        retained)."""
        if not self._reading_previous_channels:
            return False
        found = self.topics.channel_of(topic)
        if found is None or found[0] not in self._reading_previous_channels:
            return False
        device_id, index = found
        device = self.hub.state.devices.get(device_id)
        channel = device.channel(index) if device is not None else None
        assert self.client is not None
        if (
            retained
            and channel is not None
            and not channel.reported
            and device is not None
            and not device.online
            and topic not in self.client.retained_topics  # this run's state of it stands
            # another hub that lists it may be the one publishing it: its state is not this hub's to put back
            and not self._owned_by_another_hub(device_id)
            and len(payload) <= self.settings.max_payload_bytes
            and payloads.is_channel_state(payload, index)
        ):
            self.client.adopt_retained(topic, payload, self.settings.qos_state)
        return True

    def _clear_previous_channels(self, device: Device) -> None:
        """Empty retained payloads on the channel topics this hub's previous run left for channels the device no
        longer has (another model at its address while the hub was stopped), once it is published online this run.
        Offline, it is as the hub kept it from before (hub.devices): those topics stay the previous run's, cleared
        with it should it be removed before it answers."""
        if not device.online:
            return
        for index in self._previous_channels.pop(device.id, ()):
            if device.channel(index) is None:
                self._publish(self.topics.channel(device.id, index), b"")

    def _entity_options(self) -> EntityOptions:
        return EntityOptions(
            meter_entities=self.settings.homeassistant_meter_entities, configuration_url=self.hub.board_url()
        )

    def _publish_homeassistant(self, device: Device, only_if_changed: bool = False) -> None:
        if not self.settings.homeassistant:
            return
        held = self._homeassistant_components.setdefault(device.id, {})
        topic = self.topics.homeassistant_config(device.id)
        self._config_topic_device[topic] = device.id
        model = device.model or device.family  # as the config's device block names it
        made_for, readings = self._kept_readings.get(device.id, (model, frozenset()))
        # A device reading (IP address, RF band, ...) comes some time after the receiver identified itself, and
        # not at all from another model at the same address. Its entity stays until then: removing it and making
        # it again would lose what the user gave it in Home Assistant (its entity id, name, area).
        kept = set(readings) if _same_model(made_for, model) else set()
        previous = self._previous_configs.pop(topic, None)
        if previous is not None:
            for component_id, platform in previous.platforms.items():
                held.setdefault(component_id, platform)
            if _same_model(previous.model, model):
                kept |= previous.entities & DEVICE_READING_FIELDS
        config = discovery_config(
            device, self.topics, self.settings.qos_state, self._entity_options(), kept_readings=kept
        )
        components: dict[str, dict[str, Any]] = config["components"]
        self._kept_readings[device.id] = (model or made_for, frozenset(components.keys() & DEVICE_READING_FIELDS))
        # Home Assistant keeps a component left out of a device's config; it removes one sent with nothing
        # but its platform (a receiver with fewer channels than before, another model at its address, an
        # entity an earlier version made)
        for component_id in held.keys() - components.keys():
            components[component_id] = {"platform": held[component_id]}
        held.update((component_id, component["platform"]) for component_id, component in components.items())
        self._publish_config(topic, config, only_if_changed)

    def _on_previous_config(self, topic: str, payload: bytes) -> None:
        """A device config the broker held from before this run: its components this run no longer makes are
        sent with their platform alone when the device's config goes out (again, if it went out already), and
        its device readings are kept for a receiver of the same model until it reports them."""
        previous = payloads.retained_config(payload)
        device_id = self._config_topic_device.get(topic, "")  # "": not sent this run (yet)
        held = self._homeassistant_components.get(device_id, {})
        _, readings = self._kept_readings.get(device_id, (None, frozenset()))
        if not previous.platforms.keys() - held.keys() and previous.entities & DEVICE_READING_FIELDS <= readings:
            return
        self._previous_configs[topic] = previous
        device = self.hub.state.devices.get(device_id)
        if device is not None:
            self._publish_homeassistant(device, only_if_changed=True)

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

    def _owned_by_another_hub(self, device_id: str) -> bool:
        """A receiver another hub on the broker lists as its own: its topics are that hub's."""
        return any(device_id in owned for owned in self._owned_elsewhere.values())

    def _commanded_elsewhere(self, device_id: str) -> str | None:
        """The other running hub that carries out MQTT sets to a receiver both watch, else None. Of the running
        hubs that list it, the one whose id sorts first does, so a set (a mute toggle, say) happens once; each
        hub decides alone from the same retained lists and states, and the next takes over when it stops."""
        sharing = [hub_id for hub_id in self._running_elsewhere if device_id in self._owned_elsewhere.get(hub_id, ())]
        first = min(sharing, default=None)
        return first if first is not None and first < self.topics.hub_id else None

    def _defer_to_another_hub(self, device: Device) -> bool:
        """True while this hub has the device offline and another running hub's list says it has it online (the
        receiver moved to a new address that hub watches, say): that hub's state of it stands, so this hub
        publishes none of its topics and forgets those it kept (a broker restart would bring its copy back)."""
        if device.online or not any(
            device.id in self._online_elsewhere.get(hub_id, ()) for hub_id in self._running_elsewhere
        ):
            return False
        if device.id not in self._deferred:
            assert self.client is not None
            log.info("device %s is offline here and online on another hub: its topics are that hub's", device.id)
            self._deferred.add(device.id)
            self._stop_reading_previous_channels(device.id)
            for topic in self._device_topics(device.id):
                self.client.forget_retained(topic)
        return True

    def _still_deferred(self, device: Device) -> bool:
        """After :meth:`_take_back` said no: a deferred device stays deferred (it has just checked), any other
        is checked once."""
        return device.id in self._deferred or self._defer_to_another_hub(device)

    def _take_back(self, device: Device) -> bool:
        """A device deferred to another hub that this hub has online again, or no other running hub has
        online any more: every topic of it goes out again. True when it did."""
        if device.id not in self._deferred or self._defer_to_another_hub(device):
            return False
        self._deferred.discard(device.id)
        log.info("device %s: this hub's state of it is published again", device.id)
        self._publish_device(device, meters=False)
        return True

    def _say_shared(self) -> None:
        """Say once per receiver and hub when another hub watches a receiver this one does: only one of them
        carries out MQTT sets to it, and each says it offline when it stops."""
        mine = self.hub.state.devices
        for hub_id, owned in self._owned_elsewhere.items():
            for device_id in sorted(owned.intersection(mine)):
                if (device_id, hub_id) not in self._shared_said:
                    self._shared_said.add((device_id, hub_id))
                    log.warning(
                        "device %s is also watched by hub %s: MQTT sets to it are carried out only by the running "
                        "hub whose id sorts first; give each receiver to one hub",
                        device_id,
                        hub_id,
                    )

    def _clear_device(self, device_id: str) -> None:
        """Empty retained payloads on every topic the device had, so no ghost is left on the broker: those this
        run set, and those the previous run left of a device this run has not published (down since before
        the start); unless another hub lists it now (moved there while this one ran): its topics and Home
        Assistant's device are that hub's, and this hub stops keeping them."""
        assert self.client is not None
        self._deferred.discard(device_id)
        self._carried_entries.pop(device_id, None)
        self._stop_reading_previous_channels(device_id)
        config_topic = self.topics.homeassistant_config(device_id)
        sharer = self._config_topic_sharer(device_id, self.hub.state.devices)
        if sharer is None:
            self._previous_configs.pop(config_topic, None)
            self._config_topic_device.pop(config_topic, None)
        previous_channels = self._previous_channels.pop(device_id, None)
        if self._owned_by_another_hub(device_id):
            log.info("device %s left this hub and is another hub's now: its topics are left", device_id)
            # and never sent again: after a broker restart this hub's old copy would overwrite the other's
            for topic in self._device_topics(device_id):
                self.client.forget_retained(topic)
        else:
            topics = self._device_topics(device_id)
            if previous_channels is not None:  # not published online this run: what the previous run left is there
                topics += self._previous_run_topics(device_id, previous_channels)
            for topic in dict.fromkeys(topics):  # each once, Home Assistant's config first
                if topic != config_topic or sharer is None:
                    self._publish(topic, b"")
        self._homeassistant_components.pop(device_id, None)
        self._kept_readings.pop(device_id, None)
        if device_id in self._controlled:
            for topic_filter in self.topics.control_filters(device_id):
                self.client.unsubscribe(topic_filter)
            self._controlled.discard(device_id)
        for key in [key for key in self._last_meters if key[0] == device_id]:
            del self._last_meters[key]

    def _config_topic_sharer(self, device_id: str, devices: Iterable[str]) -> str | None:
        """Another device of this run (published, or among ``devices``) whose Home Assistant config topic is
        ``device_id``'s, else None: ids that differ only in characters Home Assistant's node id maps alike
        (``x-A.B`` and ``x-A_B``; ``x-A<U+200E>B``, as a build before 26.12.1 kept an invisible character, and
        ``x-A_B`` now). Clearing that topic for ``device_id`` would delete the other's device in Home Assistant,
        with the user's names and areas. The other topics of a device are named by its id itself: never shared."""
        topic = self.topics.homeassistant_config(device_id)
        holder = self._config_topic_device.get(topic)
        if holder is not None and holder != device_id:
            return holder
        node = homeassistant_node_id(device_id)
        # the node id has a character for each of the id's: only ids as long can share it
        return next(
            (
                other
                for other in devices
                if len(other) == len(device_id) and other != device_id and homeassistant_node_id(other) == node
            ),
            None,
        )

    def devices_held(self) -> set[str]:
        """Every device id the publisher keeps something of from this run (its Home Assistant config topic and
        components, the readings it has entities of, its control subscriptions, the meters last sent, the
        previous run's channel states it reads, a deferral to another hub). Each goes with the device's
        removal, so a hub whose receivers come and go holds no more than its present ones: for tests and
        soak checks."""
        held = set(self._homeassistant_components) | set(self._kept_readings) | set(self._controlled)
        held |= set(self._config_topic_device.values()) | set(self._reading_previous_channels) | self._deferred
        held.update(device_id for device_id, _ in self._last_meters)
        return held

    def _device_topics(self, device_id: str) -> list[str]:
        """The retained topics this hub keeps set for a device, its Home Assistant config first: cleared before
        the state topics, Home Assistant has no entity left to render an empty payload (an error per entity)."""
        topics = [self.topics.homeassistant_config(device_id)] if self.settings.homeassistant else []
        return topics + self._retained_under(self.topics.device(device_id))

    def _previous_run_topics(self, device_id: str, channels: Iterable[int]) -> list[str]:
        """The retained topics this hub's previous run left for a device with the channels numbered ``channels``
        (its retained device list says which), its Home Assistant config first, as :meth:`_device_topics`."""
        topics = [self.topics.homeassistant_config(device_id)] if self.settings.homeassistant else []
        topics += [self.topics.device(device_id), self.topics.availability(device_id)]
        return topics + [self.topics.channel(device_id, index) for index in channels]

    def _clear_channel(self, device_id: str, index: int) -> None:
        """Empty retained payloads on the topics of a channel the device no longer has."""
        for topic in self._retained_under(self.topics.channel(device_id, index)):
            self._publish(topic, b"")
        self._last_meters.pop((device_id, index), None)

    def _retained_under(self, prefix: str) -> list[str]:
        """The retained topics this hub keeps set at ``prefix`` and below it."""
        assert self.client is not None
        return [topic for topic in self.client.retained_topics if topic == prefix or topic.startswith(prefix + "/")]

    def _publish_alerts(self) -> None:
        """The retained list of open alerts (raised or acknowledged, not yet cleared)."""
        if self.client is None:
            return
        alerts = [alert.model_dump(mode="json") for alert in self.venue.alerts.open_alerts()]
        self._publish(self.topics.hub_alerts, payloads.encode(alerts))

    def _on_alert_event(self, event: AlertEvent) -> None:
        if self.client is None:
            return
        body = {"action": event.action, "alert": event.alert.model_dump(mode="json")}
        self._publish(self.topics.hub_alert_events, payloads.encode(body), retain=False)
        self._alert_list.changed()

    def _on_swap_list(self, swap: SwapList) -> None:
        """The battery swap list, retained, after every check of the show (for Companion and Home Assistant)."""
        self._publish(self.topics.hub_swap_list, payloads.encode(swap.model_dump(mode="json")))

    def _publish_frequency_plan(self, summary: dict[str, Any]) -> None:
        """The retained summary of the live frequency plan (counts and the worst findings)."""
        if self.client is not None:
            self._publish(self.topics.hub_frequency_plan, payloads.encode(summary))

    def _publish_device_list(self) -> None:
        self._say_shared()
        self._publish(self.topics.hub_devices, payloads.encode(self._device_summaries()))
        self._publish(self.topics.hub_info, payloads.encode(self.hub.info()))
        # the board's address is known once the web server is listening, after this edge started
        self._publish_hub_homeassistant(only_if_changed=True)

    def _device_summaries(self) -> list[dict[str, Any]]:
        urls = {health["device_id"]: health["url"] for health in self.hub.connections()}
        devices = self.hub.state.devices
        summaries = [{**payloads.device_summary(device), "url": urls.get(device.id)} for device in devices.values()]
        if self._carried_entries:
            expected, _ = self.hub.expected_device_ids()
            summaries += [
                entry
                for device_id, entry in self._carried_entries.items()
                if device_id in expected and device_id not in devices
            ]
        return summaries

    # Outbound: meters (the hot path)

    def _on_meter_batch(self, changes: Iterable[tuple[ChangeKey, frozenset[str]]]) -> None:
        channel_fields = self.hub.state.channel_fields
        threshold = self.settings.meter_threshold_db
        last = self._last_meters
        state_first = False
        for key, changed in changes:
            device_id, index = key
            if index is None or METER_FIELDS.isdisjoint(changed):
                continue
            fields = channel_fields(device_id, index)
            if fields is None:
                continue
            values = meter_values(fields)
            sent = last.get(key)
            if sent is None:
                # a channel's first meters: only of a channel the receiver has reported, once a level is known
                # (its first report names the meters too, all null), and after its state: the state's
                # coalescing window may still hold the report that came with them, and the meters' window
                # ends first when it has been quiet longer
                if fields["updated_at"] is None or all(value is None for value in values):
                    continue
                if not state_first:
                    state_first = True
                    self._publish_pending_state()
                self._publish_meters(device_id, index, values)
            elif meters_moved(sent.values, values, threshold):
                self._send_meters(sent, values)

    def _publish_pending_state(self) -> None:
        """Publish the state changes still in their coalescing window, now (the bridge holds them)."""

    def _publish_meters(self, device_id: str, index: int, values: tuple[Any, ...]) -> None:
        key = (device_id, index)
        sent = self._last_meters.get(key)
        if sent is None:
            sent = self._last_meters[key] = _SentMeters(self.topics.meters(device_id, index), values)
        self._send_meters(sent, values)

    def _send_meters(self, sent: _SentMeters, values: tuple[Any, ...]) -> None:
        assert self.client is not None
        sent.values = values
        if self._qos_meters == 0:  # the hot path: the topic as encoded once, straight to the write buffer
            self.client.publish_live(sent.topic_field, meters_payload(values))
        else:
            self.client.publish(sent.topic, meters_payload(values), self._qos_meters)

    def _publish_meter_snapshot(self) -> None:
        for device in list(self.hub.state.devices.values()):
            for channel in device.channels:
                if channel.reported:
                    self._publish_meters(device.id, channel.index, meter_values(field_values(channel)))

    # Outbound: answers

    def _respond(self, command: str, request: dict[str, Any] | None, status: str, data: Any, error: str | None) -> None:
        response: dict[str, Any] = {
            "status": status,
            "data": data,
            "error": None if error is None else redact(error),
            # this hub's wall clock: a sender learns from it to write a request's deadline in this hub's clock,
            # however far the machines' clocks are apart (docs/mqtt.md, "Deadlines")
            "hub_time": self.hub.clock.now(),
        }
        if request is not None and "transaction" in request:
            response["transaction"] = request["transaction"]
        assert self.client is not None
        self.client.publish(self.topics.response(command), payloads.encode(response), self.settings.qos_state)


def _same_model(made_for: str | None, model: str | None) -> bool:
    """Whether entities made for a receiver of model ``made_for`` suit one of ``model``: unless both are known
    and differ (another model at the same address)."""
    return made_for is None or model is None or made_for == model
