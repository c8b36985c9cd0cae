"""Persistence as the hub sees it: ``await Persistence.open(data_dir, state)``, one attribute per service,
``restore()`` at start, ``close()`` at the end. A ticker on the hub's clock feeds history and alerts from
one state-store subscription and connection health from the device manager."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.clock import Clock, SystemClock
from hub.persistence.alerts import ALERT_FIELDS, Alerts, AlertSettings
from hub.persistence.audit import AuditLog
from hub.persistence.credentials import CREDENTIALS_FILE, DeviceCredentials
from hub.persistence.db import Database, WriterSettings, WriterStats
from hub.persistence.frequency import FREQUENCY_FIELDS, FrequencyPlan, FrequencySettings
from hub.persistence.history import History, HistorySettings
from hub.persistence.known_devices import Candidates, HealthLog, KnownDevices
from hub.persistence.performers import ExtendedNames, Performers, assignment_from_row
from hub.persistence.show import Show
from hub.persistence.venue import Groups, Locations, Slots
from hub.records import (
    Alert,
    ConnectionHealthRecord,
    DeclaredCarrier,
    DiscoveryCandidate,
    ExtendedName,
    FrequencyExclusion,
    Group,
    KnownDevice,
    Location,
    LocationKind,
    Performer,
    Slot,
)
from hub.state import StateStore, Subscription

log = logging.getLogger("hub.persistence")

DATABASE_FILE = "wmhub.sqlite3"
HealthSource = Callable[[], Iterable[Mapping[str, Any]]]


@dataclass(frozen=True)
class StoreSettings:
    writer: WriterSettings = field(default_factory=WriterSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    frequency: FrequencySettings = field(default_factory=FrequencySettings)
    tick_s: float = 1.0  # how often history samples and alerts are judged: the idle meter rate (hub.metering)
    # the longest the ticker works on before it lets the event loop run (device input, MQTT) in between
    slice_s: float = 0.005
    health_every_s: float = 5.0
    auto_approve: bool = False
    clear_name_on_device_rename: bool = False
    audit_keep_s: float = 90 * 24 * 3600.0
    cleared_alerts_keep_s: float = 30 * 24 * 3600.0
    sweep_every_s: float = 3600.0
    # how often the battery swap list is judged against the show's end (it reads history for bars-only packs)
    show_check_every_s: float = 30.0


class Persistence:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        state: StateStore,
        settings: StoreSettings,
        audit: AuditLog,
        devices: KnownDevices,
        candidates: Candidates,
        health: HealthLog,
        locations: Locations,
        slots: Slots,
        groups: Groups,
        performers: Performers,
        names: ExtendedNames,
        alerts: Alerts,
        history: History,
        show: Show,
        frequency: FrequencyPlan,
    ) -> None:
        self.db = db
        self.clock = clock
        self.state = state
        self.settings = settings
        self.audit = audit
        self.devices = devices
        self.candidates = candidates
        self.health = health
        self.locations = locations
        self.slots = slots
        self.groups = groups
        self.performers = performers
        self.names = names
        self.alerts = alerts
        self.history = history
        self.show = show
        self.frequency = frequency
        self.health_source: HealthSource | None = None
        self._subscription: Subscription = state.subscribe(ALERT_FIELDS | FREQUENCY_FIELDS | {"name"})
        self._ticker: asyncio.Task[None] | None = None
        now = clock.now()
        self._next_health = now
        self._next_sweep = now

    @classmethod
    async def open(
        cls,
        data_dir: Path | str,
        state: StateStore,
        *,
        clock: Clock | None = None,
        settings: StoreSettings | None = None,
        health_source: HealthSource | None = None,
        start_ticker: bool = True,
    ) -> Persistence:
        """Open (creating and migrating) ``<data_dir>/wmhub.sqlite3`` and load every service.

        ``health_source`` is typically ``DeviceManager.health``. With ``start_ticker=False`` nothing runs
        on its own: call :meth:`step` (tests with a simulated clock do)."""
        clock = clock or SystemClock()
        settings = settings or StoreSettings()
        directory = Path(data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, at start, before any I/O)
        except OSError as exc:
            log.error("cannot create the data directory %s: %s", directory, exc)  # the database says what next
        db = await Database.open(directory / DATABASE_FILE, settings.writer)
        try:
            persistence = await cls._load(db, clock, state, settings, DeviceCredentials(directory / CREDENTIALS_FILE))
        except BaseException:
            await db.close()
            raise
        persistence.health_source = health_source
        if start_ticker:
            persistence._ticker = asyncio.create_task(persistence._run(), name="store ticker")
        return persistence

    @classmethod
    async def _load(
        cls, db: Database, clock: Clock, state: StateStore, settings: StoreSettings, credentials: DeviceCredentials
    ) -> Persistence:
        async def rows(sql: str) -> list[dict[str, Any]]:
            return [{name: row[name] for name in row.keys()} for row in await db.fetchall(sql)]  # noqa: SIM118

        audit = await AuditLog.load(db, clock)
        devices = KnownDevices(
            db, clock, audit, [KnownDevice(**row) for row in await rows("SELECT * FROM known_devices")], credentials
        )
        candidates = Candidates(
            db,
            clock,
            audit,
            devices,
            [DiscoveryCandidate(**row) for row in await rows("SELECT * FROM candidates")],
            auto_approve=settings.auto_approve,
        )
        health = HealthLog(
            db,
            clock,
            [ConnectionHealthRecord(connected=False, **row) for row in await rows("SELECT * FROM connection_health")],
        )
        locations = Locations(
            db,
            clock,
            audit,
            [
                Location(id=row["id"], name=row["name"], kind=LocationKind(row["kind"]), parent_id=row["parent_id"])
                for row in await rows("SELECT * FROM locations")
            ],
        )
        devices.location_exists = locations.exists
        locations.users_of = devices.uses_location
        slots = Slots(db, clock, audit, [Slot(**row) for row in await rows("SELECT * FROM slots")])
        groups = Groups(
            db,
            clock,
            audit,
            [
                Group(number=row["number"], title=row["title"], slots=json.loads(row["slots"]))
                for row in await rows("SELECT * FROM groups")
            ],
        )
        performers = Performers(
            db,
            clock,
            audit,
            [Performer(**row) for row in await rows("SELECT * FROM performers")],
            [
                assignment_from_row(row["device_id"], row["channel"], row["performer_id"], row["alert_prefs"])
                for row in await rows("SELECT * FROM assignments")
            ],
        )
        names = ExtendedNames(
            db,
            clock,
            audit,
            state,
            [ExtendedName(**row) for row in await rows("SELECT * FROM extended_names")],
            clear_on_device_rename=settings.clear_name_on_device_rename,
        )
        open_alerts = [Alert(**row) for row in await rows("SELECT * FROM alerts WHERE cleared_at IS NULL ORDER BY id")]
        last_alert_id = (await db.fetchall("SELECT max(id) FROM alerts"))[0][0] or 0
        alerts = Alerts(
            db, clock, audit, state, devices, performers, names, settings.alerts, open_alerts, last_alert_id
        )
        history = await History.load(db, clock, state, settings.history)
        show = Show(
            db,
            clock,
            audit,
            state,
            history,
            performers,
            slots,
            names,
            alerts,
            Show.settings_from_rows((row["key"], row["value"]) for row in await rows("SELECT * FROM settings")),
        )
        frequency = FrequencyPlan(
            db,
            clock,
            audit,
            state,
            alerts,
            settings.frequency,
            [
                DeclaredCarrier(**{**row, "active": bool(row["active"])})
                for row in await rows("SELECT * FROM declared_carriers")
            ],
            [FrequencyExclusion(**row) for row in await rows("SELECT * FROM frequency_exclusions")],
        )
        return cls(
            db,
            clock,
            state,
            settings,
            audit,
            devices,
            candidates,
            health,
            locations,
            slots,
            groups,
            performers,
            names,
            alerts,
            history,
            show,
            frequency,
        )

    @property
    def ticker(self) -> asyncio.Task[None] | None:
        """The task feeding history and alerts (None when the store runs only when stepped)."""
        return self._ticker

    def restore(self) -> list[tuple[str, str | None]]:
        """(url, device_id) of every known device: add each to the device manager at start."""
        return self.devices.restore()

    @property
    def writer_stats(self) -> WriterStats:
        """Backlog, failures and losses of the database writer (for /metrics and /api/health)."""
        self.db.stats.backlog = self.db.backlog
        return self.db.stats

    def step(self) -> None:
        """One tick in one go: take the state changes, judge alerts, sample history, note renames and health."""
        for _ in self.tick(math.inf):
            pass

    def tick(self, slice_s: float) -> Iterator[None]:
        """One tick that yields each time it has worked ``slice_s`` seconds since it was last resumed: the
        ticker lets the event loop run at every yield, so a tick of thousands of channels never holds the
        loop for longer than a slice (and one item of work). What runs in between may add, remove or change
        devices: every stage works on its own snapshot and reads the state again for each item."""
        until = time.perf_counter() + slice_s

        def due() -> bool:
            return time.perf_counter() >= until

        for _ in self._tick(due):
            yield
            until = time.perf_counter() + slice_s

    def _tick(self, due: Callable[[], bool]) -> Iterator[None]:
        now = self.clock.now()
        changes = self._subscription.drain()
        for (device_id, index), fields in changes.items():
            if index is None:
                continue
            if "name" in fields:
                self.names.device_renamed(device_id, index)
            if due():
                yield
        self.frequency.observe(changes)
        try:
            self.frequency.refresh()  # before the alerts: they judge what the plan found
        except Exception:  # a bug in the plan check must not stop the other alerts and history
            log.exception("frequency plan check failed")
        yield from self.alerts.evaluate_slices(changes, due)
        yield from self.history.sample_slices(due)
        yield from self.history.advance_slices(due)
        if self.health_source is not None and now >= self._next_health:
            # a record is built per device: feed them one at a time, from a list (the manager's devices may
            # change between slices)
            for entry in list(self.health_source()):
                self.health.update((entry,))
                if due():
                    yield
            self._next_health = now + self.settings.health_every_s
        if now >= self._next_sweep:
            self.db.submit("DELETE FROM audit WHERE at < ?", (now - self.settings.audit_keep_s,))
            self.db.submit("DELETE FROM alerts WHERE cleared_at < ?", (now - self.settings.cleared_alerts_keep_s,))
            self._next_sweep = now + self.settings.sweep_every_s

    async def close(self) -> None:
        """Stop the ticker, write history's open blocks and everything queued, close the database."""
        if self._ticker is not None:
            self._ticker.cancel()
            # a ticker that ended with an error was reported when it ended (Hub.watch): close all the same
            await asyncio.gather(self._ticker, return_exceptions=True)
        self._subscription.close()
        self.history.flush()
        await self.db.close()

    async def _run(self) -> None:
        next_show_check = self.clock.now()
        while True:
            await self.clock.sleep(self.settings.tick_s)
            try:
                for _ in self.tick(self.settings.slice_s):
                    await asyncio.sleep(0)  # device input and MQTT run here; the next tick waits for this one
                if self.clock.now() >= next_show_check:
                    next_show_check = self.clock.now() + self.settings.show_check_every_s
                    await self.show.check()
            except Exception:  # a bug in one rule must not end history and alerts for the night
                log.exception("store tick failed")
