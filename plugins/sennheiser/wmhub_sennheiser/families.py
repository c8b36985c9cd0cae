"""SSCv1 product families: which addresses to read, how their values map to hub fields, control limits.

Each family is a table: address patterns (``{n}`` is the channel number) with a converter to hub fields,
the addresses to subscribe to on change and to meter periodically, and the controls with their limits.
Pure: no I/O. Facts marked unverified in the protocol reference are accepted liberally and say so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from hub.model import CommandKind, InvalidValueError
from hub.text import small_number
from wmhub_sennheiser.ssc1 import Address, ErrorKind, SscError, address
from wmhub_sennheiser.values import finite_number

Fields = dict[str, Any]
# Converted fields by channel number; 0 holds device-level fields.
Updates = dict[int, Fields]
DEVICE: Final = 0

# What a channel shows when its transmitter is off or out of range: nothing about the transmitter is known.
TX_ABSENT: Final[Mapping[str, Any]] = {
    "tx_present": False,
    "battery_percent": None,
    "battery_runtime_min": None,
    "battery_bars": None,
    "battery_type": None,
    "tx_model": None,
    "tx_muted": None,
    "tx_locked": None,
    "tx_offset_db": None,
    "battery_health_percent": None,
    "battery_cycles": None,
}
# Warning lists are reported per source (receiver, transmitter); the hub sees their union.
RX_WARNINGS: Final = "+rx_warnings"
TX_WARNINGS: Final = "+tx_warnings"


def tx_absent() -> Fields:
    return {**TX_ABSENT, TX_WARNINGS: []}


def _percent(value: Any) -> int | None:
    number = finite_number(value)
    return None if number is None else max(0, min(round(number), 100))


def _strings(value: Any) -> list[str]:
    """The texts of a list (warnings): a number, null or object in it is no warning a person could read."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


Converter = Callable[[Any], Fields]


def _field(name: str, convert: Callable[[Any], Any]) -> Converter:
    return lambda value: {name: convert(value)}


def _on_off(value: Any) -> str | None:
    # a switch the sources type as bool; accept a device that answers "on"/"off" text as well (unverified)
    if isinstance(value, bool):
        return "on" if value else "off"
    return value.lower() if isinstance(value, str) and value.lower() in ("on", "off") else None


def _first_text(value: Any) -> str | None:
    """A string, or the first of a per-interface list (``["00:1b:66:aa:bb:cc", null]``)."""
    if isinstance(value, list):
        return next((item for item in value if isinstance(item, str) and item), None)
    return value or None if isinstance(value, str) else None


def _khz_to_mhz(value: Any) -> float | None:
    number = finite_number(value)
    return None if number is None else number / 1000


# --- EW-DX ------------------------------------------------------------------------------------------


def _ewdx_rsqi(value: Any) -> Fields:
    quality = _percent(value)
    if quality == 0:
        return {**tx_absent(), "rf_quality_percent": 0}  # rsqi 0 = no link
    return {"rf_quality_percent": quality, "tx_present": None if quality is None else True}


def _ewdx_divi(value: Any) -> Fields:
    return {"antenna": {1: "A", 2: "B"}.get(value) if isinstance(value, int) else None}


def _with_tx(converter: Converter) -> Converter:
    """A value from a mates/txN leaf (not an error) means the transmitter is there."""
    return lambda value: {**converter(value), "tx_present": True}


def _tx_lock(value: Any) -> str | None:
    # the transmitter's auto-lock locks every control at once. EW-DX mates/txN/lock is a bool; the EM 6000's
    # skx/autolock is the text "On" or "Off", and "" while no transmitter reports (D6000 guide 8.28)
    if isinstance(value, bool):
        return "all" if value else "none"
    if not isinstance(value, str):
        return None
    word = value.strip()
    return {"on": "all", "off": "none"}.get(word.lower(), word or None)


def _count(value: Any) -> int | None:
    number = finite_number(value)
    return None if number is None or number < 0 else int(number)


# --- Digital 6000 -----------------------------------------------------------------------------------

_D6000_BATTERY_STATES: Final = {"100%": 100, "70%": 70, "30%": 30}


