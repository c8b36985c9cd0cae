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

from hub.clock import Clock, SteadyWall, SystemClock, WallClockSteps
from hub.persistence.alerts import ALERT_FIELDS, Alerts, AlertSettings
from hub.persistence.audit import AuditLog
from hub.persistence.credentials import CREDENTIALS_FILE, DeviceCredentials
from hub.persistence.db import IN_MEMORY, Database, WriterSettings, WriterStats
from hub.persistence.device_memory import DeviceMemory
from hub.persistence.frequency import PLAN_FIELDS, FrequencyPlan, FrequencySettings
from hub.persistence.history import History, HistorySettings, StoredHistory
from hub.persistence.known_devices import Candidates, HealthLog, KnownDevices
from hub.persistence.performers import ExtendedNames, Performers, assignment_from_row
from hub.persistence.show import Show
from hub.persistence.venue import Groups, Locations, Slots
from hub.records import (
    Alert,
    Assignment,
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
    ShowSettings,
    Slot,
    StorageUnavailableError,
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


@dataclass(frozen=True)
class Stored:
    """Everything the services start from, read from the database once at open."""

    known_devices: list[KnownDevice]
    candidates: list[DiscoveryCandidate]
    health: list[ConnectionHealthRecord]
    locations: list[Location]
    slots: list[Slot]
    groups: list[Group]
    performers: list[Performer]
    assignments: list[Assignment]
    names: list[ExtendedName]
    open_alerts: list[Alert]
    last_alert_id: int
    last_audit_id: int
    show: ShowSettings
    declared_carriers: list[DeclaredCarrier]
    exclusions: list[FrequencyExclusion]
    history: StoredHistory
    device_memory: list[tuple[str, object]]
    device_identity: list[tuple[str, object]]

    @classmethod
    async def read(cls, db: Database, history: HistorySettings) -> Stored:
        async def rows(sql: str) -> list[dict[str, Any]]:
            return [{name: row[name] for name in row.keys()} for row in await db.fetchall(sql)]  # noqa: SIM118

        async def last_id(table: str) -> int:
            # bandit B608 waived: the table names are the constants below
            return int((await db.fetchall(f"SELECT max(id) FROM {table}"))[0][0] or 0)  # nosec B608

        return cls(
            known_devices=[KnownDevice(**row) for row in await rows("SELECT * FROM known_devices")],
            candidates=[DiscoveryCandidate(**row) for row in await rows("SELECT * FROM candidates")],
            health=[
                ConnectionHealthRecord(connected=False, **row) for row in await rows("SELECT * FROM connection_health")
            ],
            locations=[
                Location(id=row["id"], name=row["name"], kind=LocationKind(row["kind"]), parent_id=row["parent_id"])
                for row in await rows("SELECT * FROM locations")
            ],
            slots=[Slot(**row) for row in await rows("SELECT * FROM slots")],
            groups=[
                Group(number=row["number"], title=row["title"], slots=json.loads(row["slots"]))
                for row in await rows("SELECT * FROM groups")
            ],
            performers=[Performer(**row) for row in await rows("SELECT * FROM performers")],
            assignments=[
                assignment_from_row(row["device_id"], row["channel"], row["performer_id"], row["alert_prefs"])
                for row in await rows("SELECT * FROM assignments")
            ],
            names=[ExtendedName(**row) for row in await rows("SELECT * FROM extended_names")],
            open_alerts=[
                Alert(**row) for row in await rows("SELECT * FROM alerts WHERE cleared_at IS NULL ORDER BY id")
            ],
            last_alert_id=await last_id("alerts"),
            last_audit_id=await last_id("audit"),
            show=Show.settings_from_rows((row["key"], row["value"]) for row in await rows("SELECT * FROM settings")),
            declared_carriers=[
                DeclaredCarrier(**{**row, "active": bool(row["active"])})
                for row in await rows("SELECT * FROM declared_carriers")
            ],
            exclusions=[FrequencyExclusion(**row) for row in await rows("SELECT * FROM frequency_exclusions")],
            history=await StoredHistory.read(db, history),
            device_memory=await DeviceMemory.read(db),
            device_identity=await DeviceMemory.read(db, "device_identity"),
        )


class Persistence:
    """The database and every service on it, built from what :class:`Stored` read; the services refer to
    each other (alerts read the performers, the show reads history), so they are made together here."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        state: StateStore,
        settings: StoreSettings,
        credentials: DeviceCredentials,
        stored: Stored,
    ) -> None:
        self.db = db
        self.clock = clock
        self.state = state
        self.settings = settings
        self.audit = audit = AuditLog(db, clock, stored.last_audit_id)
        self.devices = devices = KnownDevices(db, clock, audit, stored.known_devices, credentials)
        self.candidates = Candidates(db, clock, audit, devices, stored.candidates, auto_approve=settings.auto_approve)
        self.health = HealthLog(db, clock, stored.health)
        self.device_memory = DeviceMemory(db, clock, stored.device_memory)
        self.device_identity = DeviceMemory(db, clock, stored.device_identity, "device_identity")
        self.locations = locations = Locations(db, clock, audit, stored.locations)
        devices.location_exists = locations.exists
        audit.other_name = devices.other_name
        locations.users_of = devices.uses_location
        self.slots = slots = Slots(db, clock, audit, stored.slots)
        self.groups = Groups(db, clock, audit, stored.groups)
        self.performers = performers = Performers(db, clock, audit, stored.performers, stored.assignments)
        self.names = names = ExtendedNames(
            db, clock, audit, state, stored.names, clear_on_device_rename=settings.clear_name_on_device_rename
        )
        self.alerts = alerts = Alerts(
            db,
            clock,
            audit,
            state,
            devices,
            performers,
            names,
            settings.alerts,
            stored.open_alerts,
            stored.last_alert_id,
        )
        self.history = history = History(db, clock, state, settings.history, stored.history)
        self.show = Show(db, clock, audit, state, history, performers, slots, names, alerts, stored.show)
        self.frequency = FrequencyPlan(
            db, clock, audit, state, alerts, settings.frequency, stored.declared_carriers, stored.exclusions
        )
        self.health_source: HealthSource | None = None
        # told the (url, device_id) of the devices to connect that the file remembers and the stand-in the store
        # started on lacked, once the file opens (set by the hub)
        self.devices_found: Callable[[list[tuple[str, str | None]]], None] = lambda _found: None
        self._reading_stand_in = db.reading_stand_in
        self._subscription: Subscription = state.subscribe(ALERT_FIELDS | PLAN_FIELDS)
        self._ticker: asyncio.Task[None] | None = None
        self._next_health = self._next_sweep = clock.monotonic()
        # the audit and cleared-alert sweep judges age by a wall time that advances no faster than real time
        self._deletion_time = SteadyWall(clock)
        self._wall_steps = WallClockSteps(clock)

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
        """Open (creating and migrating) ``<data_dir>/wmhub.sqlite3`` and load every service; ``data_dir``
        :data:`IN_MEMORY` opens an empty store in memory instead (device credentials in memory too).

        ``health_source`` is typically ``DeviceManager.health``. With ``start_ticker=False`` nothing runs
        on its own: call :meth:`step` (tests with a simulated clock do)."""
        clock = clock or SystemClock()
        settings = settings or StoreSettings()
        if str(data_dir) == IN_MEMORY:
            db = await Database.open(Path(IN_MEMORY), settings.writer)
            credentials = DeviceCredentials(None)
        else:
            directory = Path(data_dir)
            try:
                directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, at start, before any I/O)
            except OSError as exc:
                log.error("cannot create the data directory %s: %s", directory, exc)  # the database says what next
            db = await Database.open(directory / DATABASE_FILE, settings.writer)
            credentials = DeviceCredentials(directory / CREDENTIALS_FILE)
            db.keep_beside(credentials.write_again_if_gone)
        try:
            stored = await Stored.read(db, settings.history)
            persistence = cls(db, clock, state, settings, credentials, stored)
        except BaseException:
            await db.close()
            raise
        persistence.health_source = health_source
        if start_ticker:
            persistence._ticker = asyncio.create_task(persistence._run(), name="store ticker")
        return persistence

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
        self._tell_of_a_clock_step()
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
        interval_now = self.clock.monotonic()
        if self.health_source is not None and interval_now >= self._next_health:
            # a record is built per device: feed them one at a time, from a list (the manager's devices may
            # change between slices)
            for entry in list(self.health_source()):
                self.health.update((entry,))
                if due():
                    yield
            self._next_health = interval_now + self.settings.health_every_s
        if interval_now >= self._next_sweep:
            aged = self._deletion_time.now()
            self.db.submit("DELETE FROM audit WHERE at < ?", (aged - self.settings.audit_keep_s,))
            self.db.submit("DELETE FROM alerts WHERE cleared_at < ?", (aged - self.settings.cleared_alerts_keep_s,))
            self._next_sweep = interval_now + self.settings.sweep_every_s

    def _tell_of_a_clock_step(self) -> None:
        step = self._wall_steps.step()
        if not step:
            return
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock.now()))
        if step > 0:
            log.warning(
                "the wall clock stepped forward by %s (now %s): history, audit log and cleared alerts are "
                "deleted as real time passes, not by the new date",
                _duration(step),
                at,
            )
        else:
            log.warning(
                "the wall clock stepped back by %s (now %s): history of a time recorded already keeps what "
                "was recorded first",
                _duration(-step),
                at,
            )

    async def _adopt_devices_of_the_file(self) -> None:
        """The file opened for writing after a start on a stand-in (locked, or its directory read-only): the
        devices it remembers that the stand-in lacked are connected now, not at the next start. Read once this
        run's changes are in it (a device removed meanwhile is gone from it); tried again next tick if not."""
        if not await self.db.sync():
            return
        try:
            rows = await self.db.fetchall("SELECT * FROM known_devices")
        except StorageUnavailableError:
            return
        self._reading_stand_in = False
        found = self.devices.adopt(KnownDevice(**{name: row[name] for name in row.keys()}) for row in rows)  # noqa: SIM118
        if found:
            log.warning(
                "database %s remembers %d device(s) the stand-in lacked: connecting them", self.db.path, len(found)
            )
            self.devices_found(found)

    async def close(self) -> None:
        """Stop the ticker, write history's open blocks and everything queued, close the database."""
        if self._ticker is not None:
            self._ticker.cancel()
            # a ticker that ended with an error was reported when it ended (Hub.watch): close all the same
            await asyncio.gather(self._ticker, return_exceptions=True)
        await self.frequency.close()  # a check in its thread stops within a step: the stop does not wait for it
        try:
            self._subscription.close()
            self.history.flush()
        finally:  # whatever failed, the connection is closed: its thread would keep the stopped hub's process alive
            await self.db.close()

    async def _run(self) -> None:
        # intervals on the monotonic clock: the wall clock set back an hour held the show check for it
        next_show_check = self.clock.monotonic()
        while True:
            await self.clock.sleep(self.settings.tick_s)
            try:
                for _ in self.tick(self.settings.slice_s):
                    await asyncio.sleep(0)  # device input and MQTT run here; the next tick waits for this one
                if self.clock.monotonic() >= next_show_check:
                    next_show_check = self.clock.monotonic() + self.settings.show_check_every_s
                    await self.show.check()
                if self.db.reading_stand_in:
                    self._reading_stand_in = True
                elif self._reading_stand_in:
                    await self._adopt_devices_of_the_file()
            except Exception:  # a bug in one rule must not end history and alerts for the night
                log.exception("store tick failed")


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
