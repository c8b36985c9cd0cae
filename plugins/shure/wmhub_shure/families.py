"""Per-family parameter tables, conversions to the hub model's units, and the limits of each SET.

Every table maps a wire parameter to the :class:`hub.model.Channel` (or Device) field it fills and the
codec that converts it both ways; the simulator encodes with the same codecs, and the table-driven tests
pin the decode side to the literal lines of the protocol reference. SAMPLE decoders are plain functions
on pre-split byte tokens: they run ten times a second per channel, so they avoid regexes and models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from hub.model import Command, CommandKind, InvalidValueError, NotSupportedError
from hub.text import VALUE_DIGITS, small_number
from wmhub_shure.protocol import ANGLE, ANGLE_CRLF, STAR, Framing, Report, brace

RUNTIME_UNKNOWN: Final = 65535
RUNTIME_CALCULATING: Final = 65534
RUNTIME_COMMUNICATION: Final = 65533
GAIN_OFFSET: Final = 18
GAIN_MIN_DB: Final = -18
GAIN_MAX_DB: Final = 42
METER_RATE_MIN_MS: Final = 100
METER_RATE_MAX_MS: Final = 99999
UNKNOWN_TEXT: Final = frozenset({"", "UNKN", "UNKNOWN"})
# Characters a name may not hold: braces and delimiters would corrupt the framing on the way back.
NAME_FORBIDDEN: Final = frozenset("{}<>*")

ChannelFields = dict[str, Any]
SampleDecoder = Callable[[list[bytes]], ChannelFields]


@dataclass(frozen=True, slots=True)
class Codec:
    """Wire text <-> model value. ``decode`` turns every unknown marker into None."""

    decode: Callable[[str], Any]
    encode: Callable[[Any], str]


def number(
    offset: int = 0,
    width: int = 3,
    unknown: tuple[int, ...] = (255,),
    scale: int = 1,
    valid: tuple[int, int] | None = None,
) -> Codec:
    """Zero-padded integers: model value = (wire - offset) * scale; ``unknown`` markers decode to None, and so
    does a value outside ``valid`` (model units): one impossible reading must not reach the hub's model."""

    def decode(text: str) -> int | None:
        raw = small_number(text, VALUE_DIGITS, signed=True)
        if raw is None or raw in unknown:  # micboard saw a bare "U" for an unknown battery
            return None
        value = (raw - offset) * scale
        return value if valid is None or valid[0] <= value <= valid[1] else None

    def encode(value: Any) -> str:
        raw = unknown[0] if value is None else int(value) // scale + offset
        return f"{raw:0{width}d}"

    return Codec(decode, encode)


def text(width: int = 0, braced: bool = True, unknown: frozenset[str] = frozenset({""}), blank: str = "") -> Codec:
    """Strings: brace fields padded to ``width`` or bare tokens; blank and ``unknown`` decode to None."""

    def decode(value: str) -> str | None:
        value = value.strip()
        return None if value.upper() in unknown else value

    def encode(value: Any) -> str:
        shown = blank if value is None else str(value)
        return brace(shown, width) if braced else shown

    return Codec(decode, encode)


def enum_text(unknown_spelling: str) -> Codec:
    """A bare enum token such as a TX model, whose unknown spelling differs by family (UNKN/UNKNOWN)."""
    return text(braced=False, unknown=UNKNOWN_TEXT, blank=unknown_spelling)


def frequency(digits: int) -> Codec:
    """kHz digits without a decimal point (AD/SLX-D 7 with a leading zero, ULX-D/QLX-D 6) <-> MHz."""

    def decode(value: str) -> float | None:
        khz = small_number(value, VALUE_DIGITS)  # None for "--" style placeholders before a frequency is set
        return khz / 1000 if khz else None

    def encode(value: Any) -> str:
        return f"{round(float(value) * 1000):0{digits}d}" if value is not None else "0" * digits

    return Codec(decode, encode)


def switch(on: str = "ON", off: str = "OFF") -> Codec:
    """Two-state enums: ``on`` decodes to True. AD's TX mute reports ``MUTE`` for muted, ``ON`` for live."""

    def decode(value: str) -> bool | None:
        upper = value.strip().upper()
        return True if upper == on else False if upper == off else None

    def encode(value: Any) -> str:
        return "UNKN" if value is None else on if value else off

    return Codec(decode, encode)


def word(unknown: frozenset[str] = UNKNOWN_TEXT, aliases: Mapping[str, str] | None = None) -> Codec:
    """An enum token shown in lower case (``NORMAL`` -> ``normal``); ``aliases`` map other spellings first."""
    known = {key.upper(): value for key, value in (aliases or {}).items()}

    def decode(value: str) -> str | None:
        upper = value.strip().upper()
        return None if upper in unknown else known.get(upper, upper.lower())

    def encode(value: Any) -> str:
        return "UNKN" if value is None else str(value).upper()

    return Codec(decode, encode)


def milliwatts(width: int = 3) -> Codec:
    """An RF power in mW as digits (``010``, 255 unknown) <-> the model's ``10mW``."""
    digits = number(width=width, valid=(0, 1000))

    def decode(value: str) -> str | None:
        power = digits.decode(value)
        return None if power is None else f"{power}mW"

    def encode(value: Any) -> str:
        return digits.encode(None if value is None else int(str(value).removesuffix("mW")))

    return Codec(decode, encode)


def engaged(off: str = "OFF") -> Codec:
    """A lock or mode that is either ``off`` or one of several ``on`` states (SLX-D LOCK_STATUS MENU|ALL)."""

    def decode(value: str) -> bool | None:
        upper = value.strip().upper()
        return None if upper in UNKNOWN_TEXT else upper != off

    def encode(value: Any) -> str:
        return "UNKN" if value is None else "ALL" if value else off

    return Codec(decode, encode)


def channel_encryption(mode: str | None, mismatch: bool | None) -> str | None:
    """A channel's link encryption: ``mismatch`` when its keys disagree, else on or off as the receiver is set."""
    if mismatch:
        return "mismatch"
    if mismatch is None or mode is None:
        return None
    return "off" if mode == "off" else "on"


