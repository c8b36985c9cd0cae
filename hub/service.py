"""The hub as its edges see it: the :class:`HubService` protocol and a read-only :class:`StateView`.

The edges (``hub.mqtt``, ``hub.web``, ``hub.fleet``) are handed an object of this shape by the composition
root (:mod:`hub.compose`) and import nothing else of the core: not ``hub.app``, not the device manager, not
the live store itself. Every command they send goes through :meth:`HubService.apply`, so every source of a
command is treated alike (validated, routed, audited). ``tests/test_core_imports.py`` keeps it so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from hub.state import ADDED, ONLINE, REMOVED, Batch, ChangeKey, Subscription

if TYPE_CHECKING:
    from hub.config import HubConfig
    from hub.hookspecs import Candidate
    from hub.lag import LoopMonitor
    from hub.model import Command, CommandResult, Device
    from hub.persistence import Alert, Persistence


class UnknownCandidateError(LookupError):
    """No discovery candidate has that URL."""


class StateView(Protocol):
    """The live state of every device, read-only: what an edge publishes or serves."""

    @property
    def devices(self) -> Mapping[str, Device]: ...

    @property
    def updates_applied(self) -> int: ...

    def get(self, device_id: str) -> Device | None: ...

    def channel_fields(self, device_id: str, index: int) -> Mapping[str, Any] | None: ...

    def subscribe(self, fields: Iterable[str] | None = None, min_interval: float = 0.0) -> Subscription: ...


class ManagedView(Protocol):
    """A device the hub watches, as an edge reports it after adding or approving one."""

    @property
    def url(self) -> str: ...

    @property
    def plugin(self) -> str: ...

    @property
    def device_id(self) -> str | None: ...


class HubService(Protocol):
    """What an edge may ask of the hub."""

    @property
    def config(self) -> HubConfig: ...

    @property
    def state(self) -> StateView: ...

    @property
    def started_at(self) -> float: ...

    @property
    def api_token(self) -> str: ...

    @property
    def loop_monitor(self) -> LoopMonitor: ...

    @property
    def mqtt(self) -> Any: ...

    @property
    def venue(self) -> Persistence | None:
        """The venue store (locations, slots, performers, alerts, the frequency plan), or None on a hub
        without one (the fleet board)."""

    def info(self) -> dict[str, Any]: ...

    def board_url(self) -> str | None: ...

    def watch(self, task: asyncio.Task[Any], what: str) -> None: ...

    def expected_device_ids(self) -> tuple[set[str], bool]: ...

    def connections(self, detail: bool = False) -> list[dict[str, Any]]:
        """The connection health of every device the hub watches (see ``ManagedDevice.health``)."""

    def connection(self, device_id_or_url: str, detail: bool = False) -> dict[str, Any] | None: ...

    def manages(self, url: str) -> bool:
        """Whether the hub already watches the device at ``url``."""

    def degraded(self) -> bool:
        """True while the database refuses writes (changes are held in memory only)."""

    def open_alerts(self) -> list[Alert]: ...

    def candidates(self) -> list[Candidate]: ...

    async def apply(self, command: Command, source: str) -> CommandResult: ...

    async def add_device(self, url: str, source: str) -> ManagedView: ...

    async def remove_device(self, device_id_or_url: str, source: str) -> bool: ...

    async def approve_candidate(self, url: str, source: str) -> ManagedView: ...

    async def rename_channel(self, device_id: str, channel: int, name: str | None, source: str) -> None: ...

    async def set_meter_rate(self, rate_ms: int, device_id: str | None, source: str) -> list[CommandResult]: ...

    def need_meters(self, interval_s: float) -> Callable[[], None]:
        """A consumer of levels every ``interval_s`` is there (hub.metering); call the result when it goes."""
        ...

    async def restart_discovery(self) -> None: ...


__all__ = [
    "ADDED",
    "ONLINE",
    "REMOVED",
    "Batch",
    "ChangeKey",
    "HubService",
    "ManagedView",
    "StateView",
    "Subscription",
    "UnknownCandidateError",
]
