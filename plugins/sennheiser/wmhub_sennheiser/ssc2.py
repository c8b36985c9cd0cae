"""SSCv2 without I/O: the Server-Sent Events framer, resource paths, and the map from resources to the hub model.

SSCv2 devices (Spectera, TCC M, EW-DX in "secure" mode) publish their state as REST resources and push
changes as SSE events whose ``data`` is a JSON object keyed by full resource path. Everything here is
fed literal bytes or decoded JSON, so it is tested from the reference's examples without sockets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from hub.model import MAX_CHANNELS
from hub.text import small_number
from wmhub_sennheiser.families import NameRule
from wmhub_sennheiser.values import device_json, finite_number, text

API_PREFIX: Final = "/api"
SUBSCRIPTIONS_PATH: Final = "/api/ssc/state/subscriptions"
IDENTITY_PATH: Final = "/api/device/identity"
SITE_PATH: Final = "/api/device/site"
STATE_PATH: Final = "/api/device/state"
SCHEMA_PATH: Final = "/api/ssc/schema"
MOBILES_PATH: Final = "/api/mts/paired/all"
RF_CHANNELS_PATH: Final = "/api/rf/channels"
AUDIO_OUTPUTS_PATH: Final = "/api/audio/outputs"
METERING_PATH: Final = "/api/audio/metering"

# The resources the driver maps to the hub model, in the order it subscribes to them.
MAPPED_PATHS: Final = (
    IDENTITY_PATH,
    SITE_PATH,
    STATE_PATH,
    MOBILES_PATH,
    RF_CHANNELS_PATH,
    AUDIO_OUTPUTS_PATH,
    METERING_PATH,
)
# Collections whose members arrive as a list from a GET and one by one (``{path}/{id}``) in events.
COLLECTION_IDS: Final = {MOBILES_PATH: "mtUid", RF_CHANNELS_PATH: "rfChannelId", AUDIO_OUTPUTS_PATH: "outputId"}

DEFAULT_MAX_EVENT_BYTES: Final = 256 * 1024
# Resources outside the map kept raw, at most: a device inventing new paths cannot grow the hub's memory.
MAX_RAW_RESOURCES: Final = 1024

# Value limits for writes. Sennheiser publishes none for SSCv2 (unverified): these follow the Spectera
# UHF tuning range and the short names a receiver display shows; the device has the last word.
DEVICE_NAME_MAX_CHARS: Final = 32
# A pack's name: at most 16 of these characters, spaces counted (companion-module-sennheiser-spectera src/utils.ts
# MOBILE_DEVICE_NAME_ALLOWED), not only spaces. The class escapes - / | and never doubles a punctuator, so the same
# text is a valid pattern in Python, JavaScript and an HTML ``pattern`` (families.MCP_NAME).
_MOBILE_NAME_CHARS: Final = r"A-Za-z0-9#*+,;\-\/<=\|>."
MOBILE_NAME: Final = NameRule(
    16,
    rf"[{_MOBILE_NAME_CHARS}](?:[ {_MOBILE_NAME_CHARS}]*[{_MOBILE_NAME_CHARS}])?",  # no space at either end
    "letters A-Z a-z, digits 0-9, space and - + = * / ; < > # | , ., no space at either end",
)
FREQUENCY_RANGE_KHZ: Final = (470_000, 694_000)
# Spectera tunes its RF channels in whole MHz: src/types.ts RfChannel.frequency "Step: 1000" (kHz). Its
# "Min: 10000, Max: 10000000" is the schema's bound, not the band: the range above stays the UHF band.
FREQUENCY_STEP_KHZ: Final = 1000
# A carrier wider than this is no reading (the hub model's bound).
MAX_BANDWIDTH_KHZ: Final = 100_000


def name_problem(name: object, max_chars: int) -> str | None:
    """Why ``name`` cannot be written (None if it can): 1..max_chars printable characters, no space at either
    end (the hub shows device text trimmed)."""
    if not isinstance(name, str) or not name.strip():
        return "a name must be a non-empty string"
    if name != name.strip():
        return f"{name!r} has a space at either end"
    if len(name) > max_chars:
        return f"{name!r} is longer than {max_chars} characters"
    if not name.isprintable():
        return f"{name!r} has characters that cannot be displayed"
    return None


def frequency_problem(khz: object) -> str | None:
    """Why ``khz`` cannot be tuned (None if it can)."""
    low, high = FREQUENCY_RANGE_KHZ
    if isinstance(khz, bool) or not isinstance(khz, int | float) or not low <= khz <= high:
        return f"frequency {khz!r} kHz is outside {low / 1000:g}..{high / 1000:g} MHz"
    if (khz - low) % FREQUENCY_STEP_KHZ:
        return f"frequency {khz / 1000:g} MHz is not on the {FREQUENCY_STEP_KHZ / 1000:g} MHz grid"
    return None


# --- Server-Sent Events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: ``event`` defaults to "message" as in the SSE specification."""

    event: str = "message"
    data: str = ""
    id: str | None = None

    def json(self) -> Any:
        """The event's data as JSON; ValueError if it is none (or nested too deeply)."""
        return device_json(self.data)