def network_settings(value: str) -> dict[str, Any]:
    """``SC AUTO 192.168.001.025 255.255.255.000 000.000.000.000 00:0E:DD:45:60:EB`` (CO docs/SLXDplus-protocol.md,
    interface, mode, address, mask, gateway, MAC) -> ip_address (zero padding dropped) and mac_address."""
    tokens = value.split()
    address = tokens[2] if len(tokens) > 2 else ""
    octets = address.split(".")
    numbers = [small_number(octet, digits=3) for octet in octets]
    if len(numbers) == 4 and all(number is not None and number < 256 for number in numbers):
        address = ".".join(str(number) for number in numbers)
    else:
        address = ""  # "na" while the address is being assigned, or junk
    mac = tokens[5].upper() if len(tokens) > 5 and len(tokens[5].split(":")) == 6 else ""
    return {"ip_address": address or None, "mac_address": mac or None}


def tx_lock_of(power: bool | None, menu: bool | None) -> str | None:
    """ULX-D/QLX-D report the power and menu locks apart; the model names them together, as AD's TX_LOCK does."""
    if power is None or menu is None:
        return None
    return {(False, False): "none", (True, False): "power", (False, True): "menu"}.get((power, menu), "all")


_ANTENNA_LETTERS: Final = "ABCD"
_antenna_cache: dict[bytes, str | None] = {}


def antenna_letters(status: str) -> str | None:
    """Per-antenna status characters (``AX``, ``XB``, ``BB``, ``XXBX``) -> the active antennas' letters.

    ``X`` means off; ULX-D puts the letter itself, AD puts ``B`` (CO also names ``R``), so any
    character other than X counts as active (liberal: the AD meanings are unverified).
    """
    letters = "".join(_ANTENNA_LETTERS[i] for i, mark in enumerate(status[:4]) if mark not in "Xx")
    return letters or None


def antenna_marks(letters: str | None, count: int, active: str | None) -> str:
    """The inverse of :func:`antenna_letters`; ``active`` None writes the antenna's own letter."""
    chosen = letters or ""
    return "".join((active or _ANTENNA_LETTERS[i]) if _ANTENNA_LETTERS[i] in chosen else "X" for i in range(count))


def antenna(count: int = 2, active: str | None = None) -> Codec:
    return Codec(antenna_letters, lambda value: antenna_marks(value, count, active))


def _antenna_from_bytes(token: bytes) -> str | None:
    letters = _antenna_cache.get(token)
    if letters is None and token not in _antenna_cache:
        letters = antenna_letters(token.decode("ascii", "replace"))
        if len(_antenna_cache) < 256:  # a device sending junk here must not grow the cache
            _antenna_cache[token] = letters
    return letters


# SAMPLE fast paths. Index 0 is SAMPLE, 1 the channel, 2 ALL (reference section 5.2).


def ulx_sample(tokens: list[bytes]) -> ChannelFields:
    return {
        "antenna": _antenna_from_bytes(tokens[3]),
        "rf_dbm": int(tokens[4]) - 128,
        "audio_dbfs": int(tokens[5]) - 50,
    }


def axient_sample(tokens: list[bytes]) -> ChannelFields:
    # Quadversity sends 4 antenna marks and 4 bitmap/RSSI pairs; the mark count says which layout.
    # [5] is the peak audio level, [6] the RMS (CO src/internalAPI.js parseADSample: both - 120 dBFS).
    quality = int(tokens[3])
    marks = tokens[7]
    levels = {_ANTENNA_LETTERS[i]: int(tokens[9 + 2 * i]) - 120 for i in range(len(marks))}
    return {
        "rf_quality_percent": quality * 20 if 0 <= quality <= 5 else None,
        "audio_peak": int(tokens[4]) >= 128,
        "audio_peak_dbfs": int(tokens[5]) - 120,
        "audio_dbfs": int(tokens[6]) - 120,
        "antenna": _antenna_from_bytes(marks),
        "rf_dbm": max(levels.values()),
        "rf_antennas": levels,
    }


def slx_sample(tokens: list[bytes]) -> ChannelFields:
    # [3] peak, [4] RMS, [5] RSSI, each - 120 (CO src/internalAPI.js parseSLXSample, parseSlxdPlusSample)
    return {"audio_peak_dbfs": int(tokens[3]) - 120, "audio_dbfs": int(tokens[4]) - 120, "rf_dbm": int(tokens[5]) - 120}


def uhfr_audio_dbfs(bitmap: int) -> int:
    """UHF-R's audio LED bitmap -> dBFS, 6 dB per lit segment below 8 (unverified; micboard's buckets)."""
    return (min(bitmap.bit_length(), 8) - 8) * 6


def uhfr_sample(tokens: list[bytes]) -> ChannelFields:
    # Layout from micboard, unverified against a device: [3] antenna, [4] RF as -dBm, [5] unknown,
    # [6] battery bars, [7] audio bitmap.
    bars = BATTERY_BARS.decode(tokens[6].decode("ascii", "replace"))
    return {
        "antenna": _antenna_from_bytes(tokens[3]),
        "rf_dbm": -int(tokens[4]),
        "battery_bars": bars,
        "tx_present": bars is not None,
        "audio_dbfs": uhfr_audio_dbfs(int(tokens[7])),
    }


@dataclass(frozen=True, slots=True)
class Param:
    """A wire parameter that fills one model field; ``part`` names its share of a field two parameters fill
    together (ULX-D's ``TX_PWR_LOCK`` and ``TX_MENU_LOCK`` make ``tx_locked``)."""

    field: str
    codec: Codec
    part: str | None = None
    # a parameter carrying several fields in one report (NET_SETTINGS): its value -> those fields; ``also``
    # names the fields it fills besides ``field``
    split: Callable[[str], dict[str, Any]] | None = None
    also: tuple[str, ...] = ()

    def decode(self, value: str) -> dict[str, Any]:
        """The model fields this report sets by itself; a share sets none alone (the driver combines shares)."""
        if self.part is not None:
            return {}
        return self.split(value) if self.split is not None else {self.field: self.codec.decode(value)}


@dataclass(frozen=True, slots=True)
class WarningRule:
    """A parameter value that raises a channel warning (e.g. ``INTERFERENCE_STATUS DETECTED``)."""

    warning: str
    param: str
    raised_by: frozenset[str]
    clear_value: str


