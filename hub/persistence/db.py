"""The database: one SQLite file, WAL, foreign keys, migrations at open, and a batching writer.

Every write goes through :meth:`Database.submit`, which only appends to an in-memory queue; a writer task
commits the queue in one transaction every ``flush_interval_s`` (or sooner when ``flush_max_items`` are
waiting or someone awaits :meth:`Database.sync`). Callers on the hot path therefore never wait for the
disk. When the disk fails (full, read-only, locked, I/O error) the writer logs one error, keeps the
statements queued and retries; the queue is bounded: history is dropped oldest first, other writes
(configuration, audit, alerts) are dropped only beyond the bound and every one is counted. A commit that
does not finish (a stalled disk) counts as failing after ``stall_after_s``; reads then fail at once with
:class:`StorageUnavailableError` rather than queue behind it. A file deleted, replaced or truncated under
the hub is written again from the open database (a deleted data directory made again first; the open
database is kept as the source until the copy is written), and every service writes what it holds into it
(:meth:`Database.hold`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiosqlite

from hub.devices import MAX_ID_CHARS, id_text
from hub.persistence.buckets import keep_recorded
from hub.persistence.schema import MIGRATIONS
from hub.records import StorageUnavailableError
from hub.redact import redact, redact_values, redacted_text
from hub.text import invisible, strip_blank

# SQLite's name for a database that lives in memory and is gone when closed: a store for tests that need no
# file (``Persistence.open(IN_MEMORY, ...)``); what it does is otherwise the file's, writer and all.
IN_MEMORY: Final = ":memory:"

log = logging.getLogger("hub.persistence")

Params = Sequence[Any]
Statement = tuple[str, Params]


@dataclass(frozen=True)
class WriterSettings:
    flush_interval_s: float = 0.2
    flush_max_items: int = 2000
    backlog_limit: int = 200_000
    retry_interval_s: float = 2.0
    busy_timeout_s: float = 2.0  # how long a write waits for another connection's lock
    # a commit still running after this long is a stalled disk: health degraded, callers and reads go on
    stall_after_s: float = 3.0
    file_check_every_s: float = 5.0  # how often the file is checked for being deleted or truncated under us


@dataclass
class WriterStats:
    """What the writer has done; exposed for /metrics and the health endpoint."""

    committed: int = 0
    transactions: int = 0
    failing_since: float | None = None  # time.monotonic(): how long writes have failed, whatever the wall clock does
    last_error: str | None = None
    dropped_history: int = 0
    dropped_kept: int = 0
    rejected: int = 0
    backlog: int = 0


@dataclass(frozen=True)
class _Write:
    seq: int
    sql: str
    params: Params
    droppable: bool


@dataclass
class _SyncWaiter:
    seq: int
    future: asyncio.Future[bool] = field(repr=False)


@dataclass(frozen=True)
class _Held:
    tables: tuple[str, ...]  # held whole: emptied before ``records`` are written
    records: Callable[[], Iterable[Statement]]


# SQL functions the services' statements call (history's block merge), made on every connection that writes
_FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {}


def sql_function(name: str, arguments: int, function: Callable[..., Any]) -> None:
    """Make ``function`` callable as ``name`` in the statements of every connection opened from now on. It
    must be a pure function of its arguments and never raise (a raise fails the whole write batch)."""
    _FUNCTIONS[name] = (arguments, function)


def upsert(table: str, key: tuple[str, ...], columns: tuple[str, ...]) -> str:
    """The statement that writes a row under ``key``, updating it in place if it exists. Never ``INSERT OR
    REPLACE``: that deletes the old row first, which fires ``ON DELETE CASCADE`` and ``SET NULL`` on the rows
    that refer to it (renaming a performer would end its assignments, renaming a location would unplace its
    devices and orphan its children)."""
    names = (*key, *columns)
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns)
    # bandit B608 waived: table and column names are constants of the services, the values are parameters
    return (
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "  # nosec B608
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


class Database:
    """Open with :meth:`open`; read with :meth:`fetchall`; write with :meth:`submit`; :meth:`close` flushes."""

    def __init__(self, connection: aiosqlite.Connection, path: Path, settings: WriterSettings) -> None:
        self.path = path
        self.settings = settings
        self.stats = WriterStats()
        self._conn = connection
        self._queue: deque[_Write] = deque()
        self._inflight: list[_Write] = []
        self._seq = 0
        self._committed_seq = 0
        self._waiters: list[_SyncWaiter] = []
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._closing = False
        # what the close could not store (None: everything): a stop that loses what the hub accepted fails
        self.lost_at_close: str | None = None
        self._writer: asyncio.Task[None] | None = None
        self._stand_in = False  # the connection is not the file: never write to it
        # the file opened read-only (after an unclean stop on a read-only disk, through the leftover -shm):
        # SQLite keeps such a connection read-only however writable the disk becomes, so it is reopened
        self._read_only = False
        # why reads cannot reach the connection now (a commit stuck on it, the file being written again)
        self._unreadable: str | None = None
        self._reads_failing = False
        self._file: _FileSeen | None = None  # the file the connection writes, as last seen
        self._next_file_check = time.monotonic()
        self._damage: str | None = None  # what was found wrong with the file: written again before the next batch
        self._held: list[_Held] = []  # what the services hold in memory, for a file that replaced a lost one
        self._held_unwritten = False  # the file was replaced and the services' records are not in it yet
        self._beside: list[Callable[[], str | None]] = []  # the hub's other files in the data dir (keep_beside)
        # the data directory's mode when the file was opened: a directory deleted under the hub is made again so
        self._directory_mode: int | None = None
        self._copy_failing = False  # the file cannot be written again yet: the open connection stays the source

    @classmethod
    async def open(cls, path: Path, settings: WriterSettings | None = None) -> Database:
        """Open (create, migrate) the file. If it cannot be opened for writing (read-only or missing
        directory, locked by another hub, disk full during a migration), the hub still starts: reads come
        from a stand-in (a frozen read-only view of the file, or an empty database), writes queue up, and
        the writer keeps trying to open the file and moves to it as soon as it can."""
        settings = settings or WriterSettings()
        try:
            connection = await _open_file(path, settings)
        except (sqlite3.Error, OSError) as exc:
            stand_in, what = await _stand_in(path)
            database = cls(stand_in, path, settings)
            database._stand_in = True
            database.stats.failing_since = time.monotonic()
            database.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.error(
                "cannot open %s for writing (%s): monitoring continues on %s; changes are kept in memory "
                "and written once the file can be opened",
                path,
                exc,
                what,
            )
        else:
            database = cls(connection, path, settings)
            database._seen_open()
        database._writer = asyncio.create_task(database._run(), name="store writer")
        return database

    @property
    def connection(self) -> aiosqlite.Connection:
        """The raw connection, for tests that inject faults (``PRAGMA query_only``) and for reads."""
        return self._conn

    @property
    def backlog(self) -> int:
        """Writes queued and not yet committed."""
        return len(self._queue) + len(self._inflight)

    @property
    def failing(self) -> bool:
        return self.stats.failing_since is not None

    @property
    def reading_stand_in(self) -> bool:
        """Whether reads come from a stand-in, not the file (not opened for writing yet): a row it lacks may
        still be in the file."""
        return self._stand_in

    @property
    def problem(self) -> str | None:
        """Why the database is not taking writes, while it is not (for /api/health)."""
        if self._writer is not None and self._writer.done() and not self._closing:
            return f"the database writer stopped ({self.stats.last_error or 'cancelled'}): changes are not stored"
        if self.stats.failing_since is None:
            return None
        return self.stats.last_error

    def hold(self, records: Callable[[], Iterable[Statement]], *, whole: tuple[str, ...] = ()) -> None:
        """Register what a service holds in memory: ``records()`` gives the statements that write every record
        of it (the statements its changes use), and the tables in ``whole`` hold nothing else. When the file
        is replaced under the running hub (deleted, truncated, found damaged), the records of every service
        are written into the new file in one transaction, before the writes still queued, with the tables
        held whole emptied first: the next start shows what the running hub showed, whatever the old file
        lost."""
        self._held.append(_Held(whole, records))

    def keep_beside(self, write_again: Callable[[], str | None]) -> None:
        """Register a file the hub keeps beside the database (the API token, device passwords, the data dir's
        lock): whenever the database is written again, ``write_again()`` writes that file again if it is gone
        too (the data dir deleted under the running hub) and returns its name, else None."""
        self._beside.append(write_again)

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """The rows of a read. Raises StorageUnavailableError when the database cannot answer: a commit is
        stuck on its one thread (a read would queue behind it), or SQLite fails the read. Logged once until
        a read succeeds again."""
        if self._unreadable is not None:
            raise self._read_failed(self._unreadable)
        try:
            async with asyncio.timeout(self.settings.stall_after_s):
                async with self._conn.execute(sql, params) as cursor:
                    rows = list(await cursor.fetchall())
        except TimeoutError:
            raise self._read_failed(f"a read did not finish in {self.settings.stall_after_s:g} s") from None
        except sqlite3.Error as exc:
            self._note_damage(exc)
            raise self._read_failed(f"{type(exc).__name__}: {exc}") from None
        if self._reads_failing:
            self._reads_failing = False
            log.warning("database reads answer again")
        return rows

    def _read_failed(self, why: str) -> StorageUnavailableError:
        if not self._reads_failing:
            self._reads_failing = True
            log.error("database reads failing (%s): history, audit and recent alerts answer 503 meanwhile", why)
        return StorageUnavailableError(f"the database cannot answer now ({why})", problem=why)

    def submit(self, sql: str, params: Params = (), *, droppable: bool = False) -> None:
        """Queue one statement. ``droppable`` marks history, which may be dropped when the disk fails."""
        self._seq += 1
        self._queue.append(_Write(self._seq, sql, params, droppable))
        if len(self._queue) > self.settings.backlog_limit:
            self._shed()
        if len(self._queue) >= self.settings.flush_max_items:
            self._urgent.set()
        self._wake.set()

    async def sync(self) -> bool:
        """Wait until everything submitted so far is committed. False at once while the disk is failing:
        the writes stay queued and are retried, so the caller can go on and report degraded storage."""
        target = self._seq
        if self._committed_seq >= target or not (self._queue or self._inflight):
            return True
        if self.failing or self._writer is None or self._writer.done():
            return False
        waiter = _SyncWaiter(target, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._urgent.set()
        self._wake.set()
        return await waiter.future

    async def close(self) -> None:
        """Write what is queued (one last attempt if the disk is failing) and close the file."""
        self._closing = True
        self._wake.set()
        self._urgent.set()
        try:
            if self._writer is not None:
                # waited on, not awaited: a writer that ended with an error must not keep the connection open,
                # whose thread would keep the process alive after the hub stopped
                await asyncio.wait({self._writer})
                if not self._writer.cancelled() and (failure := self._writer.exception()) is not None:
                    log.error("the database writer had stopped: %s: %s", type(failure).__name__, failure)
            if self._damage is not None and self._copy_failing:
                self.lost_at_close = f"what the database file {self.path} held ({self._damage})"
                log.error(
                    "database file %s was %s and could not be written again before the stop (%s): what the hub "
                    "stored in it is lost",
                    self.path,
                    self._damage,
                    self.stats.last_error,
                )
            if self._queue or self._inflight:
                self.lost_at_close = f"{self.backlog} writes ({_tables_written([*self._inflight, *self._queue])})"
                log.error("database closed with %s not stored: %s", self.lost_at_close, self.stats.last_error)
            with contextlib.suppress(sqlite3.Error):
                await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            await self._conn.close()

    def _shed(self) -> None:
        """Bring the queue back under its bound: history first (oldest first), then counted losses."""
        excess = len(self._queue) - self.settings.backlog_limit * 9 // 10
        kept: deque[_Write] = deque()
        for write in self._queue:
            if excess > 0 and write.droppable:
                excess -= 1
                self.stats.dropped_history += 1
            else:
                kept.append(write)
        while excess > 0 and kept:
            kept.popleft()
            excess -= 1
            self.stats.dropped_kept += 1
        if self.stats.dropped_kept:
            log.error("database backlog full: %d configuration/audit writes lost so far", self.stats.dropped_kept)
        self._queue = kept

    async def _run(self) -> None:
        while True:
            try:
                await self._write_until_closed()
                return
            except Exception as exc:
                # a bug, not the disk (which _flush_batch handles): the writer must not end with it, or every
                # later write of the run would be lost while health still said the database was fine
                if self.stats.failing_since is None:
                    log.exception("database writer failed")
                self._enter_failing(exc)
                if self._closing:
                    return
                await self._pause_before_retry()

    async def _pause_before_retry(self) -> None:
        self._urgent.clear()
        with contextlib.suppress(TimeoutError):
            # a close (or nothing) wakes the retry early; new writes alone do not hammer a dead disk
            async with asyncio.timeout(self.settings.retry_interval_s):
                await self._closed_event()

    async def _write_until_closed(self) -> None:
        while True:
            if time.monotonic() >= self._next_file_check:
                self._next_file_check = time.monotonic() + self.settings.file_check_every_s
                self._check_file()
            # at a close too: queued writes must not go into a file nobody can open again
            if self._damage is not None and not await self._write_again(self._damage):
                if self._closing:
                    return
                await self._pause_before_retry()  # the open connection is kept: the copy is retried then
                continue
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                # woken for new writes, or in time for the next check of the file
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.file_check_every_s):
                        await self._wake.wait()
                continue
            if not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.flush_interval_s):
                        await self._urgent.wait()
            self._urgent.clear()
            if await self._flush_batch():
                if len(self._queue) >= self.settings.flush_max_items:
                    self._urgent.set()  # a backlog (after an outage) drains at full speed
                continue
            if self._closing:
                return
            await self._pause_before_retry()

    async def _closed_event(self) -> None:
        while not self._closing:
            self._wake.clear()
            await self._wake.wait()

    async def _flush_batch(self) -> bool:
        count = min(len(self._queue), self.settings.flush_max_items)
        batch = [self._queue.popleft() for _ in range(count)]
        self._inflight = batch
        transaction = asyncio.ensure_future(self._transaction(batch))
        try:
            done, _ = await asyncio.wait({transaction}, timeout=self.settings.stall_after_s)
            if not done:
                # a stalled disk: the commit goes on in the connection's thread; meanwhile callers are told
                # the disk is failing (their change is held in memory) and reads do not queue behind it
                stalled = f"a commit has not finished in {self.settings.stall_after_s:g} s: database writes stalled"
                self._unreadable = stalled
                self._enter_failing(TimeoutError(stalled))
            await transaction
        except (sqlite3.Error, OSError) as exc:  # OSError: a damaged file that could not be set aside
            with contextlib.suppress(sqlite3.Error):
                await self._conn.execute("ROLLBACK")
            self._queue.extendleft(reversed(batch))
            if isinstance(exc, sqlite3.Error) and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_READONLY:
                self._read_only = not self._stand_in and str(self.path) != IN_MEMORY
            if isinstance(exc, sqlite3.Error):
                self._note_damage(exc)
            self._enter_failing(exc)
            return False
        except Exception as exc:
            # no disk error and no value SQLite refused (those are rejected one by one): a bug. The batch is
            # kept and retried like a failing disk's, and health says why meanwhile (database_problem)
            with contextlib.suppress(sqlite3.Error):
                await self._conn.execute("ROLLBACK")
            self._queue.extendleft(reversed(batch))
            if self.stats.failing_since is None:
                log.exception("database writes failed")
            self._enter_failing(exc)
            return False
        finally:
            self._inflight = []
            self._unreadable = None
        self._committed(batch)
        return True

    async def _transaction(self, batch: list[_Write]) -> None:
        if self._stand_in:
            await self._move_to_file()
        elif self._read_only:
            await self._reopen_file()
        if self._held_unwritten:  # a replaced file the stand-in stood for until now
            log.warning("the %d records the services hold written into %s", await self._write_held(), self.path)
        await self._conn.execute("BEGIN IMMEDIATE")
        for sql, writes in _runs_of_same_sql(batch):
            await self._execute_run(sql, writes)
        await self._conn.execute("COMMIT")

    def _note_damage(self, exc: sqlite3.Error) -> None:
        if exc.sqlite_errorcode & 0xFF in _DAMAGE and not self._stand_in and str(self.path) != IN_MEMORY:
            self._damage = f"found damaged ({exc})"
            self._wake.set()

    def _check_file(self) -> None:
        """Whether the file is still the one the connection writes: deleted or replaced, the hub would go on
        writing into a file nobody can open again; truncated, its pages are gone but for SQLite's cache."""
        if self._file is None or self._damage is not None:
            return
        try:
            now = _FileSeen.of(self.path)
        except (FileNotFoundError, NotADirectoryError):  # NotADirectoryError: a file where the directory was
            self._damage = "deleted" if self.path.parent.is_dir() else "deleted with its directory"
            return
        if (now.device, now.inode) != (self._file.device, self._file.inode):
            self._damage = "replaced by another file"
        elif now.size < self._file.size:  # SQLite never shrinks it (no VACUUM, no auto_vacuum)
            self._damage = f"truncated ({self._file.size} bytes to {now.size})"
        else:
            self._file = now

    async def _write_again(self, what: str) -> bool:
        """Write the file anew from the open connection (its WAL and cache hold every page it committed, in
        the file or not), keeping whatever is at the path now beside it as ``.damaged-<time>``; where even
        that cannot be read whole, the start's salvage takes what reads. A data directory deleted too is
        made again first, with the mode it had.

        False when the copy cannot be written (the directory cannot be made again, the disk is full): the
        open connection is then the only copy of the database, so it is kept, reads go on from it, writes
        stay queued, and the caller tries again after the retry pause; said once, not per attempt."""
        self._damage = None
        self._unreadable = f"the database file was {what}; writing it again"
        fresh = self.path.with_name(f"{self.path.name}.rewrite")
        try:
            self._make_directory()
            _remove_database(fresh)  # what a failed attempt left
            copied = await self._copy_to(fresh)
        except (sqlite3.Error, OSError) as exc:
            self._unreadable = None
            self._damage = what
            with contextlib.suppress(OSError):
                _remove_database(fresh)
            if not self._copy_failing:
                self._copy_failing = True
                log.error(
                    "database file %s was %s under the running hub and cannot be written again yet (%s): the "
                    "open database still holds everything and is kept; %d writes held in memory, tried again "
                    "every %g s",
                    self.path,
                    what,
                    exc,
                    len(self._queue),
                    self.settings.retry_interval_s,
                )
            self._enter_failing(exc, said=True)
            return False
        self._copy_failing = False
        self._held_unwritten = True
        try:
            await self._conn.close()
            kept = _set_aside(self.path) if self.path.exists() else None
            if copied:
                fresh.rename(self.path)
                self._conn = await _connect(self.path, self.settings)
                outcome = "written again from the open database (nothing lost)"
            else:  # pages neither in the file nor in SQLite's cache: what still reads, as at a start
                self._conn = await _connect(self.path, self.settings)
                fresh.unlink(missing_ok=True)
                lost = await _salvage(self._conn, kept) if kept is not None else ["every table"]
                read = f"rows lost in: {', '.join(lost)}" if lost else "nothing lost"
                outcome = f"a fresh database holds every row that could be read ({read})"
            held = await self._write_held()
        except (sqlite3.Error, OSError) as exc:
            self._unreadable = None
            with contextlib.suppress(sqlite3.Error):  # a fresh file's connection would lock out the retries
                await self._conn.close()
            self._conn, _ = await _stand_in(self.path)
            self._stand_in, self._file = True, None
            self._enter_failing(exc)
            self._write_beside_again()  # the directory is there: the database file follows with the writes
            return True  # the file is opened again by the writes' retries (_move_to_file)
        self._unreadable = None
        self._seen_open()
        beside = self._write_beside_again()
        log.error(
            "database file %s was %s under the running hub: %s, and the %d records the services hold written into "
            "it%s%s",
            self.path,
            what,
            outcome,
            held,
            f"; what was there is kept as {kept.name}" if kept else "",
            f"; written again beside it: {', '.join(beside)}" if beside else "",
        )
        return True

    def _write_beside_again(self) -> list[str]:
        """The files of :meth:`keep_beside` that were gone, written again; a failure of one is said and the
        others are still written."""
        written = []
        for write_again in self._beside:
            try:
                name = write_again()
            except Exception:
                log.exception("a file beside the database %s could not be written again", self.path)
                continue
            if name is not None:
                written.append(name)
        return written

    async def _write_held(self) -> int:
        """Write what every service holds (:meth:`hold`) into the file, in one transaction; returns how many
        records. Whatever the old file still had of them is overwritten, the rest it had stays."""
        emptied: list[str] = []
        records: list[Statement] = []
        for held in self._held:
            try:
                statements = list(held.records())
            except Exception:  # a bug in one service must not end the writer: the others are still written
                log.exception("a service's records could not be listed for the new database file")
                continue
            emptied += (f"DELETE FROM {table}" for table in held.tables)  # nosec B608 (constants of the services)
            records += statements
        async with _foreign_keys_checked_at_end(self._conn):
            for sql in emptied:
                await self._conn.execute(sql)
            for sql, run in itertools.groupby(records, key=lambda statement: statement[0]):
                await self._conn.executemany(sql, [params for _, params in run])
        self._held_unwritten = False
        return len(records)

    async def _copy_to(self, fresh: Path) -> bool:
        """Whether the open database copied into ``fresh`` whole (SQLite's backup, read through the
        connection's WAL and cache; checked page by page). Raises when ``fresh`` cannot be written (the disk
        full, the directory read-only): a later attempt may succeed."""
        _owner_only(fresh)
        target = sqlite3.connect(fresh, check_same_thread=False)  # used from the connection's thread
        try:
            await self._conn.backup(target)
            return await asyncio.to_thread(lambda: target.execute("PRAGMA quick_check(1)").fetchone() == ("ok",))
        except sqlite3.Error as exc:
            if exc.sqlite_errorcode & 0xFF in _COPY_NOT_WRITTEN:
                raise
            return False
        finally:
            target.close()

    def _seen_open(self) -> None:
        self._file = None if str(self.path) == IN_MEMORY else _FileSeen.of(self.path)
        if self._file is not None:
            self._directory_mode = os.stat(self.path.parent).st_mode & 0o7777

    def _make_directory(self) -> None:
        """The data directory, made again (and its parents) if it was deleted under the hub: with the mode it
        had when the file was opened, else as a start makes it (``Persistence.open``)."""
        directory = self.path.parent
        if str(self.path) == IN_MEMORY or directory.is_dir():
            return
        directory.mkdir(parents=True, exist_ok=True)
        if self._directory_mode is not None:
            os.chmod(directory, self._directory_mode)  # not mkdir's mode, which the umask narrows

    async def _move_to_file(self) -> None:
        self._make_directory()  # deleted while the hub read a stand-in, or never made at the start
        connection = await _open_file(self.path, self.settings)
        stand_in, self._conn, self._stand_in = self._conn, connection, False
        await stand_in.close()
        self._seen_open()
        log.warning("database %s is open for writing now", self.path)

    async def _reopen_file(self) -> None:
        # closed first: SQLite shares a file's -shm among the connections of one process, so a new
        # connection opened beside the read-only one would be read-only too
        await self._conn.close()
        try:
            self._conn = await _open_file(self.path, self.settings)
        except BaseException:
            self._conn, _ = await _stand_in(self.path)
            self._stand_in, self._read_only, self._file = True, False, None
            raise
        self._read_only = False
        self._seen_open()

    async def _execute_run(self, sql: str, writes: list[_Write]) -> None:
        if len(writes) > 1:
            await self._conn.execute("SAVEPOINT same_statements")
            try:
                await self._conn.executemany(sql, [write.params for write in writes])
            except _REFUSED_VALUES:
                # executemany stops at the refused statement and leaves those before it done: undone, then all
                # redone one by one to keep the good ones (else an insert before it would be stored twice)
                await self._conn.execute("ROLLBACK TO same_statements")
            else:
                await self._conn.execute("RELEASE same_statements")
                return
            await self._conn.execute("RELEASE same_statements")
        for write in writes:
            try:
                await self._conn.execute(sql, write.params)
            except _REFUSED_VALUES as exc:
                # a bug, not a disk problem: retrying would fail forever, so drop it loudly (without the
                # values: a device URL among them may carry a password)
                self.stats.rejected += 1
                log.error("database rejected %s: %s", " ".join(sql.split()[:3]), exc)

    def _enter_failing(self, exc: Exception, *, said: bool = False) -> None:  # TimeoutError: a stalled commit
        """Writes fail from now on (health says why); logged once per spell, unless the caller ``said`` why."""
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        if self.stats.failing_since is None:
            self.stats.failing_since = time.monotonic()
            if not said:
                log.error(
                    "database writes failing (%s) in %s: monitoring continues, %d writes held in memory and retried",
                    exc,
                    self.path,
                    len(self._queue),
                )
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_result(False)
        self._waiters.clear()

    def _committed(self, batch: list[_Write]) -> None:
        self.stats.committed += len(batch)
        self.stats.transactions += 1
        self._committed_seq = batch[-1].seq
        if self.stats.failing_since is not None:
            log.warning(
                "database writes resumed after %.0f s (history samples dropped: %d, other writes lost: %d)",
                time.monotonic() - self.stats.failing_since,
                self.stats.dropped_history,
                self.stats.dropped_kept,
            )
            self.stats.failing_since = None
        done_seq = self._committed_seq if self._queue else self._seq
        still_waiting = []
        for waiter in self._waiters:
            if waiter.seq <= done_seq:
                if not waiter.future.done():
                    waiter.future.set_result(True)
            else:
                still_waiting.append(waiter)
        self._waiters = still_waiting
        if self._waiters:
            self._urgent.set()


