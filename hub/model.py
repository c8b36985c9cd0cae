"""The normalised device/channel model: the public contract between plugins, the hub and its consumers.

Every field a device does not report, or reports as unknown, is ``None``; plugins translate vendor
sentinels (Shure 255/65535, Sennheiser 424 or ``Bat ?``) before anything reaches this model.
Field names here are the names on MQTT and in the REST API (see docs/model.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, cast

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_serializer, field_validator

# Values that move continuously with the signal. They are published on the meters topic at a throttled
# rate; a change in any other channel field is a state change, published retained and at once.
METER_FIELDS: Final = frozenset(
    {"rf_dbm", "rf_quality_percent", "audio_dbfs", "audio_peak", "antenna", "rf_antennas", "audio_peak_dbfs"}
)


def _iso_timestamp(value: datetime) -> str:
    return value.isoformat()


# A time in JSON as MQTT writes it (orjson: `+00:00`) rather than as pydantic's JSON mode does (`Z`), so REST and
# the live feed write one instant as MQTT and the docs do: consumers comparing or parsing both (Python before
# 3.11 reads no `Z`) see one format.
Timestamp = Annotated[datetime, PlainSerializer(_iso_timestamp, return_type=str, when_used="json")]


# More channels than any receiver has: an index or count beyond it is a parsing error, not a channel.
MAX_CHANNELS: Final = 512
# The most transmitter slots a family has per channel (Axient Digital ShowLink: 8); a few more leave room.
MAX_SLOTS: Final = 16


class SlotState(BaseModel):
    """One transmitter slot of a channel: an Axient Digital ShowLink slot (1-8) or an SLX-D+ side slot (1-2).
    Fields the family does not report per slot stay None."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slot: int = Field(ge=1, le=MAX_SLOTS)
    status: str | None = Field(
        default=None, description="as the family states it: 'empty', 'standard', 'linked.active', 'online', ..."
    )
    tx_model: str | None = None
    battery_percent: int | None = Field(default=None, ge=0, le=100)
    battery_bars: int | None = Field(default=None, ge=0, le=5)
    rf_power_mode: str | None = Field(default=None, description="'low', 'normal' or 'high'")
    rf_output: bool | None = Field(default=None, description="True: RF on; False: RF muted")