BATTERY_BARS: Final = number(valid=(0, 5))
PERCENT: Final = number(valid=(0, 100))
RUNTIME: Final = number(
    width=5, unknown=(RUNTIME_UNKNOWN, RUNTIME_CALCULATING, RUNTIME_COMMUNICATION), valid=(0, RUNTIME_COMMUNICATION)
)
GAIN: Final = number(offset=GAIN_OFFSET)
QUALITY: Final = number(scale=20, valid=(0, 100))  # AD channel quality 0..5 -> percent
ON_OFF: Final = switch()
CYCLES: Final = number(width=5, unknown=(65535,), valid=(0, 65534))
# CO's internalAPI.js notes BATT_TEMP_C as "+40, 255=UNKN" (and then shows the wire value plus 40, which would
# make a pack at room temperature read over 100 degrees): read here as degrees C + 40 on the wire, and a reading
# outside -40..+100 degrees C as unknown (unverified against a device).
BATTERY_TEMP: Final = number(offset=40, valid=(-40, 100))
# group,channel presets: "--,--" until one is chosen (MB-API); SLX-D pads the brace field ({1,1  }).
GROUP_CHANNEL: Final = text(braced=False, unknown=frozenset({"", "--,--", "UNKN", "UNKNOWN"}))
ENCRYPTION_MODE: Final = word()


def runtime_warnings(param: str) -> tuple[WarningRule, ...]:
    return (
        WarningRule("battery_runtime_calculating", param, frozenset({str(RUNTIME_CALCULATING)}), ""),
        WarningRule("battery_communication_warning", param, frozenset({str(RUNTIME_COMMUNICATION)}), ""),
    )


@dataclass(frozen=True)
class Family:
    """One Shure product family: its models, wire tables, SAMPLE layout and control limits."""

    key: str
    label: str
    models: Mapping[str, int]  # wire model name -> channel count
    framing: Framing
    channel_params: Mapping[str, Param]
    device_params: Mapping[str, Param]
    warnings: tuple[WarningRule, ...]
    sample: SampleDecoder | None
    sample_fields: frozenset[str]
    controls: frozenset[CommandKind]
    name_max: int  # longest name a SET accepts
    name_width: int  # brace width of CHAN_NAME reports
    device_name_width: int
    freq_digits: int
    tx_model_param: str | None
    battery_param: str | None
    channel_flash: bool = False
    slots: int = 0  # AD ShowLink slots or SLX-D+ side slots per channel
    udp: bool = False
    # receiver-level state the device reports in GET ALL (band, encryption, locks), never asked at detection
    device_state: Mapping[str, Param] = field(default_factory=dict)
    device_name_param: str = "DEVICE_ID"  # the receiver's own name; the P10T calls it DEVICE_NAME
    braced_names: bool = True  # names travel in {braces}; the P10T's bare (CO PSM1000 module)
    network_query: tuple[str, ...] = ()  # a receiver-level GET for the network facts, sent after GET ALL
    # the channel parameter whose "encryption" warning says the link's keys do not match (ENCRYPTION_WARNING ON,
    # ENCRYPTION_STATUS ERROR); with the receiver's encryption_mode it gives the channel's encryption field
    encryption_param: str | None = None
    # per transmitter slot (``< REP 1 SLOT_STATUS 8 EMPTY >``): wire parameter -> the hub.model.SlotState field
    slot_params: Mapping[str, Param] = field(default_factory=dict)
    # the transmitter power the hub can set, as tx_power reads (the P10T's RF_TX_LVL); empty: none
    tx_power_levels: tuple[str, ...] = ()
    # the family is an in-ear transmitter, not a receiver: on air while online and not RF-muted (tx_muted)
    transmitter: bool = False
    # the channel parameter the keep-alive asks for: one the family answers (a charger has no METER_RATE)
    keepalive_param: str = "METER_RATE"
    # asked again when a channel's transmitter becomes available: what may have changed while it was away
    # without a report (MXW: docked, charged, swapped)
    arrival_params: tuple[str, ...] = ()

    @property
    def fields(self) -> frozenset[str]:
        """Every Channel field this family reports: what a state comparison covers."""
        names = {param.field for param in self.channel_params.values()} | set(self.sample_fields)
        names.update(name for param in self.channel_params.values() for name in param.also)
        if self.warnings:
            names.add("warnings")
        if self.tx_model_param or self.battery_param:
            names.add("tx_present")
        if self.encryption_param:
            names.add("encryption")
        if self.slot_params:
            names.add("tx_slots")
        return frozenset(names)

    def warnings_for(self, param: str) -> tuple[WarningRule, ...]:
        return tuple(rule for rule in self.warnings if rule.param == param)


def _device_params(id_width: int, fw_width: int, with_model: bool) -> dict[str, Param]:
    params = {"DEVICE_ID": Param("name", text(id_width)), "FW_VER": Param("firmware", text(fw_width))}
    if with_model:
        params["MODEL"] = Param("model", text(32))
    return params


_BASIC_CONTROLS: Final = frozenset(
    {CommandKind.NAME, CommandKind.GAIN, CommandKind.GAIN_STEP, CommandKind.FREQUENCY, CommandKind.METER_RATE}
)
_IDENTIFY: Final = frozenset({CommandKind.IDENTIFY, CommandKind.DEVICE_NAME})
_MUTE: Final = frozenset({CommandKind.MUTE})