@dataclass(frozen=True)
class _FileSeen:
    device: int
    inode: int
    size: int

    @classmethod
    def of(cls, path: Path) -> _FileSeen:
        found = os.stat(path)
        return cls(found.st_dev, found.st_ino, found.st_size)


# the table a statement writes: the first one named after INSERT ... INTO, UPDATE or DELETE FROM
_WRITTEN_TABLE: Final = re.compile(r"\b(?:INTO|UPDATE|FROM)\s+(\w+)", re.IGNORECASE)


def _tables_written(writes: list[_Write]) -> str:
    """How many of ``writes`` go to which table, most first (``extended_names 1, history_blocks 48``)."""
    tables = Counter(found[1] if (found := _WRITTEN_TABLE.search(write.sql)) else "other" for write in writes)
    return ", ".join(f"{table} {count}" for table, count in tables.most_common())


def _runs_of_same_sql(batch: list[_Write]) -> list[tuple[str, list[_Write]]]:
    runs: list[tuple[str, list[_Write]]] = []
    for write in batch:
        if runs and runs[-1][0] == write.sql:
            runs[-1][1].append(write)
        else:
            runs.append((write.sql, [write]))
    return runs


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# the files whose permissions could not be restricted, until they can: said once, not at every retry
_UNRESTRICTED: set[str] = set()


