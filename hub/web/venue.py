"""REST API v1 over the venue store (#6): locations, slots, groups, performers, assignments, history, audit.

These routes exist only on a web server given a venue store (:class:`hub.service.VenueService`, at
:data:`VENUE_KEY`). The store's typed errors carry their own code; :func:`store_errors` turns them into the
API's error body with the store's HTTP status.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from aiohttp import web
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field

from hub.records import (
    HTTP_STATUS,
    MAX_GROUP,
    MAX_MARGIN_MIN,
    MAX_SLOT,
    Alert,
    AlertPrefs,
    Assignment,
    AuditEntry,
    Group,
    HistoryPoint,
    KnownDevice,
    Location,
    LocationKind,
    Performer,
    ShowSettings,
    Slot,
    Source,
    StoreError,
    SwapList,
)
from hub.service import VenueService
from hub.web.api import HUB_KEY, SOURCE, channel_key, find_channel
from hub.web.routing import ApiError, Handler, Operation, json_response, parse_body, parse_query, path_number
from hub.web.schemas import Line, Strict, Text

NO_CONTENT: Final = 204
VENUE_KEY: Final = web.AppKey("venue", VenueService)


def venue(request: web.Request) -> VenueService:
    return request.app[VENUE_KEY]


def store_errors(handler: Handler) -> Handler:
    """Let ``handler`` answer a refused store change with the store's own code and HTTP status."""

    @functools.wraps(handler)
    async def answering(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StoreError as exc:
            raise ApiError(HTTP_STATUS.get(exc.code, 400), exc.code, str(exc), exc.details or None) from None

    return answering


# bodies and lists


class LocationBody(Strict):
    name: Line = Field(min_length=1, max_length=200)
    kind: LocationKind
    parent_id: int | None = Field(default=None, ge=1)


class LocationPatch(Strict):
    name: Line | None = Field(default=None, min_length=1, max_length=200)
    kind: LocationKind | None = None
    parent_id: int | None = Field(default=None, ge=1, description="move under this location; see 'move_to_top'")
    move_to_top: bool = False


class SlotBody(Strict):
    device_id: Line = Field(min_length=1, max_length=120)
    channel: int = Field(ge=1, le=64)


class GroupBody(Strict):
    title: Line = Field(min_length=1, max_length=100)
    slots: list[Annotated[int, Field(ge=1, le=MAX_SLOT)]] = Field(default_factory=list, max_length=1000)


class PerformerBody(Strict):
    name: Line = Field(min_length=1, max_length=100)
    notes: Text = Field(default="", max_length=1000)


class PerformerPatch(Strict):
    name: Line | None = Field(default=None, min_length=1, max_length=100)
    notes: Text | None = Field(default=None, max_length=1000)


class AssignmentBody(Strict):
    performer_id: int = Field(ge=1)
    alert_prefs: AlertPrefs | None = None


class AssignmentQuery(BaseModel):
    performer_id: int | None = Field(default=None, ge=1)


# the steps of the stored history's tiers (hub.persistence.history.HistorySettings.tiers)
HistoryStep = Literal[10, 60]


def _whole_number_text(value: object) -> object:
    """A query's ``"60"`` as the number a literal compares with."""
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value


class HistoryQuery(BaseModel):
    since: float = Field(ge=0, le=1e11, description="Unix time")
    until: float | None = Field(default=None, ge=0, le=1e11, description="Unix time; default now")
    step: Annotated[HistoryStep, BeforeValidator(_whole_number_text)] | None = Field(
        default=None, description="bucket seconds (a stored tier's step); default the finest held"
    )


class AuditQuery(BaseModel):
    target: Line | None = Field(default=None, max_length=200, description="a device id matches its channels too")
    source: Source | None = None
    since: float | None = Field(default=None, ge=0, le=1e11)
    until: float | None = Field(default=None, ge=0, le=1e11)
    limit: int = Field(default=100, ge=1, le=10_000)


class AlertQuery(BaseModel):
    recent: bool = Field(default=False, description="false: open alerts; true: raised since 'since', cleared too")
    since: float | None = Field(default=None, ge=0, le=1e11)
    limit: int = Field(default=100, ge=1, le=10_000)


class AcknowledgeBody(Strict):
    by: Line | None = Field(default=None, max_length=100, description="who saw it (shown in the audit log)")


def _unix_time_range(value: datetime) -> datetime:
    """The store holds a show's end as a Unix time above 0 and below 1e11: the range said in dates, as given."""
    if not 0 < value.timestamp() < 1e11:
        raise ValueError("expected a date and time after 1970-01-01T00:00:00Z and before 5138-11-16T09:46:40Z")
    return value


class ShowBody(Strict):
    end_at: Annotated[AwareDatetime, AfterValidator(_unix_time_range)] | None = Field(
        description="ISO 8601 with a UTC offset, e.g. 2026-12-05T22:30:00+01:00; null: no show"
    )
    margin_min: int = Field(default=15, ge=0, le=MAX_MARGIN_MIN, description="a pack must last this long past the end")


_ISO_8601: Final = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d")
# a date and time, then a space and an HH:MM offset: a `+01:00` typed into a URL as it is (curl and browsers send
# the `+`), which a query string decodes as a space
_PLUS_AS_SPACE: Final = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)")


