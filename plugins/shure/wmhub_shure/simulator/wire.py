"""The simulator's own encoding of each Shure family: what a receiver sends, written from the protocol
reference and checked against the conformance corpus (tests/transcripts), never taken from the driver.

A simulator built from the driver's tables would repeat any mistake the driver makes, so a wrong offset or
padding would pass in both directions. These tables say only how a device encodes its state; the driver
decodes with its own (wmhub_shure.families), and tests compare the two through real sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from wmhub_shure.protocol import ANGLE, ANGLE_CRLF, STAR, Framing

GAIN_OFFSET: Final = 18  # AUDIO_GAIN 000..060 is -18..+42 dB
UNKNOWN_NUMBER: Final = 255
UNKNOWN_RUNTIME: Final = 65535
ANTENNAS: Final = "ABCD"

Encoder = Callable[[Any], str]


def padded(width: int) -> Encoder:
    """A brace field right-padded with spaces to ``width`` (0: as long as the text)."""
    return lambda value: "{" + ("" if value is None else str(value)).ljust(width) + "}"


def bare(unknown: str) -> Encoder:
    """A bare token; ``unknown`` when the value is not known (UNKN or UNKNOWN, by family)."""
    return lambda value: unknown if value is None else str(value)


def digits(count: int, offset: int = 0, unknown: int = UNKNOWN_NUMBER, per_step: int = 1) -> Encoder:
    """A zero-padded number: (value / per_step) + offset, or the family's unknown marker."""
    return lambda value: f"{unknown if value is None else int(value) // per_step + offset:0{count}d}"


def khz(count: int) -> Encoder:
    """A frequency in MHz as kHz digits without a decimal point (AD/SLX-D 7 with a leading zero)."""
    return lambda value: "0" * count if value is None else f"{round(float(value) * 1000):0{count}d}"


def on_off(on: str = "ON", off: str = "OFF", unknown: str = "UNKN") -> Encoder:
    return lambda value: unknown if value is None else on if value else off


def preset() -> Encoder:
    """AD/SLX-D GROUP_CHANNEL: ``{1,12 }`` padded to 5, ``{--,--}`` with no preset chosen (MB-API, SX-PROTO)."""
    return lambda value: "{" + (value or "--,--").ljust(5) + "}"


def upper_word(unknown: str = "UNKN") -> Encoder:
    """A model enum in lower case (``normal``, ``menu``) sent as the device's upper-case token."""
    return lambda value: unknown if value is None else str(value).upper()


def milliwatts() -> Encoder:
    """``10mW`` -> ``010`` (AD TX_POWER_LEVEL, 255 unknown)."""
    return lambda value: f"{UNKNOWN_NUMBER if value is None else int(str(value).removesuffix('mW')):03d}"


def lock_share(share: str) -> Encoder:
    """ULX-D's TX_PWR_LOCK / TX_MENU_LOCK: ON when the model's lock (none|power|menu|all) includes ``share``."""
    return lambda value: "UNKN" if value is None else "ON" if value in (share, "all") else "OFF"


def antenna_marks(letters: str | None, count: int, active: str | None) -> str:
    """The antenna field: one character per antenna, X when idle, else ``active`` (None: its own letter)."""
    chosen = letters or ""
    return "".join((active or ANTENNAS[i]) if ANTENNAS[i] in chosen else "X" for i in range(count))


def antenna(active: str | None) -> Encoder:
    return lambda value: antenna_marks(value, 2, active)


@dataclass(frozen=True, slots=True)
class WireParam:
    """A parameter the device reports and the model field its value comes from; an ``alternate`` is a second
    spelling of another parameter, sent only when a simulator is told to use it."""

    field: str
    encode: Encoder
    alternate: bool = False


@dataclass(frozen=True, slots=True)
class WireWarning:
    """A parameter value that stands for a channel warning; ``clear_value`` "" when the marker rides on a
    value parameter (battery runtime 65534 / 65533)."""

    warning: str
    param: str
    raised_by: frozenset[str]
    clear_value: str