def _ulx_channel(name_width: int, with_mute: bool) -> dict[str, Param]:
    params = {
        "CHAN_NAME": Param("name", text(name_width)),
        "FREQUENCY": Param("frequency_mhz", frequency(6)),
        "AUDIO_GAIN": Param("gain_db", GAIN),
        "TX_TYPE": Param("tx_model", enum_text("UNKN")),
        "TX_MUTE_STATUS": Param("tx_muted", ON_OFF),  # ON = muted (unverified polarity)
        "BATT_BARS": Param("battery_bars", BATTERY_BARS),
        "BATT_CHARGE": Param("battery_percent", PERCENT),
        "BATT_RUN_TIME": Param("battery_runtime_min", RUNTIME),
        "BATT_TYPE": Param("battery_type", enum_text("UNKN")),
        # REP forms of the metered values; same offsets as SAMPLE (unverified for REP)
        "RX_RF_LVL": Param("rf_dbm", number(offset=128)),
        "AUDIO_LVL": Param("audio_dbfs", number(offset=50)),
        "RF_ANTENNA": Param("antenna", antenna()),
        # transmitter and battery detail, GROUP_CHAN (CO src/internalAPI.js getChannel, qlx-d/ulx-d rx and tx lists)
        "GROUP_CHAN": Param("group_channel", GROUP_CHANNEL),
        "TX_DEVICE_ID": Param("tx_id", text(8)),  # ULXD6/ULXD8 only
        "TX_OFFSET": Param("tx_offset_db", number(valid=(0, 21))),  # 0,3,..21 dB
        "TX_RF_PWR": Param("tx_power", word()),  # LOW | NORMAL | HIGH
        "TX_PWR_LOCK": Param("tx_locked", ON_OFF, part="power"),
        "TX_MENU_LOCK": Param("tx_locked", ON_OFF, part="menu"),
        "TX_MUTE_BUTTON_STATUS": Param("tx_talk_switch", switch(on="PRESSED", off="RELEASED")),
        "BATT_CYCLE": Param("battery_cycles", CYCLES),
        "BATT_TEMP_C": Param("battery_temp_c", BATTERY_TEMP),
    }
    if with_mute:
        params["AUDIO_MUTE"] = Param("muted", ON_OFF)
    return params


def _ulx_family(
    key: str,
    label: str,
    models: Mapping[str, int],
    extra_warnings: tuple[WarningRule, ...],
    extra_controls: frozenset[CommandKind],
) -> Family:
    """ULX-D and QLX-D share the wire tables; QLX-D lacks mute, identify and interference detection."""
    return Family(
        key=key,
        label=label,
        models=models,
        framing=ANGLE,
        channel_params=_ulx_channel(8, with_mute=CommandKind.MUTE in extra_controls),
        device_params=_device_params(8, 18, with_model=False),
        warnings=(
            *extra_warnings,
            WarningRule("encryption", "ENCRYPTION_WARNING", frozenset({"ON"}), "OFF"),
            *runtime_warnings("BATT_RUN_TIME"),
        ),
        sample=ulx_sample,
        sample_fields=frozenset({"antenna", "rf_dbm", "audio_dbfs"}),
        controls=_BASIC_CONTROLS | extra_controls,
        name_max=8,
        name_width=8,
        device_name_width=8,
        freq_digits=6,
        tx_model_param="TX_TYPE",
        battery_param="BATT_BARS",
        # ULX-D: OFF | MANUAL | AUTO, QLX-D: OFF | ON (CO src/internalAPI.js receiver notes)
        device_state={"ENCRYPTION": Param("encryption_mode", ENCRYPTION_MODE)},
        encryption_param="ENCRYPTION_WARNING",
    )


ULXD: Final = _ulx_family(
    "ulxd",
    "ULX-D",
    {"ULXD4": 1, "ULXD4D": 2, "ULXD4Q": 4},
    extra_warnings=(WarningRule("interference", "RF_INT_DET", frozenset({"CRITICAL"}), "NONE"),),
    extra_controls=_MUTE | _IDENTIFY,
)

QLXD: Final = _ulx_family("qlxd", "QLX-D", {"QLXD4": 1}, extra_warnings=(), extra_controls=frozenset())

AXIENT: Final = Family(
    key="axient",
    label="Axient Digital",
    # ANX4 (a networked receiver) speaks the Axient Digital command set (issue 17); 4 channels from its name
    models={"AD4D": 2, "AD4Q": 4, "ANX4": 4},
    framing=ANGLE,
    channel_params={
        "CHAN_NAME": Param("name", text(31)),
        "FREQUENCY": Param("frequency_mhz", frequency(7)),
        "AUDIO_GAIN": Param("gain_db", GAIN),
        "AUDIO_MUTE": Param("muted", ON_OFF),
        "TX_MODEL": Param("tx_model", enum_text("UNKNOWN")),
        "TX_MUTE_MODE_STATUS": Param("tx_muted", switch(on="MUTE", off="ON")),
        "TX_BATT_BARS": Param("battery_bars", BATTERY_BARS),
        "TX_BATT_CHARGE_PERCENT": Param("battery_percent", PERCENT),
        "TX_BATT_MINS": Param("battery_runtime_min", RUNTIME),
        "TX_BATT_TYPE": Param("battery_type", enum_text("UNKN")),
        "AUDIO_LEVEL_RMS": Param("audio_dbfs", number(offset=120)),
        "CHAN_QUALITY": Param("rf_quality_percent", QUALITY),
        "RSSI": Param("rf_dbm", number(offset=120)),
        "ANTENNA_STATUS": Param("antenna", antenna(active="B")),
        # CO src/internalAPI.js getChannel, "ad rx/tx" lists, and updateChannel's conversions
        "GROUP_CHANNEL": Param("group_channel", GROUP_CHANNEL),
        "FREQUENCY2": Param("frequency2_mhz", frequency(7)),  # frequency diversity (FD_MODE FD-C / FD-S)
        "TX_DEVICE_ID": Param("tx_id", text(31)),
        "TX_OFFSET": Param("tx_offset_db", number(offset=12, valid=(-12, 20))),  # 0..32 is -12..+20 dB
        "TX_POWER_LEVEL": Param("tx_power", milliwatts()),  # 0..50 mW, 255 unknown
        "TX_LOCK": Param("tx_locked", word(aliases={"LOCKED": "all"})),  # ALL | POWER | MENU | NONE
        "TX_TALK_SWITCH": Param("tx_talk_switch", ON_OFF),
        "TX_BATT_HEALTH_PERCENT": Param("battery_health_percent", PERCENT),
        "TX_BATT_CYCLE_COUNT": Param("battery_cycles", CYCLES),
        "TX_BATT_TEMP_C": Param("battery_temp_c", BATTERY_TEMP),
    },
    device_params=_device_params(31, 24, with_model=True),
    device_state={
        "RF_BAND": Param("rf_band", text(8)),
        "ENCRYPTION_MODE": Param("encryption_mode", ENCRYPTION_MODE),
    },
    warnings=(
        WarningRule("interference", "INTERFERENCE_STATUS", frozenset({"DETECTED"}), "NONE"),
        WarningRule("encryption", "ENCRYPTION_STATUS", frozenset({"ERROR"}), "OK"),
        WarningRule("unregistered_tx", "UNREGISTERED_TX_STATUS", frozenset({"ERROR"}), "OK"),
        *runtime_warnings("TX_BATT_MINS"),
    ),
    sample=axient_sample,
    sample_fields=frozenset(
        {"rf_quality_percent", "audio_peak", "audio_peak_dbfs", "audio_dbfs", "antenna", "rf_dbm", "rf_antennas"}
    ),
    controls=_BASIC_CONTROLS | _MUTE | _IDENTIFY | {CommandKind.RF_OUTPUT, CommandKind.SLOT_RF_POWER_MODE},
    name_max=31,
    name_width=31,
    device_name_width=31,
    freq_digits=7,
    tx_model_param="TX_MODEL",
    battery_param="TX_BATT_BARS",
    channel_flash=True,
    slots=8,
    encryption_param="ENCRYPTION_STATUS",
    # ShowLink slots 1-8, CO src/internalAPI.js (its slot table and unknown markers)
    slot_params={
        "SLOT_STATUS": Param("status", word()),  # EMPTY | STANDARD | LINKED.INACTIVE | LINKED.ACTIVE
        "SLOT_TX_MODEL": Param("tx_model", enum_text("UNKNOWN")),
        "SLOT_BATT_BARS": Param("battery_bars", BATTERY_BARS),
        "SLOT_BATT_CHARGE_PERCENT": Param("battery_percent", PERCENT),
        "SLOT_RF_POWER_MODE": Param("rf_power_mode", word()),  # LOW | NORMAL | HIGH, UNKNOWN
        "SLOT_RF_OUTPUT": Param("rf_output", switch(on="RF_ON", off="RF_MUTE")),
    },
)


