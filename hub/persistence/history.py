"""Per-channel history of battery, RF and audio: min/avg/max per bucket, downsampled as it ages.

Storage is by block: one row holds 60 consecutive buckets of one channel at one resolution (``step``),
so a week of 100 channels is tens of thousands of small rows, not millions. Each bucket is 9 signed
bytes (min, avg, max of battery level 0-100, RF dBm and audio dBFS, in whole units: enough for a graph
and half the size of tenths); a missing value is -128. The block being filled lives in memory and is
written every ``open_block_flush_s``; a finished block is written once and rolled up into the next,
coarser tier. Blocks older than a tier's ``keep_s`` are deleted, and with the last block of a channel
whose device is gone, its series id. History writes are the ones the database drops first when the disk
fails.

A bucket once recorded is kept: the wall clock set back (an NTP step, a Pi without an RTC back at its last
saved time) re-lives time that may be stored, and a block opened for such a time is merged into the stored
row, its buckets filling only those the row lacks. Flushes and sweeps run on the monotonic clock, and a
sweep's cutoff advances no faster than monotonic time (:class:`~hub.clock.SteadyWall`): a wall clock stepped
years ahead deletes nothing.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from hub.clock import Clock, SteadyWall
from hub.persistence.battery import LEVEL_PER_BAR, RuntimeEstimate, estimate_runtime
from hub.persistence.buckets import (
    BUCKETS_PER_BLOCK,
    EMPTY_BUCKET,
    METRICS,
    MISSING,
    VALUES_PER_BUCKET,
    keep_recorded,
    merged,
)
from hub.persistence.db import Database, Statement, sql_function, upsert
from hub.records import HistoryPoint, InvalidInputError, NotFoundError
from hub.state import StateStore

_NEVER: Final = math.inf
# Blocks due for a sweep are finished this many at least, or a 1/_FINISH_OVER_TICKS share of a tier, per tick.
_FINISH_AT_ONCE: Final = 200
_FINISH_OVER_TICKS: Final = 8
# Series deleted by one statement (SQLite allowed 999 parameters before 3.32).
_DROP_AT_ONCE: Final = 500


def _never() -> bool:
    return False


_UPSERT_BLOCK = upsert("history_blocks", ("series_id", "step", "start"), ("data",))
sql_function("history_keep_recorded", 2, keep_recorded)
# A block that may be stored already (opened for a time the wall clock re-lives, or with no block of its
# series open) is merged into the stored row, never written over it.
_MERGE_BLOCK = (
    "INSERT INTO history_blocks (series_id, step, start, data) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (series_id, step, start) DO UPDATE SET data = history_keep_recorded(data, excluded.data)"
)


@dataclass(frozen=True)
class Tier:
    step_s: int
    keep_s: int

    @property
    def span_s(self) -> int:
        return self.step_s * BUCKETS_PER_BLOCK


@dataclass(frozen=True)
class HistorySettings:
    # each tier's step must divide the previous tier's block span: 10 s blocks span 600 s = 10 x 60 s
    tiers: tuple[Tier, ...] = (Tier(10, 24 * 3600), Tier(60, 7 * 24 * 3600))
    open_block_flush_s: float = 60.0
    retention_sweep_s: float = 3600.0
    estimate_lookback_s: float = 24 * 3600.0


def encode_bucket(summary: Sequence[float | None]) -> array[int]:
    """(battery min, avg, max, rf min, avg, max, audio min, avg, max) -> one stored bucket."""
    if len(summary) != VALUES_PER_BUCKET:
        raise InvalidInputError(f"a bucket has {VALUES_PER_BUCKET} values", got=len(summary))
    return array("b", [MISSING if value is None else max(-127, min(127, round(value))) for value in summary])


def _from_bytes(blob: bytes) -> array[int]:
    data = array("b")
    data.frombytes(blob)
    return data


class _Block:
    __slots__ = ("data", "dirty", "merge", "start")

    def __init__(self, start: int, data: array[int] | None = None, *, merge: bool = False) -> None:
        self.start = start
        self.data = data if data is not None else EMPTY_BUCKET * BUCKETS_PER_BLOCK
        self.dirty = data is None
        self.merge = merge  # the stored row may hold buckets this one lacks: written merged (_MERGE_BLOCK)


# A bucket's samples, flattened: battery, rf_dbm, audio_dbfs, battery, rf_dbm, ... A tuple per sample
# would be a container the garbage collector tracks: at 6,000 channels the young generation held 136,000
# of them at each collection (tuples reused from CPython's free list do not count towards its threshold),
# and each collection stopped the hub for 17-58 ms. Numbers and None are not tracked.
Samples = list[float | None]
# A bucket that is over and waits to be closed: (series id, start, samples); closing empties the samples.
_Finished = tuple[int, int, Samples]


class _Bucket:
    """One channel's bucket being filled. Taking a sample is one extend (it runs for every channel on
    every tick); the min/avg/max are worked out once, when the bucket is closed."""

    __slots__ = ("samples", "series_id", "start")

    def __init__(self, series_id: int, start: int) -> None:
        self.series_id = series_id
        self.start = start
        self.samples: Samples = []

    def finish(self) -> _Finished:
        return (self.series_id, self.start, self.samples)


def _summary(samples: Samples) -> list[float | None]:
    result: list[float | None] = []
    for metric in range(len(METRICS)):
        values = [value for value in samples[metric :: len(METRICS)] if value is not None]
        result += [min(values), sum(values) / len(values), max(values)] if values else [None, None, None]
    return result


def _rollup(data: array[int], group: int) -> list[array[int]]:
    """Summarise every ``group`` consecutive buckets of a block into one bucket of the next tier."""
    columns: list[list[int]] = []
    half = group // 2
    for base in range(0, VALUES_PER_BUCKET, 3):
        lows = data[base::VALUES_PER_BUCKET]
        avgs = data[base + 1 :: VALUES_PER_BUCKET]
        highs = data[base + 2 :: VALUES_PER_BUCKET]
        if MISSING not in avgs:
            columns.append(list(map(min, zip(*[iter(lows)] * group, strict=True))))
            columns.append([(total + half) // group for total in map(sum, zip(*[iter(avgs)] * group, strict=True))])
            columns.append(list(map(max, zip(*[iter(highs)] * group, strict=True))))
            continue
        low_column, avg_column, high_column = [], [], []
        for first in range(0, BUCKETS_PER_BLOCK, group):
            present = [i for i in range(first, first + group) if avgs[i] != MISSING]
            if present:
                low_column.append(min(lows[i] for i in present))
                avg_column.append((sum(avgs[i] for i in present) + len(present) // 2) // len(present))
                high_column.append(max(highs[i] for i in present))
            else:
                low_column.append(MISSING)
                avg_column.append(MISSING)
                high_column.append(MISSING)
        columns += [low_column, avg_column, high_column]
    return [array("b", bucket) for bucket in zip(*columns, strict=True)]


@dataclass(frozen=True)
class StoredHistory:
    """What history starts from: every channel's series id, each tier's newest block per series, and the
    highest series id any row names."""

    series: dict[tuple[str, int], int]
    open_blocks: list[dict[int, _Block]]
    last_series_id: int = 0

    @classmethod
    async def read(cls, db: Database, settings: HistorySettings) -> StoredHistory:
        series = {
            (row["device_id"], row["channel"]): row["id"]
            for row in await db.fetchall("SELECT id, device_id, channel FROM history_series")
        }
        # The newest block of every series and tier is open again, however old: if the hub stopped before
        # it was finished, finishing it now still rolls it up; if it was finished, doing it again changes
        # nothing (the coarser block it lands in is the newest one, loaded too).
        open_blocks: list[dict[int, _Block]] = [{} for _ in settings.tiers]
        level_of = {tier.step_s: level for level, tier in enumerate(settings.tiers)}
        rows = await db.fetchall(
            "SELECT b.series_id, b.step, b.start, b.data FROM history_blocks AS b JOIN "
            "(SELECT series_id, step, max(start) AS start FROM history_blocks GROUP BY series_id, step) "
            "USING (series_id, step, start)"
        )
        for row in rows:
            level = level_of.get(row["step"])
            if level is not None:
                open_blocks[level][row["series_id"]] = _Block(row["start"], _from_bytes(row["data"]))
        # Series are dropped, so the highest id may be gone: a block left under it (its deletion lost with a
        # failing disk) must not be taken for the history of the next series made
        newest_block = await db.fetchall("SELECT max(series_id) FROM history_blocks")
        last_series_id = max(max(series.values(), default=0), newest_block[0][0] or 0)
        return cls(series, open_blocks, last_series_id)


class History:
    """Feed it with :meth:`sample_slices` (all channels from the state store) and :meth:`advance_slices`
    (close due buckets), both run on every store tick; or directly with :meth:`add_bucket`.

    Every channel's bucket ends at the same moment, and closing one (summary, encoding, its block, maybe a
    rollup) costs far more than a sample. Closing them all in the tick after the boundary held the event
    loop for tens of milliseconds at thousands of channels, so a finished bucket waits in a queue and the
    queue is worked off evenly over the next half bucket. A finished block likewise waits for its
    channel's next bucket (or, for a channel that went quiet, a sweep a while later) rather than all
    blocks of a tier finishing in one tick."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        state: StateStore,
        settings: HistorySettings,
        stored: StoredHistory,
    ) -> None:
        series, open_blocks = stored.series, stored.open_blocks
        tiers = settings.tiers
        for finer, coarser in itertools.pairwise(tiers):
            if finer.span_s % coarser.step_s or coarser.step_s % finer.step_s:
                raise ValueError(f"tier step {coarser.step_s} s must divide {finer.span_s} s and be a multiple")
        self._db = db
        self._clock = clock
        self._state = state
        self.settings = settings
        self._series = series
        self._last_series_id = max(max(series.values(), default=0), stored.last_series_id)
        # per series whose blocks are all finished: when the retention sweep deletes the last of them
        self._expires: dict[int, float] = {}
        # the blocks refer to their series by id: a file replaced under the hub gets every id back, or the
        # next start would number series anew and put one channel's blocks under another
        db.hold(self.held, whole=("history_series",))
        self._open = open_blocks
        # per tier, the series that re-live time (the wall clock went back): the newest block start each had
        self._relived: list[dict[int, int]] = [{} for _ in tiers]
        self._step_span = [(tier.step_s, tier.span_s) for tier in tiers]
        step = tiers[0].step_s
        self._buckets: dict[tuple[str, int], _Bucket] = {}  # being filled, by channel
        self._next_quiet_check = 0.0  # when to look for buckets of channels no longer sampled
        self._closing: deque[_Finished] = deque()  # oldest first, each to be closed by its deadline
        self._close_within = step / 2
        self._last_advance: float | None = None
        # A finest-tier block is over when its span is; its channel's next bucket finishes it (spread over
        # the close queue), and a sweep ``grace`` after its end finishes those of channels that went quiet.
        # Coarser blocks are swept once the finer tier's sweep is done, a share per tick: finishing them
        # together keeps their rows together in the file, so the finer rows expire whole pages (written
        # between finer rows, a week of 100 channels took 28 MB instead of 20).
        self._grace = [2 * step + level * step for level in range(len(tiers))]
        self._next_finish = [
            min((block.start + tiers[level].span_s + self._grace[level] for block in blocks.values()), default=_NEVER)
            for level, blocks in enumerate(open_blocks)
        ]
        # flush and sweep on the monotonic clock: on the wall clock, a step back parked them for as long as
        # the step, and a step forward made the sweep delete by the new date
        self._deletion_time = SteadyWall(clock)
        monotonic = clock.monotonic()
        self._next_flush = monotonic + settings.open_block_flush_s
        self._next_sweep = monotonic

    def series(self, device_id: str, channel: int) -> int:
        """The id history uses for a channel (created on first use). A direct feed asks again after a quiet
        spell rather than keep it: the sweep drops the series of a device that is gone with its last block."""
        key = (device_id, channel)
        series_id = self._series.get(key)
        if series_id is None:
            self._last_series_id += 1
            series_id = self._series[key] = self._last_series_id
            self._db.submit(*_series_row(key, series_id))
        return series_id

    def held(self) -> Iterator[Statement]:
        """Every series id (:meth:`Database.hold`); the blocks are written by the next flush as ever."""
        return itertools.starmap(_series_row, self._series.items())

    # feeding

    def sample_slices(self, due: Callable[[], bool]) -> Iterator[None]:
        """Take one sample of every channel with a transmitter on an online device, yielding between devices
        whenever ``due()`` says so (a device removed meanwhile is not sampled)."""
        step = self.settings.tiers[0].step_s
        now = int(self._clock.now())
        start = now - now % step
        buckets = self._buckets
        devices = self._state.devices
        for device in list(devices.values()):
            if due():
                yield
            if not device.online or devices.get(device.id) is not device:
                continue
            device_id = device.id
            for channel in device.channels:
                if channel.tx_present is False:
                    continue
                battery: float | None = channel.battery_percent
                if battery is None and channel.battery_bars is not None:
                    battery = channel.battery_bars * LEVEL_PER_BAR
                rf_dbm, audio_dbfs = channel.rf_dbm, channel.audio_dbfs
                if battery is None and rf_dbm is None and audio_dbfs is None:
                    continue
                key = (device_id, channel.index)
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = _Bucket(self.series(device_id, channel.index), start)
                elif bucket.start != start:  # every channel at once at a boundary: keep it to a few operations
                    self._closing.append(bucket.finish())
                    bucket.start = start
                    bucket.samples = []
                bucket.samples += (battery, rf_dbm, audio_dbfs)
        if self._next_quiet_check == 0.0:
            self._next_quiet_check = start + step

    def add_bucket(self, series_id: int, start: int, bucket: array[int]) -> None:
        """Store one finished finest-tier bucket (from :func:`encode_bucket`), oldest first per series."""
        self._add(0, series_id, start, bucket)

    def advance(self) -> None:
        """:meth:`advance_slices` in one go."""
        for _ in self.advance_slices(_never):
            pass

    def advance_slices(self, due: Callable[[], bool]) -> Iterator[None]:
        """Close buckets and blocks whose time is over; write open blocks and sweep old ones when due.
        Cheap when nothing is due: it looks at no channel then. Yields whenever ``due()`` says so; a query
        in between may close a queued bucket and with it finish a block, so a block is finished only if it
        is still the open one."""
        now = self._clock.now()
        monotonic = self._clock.monotonic()
        step = self.settings.tiers[0].step_s
        quiet_check = self._next_quiet_check
        if quiet_check and (now >= quiet_check or now < quiet_check - step):  # due, or the clock went back
            # sample_slices() has moved every channel it saw this tick to a new bucket: what is left is quiet
            # (a bucket that starts later than now was left by a channel before the wall clock went back)
            for key, bucket in list(self._buckets.items()):
                if bucket.start + step <= now or bucket.start > now:
                    self._closing.append(bucket.finish())
                    del self._buckets[key]
                if due():
                    yield
            self._next_quiet_check = (int(now) - int(now) % step + step) if self._buckets else 0.0
        yield from self._work_off_closing(due, now, monotonic)
        for level, tier in enumerate(self.settings.tiers):
            if now >= self._next_finish[level]:
                blocks = self._open[level]
                over = tier.span_s + self._grace[level]
                due_blocks = [(series_id, block) for series_id, block in blocks.items() if block.start + over <= now]
                share = max(_FINISH_AT_ONCE, len(blocks) // _FINISH_OVER_TICKS)
                for series_id, block in due_blocks[:share]:
                    if blocks.get(series_id) is block:
                        self._finish(level, series_id, block)
                    if due():
                        yield
                if len(due_blocks) > share:
                    self._next_finish[level] = now
                    break  # a coarser block is finished only after every finer one that rolls up into it
                self._next_finish[level] = min((block.start + over for block in blocks.values()), default=_NEVER)
        if monotonic >= self._next_flush:
            self._next_flush = monotonic + self.settings.open_block_flush_s
            yield from self._write_open_blocks(due)
        if monotonic >= self._next_sweep:
            # what is old is judged by a wall time that advances no faster than real time between sweeps
            aged = self._deletion_time.now()
            for tier in self.settings.tiers:
                self._db.submit(
                    "DELETE FROM history_blocks WHERE step = ? AND start < ?",
                    (tier.step_s, aged - tier.keep_s - tier.span_s),
                    droppable=True,
                )
            self._next_sweep = monotonic + self.settings.retention_sweep_s
            yield from self._drop_expired_series(aged, due)

    def _drop_expired_series(self, now: float, due: Callable[[], bool]) -> Iterator[None]:
        """Forget the series of channels whose device is gone and whose last block the sweep has just
        deleted: device ids come and go (readdressed receivers, ids made of host and port, demo ports), and
        each kept its row, loaded at every start, for good. A device that is present keeps its series, quiet
        or not: its history answers empty rather than unknown. Should a dropped channel record again, it
        gets a new id, higher than any a block was written under. Each series is checked and dropped with no
        yield in between, and the drops are queued before each yield: a channel made again meanwhile writes
        its new row after the old one is deleted (one channel, one row)."""
        devices = self._state.devices
        expires = self._expires
        # no bucket is added to the queue while this tick runs; a query in between only empties some
        closing = {finished[0] for finished in self._closing if finished[2]}
        dropped: list[int] = []
        for key, series_id in list(self._series.items()):
            if (
                key[0] not in devices
                and expires.get(series_id, 0.0) < now
                and self._series.get(key) == series_id
                and key not in self._buckets
                and series_id not in closing
                and not any(series_id in blocks for blocks in self._open)
            ):
                del self._series[key]
                expires.pop(series_id, None)
                for relived in self._relived:
                    relived.pop(series_id, None)
                dropped.append(series_id)
            pause = due()
            if len(dropped) >= _DROP_AT_ONCE or (dropped and pause):
                self._delete_series(dropped)
                dropped = []
            if pause:
                yield
        if dropped:
            self._delete_series(dropped)

    def _delete_series(self, ids: list[int]) -> None:
        marks = ", ".join("?" * len(ids))
        # not droppable: the row must be gone before the channel's next one is written, or that insert is
        # ignored; the blocks go with it, also any at a step no tier has now, which no sweep would delete
        self._db.submit(f"DELETE FROM history_blocks WHERE series_id IN ({marks})", ids)  # nosec B608
        self._db.submit(f"DELETE FROM history_series WHERE id IN ({marks})", ids)  # nosec B608

    def flush(self) -> None:
        """Close the finished buckets still queued and queue a write of every block being filled (at close)."""
        self._close_queued(len(self._closing))
        for _ in self._write_open_blocks(_never):
            pass

    def _write_open_blocks(self, due: Callable[[], bool]) -> Iterator[None]:
        for level, tier in enumerate(self.settings.tiers):
            for series_id, block in list(self._open[level].items()):
                if block.dirty:  # a block finished in between was written then, and is clean
                    self._write(tier, series_id, block)
                if due():
                    yield

    def _work_off_closing(self, due: Callable[[], bool], now: float, monotonic: float) -> Iterator[None]:
        """Close queued buckets: all whose deadline has passed, then a share of the rest in proportion to
        the (monotonic) time since the last call over that and the time left until the oldest one's deadline.
        The time left is at most the half bucket a bucket is given: a deadline further ahead means the wall
        clock was set back, and waiting for it left the queue unclosed for as long as the step."""
        closing = self._closing
        last, self._last_advance = self._last_advance, monotonic
        step = self.settings.tiers[0].step_s
        while closing:
            left = min(closing[0][1] + step + self._close_within - now, self._close_within)
            if left <= 0 or last is None:
                share = None
            else:
                elapsed = monotonic - last
                share = math.ceil(len(closing) * elapsed / (elapsed + left))
            for _ in range(1 if share is None else share):
                self._close_queued(1)
                if due():
                    yield
            if share is not None:
                return

    def _close_queued(self, count: int) -> None:
        closing = self._closing
        for _ in range(min(count, len(closing))):
            finished = closing.popleft()
            if finished[2]:  # empty: a query closed it already
                self._close(finished)

    def _close(self, finished: _Finished) -> None:
        series_id, start, samples = finished
        self._add(0, series_id, start, encode_bucket(_summary(samples)))
        samples.clear()

    def _add(self, level: int, series_id: int, start: int, bucket: array[int]) -> None:
        step, span = self._step_span[level]  # this runs for every bucket of every channel: keep it lean
        block_start = start - start % span
        block = self._open[level].get(series_id)
        if block is None or block.start != block_start:
            block = self._open_block(level, series_id, block, block_start)
        offset = (start - block_start) // step * VALUES_PER_BUCKET
        end = offset + VALUES_PER_BUCKET
        data = block.data
        if data[offset:end] != EMPTY_BUCKET:
            return  # a time recorded already (the wall clock went back within the block): the first is kept
        data[offset:end] = bucket
        block.dirty = True

    def _open_block(self, level: int, series_id: int, block: _Block | None, block_start: int) -> _Block:
        """Finish the open block (if any) and open the one starting at ``block_start``. A block at or before
        the newest one the series has had re-lives time, forward or back (the wall clock went back: an NTP
        step, a Pi without an RTC back at its last saved time, a DST mistake); it and a block opened with none
        open (unknown what is stored) are merged into the stored row rather than written over it."""
        relived = self._relived[level]
        newest = relived.pop(series_id, None)
        if block is not None:
            newest = block.start if newest is None else max(newest, block.start)
            self._finish(level, series_id, block)
        if newest is not None and block_start < newest:
            relived[series_id] = newest
        block = self._open[level][series_id] = _Block(block_start, merge=newest is None or block_start <= newest)
        due = block_start + self._step_span[level][1] + self._grace[level]
        if due < self._next_finish[level]:
            self._next_finish[level] = due
        return block

    def _finish(self, level: int, series_id: int, block: _Block) -> None:
        tier = self.settings.tiers[level]
        del self._open[level][series_id]
        self._write(tier, series_id, block)
        expires = block.start + tier.span_s + tier.keep_s
        if expires > self._expires.get(series_id, 0.0):
            self._expires[series_id] = expires
        if level + 1 < len(self.settings.tiers):
            coarser = self.settings.tiers[level + 1]
            group = coarser.step_s // tier.step_s
            for index, summary in enumerate(_rollup(block.data, group)):
                if summary != EMPTY_BUCKET:
                    self._add(level + 1, series_id, block.start + index * coarser.step_s, summary)

    def _write(self, tier: Tier, series_id: int, block: _Block) -> None:
        block.dirty = False
        sql = _MERGE_BLOCK if block.merge else _UPSERT_BLOCK
        self._db.submit(sql, (series_id, tier.step_s, block.start, block.data.tobytes()), droppable=True)

    # reading

    async def query(
        self, device_id: str, channel: int, since: float, until: float | None = None, step: int | None = None
    ) -> list[HistoryPoint]:
        """Buckets of one channel between ``since`` and ``until`` (default now), oldest first, at ``step``
        seconds or else the finest tier that still holds ``since``."""
        series_id = self._series.get((device_id, channel))
        if series_id is None:
            raise NotFoundError(f"no history for {device_id} channel {channel}", device_id=device_id, channel=channel)
        until = self._clock.now() if until is None else until
        if since >= until:
            raise InvalidInputError("since must be before until", since=since, until=until)
        for finished in self._closing:  # what is finished is shown, closed or not yet
            if finished[0] == series_id and finished[2]:
                self._close(finished)
        level = self._tier_for(since, step)
        tier = self.settings.tiers[level]
        blocks = {
            row["start"]: _from_bytes(row["data"])
            for row in await self._read_blocks(series_id, tier, since - tier.span_s, until)
        }
        current = self._open[level].get(series_id)
        if current is not None:
            stored = blocks.get(current.start)
            blocks[current.start] = (
                _from_bytes(merged(stored.tobytes(), current.data.tobytes()))
                if current.merge and stored is not None
                else current.data
            )
        points = []
        for block_start in sorted(blocks):
            data = blocks[block_start]
            for index in range(BUCKETS_PER_BLOCK):
                at = block_start + index * tier.step_s
                if not since <= at < until:
                    continue
                values = data[index * VALUES_PER_BUCKET : (index + 1) * VALUES_PER_BUCKET]
                if values == EMPTY_BUCKET:
                    continue
                decoded = [None if value == MISSING else float(value) for value in values]
                points.append(HistoryPoint(t=at, step=tier.step_s, **dict(zip(_POINT_FIELDS, decoded, strict=True))))
        return points

    async def runtime_estimate(self, device_id: str, channel: int) -> RuntimeEstimate | None:
        """Minutes left for a bars-only transmitter from its drain history; None when the channel reports
        percent or runtime itself, or the drain has not shown enough yet."""
        device = self._state.get(device_id)
        found = device.channel(channel) if device is not None else None
        if found is None or found.battery_bars is None:
            return None
        if found.battery_percent is not None or found.battery_runtime_min is not None:
            return None
        now = self._clock.now()
        try:
            points = await self.query(device_id, channel, now - self.settings.estimate_lookback_s, now)
        except NotFoundError:
            return None
        samples = [(point.t, point.battery_avg) for point in points if point.battery_avg is not None]
        return estimate_runtime(samples, now)

    def _tier_for(self, since: float, step: int | None) -> int:
        tiers = self.settings.tiers
        if step is not None:
            for level, tier in enumerate(tiers):
                if tier.step_s == step:
                    return level
            raise InvalidInputError(f"step must be one of {', '.join(str(tier.step_s) for tier in tiers)} s", step=step)
        now = self._clock.now()
        for level, tier in enumerate(tiers):
            if since >= now - tier.keep_s:
                return level
        return len(tiers) - 1

    async def _read_blocks(self, series_id: int, tier: Tier, since: float, until: float) -> list[sqlite3.Row]:
        await self._db.sync()
        return await self._db.fetchall(
            "SELECT start, data FROM history_blocks WHERE series_id = ? AND step = ? AND start > ? "
            "AND start < ? ORDER BY start",
            (series_id, tier.step_s, since, until),
        )


_POINT_FIELDS: Final = tuple(f"{metric}_{part}" for metric in METRICS for part in ("min", "avg", "max"))


def _series_row(channel: tuple[str, int], series_id: int) -> Statement:
    return "INSERT OR IGNORE INTO history_series (id, device_id, channel) VALUES (?, ?, ?)", (series_id, *channel)