class Channel(BaseModel):
    """One receiver channel and the transmitter linked to it."""

    model_config = ConfigDict(validate_assignment=False, extra="forbid")

    index: int = Field(ge=1, description="1-based, as the vendor protocols number channels")
    name: str | None = None
    extended_name: str | None = Field(default=None, description="the user's name for this channel, set in the hub")
    # bounds wide enough for every band a wireless system uses: a value beyond them is a parsing error or a
    # device gone wrong (an outside audit saw 99999999999.999 MHz and 9999 dBm reach MQTT), read as unknown
    frequency_mhz: float | None = Field(default=None, ge=1, le=10_000)
    muted: bool | None = Field(default=None, description="receiver audio mute")
    tx_present: bool | None = Field(default=None, description="a transmitter is on and linked")
    tx_model: str | None = None
    tx_muted: bool | None = Field(default=None, description="the transmitter's own mute switch")
    tx_power: str | None = Field(
        default=None, description="RF power level or mode as the family states it, e.g. '10mW', 'high'"
    )
    tx_locked: str | None = Field(
        default=None, description="which transmitter controls are locked, as the family states it ('none' when none)"
    )
    tx_offset_db: float | None = Field(default=None, description="transmitter input offset or pad")
    tx_id: str | None = Field(default=None, description="the linked transmitter's own id or serial")
    tx_talk_switch: bool | None = Field(default=None, description="the talk (cough) switch is pressed")
    battery_bars: int | None = Field(default=None, ge=0, le=5)
    battery_percent: int | None = Field(default=None, ge=0, le=100)
    battery_runtime_min: int | None = Field(default=None, ge=0)
    battery_type: str | None = None
    battery_health_percent: int | None = Field(default=None, ge=0, le=100, description="capacity left vs new")
    battery_cycles: int | None = Field(default=None, ge=0, description="charge cycles of a rechargeable pack")
    battery_temp_c: float | None = Field(default=None, description="pack temperature")
    battery_charge_state: str | None = Field(
        default=None, description="'charging', 'charged', 'discharging' or as the family states it"
    )
    battery_time_to_full_min: int | None = Field(default=None, ge=0, description="charging: minutes until full")
    rf_dbm: float | None = Field(default=None, ge=-200, le=50)
    rf_quality_percent: int | None = Field(default=None, ge=0, le=100)
    antenna: str | None = Field(default=None, description="active antenna(s), e.g. 'A', 'B', 'AB'")
    rf_antennas: dict[str, float] | None = Field(
        default=None, description="RF level in dBm per antenna input, e.g. {'A': -62, 'B': -70} or RF1/RF2"
    )
    audio_dbfs: float | None = Field(default=None, ge=-200, le=50)
    audio_peak_dbfs: float | None = Field(
        default=None, ge=-200, le=50, description="peak audio level, where reported apart"
    )
    audio_peak: bool | None = Field(default=None, description="audio clipped since the last report")
    gain_db: float | None = None
    group_channel: str | None = Field(
        default=None, description="the frequency preset: Shure 'group,channel', Sennheiser 'bank.channel'"
    )
    rf_bandwidth_khz: float | None = Field(
        default=None,
        ge=0,
        le=100_000,
        description="the width of the channel's carrier where the device reports it (Spectera WMAS: 6, 8 or 10 MHz)",
    )
    frequency2_mhz: float | None = Field(
        default=None, ge=1, le=10_000, description="second carrier (frequency diversity)"
    )
    encryption: str | None = Field(default=None, description="'on', 'off' or 'mismatch' for this channel's link")
    tx_slots: list[SlotState] | None = Field(
        default=None, description="the transmitter slots of this channel (AD ShowLink, SLX-D+ side slots), by slot"
    )
    warnings: list[str] = Field(default_factory=list)
    updated_at: Timestamp | None = Field(
        default=None,
        description="when the receiver last changed a field; null until it has reported this channel (just after "
        "it connected): the other fields are then not known yet",
    )

    @property
    def reported(self) -> bool:
        """Whether the receiver has reported this channel: one made from its channel count alone holds nothing
        the receiver said, and shown as state it would read as a channel with no name and no transmitter."""
        return self.updated_at is not None


class CommandKind(StrEnum):
    """What a control command does. A plugin refuses kinds its family lacks with NotSupportedError."""

    NAME = "name"  # value: str
    MUTE = "mute"  # value: True, False or "toggle"
    GAIN = "gain"  # value: absolute dB (float)
    GAIN_STEP = "gain_step"  # value: relative dB, positive or negative
    FREQUENCY = "frequency"  # value: MHz (float)
    IDENTIFY = "identify"  # value: ignored (flash the display)
    METER_RATE = "meter_rate"  # value: milliseconds, 0 switches metering off
    RF_OUTPUT = "rf_output"  # value: True (RF on) or False (RF muted); Axient Digital slots
    DEVICE_NAME = "device_name"  # value: str, the receiver's own name
    TX_POWER = "tx_power"  # value: one of the family's levels as tx_power reads, e.g. "50mW"
    SLOT_RF_POWER_MODE = "slot_rf_power_mode"  # value: "low", "normal" or "high"; needs a slot


class ValueKind(StrEnum):
    """What a confirmed command's value is, as the edges echo it (a result of another kind, a mute confirmed
    as "ok", reached REST and MQTT as the device's new state)."""

    SWITCH = "true or false"
    NUMBER = "a number"
    TEXT = "text"
    ANY = "any value"

    def admits(self, value: object) -> bool:
        if value is None or self is ValueKind.ANY:
            return True
        if self is ValueKind.SWITCH:
            return isinstance(value, bool)
        if self is ValueKind.NUMBER:
            return isinstance(value, int | float) and not isinstance(value, bool)
        return isinstance(value, str)


