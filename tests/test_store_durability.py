"""Nothing committed is lost: a SIGKILL during heavy writes, a read-only database and a full disk."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sqlite3
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hub.hookspecs import Candidate
from hub.persistence import (
    DATABASE_FILE,
    AlertKind,
    AlertSettings,
    Persistence,
    SimulatedClock,
    Source,
    WriterSettings,
)
from hub.persistence import db as db_module
from hub.persistence.history import encode_bucket
from hub.persistence.services import Stored
from hub.persistence.testing import open_simulated, put_receiver
from hub.state import StateStore
from hub.testing import eventually

# Configures a venue, waits for a low-battery alert, then writes as hard as it can: audit entries, history
# blocks and meter churn, with one awaited configuration change per round whose number it prints once
# that change is committed.
WRITER_SCRIPT = textwrap.dedent(
    """
    import asyncio, random, sys
    from hub.state import StateStore
    from hub.persistence import AlertSettings, Persistence, Source, StoreSettings
    from hub.persistence.history import encode_bucket
    from hub.persistence.testing import put_receiver

    async def main(data_dir):
        state = StateStore()
        put_receiver(state, "shure-A", channels=4, battery_bars=1)
        settings = StoreSettings(tick_s=0.02, alerts=AlertSettings(battery_for_s=0.0))
        store = await Persistence.open(data_dir, state, settings=settings)
        await store.devices.add("shure://127.0.0.1:2202", source=Source.CLI, device_id="shure-A")
        await store.slots.set(1, "shure-A", 1, source=Source.CLI)
        await store.groups.create(1, "Band", [1], source=Source.CLI)
        anna = await store.performers.create("Anna", source=Source.CLI)
        await store.performers.assign(anna.id, "shure-A", 1, source=Source.CLI, alert_prefs={"battery_bars": 2})
        while not store.alerts.open_alerts():
            await asyncio.sleep(0.01)
        await store.db.sync()
        print("configured", flush=True)
        series = [store.history.series(f"load-{n}", 1) for n in range(100)]
        bucket = encode_bucket([50, 50, 50, -60, -55, -50, -30, -20, -10])
        at = 0
        rounds = 0
        while True:
            rounds += 1
            for _ in range(20):
                at += 10
                for series_id in series:
                    store.history.add_bucket(series_id, at, bucket)
            for index in range(1, 5):
                state.update_channel("shure-A", index, {"rf_dbm": random.uniform(-90, -40)})
                store.audit.record(Source.MQTT, "command.gain", f"shure-A/{index}", rounds, rounds + 1)
            await store.performers.create(f"P{rounds}", source=Source.CLI)
            print(f"committed {rounds}", flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_sigkill_during_heavy_writes_loses_nothing_committed(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER_SCRIPT, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    last_committed = 0
    try:
        deadline = time.monotonic() + 90  # 300 commits take a few seconds alone, far longer beside other tests
        while last_committed < 300:
            line = await asyncio.wait_for(process.stdout.readline(), max(0.1, deadline - time.monotonic()))
            assert line, "the writer died on its own"
            if line.startswith(b"committed "):
                last_committed = int(line.split()[1])
        process.send_signal(signal.SIGKILL)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    assert process.returncode == -signal.SIGKILL

    store = await open_simulated(tmp_path, StateStore())
    try:
        [(integrity,)] = await store.db.fetchall("PRAGMA integrity_check")
        assert integrity == "ok"
        names = {performer.name for performer in store.performers.all()}
        assert {f"P{n}" for n in range(1, last_committed + 1)} <= names
        assert store.restore() == [("shure://127.0.0.1:2202", "shure-A")]
        assert store.slots.get(1).device_id == "shure-A"
        assert store.groups.get(1).slots == [1]
        assignment = store.performers.assignment_for("shure-A", 1)
        assert assignment is not None and assignment.alert_prefs.battery_bars == 2
        open_alerts = {(alert.kind, alert.channel) for alert in store.alerts.open_alerts()}
        assert open_alerts == {(AlertKind.LOW_BATTERY, index) for index in range(1, 5)}
        [(audited,)] = await store.db.fetchall("SELECT count(*) FROM audit WHERE action = 'command.gain'")
        assert audited >= 4 * (last_committed - 1)
    finally:
        await store.close()


async def wait_resumed(store: Persistence) -> None:
    await eventually(lambda: not store.db.failing and store.db.backlog == 0, timeout=5, what="writes to resume")


async def test_read_only_database_keeps_the_hub_running_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = StateStore()
    put_receiver(state, "shure-A", channels=1, battery_bars=1)
    clock = SimulatedClock()
    store = await open_simulated(tmp_path, state, clock)
    try:
        await store.db.connection.execute("PRAGMA query_only = ON")  # what a read-only mount gives SQLite
        with caplog.at_level(logging.ERROR, logger="hub.persistence"):
            slot = await store.slots.set(3, "shure-A", 1, source=Source.REST)
            assert store.slots.get(3) == slot, "the change is live while the disk refuses it"
            for _ in range(20):
                clock.advance(0.5)
                store.step()
            assert [a.kind for a in store.alerts.open_alerts()] == [AlertKind.LOW_BATTERY], "monitoring goes on"
            await eventually(lambda: store.db.failing, what="the writer to notice")
            failures = [r for r in caplog.records if "database writes failing" in r.getMessage()]
            assert len(failures) == 1 and "readonly" in failures[0].getMessage()
            assert await store.db.sync() is False, "callers are not held up by a failing disk"
        await store.db.connection.execute("PRAGMA query_only = OFF")
        await wait_resumed(store)
        assert any("resumed" in r.getMessage() for r in caplog.records)
    finally:
        await store.close()
    again = await open_simulated(tmp_path, StateStore())
    try:
        assert again.slots.get(3) == slot
        assert len(await again.alerts.recent()) == 1
    finally:
        await again.close()


async def test_full_disk_sheds_history_first_counts_losses_and_resumes(tmp_path: Path) -> None:
    store = await open_simulated(
        tmp_path, writer=WriterSettings(flush_interval_s=0.01, retry_interval_s=0.05, backlog_limit=500)
    )
    try:
        [(pages,)] = await store.db.fetchall("PRAGMA page_count")
        await store.db.connection.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
        series = store.history.series("shure-A", 1)
        bucket = encode_bucket([50, 50, 50, -60, -55, -50, -30, -20, -10])
        for block in range(600):  # a new block every 60 buckets: 600 history writes
            for k in range(60):
                store.history.add_bucket(series, block * 600 + k * 10, bucket)
            if block % 20 == 0:
                store.audit.record(Source.REST, "slot.set", f"slot/{block}", None, block)
        await eventually(lambda: store.db.failing, what="the full disk to be noticed")
        stats = store.writer_stats
        assert stats.dropped_history > 0 and stats.dropped_kept == 0
        assert "full" in (stats.last_error or "")
        assert store.db.backlog <= 500

        await store.db.connection.execute("PRAGMA max_page_count = 1073741823")
        await wait_resumed(store)
        entries = await store.audit.query(limit=1000)
        assert len(entries) == 30, "every audit entry survived the full disk"
    finally:
        await store.close()


async def test_a_data_dir_that_cannot_be_created_starts_empty_and_moves_to_the_file_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("a file where the data directory should be")
    with caplog.at_level(logging.ERROR, logger="hub.persistence"):
        store = await open_simulated(data_dir)
    try:
        assert store.db.failing
        assert any("empty database" in record.getMessage() for record in caplog.records)
        slot = await store.slots.set(1, "shure-A", 1, source=Source.REST)
        assert store.slots.get(1) == slot, "the hub works while nothing can be stored"

        data_dir.unlink()  # the operator fixes the data directory
        data_dir.mkdir()
        await wait_resumed(store)
    finally:
        await store.close()
    again = await open_simulated(data_dir)
    try:
        assert again.slots.get(1) == slot
    finally:
        await again.close()


async def test_a_database_locked_by_another_hub_is_read_and_written_once_released(tmp_path: Path) -> None:
    first = await open_simulated(tmp_path)
    await first.devices.add("shure://127.0.0.1:2202", source=Source.CLI, device_id="shure-A")
    await first.close()

    other_hub = sqlite3.connect(tmp_path / DATABASE_FILE)
    other_hub.execute("PRAGMA locking_mode = EXCLUSIVE")
    other_hub.execute("BEGIN EXCLUSIVE")
    writer = WriterSettings(flush_interval_s=0.01, retry_interval_s=0.05, busy_timeout_s=0.05)
    store = await open_simulated(tmp_path, writer=writer)
    try:
        assert store.db.failing
        assert store.restore() == [("shure://127.0.0.1:2202", "shure-A")], "a read-only view serves the restart"
        await store.slots.set(2, "shure-A", 1, source=Source.REST)
        other_hub.rollback()
        other_hub.close()
        await wait_resumed(store)
    finally:
        await store.close()
    again = await open_simulated(tmp_path)
    try:
        assert again.slots.get(2).device_id == "shure-A"
        assert again.restore() == [("shure://127.0.0.1:2202", "shure-A")]
    finally:
        await again.close()


async def test_a_file_that_is_not_a_database_is_set_aside_and_a_fresh_one_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage throughout (a wrong file copied in, a disk that returned zeros): kept under another name, and
    the hub writes to a fresh database at once instead of failing every write until it stops."""
    garbage = bytes(range(256)) * 64
    (tmp_path / DATABASE_FILE).write_bytes(garbage)
    with caplog.at_level(logging.ERROR, logger="hub.persistence"):
        store = await open_simulated(tmp_path)
    try:
        assert not store.db.failing
        await store.slots.set(1, "shure-A", 1, source=Source.REST)
        assert await store.db.sync() is True
    finally:
        await store.close()
    [kept] = tmp_path.glob(f"{DATABASE_FILE}.damaged-*")  # noqa: ASYNC240 (a listing, the store closed)
    assert kept.read_bytes() == garbage
    [said] = [record.getMessage() for record in caplog.records]
    assert "file is not a database" in said and kept.name in said, said
    again = await open_simulated(tmp_path)
    try:
        assert again.slots.get(1).device_id == "shure-A"
    finally:
        await again.close()


async def test_a_file_truncated_under_the_store_gets_every_record_the_services_hold(tmp_path: Path) -> None:
    """Truncated under the running store, the file was set aside and a fresh one took what still read
    (nothing, here): every record of every service was gone at the next start, open alerts, names,
    assignments, discovery candidates, connection health, history's series ids (blocks written later
    would land under another channel) and what drivers keep (sink.remember) included. Each service writes
    what it holds into the new file."""
    clock = SimulatedClock()
    state = StateStore()
    put_receiver(state, "shure-A", channels=2, battery_bars=1)
    store = await open_simulated(tmp_path, state, clock, alerts=AlertSettings(battery_for_s=0.0))
    try:
        await store.devices.add("shure://127.0.0.1:2202", source=Source.CLI, device_id="shure-A")
        stage = await store.locations.create("Stage A", "stage", source=Source.CLI)
        await store.devices.set_location("shure-A", stage.id, source=Source.CLI)
        anna = await store.performers.create("Anna", source=Source.CLI)
        await store.performers.assign(anna.id, "shure-A", 1, source=Source.CLI, alert_prefs={"battery_bars": 2})
        await store.names.set("shure-A", 2, "Spare", source=Source.CLI)
        await store.slots.set(1, "shure-A", 1, source=Source.CLI)
        await store.groups.create(1, "Band", [1], source=Source.CLI)
        await store.show.set(1_800_000_000.0, 20, source=Source.CLI)
        await store.frequency.declare("IEM 1", 606.5, source=Source.CLI)
        await store.frequency.exclude(source=Source.CLI, label="TV 38", low_mhz=606.0, high_mhz=614.0)
        await store.candidates.offer(Candidate(url="shure://127.0.0.1:2203", vendor="shure", source="mdns"))
        store.health.update([{"url": "shure://127.0.0.1:2202", "device_id": "shure-A", "attempts": 3}])
        store.history.series("shure-A", 1)
        store.device_memory.remember("shure://127.0.0.1:2202", '{"channels": {"7": 1}}')  # a driver's (SSCv2)
        clock.advance(1.0)
        store.step()
        raised = store.alerts.open_alerts()  # the low batteries
        assert raised
        await store.alerts.acknowledge(raised[0].id, source=Source.REST, by="Sam")
        assert await store.db.sync() is True
    finally:
        await store.close()  # a clean stop: every row is in the file, none in the WAL
    store = await open_simulated(tmp_path, state, clock, alerts=AlertSettings(battery_for_s=0.0))
    try:
        held = await Stored.read(store.db, store.settings.history)
        await truncate_under(store, tmp_path / DATABASE_FILE)
    finally:
        await store.close()
    stored = await stored_in(tmp_path)
    assert [performer.name for performer in stored.performers] == ["Anna", "Ben"]
    assert dataclasses.replace(stored, performers=held.performers, last_audit_id=held.last_audit_id) == held
    assert stored.device_memory == [("shure://127.0.0.1:2202", '{"channels": {"7": 1}}')]


async def test_a_service_whose_records_cannot_be_listed_does_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in one service's list of records (a plugin's own, say) is logged; the other services' records
    are written all the same and the store goes on taking writes."""
    store = await open_simulated(tmp_path)
    try:
        await store.locations.create("Stage A", "stage", source=Source.CLI)
    finally:
        await store.close()
    store = await open_simulated(tmp_path)

    def broken() -> list[tuple[str, tuple[object, ...]]]:
        raise RuntimeError("a bug")

    store.db.hold(broken, whole=("performers",))
    try:
        with caplog.at_level(logging.ERROR, logger="hub.persistence"):
            await truncate_under(store, tmp_path / DATABASE_FILE)
    finally:
        await store.close()
    stored = await stored_in(tmp_path)
    assert [location.name for location in stored.locations] == ["Stage A"]
    assert [performer.name for performer in stored.performers] == ["Ben"]
    assert any("could not be listed" in record.getMessage() for record in caplog.records), caplog.text


async def truncate_under(store: Persistence, database: Path) -> None:
    """Truncate the store's file after a clean start (every row in the file, none in the WAL), make a change
    (a performer "Ben") and wait until the store has replaced the file and stored it."""
    replaced = database.stat().st_ino  # noqa: ASYNC240 (a stat)
    database.write_bytes(b"")  # noqa: ASYNC240 (the damage itself)
    # the next commit meets the damage (the file's pages are gone for SQLite too)
    await store.performers.create("Ben", source=Source.CLI)
    await eventually(
        lambda: database.exists() and database.stat().st_ino != replaced and not store.db.failing, timeout=15.0
    )
    assert await store.db.sync() is True


async def stored_in(data_dir: Path) -> Stored:
    """What a store opened on ``data_dir`` starts from."""
    store = await open_simulated(data_dir)
    try:
        return await Stored.read(store.db, store.settings.history)
    finally:
        await store.close()


async def test_a_value_sqlite_cannot_store_is_rejected_alone_and_every_other_write_is_kept(tmp_path: Path) -> None:
    """Text holding a lone surrogate (a receiver's name put one into its device identity row until the sink
    replaced them) made SQLite's binding raise UnicodeEncodeError: the writer task ended with it, every later
    write of the run was lost while health said the database was fine, and the stop hung. Now that statement
    alone is rejected, once: the writes beside it in its batch are committed, and so is everything after."""
    store = await open_simulated(tmp_path)
    try:
        store.audit.record(Source.REST, "device.rename", "before")
        store.audit.record(Source.REST, "device.rename", "Vocal \ud800")
        store.audit.record(Source.REST, "device.rename", "after")
        store.device_memory.remember("sennheiser-ssc://127.0.0.1:45", '{"name":"Vocal \ud800"}')
        store.device_memory.remember("sennheiser-ssc://127.0.0.1:46", '{"name":"Vocal 2"}')
        assert await asyncio.wait_for(store.db.sync(), 10)
        await asyncio.wait_for(store.performers.create("Kept", source=Source.REST), 10)
        assert await asyncio.wait_for(store.db.sync(), 10)
        assert store.db.problem is None
        # each rejected once: the audit entry before it in the same executemany is not written twice (its id
        # would then be refused as a duplicate, a second rejection)
        assert store.db.stats.rejected == 2
    finally:
        await asyncio.wait_for(store.close(), 10)
    with contextlib.closing(sqlite3.connect(tmp_path / DATABASE_FILE)) as connection:
        renames = connection.execute("SELECT target FROM audit WHERE action = 'device.rename' ORDER BY id").fetchall()
        memories = connection.execute("SELECT url FROM device_memory").fetchall()
        performers = connection.execute("SELECT name FROM performers").fetchall()
    assert renames == [("before",), ("after",)]
    assert memories == [("sennheiser-ssc://127.0.0.1:46",)]
    assert performers == [("Kept",)]


async def test_a_writer_that_ended_shows_in_health_and_close_still_releases_the_file(tmp_path: Path) -> None:
    """close() awaited the writer and re-raised how it ended before closing the connection, whose thread then
    kept the stopped hub's process alive (and the file locked). The writer is ended here the one way left to
    end it (cancelled): health says so, and close() still closes the file."""
    store = await open_simulated(tmp_path)
    await store.performers.create("Kept", source=Source.REST)
    writer = store.db._writer
    assert writer is not None
    writer.cancel()
    await asyncio.wait({writer}, timeout=10)
    assert store.db.problem is not None and "writer stopped" in store.db.problem
    await asyncio.wait_for(store.close(), 10)
    # the hub holds the file with an exclusive lock (docs/adr/0013-exclusive-database.md): readable now
    with contextlib.closing(sqlite3.connect(tmp_path / DATABASE_FILE, timeout=0.5)) as connection:
        assert connection.execute("SELECT name FROM performers").fetchall() == [("Kept",)]


class _SlowRows:
    """An SQL function that takes ``delay_s`` a row while ``slow`` and says when it is first called: a check or a
    migration step that runs for as long as a test needs, and a sure sign that it is running."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.slow = False
        self.running = threading.Event()

    def __call__(self, value: int) -> int:
        if self.slow:
            self.running.set()
            time.sleep(self.delay_s)
        return value


def _add_slow_rows(path: Path, rows: _SlowRows, *, checked: bool) -> None:
    """A table of 20,000 rows the slow function reads: in a CHECK constraint (``checked``), which the open's
    quick_check evaluates for every row, or plain, for a migration step to rewrite."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.create_function("test_slow_row", 1, rows, deterministic=True)
        check = " CHECK (test_slow_row(x) = x)" if checked else ""
        connection.execute(f"CREATE TABLE slow_rows (x INTEGER{check})")
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO slow_rows VALUES (?)", ((n,) for n in range(20_000)))
        connection.execute("COMMIT")


async def _cancelled_while_running(tmp_path: Path, rows: _SlowRows) -> float:
    """Start the store's open, cancel it (a stop during the start) once the slow function runs: how long the
    cancellation took to be done. The old close queued behind the whole check or step (20,000 rows x 1 ms)."""
    rows.slow = True
    opening = asyncio.ensure_future(open_simulated(tmp_path))
    assert await asyncio.to_thread(rows.running.wait, 30), "the open never ran the slow statement"
    cancelled = time.monotonic()
    opening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(opening, 60)
    rows.slow = False
    return time.monotonic() - cancelled


async def test_a_stop_during_the_opens_check_interrupts_it_and_the_next_open_checks_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the start checked a large database (every page read, 12-14 s a GB from a cold cache) was
    acted on only after the whole check: the cancelled open's close queued behind it on the connection's thread."""
    store = await open_simulated(tmp_path)
    await store.performers.create("Kept", source=Source.REST)
    await store.close()
    rows = _SlowRows(delay_s=0.001)
    _add_slow_rows(tmp_path / DATABASE_FILE, rows, checked=True)
    monkeypatch.setitem(db_module._FUNCTIONS, "test_slow_row", (1, rows))
    assert await _cancelled_while_running(tmp_path, rows) < 2.0
    again = await open_simulated(tmp_path)  # checked whole this time, and not found damaged
    try:
        assert not again.db.failing
        assert [p.name for p in again.performers.all()] == ["Kept"]
    finally:
        await again.close()
    assert not list(tmp_path.glob(f"{DATABASE_FILE}.damaged-*"))  # noqa: ASYNC240 (a listing, the store closed)


async def test_a_stop_during_a_migration_step_interrupts_it_and_the_next_open_migrates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for a long migration step (one transaction): rolled back, so the next start migrates again."""
    store = await open_simulated(tmp_path)
    await store.close()
    rows = _SlowRows(delay_s=0.001)
    _add_slow_rows(tmp_path / DATABASE_FILE, rows, checked=False)
    monkeypatch.setitem(db_module._FUNCTIONS, "test_slow_row", (1, rows))
    step = "UPDATE slow_rows SET x = test_slow_row(x) + 1;"
    monkeypatch.setattr(db_module, "MIGRATIONS", (*db_module.MIGRATIONS, step))
    assert await _cancelled_while_running(tmp_path, rows) < 2.0
    with contextlib.closing(sqlite3.connect(tmp_path / DATABASE_FILE)) as connection:
        [(version,)] = connection.execute("SELECT max(version) FROM schema_version").fetchall()
        [(total,)] = connection.execute("SELECT sum(x) FROM slow_rows").fetchall()
    assert version == len(db_module.MIGRATIONS) - 1 and total == sum(range(20_000)), "the step rolled back"
    again = await open_simulated(tmp_path)
    await again.close()
    with contextlib.closing(sqlite3.connect(tmp_path / DATABASE_FILE)) as connection:
        [(version,)] = connection.execute("SELECT max(version) FROM schema_version").fetchall()
        [(total,)] = connection.execute("SELECT sum(x) FROM slow_rows").fetchall()
    assert version == len(db_module.MIGRATIONS) and total == sum(range(20_000)) + 20_000
