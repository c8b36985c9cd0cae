"""What the hub publishes on its MQTT topics (docs/mqtt.md), encoded: state, meters, availability.
The topic names are :mod:`hub.mqtt.topics`. Pure functions: no I/O.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson
from pydantic import ValidationError

from hub.model import MAX_CHANNELS, METER_FIELDS, Channel, Device

# Fixed order so meter payloads read the same every time.
METER_ORDER: Final = (
    "rf_dbm",
    "rf_quality_percent",
    "antenna",
    "audio_dbfs",
    "audio_peak",
    "rf_antennas",
    "audio_peak_dbfs",
)
assert frozenset(METER_ORDER) == METER_FIELDS, "METER_ORDER must list every meter field"

# Channel fields that make up the retained channel state: everything but the live meters.
_CHANNEL_STATE_EXCLUDE: Final = set(METER_FIELDS)
_DEVICE_STATE_EXCLUDE: Final = {"channels", "last_seen"}


def device_state(device: Device) -> dict[str, Any]:
    state = device.model_dump(exclude=_DEVICE_STATE_EXCLUDE)
    state["channel_count"] = len(device.channels)
    # the number of each channel: a driver may report one above the count it identified (a pack paired in slot 5
    # of a one-channel base), and a later run clears each of their topics by it (channel_indexes below)
    state["channel_indexes"] = [channel.index for channel in device.channels]
    return state


def device_summary(device: Device) -> dict[str, Any]:
    """A device in the hub's device list: its state without the capabilities (they are on its own topic)."""
    summary = device_state(device)
    del summary["capabilities"]
    return summary


# an entry of a device list carries the device's state fields; its channels are on their own topics
LISTED_DEVICE_KEYS: Final = frozenset(Device.model_fields) - {"channels", "online", "last_seen"}


def listed_device(entry: dict[str, Any]) -> Device:
    """One entry of a hub's device list, or a device's retained state (any hub's, so untrusted), as a device
    without channels, offline; ValidationError when it is none."""
    return Device.model_validate({key: entry[key] for key in LISTED_DEVICE_KEYS if key in entry})


def carried_entries(payload: bytes) -> dict[str, dict[str, Any]]:
    """The entries of this hub's previous device list that are devices, as this run lists one it has not
    heard from yet (a receiver down since before the start): offline, with the channel count and URL it had."""
    carried: dict[str, dict[str, Any]] = {}
    for entry in _list_entries(payload):
        try:
            device = listed_device(entry)
        except ValidationError:
            continue
        url = entry.get("url")
        carried[device.id] = {
            **device_summary(device),
            "channel_count": channel_count(entry),
            "channel_indexes": list(channel_indexes(entry)),
            "url": url if isinstance(url, str) else None,
        }
    return carried


def listed_devices(payload: bytes) -> dict[str, int]:
    """The devices in a hub's retained device list (``[{"id": …, "channel_count": …}, …]``, any hub's, so
    untrusted), each with its channel count; none from a payload that is not such a list. A count that is
    no whole number from 0 to MAX_CHANNELS is taken as 0 (unknown)."""
    return {str(entry["id"]): channel_count(entry) for entry in _list_entries(payload)}


def listed_channels(payload: bytes) -> dict[str, tuple[int, ...]]:
    """The devices in a hub's retained device list (untrusted, as for :func:`listed_devices`), each with the numbers
    of its channels (:func:`channel_indexes`): those whose topics that hub may have left retained."""
    return {str(entry["id"]): channel_indexes(entry) for entry in _list_entries(payload)}


def listed_online(payload: bytes) -> frozenset[str]:
    """The devices a hub's retained device list (untrusted, as for :func:`listed_devices`) says are online."""
    return frozenset(str(entry["id"]) for entry in _list_entries(payload) if entry.get("online") is True)


def _list_entries(payload: bytes) -> list[dict[str, Any]]:
    try:
        entries = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, dict) and "id" in entry]


def said_offline(device_state: bytes) -> bytes | None:
    """A device state (``…/devices/<id>``, retained) saying ``"online": false`` where it said true; None when it
    says so already or is no device state."""
    try:
        state = orjson.loads(device_state)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(state, dict) or state.get("online") is not True:
        return None
    return encode({**state, "online": False})


def hub_running(payload: bytes) -> bool | None:
    """Whether a hub's retained state (``{"state": "online"|"offline"}``, any hub's, so untrusted) says it
    runs; None for a payload that is no such state."""
    try:
        state = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(state, dict) or state.get("state") not in ("online", "offline"):
        return None
    return bool(state["state"] == "online")


