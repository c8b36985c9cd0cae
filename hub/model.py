"""The normalised device/channel model: the public contract between plugins, the hub and its consumers.

Every field a device does not report, or reports as unknown, is ``None``; plugins translate vendor
sentinels (Shure 255/65535, Sennheiser 424 or ``Bat ?``) before anything reaches this model.
Field names here are the names on MQTT and in the REST API (see docs/model.md).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final, cast

import annotated_types
from pydantic import BaseModel, ConfigDict, Field

# Values that move continuously with the signal. They are published on the meters topic at a throttled
# rate; a change in any other channel field is a state change, published retained and at once.
METER_FIELDS: Final = frozenset({"rf_dbm", "rf_quality_percent", "audio_dbfs", "audio_peak", "antenna"})


class Channel(BaseModel):
    """One receiver channel and the transmitter linked to it."""

    model_config = ConfigDict(validate_assignment=False, extra="forbid")

    index: int = Field(ge=1, description="1-based, as the vendor protocols number channels")
    name: str | None = None
    extended_name: str | None = Field(default=None, description="the user's name for this channel, set in the hub")
    frequency_mhz: float | None = None
    muted: bool | None = Field(default=None, description="receiver audio mute")
    tx_present: bool | None = Field(default=None, description="a transmitter is on and linked")
    tx_model: str | None = None
    tx_muted: bool | None = Field(default=None, description="the transmitter's own mute switch")
    battery_bars: int | None = Field(default=None, ge=0, le=5)
    battery_percent: int | None = Field(default=None, ge=0, le=100)
    battery_runtime_min: int | None = Field(default=None, ge=0)
    battery_type: str | None = None
    rf_dbm: float | None = None
    rf_quality_percent: int | None = Field(default=None, ge=0, le=100)
    antenna: str | None = Field(default=None, description="active antenna(s), e.g. 'A', 'B', 'AB'")
    audio_dbfs: float | None = None
    audio_peak: bool | None = Field(default=None, description="audio clipped since the last report")
    gain_db: float | None = None
    warnings: list[str] = Field(default_factory=list)
    updated_at: datetime | None = None


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
    last_seen: datetime | None = None
    channels: list[Channel] = Field(default_factory=list)

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


def _numeric_bounds(model: type[BaseModel]) -> dict[str, tuple[float | None, float | None]]:
    """(lowest, highest) allowed for each field with a ge/le constraint, read from the model itself."""
    bounds: dict[str, tuple[float | None, float | None]] = {}
    for name, info in model.model_fields.items():
        low = next((float(cast(float, m.ge)) for m in info.metadata if isinstance(m, annotated_types.Ge)), None)
        high = next((float(cast(float, m.le)) for m in info.metadata if isinstance(m, annotated_types.Le)), None)
        if (low is not None or high is not None) and name in CHANNEL_FIELDS:
            bounds[name] = (low, high)
    return bounds


# Channel fields a device could report out of range (e.g. 250 % battery); the hub reads those as unknown.
CHANNEL_BOUNDS: Final = _numeric_bounds(Channel)
DEVICE_FIELDS: Final = frozenset({"family", "model", "firmware", "name"})


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


class Command(BaseModel):
    """A control request on its way from an edge (MQTT, REST, CLI, UI) to the owning plugin."""

    model_config = ConfigDict(extra="forbid")

    device_id: str
    channel: int | None = Field(default=None, ge=1, description="None addresses the whole device")
    kind: CommandKind
    value: str | float | bool | None = None
    slot: int | None = Field(default=None, ge=1, description="Axient Digital ShowLink slot, for rf_output")


class CommandResult(BaseModel):
    """The outcome of a command: ``ok`` only once the device itself confirmed the new value."""

    ok: bool
    value: Any = None
    error: str | None = None
    code: str | None = Field(default=None, description="refused | timeout | not_supported | invalid | ...")


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


class DeviceUnavailableError(CommandError):
    """The device is unknown or not connected."""

    code = "unavailable"
