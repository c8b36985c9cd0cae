"""The hub as its edges see it: the :class:`HubService` protocol, a read-only :class:`StateView`, and the
:class:`VenueService` (locations, slots, performers, alerts, history, the show, the frequency plan).

The edges (``hub.mqtt``, ``hub.web``, ``hub.fleet``) are handed objects of these shapes by the composition
root (:mod:`hub.compose`) and import nothing else of the core: not ``hub.app``, not the device manager, not
the live store, not the persistence package (what its services return and raise is in :mod:`hub.records`).
Every command they send goes through :meth:`HubService.apply`, so every source of a command is treated alike
(validated, routed, audited). ``tests/test_core_imports.py`` keeps it so.

Only a hub with devices of its own has a venue store: the composition root gives its :class:`VenueService`
to the edges that serve it (the venue routes, the MQTT alert topics); the fleet board has none, and serves
none of those routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from hub.state import ADDED, ONLINE, REMOVED, Batch, ChangeKey, Subscription

if TYPE_CHECKING:
    from hub.clock import Clock
    from hub.config import HubConfig
    from hub.frequency import Band, Carrier, Coordination, Finding, PlanSettings
    from hub.frequency import Candidate as FrequencyCandidate
    from hub.hookspecs import Candidate
    from hub.lag import LoopMonitor
    from hub.model import Command, CommandResult, Device
    from hub.records import (
        Alert,
        AlertEvent,
        AlertPrefs,
        Assignment,
        AuditEntry,
        DeclaredCarrier,
        FrequencyExclusion,
        Group,
        HistoryPoint,
        KnownDevice,
        Location,
        LocationKind,
        Performer,
        ShowSettings,
        Slot,
        SwapList,
    )


class UnknownCandidateError(LookupError):
    """No discovery candidate has that URL."""


class DiscoveryOffError(RuntimeError):
    """Discovery was asked for while ``[discovery] enabled = false``: the setting holds until the hub restarts."""


class PluginFaultError(ValueError):
    """A plugin's bug refused the request (its check of a device URL raised): the message names the plugin.
    An edge answers it as the plugin's error, not the caller's; the URL itself may be fine."""


class StateView(Protocol):
    """The live state of every device, read-only: what an edge publishes or serves."""

    @property
    def devices(self) -> Mapping[str, Device]: ...

    @property
    def updates_applied(self) -> int: ...

    @property
    def readings_received(self) -> int: ...

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
    def uptime_s(self) -> float: ...

    @property
    def clock(self) -> Clock:
        """The hub's one clock: an edge's own timers (a reconnect back-off, a grace period) wait on it."""

    @property
    def api_token(self) -> str: ...

    @property
    def loop_monitor(self) -> LoopMonitor: ...

    @property
    def mqtt(self) -> Any: ...

    def info(self) -> dict[str, Any]: ...

    def board_url(self) -> str | None: ...

    def watch(self, task: asyncio.Task[Any], what: str) -> None: ...

    def expected_device_ids(self) -> tuple[set[str], bool]: ...

    def knows_remembered_devices(self) -> bool:
        """Whether the store reads the database file itself: while it reads a stand-in (the file locked or not
        writable since the start), a device it lacks may still be remembered in the file, so none is known gone."""

    def connections(self, detail: bool = False) -> list[dict[str, Any]]:
        """The connection health of every device the hub watches (see ``ManagedDevice.health``)."""

    def connection(self, device_id_or_url: str, detail: bool = False) -> dict[str, Any] | None: ...

    def manages(self, url: str) -> bool:
        """Whether the hub already watches the device at ``url``."""

    def degraded(self) -> str | None:
        """Why the database takes no writes now (refused or stalled: changes are held in memory only); None
        while it does."""

    def open_alerts(self) -> list[Alert]: ...

    def devices_at(self, location_id: int) -> set[str]:
        """The ids of the devices placed at this location or inside it (a stage holds racks)."""
        ...

    def candidates(self) -> list[Candidate]: ...

    @property
    def discovery_dropped(self) -> int:
        """Announced services discovery did not probe because too many were waiting (hub.discovery)."""
        ...

    def refusal(self, command: Command, source: str) -> CommandResult | None:
        """Why ``command`` would be refused unsent, or None (checked for every part before any is sent); a
        refusal is audited as from ``source``, as a command that :meth:`apply` carries out is."""
        ...

    def record_unsent(self, command: Command, source: str, result: CommandResult) -> None:
        """Audit a part of a request left unsent (``result`` says why) because another part was refused or
        failed."""
        ...

    async def apply(self, command: Command, source: str, deadline: float | None = None) -> CommandResult:
        """Carry out ``command``; one not sent to the device by ``deadline`` (``clock.now()``) is answered
        ``expired`` and never sent (docs/mqtt.md, "Deadlines"). REST and the board give none."""
        ...

    async def add_device(self, url: str, source: str) -> ManagedView: ...

    async def remove_device(self, device_id_or_url: str, source: str) -> bool: ...

    async def approve_candidate(self, url: str, source: str) -> ManagedView: ...

    async def rename_channel(self, device_id: str, channel: int, name: str | None, source: str) -> None: ...

    async def set_meter_rate(
        self, rate_ms: int, device_id: str | None, source: str, deadline: float | None = None
    ) -> dict[str, CommandResult]:
        """Set the meter rate of the device named, or of every online one; each not sent to its device by
        ``deadline`` is answered ``expired`` (as :meth:`apply`)."""
        ...

    def need_meters(self, interval_s: float) -> Callable[[], None]:
        """A consumer of levels every ``interval_s`` is there (hub.metering); call the result when it goes."""
        ...

    async def restart_discovery(self) -> None:
        """Forget what discovery found and start it again; :class:`DiscoveryOffError` while it is off."""
        ...


class AlertService(Protocol):
    def open_alerts(self) -> list[Alert]: ...

    async def recent(self, *, since: float | None = None, limit: int = 100) -> list[Alert]: ...

    async def acknowledge(self, alert_id: int, *, source: str, by: str | None = None) -> Alert: ...

    def add_listener(self, listener: Callable[[AlertEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with every raise, acknowledgement and clear; returns the remover."""
        ...


