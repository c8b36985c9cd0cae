"""Wall-clock steps under a running store: an NTP step, a Pi without a real-time clock coming back at its
last saved time, a wrong date typed in. Stored history is never replaced by what the hub records when it
re-lives a span it has recorded; a wrong forward step deletes nothing until that much real time has passed;
and open blocks, the retention sweep and the audit sweep keep running on the monotonic clock whichever way
the wall clock went. The store runs on a simulated clock (``SimulatedClock.set_wall`` steps the wall clock
and leaves monotonic time alone, as an NTP step does); one test steps the clock of a ``wmhub run`` child
process with libfaketime."""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from array import array
from pathlib import Path

import pytest

from hub.persistence import DATABASE_FILE, IN_MEMORY, Persistence, SimulatedClock
from hub.persistence.history import BUCKETS_PER_BLOCK, MISSING, VALUES_PER_BUCKET, encode_bucket
from hub.persistence.testing import open_simulated, put_receiver
from hub.state import StateStore
from tests.test_faults_startup import RunningHub, running_hub, simulated_receivers

MIDNIGHT = 1_767_225_600.0  # 2026-01-01T00:00:00Z: bucket and block boundaries of every tier are round
YEARS_3 = 3 * 365 * 24 * 3600


def run(store: Persistence, clock: SimulatedClock, seconds: float) -> None:
    """The store's ticker at its 0.5 s tick for ``seconds`` of monotonic time."""
    for _ in range(round(seconds / 0.5)):
        store.step()
        clock.advance(0.5)


async def offsets(store: Persistence, device_id: str, start: float, end: float, step: int | None = None) -> list[int]:
    return [int(p.t - start) for p in await store.history.query(device_id, 1, start, end, step)]


async def stored_buckets(store: Persistence, step: int, block_start: float) -> list[int]:
    """Offsets of the non-empty buckets of the block the database holds (not the one in memory)."""
    await store.db.sync()
    rows = await store.db.fetchall(
        "SELECT data FROM history_blocks WHERE step = ? AND start = ?", (step, int(block_start))
    )
    if not rows:
        return []
    data = array("b")
    data.frombytes(rows[0]["data"])
    empty = [MISSING] * VALUES_PER_BUCKET
    return [
        index * step
        for index in range(BUCKETS_PER_BLOCK)
        if list(data[index * VALUES_PER_BUCKET : (index + 1) * VALUES_PER_BUCKET]) != empty
    ]


async def test_the_wall_clock_set_back_an_hour_keeps_what_was_recorded_in_that_hour(tmp_path: Path) -> None:
    """An outside audit: the clock stepped forward an hour and back into the same 10-minute block made the
    hub start that block anew and write it over the stored one: 90 s recorded, 0 left. The same at the 60 s
    tier: the minutes re-lived were dropped as late data for the hour just finished."""
    state = StateStore()
    put_receiver(state, "shure-A", channels=1, battery_percent=80, rf_dbm=-60.0, audio_dbfs=-30.0)
    clock = SimulatedClock(start=MIDNIGHT)
    store = await open_simulated(tmp_path, state, clock)
    try:
        run(store, clock, 90)  # buckets 0..80 of the block starting at midnight
        clock.set_wall(3600)  # NTP steps forward an hour
        run(store, clock, 30)
        clock.set_wall(-3600)  # and it is set back: the clock re-lives 00:02:00..00:03:00
        run(store, clock, 60)
        state.set_online("shure-A", False)
        store.step()
        recorded = [*range(0, 90, 10), *range(120, 180, 10)]
        assert await offsets(store, "shure-A", MIDNIGHT, MIDNIGHT + 600) == recorded
        clock.advance(700)  # the re-lived block ends and is rolled up into the minutes
        store.step()
        store.step()
        assert await offsets(store, "shure-A", MIDNIGHT, MIDNIGHT + 3600, step=60) == [0, 60, 120]
    finally:
        await store.close()
    again = await open_simulated(tmp_path, state, clock)
    try:
        assert await offsets(again, "shure-A", MIDNIGHT, MIDNIGHT + 600) == recorded, "stored, not only shown"
        assert await offsets(again, "shure-A", MIDNIGHT, MIDNIGHT + 3600, step=60) == [0, 60, 120]
    finally:
        await again.close()