def _em6000_battery(value: Any) -> Fields:
    """``[State, Time]``: ``["70%", "2:10"]``; ``[]`` means no transmitter."""
    if not isinstance(value, list) or not value:
        return tx_absent()
    state = value[0] if isinstance(value[0], str) else ""
    runtime = None
    if len(value) > 1 and isinstance(value[1], str):
        hours, _, minutes = value[1].strip().partition(":")
        whole, part = small_number(hours), small_number(minutes, digits=2)
        # "-:--" = unknown
        runtime = whole * 60 + part if whole is not None and part is not None and len(minutes) == 2 else None
    # "low" has no percentage; the LowBattery warning says it
    return {"tx_present": True, "battery_percent": _D6000_BATTERY_STATES.get(state), "battery_runtime_min": runtime}


def _em6000_tx_type(value: Any) -> Fields:
    """``[type, low, high]``."""
    if isinstance(value, list) and value:
        return {"tx_model": str(value[0])}
    return {"tx_model": _text(value)}


def _bank_channel(value: Any) -> Fields:
    """``[bank, channel]`` (``/rxN/active_bank_channel``): the hub's ``bank.channel``."""
    if isinstance(value, list) and len(value) >= 2 and all(isinstance(v, int | str) for v in value[:2]):
        return {"group_channel": f"{value[0]}.{value[1]}"}
    return {"group_channel": None}


def _rf_dbm(value: Any) -> float | None:
    number = finite_number(value)
    return None if number is None else (number - 255) / 2


def _af_dbfs(value: Any) -> float | None:
    number = finite_number(value)
    return None if number is None else (number + 1) / 2 - 128


def _flag(value: Any) -> bool | None:
    number = finite_number(value)
    return None if number is None else number != 0


METER_ROW: Final = ("RF1", "RF1_PEAK", "RF2", "RF2_PEAK", "DIV1", "DIV2", "LQI", "AF", "AF_PEAK")


def em6000_meter_fields(row: list[Any]) -> Fields:
    """One ``mm`` row ``[RF1, RF1_PEAK, RF2, RF2_PEAK, DIV1, DIV2, LQI, AF, AF_PEAK]`` (D6000 guide p.32).

    RF dBm = (v - 255) / 2, AF dBFS = (v + 1) / 2 - 128, LQI 0..255 with % = 100 * v / 255. The peak columns
    are on/off flags, not levels (companion-module-sennheiser-digital6000 src/parseResponse.js reads them as
    booleans, src/feedbacks.js shows them as "Audio Peak" and "RF Peak"): AF_PEAK is the channel's clip; the
    RF peak flags have no hub field (the RFPeak warning of ``active_warnings`` says it).
    """
    values = dict(zip(METER_ROW, row, strict=False))
    per_antenna = {name: _rf_dbm(values.get(name)) for name in ("RF1", "RF2")}
    rf_antennas = {name: dbm for name, dbm in per_antenna.items() if dbm is not None}
    antennas = "".join(name for name, key in (("A", "DIV1"), ("B", "DIV2")) if values.get(key))
    lqi = finite_number(values.get("LQI"))
    return {
        "rf_dbm": max(rf_antennas.values()) if rf_antennas else None,
        "rf_antennas": rf_antennas or None,
        "antenna": antennas or None,
        "rf_quality_percent": round(100 * max(0.0, min(lqi, 255.0)) / 255) if lqi is not None else None,
        "audio_dbfs": _af_dbfs(values.get("AF")),
        "audio_peak": _flag(values.get("AF_PEAK")),
    }


# --- SpeechLine DW ----------------------------------------------------------------------------------


def _sldw_runtime(value: Any) -> int | None:
    number = finite_number(value)  # seconds on SL DW, e.g. 36240
    return None if number is None or number < 0 else int(number) // 60


# The largest SL DW receiver (SL MCR 4 DW) has four channels; the driver drops updates for channels a
# device does not have.
_SLDW_MAX_CHANNELS: Final = 4


def _sldw_active(value: Any) -> Updates:
    """``/mates/active``: ``["tx1"]`` while the receiver has a link with its transmitter, ``[]`` without
    (SLDW guide TI 1094 8.52; Specialelektronik/Sennheiser SldwTxHandler.cs reads a non-empty list as active)."""
    if not isinstance(value, list):
        return {}
    linked = {int(m.group(1)) for item in value if isinstance(item, str) and (m := re.fullmatch(r"tx(\d+)", item))}
    return {n: {"tx_present": True} if n in linked else tx_absent() for n in range(1, _SLDW_MAX_CHANNELS + 1)}