class KnownDeviceService(Protocol):
    async def set_location(self, url_or_device_id: str, location_id: int | None, *, source: str) -> KnownDevice: ...


class LocationService(Protocol):
    def all(self) -> list[Location]: ...

    async def create(self, name: str, kind: LocationKind, *, source: str, parent_id: int | None = None) -> Location: ...

    async def update(
        self,
        location_id: int,
        *,
        source: str,
        name: str | None = None,
        kind: LocationKind | None = None,
        move: bool = False,
        parent_id: int | None = None,
    ) -> Location: ...

    async def move(self, location_id: int, parent_id: int | None, *, source: str) -> Location: ...

    async def delete(self, location_id: int, *, source: str) -> Location: ...


class SlotService(Protocol):
    def all(self) -> list[Slot]: ...

    async def set(self, number: int, device_id: str, channel: int, *, source: str) -> Slot: ...

    async def clear(self, number: int, *, source: str) -> Slot: ...


class GroupService(Protocol):
    def all(self) -> list[Group]: ...

    async def create(self, number: int, title: str, slots: list[int], *, source: str) -> Group: ...

    async def update(
        self, number: int, *, source: str, title: str | None = None, slots: list[int] | None = None
    ) -> Group: ...

    async def delete(self, number: int, *, source: str) -> Group: ...


class PerformerService(Protocol):
    def all(self) -> list[Performer]: ...

    async def create(self, name: str, *, source: str, notes: str = "") -> Performer: ...

    async def update(
        self, performer_id: int, *, source: str, name: str | None = None, notes: str | None = None
    ) -> Performer: ...

    async def delete(self, performer_id: int, *, source: str) -> Performer: ...

    def assignments(self, performer_id: int | None = None) -> list[Assignment]: ...

    async def assign(
        self, performer_id: int, device_id: str, channel: int, *, source: str, alert_prefs: AlertPrefs | None = None
    ) -> Assignment: ...

    async def unassign(self, device_id: str, channel: int, *, source: str) -> Assignment: ...


class HistoryService(Protocol):
    async def query(
        self, device_id: str, channel: int, since: float, until: float | None = None, step: int | None = None
    ) -> list[HistoryPoint]: ...


class AuditService(Protocol):
    async def query(
        self,
        *,
        target: str | None = None,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]: ...


