"""The hub's one clock: real, or simulated so tests drive days of history, alert timers, the silence
watchdog, reconnect back-off, rate limits and subscription windows without waiting for them.

Every timed part of the core (the driver supervisor, a polling driver's interval, a device's rate limit, state
subscriptions, the metering release grace, discovery's back-off, the persistence ticker) reads time from the
:class:`Clock` the hub was built with; drivers find it on their sink, the edges (the MQTT reconnect
back-off) as ``HubService.clock``. I/O timeouts on sockets stay on the event loop's own time: they bound a
real peer."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall time: it is stored and shown)."""

    def monotonic(self) -> float:
        """Seconds that only ever go forward, for intervals (silence, refill, windows)."""

    async def sleep(self, seconds: float) -> None:
        """Wait until ``now()`` has advanced by ``seconds``."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SimulatedClock:
    """A clock that moves only when told to: :meth:`advance` wakes every sleeper whose time has come."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start
        self._wall_set_by = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now + self._wall_set_by

    def monotonic(self) -> float:
        return self._now

    def set_wall(self, seconds: float) -> None:
        """Set the wall clock ``seconds`` ahead (or back, negative), as an NTP step or a user does: monotonic
        time and the sleepers do not move."""
        self._wall_set_by += seconds

    async def sleep(self, seconds: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(seconds, 0.0), next(self._order), waiter))
        await waiter

    @property
    def sleeping(self) -> int:
        """How many sleepers wait for the clock (a test advances it once the code under test sleeps)."""
        return sum(not waiter.done() for _, _, waiter in self._sleepers)

    def advance(self, seconds: float) -> None:
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)


class SteadyWall:
    """Wall time for judging what is old enough to delete: the clock's ``now()``, except that between two
    readings it advances no more than monotonic time did. A wall clock stepped forward by mistake (a GPS or
    NTP source with a bad date, a typo in ``date -s``, a board reading a flat RTC cell) then deletes nothing
    until that much real time has passed; a step back is followed at once (deleting less is safe). It starts
    from ``now()`` when made: at start the wall clock is believed. After a step forward that was right (a Pi
    without an RTC that booted behind and is set by NTP), it stays behind by the step until the next start:
    what it deletes is deleted that much later."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._wall = clock.now()
        self._monotonic = clock.monotonic()

    def now(self) -> float:
        wall, monotonic = self._clock.now(), self._clock.monotonic()
        self._wall = min(wall, self._wall + max(monotonic - self._monotonic, 0.0))
        self._monotonic = monotonic
        return self._wall


class WallClockSteps:
    """Notices the wall clock stepping against the monotonic clock by more than ``tolerance_s`` between two
    looks (NTP slews a clock by at most half a millisecond a second: that is no step)."""

    def __init__(self, clock: Clock, tolerance_s: float = 60.0) -> None:
        self._clock = clock
        self._tolerance = tolerance_s
        self._offset = clock.now() - clock.monotonic()

    def step(self) -> float:
        """Seconds the wall clock stepped since the last look (negative: back), or 0.0."""
        offset = self._clock.now() - self._clock.monotonic()
        step, self._offset = offset - self._offset, offset
        return step if abs(step) > self._tolerance else 0.0


SYSTEM_CLOCK: Clock = SystemClock()