async def test_a_small_back_step_records_on_and_a_bucket_recorded_first_is_kept() -> None:
    """The clock set back two minutes across a block boundary: the old code dropped every sample as late
    data for the block just finished until the clock was back where it had been. Now the earlier block takes
    the buckets it did not have; a bucket it had keeps its first value (the re-lived one is a second sample
    of a time already recorded)."""
    state = StateStore()
    put_receiver(state, "shure-A", channels=1, battery_percent=80, rf_dbm=-60.0, audio_dbfs=-30.0)
    clock = SimulatedClock(start=MIDNIGHT + 570)  # 30 s before the block at 00:10
    store = await open_simulated(IN_MEMORY, state, clock)
    try:
        run(store, clock, 60)  # 00:09:30..00:10:30
        clock.set_wall(-120)  # back to 00:08:30
        state.update_channel("shure-A", 1, {"rf_dbm": -70.0})
        run(store, clock, 150)  # 00:08:30..00:11:00
        store.step()
        points = await store.history.query("shure-A", 1, MIDNIGHT + 500, MIDNIGHT + 700)
        rf = {int(p.t - MIDNIGHT): p.rf_dbm_avg for p in points}
        assert rf == {
            **{at: -70 for at in range(510, 570, 10)},  # re-lived, never recorded before: taken
            **{at: -60 for at in (570, 580, 590, 600, 610, 620)},  # recorded first at -60: kept
            **{at: -70 for at in range(630, 660, 10)},  # new again
        }, rf
    finally:
        await store.close()


