"""EW-DX receivers (EM 2, EM 2 Dante, EM 4 Dante) over SSCv2: the family table and its map to the hub model.

Firmware 4 and later speaks SSCv2 ("secure mode"). Its resources are documented in the EW-DX OpenAPI
document, published as ``api_docs.json`` in bitfocus/companion-module-sennheiser-ewdx (commit a7b7243,
"EW-DX service API" version 1.7; cited below as "EW-DX OpenAPI"). Unlike Spectera, a receiver channel is
a fixed resource ``/api/channel/{channelId}`` (ids 0..3), its RF channel ``/api/rf/channels/{channelId}``
and its paired transmitter ``/api/transmitters/{channelId}``; hub channel N is channelId N - 1. Pure: no I/O.

Where the document is vague, values are accepted liberally and the comment says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hub.model import CommandKind, NotSupportedError
from hub.text import small_number
from wmhub_sennheiser.families import (
    EWDX_BANDS,
    TX_ABSENT,
    Fields,
    NameRule,
    Range,
    _bool,
    _count,
    _khz_to_mhz,
    _mute,
    _on_off,
    _percent,
    _strings,
    _text,
    _tx_lock,
    check_band,
)
from wmhub_sennheiser.ssc2 import IDENTITY_PATH, SITE_PATH, STATE_PATH, Changes, normalise_path
from wmhub_sennheiser.values import finite_number

FIRMWARE_PATH: Final = "/api/firmware/update/state"
RF_PATH: Final = "/api/rf"
ENCRYPTION_PATH: Final = "/api/rf/encryption"
TRANSMITTERS_PATH: Final = "/api/transmitters"
DEVICE_IDENTIFY_PATH: Final = "/api/device/identification"

# Device resources read once and subscribed to (the EW-DX OpenAPI paths; the Companion client adds the same).
DEVICE_PATHS: Final = (IDENTITY_PATH, SITE_PATH, STATE_PATH, FIRMWARE_PATH, RF_PATH, ENCRYPTION_PATH)
# Per receiver channel, ``{n}`` = channelId (0-based).
CHANNEL_PATHS: Final = (
    "/api/channel/{n}",
    "/api/channel/{n}/warnings",
    "/api/channel/{n}/signalStrengthIndicator",
    "/api/channel/{n}/signalQualityIndicator",
    "/api/channel/{n}/diversityIndicator",
    "/api/channel/{n}/level",
    "/api/rf/channels/{n}",
    "/api/transmitters/{n}",
    "/api/transmitters/{n}/battery",
    "/api/transmitters/{n}/warnings",
)
# The OpenAPI's product enum is EWDX2CHS, EWDX2CHDS, EWDX4CHDS; channelId runs 0..3.
MAX_CHANNELS: Final = 4


def channel_count_of(product: str | None) -> int | None:
    """2 or 4 from the product code ("EWDX4CHDS"); None when the product does not say (then probe)."""
    found = re.search(r"(\d)\s*CH", product or "", re.IGNORECASE)
    return min(int(found.group(1)), MAX_CHANNELS) if found else None


def subscription_paths(channel_count: int) -> list[str]:
    """Concrete paths only: the document has no GET on ``/api/channel`` or ``/api/rf/channels`` themselves,
    so the collection-style subscription used for Spectera may not be accepted (unverified either way)."""
    return list(DEVICE_PATHS) + [path.format(n=n) for n in range(channel_count) for path in CHANNEL_PATHS]


# --- the table: resource (``{n}`` = channelId) -> converter of its JSON value to hub fields ------------


def _value(convert: Callable[[Any], Any], name: str) -> Callable[[Any], Fields]:
    """The indicator resources are ``{"value": x}``; a bare number is accepted as well (liberal)."""

    def fields(value: Any) -> Fields:
        return {name: convert(value.get("value") if isinstance(value, Mapping) else value)}

    return fields


def _channel(value: Any) -> Fields:
    if not isinstance(value, Mapping):
        return {}
    # a property the receiver has not reported leaves its field as it was
    known = {"name": ("name", _text), "mute": ("muted", _bool), "gain": ("gain_db", finite_number)}
    return {field: convert(value[key]) for key, (field, convert) in known.items() if key in value}


def _antenna(value: Any) -> str | None:
    # diversityIndicator 0..2; 1 = A, 2 = B as over SSCv1 (/m/rxN/divi); 0 taken as no antenna (unverified)
    number = finite_number(value)
    return {1.0: "A", 2.0: "B"}.get(number) if number is not None else None


def _preset(presets: Any) -> str | None:
    """``presets {type: Factory|User|None, bank, channel}`` as ``bank.channel`` (the numbering is the
    device's: the document bounds factory banks to 0..0 and says nothing about its base, unverified)."""
    if not isinstance(presets, Mapping) or presets.get("type") not in ("Factory", "User"):
        return None
    bank, channel = finite_number(presets.get("bank")), finite_number(presets.get("channel"))
    return f"{int(bank)}.{int(channel)}" if bank is not None and channel is not None else None


def _rf_channel(value: Any) -> Fields:
    if not isinstance(value, Mapping):
        return {}
    fields: Fields = {}
    if "frequency" in value:
        fields["frequency_mhz"] = _khz_to_mhz(value["frequency"])
    if "presets" in value:
        fields["group_channel"] = _preset(value["presets"])
    return fields


def _transmitter(value: Any) -> Fields:
    """A linked transmitter reports at least its ``type``; 422, null or an object without a type: none."""
    if not isinstance(value, Mapping) or not value.get("type"):
        return {**TX_ABSENT, "tx_present": False}
    fields: Fields = {"tx_present": True, "tx_model": _text(value["type"])}
    known = {"mute": ("tx_muted", _bool), "lock": ("tx_locked", _tx_lock), "trim": ("tx_offset_db", finite_number)}
    fields.update({field: convert(value[key]) for key, (field, convert) in known.items() if key in value})
    return fields


def _battery(value: Any) -> Fields:
    if not isinstance(value, Mapping):
        return {"battery_percent": None, "battery_runtime_min": None, "battery_type": None}
    # type Battery, PrimaryCell or NoBattery: without a battery the gauge and lifetime measure none (a
    # transmitter on external power), so they are no reading, not an empty battery
    has_battery = value.get("type") != "NoBattery"
    return {
        "battery_percent": _percent(value.get("gauge")) if has_battery else None,
        "battery_runtime_min": _count(value.get("lifetime")) if has_battery else None,  # "Lifetime in minutes"
        "battery_type": _text(value.get("type")),
    }


# Warnings come from three resources per channel and the device; the hub shows their union.
_RX_WARNINGS: Final = "/api/channel/{n}/warnings"
_TX_WARNINGS: Final = "/api/transmitters/{n}/warnings"

CHANNEL_TABLE: Final[Mapping[str, Callable[[Any], Fields]]] = {
    "/api/channel/{n}": _channel,
    "/api/channel/{n}/signalStrengthIndicator": _value(finite_number, "rf_dbm"),  # dBm, -107..0
    "/api/channel/{n}/signalQualityIndicator": _value(_percent, "rf_quality_percent"),  # percent
    "/api/channel/{n}/diversityIndicator": _value(_antenna, "antenna"),
    "/api/channel/{n}/level": _value(finite_number, "audio_dbfs"),  # dBFS, -138.5..0
    "/api/rf/channels/{n}": _rf_channel,
    "/api/transmitters/{n}": _transmitter,
    "/api/transmitters/{n}/battery": _battery,
}
_PATTERNS: Final = [
    (re.compile(re.escape(template).replace(re.escape("{n}"), r"(\d+)") + "$"), template)
    for template in (*CHANNEL_TABLE, _RX_WARNINGS, _TX_WARNINGS)
]


def _ranges(value: Any) -> list[tuple[int, int]]:
    """``ranges [{start, end, stepSize}]`` in kHz (the document's example spells ``stepsize``; the step is
    not needed: the 25 kHz grid is checked on its own). Entries without numeric bounds are skipped."""
    found = []
    for item in value if isinstance(value, list) else []:
        start, end = (finite_number(item.get(key)) if isinstance(item, Mapping) else None for key in ("start", "end"))
        if start is not None and end is not None:
            found.append((int(start), int(end)))
    return found


class EwdxResourceMap:
    """An EW-DX receiver's resources as last reported, translated into hub-model fields."""

    def __init__(self, channel_count: int) -> None:
        self.channel_count = channel_count
        self.raw: dict[str, Any] = {}
        self.site: dict[str, Any] = {}
        self.channels: dict[int, Fields] = {index: {} for index in range(1, channel_count + 1)}
        self.firmware: str | None = None
        self.band: list[tuple[int, int]] = []  # the tuning ranges of /api/rf, kHz
        self._warnings: dict[tuple[int, str], list[str]] = {}  # (hub channel or 0, source) -> warnings
        self._last: dict[str, dict[str, Any]] = {}  # path -> the resource as last reported (merged)

    def apply_all(self, resources: Mapping[str, Any]) -> Changes:
        total = Changes()
        for path, value in resources.items():
            total.merge(self.apply(path, value))
        return total

    def apply(self, path: str, value: Any) -> Changes:
        path = normalise_path(path)
        changes = Changes()
        if path == TRANSMITTERS_PATH and isinstance(value, list):
            # the list form: [{"id": n, "transmitter": {...}}] (x-sennheiser-sscv2-subresource of each member)
            for item in value:
                if isinstance(item, Mapping) and finite_number(item.get("id")) is not None:
                    changes.merge(self.apply(f"{TRANSMITTERS_PATH}/{int(item['id'])}", item.get("transmitter")))
            return changes
        for pattern, template in _PATTERNS:
            match = pattern.match(path)
            if match is None:
                continue
            number = small_number(match.group(1))
            if number is None or number + 1 not in self.channels:
                return changes  # a channel this model does not have
            index = number + 1
            if template in (_RX_WARNINGS, _TX_WARNINGS):
                self._warnings[(index, template)] = _strings(value)
            else:
                # an event may carry only what changed (the document does not say): merge into the last
                # value of the resource; null or {} ends it (a transmitter unlinked)
                if isinstance(value, Mapping) and value:
                    value = self._last[path] = {**self._last.get(path, {}), **value}
                else:
                    self._last.pop(path, None)
                fields = CHANNEL_TABLE[template](value)
                if template == "/api/transmitters/{n}" and fields.get("tx_present") is False:
                    self._warnings[(index, _TX_WARNINGS)] = []  # no transmitter, no transmitter warnings
                changes.channel(index).update(fields)
            changes.channel(index)["warnings"] = self._warnings_of(index)
            self.channels[index].update(changes.channel(index))
            return changes
        self._device(path, value, changes)
        return changes

    def _device(self, path: str, value: Any, changes: Changes) -> None:
        facts = value if isinstance(value, Mapping) else {}
        if path == IDENTITY_PATH and facts:
            changes.identity = dict(facts)
            if facts.get("product"):
                changes.device["model"] = str(facts["product"])
        elif path == SITE_PATH and facts:
            self.site.update(facts)
            if "deviceName" in facts:
                changes.device["name"] = _text(facts["deviceName"])
        elif path == STATE_PATH and facts:
            self._warnings[(0, STATE_PATH)] = _strings(facts.get("warnings"))
            for index in self.channels:
                changes.channel(index)["warnings"] = self._warnings_of(index)
        elif path == FIRMWARE_PATH and facts.get("deviceVersion"):
            self.firmware = str(facts["deviceVersion"])
            changes.device["firmware"] = self.firmware
        elif path == RF_PATH and facts:
            # its own ranges; without them, those of its code (EWDX_BANDS), as the SSCv1 driver has only that
            self.band = _ranges(facts.get("ranges")) or list(EWDX_BANDS.get(str(facts.get("code")), ()))
            if "code" in facts:
                changes.device["rf_band"] = _text(facts["code"])  # the country frequency code, e.g. "Q1-9"
        elif path == ENCRYPTION_PATH and "enabled" in facts:
            changes.device["encryption_mode"] = _on_off(facts["enabled"])
        elif value is None:
            self.raw.pop(path, None)
        else:
            self.raw[path] = value

    def _warnings_of(self, index: int) -> list[str]:
        sources = ((0, STATE_PATH), (index, _RX_WARNINGS), (index, _TX_WARNINGS))
        return [warning for source in sources for warning in self._warnings.get(source, [])]


# --- controls ---------------------------------------------------------------------------------------

# PUT /api/channel/{id} name: maxLength 8, pattern ^[\x20#*+,;\x2D\x2F<=|>0-9A-Z]*$ (EW-DX OpenAPI)
# (no space at either end: families.PRINTABLE_ASCII says why)
CHANNEL_NAME: Final = NameRule(
    8,
    r"(?:[#*+,;\-\/<=\|>0-9A-Z](?:[ #*+,;\-\/<=\|>0-9A-Z]*[#*+,;\-\/<=\|>0-9A-Z])?)?",
    "capital letters, digits, space and # * + , ; - / < = | >, no space at either end",
)
# gain: -3..+42 dB in steps of 3 (EW-DX OpenAPI)
GAIN: Final = Range(-3, 42, 3, "dB")
# frequency: kHz, multipleOf 25; the bands (code Q1-9 .. Y1-3) span 470.2 MHz to the 1.8 GHz band. The
# declared limit is that span; a receiver's own /api/rf ranges narrow it (channel_write).
FREQUENCY: Final = Range(470.0, 1800.0, 0.025, "MHz", 1000)


@dataclass(frozen=True)
class Write:
    """One PUT: where, what, and the channel field (and value) that shows the device took it."""

    path: str
    body: dict[str, Any]
    field: str | None = None  # None: a momentary action; the 2xx is the confirmation
    expected: Any = None


def channel_write(kind: CommandKind, channel_id: int, value: Any, band: Sequence[tuple[int, int]] = ()) -> Write:
    """The request for a channel command (``value`` already resolved from "toggle"); a frequency must lie
    in one of the receiver's ``band`` ranges (kHz) when it reported them."""
    if kind is CommandKind.NAME:
        name = CHANNEL_NAME.check(value)
        return Write(f"/api/channel/{channel_id}", {"name": name}, "name", name)
    if kind is CommandKind.MUTE:
        muted = _mute(value)
        return Write(f"/api/channel/{channel_id}", {"mute": muted}, "muted", muted)
    if kind is CommandKind.GAIN:
        gain = GAIN.check(value)
        return Write(f"/api/channel/{channel_id}", {"gain": gain}, "gain_db", gain)
    if kind is CommandKind.FREQUENCY:
        khz = check_band(FREQUENCY.check(value), band)
        return Write(f"/api/rf/channels/{channel_id}/frequency", {"frequency": khz}, "frequency_mhz", khz / 1000)
    if kind is CommandKind.IDENTIFY:
        return Write(f"/api/channel/{channel_id}/identify", {"enabled": True})
    raise NotSupportedError(f"an EW-DX receiver over SSCv2 has no {kind.value} control")


DEVICE_IDENTIFY: Final = Write(DEVICE_IDENTIFY_PATH, {"visual": True})
