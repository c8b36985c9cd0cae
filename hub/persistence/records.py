"""The store's records: what its services return, and what REST and MQTT serialise (pydantic models)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Source(StrEnum):
    """Where a change or a command came from (the audit log's ``source``)."""

    REST = "rest"
    MQTT = "mqtt"
    CLI = "cli"
    UI = "ui"
    SYSTEM = "system"


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
    source: str = Field(description="how it was added: manual (rest/mqtt/cli/ui) or discovery")
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


class AlertPrefs(Record):
    """A performer's alert preferences for one channel; a threshold left None uses the hub's default."""

    disabled_kinds: list[str] = Field(default_factory=list)
    battery_bars: int | None = Field(default=None, ge=0, le=5)
    battery_percent: int | None = Field(default=None, ge=0, le=100)
    battery_runtime_min: int | None = Field(default=None, ge=0)


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
