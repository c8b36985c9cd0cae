"""The composition root: the one module that builds a hub and the edges it serves.

:class:`~hub.app.Hub` is the core (devices, state, persistence, discovery) and implements
:class:`~hub.service.HubService`; the edges (:mod:`hub.mqtt`, :mod:`hub.web`, :mod:`hub.fleet`) are given
that service and never import the core. Only this module (and :mod:`hub.cli`, which calls it) knows both
sides, so no import cycle runs through ``hub/`` (``tests/test_core_imports.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hub import __version__
from hub.app import Edge, Hub
from hub.clock import Clock
from hub.config import HubConfig
from hub.devices import ManagedDevice
from hub.fleet.api import FLEET_OPERATIONS, MIRROR_KEY
from hub.fleet.mirror import FleetMirror, FleetRequestError
from hub.hookspecs import Candidate
from hub.model import Command, CommandResult, command_place, deadline_passed
from hub.mqtt.bridge import MqttBridge
from hub.persistence import Alert
from hub.plugins import PluginHost
from hub.web.server import WebServer

log = logging.getLogger("hub.fleet")


def hub_edges(hub: Hub) -> list[Edge]:
    """A hub's edges, as its configuration asks: the MQTT bridge, then the web server."""
    edges: list[Edge] = []
    if hub.config.mqtt.url != "off":
        edges.append(MqttBridge(hub, hub.persistence))
    if hub.config.http.enabled:
        edges.append(WebServer(hub, hub.persistence))
    return edges


def compose_hub(config: HubConfig, plugins: PluginHost | None = None, clock: Clock | None = None) -> Hub:
    """``async with compose_hub(config) as hub``: a hub with its MQTT and web edges."""
    return Hub(config, plugins, edges=hub_edges, clock=clock)


class NotOnTheFleetError(ValueError):
    """Something only a hub with devices of its own can do."""


def _fleet_edges(hub: Hub) -> list[Edge]:
    assert isinstance(hub, FleetHub)
    edges: list[Edge] = [hub.mirror]
    if hub.config.http.enabled:
        server = WebServer(hub, None, FLEET_OPERATIONS)  # the hubs keep the venue: no venue routes of its own
        server.app[MIRROR_KEY] = hub.mirror
        edges.append(server)
    return edges


def _nothing_to_release() -> None:
    return None


class FleetHub(Hub):
    """``wmhub fleet``: one board and one read API for every hub on a broker, with no devices of its own.

    Its state store is filled by :class:`~hub.fleet.mirror.FleetMirror` from the hubs' MQTT topics instead
    of by drivers; the unchanged web edge serves it (the board, the device and channel API, the live feed),
    and its service methods send control back over MQTT to the hub that owns the receiver. The routes in
    :mod:`hub.fleet.api` add the hubs themselves, and present each hub as a board group.
    ``async with FleetHub(config) as fleet`` mirrors every hub under ``mqtt.base_topic``.
    """

    def __init__(self, config: HubConfig) -> None:
        super().__init__(config, PluginHost(), edges=_fleet_edges)  # no plugins: the fleet talks to no device
        self.mirror = FleetMirror(self.store, config, self.clock)

    async def start(self) -> None:
        self.loop_monitor.start()
        await self._start_edges()
        log.info("fleet %s watching every hub under %s/", self.config.hub_id, self.config.mqtt.base_topic)

    @property
    def mqtt(self) -> Any:
        """The mirror: its client is the fleet's broker connection, for /api/health and /metrics as a hub's
        bridge's is (the fleet has no bridge, and its health said MQTT was off)."""
        return self.mirror

    def degraded(self) -> str | None:
        return None  # no database of its own

    def open_alerts(self) -> list[Alert]:
        return []

    def devices_at(self, location_id: int) -> set[str]:
        return set()  # locations are each hub's own

    def candidates(self) -> list[Candidate]:
        return []

    @property
    def discovery_dropped(self) -> int:
        return 0  # discovery runs on each hub

    def refusal(self, command: Command, source: str) -> CommandResult | None:
        return None  # the hub that owns the receiver checks the command when it arrives

    def record_unsent(self, command: Command, source: str, result: CommandResult) -> None:
        pass  # no audit log of its own: the hubs audit what reaches them

    async def apply(self, command: Command, source: str, deadline: float | None = None) -> CommandResult:
        # The fleet keeps no queue of a receiver's commands (the owning hub does, and the fleet's own request
        # carries a deadline there), so a deadline given here can only have passed already; no edge of the
        # fleet gives one today.
        if deadline is not None and self.clock.now() > deadline:
            return CommandResult(ok=False, code="expired", error=deadline_passed())
        result = await self.mirror.apply(command)
        log.info(
            "command %s %s %s=%r from %s via hub %s: %s",
            command.kind.value,
            command.device_id,
            command_place(command),
            command.value,
            source,
            self.mirror.home_hub(command.device_id),
            "ok" if result.ok else f"{result.code}: {result.error}",
        )
        return result

    async def rename_channel(self, device_id: str, channel: int, name: str | None, source: str) -> None:
        owner = self.mirror.home_hub(device_id)
        if owner is None:
            raise LookupError(f"no hub owns device {device_id!r}")
        try:
            await self.mirror.request(
                owner, "channel/rename", {"device_id": device_id, "channel": channel, "name": name}
            )
        except FleetRequestError as exc:
            raise LookupError(f"hub {owner} did not rename the channel: {exc}") from None

    def need_meters(self, interval_s: float) -> Callable[[], None]:
        return _nothing_to_release  # each hub meters its own receivers for its own consumers

    async def add_device(self, url: str, source: str) -> ManagedDevice:
        raise NotOnTheFleetError("the fleet board has no devices of its own: add the device on the hub that reaches it")

    async def remove_device(self, device_id_or_url: str, source: str) -> bool:
        return False

    async def approve_candidate(self, url: str, source: str) -> ManagedDevice:
        raise NotOnTheFleetError("discovery runs on each hub: approve the candidate there")

    def info(self) -> dict[str, Any]:
        return {
            "hub_id": self.config.hub_id,
            "version": __version__,
            "started_at": self.started_at,
            "plugins": [],
            "config": {
                "fleet": True,
                "mqtt": str(self.mirror.client.address),
                "broker_connected": self.mirror.client.connected,
                "base_topic": self.config.mqtt.base_topic,
                "http": f"{self.config.http.host}:{self.config.http.port}",
                "hubs": len(self.mirror.hubs),
                "devices": len(self.store.devices),
            },
        }
