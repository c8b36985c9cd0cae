"""What each Shure family reports and accepts, for the hub (``device_capabilities``), read off the family tables.

The limits are the ones :func:`wmhub_shure.families.build_set` enforces, so the hub's check and the
plugin's agree; the plugin keeps its own checks for callers that bypass the hub.
"""

from __future__ import annotations

from typing import Final

from hub.model import Capabilities, CommandKind, CommandLimits, NumberLimits, TextLimits
from wmhub_shure.families import FAMILIES, GAIN_MAX_DB, GAIN_MIN_DB, SLOT_RF_POWER_MODES, Family

# Printable ASCII without the framing characters {} <> * (families.NAME_FORBIDDEN), and no space at either
# end (the receiver drops it). ) and | are escaped so the expression also works as an HTML pattern (v flag).
_NAME_CHAR: Final = r"[ -\)+-;=?-z\|~]"
_NAME_EDGE: Final = r"[!-\)+-;=?-z\|~]"
NAME_PATTERN: Final = rf"^{_NAME_EDGE}(?:{_NAME_CHAR}*{_NAME_EDGE})?$"
_NAME_ALLOWED: Final = "ASCII letters, digits, space and punctuation other than {} <> *, no space at either end"
# Names that travel without braces (the P10T's) come back with each run of spaces made one: single spaces only.
BARE_NAME_PATTERN: Final = rf"^{_NAME_EDGE}(?: ?{_NAME_EDGE})*$"
_BARE_NAME_ALLOWED: Final = f"{_NAME_ALLOWED}, no two spaces in a row"
_GAIN: Final = NumberLimits(min=GAIN_MIN_DB, max=GAIN_MAX_DB, step=1, unit="dB")
# Tuning steps and band edges differ by band and are unverified here: any whole kHz in the range the
# protocol's digits can carry is accepted, and the receiver refuses what its band cannot tune.
_FREQUENCY: Final = NumberLimits(min=100.0, max=999.999, step=0.001, unit="MHz")


def _name(max_length: int, braced: bool) -> TextLimits:
    if not braced:
        return TextLimits(max_length=max_length, pattern=BARE_NAME_PATTERN, allowed=_BARE_NAME_ALLOWED)
    return TextLimits(max_length=max_length, pattern=NAME_PATTERN, allowed=_NAME_ALLOWED)


def capabilities_of(family: Family) -> Capabilities:
    controls = family.controls
    limits: dict[CommandKind, CommandLimits] = {}
    if CommandKind.NAME in controls:
        limits[CommandKind.NAME] = CommandLimits(text=_name(family.name_max, family.braced_names))
    if CommandKind.DEVICE_NAME in controls:
        limits[CommandKind.DEVICE_NAME] = CommandLimits(
            channel=False, device=True, text=_name(family.device_name_width, family.braced_names)
        )
    if CommandKind.GAIN in controls:
        limits[CommandKind.GAIN] = CommandLimits(number=_GAIN)
        limits[CommandKind.GAIN_STEP] = CommandLimits(number=_GAIN)
    if CommandKind.FREQUENCY in controls:
        limits[CommandKind.FREQUENCY] = CommandLimits(number=_FREQUENCY)
    if CommandKind.MUTE in controls:
        limits[CommandKind.MUTE] = CommandLimits()
    if CommandKind.IDENTIFY in controls:
        # FLASH: the channel's strip where the family has one (channel_flash), else the whole receiver
        limits[CommandKind.IDENTIFY] = CommandLimits(channel=True, device=True)
    if CommandKind.METER_RATE in controls:
        limits[CommandKind.METER_RATE] = CommandLimits(channel=True, device=True)
    if CommandKind.RF_OUTPUT in controls:
        limits[CommandKind.RF_OUTPUT] = CommandLimits(slots=family.slots or None)  # P10T: none
    if CommandKind.SLOT_RF_POWER_MODE in controls:
        limits[CommandKind.SLOT_RF_POWER_MODE] = CommandLimits(slots=family.slots, choices=SLOT_RF_POWER_MODES)
    if CommandKind.TX_POWER in controls:
        limits[CommandKind.TX_POWER] = CommandLimits(choices=family.tx_power_levels)
    return Capabilities(
        channel_fields=family.fields,
        commands=limits,
        transmitter=family.transmitter,
        rf_mute_field="tx_muted" if family.transmitter else None,
    )


CAPABILITIES: Final = {key: capabilities_of(family) for key, family in FAMILIES.items()}


def device_capabilities(family: str | None) -> Capabilities | None:
    return CAPABILITIES.get(family or "")
