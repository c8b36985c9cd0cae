"""The state store: current state of every device, merged from partial driver updates.

Drivers write through :class:`hub.devices.DeviceHandle`; publishers (MQTT, the board, history, alerts)
read through subscriptions. A subscription receives *which* fields changed on *which* device or
channel, coalesced: ten meter updates to one channel between two deliveries arrive as one entry, so a
consumer that asks for at most one batch per 0.5 s does that much work and no more, however fast the
devices stream. Consumers read the values themselves from the store when the batch arrives.

Meter readings may wait outside the store until somebody looks (``DeviceSink.defer_meters``): the store
calls the drivers' merges together every ``meter_look_interval()``, the fastest consumer's interval, so a
receiver that meters faster than anyone reads costs a decode per look instead of one per sample.

Inside the store a set of changed fields is an int with one bit per field name: filtering a meter sample
for each subscription is then one AND, and what waits for a consumer holds no objects the garbage
collector must scan (sets alive for half a second, by the thousand, made its full collections run long
enough to delay device input by 100 ms and more at a few thousand channels). Consumers get the names.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from hub.clock import SYSTEM_CLOCK, Clock
from hub.model import CHANNEL_FIELDS, DEVICE_FIELDS, Channel, Device, field_values

# The longest one look at held meter readings works before it lets the event loop run.
LOOK_SLICE_S: Final = 0.005

# Keys of a change batch: (device_id, None) for the device itself, (device_id, index) for a channel.
ChangeKey = tuple[str, int | None]
Batch = dict[ChangeKey, frozenset[str]]
# Where a change goes: a subscription's pending changes, its wake-up event and the part of the change it takes.
_Route = tuple[tuple[dict[ChangeKey, int], asyncio.Event, int], ...]

# Pseudo-fields that mark lifecycle changes in a batch, next to the model's own field names.
ADDED: Final = "+added"
REMOVED: Final = "+removed"
ONLINE: Final = "online"
# Changes every subscription receives, whatever fields it asked for.
LIFECYCLE: Final = frozenset({ADDED, REMOVED, ONLINE})

_BIT: Final = {name: 1 << number for number, name in enumerate(sorted(CHANNEL_FIELDS | DEVICE_FIELDS | LIFECYCLE))}
_ALL_BITS: Final = (1 << len(_BIT)) - 1
_ADDED: Final = _BIT[ADDED]
_REMOVED: Final = _BIT[REMOVED]
_ONLINE: Final = _BIT[ONLINE]
# Every field but the one the hub keeps for the user (the extended name, hub.fieldcheck): a change of that alone
# on a channel the receiver has not reported (held offline from before the hub started) is no first report of
# its, which MQTT and the board would show as a channel whose every reading is null, reported just now
_RECEIVER_SAYS: Final = _ALL_BITS & ~_BIT["extended_name"]
_names: dict[int, frozenset[str]] = {0: frozenset()}


def _mask(names: Iterable[str]) -> int:
    mask = 0
    for name in names:
        try:
            mask |= _BIT[name]
        except KeyError:
            raise KeyError(f"unknown device or channel field {name!r}") from None
    return mask


def _names_of(mask: int) -> frozenset[str]:
    # a handful of masks recur (a sample's meters, a name, a battery step): each is built once
    names = _names.get(mask)
    if names is None:
        names = _names[mask] = frozenset(name for name, bit in _BIT.items() if mask & bit)
    return names


def _merge(values: dict[str, Any], fields: Mapping[str, Any], allowed: frozenset[str], kind: str) -> int:
    """Set the given fields in a model's ``values``; return the mask of those whose value really changed."""
    # ``values`` is hub.model.field_values: the pydantic model's instance __dict__ (the models do not
    # validate assignments). Writing there skips pydantic's per-assignment bookkeeping, which cost more than
    # the merge itself at ten samples a second per channel (docs/performance.md). Nothing reads
    # model_fields_set.
    if not allowed.issuperset(fields):
        unknown = sorted(set(fields) - allowed)
        raise KeyError(f"unknown {kind} field {unknown[0]!r}")
    changed = 0
    for name, value in fields.items():
        if values[name] != value:
            values[name] = value
            changed |= _BIT[name]
    return changed