class ShowService(Protocol):
    @property
    def settings(self) -> ShowSettings: ...

    async def set(self, end_at: float | None, margin_min: int, *, source: str) -> ShowSettings: ...

    async def check(self) -> SwapList:
        """Judge the swap list now (its alerts and listeners follow)."""
        ...

    async def swap_list(self, until: float | None = None) -> SwapList: ...

    def add_listener(self, listener: Callable[[SwapList], None]) -> Callable[[], None]: ...


class FrequencySettingsView(Protocol):
    @property
    def plan(self) -> PlanSettings: ...


class FrequencyService(Protocol):
    """The live frequency plan, its declared carriers and exclusions, and the search for clean frequencies."""

    @property
    def settings(self) -> FrequencySettingsView: ...

    @property
    def carriers(self) -> list[Carrier]: ...

    @property
    def findings(self) -> list[Finding]: ...

    @property
    def checked_at(self) -> float | None: ...

    @property
    def too_many(self) -> bool: ...

    @property
    def checked(self) -> bool: ...

    @property
    def checking(self) -> bool: ...

    def refresh(self) -> bool: ...

    def labels(self) -> dict[str, str]: ...

    def summary(self) -> dict[str, Any]:
        """What MQTT publishes retained: counts, and the worst findings."""
        ...

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]: ...

    def band_for(self, carrier: Carrier, band: Band | None) -> Band: ...

    async def suggest_for(
        self,
        device_id: str,
        index: int,
        *,
        band: Band | None = None,
        within: tuple[float, float] | None = None,
        step_khz: float | None = None,
        count: int = 5,
    ) -> tuple[Carrier, list[FrequencyCandidate]]: ...

    async def coordinate_group(
        self,
        count: int,
        band: Band,
        *,
        backups: int = 0,
        family: str | None = None,
        step_khz: float | None = None,
        moving: Sequence[tuple[str, int]] = (),
    ) -> Coordination: ...

    def declared(self) -> list[DeclaredCarrier]: ...

    def declared_carrier(self, carrier_id: int) -> DeclaredCarrier: ...

    async def declare(
        self,
        label: str,
        frequency_mhz: float,
        *,
        source: str,
        bandwidth_khz: float = 0.0,
        active: bool = True,
        family: str | None = None,
        carrier_id: int | None = None,
    ) -> DeclaredCarrier: ...

    async def undeclare(self, carrier_id: int, *, source: str) -> DeclaredCarrier: ...

    def exclusions(self) -> list[FrequencyExclusion]: ...

    def exclusion(self, exclusion_id: int) -> FrequencyExclusion: ...

    async def exclude(
        self,
        *,
        source: str,
        label: str = "",
        low_mhz: float | None = None,
        high_mhz: float | None = None,
        tv_grid: str | None = None,
        tv_channel: int | None = None,
        exclusion_id: int | None = None,
    ) -> FrequencyExclusion: ...

    async def unexclude(self, exclusion_id: int, *, source: str) -> FrequencyExclusion: ...


class VenueService(Protocol):
    """The venue store as the edges use it; its services refuse a change with :class:`hub.records.StoreError`."""

    @property
    def alerts(self) -> AlertService: ...

    @property
    def devices(self) -> KnownDeviceService: ...

    @property
    def locations(self) -> LocationService: ...

    @property
    def slots(self) -> SlotService: ...

    @property
    def groups(self) -> GroupService: ...

    @property
    def performers(self) -> PerformerService: ...

    @property
    def history(self) -> HistoryService: ...

    @property
    def audit(self) -> AuditService: ...

    @property
    def show(self) -> ShowService: ...

    @property
    def frequency(self) -> FrequencyService: ...


__all__ = [
    "ADDED",
    "ONLINE",
    "REMOVED",
    "AlertService",
    "AuditService",
    "Batch",
    "ChangeKey",
    "DiscoveryOffError",
    "FrequencyService",
    "GroupService",
    "HistoryService",
    "HubService",
    "KnownDeviceService",
    "LocationService",
    "ManagedView",
    "PerformerService",
    "ShowService",
    "SlotService",
    "StateView",
    "Subscription",
    "UnknownCandidateError",
    "VenueService",
]
