"""Hub requests: ``<base>/hubs/<hub_id>/request/<command>``, answered on ``…/response/<command>``.

Requests that change which devices the hub watches are off unless ``mqtt.admin`` is on (docs/mqtt.md).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import Field

from hub.mqtt.control import SOURCE
from hub.mqtt.messages import RequestError, StrictMessage, check_deadline, parse_object, shortened, validate
from hub.mqtt.publisher import StatePublisher
from hub.records import StoreError
from hub.service import DiscoveryOffError, HubService, VenueService
from hub.text import DEFAULT_TEXT_WIDTH, preview

log = logging.getLogger("hub.mqtt")

# Requests that change which devices the hub watches (and so which hosts and ports it connects to).
ADMIN_REQUESTS = frozenset({"device/add", "device/remove", "candidate/approve"})
# Longer than any device URL or id a person types; a longer one is refused, not echoed.
MAX_URL_CHARS = 2048


class UrlRequest(StrictMessage):
    url: str = Field(min_length=1, max_length=MAX_URL_CHARS)


class RemoveRequest(StrictMessage):
    id: str = Field(min_length=1, max_length=MAX_URL_CHARS, description="device id or URL")


class RenameRequest(StrictMessage):
    device_id: str
    channel: int = Field(ge=1)
    name: str | None = Field(max_length=DEFAULT_TEXT_WIDTH, description="the extended name; null clears it")


class MeterRateRequest(StrictMessage):
    ms: int = Field(ge=0, le=99999)
    device_id: str | None = None
    # a request that reaches the receivers: its deadline bounds each one's command as a set's does
    deadline: float | None = None


class EmptyRequest(StrictMessage):
    pass


RequestHandler = Callable[[Any], Awaitable[Any]]


class HubRequests(StatePublisher):
    """The hub's request topics: info, devices, candidates, and (with ``mqtt.admin``) adding and removing."""

    def __init__(self, hub: HubService, venue: VenueService) -> None:
        super().__init__(hub, venue)
        self._requests: dict[str, tuple[type[StrictMessage], RequestHandler]] = {
            "info": (EmptyRequest, self._request_info),
            "devices": (EmptyRequest, self._request_devices),
            "device/add": (UrlRequest, self._request_add),
            "device/remove": (RemoveRequest, self._request_remove),
            "candidates": (EmptyRequest, self._request_candidates),
            "candidate/approve": (UrlRequest, self._request_approve),
            "channel/rename": (RenameRequest, self._request_rename),
            "meter_rate": (MeterRateRequest, self._request_meter_rate),
            "discovery/restart": (EmptyRequest, self._request_discovery_restart),
        }

    def _takes_values(self, command: str) -> bool:
        """Whether ``command`` is a known request with a key it cannot do without (which no empty payload holds)."""
        entry = self._requests.get(command)
        return entry is not None and any(field.is_required() for field in entry[0].model_fields.values())

    async def _answer_request(self, command: str, raw: bytes) -> None:
        request: dict[str, Any] | None = None
        try:
            request = parse_object(raw)
            check_deadline(request, self.hub.clock.now())
            entry = self._requests.get(command)
            if entry is None:
                # request/ itself: a client's topic template left its command empty ({{cmd}} unset in Node-RED)
                hint = " (the topic names no command after request/)" if not command else ""
                known = ", ".join(sorted(self._requests))
                raise RequestError(f"unknown request {preview(command)}{hint}; known: {known}")
            if command in ADMIN_REQUESTS and not self.settings.admin:
                raise RequestError(
                    f"{command} is off over MQTT (mqtt.admin = false); use the REST API, or turn mqtt.admin on "
                    "once the broker's ACL limits who may publish requests"
                )
            model, handler = entry
            data = await handler(validate(model, request))
        # ValueError: hub.drivers.EndpointError, a bad URL; StoreError: a name too long, a performer not found
        except (RequestError, StoreError, ValueError, LookupError, DiscoveryOffError) as exc:
            message = shortened(str(exc))
            log.warning("MQTT request %s refused: %s", preview(command), message)
            self._respond(command, request, "error", {}, message)
        except Exception as exc:
            log.exception("MQTT request %s failed", preview(command))
            self._respond(command, request, "error", {}, f"internal error: {shortened(str(exc))}")
        else:
            self._respond(command, request, "ok", data, None)

    async def _request_info(self, request: EmptyRequest) -> Any:
        return self.hub.info()

    async def _request_devices(self, request: EmptyRequest) -> Any:
        return self._device_summaries()

    async def _request_add(self, request: UrlRequest) -> Any:
        managed = await self.hub.add_device(request.url, SOURCE)
        return {"url": managed.url, "plugin": managed.plugin, "device_id": managed.device_id}

    async def _request_remove(self, request: RemoveRequest) -> Any:
        if not await self.hub.remove_device(request.id, SOURCE):
            raise RequestError(f"unknown device {preview(request.id)}")
        return {"id": request.id}

    async def _request_candidates(self, request: EmptyRequest) -> Any:
        return [dataclasses.asdict(candidate) for candidate in self.hub.candidates()]

    async def _request_approve(self, request: UrlRequest) -> Any:
        managed = await self.hub.approve_candidate(request.url, SOURCE)
        return {"url": managed.url, "plugin": managed.plugin, "device_id": managed.device_id}

    async def _request_rename(self, request: RenameRequest) -> Any:
        await self.hub.rename_channel(request.device_id, request.channel, request.name, SOURCE)
        return request.model_dump()

    async def _request_meter_rate(self, request: MeterRateRequest) -> Any:
        results = await self.hub.set_meter_rate(request.ms, request.device_id, SOURCE, request.deadline)
        # asked of every device, one whose family has no meter_rate command (UHF-R, the PSM1000, SSCv2) is
        # no failure
        without = (
            []
            if request.device_id is not None
            else [device_id for device_id, result in results.items() if result.code == "not_supported"]
        )
        failed = [
            f"{device_id}: {result.error or result.code}"
            for device_id, result in results.items()
            if not result.ok and device_id not in without
        ]
        if failed:
            raise RequestError("; ".join(failed))
        return {"ms": request.ms, "devices": len(results) - len(without), "without_meter_rate": without}

    async def _request_discovery_restart(self, request: EmptyRequest) -> Any:
        await self.hub.restart_discovery()
        return {}