class _CoarseClock:
    """The wall-clock time as a datetime, made anew at most every ``resolution_s``.

    ``last_seen`` and ``updated_at`` are stamped on every meter sample; building a timezone-aware
    datetime each time cost more than the merge itself, and nobody reads them finer than this."""

    def __init__(self, resolution_s: float = 0.01) -> None:
        self._resolution_s = resolution_s
        self._at = 0.0
        self._now = datetime.now(UTC)

    def now(self) -> datetime:
        at = time.time()
        if not 0 <= at - self._at < self._resolution_s:  # also when the wall clock was set back
            self._at = at
            self._now = datetime.fromtimestamp(at, UTC)
        return self._now


class Subscription:
    """A consumer's view of changes. Iterate it (``async for batch in sub``) to receive batches.

    ``fields`` limits the subscription to changes touching those fields (lifecycle changes always
    pass). ``min_interval`` is the least time between two batches: the coalescing window.
    """

    def __init__(self, store: StateStore, fields: frozenset[str] | None, min_interval: float) -> None:
        self._store = store
        self.fields = fields
        self._accepted = _ALL_BITS if fields is None else _mask(fields | LIFECYCLE)
        self.min_interval = min_interval
        self._pending: dict[ChangeKey, int] = {}
        self._ready = asyncio.Event()
        self._last_delivery = 0.0
        self._closed = False

    @property
    def backlog(self) -> int:
        """Entries waiting for the consumer: bounded by the number of devices and channels."""
        return len(self._pending)

    def close(self) -> None:
        self._closed = True
        self._store._unsubscribe(self)
        self._ready.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Batch:
        while True:
            if self._closed:
                raise StopAsyncIteration
            await self._ready.wait()
            clock = self._store.clock
            wait = self._last_delivery + self.min_interval - clock.monotonic()
            if wait > 0:
                await clock.sleep(wait)
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            if not self._pending:
                continue
            self._last_delivery = clock.monotonic()
            return self._take()

    def drain(self) -> Batch:
        """Take what is pending without waiting (for consumers driven by their own clock)."""
        self._ready.clear()
        return self._take()

    def _take(self) -> Batch:
        # emptied in place: the store's routes hold this dict
        batch = {key: _names_of(mask) for key, mask in self._pending.items()}
        self._pending.clear()
        return batch


class ChannelWriter:
    """One channel's way into the store, found once: a driver's handle merges each meter sample through it.

    It holds the channel's and its device's field dicts: BaseModel defines ``__getattr__``, which puts every
    attribute read of a model on CPython's slow path, and finding the channel by (device, index) for each
    of ten samples a second per channel cost as much as the merge (docs/performance.md).
    """

    __slots__ = ("_device_values", "_store", "key", "live", "values")

    def __init__(
        self, store: StateStore, key: ChangeKey, values: dict[str, Any], device_values: dict[str, Any]
    ) -> None:
        self._store = store
        self.key = key
        self.values = values
        self._device_values = device_values
        self.live = True

    def update(self, fields: Mapping[str, Any]) -> None:
        values = self.values
        changed = _merge(values, fields, CHANNEL_FIELDS, "channel")
        store = self._store
        store.updates_applied += 1
        now = store._clock.now()
        self._device_values["last_seen"] = now
        if changed:
            if values["updated_at"] is not None or changed & _RECEIVER_SAYS:
                values["updated_at"] = now
            store._notify(self.key, changed)
        elif values["updated_at"] is None and _mask(fields) & _RECEIVER_SAYS:
            # the channel's first report, every value as the empty channel had it: news all the same, as the
            # publishers hold back a channel the receiver has not reported yet (``updated_at`` still None)
            values["updated_at"] = now
            store._notify(self.key, _mask(fields))


def _no_extended_name(device_id: str, index: int) -> None:
    return None


def _a_tenth_of_a_second() -> float:
    return 0.1  # the fastest rate receivers meter at: no sample waits longer than one interval of its own


