"""REST API v1: devices, channels, control, discovery candidates and health.

A channel's id is ``<device_id>:<index>`` (device ids never contain ``:``-separated numbers at the end,
so the last ``:`` splits). Control goes through ``Hub.apply`` with source ``rest``; the HTTP status of a
failed command follows its ``CommandResult.code`` (see :data:`COMMAND_STATUS` and docs/api.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from aiohttp import web

from hub.model import LOW_BATTERY, Channel, Command, CommandResult, Device
from hub.redact import redact
from hub.service import HubService, PluginFaultError, UnknownCandidateError
from hub.text import small_number
from hub.web.routing import ApiError, Operation, json_response, not_found, parse_body, parse_query
from hub.web.schemas import (
    AddDeviceBody,
    ApproveBody,
    CandidateList,
    CandidateView,
    ChannelPage,
    ChannelView,
    CommandBody,
    CommandOutcome,
    ConnectionHealth,
    DevicePage,
    DeviceView,
    ExtendedNameBody,
    Health,
    HubInfo,
    ListQuery,
    ManagedView,
    MqttHealth,
)

HUB_KEY: Final = web.AppKey("hub", HubService)
LIVE_COUNT_KEY: Final[web.AppKey[Callable[[], int]]] = web.AppKey("live_count")
# set on every request by the web server: it carried the API token
AUTHORIZED_KEY: Final = web.RequestKey("wmhub_authorized", bool)
SOURCE: Final = "rest"

# HTTP status for a failed command, by CommandResult.code; anything else is a 502 (the device side failed).
COMMAND_STATUS: Final = {
    "invalid": 422,
    "not_supported": 409,
    "unavailable": 503,
    "not_found": 404,
    "timeout": 504,
    "refused": 502,
    "plugin_error": 502,
    "rate_limited": 429,
}


_CHANNELS: Final = {"channels"}
_CONNECTION_FIELDS: Final = tuple(ConnectionHealth.model_fields)


def channel_id(device_id: str, index: int) -> str:
    return f"{device_id}:{index}"


def channel_json(device: Device, channel: Channel) -> dict[str, Any]:
    """A channel as the API shows it (a ChannelView), from the model's own JSON dump plus the view's fields.

    The store's models are already valid (plugin output is checked before it is merged), so the API does not
    build and validate a view model per channel: that cost a page of 1,000 devices about 120 ms, and an open
    board every channel that changed twice a second, all of it time the event loop stood still. A test holds
    the output to the view models'."""
    fields = channel.model_dump(mode="json")
    fields.update(_channel_view_fields(device, channel.index))
    return fields


def _channel_view_fields(device: Device, index: int) -> dict[str, Any]:
    """What a ChannelView adds to the channel's own fields."""
    return {"id": channel_id(device.id, index), "device_id": device.id, "device_online": device.online}


def _connection_fields(health: Mapping[str, Any]) -> dict[str, Any]:
    """What a ConnectionHealth shows of a device's connection health."""
    return {name: health[name] for name in _CONNECTION_FIELDS}


def connection_view(health: dict[str, Any]) -> ConnectionHealth:
    return ConnectionHealth(**_connection_fields(health))


def device_json(hub: HubService, device: Device, *, channels: bool = True) -> dict[str, Any]:
    """A device as the API shows it (a DeviceView), built like :func:`channel_json`; without ``channels`` the
    list is left out (the board's change messages carry channels apart)."""
    if channels:
        fields = device.model_dump(mode="json")
        for channel, shown in zip(device.channels, fields["channels"], strict=True):
            shown.update(_channel_view_fields(device, channel.index))
    else:
        fields = device.model_dump(mode="json", exclude=_CHANNELS)
    health = hub.connection(device.id)
    fields["connection"] = _connection_fields(health) if health is not None else None
    return fields


def _device_filter(hub: HubService, query: ListQuery) -> Callable[[Device], bool]:
    placed = hub.devices_at(query.location) if query.location is not None else None
    return lambda device: _device_matches(device, query) and (placed is None or device.id in placed)


def _find_device(hub: HubService, device_id: str) -> Device:
    device = hub.state.get(device_id)
    if device is None:
        raise not_found(f"device {device_id!r}")
    return device


def channel_not_found(channel_ref: str) -> ApiError:
    return not_found(f"channel {channel_ref!r}", "ids look like '<device_id>:<index>'")


def channel_key(channel_ref: str) -> tuple[str, int]:
    """(device id, channel index) of a channel id, whether or not the channel is in the live state: what is
    stored of a receiver that is off (its history) is looked up by this."""
    device_id, _, index_text = channel_ref.rpartition(":")
    index = small_number(index_text)
    if not device_id or index is None:
        raise channel_not_found(channel_ref)
    return device_id, index