def _slx_channel(plus: bool) -> dict[str, Param]:
    tx_model = Param("tx_model", enum_text("UNKNOWN"))
    params = {
        "CHAN_NAME": Param("name", text(31)),
        "FREQUENCY": Param("frequency_mhz", frequency(7)),
        "AUDIO_GAIN": Param("gain_db", GAIN),
        "TX_MODEL": tx_model,
        "TX_TYPE": tx_model,  # both spellings occur
        "TX_BATT_BARS": Param("battery_bars", BATTERY_BARS),
        "TX_BATT_MINS": Param("battery_runtime_min", RUNTIME),
        "AUDIO_LEVEL_RMS": Param("audio_dbfs", number(offset=120)),
        "RSSI": Param("rf_dbm", number(offset=120)),
        "AUDIO_LEVEL_PEAK": Param("audio_peak_dbfs", number(offset=120)),  # SX-PROTO < REP 1 AUDIO_LEVEL_PEAK 102 >
        "GROUP_CHANNEL": Param("group_channel", GROUP_CHANNEL),
        "GROUP_CHAN": Param("group_channel", GROUP_CHANNEL),  # pyslxd's mock server spells it so
    }
    if plus:
        params["ANTENNA_STATUS"] = Param("antenna", antenna(active="B"))
    return params


def _slx_device_state(plus: bool) -> dict[str, Param]:
    """SLX-D receiver-level state; SLX-D+ adds encryption and the Dante name (CO src/internalAPI.js)."""
    state = {"RF_BAND": Param("rf_band", text(8)), "LOCK_STATUS": Param("front_panel_locked", engaged())}
    if plus:
        state["ENCRYPTION_MODE"] = Param("encryption_mode", ENCRYPTION_MODE)
        state["NA_DEVICE_NAME"] = Param("dante_name", text(31))  # Dante models only
        state["NET_SETTINGS"] = Param("ip_address", text(), split=network_settings, also=("mac_address",))
    return state


def _slx_family(key: str, label: str, models: Mapping[str, int], plus: bool) -> Family:
    """SLX-D and SLX-D+ share the wire tables; the + models add antenna status, warnings and two side slots."""
    status_warnings = (
        WarningRule("interference", "INTERFERENCE_STATUS", frozenset({"DETECTED"}), "NONE"),
        WarningRule("encryption", "ENCRYPTION_STATUS", frozenset({"ERROR"}), "OK"),
    )
    return Family(
        key=key,
        label=label,
        models=models,
        framing=ANGLE,
        channel_params=_slx_channel(plus),
        device_params=_device_params(8, 24, with_model=True),
        warnings=(*(status_warnings if plus else ()), *runtime_warnings("TX_BATT_MINS")),
        sample=slx_sample,
        sample_fields=frozenset({"audio_peak_dbfs", "audio_dbfs", "rf_dbm"}),
        controls=_BASIC_CONTROLS | _IDENTIFY,
        name_max=8,  # CO's validator; the 31-wide report field is not what SET accepts
        name_width=31,
        device_name_width=8,
        freq_digits=7,
        tx_model_param="TX_MODEL",
        battery_param="TX_BATT_BARS",
        channel_flash=True,
        slots=2 if plus else 0,
        device_state=_slx_device_state(plus),
        encryption_param="ENCRYPTION_STATUS" if plus else None,
        # SC, the Shure control interface every SLX-D+ has; it sends no REP of its own (CO SLX-D+ notes)
        network_query=("NET_SETTINGS", "SC") if plus else (),
        # side slots 1-2 (CO docs/SLXDplus-protocol.md): LINK_STATUS online|offline, SLOT_TX_MODEL {10 wide}
        slot_params=(
            {"LINK_STATUS": Param("status", word()), "SLOT_TX_MODEL": Param("tx_model", text(10))} if plus else {}
        ),
    )


SLXD: Final = _slx_family("slxd", "SLX-D", {"SLXD4": 1, "SLXD4D": 2}, plus=False)
SLXD_PLUS: Final = _slx_family(
    "slxd_plus", "SLX-D+", {"SLXD4+": 1, "SLXD4D+": 2, "SLXD4Q+": 4, "SLXD4QDAN+": 4}, plus=True
)

UHFR: Final = Family(
    key="uhfr",
    label="UHF-R",
    models={"UR4S": 1, "UR4D": 2},
    framing=STAR,
    channel_params={
        # UHF-R names arrive without braces in the only public fixture (unverified)
        "CHAN_NAME": Param("name", text(braced=False)),
        "FREQUENCY": Param("frequency_mhz", frequency(6)),
        "TX_BAT": Param("battery_bars", BATTERY_BARS),
        "BATT_BARS": Param("battery_bars", BATTERY_BARS),
    },
    device_params={"MODEL": Param("model", text(braced=False))},
    warnings=(),
    sample=uhfr_sample,
    sample_fields=frozenset({"antenna", "rf_dbm", "battery_bars", "tx_present", "audio_dbfs"}),
    controls=frozenset(),
    name_max=8,
    name_width=0,
    device_name_width=8,
    freq_digits=6,
    tx_model_param=None,
    battery_param="TX_BAT",
    udp=True,
    keepalive_param="CHAN_NAME",
)