def _bars(value: Any) -> int | None:
    number = finite_number(value)
    return None if number is None else max(0, min(int(number), 5))


# --- controls ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameRule:
    max_length: int
    pattern: str
    description: str

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidValueError(f"a name must be text, not {value!r}")
        if len(value) > self.max_length:
            raise InvalidValueError(f"name {value!r} is longer than {self.max_length} characters")
        if not re.fullmatch(self.pattern, value):
            raise InvalidValueError(f"name {value!r} may contain only {self.description}")
        return value


# No space at either end in any name rule: the hub trims the text a device reports (hub.fieldcheck), so a name
# set with one would be confirmed as asked, held by the device and shown trimmed, three values for one name.
_PRINTABLE_TRIMMED: Final = r"(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?"
PRINTABLE_ASCII: Final = NameRule(8, _PRINTABLE_TRIMMED, "printable ASCII characters, no space at either end")
SLDW_NAME: Final = NameRule(8, r"[0-9A-Za-z_\-]*", "letters, digits, '-' and '_'")
# Media Control Protocol (G3/G4) names: at least one character (a bare ``Name`` is a query) and no space at
# either end, since every line is trimmed and the echo of such a name could never match. Only \x escapes and
# ranges inside the classes: the same text is a valid pattern in Python, JavaScript and an HTML ``pattern``.
MCP_NAME: Final = NameRule(
    8, r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?", "printable ASCII characters, no space at either end"
)


@dataclass(frozen=True)
class Range:
    """An inclusive range on a step grid, in hub units, with the factor to device units."""

    low: float
    high: float
    step: float
    unit: str
    to_device: float = 1.0

    def check(self, value: Any) -> int:
        number = finite_number(value)
        if number is None:
            raise InvalidValueError(f"{value!r} is not a number")
        if not self.low <= number <= self.high:
            raise InvalidValueError(f"{number:g} {self.unit} is outside {self.low:g}..{self.high:g} {self.unit}")
        device_value = round(number * self.to_device)
        device_step = round(self.step * self.to_device)
        if (device_value - round(self.low * self.to_device)) % device_step:
            raise InvalidValueError(f"{number:g} {self.unit} is not on the {self.step:g} {self.unit} grid")
        return device_value


@dataclass(frozen=True)
class Control:
    """Where a command goes (``{n}`` = channel) and how a hub value becomes the device value.

    ``fallback`` is a second address for a leaf whose name is unverified: written when the device lacks the
    first (answered 404 to it).
    """

    address: str
    encode: Callable[[Any], Any]
    fallback: str | None = None

    def path(self, channel: int | None, missing: Collection[Address] = ()) -> Address:
        """The address to write: the first one this device has, else the first (refused as missing)."""
        candidates = [address(text.format(n=channel)) for text in (self.address, self.fallback) if text]
        return next((path for path in candidates if path not in missing), candidates[0])


def _identify(_value: Any) -> bool:
    return True


