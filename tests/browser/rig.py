"""What the board tests share: the browser to launch and the running hub with its simulators."""

from __future__ import annotations

from dataclasses import dataclass

from wmhub_shure.simulator import ShureSimulator

from hub.app import Hub
from hub.persistence import Persistence

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "board-test-token"
# a small rack like the demo's: a dual ULX-D, a quad Axient Digital
FAMILIES = ("ulxd4d", "ad4q")


@dataclass
class Board:
    hub: Hub
    simulators: list[ShureSimulator]
    url: str
    token: str

    @property
    def store(self) -> Persistence:
        store: Persistence = self.hub.persistence  # type: ignore[attr-defined]
        return store

    def device_id(self, simulator: ShureSimulator) -> str:
        for managed in self.hub.devices.by_url.values():
            if managed.url == simulator.url and managed.handle.device_id:
                return managed.handle.device_id
        raise LookupError(simulator.url)