# PSM1000 (P10T), from bitfocus/companion-module-shure-psm1000 src/index.js (the GETs it sends), src/actions.js
# (SET strings: bare names, RF_MUTE 0|1, RF_TX_LVL 10|50|100) and src/internalAPI.js (it reads REPORT lines, and
# files the power level under RF_TX_LEVEL although it asks for RF_TX_LVL: both spellings are read).
PSM1000: Final = Family(
    key="psm1000",
    label="PSM1000",
    models={"P10T": 2},
    framing=ANGLE_CRLF,
    channel_params={
        "CHAN_NAME": Param("name", text(8)),
        "FREQUENCY": Param("frequency_mhz", frequency(6)),
        "GROUP_CHAN": Param("group_channel", GROUP_CHANNEL),
        "RF_TX_LVL": Param("tx_power", milliwatts()),
        "RF_TX_LEVEL": Param("tx_power", milliwatts()),
        # the P10T is the transmitter: its RF mute is the transmitter's mute (1 muted, 0 on air)
        "RF_MUTE": Param("tx_muted", switch(on="1", off="0")),
    },
    device_params={"DEVICE_NAME": Param("name", text(8))},
    warnings=(),
    sample=None,
    sample_fields=frozenset(),
    # DEVICE_NAME as a SET is sent by no public client (unverified); a P10T without it answers ERR, reported
    controls=frozenset(
        {CommandKind.NAME, CommandKind.FREQUENCY, CommandKind.RF_OUTPUT, CommandKind.DEVICE_NAME, CommandKind.TX_POWER}
    ),
    name_max=8,
    name_width=0,
    device_name_width=8,
    freq_digits=6,
    tx_model_param=None,
    battery_param=None,
    device_name_param="DEVICE_NAME",
    braced_names=False,
    tx_power_levels=("10mW", "50mW", "100mW"),  # SET n RF_TX_LVL 10|50|100 (CO PSM1000 src/actions.js, setup.js)
    keepalive_param="CHAN_NAME",
    transmitter=True,
)

# SET n SLOT_RF_POWER_MODE s LOW|NORMAL|HIGH (CO src/actions.js "slot_rf_power", ADX transmitters)
SLOT_RF_POWER_MODES: Final = ("low", "normal", "high")

MXW_CHARGED: Final = 65534


def mxw_time_to_full(value: str) -> dict[str, Any]:
    """MXW BATT_TIME_TO_FULL: minutes while charging, 65534 charged, 65535 not charging or unknown (CO MXW module
    src/internalAPI.js) -> battery_time_to_full_min and battery_charge_state."""
    minutes = number(width=5, unknown=(RUNTIME_UNKNOWN,), valid=(0, MXW_CHARGED)).decode(value)
    if minutes == MXW_CHARGED:
        return {"battery_time_to_full_min": None, "battery_charge_state": "charged"}
    return {"battery_time_to_full_min": minutes, "battery_charge_state": None if minutes is None else "charging"}


# Microflex Wireless access points and network interfaces, from bitfocus/companion-module-shure-mxw
# src/internalAPI.js (parameters and markers) and src/index.js (GET 0 ALL at connect). CO chooses the model by
# configuration; the hub reads MODEL (issue 17: an MXWAPT8 answers MODEL {MXWAPT8}). The SAMPLE layout CO reads
# for MXW is not clear from its source, so MXW is monitored without meters.
MXW: Final = Family(
    key="mxw",
    label="Microflex Wireless",
    models={"MXWAPT2": 2, "MXWAPT4": 4, "MXWAPT8": 8, "MXWANI4": 4, "MXWANI8": 8},
    framing=ANGLE,
    channel_params={
        "CHAN_NAME": Param("name", text(31)),
        "AUDIO_GAIN": Param("gain_db", number(offset=25, valid=(-25, 15))),  # 0..40 is -25..+15 dB
        "TX_TYPE": Param("tx_model", enum_text("UNKNOWN")),  # MXW1 | MXW2 | MXW6 | MXW8
        "TX_DEVICE_ID": Param("tx_id", text(12)),
        "TX_AVAILABLE": Param("tx_present", switch(on="YES", off="NO")),
        # ACTIVE | MUTE | STANDBY | ON_CHARGER: only the first two say whether it is muted
        "TX_STATUS": Param("tx_muted", switch(on="MUTE", off="ACTIVE")),
        "BUTTON_STS": Param("tx_talk_switch", ON_OFF),
        "TX_BATT_CHARGE": Param("battery_percent", PERCENT),
        "BATT_HEALTH": Param("battery_health_percent", PERCENT),
        # 65534 calculating, 65533 charging, 65532 on wall power: no runtime to show
        "BATT_RUN_TIME": Param(
            "battery_runtime_min", number(width=5, unknown=(65535, 65534, 65533, 65532), valid=(0, 65531))
        ),
        "BATT_TIME_TO_FULL": Param(
            "battery_time_to_full_min", text(), split=mxw_time_to_full, also=("battery_charge_state",)
        ),
    },
    # CO-MXW tracks DEVICE_ID (31) and no FW_VER
    device_params={"DEVICE_ID": Param("name", text(31)), "MODEL": Param("model", text(32))},
    warnings=(),
    sample=None,
    sample_fields=frozenset(),
    controls=frozenset({CommandKind.NAME, CommandKind.IDENTIFY, CommandKind.DEVICE_NAME}),
    name_max=31,
    name_width=31,
    device_name_width=31,
    freq_digits=0,
    tx_model_param=None,  # presence is TX_AVAILABLE itself
    battery_param=None,
    channel_flash=True,
    # Shure's MXW command strings: settings may change while TX_AVAILABLE is NO, and a client asks for them
    # when it turns YES; CO-MXW sends these GETs then (src/internalAPI.js, TX_AVAILABLE)
    arrival_params=(
        "TX_STATUS",
        "TX_DEVICE_ID",
        "AUDIO_GAIN",
        "BATT_RUN_TIME",
        "TX_BATT_CHARGE",
        "BATT_HEALTH",
        "BUTTON_STS",
        "TX_TYPE",
        "BATT_TIME_TO_FULL",
    ),
)

