"""The venue store's records and errors: what its services return (REST and MQTT serialise them) and the
typed errors they refuse a change with.

The core's store (:mod:`hub.persistence`) and the edges both import this module, and it imports nothing of
either: an edge shows and answers what the store returns without importing the store
(``tests/test_core_imports.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StoreError(Exception):
    """A request the store refused or could not carry out; ``str(error)`` is the message for the user.

    ``code`` is stable and machine-readable; REST maps it to an HTTP status (see :data:`HTTP_STATUS`)."""

    code = "store_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"error": str(self), "code": self.code, "details": self.details}


class NotFoundError(StoreError):
    """The thing named does not exist."""

    code = "not_found"


class ConflictError(StoreError):
    """The change contradicts what is stored (a duplicate, or something still in use)."""

    code = "conflict"


class InvalidInputError(StoreError):
    """A value is malformed or out of range; nothing was changed."""

    code = "invalid"


class StorageUnavailableError(StoreError):
    """The database cannot answer a read now (its disk stalled, its file damaged): what the services hold in
    memory is still served, and the read can be asked again later."""

    code = "storage_unavailable"


HTTP_STATUS: Final = {
    NotFoundError.code: 404,
    ConflictError.code: 409,
    InvalidInputError.code: 422,
    StorageUnavailableError.code: 503,
}


class Source(StrEnum):
    """Where a change or a command came from (the audit log's ``source``)."""

    REST = "rest"
    MQTT = "mqtt"
    CLI = "cli"
    UI = "ui"
    SYSTEM = "system"
    DISCOVERY = "discovery"  # a discovered device taken in by itself (discovery.auto_approve)
    MOVED = "moved"  # a device's old address, let go when the device answered at a new one


class LocationKind(StrEnum):
    ROOM = "room"
    STAGE = "stage"
    RACK = "rack"


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KnownDevice(Record):
    url: str
    device_id: str | None = Field(description="None until the device has been reached once")
    added_at: float
    source: str = Field(
        description="how it was added: manual (rest/mqtt/cli/ui) or discovery; config or demo: a device from the "
        "config file or the demo, remembered for its placement only"
    )
    location_id: int | None = None


class CandidateDescription(Record):
    """A discovered device as its plugin described it (:class:`hub.hookspecs.Candidate`); the REST API
    shows candidates with exactly these fields."""

    url: str
    vendor: str
    model: str | None = None
    unique_id: str | None = None
    name: str | None = None
    source: str = ""


# A candidate not seen announcing itself for this long (or that said goodbye) is no longer listed, nor can it
# be approved; a row older than this found at start is dropped (docs/deployment.md, "Discovery").
CANDIDATE_TTL_S: Final = 600.0


class DiscoveryCandidate(CandidateDescription):
    first_seen: float
    last_seen: float


class ConnectionHealthRecord(Record):
    url: str
    device_id: str | None
    connected: bool
    connected_since: float | None
    attempts: int
    reconnects: int
    last_error: str | None
    updated_at: float


class Location(Record):
    id: int
    name: str
    kind: LocationKind
    parent_id: int | None = None


# the venue's numbers, checked by the store and declared by the REST edge
MAX_SLOT: Final = 999
MAX_GROUP: Final = 99  # the board selects groups 0-9 from the keyboard; more are reachable from the menu


class Slot(Record):
    number: int
    device_id: str
    channel: int


class Group(Record):
    number: int
    title: str
    slots: list[int]


class Performer(Record):
    id: int
    name: str
    notes: str = ""


# The largest battery-runtime threshold of an assignment, in minutes: a day (no pack lasts longer).
MAX_RUNTIME_THRESHOLD_MIN: Final = 24 * 60


class AlertPrefs(Record):
    """A performer's alert preferences for one channel; a threshold left None uses the hub's default."""

    disabled_kinds: list[str] = Field(
        default_factory=list, description="alert kinds not raised for this channel: low_battery, tx_off, ..."
    )
    battery_bars: int | None = Field(default=None, ge=0, le=5)
    battery_percent: int | None = Field(default=None, ge=0, le=100)
    battery_runtime_min: int | None = Field(default=None, ge=0, le=MAX_RUNTIME_THRESHOLD_MIN)

    @field_validator("disabled_kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        """A misspelt kind ("low-battery") would silently disable nothing: each must be a known one."""
        known = [kind.value for kind in AlertKind]
        for kind in kinds:
            if kind not in known:
                shown = repr(kind[:40]) + ("…" if len(kind) > 40 else "")
                raise ValueError(f"unknown alert kind {shown}; the kinds are {', '.join(known)}")
        return list(dict.fromkeys(kinds))


class Assignment(Record):
    performer_id: int
    device_id: str
    channel: int
    alert_prefs: AlertPrefs = Field(default_factory=AlertPrefs)


class ExtendedName(Record):
    device_id: str
    channel: int
    name: str
    device_name_at_set: str | None
    set_at: float


class AuditEntry(Record):
    id: int
    at: float
    source: str
    action: str
    target: str
    before: Any = None
    after: Any = None
    result: str = "ok"


class DeclaredCarrier(Record):
    """A carrier the hub cannot see (an in-ear transmitter, a non-networked system, another user's
    frequency), declared so the plan check counts it."""

    id: int
    label: str
    frequency_mhz: float
    bandwidth_khz: float = Field(default=0.0, description="0 for a narrowband carrier")
    active: bool = Field(default=True, description="on air (findings are alerts) or only planned (warnings)")
    family: str | None = Field(default=None, description="selects the family's guard bands")


class FrequencyExclusion(Record):
    """A range no carrier may touch: an occupied TV channel (tv_grid + tv_channel) or a user's range."""

    id: int
    label: str
    low_mhz: float
    high_mhz: float
    tv_grid: str | None = Field(default=None, description="us | eu, for a TV channel")
    tv_channel: int | None = None


class AlertKind(StrEnum):
    LOW_BATTERY = "low_battery"
    TX_OFF = "tx_off"  # the transmitter of an assigned channel is off
    RF_LOW = "rf_low"
    AUDIO_CLIP = "audio_clip"
    DEVICE_OFFLINE = "device_offline"
    DEVICE_WARNING = "device_warning"  # detail: interference, encryption or unregistered
    SHOW_BATTERY = "show_battery"  # the pack will be empty before the show ends (hub.persistence.show)
    FREQUENCY_CONFLICT = "frequency_conflict"  # detail: intermod, spacing, exclusion or out_of_band


class Alert(Record):
    id: int
    kind: AlertKind
    device_id: str
    channel: int | None
    detail: str = ""
    severity: Literal["warning", "critical"]
    message: str
    raised_at: float
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    cleared_at: float | None = None


# "updated": an open alert's text changed with its condition (a frequency conflict's findings); same id and raise time
AlertAction = Literal["raised", "updated", "acknowledged", "cleared"]


@dataclass(frozen=True)
class AlertEvent:
    action: AlertAction
    alert: Alert


class HistoryPoint(BaseModel):
    t: float
    step: int
    battery_min: float | None
    battery_avg: float | None
    battery_max: float | None
    rf_dbm_min: float | None
    rf_dbm_avg: float | None
    rf_dbm_max: float | None
    audio_dbfs_min: float | None
    audio_dbfs_avg: float | None
    audio_dbfs_max: float | None


MAX_MARGIN_MIN: Final = 24 * 60


class ShowSettings(Record):
    end_at: float | None = Field(default=None, description="when the show ends (Unix time); null: no show set")
    margin_min: int = Field(default=15, ge=0, le=MAX_MARGIN_MIN, description="a pack must last this long past the end")


class ChannelRef(Record):
    channel_id: str
    device_id: str
    channel: int
    name: str | None
    performer: str | None
    slot: int | None
    battery_type: str | None


class SwapEntry(ChannelRef):
    empty_at: float = Field(description="when the pack is expected to be empty (Unix time)")
    minutes_left: int
    earliest_empty_at: float = Field(description="the early end of the estimate's band")
    latest_empty_at: float = Field(description="the late end of the estimate's band")
    source: Literal["transmitter", "estimate"] = Field(
        description="transmitter: the runtime it reports; estimate: the hub's fit of its bar drain"
    )
    certainty: str = Field(description="how sure the estimate is, in words")


class SwapList(Record):
    generated_at: float
    until: float | None = Field(description="the show end the list was made for; null: no show end set")
    margin_min: int
    deadline: float | None = Field(description="until plus the margin: a pack empty before this is listed")
    items: list[SwapEntry] = Field(description="packs that will not last, soonest empty first")
    no_estimate: list[ChannelRef] = Field(description="transmitters on with no runtime known yet")