def _owner_only(path: Path) -> None:
    """Only the hub's user may read the database (device URLs in it may carry credentials, an older build's
    rows). Made so before SQLite writes to it, whose WAL takes the file's mode: a file written again under the
    running hub (deleted, truncated) was readable by every user until the next start. Failing (a read-only or
    missing directory, which the writer retries every few seconds) is logged once until it succeeds."""
    try:
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # an empty file is an empty database
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{path}{suffix}", 0o600)
    except OSError as exc:
        if str(path) not in _UNRESTRICTED:
            _UNRESTRICTED.add(str(path))
            log.warning("cannot restrict permissions of %s: %s", path, exc)
    else:
        _UNRESTRICTED.discard(str(path))


async def _connect(path: Path, settings: WriterSettings) -> aiosqlite.Connection:
    if str(path) != IN_MEMORY:
        _owner_only(path)
    # the timeout is SQLite's busy timeout: how long a statement waits for another connection's lock
    connection = await aiosqlite.connect(path, isolation_level=None, timeout=settings.busy_timeout_s)
    try:
        connection.row_factory = sqlite3.Row
        for name, (arguments, function) in _FUNCTIONS.items():
            await connection.create_function(name, arguments, function, deterministic=True)
        # before WAL: the WAL index then lives in the hub's memory, not in a shared map of a -shm file that
        # kills the process (SIGBUS) when someone truncates it; the price, other programs cannot open the file
        # while the hub runs (docs/adr/0013-exclusive-database.md)
        await connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        # WAL + synchronous=NORMAL: a killed process loses nothing committed (the OS holds the WAL);
        # only a power cut can lose the last transactions, never corrupt the file.
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA synchronous=NORMAL")
        await connection.execute("PRAGMA foreign_keys=ON")
        # a deleted row is overwritten where that costs no extra write (FAST): a password moved out of an old
        # database (hub.persistence.credentials) is then gone from the file too
        await connection.execute("PRAGMA secure_delete=FAST")
        await _migrate(connection)
    except BaseException:
        await _close_interrupting(connection)
        raise
    return connection


