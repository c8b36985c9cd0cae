"""The fleet's own routes, next to the hub's device and channel API (hub.web.api), which it serves as is.

``GET /api/v1/fleet/hubs`` lists the hubs with their online state and receivers. The board's venue
routes are answered from the hubs rather than from a venue store: every channel gets a slot, hub after
hub, and each hub is a group titled with its id and its state, so the unchanged board shows one group of
tiles per hub (keys 1-9 pick one). Alerts are every hub's open alerts, read from ``<base>/hubs/+/alerts``.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from pydantic import Field

from hub.fleet.mirror import FleetMirror
from hub.records import Group, Slot
from hub.web.api import HUB_KEY
from hub.web.routing import Operation, json_response
from hub.web.schemas import Strict
from hub.web.venue import AlertList, AssignmentList, GroupList, PerformerList, SlotList

# set by the composition root on the fleet's web server: the mirror these routes read the hubs from
MIRROR_KEY: Final = web.AppKey("fleet_mirror", FleetMirror)
# the board offers keys 1-9 for groups; a fleet of more hubs still shows all of them under "All"
BOARD_GROUPS: Final = 9


class HubSummary(Strict):
    hub_id: str
    online: bool = Field(description="the hub's state topic (its last will says offline)")
    version: str | None
    devices: list[str] = Field(description="ids of the receivers the hub lists as its own")
    devices_online: int
    alerts: int


class HubList(Strict):
    items: list[HubSummary]


def _slots_and_groups(request: web.Request) -> tuple[list[Slot], list[Group]]:
    mirror = request.app[MIRROR_KEY]
    slots: list[Slot] = []
    groups: list[Group] = []
    devices = request.app[HUB_KEY].state.devices

    def add_slots(device_ids: set[str]) -> None:
        for device_id in sorted(device_ids & devices.keys()):
            for channel in devices[device_id].channels:
                slots.append(Slot(number=len(slots) + 1, device_id=device_id, channel=channel.index))

    for number, view in enumerate(sorted(mirror.hubs.values(), key=lambda hub: hub.hub_id), 1):
        first = len(slots) + 1
        # a receiver two hubs list gets its tiles once, under the hub that carries out its commands
        add_slots({device_id for device_id in view.device_ids if mirror.home_hub(device_id) == view.hub_id})
        if number <= BOARD_GROUPS:
            title = view.hub_id if view.online else f"{view.hub_id} (offline)"
            groups.append(Group(number=number, title=title, slots=list(range(first, len(slots) + 1))))
    add_slots(set(devices) - mirror.listing.keys())  # heard of before its hub's device list arrived
    return slots, groups


async def list_hubs(request: web.Request) -> web.Response:
    devices = request.app[HUB_KEY].state.devices
    items = [
        HubSummary(
            hub_id=view.hub_id,
            online=view.online,
            version=view.info.get("version"),
            devices=view.device_ids,
            devices_online=sum(1 for d in view.device_ids if d in devices and devices[d].online),
            alerts=len(view.alerts),
        )
        for view in sorted(request.app[MIRROR_KEY].hubs.values(), key=lambda hub: hub.hub_id)
    ]
    return json_response(HubList(items=items))


async def list_slots(request: web.Request) -> web.Response:
    return json_response(SlotList(items=_slots_and_groups(request)[0]))


async def list_groups(request: web.Request) -> web.Response:
    return json_response(GroupList(items=_slots_and_groups(request)[1]))


async def list_performers(request: web.Request) -> web.Response:
    return json_response(PerformerList(items=[]))


async def list_assignments(request: web.Request) -> web.Response:
    return json_response(AssignmentList(items=[]))


async def list_alerts(request: web.Request) -> web.Response:
    hubs = sorted(request.app[MIRROR_KEY].hubs.values(), key=lambda hub: hub.hub_id)
    items = [alert for view in hubs for alert in view.alerts]
    return json_response(AlertList(items=items, total=len(items)))


FLEET_OPERATIONS: Final = (
    Operation("GET", "/api/v1/fleet/hubs", list_hubs, "Every hub on the broker, its state and receivers", "fleet",
              response=HubList),
    Operation("GET", "/api/v1/slots", list_slots, "One slot per channel, hub after hub", "fleet", response=SlotList),
    Operation("GET", "/api/v1/groups", list_groups, "One group per hub, titled with its state", "fleet",
              response=GroupList),
    Operation("GET", "/api/v1/performers", list_performers, "None on a fleet board", "fleet",
              response=PerformerList),
    Operation("GET", "/api/v1/assignments", list_assignments, "None on a fleet board", "fleet",
              response=AssignmentList),
    Operation("GET", "/api/v1/alerts", list_alerts, "Every hub's open alerts", "fleet", response=AlertList),
)  # fmt: skip