def _iso_8601_only(value: Any) -> Any:
    """A query string is text, and pydantic would read '0.5' as a Unix time: only a date and time will do. A
    space before the offset is taken as the `+` it was (liberal: nothing else can have been meant there)."""
    if not isinstance(value, str) or not _ISO_8601.match(value):
        raise ValueError("expected an ISO 8601 date and time with a UTC offset (write its + as %2B in a URL)")
    plus_as_space = _PLUS_AS_SPACE.fullmatch(value)
    return f"{plus_as_space[1]}+{plus_as_space[2]}" if plus_as_space else value


class SwapListQuery(BaseModel):
    until: Annotated[AwareDatetime, BeforeValidator(_iso_8601_only)] | None = Field(
        default=None, description="ISO 8601 with a UTC offset; default: the show's end"
    )


class DeviceLocationBody(Strict):
    location_id: int | None = Field(ge=1, description="null takes the device out of every location")


class AlertList(Strict):
    items: list[Alert]
    total: int | None = Field(
        default=None, description="open alerts in all, more than items when cut at limit; null with recent=true"
    )


class LocationList(Strict):
    items: list[Location]


class SlotList(Strict):
    items: list[Slot]


class GroupList(Strict):
    items: list[Group]


class PerformerList(Strict):
    items: list[Performer]


class AssignmentList(Strict):
    items: list[Assignment]


class HistoryList(Strict):
    items: list[HistoryPoint]


class AuditList(Strict):
    items: list[AuditEntry]


# handlers


@store_errors
async def list_alerts(request: web.Request) -> web.Response:
    query = parse_query(request, AlertQuery)
    alerts = venue(request).alerts
    if query.recent:
        return json_response(AlertList(items=await alerts.recent(since=query.since, limit=query.limit)))
    # cut at the oldest end: the newest alert (a receiver that just went offline) is the one that matters now
    open_alerts = alerts.open_alerts()
    return json_response(AlertList(items=open_alerts[-query.limit :], total=len(open_alerts)))


@store_errors
async def acknowledge_alert(request: web.Request) -> web.Response:
    body = await parse_body(request, AcknowledgeBody, optional=True)
    alert = await venue(request).alerts.acknowledge(path_number(request, "alert_id"), source=SOURCE, by=body.by)
    return json_response(alert)


@store_errors
async def set_device_location(request: web.Request) -> web.Response:
    body = await parse_body(request, DeviceLocationBody)
    known = await venue(request).devices.set_location(request.match_info["device_id"], body.location_id, source=SOURCE)
    return json_response(known)


