"""The hub's and its devices' presence on the broker: online at start, offline at a clean stop (the last
will covers a crash), Home Assistant's birth message, and the retained topics a previous run left behind.
"""

from __future__ import annotations

import asyncio
import logging

from hub.model import MAX_CHANNELS
from hub.mqtt import payloads
from hub.mqtt.publisher import StatePublisher
from hub.service import HubService, VenueService

log = logging.getLogger("hub.mqtt")

# Home Assistant subscribes to state topics after it has processed the configs; meters are not retained,
# so their snapshot waits a moment after the configs went out.
HOMEASSISTANT_METER_DELAY_S = 2.0
# After answering Home Assistant's birth, further births within this long get one answer, at its end.
BIRTH_COALESCE_S = 1.0
# How long a previous run's device may take to identify itself again before this run decides it is gone
# (removed from the configuration) and clears its retained topics: a driver's connect timeout, and some.
DEPARTED_GRACE_S = 15.0
# How long after this hub's previous device list the other hubs' lists (retained, sent with it on
# subscribing) are taken to be in.
OTHER_LISTS_SETTLE_S = 0.5
# How long the hub reads the device configs the broker kept from before this run (their components it no
# longer makes are removed from Home Assistant; the broker sends them on subscribing). What they name for a
# device of this hub is kept until that device identifies itself, however late.
PREVIOUS_CONFIGS_S = 2 * DEPARTED_GRACE_S