@dataclass(frozen=True)
class WireFamily:
    """How one family's receivers talk: the simulator's counterpart of the driver's Family."""

    key: str
    framing: Framing
    channel_params: Mapping[str, WireParam]
    device_params: Mapping[str, WireParam]
    warnings: tuple[WireWarning, ...]
    sample_fields: frozenset[str]
    name_max: int  # longest name a SET takes
    name_width: int  # brace width of CHAN_NAME reports (0: bare names)
    device_name_width: int
    freq_digits: int
    tx_model_param: str | None
    battery_param: str | None
    rssi_antennas: int = 0  # RSSI reported per antenna (AD, SLX-D); 0: one diversity value (SLX-D+)
    channel_flash: bool = False
    slots: int = 0
    udp: bool = False
    device_name_param: str = "DEVICE_ID"
    reply_verb: str = "REP"  # UHF-R and the P10T answer REPORT
    encryption_param: str | None = None  # the channel status that reports mismatched keys
    network: bool = False  # answers GET NET_SETTINGS SC with its address and MAC (SLX-D+)
    meter_rate: bool = True  # has METER_RATE; a charger answers it with ERR (a public SBC220 note)

    @property
    def meters(self) -> bool:
        return bool(self.sample_fields)

    @property
    def fields(self) -> frozenset[str]:
        """Every channel field a receiver of this family reports, as the hub should show it."""
        names = {param.field for param in self.channel_params.values()} | set(self.sample_fields)
        if self.warnings:
            names.add("warnings")
        if self.tx_model_param or self.battery_param:
            names.add("tx_present")
        if self.encryption_param:
            names.add("encryption")
        return frozenset(names)

    def warnings_for(self, param: str) -> tuple[WireWarning, ...]:
        return tuple(rule for rule in self.warnings if rule.param == param)


def _runtime_markers(param: str) -> tuple[WireWarning, ...]:
    return (
        WireWarning("battery_runtime_calculating", param, frozenset({"65534"}), ""),
        WireWarning("battery_communication_warning", param, frozenset({"65533"}), ""),
    )


INTERFERENCE_AD: Final = WireWarning("interference", "INTERFERENCE_STATUS", frozenset({"DETECTED"}), "NONE")
ENCRYPTION_AD: Final = WireWarning("encryption", "ENCRYPTION_STATUS", frozenset({"ERROR"}), "OK")


def _receiver(id_width: int, firmware_width: int, model: bool) -> dict[str, WireParam]:
    params = {"DEVICE_ID": WireParam("name", padded(id_width)), "FW_VER": WireParam("firmware", padded(firmware_width))}
    if model:
        params["MODEL"] = WireParam("model", padded(32))
    return params


def _ulx(key: str, mute: bool) -> WireFamily:
    channel = {
        "CHAN_NAME": WireParam("name", padded(8)),
        "FREQUENCY": WireParam("frequency_mhz", khz(6)),
        "AUDIO_GAIN": WireParam("gain_db", digits(3, GAIN_OFFSET)),
        "TX_TYPE": WireParam("tx_model", bare("UNKN")),
        "TX_MUTE_STATUS": WireParam("tx_muted", on_off()),
        "BATT_BARS": WireParam("battery_bars", digits(3)),
        "BATT_CHARGE": WireParam("battery_percent", digits(3)),
        "BATT_RUN_TIME": WireParam("battery_runtime_min", digits(5, unknown=UNKNOWN_RUNTIME)),
        "BATT_TYPE": WireParam("battery_type", bare("UNKN")),
        "RX_RF_LVL": WireParam("rf_dbm", digits(3, 128)),
        "AUDIO_LVL": WireParam("audio_dbfs", digits(3, 50)),
        "RF_ANTENNA": WireParam("antenna", antenna(None)),
        # CO src/internalAPI.js getChannel: the ulx-d/qlx-d rx and tx parameter lists
        "GROUP_CHAN": WireParam("group_channel", bare("--,--")),
        "TX_DEVICE_ID": WireParam("tx_id", padded(8)),
        "TX_OFFSET": WireParam("tx_offset_db", digits(3)),
        "TX_RF_PWR": WireParam("tx_power", upper_word()),
        "TX_PWR_LOCK": WireParam("tx_locked", lock_share("power")),
        "TX_MENU_LOCK": WireParam("tx_locked", lock_share("menu")),
        "TX_MUTE_BUTTON_STATUS": WireParam("tx_talk_switch", on_off(on="PRESSED", off="RELEASED")),
        "BATT_CYCLE": WireParam("battery_cycles", digits(5, unknown=UNKNOWN_RUNTIME)),
        "BATT_TEMP_C": WireParam("battery_temp_c", digits(3, 40)),
    }
    if mute:
        channel["AUDIO_MUTE"] = WireParam("muted", on_off())
    interference = (WireWarning("interference", "RF_INT_DET", frozenset({"CRITICAL"}), "NONE"),) if mute else ()
    return WireFamily(
        key=key,
        framing=ANGLE,
        channel_params=channel,
        device_params={**_receiver(8, 18, model=False), "ENCRYPTION": WireParam("encryption_mode", upper_word())},
        warnings=(
            *interference,
            WireWarning("encryption", "ENCRYPTION_WARNING", frozenset({"ON"}), "OFF"),
            *_runtime_markers("BATT_RUN_TIME"),
        ),
        sample_fields=frozenset({"antenna", "rf_dbm", "audio_dbfs"}),
        name_max=8,
        name_width=8,
        device_name_width=8,
        freq_digits=6,
        tx_model_param="TX_TYPE",
        battery_param="BATT_BARS",
        encryption_param="ENCRYPTION_WARNING",
    )