async def list_locations(request: web.Request) -> web.Response:
    return json_response(LocationList(items=venue(request).locations.all()))


@store_errors
async def create_location(request: web.Request) -> web.Response:
    body = await parse_body(request, LocationBody)
    location = await venue(request).locations.create(body.name, body.kind, source=SOURCE, parent_id=body.parent_id)
    return json_response(location, 201)


@store_errors
async def update_location(request: web.Request) -> web.Response:
    locations = venue(request).locations
    location_id = path_number(request, "location_id")
    body = await parse_body(request, LocationPatch)
    move = body.parent_id is not None or body.move_to_top
    location = await locations.update(
        location_id, source=SOURCE, name=body.name, kind=body.kind, move=move, parent_id=body.parent_id
    )
    return json_response(location)


@store_errors
async def delete_location(request: web.Request) -> web.Response:
    await venue(request).locations.delete(path_number(request, "location_id"), source=SOURCE)
    return web.Response(status=NO_CONTENT)


async def list_slots(request: web.Request) -> web.Response:
    return json_response(SlotList(items=venue(request).slots.all()))


@store_errors
async def set_slot(request: web.Request) -> web.Response:
    body = await parse_body(request, SlotBody)
    slot = await venue(request).slots.set(path_number(request, "number"), body.device_id, body.channel, source=SOURCE)
    return json_response(slot)


@store_errors
async def clear_slot(request: web.Request) -> web.Response:
    await venue(request).slots.clear(path_number(request, "number"), source=SOURCE)
    return web.Response(status=NO_CONTENT)


async def list_groups(request: web.Request) -> web.Response:
    return json_response(GroupList(items=venue(request).groups.all()))


@store_errors
async def put_group(request: web.Request) -> web.Response:
    groups = venue(request).groups
    number = path_number(request, "number")
    body = await parse_body(request, GroupBody)
    exists = any(group.number == number for group in groups.all())
    if exists:
        group = await groups.update(number, source=SOURCE, title=body.title, slots=body.slots)
    else:
        group = await groups.create(number, body.title, body.slots, source=SOURCE)
    return json_response(group, 200 if exists else 201)


@store_errors
async def delete_group(request: web.Request) -> web.Response:
    await venue(request).groups.delete(path_number(request, "number"), source=SOURCE)
    return web.Response(status=NO_CONTENT)


async def list_performers(request: web.Request) -> web.Response:
    return json_response(PerformerList(items=venue(request).performers.all()))


@store_errors
async def create_performer(request: web.Request) -> web.Response:
    body = await parse_body(request, PerformerBody)
    performer = await venue(request).performers.create(body.name, source=SOURCE, notes=body.notes)
    return json_response(performer, 201)


@store_errors
async def update_performer(request: web.Request) -> web.Response:
    body = await parse_body(request, PerformerPatch)
    performer = await venue(request).performers.update(
        path_number(request, "performer_id"), source=SOURCE, name=body.name, notes=body.notes
    )
    return json_response(performer)


@store_errors
async def delete_performer(request: web.Request) -> web.Response:
    await venue(request).performers.delete(path_number(request, "performer_id"), source=SOURCE)
    return web.Response(status=NO_CONTENT)


async def list_assignments(request: web.Request) -> web.Response:
    query = parse_query(request, AssignmentQuery)
    return json_response(AssignmentList(items=venue(request).performers.assignments(query.performer_id)))


@store_errors
async def assign_channel(request: web.Request) -> web.Response:
    device, channel = find_channel(request.app[HUB_KEY], request.match_info["channel_id"])
    body = await parse_body(request, AssignmentBody)
    assignment = await venue(request).performers.assign(
        body.performer_id, device.id, channel.index, source=SOURCE, alert_prefs=body.alert_prefs
    )
    return json_response(assignment)