# Charger bay markers (CO chargers module src/internalAPI.js): 65535 unknown, 65534 error, 65533 calculating,
# 65529 target reached. A public SBC220 capture (firmware 1.4.53) shows a faulted bay at BATT_CYCLE 65534 and
# BATT_CHARGE / BATT_HEALTH / BATT_BARS 254: the top eight codes of each range are read as unknown.
CHARGER_WORD: Final = number(width=5, unknown=(65535,), valid=(0, 65527))

# Networked battery chargers, from bitfocus/companion-module-shure-chargers src/setup.js (models, bays),
# src/internalAPI.js (per-bay BATT_* reports) and src/index.js (GET 0 ALL at connect). A charger is a device
# whose channels are bays. CO picks the model by configuration: what a charger answers to GET MODEL is not
# public, so the names below are matched as the other families' are (unverified). SBC220/SBC240 report 2 bays
# per unit and chain up to 4 units: 8 bays, of which those of absent units report no battery.
CHARGER: Final = Family(
    key="charger",
    label="networked charger",
    models={"SBRC": 8, "SBC220": 8, "SBC240": 8},
    framing=ANGLE,
    channel_params={
        "BATT_DETECTED": Param("tx_present", switch(on="YES", off="NO")),  # a battery sits in the bay
        "BATT_CHARGE": Param("battery_percent", number(valid=(0, 100))),
        "BATT_HEALTH": Param("battery_health_percent", number(valid=(0, 100))),
        "BATT_BARS": Param("battery_bars", BATTERY_BARS),
        "BATT_CYCLE": Param("battery_cycles", CHARGER_WORD),
        # degrees C + 40 on the wire like every Shure BATT_TEMP_*: CO-CHG read it as it came until its commit
        # 7319b59 ("fix: Battery temperature offset", 2026-03), which subtracts 40 below 254
        "BATT_TEMP_C": Param("battery_temp_c", BATTERY_TEMP),
        "BATT_TIME_TO_FULL": Param("battery_time_to_full_min", CHARGER_WORD),
        # FULL | CALCULATING | NORMAL | WARM | HOT | COLD | PRECHARGE | READY_TO_STORE | DISCHARGING | ERROR | ...
        "BATT_STATE": Param("battery_charge_state", word(unknown=UNKNOWN_TEXT | {"NO_BATT"})),
    },
    device_params={"DEVICE_ID": Param("name", text(8)), "FW_VER": Param("firmware", text(24))},
    warnings=(
        # 000 no error; 001 unknown module ... 007 communication failure; 255 no data
        WarningRule("battery_error", "BATT_ERROR", frozenset(f"{code:03d}" for code in range(1, 8)), "000"),
    ),
    sample=None,
    sample_fields=frozenset(),
    controls=frozenset({CommandKind.IDENTIFY, CommandKind.DEVICE_NAME}),
    name_max=8,
    name_width=0,
    device_name_width=8,
    freq_digits=0,
    tx_model_param=None,
    battery_param=None,
    keepalive_param="BATT_CHARGE",
)

FAMILIES: Final = {family.key: family for family in (ULXD, QLXD, AXIENT, SLXD, SLXD_PLUS, UHFR, PSM1000, MXW, CHARGER)}


def family_of_model(model: str) -> tuple[Family, str, int] | None:
    """A MODEL reply (``AD4Q-A``, ``SLXD4D``, ``SLXD4QDAN+``) -> (family, model, channel count)."""
    wanted = model.strip().upper().replace(" ", "")
    for family in FAMILIES.values():
        for name, channels in family.models.items():
            # AD appends the band after a dash (AD4Q-A); SLX-D+ names end in "+"
            if wanted == name or wanted.split("-", 1)[0] == name:
                return family, name, channels
    return None


def supported_families() -> list[str]:
    """What to name when a device is none of these: family labels with their models."""
    return [f"{family.label} ({'/'.join(family.models)})" for family in FAMILIES.values()]


@dataclass(frozen=True, slots=True)
class SetRequest:
    """A validated SET: what to send, which REP confirms it and the value that REP should carry."""

    channel: int | None
    param: str
    values: tuple[str, ...]
    index: int | None = None
    expected: Any = None  # None: accept whatever the device reports (toggle, step)
    confirm: Callable[[Report], Any] = field(default=lambda report: report.value)


def _decoded(codec: Codec) -> Callable[[Report], Any]:
    return lambda report: codec.decode(report.value)


def check_name(name: object, limit: int, braced: bool = True) -> str:
    """A name the receiver can take and its echo confirm. ``braced``: the family's names travel in braces;
    a bare one is read back with each run of spaces made one, so a name with two in a row is refused."""
    if not isinstance(name, str) or not name:
        raise InvalidValueError("a name must be a non-empty string")
    if len(name) > limit:
        raise InvalidValueError(f"name {name!r} is {len(name)} characters; this receiver takes at most {limit}")
    bad = sorted({char for char in name if not " " <= char <= "~" or char in NAME_FORBIDDEN})
    if bad:
        raise InvalidValueError(
            f"name {name!r} contains {''.join(bad)!r}; allowed are ASCII letters, digits, space and punctuation "
            "other than {} <> *"
        )
    if name != name.strip():
        raise InvalidValueError(f"name {name!r} starts or ends with a space, which the receiver drops")
    if not braced and "  " in name:
        raise InvalidValueError(f"name {name!r} has two spaces in a row, which this receiver's bare names cannot carry")
    return name


def _whole_number(value: object, what: str) -> int:
    # NaN and infinity arrive from JSON edges (Python's json accepts them) and must be refused, not crash
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InvalidValueError(f"{what} must be a whole number, got {value!r}")


def check_gain(value: object) -> int:
    db = _whole_number(value, "gain (dB)")
    if not GAIN_MIN_DB <= db <= GAIN_MAX_DB:
        raise InvalidValueError(f"gain {db} dB is outside {GAIN_MIN_DB}..+{GAIN_MAX_DB} dB (1 dB steps)")
    return db