def _slx(key: str, plus: bool) -> WireFamily:
    model = WireParam("tx_model", bare("UNKNOWN"))
    channel = {
        "CHAN_NAME": WireParam("name", padded(31)),
        "FREQUENCY": WireParam("frequency_mhz", khz(7)),
        "AUDIO_GAIN": WireParam("gain_db", digits(3, GAIN_OFFSET)),
        "TX_MODEL": model,
        "TX_TYPE": WireParam("tx_model", bare("UNKNOWN"), alternate=True),  # some firmware and pyslxd's mock
        "TX_BATT_BARS": WireParam("battery_bars", digits(3)),
        "TX_BATT_MINS": WireParam("battery_runtime_min", digits(5, unknown=UNKNOWN_RUNTIME)),
        "AUDIO_LEVEL_RMS": WireParam("audio_dbfs", digits(3, 120)),
        "RSSI": WireParam("rf_dbm", digits(3, 120)),
        "GROUP_CHANNEL": WireParam("group_channel", preset()),
    }
    device = {
        **_receiver(8, 24, model=True),
        "RF_BAND": WireParam("rf_band", padded(8)),
        "LOCK_STATUS": WireParam("front_panel_locked", on_off(on="ALL")),
    }
    if plus:
        channel["ANTENNA_STATUS"] = WireParam("antenna", antenna("B"))
        device["ENCRYPTION_MODE"] = WireParam("encryption_mode", upper_word())
        device["NA_DEVICE_NAME"] = WireParam("dante_name", padded(31))
    return WireFamily(
        key=key,
        framing=ANGLE,
        channel_params=channel,
        device_params=device,
        warnings=(*((INTERFERENCE_AD, ENCRYPTION_AD) if plus else ()), *_runtime_markers("TX_BATT_MINS")),
        sample_fields=frozenset({"audio_peak_dbfs", "audio_dbfs", "rf_dbm"}),
        name_max=8,
        name_width=31,
        device_name_width=8,
        freq_digits=7,
        tx_model_param="TX_MODEL",
        battery_param="TX_BATT_BARS",
        rssi_antennas=0 if plus else 2,  # SLX-D+ sends one diversity RSSI (CO SLX-D+ notes, fw 2.0.38.9)
        channel_flash=True,
        slots=2 if plus else 0,
        encryption_param="ENCRYPTION_STATUS" if plus else None,
        network=plus,
    )


ULXD: Final = _ulx("ulxd", mute=True)
QLXD: Final = _ulx("qlxd", mute=False)
SLXD: Final = _slx("slxd", plus=False)
SLXD_PLUS: Final = _slx("slxd_plus", plus=True)