@store_errors
async def unassign_channel(request: web.Request) -> web.Response:
    device, channel = find_channel(request.app[HUB_KEY], request.match_info["channel_id"])
    await venue(request).performers.unassign(device.id, channel.index, source=SOURCE)
    return web.Response(status=NO_CONTENT)


@store_errors
async def channel_history(request: web.Request) -> web.Response:
    # the stored history answers, live or not: a receiver switched off keeps its history readable
    device_id, index = channel_key(request.match_info["channel_id"])
    query = parse_query(request, HistoryQuery)
    points = await venue(request).history.query(device_id, index, query.since, query.until, query.step)
    return json_response(HistoryList(items=points))


async def get_show(request: web.Request) -> web.Response:
    return json_response(venue(request).show.settings)


@store_errors
async def set_show(request: web.Request) -> web.Response:
    body = await parse_body(request, ShowBody)
    end_at = body.end_at.timestamp() if body.end_at is not None else None
    show = venue(request).show
    settings = await show.set(end_at, body.margin_min, source=SOURCE)
    await show.check()  # the swap list, its alerts and MQTT follow the new end at once
    return json_response(settings)


async def swap_list(request: web.Request) -> web.Response:
    query = parse_query(request, SwapListQuery)
    until = query.until.timestamp() if query.until is not None else None
    return json_response(await venue(request).show.swap_list(until))


@store_errors
async def audit_log(request: web.Request) -> web.Response:
    query = parse_query(request, AuditQuery)
    entries = await venue(request).audit.query(
        target=query.target, source=query.source, since=query.since, until=query.until, limit=query.limit
    )
    return json_response(AuditList(items=entries))


_LOCATION = {"location_id": "a location id"}
_ALERT = {"alert_id": "an alert id"}
_DEVICE = {"device_id": "a device id or URL of a known device"}
_SLOT = {"number": "a slot number (1-based)"}
_GROUP = {"number": "a group number (the board's keys 1-9 select groups 1-9)"}
_SLOT_RANGE = {"number": (1, MAX_SLOT)}
_GROUP_RANGE = {"number": (0, MAX_GROUP)}
_PERFORMER = {"performer_id": "a performer id"}
_CHANNEL = {"channel_id": "'<device_id>:<index>', e.g. shure-ABC123:1"}
_WRITE_ERRORS = (400, 404, 409, 422)