def _mute(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidValueError(f"mute takes true, false or 'toggle', not {value!r}")
    return value


# the receiver's own name has no documented limit; keep it to what fits an mDNS label
DEVICE_NAME: Final = NameRule(63, _PRINTABLE_TRIMMED, "printable ASCII characters, no space at either end")


# --- families ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SscFamily:
    label: str
    product_pattern: str
    leaves: Mapping[str, Converter]  # "/rx{n}/name" -> converter; the state (on-change) subscription
    meters: Mapping[str, Converter]  # "/m/rx{n}/rsqi" -> converter; the periodic subscription
    controls: Mapping[CommandKind, Control]
    device_controls: Mapping[CommandKind, Control]
    meter_arrays: Mapping[str, Callable[[Any], Updates]] = field(default_factory=dict)  # "/mm": all channels
    state_arrays: Mapping[str, Callable[[Any], Updates]] = field(default_factory=dict)  # "/bays/x": [bay1, bay2]
    # fields that follow from everything known of a channel (not from one leaf), e.g. a bay's charge state
    derive: Callable[[Mapping[str, Any]], Fields] | None = None
    default_channels: int = 2
    channels_in_product: bool = True  # "EM 4", "MCR 2": the product name says how many channels
    tx_prefix: str = "/mates/tx{n}"

    def matches(self, product: str) -> bool:
        return re.search(self.product_pattern, product, re.IGNORECASE) is not None

    def channel_count(self, product: str) -> int:
        # "EM 4", "MCR 2", and the SL DW guide's product strings: "SLDW4CH" (SL MCR 4 DW, TI 1094 11.21)
        pattern = r"(?:EM|MCR)\s*([124])\b|([124])\s*CH\b"
        match = re.search(pattern, product, re.IGNORECASE) if self.channels_in_product else None
        return int(match.group(1) or match.group(2)) if match else self.default_channels

    def state_addresses(self, channels: int) -> list[Address]:
        per_channel = [p for p in self.leaves if "{n}" in p]
        device = [address(p) for p in [*self.leaves, *self.state_arrays] if "{n}" not in p]
        return [address("/device/name"), *device] + [
            address(p.format(n=n)) for n in range(1, channels + 1) for p in per_channel
        ]

    def meter_addresses(self, channels: int) -> list[Address]:
        paths = [address(p.format(n=n)) for n in range(1, channels + 1) for p in self.meters]
        return paths + [address(p) for p in self.meter_arrays]

    def tx_addresses(self, channel: int) -> list[Address]:
        prefix = self.tx_prefix.format(n=channel)
        return [address(p.format(n=channel)) for p in self.leaves if p.format(n=channel).startswith(prefix)]

    def _match(self, path: Address, patterns: Iterable[str]) -> tuple[str, int] | None:
        text = "/" + "/".join(path)
        for pattern in patterns:
            regex = "^" + re.escape(pattern).replace(r"\{n\}", r"(\d+)") + "$"
            match = re.match(regex, text)
            if not match:
                continue
            index = small_number(match.group(1)) if match.groups() else DEVICE
            if index is not None:  # "rx" and thousands of digits names no channel: the leaf is not one of ours
                return pattern, index
        return None

    def convert(self, path: Address, value: Any) -> Updates:
        """Hub fields for one leaf value; empty for leaves the hub does not show."""
        if path == ("device", "name"):
            return {DEVICE: {"name": _text(value)}}
        found = self._match(path, self.leaves)
        if found is not None:
            return {found[1]: self.leaves[found[0]](value)}
        found = self._match(path, self.meters)
        if found is not None:
            return {found[1]: self.meters[found[0]](value)}
        arrays = {**self.meter_arrays, **self.state_arrays}
        found = self._match(path, arrays)
        return arrays[found[0]](value) if found is not None else {}

    def convert_error(self, error: SscError) -> Updates:
        """424 on a transmitter leaf: the transmitter is absent."""
        if error.kind is not ErrorKind.NO_TRANSMITTER:
            return {}
        prefix = "^" + re.escape(self.tx_prefix).replace(r"\{n\}", r"(\d+)") + "/"
        match = re.match(prefix, "/" + "/".join(error.address) + "/")
        index = small_number(match.group(1)) if match else None
        return {index: tx_absent()} if index is not None else {}


def _em6000_meters(value: Any) -> Updates:
    if not isinstance(value, list):
        return {}
    return {index: em6000_meter_fields(row) for index, row in enumerate(value, start=1) if isinstance(row, list)}


# EW-DX band variants by their country frequency code (SSCv1 /device/frequency_code, SSCv2 /api/rf's code) and
# their tuning spans in kHz, only where a public document gives them: Q1-9 as the EW-DX OpenAPI's /api/rf
# example does. The other codes' spans (R1-9, S1-10, ...) are unverified here, so they are left out: a
# receiver of a code not listed is let through and refuses what it cannot tune to itself, rather than the hub
# refusing a frequency the receiver takes. One table for both protocols and their simulators.
EWDX_BANDS: Final[Mapping[str, tuple[tuple[int, int], ...]]] = {
    "Q1-9": ((470_200, 550_000),),
}


def check_band(khz: int, spans: Iterable[tuple[int, int]]) -> int:
    """``khz`` if it lies in one of the receiver's band ``spans`` (kHz; none: not known, let through), else
    InvalidValueError naming the band, before anything is sent."""
    spans = tuple(spans)
    if spans and not any(start <= khz <= end for start, end in spans):
        named = ", ".join(f"{start / 1000:g}-{end / 1000:g}" for start, end in spans)
        raise InvalidValueError(f"{khz / 1000:g} MHz is outside this receiver's band ({named} MHz)")
    return khz


EWDX: Final = SscFamily(
    label="EW-DX",
    product_pattern=r"EW-?DX|^EM\s*[24]\b",
    # device leaves: ewdx src/ewdxReceiver.ts subscribes /device/{encryption,lock} and
    # /device/network/ipv4/ipaddr, and asks /device/frequency_code and /device/network/ether/macs once
    leaves={
        "/device/encryption": _field("encryption_mode", _on_off),
        "/device/lock": _field("front_panel_locked", _bool),
        "/device/frequency_code": _field("rf_band", _text),
        "/device/network/ipv4/ipaddr": _field("ip_address", _first_text),
        "/device/network/ether/macs": _field("mac_address", _first_text),
        "/rx{n}/name": _field("name", _text),
        "/rx{n}/frequency": _field("frequency_mhz", _khz_to_mhz),
        "/rx{n}/mute": _field("muted", _bool),
        "/rx{n}/gain": _field("gain_db", finite_number),
        "/rx{n}/warnings": _field(RX_WARNINGS, _strings),
        "/mates/tx{n}/battery/gauge": _with_tx(_field("battery_percent", _percent)),
        # minutes according to one client; the unit is unverified
        "/mates/tx{n}/battery/lifetime": _with_tx(_field("battery_runtime_min", _count)),
        "/mates/tx{n}/battery/type": _with_tx(_field("battery_type", _text)),
        "/mates/tx{n}/mute": _with_tx(_field("tx_muted", _bool)),
        "/mates/tx{n}/type": _with_tx(_field("tx_model", _text)),
        "/mates/tx{n}/warnings": _with_tx(_field(TX_WARNINGS, _strings)),
        # ewdx src/ewdxReceiver.ts (TxMate): lock is a bool, trim a number of dB
        "/mates/tx{n}/lock": _with_tx(_field("tx_locked", _tx_lock)),
        "/mates/tx{n}/trim": _with_tx(_field("tx_offset_db", finite_number)),
    },
    meters={
        "/m/rx{n}/rsqi": _ewdx_rsqi,
        "/m/rx{n}/divi": _ewdx_divi,
        "/m/rx{n}/rssi": _field("rf_dbm", finite_number),  # unverified: only one client reads it
        "/m/rx{n}/af": _field("audio_dbfs", finite_number),
    },
    controls={
        CommandKind.NAME: Control("/rx{n}/name", PRINTABLE_ASCII.check),  # 8 chars per Companion; unverified
        CommandKind.MUTE: Control("/rx{n}/mute", _mute),
        CommandKind.GAIN: Control("/rx{n}/gain", Range(-3, 42, 3, "dB").check),
        # the tuning range depends on the band variant (unverified); the device confirms or refuses
        CommandKind.FREQUENCY: Control("/rx{n}/frequency", Range(470.0, 1075.0, 0.025, "MHz", 1000).check),
        CommandKind.IDENTIFY: Control("/rx{n}/identification/visual", _identify),
    },
    device_controls={
        CommandKind.IDENTIFY: Control("/device/identification/visual", _identify),
        CommandKind.DEVICE_NAME: Control("/device/name", DEVICE_NAME.check),
    },
)

EM6000: Final = SscFamily(
    label="Digital 6000",
    product_pattern=r"^EM\s*6000",
    leaves={
        "/rx{n}/name": _field("name", _text),
        "/rx{n}/carrier": _field("frequency_mhz", _khz_to_mhz),
        "/rx{n}/audio_mute": _field("muted", _bool),
        "/rx{n}/active_warnings": _field(RX_WARNINGS, _strings),
        "/rx{n}/skx/battery": _em6000_battery,
        "/rx{n}/skx/type": _em6000_tx_type,
        # reference 1.7 (D6000 guide): active_bank_channel is [bank, channel]; encryption is a switch whose
        # JSON type no public source prints (bool assumed, "on"/"off" text accepted); skx/autolock is
        # "On"/"Off" text, "" without a transmitter (D6000 guide TI 1109 v2.2 8.28, manualshelf page 22)
        "/rx{n}/active_bank_channel": _bank_channel,
        "/rx{n}/encryption": _field("encryption", _on_off),
        "/rx{n}/skx/autolock": _field("tx_locked", _tx_lock),
    },
    meters={},
    meter_arrays={"/mm": _em6000_meters},
    channels_in_product=False,
    controls={
        CommandKind.NAME: Control("/rx{n}/name", PRINTABLE_ASCII.check),  # limit unverified
        CommandKind.MUTE: Control("/rx{n}/audio_mute", _mute),
        CommandKind.FREQUENCY: Control("/rx{n}/carrier", Range(470.1, 713.9, 0.025, "MHz", 1000).check),
        CommandKind.IDENTIFY: Control("/rx{n}/identify", _identify),
    },
    device_controls={CommandKind.DEVICE_NAME: Control("/device/name", DEVICE_NAME.check)},
    tx_prefix="/rx{n}/skx",
)

SLDW: Final = SscFamily(
    label="SpeechLine DW",
    # TI 1094: the rack receiver answers "SLDW" (8.18), the SL MCR 4 DW "SLDW4CH" (11.21); spelled-out names
    # ("SL Rack Receiver DW") are accepted too
    product_pattern=r"^SL.*DW",
    leaves={
        "/rx{n}/name": _field("name", _text),
        # verified: TI 1094 (SL Series control spec: {"rx1":{"mute_state":true}}), Specialelektronik/Sennheiser
        # SldwRxHandler.cs and SlMcrDwRxHandler.cs (mute_state a bool, beside mute_mode, the mute switch's mode)
        "/rx{n}/mute_state": _field("muted", _bool),
        # unverified: in no source; read too in case a firmware answers it, dropped when the device answers 404
        "/rx{n}/mute": _field("muted", _bool),
        # the receiver's front-panel warnings ("Bad Link"), a list of texts (Specialelektronik SldwRxHandler.cs,
        # SlMcrDwRxHandler.cs; TI 1094 "Receiver warnings"); shown together with the transmitter's
        "/rx{n}/warnings": _field(RX_WARNINGS, _strings),
        "/mates/tx{n}/bat_gauge": _with_tx(_field("battery_percent", _percent)),
        "/mates/tx{n}/bat_lifetime": _with_tx(_field("battery_runtime_min", _sldw_runtime)),
        "/mates/tx{n}/bat_bars": _with_tx(_field("battery_bars", _bars)),
        # SLDW guide (reference 1.8): bat_health in %, bat_cycles a count
        "/mates/tx{n}/bat_health": _with_tx(_field("battery_health_percent", _percent)),
        "/mates/tx{n}/bat_cycles": _with_tx(_field("battery_cycles", _count)),
        "/mates/tx{n}/warnings": _with_tx(_field(TX_WARNINGS, _strings)),
    },
    # a whole number of % (Specialelektronik divides it by 100 for 1.0 = 100 %; TI 1094 "RF quality
    # percentage"). It changes all the time (Specialelektronik subscribes it only on request for that reason),
    # so it is read with the meters, at the meter rate, not on every change.
    meters={"/rx{n}/rf_quality": _field("rf_quality_percent", _percent)},
    state_arrays={"/mates/active": _sldw_active},
    controls={
        CommandKind.NAME: Control("/rx{n}/name", SLDW_NAME.check),
        CommandKind.MUTE: Control("/rx{n}/mute_state", _mute, fallback="/rx{n}/mute"),
    },
    device_controls={CommandKind.DEVICE_NAME: Control("/device/name", DEVICE_NAME.check)},
    default_channels=1,
)

# --- chargers ---------------------------------------------------------------------------------------
# CHG 70N (EW-DX charger): every /bays leaf is a list with one entry per bay (Companion ewdx src/chg70n.ts
# subscribes bays/{bat_gauge,bat_health,bat_cycles,bat_timetofull,device_type,serial,warnings} and reads
# index 0 and 1). A bay is a hub channel; the device in it stands where a receiver's transmitter would.
_EMPTY_BAY: Final = "NONE"


def _per_bay(convert: Converter) -> Callable[[Any], Updates]:
    def bays(value: Any) -> Updates:
        return {bay: convert(item) for bay, item in enumerate(value, start=1)} if isinstance(value, list) else {}

    return bays


def _bay_device(value: Any) -> Fields:
    """``device_type``: ``EW-DX SK``, ``EW-DX SKM``, ``BA70``, …, ``NONE`` for an empty bay."""
    if not isinstance(value, str) or not value:
        return {"tx_model": None}
    if value.upper() == _EMPTY_BAY:
        return {"tx_present": False, "tx_model": None, "tx_id": None}
    return {"tx_present": True, "tx_model": value}


_BAY_BATTERY: Final = ("battery_percent", "battery_health_percent", "battery_cycles", "battery_time_to_full_min")


def _bay_charge_state(known: Mapping[str, Any]) -> Fields:
    """No leaf states it: charging while time to full is left, charged at 100 % with none; else unknown.

    An empty bay shows no battery, whatever its leaves still hold.
    """
    if known.get("tx_present") is False:
        return dict.fromkeys((*_BAY_BATTERY, "battery_charge_state"))
    minutes, percent = known.get("battery_time_to_full_min"), known.get("battery_percent")
    if isinstance(minutes, int) and minutes > 0:
        return {"battery_charge_state": "charging"}
    return {"battery_charge_state": "charged" if minutes == 0 and percent == 100 else None}


CHG70N: Final = SscFamily(
    label="CHG 70N",
    product_pattern=r"CHG\s*70\s*N",  # unverified: no public source prints the product string
    leaves={"/device/network/ipv4/ipaddr": _field("ip_address", _first_text)},  # ewdx src/chg70n.ts msgNetwork
    meters={},
    state_arrays={
        "/bays/bat_gauge": _per_bay(_field("battery_percent", _percent)),
        "/bays/bat_health": _per_bay(_field("battery_health_percent", _percent)),
        "/bays/bat_cycles": _per_bay(_field("battery_cycles", _count)),
        # minutes assumed: Companion shows the number as it comes (unverified)
        "/bays/bat_timetofull": _per_bay(_field("battery_time_to_full_min", _count)),
        "/bays/device_type": _per_bay(_bay_device),
        "/bays/serial": _per_bay(_field("tx_id", _first_text)),
        # a list per bay: BatteryComError, BatteryNotChargeable, BatteryTempOutOfRange, …
        "/bays/warnings": _per_bay(_field("warnings", _strings)),
    },
    derive=_bay_charge_state,
    controls={},
    device_controls={
        CommandKind.IDENTIFY: Control("/device/identification/visual", _identify),
        CommandKind.DEVICE_NAME: Control("/device/name", DEVICE_NAME.check),
    },
    channels_in_product=False,
)

FAMILIES: Final = (CHG70N, EM6000, EWDX, SLDW)  # the charger first: its product may name EW-DX too


def family_for(product: str) -> SscFamily | None:
    return next((family for family in FAMILIES if family.matches(product)), None)


class ChannelMapper:
    """Turns leaf values and errors into hub updates, merging the per-source warning lists."""

    def __init__(self, family: SscFamily) -> None:
        self.family = family
        self._warnings: dict[tuple[int, str], list[str]] = {}
        self._known: dict[int, Fields] = {}

    def _finish(self, updates: Updates) -> Updates:
        for channel, fields in updates.items():
            if self.family.derive is not None and channel != DEVICE:
                known = self._known.setdefault(channel, {})
                known.update(fields)
                fields.update(self.family.derive(known))
            for source in (RX_WARNINGS, TX_WARNINGS):
                if source in fields:
                    self._warnings[(channel, source)] = fields.pop(source)
                    fields["warnings"] = self._warnings.get((channel, RX_WARNINGS), []) + self._warnings.get(
                        (channel, TX_WARNINGS), []
                    )
        return updates

    def values(self, leaves: Mapping[Address, Any]) -> Updates:
        return self._finish(_merged(self.family.convert(path, value) for path, value in leaves.items()))

    def errors(self, errors: Iterable[SscError]) -> Updates:
        return self._finish(_merged(self.family.convert_error(error) for error in errors))


def _merged(updates: Iterable[Updates]) -> Updates:
    merged: Updates = {}
    for update in updates:
        for channel, fields in update.items():
            merged.setdefault(channel, {}).update(fields)
    return merged