# How often a statement is interrupted again while the close waits for it: an interrupt between two statements
# (of a migration's script) or before a queued one has begun has no effect in SQLite
INTERRUPT_AGAIN_S: Final = 0.05


async def _close_interrupting(connection: aiosqlite.Connection) -> None:
    """Close a connection whose open was cancelled (a stop during the start) or failed: the statement still
    running on its thread is interrupted first, or the close would queue behind it (a check reading every page
    of a large file, a migration step) and the stop wait for all of it. Nothing is lost: the check only reads,
    and a migration step is one transaction, rolled back, so the next start migrates again."""
    closing = asyncio.ensure_future(connection.close())
    while not closing.done():
        # ValueError, ProgrammingError: the connection closed meanwhile, nothing is left to interrupt
        with contextlib.suppress(ValueError, sqlite3.ProgrammingError):
            await connection.interrupt()
        await asyncio.wait({closing}, timeout=INTERRUPT_AGAIN_S)
    await closing


async def _open_file(path: Path, settings: WriterSettings) -> aiosqlite.Connection:
    """Open the file for writing; a file found damaged (not a database, or a page that does not read back) is
    set aside under a new name and replaced by a fresh database holding every row that could be read."""
    try:
        connection = await _connect(path, settings)
        try:
            if str(path) != IN_MEMORY:
                await _check_intact(connection)
        except BaseException:
            await _close_interrupting(connection)
            raise
    except sqlite3.DatabaseError as exc:
        if str(path) == IN_MEMORY or exc.sqlite_errorcode not in _DAMAGE:
            raise
        return await _replace_damaged(path, settings, exc)
    return connection