# The value a device's confirmation carries for each kind (None: the plugin echoed nothing).
CONFIRMED_VALUE: Final = {
    CommandKind.NAME: ValueKind.TEXT,
    CommandKind.MUTE: ValueKind.SWITCH,
    CommandKind.GAIN: ValueKind.NUMBER,
    CommandKind.GAIN_STEP: ValueKind.NUMBER,
    CommandKind.FREQUENCY: ValueKind.NUMBER,
    CommandKind.IDENTIFY: ValueKind.ANY,
    CommandKind.METER_RATE: ValueKind.NUMBER,
    CommandKind.RF_OUTPUT: ValueKind.SWITCH,
    CommandKind.DEVICE_NAME: ValueKind.TEXT,
    CommandKind.TX_POWER: ValueKind.TEXT,
    CommandKind.SLOT_RF_POWER_MODE: ValueKind.TEXT,
}


@dataclass(frozen=True)
class CommandField:
    """A command kind as the edges name it: its key in an MQTT ``…/set`` message (the fleet sends the same
    keys), and the state field it changes (read as the audit log's "before"; None when it changes none)."""

    kind: CommandKind
    channel: bool  # a channel's command; False: the whole device's
    key: str
    state_field: str | None


# The one table of command kinds and fields, for REST (the audit), MQTT set messages and the fleet mirror.
COMMAND_FIELDS: Final = (
    CommandField(CommandKind.NAME, True, "name", "name"),
    CommandField(CommandKind.MUTE, True, "muted", "muted"),
    CommandField(CommandKind.GAIN, True, "gain_db", "gain_db"),
    CommandField(CommandKind.GAIN_STEP, True, "gain_step_db", "gain_db"),
    CommandField(CommandKind.FREQUENCY, True, "frequency_mhz", "frequency_mhz"),
    CommandField(CommandKind.IDENTIFY, True, "identify", None),
    CommandField(CommandKind.RF_OUTPUT, True, "rf_output", None),
    CommandField(CommandKind.TX_POWER, True, "tx_power", "tx_power"),
    CommandField(CommandKind.SLOT_RF_POWER_MODE, True, "slot_rf_power_mode", None),
    CommandField(CommandKind.DEVICE_NAME, False, "name", "name"),
    CommandField(CommandKind.IDENTIFY, False, "identify", None),
    CommandField(CommandKind.METER_RATE, False, "meter_rate_ms", None),
)
_COMMAND_BY_KIND: Final = {(row.kind, row.channel): row for row in COMMAND_FIELDS}


def command_field(kind: CommandKind, channel: bool) -> CommandField | None:
    """The table's row for ``kind`` sent to a channel (``channel``) or to the whole device."""
    return _COMMAND_BY_KIND.get((kind, channel))


def command_keys(channel: bool) -> dict[str, CommandKind]:
    """The keys of a channel's (or the device's) ``…/set`` message, and the command each sends."""
    return {row.key: row.kind for row in COMMAND_FIELDS if row.channel is channel}


class _Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextLimits(_Limits):
    """What a name may be: its length, and a regular expression the whole name must match."""

    min_length: int = Field(default=1, ge=0)
    max_length: int = Field(ge=1)
    pattern: str = Field(description="regular expression (Python and JavaScript syntax) the whole name matches")
    allowed: str = Field(description="the allowed characters, in words, for error messages")

    def check(self, value: object, what: str) -> None:
        if not isinstance(value, str):
            raise InvalidValueError(f"{what} must be text, not {value!r}")
        if len(value) > self.max_length:
            raise InvalidValueError(f"{what} {value!r} is longer than {self.max_length} characters")
        if len(value) < self.min_length:
            raise InvalidValueError(f"{what} {value!r} is shorter than {self.min_length} characters")
        if re.fullmatch(self.pattern, value) is None:
            raise InvalidValueError(f"{what} {value!r} is not allowed; {self.allowed}")