def find_channel(hub: HubService, channel_ref: str) -> tuple[Device, Channel]:
    device_id, index = channel_key(channel_ref)
    device = hub.state.get(device_id)
    channel = device.channel(index) if device is not None else None
    if device is None or channel is None:
        raise channel_not_found(channel_ref)
    return device, channel


def _device_matches(device: Device, query: ListQuery) -> bool:
    if query.online is not None and device.online != query.online:
        return False
    if query.vendor is not None and device.vendor != query.vendor:
        return False
    return query.low_battery is None or any(LOW_BATTERY.is_low(ch) for ch in device.channels) == query.low_battery


def _page_bounds(total: int, query: ListQuery) -> slice:
    return slice(min(query.offset, total), min(query.offset + query.limit, total))


def _page(total: int, query: ListQuery, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A DevicePage or ChannelPage, its fields in the models' order."""
    return {"total": total, "limit": query.limit, "offset": query.offset, "items": items}


async def list_devices(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    query = parse_query(request, ListQuery)
    matches = _device_filter(hub, query)
    devices = sorted((d for d in hub.state.devices.values() if matches(d)), key=lambda d: d.id)
    page = devices[_page_bounds(len(devices), query)]
    return json_response(_page(len(devices), query, [device_json(hub, d) for d in page]))


async def get_device(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    return json_response(device_json(hub, _find_device(hub, request.match_info["device_id"])))


async def list_channels(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    query = parse_query(request, ListQuery)
    matches = _device_filter(hub, query.model_copy(update={"low_battery": None}))
    channels = [
        (device, channel)
        for device in sorted(hub.state.devices.values(), key=lambda d: d.id)
        if matches(device)
        for channel in device.channels
        if query.low_battery is None or LOW_BATTERY.is_low(channel) == query.low_battery
    ]
    page = channels[_page_bounds(len(channels), query)]
    return json_response(_page(len(channels), query, [channel_json(device, channel) for device, channel in page]))


async def get_channel(request: web.Request) -> web.Response:
    device, channel = find_channel(request.app[HUB_KEY], request.match_info["channel_id"])
    return json_response(channel_json(device, channel))


async def _run_command(hub: HubService, device_id: str, channel: int | None, body: CommandBody) -> web.Response:
    command = Command(device_id=device_id, channel=channel, kind=body.kind, value=body.value, slot=body.slot)
    result = await hub.apply(command, SOURCE)
    outcome = CommandOutcome(ok=result.ok, value=result.value, error=result.error, code=result.code)
    if result.ok:
        return json_response(outcome)
    raise command_error(hub, result, outcome.model_dump(mode="json"))


def command_error(hub: HubService, result: CommandResult, details: Any) -> ApiError:
    """The answer to a failed command: its status by :data:`COMMAND_STATUS`; a refusal beyond the device's
    rate says in ``Retry-After`` (whole seconds) when the next command is let through."""
    code = result.code or "failed"
    headers = {}
    if code == "rate_limited":
        rate = hub.config.control_rate_per_s
        headers["Retry-After"] = str(max(1, math.ceil(1 / rate)) if rate else 1)
    return ApiError(COMMAND_STATUS.get(code, 502), code, result.error or "the command failed", details, headers)


async def channel_command(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    device, channel = find_channel(hub, request.match_info["channel_id"])
    body = await parse_body(request, CommandBody)
    return await _run_command(hub, device.id, channel.index, body)


async def device_command(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    device = _find_device(hub, request.match_info["device_id"])
    body = await parse_body(request, CommandBody)
    return await _run_command(hub, device.id, None, body)


async def set_extended_name(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    device, channel = find_channel(hub, request.match_info["channel_id"])
    body = await parse_body(request, ExtendedNameBody)
    name = (body.name or "").strip() or None
    await hub.rename_channel(device.id, channel.index, name, SOURCE)
    return json_response(channel_json(device, channel))


async def add_device(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body = await parse_body(request, AddDeviceBody)
    known = hub.manages(body.url)
    try:
        managed = await hub.add_device(body.url, SOURCE)
    except PluginFaultError as exc:  # the plugin's bug: the URL may be fine
        raise ApiError(502, "plugin_error", str(exc)) from None
    except ValueError as exc:  # EndpointError, or urllib refusing the URL outright (e.g. "x://[")
        raise ApiError(422, "invalid_url", redact(str(exc))) from None
    return json_response(ManagedView(url=managed.url, device_id=managed.device_id), 200 if known else 201)


async def remove_device(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    device_id = request.match_info["device_id"]
    if not await hub.remove_device(device_id, SOURCE):
        if "://" in device_id:
            raise not_found(f"device {device_id!r}")
        # an id the hub has not heard yet: one it was never told (a receiver with a serial, added while off)
        raise ApiError(
            404,
            "not_found",
            f"device {device_id!r} not found; a device that has not identified itself yet is found by its URL "
            "too (percent-encoded: DELETE /api/v1/devices/shure%3A%2F%2F10.0.0.5)",
        )
    return web.Response(status=204)


def _candidate_view(hub: HubService) -> CandidateList:
    return CandidateList(
        items=[CandidateView.model_validate(candidate, from_attributes=True) for candidate in hub.candidates()]
    )


async def list_candidates(request: web.Request) -> web.Response:
    return json_response(_candidate_view(request.app[HUB_KEY]))


async def approve_candidate(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body = await parse_body(request, ApproveBody)
    try:
        managed = await hub.approve_candidate(body.url, SOURCE)
    except UnknownCandidateError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except PluginFaultError as exc:
        raise ApiError(502, "plugin_error", str(exc)) from None
    except ValueError as exc:
        raise ApiError(422, "invalid_url", redact(str(exc))) from None
    return json_response(ManagedView(url=managed.url, device_id=managed.device_id), 201)


async def health(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    devices = hub.state.devices.values()
    detail = request.get(AUTHORIZED_KEY, False)  # why a device never answered: for the token holder only
    connections = [connection_view(health) for health in hub.connections(detail)]
    return json_response(
        Health(
            status="degraded" if (problem := hub.degraded()) else "ok",
            database_problem=problem,
            hub_id=hub.config.hub_id,
            version=hub.info()["version"],
            uptime_s=round(hub.uptime_s, 3),
            devices=len(devices),
            devices_online=sum(1 for d in devices if d.online),
            live_clients=request.app[LIVE_COUNT_KEY](),
            connections=connections,
            mqtt=_mqtt_health(hub.mqtt),
        )
    )


def _mqtt_health(bridge: Any) -> MqttHealth | None:
    client = bridge.client if bridge is not None else None
    if client is None:
        return None
    error = redact(client.last_error) if client.last_error and not client.connected else None
    return MqttHealth(connected=client.connected, broker=str(client.address), last_error=error)


async def hub_info(request: web.Request) -> web.Response:
    return json_response(HubInfo.model_validate(request.app[HUB_KEY].info()))


_DEVICE_ID = {"device_id": "a device id, e.g. shure-ABC123"}
_CHANNEL_ID = {"channel_id": "'<device_id>:<index>', e.g. shure-ABC123:1"}

OPERATIONS: Final = (
    Operation("GET", "/api/health", health, "Hub health and per-device connection health", "health",
              response=Health),
    Operation("GET", "/api/v1/hub", hub_info, "Version, loaded plugins (with their errors), settings summary",
              "health", response=HubInfo),
    Operation("GET", "/api/v1/devices", list_devices, "List devices with their channels", "devices",
              query=ListQuery, response=DevicePage, errors=(422,)),
    Operation("POST", "/api/v1/devices", add_device, "Add a device by URL (201; 200 if already known)", "devices",
              write=True, body=AddDeviceBody, response=ManagedView, status=201, also=200, errors=(400, 422, 502)),
    Operation("GET", "/api/v1/devices/{device_id}", get_device, "One device with its channels", "devices",
              response=DeviceView, errors=(404,), path_params=_DEVICE_ID),
    Operation("DELETE", "/api/v1/devices/{device_id}", remove_device, "Stop watching a device", "devices",
              write=True, status=204, errors=(404,), path_params=_DEVICE_ID),
    Operation("POST", "/api/v1/devices/{device_id}/commands", device_command, "Control a whole device", "control",
              write=True, body=CommandBody, response=CommandOutcome, errors=(400, 404, 409, 422, 429, 502, 503, 504),
              path_params=_DEVICE_ID),
    Operation("GET", "/api/v1/channels", list_channels, "List channels of every device", "channels",
              query=ListQuery, response=ChannelPage, errors=(422,)),
    Operation("GET", "/api/v1/channels/{channel_id}", get_channel, "One channel", "channels",
              response=ChannelView, errors=(404,), path_params=_CHANNEL_ID),
    Operation("POST", "/api/v1/channels/{channel_id}/commands", channel_command, "Control a channel", "control",
              write=True, body=CommandBody, response=CommandOutcome, errors=(400, 404, 409, 422, 429, 502, 503, 504),
              path_params=_CHANNEL_ID),
    Operation("PUT", "/api/v1/channels/{channel_id}/extended-name", set_extended_name,
              "Set or clear the hub's extended name of a channel", "channels", write=True, body=ExtendedNameBody,
              response=ChannelView, errors=(400, 404, 422), path_params=_CHANNEL_ID),
    Operation("GET", "/api/v1/candidates", list_candidates, "Discovered devices waiting for approval",
              "discovery", response=CandidateList),
    Operation("POST", "/api/v1/candidates/approve", approve_candidate, "Approve a discovery candidate",
              "discovery", write=True, body=ApproveBody, response=ManagedView, status=201, errors=(400, 404, 422, 502)),
)  # fmt: skip