# What one statement fails with when its values are wrong, not the disk: a constraint or a value SQLite has no
# type for (sqlite3), text that is no UTF-8 (UnicodeEncodeError: a lone surrogate), a whole number beyond 64
# bits (OverflowError). Retrying would fail forever and hold every later write back: it is rejected alone.
_REFUSED_VALUES: Final = (sqlite3.IntegrityError, sqlite3.ProgrammingError, UnicodeEncodeError, OverflowError)

# what SQLite says of a file whose pages are not what it wrote: no retry can help, setting it aside can
_DAMAGE: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

# what SQLite says when a copy of the database cannot be written (not that the source does not read): a full
# disk, a read-only or missing directory; a later attempt may succeed
_COPY_NOT_WRITTEN: Final = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM}
)


async def _check_intact(connection: aiosqlite.Connection) -> None:
    """Every page of every table and index read back once (a few ms a MB): damage shows at start, not
    in the middle of a show when a query first touches the page."""
    async with connection.execute("PRAGMA quick_check(1)") as cursor:
        row = await cursor.fetchone()
    if row is None or row[0] != "ok":
        found = " ".join(str(row[0] if row else "no answer").replace("*** in database main ***", "").split())
        damage = sqlite3.DatabaseError(f"database disk image is malformed: {found}")
        damage.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
        raise damage