def check_frequency(value: object, digits: int) -> int:
    # the range test also refuses NaN, infinity and integers too large for a float
    if isinstance(value, bool) or not isinstance(value, int | float) or not -1e9 < value < 1e9:
        raise InvalidValueError(f"frequency must be a number of MHz, got {value!r}")
    khz = round(float(value) * 1000)
    if abs(khz - float(value) * 1000) > 1e-6:
        raise InvalidValueError(f"frequency {value} MHz is not a whole number of kHz")
    if not 100_000 <= khz < 1_000_000:
        raise InvalidValueError(f"frequency {value} MHz is outside 100.000..999.999 MHz")
    return khz


def check_meter_rate(value: object) -> int:
    rate = _whole_number(value, "meter rate (ms)")
    if rate != 0 and not METER_RATE_MIN_MS <= rate <= METER_RATE_MAX_MS:
        raise InvalidValueError(f"meter rate {rate} ms must be 0 (off) or {METER_RATE_MIN_MS}..{METER_RATE_MAX_MS} ms")
    return rate


def _slot_of(command: Command, family: Family) -> int:
    slot = command.slot
    if slot is None or not 1 <= slot <= family.slots:
        raise InvalidValueError(f"{command.kind.value} needs a ShowLink slot 1..{family.slots}, got {slot!r}")
    return slot


def build_set(family: Family, command: Command, gain_now: float | None = None) -> SetRequest:
    """Validate ``command`` against ``family``'s limits and build its SET; raise before anything is sent."""
    kind = command.kind
    if kind not in family.controls:
        raise NotSupportedError(f"{family.label} receivers have no {kind.value} control")
    channel = command.channel
    needs_channel = kind not in (CommandKind.IDENTIFY, CommandKind.METER_RATE, CommandKind.DEVICE_NAME)
    if needs_channel and channel is None:
        raise InvalidValueError(f"{kind.value} needs a channel")
    value = command.value
    if kind is CommandKind.NAME:
        name = check_name(value, family.name_max, family.braced_names)
        wire = brace(name) if family.braced_names else name
        return SetRequest(channel, "CHAN_NAME", (wire,), expected=name, confirm=_decoded(text()))
    if kind is CommandKind.DEVICE_NAME:
        name = check_name(value, family.device_name_width, family.braced_names)
        wire = brace(name) if family.braced_names else name
        return SetRequest(None, family.device_name_param, (wire,), expected=name, confirm=_decoded(text()))
    if kind is CommandKind.MUTE:
        if value == "toggle":
            return SetRequest(channel, "AUDIO_MUTE", ("TOGGLE",), confirm=_decoded(ON_OFF))
        if not isinstance(value, bool):
            raise InvalidValueError(f"mute takes true, false or 'toggle', got {value!r}")
        return SetRequest(channel, "AUDIO_MUTE", (ON_OFF.encode(value),), expected=value, confirm=_decoded(ON_OFF))
    if kind is CommandKind.GAIN:
        db = check_gain(value)
        return SetRequest(channel, "AUDIO_GAIN", (GAIN.encode(db),), expected=db, confirm=_decoded(GAIN))
    if kind is CommandKind.GAIN_STEP:
        step = _whole_number(value, "gain step (dB)")
        if step == 0:
            raise InvalidValueError("a gain step of 0 dB changes nothing")
        if gain_now is not None:
            check_gain(gain_now + step)
        elif abs(step) > GAIN_MAX_DB - GAIN_MIN_DB:
            raise InvalidValueError(f"gain step {step} dB is larger than the whole range")
        verb = "INC" if step > 0 else "DEC"
        return SetRequest(channel, "AUDIO_GAIN", (verb, str(abs(step))), confirm=_decoded(GAIN))
    if kind is CommandKind.FREQUENCY:
        khz = check_frequency(value, family.freq_digits)
        codec = frequency(family.freq_digits)
        return SetRequest(
            channel, "FREQUENCY", (f"{khz:0{family.freq_digits}d}",), expected=khz / 1000, confirm=_decoded(codec)
        )
    if kind is CommandKind.IDENTIFY:
        flash_channel = channel if family.channel_flash else None
        return SetRequest(flash_channel, "FLASH", ("ON",), confirm=lambda report: report.value.upper() == "ON")
    if kind is CommandKind.METER_RATE:
        rate = check_meter_rate(value)
        return SetRequest(0, "METER_RATE", (f"{rate:05d}",), expected=rate, confirm=_decoded(number(width=5)))
    if kind is CommandKind.RF_OUTPUT and not family.slots:
        # a transmitter without slots (P10T): RF_MUTE 1 takes it off air, 0 puts it back (CO PSM1000 actions.js)
        if not isinstance(value, bool):
            raise InvalidValueError(f"rf_output takes true (RF on) or false (RF muted), got {value!r}")
        return SetRequest(
            channel, "RF_MUTE", ("0" if value else "1",), expected=value, confirm=lambda report: report.value == "0"
        )
    if kind is CommandKind.TX_POWER:
        if value not in family.tx_power_levels:
            levels = ", ".join(family.tx_power_levels)
            raise InvalidValueError(f"tx_power takes one of {levels}, got {value!r}")
        return SetRequest(
            channel,
            "RF_TX_LVL",
            (str(value).removesuffix("mW"),),
            expected=value,
            confirm=_decoded(milliwatts()),
        )
    if kind is CommandKind.SLOT_RF_POWER_MODE:
        slot = _slot_of(command, family)
        if value not in SLOT_RF_POWER_MODES:
            raise InvalidValueError(f"slot_rf_power_mode takes one of {', '.join(SLOT_RF_POWER_MODES)}, got {value!r}")
        mode = word()
        return SetRequest(
            channel, "SLOT_RF_POWER_MODE", (mode.encode(value),), index=slot, expected=value, confirm=_decoded(mode)
        )
    if kind is CommandKind.RF_OUTPUT:
        slot = _slot_of(command, family)
        if not isinstance(value, bool):
            raise InvalidValueError(f"rf_output takes true (RF on) or false (RF muted), got {value!r}")
        return SetRequest(
            channel,
            "SLOT_RF_OUTPUT",
            ("RF_ON" if value else "RF_MUTE",),
            index=slot,
            expected=value,
            confirm=lambda report: report.value.upper() == "RF_ON",
        )
    raise NotSupportedError(f"{family.label} receivers have no {kind.value} control")
