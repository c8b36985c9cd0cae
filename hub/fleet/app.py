"""``wmhub fleet``: one board and one read API for every hub on a broker, with no devices of its own.

The FleetHub is a Hub whose state store is filled by :class:`~hub.fleet.mirror.FleetMirror` from the
hubs' MQTT topics instead of by drivers; the hub's own web server serves it unchanged (the board, the
device and channel API, the live feed), and its service methods send control back over MQTT to the hub
that owns the receiver. Nothing is asked of the hubs' HTTP ports. The routes in :mod:`hub.fleet.api`
add the hubs themselves, and present each hub as a board group.
"""

from __future__ import annotations

import logging
from typing import Any

from hub import __version__
from hub.app import Hub
from hub.config import HubConfig
from hub.devices import ManagedDevice
from hub.fleet.mirror import FleetMirror, FleetRequestError
from hub.model import Command, CommandResult
from hub.plugins import PluginHost

log = logging.getLogger("hub.fleet")


class NotOnTheFleetError(ValueError):
    """Something only a hub with devices of its own can do."""


class FleetHub(Hub):
    """``async with FleetHub(config) as fleet``: mirrors every hub under ``mqtt.base_topic``."""

    def __init__(self, config: HubConfig) -> None:
        super().__init__(config, PluginHost())  # no plugins: the fleet talks to no device
        self.mirror = FleetMirror(self.store, config)

    async def start(self) -> None:
        from hub.fleet.api import FLEET_OPERATIONS
        from hub.web.server import WebServer

        self.loop_monitor.start()
        self._edges.append(self.mirror)
        if self.config.http.enabled:
            self._edges.append(WebServer(self, FLEET_OPERATIONS))
        for edge in self._edges:
            await edge.start()
        log.info("fleet %s watching every hub under %s/", self.config.hub_id, self.config.mqtt.base_topic)

    async def apply(self, command: Command, source: str) -> CommandResult:
        result = await self.mirror.apply(command)
        log.info(
            "command %s %s ch%s=%r from %s via hub %s: %s",
            command.kind.value,
            command.device_id,
            command.channel,
            command.value,
            source,
            self.mirror.owners.get(command.device_id),
            "ok" if result.ok else f"{result.code}: {result.error}",
        )
        return result

    async def rename_channel(self, device_id: str, channel: int, name: str | None, source: str) -> None:
        owner = self.mirror.owners.get(device_id)
        if owner is None:
            raise LookupError(f"no hub owns device {device_id!r}")
        try:
            await self.mirror.request(
                owner, "channel/rename", {"device_id": device_id, "channel": channel, "name": name}
            )
        except FleetRequestError as exc:
            raise LookupError(f"hub {owner} did not rename the channel: {exc}") from None

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