async def test_a_forward_step_of_years_deletes_nothing_and_sweeps_run_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: the clock stepped forward three years (a bad NTP/GPS date, a typo in ``date -s``)
    deleted every stored history block within a tick, the series of a device that is gone with them, and at
    the next hourly sweep the whole audit log and every cleared alert. Now a deletion cutoff advances no
    faster than monotonic time between sweeps: the step deletes nothing until that much real time passed."""
    state = StateStore()
    put_receiver(state, "shure-A", channels=1, battery_percent=80, rf_dbm=-60.0, audio_dbfs=-30.0)
    clock = SimulatedClock(start=MIDNIGHT)
    store = await open_simulated(tmp_path, state, clock)
    try:
        gone = store.history.series("shure-gone", 1)  # a device removed since: its history is kept a week
        for k in range(30):
            store.history.add_bucket(gone, int(MIDNIGHT) - 3600 + 10 * k, encode_bucket([50] * 3 + [None] * 6))
        store.audit.record("rest", "performer.create", "performer:1", after={"name": "Alice"})
        store.db.submit(
            "INSERT INTO alerts (kind, device_id, channel, severity, message, raised_at, cleared_at) "
            "VALUES ('low_battery', 'shure-A', 1, 'warning', 'low', ?, ?)",
            (MIDNIGHT - 2 * 86400, MIDNIGHT - 86400),
        )
        run(store, clock, 60)
        with caplog.at_level(logging.WARNING, logger="hub.persistence"):
            clock.set_wall(YEARS_3)
            run(store, clock, 10)
            clock.advance(3600)  # an hour of real time at the wrong date: every sweep is due
            run(store, clock, 10)
            clock.set_wall(-YEARS_3)
            run(store, clock, 10)
        assert await offsets(store, "shure-A", MIDNIGHT, MIDNIGHT + 600) == list(range(0, 60, 10))
        assert len(await offsets(store, "shure-gone", MIDNIGHT - 3600, MIDNIGHT)) == 30
        assert len(await store.audit.query()) == 1
        assert (await store.db.fetchall("SELECT count(*) FROM alerts WHERE cleared_at IS NOT NULL"))[0][0] == 1
        steps = [r.getMessage() for r in caplog.records if "wall clock" in r.getMessage()]
        assert len(steps) == 2 and "forward" in steps[0] and "back" in steps[1], steps
    finally:
        await store.close()


async def test_retention_still_deletes_as_real_time_passes_after_a_forward_step() -> None:
    """The cutoff follows monotonic time after a wrong forward step: what is older than the retention by
    real time is deleted as ever."""
    clock = SimulatedClock(start=MIDNIGHT)
    store = await open_simulated(IN_MEMORY, clock=clock)
    try:
        series = store.history.series("shure-gone", 1)
        store.history.add_bucket(series, int(MIDNIGHT), encode_bucket([50] * 3 + [None] * 6))
        store.step()
        clock.set_wall(YEARS_3)
        for _ in range(8 * 24):  # eight days, a sweep an hour
            clock.advance(3600)
            store.step()
        assert (await store.db.fetchall("SELECT count(*) FROM history_blocks"))[0][0] == 0
    finally:
        await store.close()


async def test_open_blocks_are_written_every_minute_after_the_clock_is_set_back(tmp_path: Path) -> None:
    """An outside audit: after the clock was set back, the open block's flush (every 60 s) was parked until
    the wall clock reached its old time again, so a crash lost everything recorded since the step."""
    state = StateStore()
    put_receiver(state, "shure-A", channels=1, battery_percent=80, rf_dbm=-60.0, audio_dbfs=-30.0)
    clock = SimulatedClock(start=MIDNIGHT)
    store = await open_simulated(tmp_path, state, clock)
    try:
        run(store, clock, 30)
        clock.set_wall(-3600)  # 23:00:30 the day before
        run(store, clock, 150)
        on_disk = await stored_buckets(store, 10, MIDNIGHT - 3600)
        assert len(on_disk) >= 6, f"written by the flushes since the step: {on_disk}"
    finally:
        await store.close()


async def test_the_audit_sweep_deletes_nothing_on_a_forward_step() -> None:
    clock = SimulatedClock(start=MIDNIGHT)
    store = await open_simulated(IN_MEMORY, clock=clock, sweep_every_s=60)
    try:
        store.audit.record("rest", "performer.create", "performer:1")
        store.step()
        clock.set_wall(YEARS_3)
        clock.advance(61)
        store.step()
        assert len(await store.audit.query()) == 1
        clock.set_wall(-YEARS_3)
        clock.advance(91 * 86400)  # real time passes: the entry is older than the 90 days kept
        store.step()
        assert await store.audit.query() == []
    finally:
        await store.close()


FAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)


def history_offsets(hub: RunningHub, channel_id: str, start: float) -> list[int]:
    status, body = hub.get(f"/api/v1/channels/{channel_id}/history?since={start}&until={start + 600}&step=10")
    assert status == 200, body
    return [int(point["t"] - start) for point in json.loads(body)["items"]]


def test_wmhub_run_keeps_its_history_across_clock_steps_of_years(tmp_path: Path) -> None:
    """From the outside: ``wmhub run`` under libfaketime records a receiver, its wall clock is stepped three
    years forward and back into the same 10-minute block (monotonic time untouched, as with NTP or
    ``date -s``). Before: the forward step deleted every stored block and the back step started the block
    anew, so none of the buckets recorded first were left."""
    if FAKETIME is None:
        if os.environ.get("CI") == "true":
            pytest.fail("libfaketime is not installed; CI needs it (scripts/install-system-deps.sh installs faketime)")
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    offset_file = tmp_path / "faketime"
    real = int(time.time())
    offset = 15 - real % 600  # the hub's clock starts 15 s into a 10-minute block
    offset_file.write_text(f"{offset:+d}\n")
    env = {
        "LD_PRELOAD": FAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    block = real + offset - 15
    with simulated_receivers(1) as urls, running_hub(tmp_path / "data", "--device", urls[0], env=env) as hub:
        deadline = time.monotonic() + 40
        channel_id, first = "", []
        while len(first) < 2:
            assert time.monotonic() < deadline, f"no history recorded: {first}"
            time.sleep(1)
            devices = json.loads(hub.get("/api/v1/devices")[1])["items"]
            if devices and devices[0]["online"]:
                channel_id = f"{devices[0]['id']}:1"
                first = history_offsets(hub, channel_id, block)
        offset_file.write_text(f"{offset + YEARS_3:+d}\n")
        time.sleep(4)  # a few ticks three years ahead
        offset_file.write_text(f"{offset:+d}\n")
        time.sleep(12)  # a bucket or two re-lived in the same block
        after = history_offsets(hub, channel_id, block)
        stderr = hub.stop()
    assert set(first) <= set(after), f"recorded first {first}, after the steps {after}"
    assert len(after) > len(first), after
    assert "wall clock stepped" in stderr, stderr[-2000:]
    assert (tmp_path / "data" / DATABASE_FILE).exists()