VENUE_OPERATIONS: Final = (
    Operation("GET", "/api/v1/alerts", list_alerts, "Open alerts (or recent ones, cleared too)", "alerts",
              query=AlertQuery, response=AlertList, errors=(422, 503)),
    Operation("POST", r"/api/v1/alerts/{alert_id:[0-9]+}/acknowledge", acknowledge_alert,
              "Acknowledge an open alert (it stays open until its condition clears)", "alerts", write=True,
              body=AcknowledgeBody, body_optional=True, response=Alert, errors=(400, 404, 409, 422, 503),
              path_params=_ALERT),
    Operation("PUT", "/api/v1/devices/{device_id}/location", set_device_location, "Place a known device",
              "venue", write=True, body=DeviceLocationBody, response=KnownDevice, errors=_WRITE_ERRORS,
              path_params=_DEVICE),
    Operation("GET", "/api/v1/locations", list_locations, "Rooms, stages and racks", "venue", response=LocationList),
    Operation("POST", "/api/v1/locations", create_location, "Create a location", "venue", write=True,
              body=LocationBody, response=Location, status=201, errors=_WRITE_ERRORS),
    Operation("PATCH", r"/api/v1/locations/{location_id:[0-9]+}", update_location, "Rename or move a location",
              "venue", write=True, body=LocationPatch, response=Location, errors=_WRITE_ERRORS, path_params=_LOCATION),
    Operation("DELETE", r"/api/v1/locations/{location_id:[0-9]+}", delete_location, "Delete an unused location",
              "venue", write=True, status=204, errors=(404, 409), path_params=_LOCATION),
    Operation("GET", "/api/v1/slots", list_slots, "Board slots and the channel each shows", "venue",
              response=SlotList),
    Operation("PUT", r"/api/v1/slots/{number:[0-9]+}", set_slot, "Bind a slot to a device channel", "venue",
              write=True, body=SlotBody, response=Slot, errors=_WRITE_ERRORS, path_params=_SLOT,
              path_ranges=_SLOT_RANGE),
    Operation("DELETE", r"/api/v1/slots/{number:[0-9]+}", clear_slot, "Empty a slot", "venue", write=True,
              status=204, errors=(404,), path_params=_SLOT, path_ranges=_SLOT_RANGE),
    Operation("GET", "/api/v1/groups", list_groups, "Groups: named, ordered sets of slots", "venue",
              response=GroupList),
    Operation("PUT", r"/api/v1/groups/{number:[0-9]+}", put_group, "Create (201) or replace (200) a group", "venue",
              write=True, body=GroupBody, response=Group, status=201, also=200, errors=_WRITE_ERRORS,
              path_params=_GROUP, path_ranges=_GROUP_RANGE),
    Operation("DELETE", r"/api/v1/groups/{number:[0-9]+}", delete_group, "Delete a group", "venue", write=True,
              status=204, errors=(404,), path_params=_GROUP, path_ranges=_GROUP_RANGE),
    Operation("GET", "/api/v1/performers", list_performers, "Performers", "venue", response=PerformerList),
    Operation("POST", "/api/v1/performers", create_performer, "Create a performer", "venue", write=True,
              body=PerformerBody, response=Performer, status=201, errors=_WRITE_ERRORS),
    Operation("PATCH", r"/api/v1/performers/{performer_id:[0-9]+}", update_performer, "Change a performer",
              "venue", write=True, body=PerformerPatch, response=Performer, errors=_WRITE_ERRORS,
              path_params=_PERFORMER),
    Operation("DELETE", r"/api/v1/performers/{performer_id:[0-9]+}", delete_performer, "Delete a performer",
              "venue", write=True, status=204, errors=(404, 409), path_params=_PERFORMER),
    Operation("GET", "/api/v1/assignments", list_assignments, "Performer <-> channel assignments", "venue",
              query=AssignmentQuery, response=AssignmentList, errors=(422,)),
    Operation("PUT", "/api/v1/channels/{channel_id}/assignment", assign_channel,
              "Give a channel to a performer (with alert preferences)", "venue", write=True, body=AssignmentBody,
              response=Assignment, errors=_WRITE_ERRORS, path_params=_CHANNEL),
    Operation("DELETE", "/api/v1/channels/{channel_id}/assignment", unassign_channel,
              "Take a channel from its performer", "venue", write=True, status=204, errors=(404,),
              path_params=_CHANNEL),
    Operation("GET", "/api/v1/channels/{channel_id}/history", channel_history,
              "Battery, RF and audio of a channel over a time range (min/avg/max buckets)", "history",
              query=HistoryQuery, response=HistoryList, errors=(404, 422, 503), path_params=_CHANNEL),
    Operation("GET", "/api/v1/show", get_show, "The show's end time and swap margin", "show",
              response=ShowSettings),
    Operation("PUT", "/api/v1/show", set_show, "Set (or clear) the show's end time and swap margin", "show",
              write=True, body=ShowBody, response=ShowSettings, errors=(400, 422)),
    Operation("GET", "/api/v1/swap-list", swap_list,
              "Transmitter packs that will be empty before the show's end (or 'until') plus the margin", "show",
              query=SwapListQuery, response=SwapList, errors=(422,)),
    Operation("GET", "/api/v1/audit", audit_log, "Commands and configuration changes, newest first", "history",
              query=AuditQuery, response=AuditList, errors=(422, 503)),
)  # fmt: skip