def _set_aside(path: Path) -> Path:
    """Rename the file (with its WAL and index) to ``<name>.damaged-<time>``: nothing is deleted."""
    kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    # the WAL and its index go with the file: a fresh database must not replay the old one's journal
    for suffix in ("-wal", "-shm", ""):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").rename(f"{kept}{suffix}")
    return kept


async def _replace_damaged(path: Path, settings: WriterSettings, damage: sqlite3.DatabaseError) -> aiosqlite.Connection:
    kept = _set_aside(path)
    connection = await _connect(path, settings)
    try:
        incomplete = await _salvage(connection, kept)
    except BaseException:
        await connection.close()
        raise
    log.error(
        "database %s is damaged (%s): set aside as %s; a fresh database holds every row that could be read "
        "(%s); monitoring continues",
        path,
        damage,
        kept.name,
        f"rows lost in: {', '.join(incomplete)}" if incomplete else "nothing lost",
    )
    return connection


async def _salvage(connection: aiosqlite.Connection, damaged: Path) -> list[str]:
    """Copy into the fresh database every row of ``damaged`` that reads back, table by table, up to the first
    unreadable page of each; rows left pointing at a lost row are unlinked (SET NULL) or dropped, as the
    foreign key would have done. Returns the tables that could not be read whole."""
    tables = await _column_lists(connection)
    readable, incomplete = await asyncio.to_thread(_read_what_reads, damaged, tables)
    async with _foreign_keys_checked_at_end(connection):
        for table, rows in readable.items():
            marks = ", ".join("?" * len(rows[0]))
            # bandit B608 waived: table and column names come from the fresh database's own schema
            insert = f"INSERT OR IGNORE INTO {table} ({tables[table]}) VALUES ({marks})"  # nosec B608
            await connection.executemany(insert, rows)
    return incomplete


