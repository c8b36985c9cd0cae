"""What each Sennheiser family reports and accepts, for the hub (``device_capabilities``).

SSCv1 command limits are read off the family tables (each control's NameRule or Range); the channel fields
are listed here because the tables map leaves to fields through converters that cannot be read back. Each
list names the fields the family's converters and meter decoders ever fill with a value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final

from hub.model import Capabilities, CommandKind, CommandLimits, NumberLimits, TextLimits
from wmhub_sennheiser import ewdx_ssc2
from wmhub_sennheiser.families import (
    CHG70N,
    EM6000,
    EWDX,
    MCP_NAME,
    SLDW,
    Control,
    NameRule,
    Range,
    SscFamily,
)
from wmhub_sennheiser.mcp import EM_FAMILY as G4_FAMILY
from wmhub_sennheiser.mcp import FALLBACK_RF_CONFIG, RfConfig
from wmhub_sennheiser.mcp import SR_FAMILY as IEM_FAMILY
from wmhub_sennheiser.ssc2 import DEVICE_NAME_MAX_CHARS, FREQUENCY_RANGE_KHZ, FREQUENCY_STEP_KHZ, MOBILE_NAME

_TRANSMITTER: Final = frozenset({"tx_present", "battery_percent", "battery_runtime_min", "warnings"})
_SSC1_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    EWDX.label: _TRANSMITTER
    | {"name", "frequency_mhz", "muted", "gain_db", "battery_type", "tx_muted", "tx_model"}
    | {"rf_quality_percent", "antenna", "rf_dbm", "audio_dbfs", "tx_locked", "tx_offset_db"},
    EM6000.label: _TRANSMITTER
    | {"name", "frequency_mhz", "muted", "tx_model", "rf_dbm", "antenna", "rf_quality_percent", "audio_dbfs"}
    | {"rf_antennas", "audio_peak", "group_channel", "encryption", "tx_locked"},
    SLDW.label: _TRANSMITTER
    | {"name", "muted", "battery_bars", "battery_health_percent", "battery_cycles", "rf_quality_percent"},
    # a charger's channels are its bays: the device in each and its battery
    CHG70N.label: frozenset({"tx_present", "tx_model", "tx_id", "battery_percent", "battery_health_percent"})
    | {"battery_cycles", "battery_time_to_full_min", "battery_charge_state", "warnings"},
}
_G4_FIELDS: Final = (_TRANSMITTER - {"battery_runtime_min"}) | {
    "name", "frequency_mhz", "muted", "tx_muted", "rf_quality_percent", "antenna", "audio_dbfs", "audio_peak",
    "rf_antennas", "group_channel",
}  # fmt: skip
# the in-ear transmitter's one channel is itself: muted is its RF mute, tx_offset_db its input sensitivity
_IEM_FIELDS: Final = frozenset(
    {"name", "frequency_mhz", "muted", "group_channel", "audio_dbfs", "audio_peak", "tx_offset_db", "warnings"}
)
# SSCv2 (Spectera, TCC-M, EW-DX over SSCv2): one hub channel per paired mobile device
_SSC2_FIELDS: Final = _TRANSMITTER | {
    "name", "frequency_mhz", "rf_bandwidth_khz", "tx_model", "tx_id", "rf_quality_percent", "rf_dbm", "antenna",
    "audio_dbfs", "audio_peak",
}  # fmt: skip
_SSC2_FAMILIES: Final = ("spectera", "tcc-m", "sscv2")
# EW-DX over SSCv2: fixed receiver channels and their transmitters (wmhub_sennheiser.ewdx_ssc2)
_EWDX_SSC2_FIELDS: Final = _TRANSMITTER | {
    "name", "frequency_mhz", "group_channel", "muted", "gain_db", "rf_dbm", "rf_quality_percent", "antenna",
    "audio_dbfs", "tx_model", "tx_muted", "tx_locked", "tx_offset_db", "battery_type",
}  # fmt: skip


def _text(rule: NameRule) -> TextLimits:
    # anchored: Home Assistant matches a text entity's pattern from the start only
    return TextLimits(max_length=rule.max_length, pattern=f"^(?:{rule.pattern})$", allowed=f"only {rule.description}")


def _limits(control: Control, *, channel: bool) -> CommandLimits:
    rule = getattr(control.encode, "__self__", None)  # a NameRule.check or Range.check, or a plain function
    return CommandLimits(
        channel=channel,
        device=not channel,
        text=_text(rule) if isinstance(rule, NameRule) else None,
        number=NumberLimits(min=rule.low, max=rule.high, step=rule.step, unit=rule.unit)
        if isinstance(rule, Range)
        else None,
    )


def ssc1_capabilities(family: SscFamily) -> Capabilities:
    commands = {kind: _limits(control, channel=False) for kind, control in family.device_controls.items()}
    for kind, control in family.controls.items():
        on_channel = _limits(control, channel=True)
        commands[kind] = on_channel.model_copy(update={"device": kind in commands})
    commands[CommandKind.METER_RATE] = CommandLimits(channel=True, device=True)
    return Capabilities(channel_fields=_SSC1_FIELDS[family.label], commands=commands)


def _mcp_frequency(rf_config: RfConfig) -> CommandLimits:
    """A receiver's RfConfig as one range: with several sub-ranges their span, on a grid every sub-range's
    frequencies lie on (the common divisor of the steps and of the distances between the lows); the driver
    refuses what lies between the sub-ranges."""
    low, high = min(part[0] for part in rf_config), max(part[1] for part in rf_config)
    step = math.gcd(*(part[2] for part in rf_config), *(part[0] - low for part in rf_config))
    return CommandLimits(number=NumberLimits(min=low / 1000, max=high / 1000, step=step / 1000, unit="MHz"))


def _mcp_capabilities(channel_fields: frozenset[str], *, transmitter: bool = False) -> Capabilities:
    name = CommandLimits(text=_text(MCP_NAME))
    return Capabilities(
        channel_fields=channel_fields,
        commands={
            CommandKind.NAME: name,
            CommandKind.DEVICE_NAME: name.model_copy(update={"channel": False, "device": True}),
            # the whole family's span: each device's own RfConfig narrows it (tuned_capabilities)
            CommandKind.FREQUENCY: _mcp_frequency(FALLBACK_RF_CONFIG),
            CommandKind.MUTE: CommandLimits(),
            CommandKind.METER_RATE: CommandLimits(channel=True, device=True),
        },
        # the in-ear transmitter's "muted" is its RF mute (mcp.sr_channel_fields)
        transmitter=transmitter,
        rf_mute_field="muted" if transmitter else None,
    )


def _ssc2_capabilities() -> Capabilities:
    def printable(max_length: int) -> TextLimits:
        # ssc2.name_problem in the driver: no control characters, and no space at either end (the hub shows
        # device text trimmed, so a name the device keeps with its spaces would read back as another)
        return TextLimits(
            max_length=max_length,
            pattern=r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?$",
            allowed="printable characters, no space at either end",
        )

    low, high = FREQUENCY_RANGE_KHZ
    return Capabilities(
        channel_fields=_SSC2_FIELDS,
        commands={
            CommandKind.NAME: CommandLimits(text=_text(MOBILE_NAME)),
            CommandKind.DEVICE_NAME: CommandLimits(channel=False, device=True, text=printable(DEVICE_NAME_MAX_CHARS)),
            # Spectera's 1 MHz grid (src/types.ts RfChannel.frequency), so suggestions land on it too
            CommandKind.FREQUENCY: CommandLimits(
                number=NumberLimits(min=low / 1000, max=high / 1000, step=FREQUENCY_STEP_KHZ / 1000, unit="MHz")
            ),
            CommandKind.IDENTIFY: CommandLimits(),
        },
    )


def _ewdx_ssc2_capabilities() -> Capabilities:
    def number(rule: Range) -> CommandLimits:
        return CommandLimits(number=NumberLimits(min=rule.low, max=rule.high, step=rule.step, unit=rule.unit))

    return Capabilities(
        channel_fields=_EWDX_SSC2_FIELDS,
        commands={
            CommandKind.NAME: CommandLimits(text=_text(ewdx_ssc2.CHANNEL_NAME)),
            CommandKind.MUTE: CommandLimits(),
            CommandKind.GAIN: number(ewdx_ssc2.GAIN),
            CommandKind.FREQUENCY: number(ewdx_ssc2.FREQUENCY),
            CommandKind.IDENTIFY: CommandLimits(channel=True, device=True),
            # no DEVICE_NAME: /api/device/site has no PUT in the EW-DX OpenAPI
        },
    )


CAPABILITIES: Final[Mapping[str, Capabilities]] = {
    **{family.label: ssc1_capabilities(family) for family in (EWDX, EM6000, SLDW, CHG70N)},
    G4_FAMILY: _mcp_capabilities(_G4_FIELDS),
    IEM_FAMILY: _mcp_capabilities(_IEM_FIELDS, transmitter=True),
    **dict.fromkeys(_SSC2_FAMILIES, _ssc2_capabilities()),
    "ew-dx": _ewdx_ssc2_capabilities(),
}


def device_capabilities(family: str | None) -> Capabilities | None:
    return CAPABILITIES.get(family or "")


def tuned_capabilities(family: str, rf_config: RfConfig) -> Capabilities:
    """A G4 receiver's or IEM transmitter's capabilities with the tuning range it reported (RfConfig)."""
    declared = CAPABILITIES[family]
    return declared.model_copy(
        update={"commands": {**declared.commands, CommandKind.FREQUENCY: _mcp_frequency(rf_config)}}
    )


def banded_capabilities(family: str, spans: Sequence[tuple[int, int]]) -> Capabilities:
    """An SSCv1 EW-DX receiver's capabilities with the span of its band (``spans`` in kHz, EWDX_BANDS) as the
    frequency range, on the family's grid; none: the family's declared range."""
    declared = CAPABILITIES[family]
    frequency = declared.commands[CommandKind.FREQUENCY]
    if not spans or frequency.number is None:
        return declared
    number = frequency.number.model_copy(
        update={"min": min(low for low, _ in spans) / 1000, "max": max(high for _, high in spans) / 1000}
    )
    narrowed = frequency.model_copy(update={"number": number})
    return declared.model_copy(update={"commands": {**declared.commands, CommandKind.FREQUENCY: narrowed}})