AXIENT: Final = WireFamily(
    key="axient",
    framing=ANGLE,
    channel_params={
        "CHAN_NAME": WireParam("name", padded(31)),
        "FREQUENCY": WireParam("frequency_mhz", khz(7)),
        "AUDIO_GAIN": WireParam("gain_db", digits(3, GAIN_OFFSET)),
        "AUDIO_MUTE": WireParam("muted", on_off()),
        "TX_MODEL": WireParam("tx_model", bare("UNKNOWN")),
        "TX_MUTE_MODE_STATUS": WireParam("tx_muted", on_off(on="MUTE", off="ON", unknown="UNKNOWN")),  # MB api.md
        "TX_BATT_BARS": WireParam("battery_bars", digits(3)),
        "TX_BATT_CHARGE_PERCENT": WireParam("battery_percent", digits(3)),
        "TX_BATT_MINS": WireParam("battery_runtime_min", digits(5, unknown=UNKNOWN_RUNTIME)),
        "TX_BATT_TYPE": WireParam("battery_type", bare("UNKN")),
        "AUDIO_LEVEL_RMS": WireParam("audio_dbfs", digits(3, 120)),
        "CHAN_QUALITY": WireParam("rf_quality_percent", digits(3, per_step=20)),
        "RSSI": WireParam("rf_dbm", digits(3, 120)),
        "ANTENNA_STATUS": WireParam("antenna", antenna("B")),
        # CO src/internalAPI.js getChannel: the ad rx and tx parameter lists
        "GROUP_CHANNEL": WireParam("group_channel", preset()),
        "FREQUENCY2": WireParam("frequency2_mhz", khz(7)),
        "TX_DEVICE_ID": WireParam("tx_id", padded(31)),
        "TX_OFFSET": WireParam("tx_offset_db", digits(3, 12)),
        "TX_POWER_LEVEL": WireParam("tx_power", milliwatts()),
        "TX_LOCK": WireParam("tx_locked", upper_word("UNKNOWN")),
        "TX_TALK_SWITCH": WireParam("tx_talk_switch", on_off(unknown="UNKNOWN")),
        "TX_BATT_HEALTH_PERCENT": WireParam("battery_health_percent", digits(3)),
        "TX_BATT_CYCLE_COUNT": WireParam("battery_cycles", digits(5, unknown=UNKNOWN_RUNTIME)),
        "TX_BATT_TEMP_C": WireParam("battery_temp_c", digits(3, 40)),
    },
    device_params={
        **_receiver(31, 24, model=True),
        "RF_BAND": WireParam("rf_band", padded(8)),
        "ENCRYPTION_MODE": WireParam("encryption_mode", upper_word()),
    },
    warnings=(
        INTERFERENCE_AD,
        ENCRYPTION_AD,
        WireWarning("unregistered_tx", "UNREGISTERED_TX_STATUS", frozenset({"ERROR"}), "OK"),
        *_runtime_markers("TX_BATT_MINS"),
    ),
    sample_fields=frozenset(
        {"rf_quality_percent", "audio_peak", "audio_peak_dbfs", "audio_dbfs", "antenna", "rf_dbm", "rf_antennas"}
    ),
    name_max=31,
    name_width=31,
    device_name_width=31,
    freq_digits=7,
    tx_model_param="TX_MODEL",
    battery_param="TX_BATT_BARS",
    rssi_antennas=2,
    channel_flash=True,
    slots=8,
    encryption_param="ENCRYPTION_STATUS",
)

UHFR: Final = WireFamily(
    key="uhfr",
    framing=STAR,
    channel_params={
        "CHAN_NAME": WireParam("name", bare("")),  # bare names in the only public fixture (WB)
        "FREQUENCY": WireParam("frequency_mhz", khz(6)),
        "TX_BAT": WireParam("battery_bars", digits(3)),
        "BATT_BARS": WireParam("battery_bars", digits(3), alternate=True),
    },
    device_params={"MODEL": WireParam("model", bare(""))},
    warnings=(),
    sample_fields=frozenset({"antenna", "rf_dbm", "battery_bars", "tx_present", "audio_dbfs"}),
    name_max=8,
    name_width=0,
    device_name_width=8,
    freq_digits=6,
    tx_model_param=None,
    battery_param="TX_BAT",
    udp=True,
    reply_verb="REPORT",
)