class NumberLimits(_Limits):
    """An inclusive range on a grid of ``step`` from ``min``, in the model's unit."""

    min: float
    max: float
    step: float = Field(gt=0)
    unit: str

    def check(self, value: object, what: str) -> float:
        number = _finite(value, f"{what} must be a number of {self.unit}")
        if not self.min <= number <= self.max:
            raise InvalidValueError(f"{what} {number:g} {self.unit} is outside {self.min:g}..{self.max:g} {self.unit}")
        if not _multiple_of(number - self.min, self.step):
            # repr, not :g: 473.3751 shown as 473.375 would name a value that is on the grid
            raise InvalidValueError(
                f"{what} {number!r} {self.unit} is not on the device's {self.step:g} {self.unit} grid"
            )
        return number

    def check_step(self, value: object, what: str) -> float:
        """A relative change: a whole number of steps, no larger than the range."""
        number = _finite(value, f"{what} must be a number of {self.unit}")
        if abs(number) > self.max - self.min or not _multiple_of(number, self.step):
            raise InvalidValueError(
                f"{what} {number:g} {self.unit} is not a multiple of {self.step:g} {self.unit} within the range"
            )
        return number


def _finite(value: object, message: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValueError(f"{message}, not {value!r}")
    return float(value)


def _multiple_of(value: float, step: float) -> bool:
    steps = value / step
    return abs(steps - round(steps)) < 1e-6


class CommandLimits(_Limits):
    """One command a device family accepts: where (a channel, the whole device) and the values it takes."""

    channel: bool = Field(default=True, description="accepted on a channel")
    device: bool = Field(default=False, description="accepted on the whole device (no channel)")
    text: TextLimits | None = None
    number: NumberLimits | None = None
    slots: int | None = Field(default=None, ge=1, description="slot commands: the transmitter slots per channel")
    choices: tuple[str, ...] | None = Field(default=None, description="the values the command takes, all of them")


class Capabilities(_Limits):
    """What a device family reports and accepts. Plugins declare it (the ``device_capabilities`` hook); the
    hub shows it on REST and MQTT, checks every command against it before the plugin sees the command, and
    builds Home Assistant entities only for what is here."""

    channel_fields: frozenset[str] = Field(description="the channel fields this family can ever fill")
    commands: dict[CommandKind, CommandLimits] = Field(default_factory=dict)
    # An in-ear transmitter reports no transmitter of its own (tx_present): it is the transmitter, so its
    # carrier is on air whenever it is online, unless its RF mute says otherwise.
    transmitter: bool = Field(
        default=False, description="the device is itself a transmitter (in-ear): each channel is on air while online"
    )
    rf_mute_field: Literal["muted", "tx_muted"] | None = Field(
        default=None, description="for a transmitter: the channel field that is true while its RF is muted"
    )

    @field_validator("channel_fields")
    @classmethod
    def _known_fields(cls, names: frozenset[str]) -> frozenset[str]:
        unknown = names - frozenset(Channel.model_fields)
        if unknown:
            raise ValueError(f"not channel fields: {', '.join(sorted(unknown))}")
        return names

    @field_serializer("channel_fields")
    def _sorted_fields(self, names: frozenset[str]) -> list[str]:
        return sorted(names)

    @field_serializer("commands")
    def _plain_keys(self, commands: dict[CommandKind, CommandLimits]) -> dict[str, CommandLimits]:
        return {kind.value: limits for kind, limits in commands.items()}  # JSON encoders want str keys

    def accepts(self, kind: CommandKind, *, channel: bool) -> bool:
        limits = self.commands.get(kind)
        return limits is not None and (limits.channel if channel else limits.device)

    def check(self, command: Command, device: str = "this device") -> None:
        """Raise NotSupportedError or InvalidValueError when the command is outside these limits; ``device``
        names the device in the message (its model)."""
        kind, value = command.kind, command.value
        on_channel = command.channel is not None
        limits = self.commands.get(kind)
        if limits is None or not (limits.channel if on_channel else limits.device):
            target = "a channel" if on_channel else "the whole device"
            raise NotSupportedError(f"{device} has no {kind.value} control for {target}")
        if limits.text is not None:
            limits.text.check(value, "name")
        if limits.number is not None:
            if kind is CommandKind.GAIN_STEP:
                limits.number.check_step(value, "gain step")
            else:
                limits.number.check(value, kind.value)
        if limits.choices is not None and value not in limits.choices:
            raise InvalidValueError(f"{kind.value} takes one of {', '.join(limits.choices)}, not {value!r}")
        if limits.slots is not None and (command.slot is None or not 1 <= command.slot <= limits.slots):
            raise InvalidValueError(f"{kind.value} needs a slot 1..{limits.slots}, got {command.slot!r}")
        if kind is CommandKind.MUTE and not (isinstance(value, bool) or value == "toggle"):
            raise InvalidValueError(f"mute takes true, false or 'toggle', not {value!r}")


class Device(BaseModel):
    """One networked receiver (or IEM transmitter) and its channels."""

    model_config = ConfigDict(validate_assignment=False, extra="forbid")

    id: str = Field(description="<vendor>-<serial, MAC or host_port>; never the user-editable name")
    vendor: str
    family: str | None = None
    model: str | None = None
    firmware: str | None = None
    name: str | None = None
    host: str
    port: int
    online: bool = False
    last_seen: Timestamp | None = None
    rf_band: str | None = Field(default=None, description="the receiver's tuning band, e.g. 'G50', 'Aw+'")
    encryption_mode: str | None = Field(default=None, description="the device's encryption setting")
    ip_address: str | None = Field(default=None, description="as the device reports it")
    mac_address: str | None = Field(default=None, description="as the device reports it")
    dante_name: str | None = None
    front_panel_locked: bool | None = Field(default=None, description="the receiver's own panel lock")
    channels: list[Channel] = Field(default_factory=list)
    capabilities: Capabilities | None = Field(
        default=None, description="what the family reports and accepts; None until identified, or when undeclared"
    )

    def channel(self, index: int) -> Channel | None:
        channels = self.channels
        # channels are kept sorted and almost always numbered 1..n: this runs for every meter sample
        if 0 < index <= len(channels) and channels[index - 1].index == index:
            return channels[index - 1]
        for channel in channels:
            if channel.index == index:
                return channel
        return None


CHANNEL_FIELDS: Final = frozenset(Channel.model_fields) - {"index", "updated_at"}


def field_values(model: Channel | Device) -> dict[str, Any]:
    """A model's live field values by name, for code on a per-sample or per-message path (the state store's
    merge, MQTT meters). BaseModel defines ``__getattr__``, which puts every attribute read of a model on
    CPython's slow path; pydantic keeps field values in the instance ``__dict__``, and these models do not
    validate assignments, so the dict is the values. Only the state store writes to it."""
    return model.__dict__


def numeric_bounds(model: type[BaseModel]) -> dict[str, tuple[float | None, float | None]]:
    """(lowest, highest) allowed for each field with a ge/le constraint, read from the model itself."""
    bounds: dict[str, tuple[float | None, float | None]] = {}
    for name, info in model.model_fields.items():
        low = next((float(cast(float, m.ge)) for m in info.metadata if isinstance(m, annotated_types.Ge)), None)
        high = next((float(cast(float, m.le)) for m in info.metadata if isinstance(m, annotated_types.Le)), None)
        if low is not None or high is not None:
            bounds[name] = (low, high)
    return bounds


# Channel fields a device could report out of range (e.g. 250 % battery); the hub reads those as unknown.
CHANNEL_BOUNDS: Final = {name: bounds for name, bounds in numeric_bounds(Channel).items() if name in CHANNEL_FIELDS}
DEVICE_FIELDS: Final = frozenset(
    {
        "family",
        "model",
        "firmware",
        "name",
        "capabilities",
        "rf_band",
        "encryption_mode",
        "ip_address",
        "mac_address",
        "dante_name",
        "front_panel_locked",
    }
)


@dataclass(frozen=True)
class BatteryLimits:
    """When a channel's battery is low: at or below any one of these (a value the device does not report
    counts for nothing). The board's filter uses the defaults; the alert rules take each from their settings."""

    bars: int = 1
    percent: int = 20
    runtime_min: int = 30

    def is_low(self, channel: Channel) -> bool:
        return (
            _at_or_below(channel.battery_bars, self.bars)
            or _at_or_below(channel.battery_percent, self.percent)
            or _at_or_below(channel.battery_runtime_min, self.runtime_min)
        )


def _at_or_below(value: int | None, limit: int) -> bool:
    return value is not None and value <= limit


LOW_BATTERY: Final = BatteryLimits()


class Command(BaseModel):
    """A control request on its way from an edge (MQTT, REST, CLI, UI) to the owning plugin."""

    model_config = ConfigDict(extra="forbid")

    device_id: str
    channel: int | None = Field(default=None, ge=1, description="None addresses the whole device")
    kind: CommandKind
    value: str | float | bool | None = None
    slot: int | None = Field(
        default=None, ge=1, le=MAX_SLOTS, description="the transmitter slot, for rf_output and slot_rf_power_mode"
    )


def command_place(command: Command) -> str:
    """Where a command goes, as log lines say it: ``ch2``, or ``device`` for the whole device."""
    return "device" if command.channel is None else f"ch{command.channel}"


class CommandResult(BaseModel):
    """The outcome of a command: ``ok`` only once the device itself confirmed the new value."""

    ok: bool
    value: Any = None
    error: str | None = None
    code: str | None = Field(default=None, description="refused | timeout | not_supported | invalid | ...")


# the codes a failed command's result carries on REST and MQTT (docs/api.md, docs/mqtt.md): consumers act on
# them, so a plugin's own invented code is shown as ``failed``, its code named in the error
RESULT_CODES: Final = frozenset(
    {
        "invalid",
        "not_supported",
        "refused",
        "timeout",
        "unavailable",
        "not_found",
        "rate_limited",
        "expired",
        "failed",
        "plugin_error",
    }
)


class CommandError(Exception):
    """A command that could not be carried out; ``code`` says which kind of failure."""

    code = "failed"

    def result(self) -> CommandResult:
        return CommandResult(ok=False, error=str(self), code=self.code)


class InvalidValueError(CommandError):
    """The value is outside what this device family accepts; nothing was sent to the device."""

    code = "invalid"


class NotSupportedError(CommandError):
    """This device family has no such control."""

    code = "not_supported"


class RefusedError(CommandError):
    """The device answered with an error."""

    code = "refused"


class CommandTimeoutError(CommandError):
    """The device did not confirm the change in time."""

    code = "timeout"


class CommandExpiredError(CommandError):
    """The command's deadline passed while it waited for the device (behind another command): nothing was sent."""

    code = "expired"


# how every ``expired`` answer's error starts, the hub's own and a plugin's (the hub adds it): an MQTT answer
# without results says expiry by it alone, and ``wmhub fleet`` recognises expiry so
EXPIRED_PREFIX: Final = "expired:"


def deadline_passed(when: str = "") -> str:
    """The error of a command not carried out because its deadline passed (``when``: how, after a comma or a
    space), as every edge's expiry answer words it."""
    return f"{EXPIRED_PREFIX} not carried out, its deadline passed{when}"


class DeviceUnavailableError(CommandError):
    """The device is unknown or not connected."""

    code = "unavailable"


class ChannelNotFoundError(CommandError):
    """The device has no such channel: asking again will not help, unlike an unavailable device (REST answers
    the same address 404)."""

    code = "not_found"