@contextlib.asynccontextmanager
async def _foreign_keys_checked_at_end(connection: aiosqlite.Connection) -> AsyncIterator[None]:
    """One transaction whose tables are filled in any order (a child before its parent): foreign keys are
    off meanwhile, and at the end a row left pointing at a missing one is unlinked (SET NULL) or dropped,
    as the foreign key would have done."""
    await connection.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: set before it
    try:
        await connection.execute("BEGIN IMMEDIATE")
        yield
        await _unlink_orphans(connection)
        await connection.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            await connection.execute("ROLLBACK")
        raise
    finally:
        await connection.execute("PRAGMA foreign_keys=ON")


def _read_what_reads(damaged: Path, tables: dict[str, str]) -> tuple[dict[str, list[tuple[Any, ...]]], list[str]]:
    # a connection of its own: a read that meets a damaged page would spoil the fresh database's transaction
    readable: dict[str, list[tuple[Any, ...]]] = {}
    incomplete: list[str] = []
    # reading a WAL database makes its -wal and -shm; those the kept file had not are removed again
    made = [companion for suffix in ("-wal", "-shm") if not (companion := Path(f"{damaged}{suffix}")).exists()]
    source = sqlite3.connect(f"{damaged.absolute().as_uri()}?mode=ro", uri=True)
    try:
        for table, columns in tables.items():
            rows: list[tuple[Any, ...]] = []
            try:
                cursor = source.execute(f"SELECT {columns} FROM {table}")  # nosec B608 (names of our schema)
                while batch := cursor.fetchmany(1000):
                    rows += batch
            except sqlite3.DatabaseError:
                incomplete.append(table)
            if rows:
                readable[table] = rows
    finally:
        source.close()
        for companion in made:
            companion.unlink(missing_ok=True)
    return readable, incomplete


async def _column_lists(connection: aiosqlite.Connection) -> dict[str, str]:
    async with connection.execute(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT IN ('schema_version', 'sqlite_sequence')"
    ) as cursor:
        tables = [row[0] for row in await cursor.fetchall()]
    columns = {}
    for table in tables:
        async with connection.execute(f"PRAGMA main.table_info({table})") as cursor:
            columns[table] = ", ".join(row[1] for row in await cursor.fetchall())
    return columns


async def _unlink_orphans(connection: aiosqlite.Connection) -> None:
    async with connection.execute("PRAGMA main.foreign_key_check") as cursor:
        orphans = list(await cursor.fetchall())
    for table, rowid, _parent, key_id in orphans:
        async with connection.execute(f"PRAGMA main.foreign_key_list({table})") as cursor:
            key = next(row for row in await cursor.fetchall() if row[0] == key_id)
        # bandit B608 waived: names from the database's own schema, the rowid a parameter
        if key[6] == "SET NULL":  # on_delete
            await connection.execute(f"UPDATE main.{table} SET {key[3]} = NULL WHERE rowid = ?", (rowid,))  # nosec B608
        else:
            await connection.execute(f"DELETE FROM main.{table} WHERE rowid = ?", (rowid,))  # nosec B608


async def _stand_in(path: Path) -> tuple[aiosqlite.Connection, str]:
    """What the store reads while the file cannot be written: a private copy of the file and its WAL (an
    unclean stop's last changes are only in the WAL, and the ids the services count on must include them),
    migrated to the current schema, if it is there and reads; otherwise an empty database with the current
    schema. A copy, not the file: a read-only directory or another program's lock stops neither a copy nor
    its reads."""
    if str(path) != IN_MEMORY and path.is_file():  # noqa: ASYNC240 (a stat, once, at start)
        try:
            with _private_copy(path) as copy:  # once, at start or after damage
                if (connection := await _migrated_view(copy)) is not None:
                    return connection, "a read-only view of it"
        except OSError:  # the file went between the look and the copy, or there is no room for the copy
            pass
    connection = await aiosqlite.connect(IN_MEMORY, isolation_level=None)
    connection.row_factory = sqlite3.Row
    await _migrate(connection)
    return connection, "an empty database"


async def _migrated_view(copy: Path) -> aiosqlite.Connection | None:
    """The copy, migrated to the current schema, if it reads and is of a schema this build knows."""
    connection = await aiosqlite.connect(copy, isolation_level=None)
    connection.row_factory = sqlite3.Row
    try:
        # the WAL index in memory: the copy's files are removed once it is open (Linux keeps them while
        # they are open), so nothing is left behind
        await connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        async with connection.execute("SELECT max(version) FROM schema_version") as cursor:
            row = await cursor.fetchone()
        if row is not None and row[0] is not None and row[0] <= len(MIGRATIONS):
            await _check_intact(connection)
            # an older schema (the first start after an upgrade): the copy is migrated, the file is not;
            # empty instead, the hub would watch none of the user's devices
            await _migrate(connection)
            return connection
    except sqlite3.Error:
        pass
    await connection.close()
    return None