_LINE_END: Final = re.compile(rb"\r\n|\r|\n")


class SseEventTooLargeError(ValueError):
    """An event (or an unterminated line) grew past the parser's bound; the stream cannot be trusted."""


class SseParser:
    """Incremental SSE parser: feed it bytes as they arrive, it returns the events completed so far.

    Lines end in LF, CRLF or CR (a CR at the end of a chunk waits for the next one, which may start
    with its LF). A blank line dispatches; comments (``:``) are dropped; ``data`` lines are joined with
    LF. The bound covers the pending event plus the unterminated line, so a huge event is refused
    instead of buffered.
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.last_event_id: str | None = None
        self._buffer = bytearray()
        # how much of the buffer is known to hold no line end: a long line arriving in small pieces is then
        # searched once, not once for every piece (which is quadratic in its length)
        self._searched = 0
        self._pending_cr = False
        self._event_type = ""
        self._data: list[str] = []
        self._event_bytes = 0

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = False
        self._buffer += chunk
        events: list[SseEvent] = []
        while True:
            match = _LINE_END.search(self._buffer, self._searched)
            if match is None:
                self._searched = len(self._buffer)
                break
            if match.group() == b"\r" and match.end() == len(self._buffer):
                self._pending_cr = True  # maybe the first half of a CRLF split across chunks
            line = bytes(self._buffer[: match.start()])
            del self._buffer[: match.end()]
            self._searched = 0
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        if self._event_bytes + len(self._buffer) > self.max_event_bytes:
            raise SseEventTooLargeError(f"SSE event larger than {self.max_event_bytes} bytes")
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        self._event_bytes += len(line)
        if self._event_bytes > self.max_event_bytes:
            raise SseEventTooLargeError(f"SSE event larger than {self.max_event_bytes} bytes")
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        # "retry" and unknown fields are ignored: the driver has its own reconnect policy
        return None

    def _dispatch(self) -> SseEvent | None:
        event_type, data = self._event_type, self._data
        self._event_type, self._data, self._event_bytes = "", [], 0
        if not data:
            return None
        return SseEvent(event=event_type or "message", data="\n".join(data), id=self.last_event_id)


def encode_sse(data: Any, event: str | None = None, event_id: str | None = None) -> bytes:
    """Frame one event (the simulator's side); ``data`` is JSON-encoded."""
    lines = []
    if event:
        lines.append(f"event: {event}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in json.dumps(data, separators=(",", ":")).split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


# --- resource paths -----------------------------------------------------------------------------------


def normalise_path(path: str) -> str:
    """The one spelling of a resource path: ``/api/...``, no trailing slash.

    The TCC M OpenAPI examples subscribe to ``/device/site`` while Spectera sends ``/api/device/site``;
    both name the same resource.
    """
    path = "/" + path.strip().strip("/")
    if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
        return path
    return API_PREFIX + path if path != "/" else API_PREFIX


def path_covers(subscribed: str, resource: str) -> bool:
    """Whether a subscription to ``subscribed`` delivers changes of ``resource`` (itself or below it)."""
    subscribed, resource = normalise_path(subscribed), normalise_path(resource)
    return resource == subscribed or resource.startswith(subscribed + "/")


def schema_paths(schema: Mapping[str, Any]) -> list[str]:
    """The readable resource paths a device's OpenAPI document (``GET /api/ssc/schema``) declares.

    Templated paths (``/mts/paired/all/{mtUid}``) are cut at the first parameter: a subscription to
    the collection delivers its members.
    """
    found: list[str] = []
    for raw_path, operations in (schema.get("paths") or {}).items():
        if not isinstance(operations, Mapping) or "get" not in operations:
            continue
        path = normalise_path(str(raw_path).split("{", 1)[0])
        if path.startswith(SUBSCRIPTIONS_PATH) or path in (SCHEMA_PATH, API_PREFIX) or path in found:
            continue
        found.append(path)
    return found


def subscription_paths(available: Iterable[str] | None) -> list[str]:
    """What to subscribe to: the mapped resources the device has, then everything else it has (kept raw).

    ``available`` is None when the device serves no schema; then the documented resources are tried.
    """
    if available is None:
        return list(MAPPED_PATHS)
    available = list(available)
    mapped = [path for path in MAPPED_PATHS if any(path_covers(path, other) for other in available)]
    extra = [path for path in available if not any(path_covers(chosen, path) for chosen in mapped)]
    # drop paths covered by a shorter one already in the list, so each resource arrives once
    extra = [path for path in extra if not any(o != path and path_covers(o, path) for o in extra)]
    return mapped + extra


# --- the map to the hub model -------------------------------------------------------------------------

# Spectera mobile-device ``state`` values that mean the transmitter is not on air. Spectera's own client
# names the states Connected, Disconnected, Syncing, Sleeping and Updating (companion-module-sennheiser-spectera
# src/types.ts ``MtState``): a sleeping pack is not on air. The other spellings are accepted liberally for
# devices whose values are not published; anything else non-empty counts as present.
ABSENT_STATES: Final = frozenset(
    {
        "off",
        "offline",
        "disconnected",
        "notconnected",
        "not_connected",
        "unreachable",
        "absent",
        "unpaired",
        "sleep",
        "sleeping",
    }
)
# Spectera lists a freshly paired, still syncing device with this serial; its own client makes nothing of
# it (companion-module-sennheiser-spectera src/api.ts: "Skip devices without a real serial number").
PLACEHOLDER_SERIAL: Final = "0000000000"
# Spectera meters per audio interface (src/types.ts ``AudioLevels``: ``{aoIpIn: {peak: [...], rms: [...]},
# ..., updateCounter}``, values in dBFS, compared with a dBFS threshold in src/feedbacks.ts). A pack's audio
# leaves on the output that carries its mic audio link; the output's index in these arrays is its outputId
# (inferred from the 1-32 channel numbering of the client's level feedback, unverified). The first
# interface holding a value for that index wins.
OUTPUT_INTERFACES: Final = ("aoIpOut", "madi1Out", "madi2Out")
# A peak at or above this counts as clipping (no published threshold; unverified).
CLIP_DBFS: Final = -1.0


@dataclass
class Changes:
    """What one resource update changed, in hub-model terms."""

    device: dict[str, Any] = field(default_factory=dict)
    channels: dict[int, dict[str, Any]] = field(default_factory=dict)
    identity: dict[str, Any] | None = None
    new_channel_count: int | None = None

    def channel(self, index: int) -> dict[str, Any]:
        return self.channels.setdefault(index, {})

    def __bool__(self) -> bool:
        return bool(self.device or self.channels or self.identity is not None or self.new_channel_count)

    def merge(self, part: Changes) -> None:
        """Add a later update's changes: its values win."""
        self.device.update(part.device)
        for index, fields in part.channels.items():
            self.channel(index).update(fields)
        if part.identity is not None:
            self.identity = part.identity
        if part.new_channel_count:
            self.new_channel_count = part.new_channel_count


@dataclass
class ChannelNumbers:
    """Which hub channel each paired mobile device (by ``mtUid``) is on: a channel stays with its transmitter.

    Spectera numbers nothing a channel could follow but the pairing itself (``mtUid``; its own client keys a
    pack by serial, companion-module-sennheiser-spectera src/utils.ts getMobileDeviceChoices), so the numbers
    are the hub's: the packs first seen in ``mtUid`` order, a pack paired later on the lowest free channel.
    An unpaired pack's channel stays, empty, and is the next one free. The count never shrinks. The driver
    keeps them with the hub (``DeviceSink.remember``, :meth:`memory`), so a restarted hub numbers as before.
    """

    of: dict[str, int] = field(default_factory=dict)
    count: int = 0
    # counts the changes, so the driver keeps the numbers again only when they changed
    version: int = field(default=0, compare=False)

    def number(self, key: str) -> int:
        if key not in self.of:
            taken = set(self.of.values())
            self.of[key] = next(index for index in range(1, self.count + 2) if index not in taken)
            self.count = max(self.count, self.of[key])
            self.version += 1
        return self.of[key]

    def free(self, key: str) -> int | None:
        """Forget ``key`` (unpaired); the channel it had, if any."""
        index = self.of.pop(key, None)
        if index is not None:
            self.version += 1
        return index

    def memory(self) -> dict[str, Any]:
        """What the driver keeps with the hub: ``{"channels": {mtUid: channel}, "count": n}``."""
        return {"channels": dict(self.of), "count": self.count}

    @classmethod
    def from_memory(cls, kept: Any) -> ChannelNumbers:
        """The numbers :meth:`memory` gave; ``None`` (nothing kept) numbers afresh. Raise ValueError saying what
        is wrong with anything else (a row edited by hand, another version's shape)."""
        if kept is None:
            return cls()
        channels = kept.get("channels") if isinstance(kept, Mapping) else None
        count = kept.get("count") if isinstance(kept, Mapping) else None
        if not isinstance(channels, Mapping) or isinstance(count, bool) or not isinstance(count, int):
            raise ValueError('not {"channels": {mtUid: channel}, "count": n}')
        if not 0 <= count <= MAX_CHANNELS:
            raise ValueError(f"a count of {count} channels, not 0 to {MAX_CHANNELS}")
        numbers = list(channels.values())
        if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= count for n in numbers):
            raise ValueError(f"a channel that is no whole number from 1 to its count {count}")
        if len(set(numbers)) != len(numbers):
            raise ValueError("two transmitters on one channel")
        return cls(of={str(key): n for key, n in channels.items()}, count=count)


def _sort_key(uid: Any) -> tuple[bool, float, str]:
    number = finite_number(uid)
    return (number is None, number or 0.0, str(uid))


def _reading(value: Any, high: int | None = None) -> int | None:
    """A whole-number reading up to ``high``; None for none. Spectera sends -1 when it has no reading (its
    own client shows batteryFillLevel and batteryRuntime -1 as "Off": companion-module-sennheiser-spectera
    src/state_maps.ts, src/utils.ts formatBatteryRuntimeMinutes), so no negative value is read as 0."""
    number = finite_number(value)
    if number is None or number < 0:
        return None
    return min(high, round(number)) if high is not None else round(number)


# Spectera's link quality runs 0..4 (companion-module-sennheiser-spectera src/feedbacks.ts: "Mic LQI Threshold
# (0-4)"); shown as 0, 25, ... 100 %.
LQI_STEPS: Final = 4


def _lqi_percent(value: Any) -> int | None:
    steps = _reading(value, LQI_STEPS)
    return None if steps is None else steps * 100 // LQI_STEPS


def _antenna(value: Any) -> str | None:
    """Spectera's dominant antenna port ("a".."d", src/types.ts AntennaPortId) as the hub names antennas ("A");
    "NotAvailable" is none (its own client shows it as "N/A": src/state_maps.ts)."""
    if not isinstance(value, str) or not value or value == "NotAvailable":
        return None
    return value.upper()


def _link_id(value: Any) -> str | None:
    """An audio link id as text; None for none (Spectera's client treats ids below 0 as no link)."""
    number = finite_number(value)
    return str(int(number)) if number is not None and number >= 0 and number == int(number) else None


def _at(values: Any, position: int) -> float | None:
    return finite_number(values[position]) if isinstance(values, list) and position < len(values) else None


def _severity_warning(interference: Any) -> str | None:
    severity = interference.get("severity") if isinstance(interference, Mapping) else interference
    if severity in (None, 0, False) or str(severity).lower() in ("none", "ok", "no", "0", ""):
        return None
    return f"interference {str(severity).lower()}"


class ResourceMap:
    """The device's resources as last reported, and their translation into hub-model fields.

    Channels are the paired mobile devices (mics and bodypacks), numbered by ``numbers``
    (:class:`ChannelNumbers`), which the driver keeps across its connections to the device. A full list of a
    collection (a GET) is the whole collection: members it lacks were deleted while nobody listened. Resources
    this map does not understand are kept in :attr:`raw` under their normalised path, the first
    ``MAX_RAW_RESOURCES`` of them; further new paths are dropped.
    """

    def __init__(self, numbers: ChannelNumbers | None = None) -> None:
        self.raw: dict[str, Any] = {}
        self.site: dict[str, Any] = {}
        self.numbers = numbers if numbers is not None else ChannelNumbers()
        self._mobiles: dict[str, dict[str, Any]] = {}
        self._rf_khz: dict[str, float] = {}
        self._rf_bandwidth_khz: dict[str, float] = {}  # rfChannelId -> bandwidthMode (6000, 8000, 10000)
        self._device_warnings: list[str] = []
        self._outputs: dict[str, dict[str, Any]] = {}  # outputId -> the output's resource
        self._levels: dict[str, Mapping[str, Any]] = {}  # interface ("aoIpOut") -> {"peak": [...], "rms": [...]}

    @property
    def channel_count(self) -> int:
        return self.numbers.count

    def _paired(self) -> list[tuple[str, int]]:
        """(mtUid, channel) of each paired mobile device this connection has heard of."""
        return [(key, index) for key, index in self.numbers.of.items() if key in self._mobiles]

    def apply_all(self, resources: Mapping[str, Any]) -> Changes:
        """Apply an event's (or a GET's) data: ``{path: value}``; merges the changes of every resource."""
        total = Changes()
        for path, value in resources.items():
            total.merge(self.apply(path, value))
        return total

    def apply(self, path: str, value: Any) -> Changes:
        path = normalise_path(path)
        changes = Changes()
        if path in COLLECTION_IDS and isinstance(value, list):
            id_field = COLLECTION_IDS[path]
            items = [item for item in value if isinstance(item, Mapping) and id_field in item]
            listed = {normalise_path(f"{path}/{item[id_field]}").rpartition("/")[2] for item in items}
            for gone in sorted(self._members(path) - listed, key=_sort_key):
                changes.merge(self.apply(f"{path}/{gone}", None))
            for item in sorted(items, key=lambda item: _sort_key(item[id_field])):
                changes.merge(self.apply(f"{path}/{item[id_field]}", item))
            return changes
        parent, _, leaf = path.rpartition("/")
        if parent == MOBILES_PATH:
            self._mobile(leaf, value, changes)
        elif parent == RF_CHANNELS_PATH:
            self._rf_channel(leaf, value, changes)
        elif parent == AUDIO_OUTPUTS_PATH:
            self._output(leaf, value, changes)
        elif path == IDENTITY_PATH and isinstance(value, Mapping):
            changes.identity = dict(value)
            if value.get("product"):
                changes.device["model"] = str(value["product"])
        elif path == SITE_PATH and isinstance(value, Mapping):
            self.site.update(value)
            if "deviceName" in value:
                changes.device["name"] = text(value["deviceName"])
        elif path == STATE_PATH and isinstance(value, Mapping):
            warnings = value.get("warnings")
            self._device_warnings = [str(w) for w in warnings] if isinstance(warnings, list) else []
            for key, index in self._paired():
                changes.channel(index)["warnings"] = self._warnings(key)
        elif path == METERING_PATH:
            self._metering(value, changes)
        else:
            if value is None:
                self.raw.pop(path, None)
            elif path in self.raw or len(self.raw) < MAX_RAW_RESOURCES:
                self.raw[path] = value
        return changes

    def mobile(self, index: int) -> dict[str, Any] | None:
        """The last reported resource of the mobile device on ``index`` (a copy); None if none is paired there."""
        return next((dict(self._mobiles[key]) for key, number in self._paired() if number == index), None)

    def rf_channel_khz(self, rf_channel_id: Any) -> float | None:
        return self._rf_khz.get(str(rf_channel_id))

    def _members(self, path: str) -> set[str]:
        """The ids of a collection's members known now."""
        if path == MOBILES_PATH:
            return set(self._mobiles) | set(self.numbers.of)
        return set(self._rf_khz if path == RF_CHANNELS_PATH else self._outputs)

    def _mobile(self, key: str, value: Any, changes: Changes) -> None:
        if value is None:  # deleted (unpaired): the channel stays, empty, until another pack takes it
            self._mobiles.pop(key, None)
            index = self.numbers.free(key)
            if index is not None:
                changes.channel(index).update(self._mobile_fields(key))
            return
        if not isinstance(value, Mapping):
            return
        # events may carry a partial object; merge into what is known
        self._mobiles[key] = {**self._mobiles.get(key, {}), **value}
        if key not in self.numbers.of and self._mobiles[key].get("serial") == PLACEHOLDER_SERIAL:
            return  # not a real pack (yet): no channel until it reports its serial
        count = self.numbers.count
        index = self.numbers.number(key)
        if self.numbers.count > count:
            changes.new_channel_count = self.numbers.count
        changes.channel(index).update(self._mobile_fields(key))

    def _mobile_fields(self, key: str) -> dict[str, Any]:
        """The channel of mobile device ``key``; all unknown, no transmitter, if it is not paired."""
        mobile = self._mobiles.get(key, {})
        state = mobile.get("state")
        present = bool(state) and str(state).lower() not in ABSENT_STATES
        rf_channel = str(mobile.get("rfChannelId"))
        khz = self._rf_khz.get(rf_channel)
        fields: dict[str, Any] = {
            "name": text(mobile.get("name")),
            "frequency_mhz": khz / 1000.0 if khz is not None else None,
            "rf_bandwidth_khz": self._rf_bandwidth_khz.get(rf_channel) if khz is not None else None,
            "tx_present": present,
            "tx_model": str(mobile["type"]) if mobile.get("type") else None,
            "tx_id": text(mobile.get("serial")),  # the paired pack's serial (spectera src/types.ts MobileDevice)
            "warnings": self._warnings(key),
        }
        rms, peak = self._audio_level(mobile)
        on_air = {
            "battery_percent": _reading(mobile.get("batteryFillLevel"), 100),
            "battery_runtime_min": _reading(mobile.get("batteryRuntime")),
            "rf_quality_percent": _lqi_percent(mobile.get("micLqi")),
            "rf_dbm": finite_number(mobile.get("rssi")),
            "antenna": _antenna(mobile.get("dominantAntenna")),
            "audio_dbfs": rms,
            "audio_peak": None if peak is None else peak >= CLIP_DBFS,
        }
        # a transmitter that is off reports stale battery and RF values: they are unknown now
        fields.update(on_air if present else dict.fromkeys(on_air))
        return fields

    def _warnings(self, key: str) -> list[str]:
        if key not in self._mobiles:
            return []  # an empty channel: nothing on it to warn about
        mobile = self._mobiles[key]
        warnings = list(self._device_warnings)
        if mobile.get("batteryLow") is True:
            warnings.append("battery low")
        interference = _severity_warning(mobile.get("interference"))
        if interference:
            warnings.append(interference)
        return warnings

    def _rf_channel(self, key: str, value: Any, changes: Changes) -> None:
        if value is None:
            self._rf_khz.pop(key, None)
            self._rf_bandwidth_khz.pop(key, None)
        elif isinstance(value, Mapping) and finite_number(value.get("frequency")) is not None:
            self._rf_khz[key] = float(value["frequency"])
            # the WMAS carrier's width (src/types.ts RfChannel.bandwidthMode, kHz: 6000, 8000, 10000)
            width = finite_number(value.get("bandwidthMode"))
            if width is not None and 0 < width <= MAX_BANDWIDTH_KHZ:
                self._rf_bandwidth_khz[key] = width
            elif "bandwidthMode" in value:
                self._rf_bandwidth_khz.pop(key, None)
        else:
            return
        for mobile_id, index in self._paired():
            if str(self._mobiles[mobile_id].get("rfChannelId")) == key:
                changes.channel(index).update(self._mobile_fields(mobile_id))

    def _output(self, key: str, value: Any, changes: Changes) -> None:
        if value is None:
            self._outputs.pop(key, None)
        elif isinstance(value, Mapping):
            self._outputs[key] = {**self._outputs.get(key, {}), **value}
        else:
            return
        self._audio_changed(changes)

    def _metering(self, value: Any, changes: Changes) -> None:
        if not isinstance(value, Mapping):
            self.raw[METERING_PATH] = value
            return
        # an event may carry some interfaces only: merge
        self._levels.update({name: level for name, level in value.items() if isinstance(level, Mapping)})
        self._audio_changed(changes)

    def _audio_changed(self, changes: Changes) -> None:
        for key, index in self._paired():
            fields = self._mobile_fields(key)
            changes.channel(index).update(audio_dbfs=fields["audio_dbfs"], audio_peak=fields["audio_peak"])

    def _audio_level(self, mobile: Mapping[str, Any]) -> tuple[float | None, float | None]:
        """(rms, peak) in dBFS of the output carrying this pack's mic audio link, if metered."""
        link = _link_id(mobile.get("micAudiolinkId"))
        output = next(
            (key for key, output in self._outputs.items() if link and _link_id(output.get("micAudiolinkId")) == link),
            None,
        )
        position = small_number(output) if output is not None else None
        if position is None:
            return None, None
        for name in OUTPUT_INTERFACES:
            level = self._levels.get(name, {})
            rms, peak = (_at(level.get(kind), position) for kind in ("rms", "peak"))
            if rms is not None or peak is not None:
                return rms, peak
        return None, None