class Presence(StatePublisher):
    """Availability of the hub and its devices, and Home Assistant's birth message."""

    def __init__(self, hub: HubService, venue: VenueService) -> None:
        super().__init__(hub, venue)
        self._left_behind_checked = False
        # device topic -> id, of the previous run's devices not here at this run's start, while their retained
        # state is read: a crash left it saying online, as the device's last will covers only the hub's topic
        self._left_behind_topics: dict[str, str] = {}
        self._left_behind_states: dict[str, bytes] = {}  # device id -> that retained state
        self._meter_snapshot: asyncio.Task[None] | None = None
        # waits up to DEPARTED_GRACE_S for devices that may never answer: cancelled at a stop, not waited on as
        # the in-flight commands are
        self._settling_left_behind: asyncio.Task[None] | None = None
        self._birth_answer: asyncio.TimerHandle | None = None
        self._forget_previous_configs: asyncio.TimerHandle | None = None
        self._birth_answered_at = -BIRTH_COALESCE_S  # on the event loop's time

    def _on_device_list(self, hub_id: str, payload: bytes) -> None:
        if hub_id == self.topics.hub_id:
            self._mark_left_behind_offline(payload)
            return
        was_online = self._online_elsewhere.pop(hub_id, frozenset())
        listed = frozenset(payloads.listed_devices(payload)) if payload else frozenset()
        online = payloads.listed_online(payload) if payload else frozenset()
        if listed:
            self._owned_elsewhere[hub_id] = listed
            self._online_elsewhere[hub_id] = online
            self._say_shared()
        else:
            self._owned_elsewhere.pop(hub_id, None)
        # what that hub published of these (its state that it has them offline, or from before it let one go
        # that it had online) may stand on the broker over this hub's
        self._review_shared((listed - online) | (was_online - listed))

    def _on_hub_state(self, hub_id: str, payload: bytes) -> None:
        if hub_id == self.topics.hub_id:
            return
        if payloads.hub_running(payload):
            self._running_elsewhere.add(hub_id)
        else:  # offline, cleared (a hub retired) or not a state
            self._running_elsewhere.discard(hub_id)
        self._review_shared(frozenset())

    def _review_shared(self, contested: frozenset[str]) -> None:
        """After another hub's list or state changed: the devices this hub has offline are left to a running
        hub that has them online, or taken back; and those in ``contested`` that it has online go out again,
        so the broker says what the hub watching them sees (a receiver moved to a new address: the hub with
        the old one says offline, or let it go after saying so)."""
        if self.client is None:
            return
        for device in list(self.hub.state.devices.values()):
            if self._take_back(device) or self._still_deferred(device):
                continue
            if device.online and device.id in contested:
                log.info("device %s is online here and not on another hub that lists it: republished", device.id)
                self._publish_device(device, meters=False)

    def _say_offline(self) -> None:
        """Nobody watches the receivers once the hub is gone: say so on each, not only on the hub."""
        assert self.client is not None
        for device_id in list(self.hub.state.devices):
            if not self._owned_by_another_hub(device_id):  # the other hub still watches it
                self._publish(self.topics.availability(device_id), payloads.availability_payload(False))
        self.client.publish(self.topics.hub_state, payloads.HUB_OFFLINE, self.settings.qos_state, retain=True)

    def _mark_left_behind_offline(self, payload: bytes) -> None:
        """Devices in the list a previous run of this hub left retained, and unknown to this run, get an
        ``offline`` availability (the last will covers only the hub's own state topic); those that turn out
        to be gone from the configuration get their retained topics cleared once this run's devices have
        identified themselves."""
        assert self.client is not None
        if self._left_behind_checked:  # later ones are this run's own
            return
        self._left_behind_checked = True
        # no hub gives an id with a wildcard character ('+', '#'): an entry with one (anyone allowed to write the
        # hub's topics can leave it) names no topics, and subscribing with it would read every device's
        previous = {
            device_id: channels
            for device_id, channels in payloads.listed_channels(payload).items()
            if "+" not in device_id and "#" not in device_id
        }
        self._previous_channels = dict(previous)
        self._carried_entries = payloads.carried_entries(payload)
        self._device_list.changed()  # now with the devices still to come back
        for device_id in previous.keys() - self.hub.state.devices.keys():
            topic = self.topics.device(device_id)
            self._left_behind_topics[topic] = device_id
            self.client.subscribe(topic, self.settings.qos_state)
            # and its channels: a list of an older hub gives the count alone, read as 1 to it, and a base
            # with a pack in slot 5 had channels 1 and 5 (cleared with the rest if the device is gone)
            self.client.subscribe(f"{topic}/channels/+", self.settings.qos_state)
        for device in list(self.hub.state.devices.values()):
            if device.id not in self._deferred:  # published already: the rest are when they are
                self._clear_previous_channels(device)
        if previous:
            self._settling_left_behind = asyncio.create_task(
                self._settle_left_behind(previous), name="mqtt departed devices"
            )

    async def _settle_left_behind(self, previous: dict[str, tuple[int, ...]]) -> None:
        """Mark the previous run's devices that are not here offline (availability, and the device state a crash
        left saying online), then clear the retained topics of those this run does not have: removed from the
        configuration (or the store) while the hub was stopped. Waits until every device of this run has an id
        (this run's, or the one it had last run), at most DEPARTED_GRACE_S. A device another hub lists as its own
        now is that hub's: left alone. A store reading a stand-in of the database (the file locked or not writable
        at start) may lack devices the file remembers: then nothing is cleared."""
        clock = self.hub.clock
        deadline = clock.monotonic() + DEPARTED_GRACE_S
        knew_remembered_devices = self.hub.knows_remembered_devices()
        # the retained states of the devices left behind come once the broker has taken this hub's subscriptions
        # to them, late on a loaded one; the other hubs' retained lists come from the broker in the same burst as
        # this hub's, in any order: waits on the network's time, not the hub's clock
        if self.client is not None:
            await self.client.wait_subscribed(DEPARTED_GRACE_S)
        await asyncio.sleep(OTHER_LISTS_SETTLE_S)
        for device_id in sorted(set(previous) - set(self.hub.state.devices)):
            if self._owned_by_another_hub(device_id) or self.client is None:
                continue
            log.info("device %s from this hub's previous run is not here (yet): marked offline", device_id)
            availability = self.topics.availability(device_id)
            self.client.publish(availability, b"offline", self.settings.qos_state, retain=True, keep=False)
            state = payloads.said_offline(self._left_behind_states.get(device_id, b""))
            if state is not None:
                self.client.publish(self.topics.device(device_id), state, self.settings.qos_state, True, keep=False)
        self._stop_reading_left_behind_states()
        expected, complete = self.hub.expected_device_ids()
        while not complete and clock.monotonic() < deadline:
            await clock.sleep(0.2)
            expected, complete = self.hub.expected_device_ids()
        not_here = sorted(device_id for device_id in previous if device_id not in expected)
        if not_here and not (knew_remembered_devices and self.hub.knows_remembered_devices()):
            # the stand-in may lack what the file remembers (Home Assistant deletes a device whose config is
            # cleared, with the user's names and areas): not here is not gone
            log.warning(
                "the database file could not be opened for writing at start: the retained topics of %s from this "
                "hub's previous run are left, as they may still be remembered there",
                ", ".join(not_here),
            )
            return
        for device_id in not_here:
            if self.client is None:
                continue
            if self._owned_by_another_hub(device_id):
                log.info("device %s of this hub's previous run is another hub's now: its topics are left", device_id)
                continue
            log.info("device %s of this hub's previous run is gone: clearing its retained topics", device_id)
            # the channels its list entry names, and those found retained under it meanwhile
            channels = self._previous_channels.pop(device_id, previous[device_id])
            config_topic = self.topics.homeassistant_config(device_id)
            sharer = self._config_topic_sharer(device_id, expected | self.hub.state.devices.keys())
            if sharer is None:
                self._previous_configs.pop(config_topic, None)
            else:
                log.info("device %s: its Home Assistant config topic is device %s's now: left", device_id, sharer)
            for topic in self._previous_run_topics(device_id, channels):
                if topic != config_topic or sharer is None:
                    self._publish(topic, b"")
            self.client.flush()

    def _on_left_behind_state(self, topic: str, payload: bytes, retained: bool) -> bool:
        """Keep the retained state of a previous run's device not here yet; True when ``topic`` is such a
        device's (a state this run publishes comes back on it too, not retained: not kept)."""
        if not self._left_behind_topics:
            return False
        device_id = self._left_behind_topics.get(topic)
        if device_id is None:
            return self._on_left_behind_channel(topic, payload, retained)
        if retained and payload:
            self._left_behind_states[device_id] = payload
        return True

    def _on_left_behind_channel(self, topic: str, payload: bytes, retained: bool) -> bool:
        """Add a channel retained under a previous run's device not here yet to the channels its list entry
        named, so they are cleared with it if it is gone; True when ``topic`` is such a device's channel. Only
        channel numbers from 1 to MAX_CHANNELS count: a broker holding thousands of other topics there (anyone
        allowed to write the hub's topics can leave them) gets no more read nor cleared."""
        found = self.topics.channel_of(topic)
        if found is None or self._left_behind_topics.get(self.topics.device(found[0])) != found[0]:
            return False
        device_id, index = found
        channels = self._previous_channels.get(device_id)
        if retained and payload and channels is not None and index <= MAX_CHANNELS and index not in channels:
            self._previous_channels[device_id] = tuple(sorted((*channels, index)))
        # held offline from its identity by now: its channel states are read as this run's too
        return device_id not in self._reading_previous_channels

    def _stop_reading_left_behind_states(self) -> None:
        if self.client is not None:
            for topic in self._left_behind_topics:
                self.client.unsubscribe(topic)
                self.client.unsubscribe(f"{topic}/channels/+")
        self._left_behind_topics.clear()
        self._left_behind_states.clear()

    def _republish_for_homeassistant(self) -> None:
        """Answer Home Assistant's birth message at once, and a burst of them with one more answer at its end:
        each answer is every config and state, and a client allowed to write homeassistant/status could
        send births by the hundred."""
        if self._birth_answer is not None:  # the burst's last answer is due already
            return
        loop = asyncio.get_running_loop()
        wait = self._birth_answered_at + BIRTH_COALESCE_S - loop.time()
        if wait <= 0:
            self._answer_birth()
        else:
            self._birth_answer = loop.call_later(wait, self._answer_birth)

    def _answer_birth(self) -> None:
        self._birth_answer = None
        self._birth_answered_at = asyncio.get_running_loop().time()
        if self.client is None:
            return
        log.info("Home Assistant came online: re-publishing discovery and state")
        self._publish(self.topics.hub_state, payloads.HUB_ONLINE)
        self._publish_hub_homeassistant()
        for device in list(self.hub.state.devices.values()):
            self._publish_device(device, meters=False)
        if self._meter_snapshot is not None:
            self._meter_snapshot.cancel()  # births in quick succession: one snapshot, after the last
        self._meter_snapshot = asyncio.create_task(self._publish_meter_snapshot_later(), name="mqtt meter snapshot")

    async def _publish_meter_snapshot_later(self) -> None:
        await self.hub.clock.sleep(HOMEASSISTANT_METER_DELAY_S)
        self._publish_meter_snapshot()