def stored_schema_version(path: Path) -> int | None:
    """The schema version of the database file at ``path``, as a start would find it, read without creating,
    locking or changing anything beside it: None when there is none to read (no file yet; a damaged or
    unreadable one, which the start sets aside or runs degraded with). An unclean stop leaves its last
    transactions, a migration's too, in the WAL, which only a connection that may write reads: with a WAL
    beside the file, a private copy of the two is read instead."""
    try:
        if not path.is_file():
            return None
        wal = Path(f"{path}-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            with contextlib.suppress(OSError), _private_copy(path) as copy:
                return _schema_version(copy.as_uri())
        # no WAL, or no room for the copy (a small /tmp): the file alone, which may lag its WAL by a migration
        return _schema_version(f"{path.absolute().as_uri()}?immutable=1")
    except (sqlite3.Error, OSError):
        return None


@contextlib.contextmanager
def _private_copy(path: Path) -> Iterator[Path]:
    """A copy of the database file and its WAL (an unclean stop's last transactions are only there), in a
    directory of its own that is removed afterwards: read without locking or changing the file or what is
    beside it."""
    with tempfile.TemporaryDirectory(prefix="wmhub-copy-") as directory:
        copy = Path(directory) / path.name
        shutil.copyfile(path, copy)
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(f"{path}-wal", f"{copy}-wal")
        yield copy


def _schema_version(uri: str) -> int | None:
    connection = sqlite3.connect(uri, uri=True)
    try:
        row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
    finally:
        connection.close()
    return row[0] if isinstance(row[0], int) else None


def _redacted_text(text: object) -> object:
    return redact(text) if isinstance(text, str) else text


def _redacted_json(text: object) -> object:
    """A JSON column's text with every string in it redacted (hub.persistence.audit writes it so); the same
    text when nothing in it is a secret."""
    if not isinstance(text, str):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return redact(text)
    redacted = redact_values(value)
    return text if redacted == value else json.dumps(redacted, default=redacted_text, sort_keys=True)


def device_id_now(device_id: object) -> object:
    """A device id as an earlier build stored it, as this build makes it (migration 8), where the stored id tells.

    An earlier build made the part after the vendor's name and its ``-`` of a serial or ``id`` option as
    :func:`hub.devices.id_text` does now, but kept invisible format characters (Unicode Cf: U+200B, U+200E,
    U+FEFF …) as they were, at either end too. So the part is the serial with whitespace, ``/``, ``+`` and ``#``
    written as ``_``, and id_text makes of it what it now makes of the serial, unless the part hides what
    id_text would read (:func:`_hides_its_serial`). Returned as it is: such an id, one id_text would leave
    empty (the hub now makes that device's id from its address, which the id does not hold), an id without
    such characters, a URL (a driver's memory kept under its device's URL holds a ``/``, which no id does)
    and a value that is no text."""
    if not isinstance(device_id, str) or "/" in device_id or not any(map(invisible, device_id)):
        return device_id
    vendor, dash, part = device_id.partition("-")  # a vendor's name holds no such character (hub.plugins)
    if not dash:
        vendor, part = "", device_id
    now = "" if _hides_its_serial(part) else id_text(part)
    return f"{vendor}{dash}{now}" if now else device_id


def _hides_its_serial(part: str) -> bool:
    """Whether an earlier build's id part may stand for serials the hub now gives different ids. It may not
    hold the whole serial: one of MAX_ID_CHARS characters or more may have been cut, or carry the
    ``-<scheme>`` suffix a second device wanting the same id got. An invisible character may stand beside a
    ``-`` (where such a suffix, or the rest of a vendor name with a ``-`` of its own, may begin), or at an end
    of the part next to a ``_`` (a space there is dropped with it now; a ``_``, ``/``, ``+`` or ``#`` is
    kept): ``<U+200B>_ABC`` was serial ``<U+200B> ABC`` (now ``ABC``) or ``<U+200B>_ABC`` (now ``_ABC``).
    Serials are taken to have held no control characters and direction overrides, which both rules drop
    without a trace."""
    if len(part) >= MAX_ID_CHARS:
        return True
    if any("-" in pair and any(map(invisible, pair)) for pair in itertools.pairwise(part)):
        return True
    shown = strip_blank(part)  # the part holds no whitespace: what goes are the invisible characters at its ends
    if not shown:
        return False
    start = part.index(shown)
    end = start + len(shown)
    return (start > 0 and shown.startswith("_")) or (end < len(part) and shown.endswith("_"))


def _identity_now(text: object) -> object:
    """A device's kept identity (device_identity, hub.devices.identity_text) naming its id as this build makes
    it (:func:`device_id_now`); the same text when the id is unchanged or the text is not such an identity."""
    if not isinstance(text, str):
        return text
    try:
        identity = json.loads(text)
    except ValueError:
        return text
    if not isinstance(identity, dict) or device_id_now(identity.get("id")) == identity.get("id"):
        return text
    identity["id"] = device_id_now(identity["id"])
    return json.dumps(identity, separators=(",", ":"), ensure_ascii=False)


async def _migrate(connection: aiosqlite.Connection) -> None:
    await connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    # a migration may redact what an earlier version stored (4: the audit log) with the hub's own redaction,
    # and what it replaces is overwritten in the file, not only unlinked
    await connection.create_function("wmhub_redact", 1, _redacted_text, deterministic=True)
    await connection.create_function("wmhub_redact_json", 1, _redacted_json, deterministic=True)
    # or rewrite stored device ids by the hub's id rule of now (8)
    await connection.create_function("wmhub_device_id", 1, device_id_now, deterministic=True)
    await connection.create_function("wmhub_identity", 1, _identity_now, deterministic=True)
    await connection.create_function("history_keep_recorded", 2, keep_recorded, deterministic=True)
    await connection.execute("PRAGMA secure_delete=ON")
    async with connection.execute("SELECT max(version) FROM schema_version") as cursor:
        row = await cursor.fetchone()
    current = row[0] if row is not None and row[0] is not None else 0
    if current > len(MIGRATIONS):
        raise RuntimeError(f"database schema {current} is newer than this hub knows ({len(MIGRATIONS)})")
    for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
        # bandit B608 waived: the migrations are constants and the version an int from enumerate
        migrate = f"BEGIN IMMEDIATE;\n{script}\nINSERT INTO schema_version (version) VALUES ({number});\nCOMMIT;"  # nosec B608
        await connection.executescript(migrate)
        log.info("database schema migrated to version %d", number)
    await connection.execute("PRAGMA secure_delete=FAST")
