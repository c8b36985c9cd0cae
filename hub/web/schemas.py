"""Request and response bodies of the REST API; the OpenAPI document is generated from these models.

Device and channel views carry the model's own field names (hub.model) plus the few things the hub
adds: a channel's API id, the device's connection health and, later, the venue names.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from hub.model import MAX_SLOTS, Channel, CommandKind, Device
from hub.records import CandidateDescription
from hub.text import has_controls


def _one_line(value: str) -> str:
    """Names people type: a NUL or a line break is a mistake (or a forged log line), never a name."""
    if has_controls(value):
        raise ValueError("must not contain control characters (NUL, line breaks, tabs, escapes, direction overrides)")
    return value


def _text(value: str) -> str:
    """Notes may run over lines; other control characters are refused like in a name."""
    if has_controls(value, layout=True):
        raise ValueError("must not contain control characters other than line breaks and tabs")
    return value


def _composed(value: object) -> object:
    """Text in composed form (NFC, as it is stored) before its length is counted: 'é' typed as 'e' and an accent
    is one character, as the stored name shows it."""
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


Line = Annotated[str, BeforeValidator(_composed), AfterValidator(_one_line)]
Text = Annotated[str, BeforeValidator(_composed), AfterValidator(_text)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Strict):
    """Every error response: a sentence for people, a stable code for programs, and details."""

    error: str
    code: str = Field(description="bad_request | unauthorized | not_found | invalid | not_supported | ...")
    details: Any = None


class ChannelView(Channel):
    id: str = Field(description="'<device_id>:<index>', the channel id used in channel URLs")
    device_id: str
    device_online: bool = Field(
        default=False, description="the receiver is connected; when false every value is only the last one known"
    )


class ConnectionHealth(Strict):
    url: str
    device_id: str | None = Field(
        default=None,
        description="the device it is, once it has identified itself (in an earlier run too); a device down "
        "since the hub started has one here but is in no device list yet",
    )
    plugin: str
    connected: bool
    connected_since: float | None = Field(description="Unix time the current connection opened")
    attempts: int
    reconnects: int
    last_error: str | None = Field(
        description="why the last connection attempt failed or the last connection ended; kept once it is back"
    )


class DeviceView(Device):
    channels: list[ChannelView] = Field(default_factory=list)  # type: ignore[assignment]
    connection: ConnectionHealth | None = None


class Page(Strict):
    total: int = Field(description="matching items before limit/offset")
    limit: int
    offset: int


class DevicePage(Page):
    items: list[DeviceView]


class ChannelPage(Page):
    items: list[ChannelView]


class ListQuery(Strict):
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000)
    online: bool | None = Field(default=None, description="only devices (of channels) online / offline")
    low_battery: bool | None = Field(
        default=None, description="only devices/channels with (true) or without (false) a low battery"
    )
    vendor: str | None = None
    location: int | None = Field(
        default=None, ge=1, le=1_000_000_000, description="only devices at this location id or inside it (venue store)"
    )


class CommandBody(Strict):
    kind: CommandKind
    value: str | float | bool | None = Field(
        default=None, description="name: text; mute: true, false or 'toggle'; gain/frequency: number; ..."
    )
    slot: int | None = Field(default=None, ge=1, le=MAX_SLOTS, description="the transmitter slot, for slot commands")


class ExtendedNameBody(Strict):
    name: Line | None = Field(max_length=64, description="the user's name for the channel; null clears it")


class CommandOutcome(Strict):
    ok: bool
    value: Any = None
    error: str | None = None
    code: str | None = None


DeviceUrl = Annotated[
    str,
    Field(
        min_length=4,
        max_length=500,
        pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://[^/\s]+",
        description="scheme://host[:port], e.g. shure://10.0.0.5 or sennheiser://10.0.0.6:45",
    ),
]


class AddDeviceBody(Strict):
    url: DeviceUrl


class ApproveBody(Strict):
    url: DeviceUrl


class ManagedView(Strict):
    url: str
    device_id: str | None = Field(description="known once the device identified itself")


class CandidateView(CandidateDescription):
    """A discovered device waiting for approval: the store's record of it, with when it was last seen."""

    last_seen: float | None = Field(
        default=None, description="when the device last announced itself (Unix time); listed for 10 minutes"
    )


class CandidateList(Strict):
    items: list[CandidateView]


class MqttHealth(Strict):
    connected: bool = Field(description="whether the hub holds a connection to its broker now")
    broker: str = Field(description="the broker connected to, or tried next (no login)")
    last_error: str | None = Field(description="why the last connection attempt failed, while it did")


class Health(Strict):
    status: str = Field(
        description="'ok' while the hub runs; 'degraded' while its database cannot be written (changes are "
        "held in memory and written once it can; writes answer 202 meanwhile)"
    )
    database_problem: str | None = Field(
        description="why the database takes no writes (an error, or 'database writes stalled' when a commit "
        "has not finished in 3 s); null while it does",
    )
    hub_id: str
    version: str
    uptime_s: float
    devices: int
    devices_online: int
    live_clients: int
    connections: list[ConnectionHealth]
    mqtt: MqttHealth | None = Field(
        description="the MQTT connection; null when MQTT is off. A hub that cannot reach its broker still "
        "monitors (status stays 'ok') but publishes nothing: this says so"
    )


class PluginView(Strict):
    name: str
    distribution: str | None
    version: str | None
    hooks: list[str]
    error: str | None


class HubInfo(Strict):
    hub_id: str
    version: str
    started_at: float
    plugins: list[PluginView]
    config: dict[str, Any] = Field(description="a summary without secrets")