@dataclass(frozen=True)
class RetainedConfig:
    """What a retained Home Assistant device config (any hub's, any version's, so untrusted) names: each
    component with its platform, those of them that are whole entities (more than their platform, which
    removes one), and the model of the device it was made for."""

    platforms: dict[str, str] = field(default_factory=dict)
    entities: frozenset[str] = frozenset()
    model: str | None = None


def retained_config(payload: bytes) -> RetainedConfig:
    """The components and model a retained device config names; none from a payload that is no config."""
    try:
        config = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return RetainedConfig()
    components = config.get("components") if isinstance(config, dict) else None
    if not isinstance(components, dict):
        return RetainedConfig()
    components = {
        str(key): component
        for key, component in components.items()
        if isinstance(component, dict) and isinstance(component.get("platform"), str)
    }
    device = config.get("device")
    model = device.get("model") if isinstance(device, dict) else None
    return RetainedConfig(
        platforms={key: component["platform"] for key, component in components.items()},
        entities=frozenset(key for key, component in components.items() if len(component) > 1),
        model=model if isinstance(model, str) else None,
    )


def channel_count(summary: Mapping[str, Any]) -> int:
    """The channel count of a device's published state or summary, 0 where it is missing or not one."""
    count = summary.get("channel_count")
    if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= MAX_CHANNELS:
        return count
    return 0


def channel_indexes(summary: Mapping[str, Any]) -> tuple[int, ...]:
    """The channel numbers of a device's published state or summary (any hub's, so untrusted), ascending, each
    once: those its ``channel_indexes`` lists that are whole numbers from 1 to MAX_CHANNELS (at most MAX_CHANNELS
    of them read); where it has no such list (an older hub published the count alone), 1 to its count."""
    listed = summary.get("channel_indexes")
    if not isinstance(listed, list):
        return tuple(range(1, channel_count(summary) + 1))
    return tuple(
        sorted(
            {
                index
                for index in listed[:MAX_CHANNELS]
                if isinstance(index, int) and not isinstance(index, bool) and 1 <= index <= MAX_CHANNELS
            }
        )
    )


def is_channel_state(payload: bytes, index: int) -> bool:
    """Whether a retained payload (anyone may have written it) is a state of channel ``index``, as
    :func:`channel_state` makes one."""
    try:
        state = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(state, dict) and state.get("index") == index and not isinstance(state.get("index"), bool)


def with_extended_name(channel_state: bytes, extended_name: str | None, at: datetime) -> bytes:
    """A channel state (one :func:`is_channel_state` took) with another extended name, given ``at``: its
    ``updated_at`` is the last change of any field, as in the state store."""
    return encode({**orjson.loads(channel_state), "extended_name": extended_name, "updated_at": at})


def channel_state(channel: Channel) -> dict[str, Any]:
    return channel.model_dump(exclude=_CHANNEL_STATE_EXCLUDE)


_METER_GETTER: Final = operator.itemgetter(*METER_ORDER)
# a tuple, not ``int | float``: isinstance with a union type is several times slower, and this runs per message
_NUMBER: Final = (int, float)


def meter_values(fields: Mapping[str, Any]) -> tuple[Any, ...]:
    """A channel's meters in METER_ORDER, from its field values (``hub.model.field_values``, or the state
    store's ``channel_fields``): one C call, where getattr would go through BaseModel's __getattr__ hook each time."""
    values: tuple[Any, ...] = _METER_GETTER(fields)
    return values


def meters_payload(values: tuple[Any, ...]) -> bytes:
    # values come from meter_values, in METER_ORDER: zip's strict check would cost a keyword parse per message
    return orjson.dumps(dict(zip(METER_ORDER, values)))  # noqa: B905


def meters_moved(before: tuple[Any, ...], now: tuple[Any, ...], threshold: float) -> bool:
    """True when a level moved more than ``threshold`` or anything else (antenna, clip, known/unknown) changed."""
    for old, new in zip(before, now):  # noqa: B905 - both from meter_values, and strict costs per message
        if old == new:
            continue
        if isinstance(old, _NUMBER) and isinstance(new, _NUMBER) and not isinstance(new, bool):
            if abs(new - old) > threshold:
                return True
        else:
            return True
    return False


def encode(value: Any) -> bytes:
    return orjson.dumps(value)


def availability_payload(online: bool) -> bytes:
    return b"online" if online else b"offline"


HUB_ONLINE: Final = b'{"state":"online"}'
HUB_OFFLINE: Final = b'{"state":"offline"}'