class StateStore:
    """Every known device, by id. Only drivers (through handles) and the hub's device manager write."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock  # subscriptions' coalescing windows run on it
        self.devices: dict[str, Device] = {}
        self._subscriptions: set[Subscription] = set()
        # changed-fields mask -> the subscriptions that take such a change
        self._routes: dict[int, _Route] = {}
        # (device_id, channel index) -> that channel's writer; all retired when a device comes or goes
        self._writers: dict[ChangeKey, ChannelWriter] = {}
        self.updates_applied = 0
        self.readings_received = 0  # meter readings drivers received, whether a look merged them or not
        self._clock = _CoarseClock()
        # The user's name for a channel (the venue's extended names), merged into every channel as it appears,
        # so a device that comes back never shows the receiver's own name first.
        self.extended_name_of: Callable[[str, int], str | None] = _no_extended_name
        # How often held meter readings are merged: the hub's fastest consumer of levels (hub.metering).
        self.meter_look_interval: Callable[[], float] = _a_tenth_of_a_second
        self._held_meters: list[Callable[[], None]] = []
        self._meter_look: asyncio.TimerHandle | None = None
        self._merges_due: deque[Callable[[], None]] = deque()  # taken at a look, not yet run: a slice ended
        self._merging: asyncio.Handle | None = None  # runs the rest of them on the next turn of the loop
        self._last_meter_look = 0.0

    def subscribe(self, fields: Iterable[str] | None = None, min_interval: float = 0.0) -> Subscription:
        sub = Subscription(self, frozenset(fields) if fields is not None else None, min_interval)
        self._subscriptions.add(sub)
        self._routes.clear()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)
        self._routes.clear()

    def _route(self, changed: int) -> _Route:
        subs = self._subscriptions
        route = self._routes[changed] = tuple(
            (sub._pending, sub._ready, changed & sub._accepted) for sub in subs if changed & sub._accepted
        )
        return route

    def _notify(self, key: ChangeKey, changed: int) -> None:
        # runs on every meter sample: the few masks that recur each have their subscriptions worked out once
        route = self._routes.get(changed)
        if route is None:
            route = self._route(changed)
        for pending, ready, accepted in route:
            if not pending:
                ready.set()
            pending[key] = pending.get(key, 0) | accepted

    def defer_meters(self, merge: Callable[[], None]) -> None:
        """Call ``merge`` at the next look at levels (each call is one merge, called once)."""
        if self._meter_look is None:
            # paced on the event loop's time, like the reads it stands in for
            loop = asyncio.get_running_loop()
            due = max(self._last_meter_look + self.meter_look_interval(), loop.time())
            self._meter_look = loop.call_at(due, self.merge_held_meters)
        self._held_meters.append(merge)

    def merge_held_meters(self) -> None:
        """Merge every held meter reading (the look timer does; so can a reader that must be current), in
        slices of at most ``LOOK_SLICE_S`` with the event loop let run in between: at thousands of channels
        one look is tens of milliseconds of decoding, which state changes must not wait behind."""
        if self._meter_look is not None:
            self._meter_look.cancel()
            self._meter_look = None
            self._last_meter_look = asyncio.get_running_loop().time()
        self._merges_due.extend(self._held_meters)
        self._held_meters = []
        if self._merging is not None:  # the rest of an earlier look runs now, ahead of this one's
            self._merging.cancel()
        self._merge_due()

    def _merge_due(self) -> None:
        self._merging = None
        due = self._merges_due
        deadline = time.perf_counter() + LOOK_SLICE_S
        while due:
            due.popleft()()
            if due and time.perf_counter() >= deadline:
                self._merging = asyncio.get_running_loop().call_soon(self._merge_due)
                return

    def close(self) -> None:
        """Stop the look timer; held readings are dropped with the drivers that held them."""
        for pending in (self._meter_look, self._merging):
            if pending is not None:
                pending.cancel()
        self._meter_look = self._merging = None
        self._held_meters.clear()
        self._merges_due.clear()

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    def add_device(self, device: Device) -> None:
        """Add or replace a device; subscribers see it as added (device and every channel)."""
        self.devices[device.id] = device
        self._retire_writers()
        self._notify((device.id, None), _ADDED)
        for channel in device.channels:
            self._name(device.id, channel)
            self._notify((device.id, channel.index), _ADDED)

    def remove_device(self, device_id: str) -> Device | None:
        """Let the id go; subscribers see it removed (every channel it had, and the device). Also an id the store
        holds no state of: a device known by its id that has not answered this run may still be shown from
        before (the retained topics a previous run left on the MQTT broker)."""
        device = self.devices.pop(device_id, None)
        self._retire_writers()
        for channel in device.channels if device is not None else ():
            self._notify((device_id, channel.index), _REMOVED)
        self._notify((device_id, None), _REMOVED)
        return device

    def set_channel_count(self, device_id: str, count: int) -> None:
        """Make the device's channels exactly 1..count: a receiver's channel count is fixed by its model, and
        another model may answer at the same address with the same id (a dual where a quad was)."""
        self.set_channels(device_id, range(1, count + 1))

    def set_channels(self, device_id: str, indexes: Iterable[int]) -> None:
        """Make the device's channels exactly those numbered ``indexes`` (a base with packs in slots 1 and 5, as
        another hub publishes it)."""
        device = self.devices[device_id]
        wanted = set(indexes)
        dropped = [channel.index for channel in device.channels if channel.index not in wanted]
        if dropped:
            device.channels = [channel for channel in device.channels if channel.index in wanted]
            self._retire_writers()
            for index in dropped:
                self._notify((device_id, index), _REMOVED)
        have = {channel.index for channel in device.channels}
        for index in sorted(wanted):
            if index not in have:
                device.channels.append(self._name(device_id, Channel(index=index)))
                self._notify((device_id, index), _ADDED)
        device.channels.sort(key=lambda channel: channel.index)

    def update_device(self, device_id: str, fields: Mapping[str, Any]) -> None:
        """Merge device fields; subscribers hear of those whose value changed."""
        device = self.devices.get(device_id)
        if device is None:
            return
        changed = _merge(field_values(device), fields, DEVICE_FIELDS, "device")
        device.last_seen = datetime.now(UTC)
        if changed:
            self._notify((device_id, None), changed)

    def update_channel(self, device_id: str, index: int, fields: Mapping[str, Any]) -> None:
        """Merge channel fields (the channel is made if new); subscribers hear of those whose value changed."""
        writer = self._writers.get((device_id, index)) or self.channel_writer(device_id, index)
        if writer is not None:
            writer.update(fields)

    def channel_writer(self, device_id: str, index: int) -> ChannelWriter | None:
        """The writer of one channel (made if new), None while the device is unknown. A writer stays valid
        until a device is added or removed (``ChannelWriter.live``); then ask again."""
        key = (device_id, index)
        writer = self._writers.get(key)
        if writer is None:
            found = self._find_channel(key, create=True)
            if found is None:
                return None
            channel, device = found
            writer = self._writers[key] = ChannelWriter(self, key, field_values(channel), field_values(device))
        return writer

    def channel_fields(self, device_id: str, index: int) -> Mapping[str, Any] | None:
        """A channel's live field values, not to be changed: for readers on a per-message path (MQTT meters)
        that would otherwise search for the channel and read the model through pydantic's attribute hook."""
        writer = self._writers.get((device_id, index))
        if writer is not None:
            return writer.values
        found = self._find_channel((device_id, index), create=False)
        return field_values(found[0]) if found is not None else None

    def _find_channel(self, key: ChangeKey, create: bool) -> tuple[Channel, Device] | None:
        device_id, index = key
        device = self.devices.get(device_id)
        if device is None or index is None:
            return None
        channel = device.channel(index)
        if channel is None:
            if not create:
                return None
            channel = self._name(device_id, Channel(index=index))
            device.channels.append(channel)
            device.channels.sort(key=lambda ch: ch.index)
            self._notify(key, _ADDED)
        return channel, device

    def _name(self, device_id: str, channel: Channel) -> Channel:
        extended = self.extended_name_of(device_id, channel.index)
        if extended is not None:
            channel.extended_name = extended
        return channel

    def _retire_writers(self) -> None:
        for writer in self._writers.values():
            writer.live = False
        self._writers.clear()

    def set_online(self, device_id: str, online: bool) -> None:
        device = self.devices.get(device_id)
        if device is None or device.online == online:
            return
        device.online = online
        if online:
            device.last_seen = datetime.now(UTC)
        self._notify((device_id, None), _ONLINE)