# The P10T as bitfocus/companion-module-shure-psm1000 talks to it: REPORT replies with bare values (its parser
# splits them on spaces and keeps no braces), RF_MUTE 1|0, RF_TX_LVL in mW without padding (10|50|100).
PSM1000: Final = WireFamily(
    key="psm1000",
    framing=ANGLE_CRLF,
    channel_params={
        "CHAN_NAME": WireParam("name", bare("")),
        "FREQUENCY": WireParam("frequency_mhz", khz(6)),
        "GROUP_CHAN": WireParam("group_channel", bare("--,--")),
        "RF_TX_LVL": WireParam("tx_power", lambda value: "UNKN" if value is None else str(value).removesuffix("mW")),
        "RF_MUTE": WireParam("tx_muted", on_off(on="1", off="0")),
    },
    device_params={"DEVICE_NAME": WireParam("name", bare(""))},  # no FW_VER in CO's PSM1000 module
    warnings=(),
    sample_fields=frozenset(),
    name_max=8,
    name_width=0,
    device_name_width=8,
    freq_digits=6,
    tx_model_param=None,
    battery_param=None,
    device_name_param="DEVICE_NAME",
    reply_verb="REPORT",
)

# An MXW access point as bitfocus/companion-module-shure-mxw src/internalAPI.js describes its reports; no SAMPLE
# (the layout is unclear there), so no meters.
MXW: Final = WireFamily(
    key="mxw",
    framing=ANGLE,
    channel_params={
        "CHAN_NAME": WireParam("name", padded(31)),
        "AUDIO_GAIN": WireParam("gain_db", digits(3, 25)),
        "TX_TYPE": WireParam("tx_model", bare("UNKNOWN")),
        "TX_DEVICE_ID": WireParam("tx_id", padded(12)),
        "TX_AVAILABLE": WireParam("tx_present", on_off(on="YES", off="NO")),
        "TX_STATUS": WireParam("tx_muted", on_off(on="MUTE", off="ACTIVE", unknown="UNKNOWN")),
        "BUTTON_STS": WireParam("tx_talk_switch", on_off(unknown="UNKNOWN")),
        "TX_BATT_CHARGE": WireParam("battery_percent", digits(3)),
        "BATT_HEALTH": WireParam("battery_health_percent", digits(3)),
        "BATT_RUN_TIME": WireParam("battery_runtime_min", digits(5, unknown=UNKNOWN_RUNTIME)),
        "BATT_TIME_TO_FULL": WireParam("battery_time_to_full_min", digits(5, unknown=UNKNOWN_RUNTIME)),
    },
    device_params={"DEVICE_ID": WireParam("name", padded(31)), "MODEL": WireParam("model", padded(32))},
    warnings=(),
    sample_fields=frozenset(),
    name_max=31,
    name_width=31,
    device_name_width=31,
    freq_digits=0,
    tx_model_param=None,
    battery_param=None,
    channel_flash=True,
)

# A networked charger as bitfocus/companion-module-shure-chargers src/internalAPI.js reads it: each bay a channel
# of BATT_* reports, 255 / 65535 when unknown, BATT_ERROR 000 when the bay is fine.
CHARGER: Final = WireFamily(
    key="charger",
    framing=ANGLE,
    channel_params={
        "BATT_DETECTED": WireParam("tx_present", on_off(on="YES", off="NO")),
        "BATT_CHARGE": WireParam("battery_percent", digits(3)),
        "BATT_HEALTH": WireParam("battery_health_percent", digits(3)),
        "BATT_BARS": WireParam("battery_bars", digits(3)),
        "BATT_CYCLE": WireParam("battery_cycles", digits(5, unknown=65535)),
        "BATT_TEMP_C": WireParam("battery_temp_c", digits(3, 40)),
        "BATT_TIME_TO_FULL": WireParam("battery_time_to_full_min", digits(5, unknown=65535)),
        "BATT_STATE": WireParam("battery_charge_state", upper_word("NO_BATT")),
    },
    device_params=_receiver(8, 24, model=True),
    warnings=(WireWarning("battery_error", "BATT_ERROR", frozenset({"007"}), "000"),),
    sample_fields=frozenset(),
    name_max=8,
    name_width=0,
    device_name_width=8,
    freq_digits=0,
    tx_model_param=None,
    battery_param=None,
    meter_rate=False,
)
