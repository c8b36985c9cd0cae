"""The hub's own "cannot keep up" signal: how late its event loop runs.

Every driver, the MQTT client and the web server share one asyncio loop. When more work arrives than one
core does (samples from every receiver, ten a second per channel), the loop falls behind: a timer due in
250 ms fires later, and every sample waits in its socket buffer about as long before it is merged. The
timer's lateness is therefore the age samples have when the hub gets to them; it is exported as a metric
and, when it passes ``late_after_s``, logged as a warning, so a saturated hub never serves stale data
without saying so.

A thread of the monitor's own, which runs while the loop does not, looks where the loop's thread is while a
tick is overdue: the warning names the busiest place (plugin code the hub does not call itself, a reader task
or a protocol callback, is timed nowhere else). A loop held for good (plugin code that never returns) fires
no timer at all: that thread says so while it lasts, and where. A process stopped whole (Ctrl-Z, SIGSTOP,
``docker pause``) stops that thread too: it wakes far later than it asked, says the process did not run, and
neither the stop nor the tick it made late is taken for the loop held or falling behind.
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import logging
import os
import sys
import sysconfig
import threading
import time
from collections import Counter
from types import CodeType, FrameType

from hub.background import BackgroundLoop

log = logging.getLogger("hub")

# A loop that has not turned for this long is held, not late: every device, MQTT and the web server wait.
HELD_AFTER_S = 10.0
# How often the watch looks at a loop whose tick is overdue: a hold that makes a tick late enough for a warning
# (100 ms) is looked at at least once.
LOOK_EVERY_S = 0.05
# Distinct places counted between two warnings (places are code lines: a bound that should never be met).
MAX_PLACES = 64
# The watch's wait ending this much later than it asked, with the process's threads idle meanwhile: the process
# did not run (stopped by a signal, a paused container or cgroup), the loop no more than the watch.
OVERSLEPT_S = 1.0
# Where the loop's thread is when no Python code of the hub's or a plugin's runs on it, only the loop's own.
IN_THE_LOOP_ITSELF = "in the event loop itself (no Python code of the hub's or a plugin's)"


class LoopMonitor(BackgroundLoop):
    """``start()`` from inside the loop; read ``lag_s``, ``max_lag_s``, ``late`` and ``ticks``; ``await stop()``."""

    name = "event loop monitor"

    def __init__(
        self,
        interval_s: float = 0.25,
        late_after_s: float = 0.1,
        warn_every_s: float = 60.0,
        held_after_s: float = HELD_AFTER_S,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.late_after_s = late_after_s
        self.warn_every_s = warn_every_s
        self.lag_s = 0.0
        self.max_lag_s = 0.0
        self.late = 0
        self.ticks = 0
        self.ticked_at = time.monotonic()
        self._held_watch = HeldLoopWatch(self, held_after_s)

    def start(self) -> None:
        if self._task is None:
            # measured from here, not from the hub's construction: a start that awaits longer than a hold (two
            # slow demo fleets, a slow disk) turns the loop all along, and a hub may be started again
            self.ticked_at = time.monotonic()
        super().start()
        self._held_watch.start()

    async def stop(self) -> None:
        self._held_watch.stop()
        await super().stop()

    def held(self) -> str | None:
        """How long the loop has not turned and where its thread is, once that is longer than ``held_after_s``;
        else None. Read from any thread (a stop bound reads it while the loop is held)."""
        return self._held_watch.held()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_warning = -self.warn_every_s
        while True:
            due = loop.time() + self.interval_s
            stopped_s = self._held_watch.stopped_s()
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            self.ticks += 1
            self.ticked_at = time.monotonic()
            self.lag_s = max(0.0, now - due)
            self.max_lag_s = max(self.max_lag_s, self.lag_s)
            # the process stopped meanwhile (Ctrl-Z, docker pause) makes the tick that late: the hub is not behind
            stopped_s = self._held_watch.stopped_s() - stopped_s
            if self.lag_s - stopped_s > self.late_after_s:
                self.late += 1
                if now - last_warning >= self.warn_every_s:
                    last_warning = now
                    log.warning(
                        "the hub is not keeping up: its event loop runs %.0f ms late, so device data is that "
                        "old when merged (%d late ticks so far)%s",
                        self.lag_s * 1000,
                        self.late,
                        self._held_watch.busiest_place(),
                    )


class HeldLoopWatch:
    """Looks at a :class:`LoopMonitor`'s ticks from a thread. While a tick is overdue it notes where the loop's
    thread is (the busiest place goes into the monitor's "not keeping up" warning: a plugin's reader task or
    protocol callback is no hook call the hub times); a loop without a tick for ``held_after_s`` is logged once
    per hold with that place, and its end once the loop turns again. Its own wait ending far later than it asked
    while no thread ran means the whole process was stopped: that is said instead, and the hold measured anew."""

    def __init__(self, monitor: LoopMonitor, held_after_s: float) -> None:
        self._monitor = monitor
        self._held_after_s = held_after_s
        self._loop_thread_id = threading.get_ident()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._held_at: str | None = None
        self._held_since = 0.0
        self._held_tick = 0.0  # the monitor's ticked_at when the hold was said: a tick since ends it
        self._places: Counter[str] = Counter()
        self._places_lock = threading.Lock()
        # the process seen stopped: in all, and the wait under way (began, asked for, process CPU time then)
        self._stopped_s = 0.0
        self._waiting: tuple[float, float, float] | None = None
        self._stopped_lock = threading.Lock()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._loop_thread_id = threading.get_ident()
        self._stopped.clear()
        self._held_at = None
        self._thread = threading.Thread(target=self._watch, name="wmhub held loop watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopped.set()
            thread.join()

    def held(self) -> str | None:
        held_at = self._held_at
        if held_at is None:
            return None
        return f"held for {time.monotonic() - self._held_since:.0f} s {held_at}"

    def stopped_s(self) -> float:
        """How long in all the watch has seen the process stopped, a stop it has not woken from yet included (the
        loop's thread may run first once the process goes on). Read from any thread."""
        with self._stopped_lock:
            return self._stopped_s + self._stopped_while_waiting(time.monotonic())

    def busiest_place(self) -> str:
        """Where the loop's thread was most often while a tick was overdue, since the last call, as a clause of
        the "not keeping up" warning."""
        with self._places_lock:
            places, self._places = self._places, Counter()
        if not places:
            return ": fewer devices or a slower meter rate help"
        [(place, seen)] = places.most_common(1)
        if place == IN_THE_LOOP_ITSELF:  # a loop busy with I/O in its own code, or a machine short of CPU
            return (
                f"; while it ran late its thread was most often {place} ({seen} of {places.total()} looks): "
                "a machine short of CPU, fewer devices or a slower meter rate help"
            )
        return (
            f"; while it ran late its thread was most often {place} ({seen} of {places.total()} looks): plugin "
            "code there must await, never block; hub code there means fewer devices or a slower meter rate"
        )

    def _watch(self) -> None:
        monitor = self._monitor
        look_every_s = min(LOOK_EVERY_S, self._held_after_s / 4)
        # a loop on time is looked at once a tick, half the lateness worth a warning after the tick is due
        grace_s = monitor.late_after_s / 2
        wait_s = look_every_s
        resumed_at = 0.0  # when the process last went on after a stop: no hold is measured across one
        while not self._wait(wait_s):
            ticked_at = monitor.ticked_at
            now = time.monotonic()
            with self._stopped_lock:  # the wait's oversleep moves into the total at once: counted once
                stopped_s = self._stopped_while_waiting(now)
                self._stopped_s += stopped_s
                self._waiting = None
            if stopped_s:
                resumed_at = now
                log.warning(
                    "the hub's process did not run for %.0f s (stopped: Ctrl-Z, SIGSTOP, docker pause): devices, "
                    "MQTT and the web server waited meanwhile",
                    stopped_s,
                )
            if self._held_at is not None and ticked_at != self._held_tick:
                log.warning("the event loop turns again after %.1f s held", ticked_at - self._held_since)
                self._held_at = None
            due_in_s = ticked_at + monitor.interval_s + grace_s - now
            if due_in_s > 0:  # the monitor's next tick is not overdue yet
                wait_s = due_in_s
                continue
            wait_s = look_every_s
            place = where_held(self._loop_thread_id)
            with self._places_lock:
                if place in self._places or len(self._places) < MAX_PLACES:
                    self._places[place] += 1
            since = max(ticked_at, resumed_at)
            if self._held_at is None and now - since >= self._held_after_s:
                self._held_at, self._held_since, self._held_tick = place, since, ticked_at
                log.warning(
                    "the event loop has not turned for %.0f s, held %s: every device, MQTT and the web server "
                    "wait until it returns (plugin code must await I/O, never block)",
                    now - since,
                    place,
                )

    def _wait(self, wait_s: float) -> bool:
        """Wait ``wait_s`` or until stopped (True), noting the wait for :meth:`_stopped_while_waiting`."""
        with self._stopped_lock:
            self._waiting = (time.monotonic(), wait_s, time.process_time())
        return self._stopped.wait(wait_s)

    def _stopped_while_waiting(self, now: float) -> float:
        """How long the wait under way (or just over) has overslept for the process being stopped, else 0. A
        thread still running meanwhile (plugin code in a C call that keeps the GIL: this thread cannot wake
        either, but the process runs) is no stop. Called with ``_stopped_lock`` held."""
        if self._waiting is None:
            return 0.0
        began, asked_s, cpu_then = self._waiting
        overslept_s = now - began - asked_s
        if overslept_s < OVERSLEPT_S or time.process_time() - cpu_then > overslept_s / 2:
            return 0.0
        return overslept_s


_LIBRARY_PATHS = tuple({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
_SITE_PACKAGES = f"{os.sep}site-packages{os.sep}"


def where_held(thread_id: int) -> str:
    """Where a thread is (another thread's: one's own stack is the look itself), as :func:`place_of` says it."""
    return place_of(sys._current_frames().get(thread_id))


def place_of(frame: FrameType | None) -> str:
    """The innermost place on the stack down from ``frame`` outside Python's own library: the code that called
    the sleep or the blocking read, not the read. Code running on an event loop is called by the loop, never
    by what runs the loop: once the loop's own frames are reached (uvloop's run, asyncio's runner and each turn
    of its loop), the thread is in the loop itself, waiting for I/O or running a callback of its own C code."""
    innermost = frame
    while frame is not None:
        if _runs_the_loop(frame.f_code):
            return IN_THE_LOOP_ITSELF
        if not _in_python_library(frame.f_code.co_filename):
            break
        frame = frame.f_back
    shown = frame or innermost
    if shown is None:
        return "(the thread has ended)"
    return f"at {_short(shown.f_code.co_filename)}:{shown.f_lineno} in {shown.f_code.co_name}"


# the frames that run asyncio's loop (asyncio.run, its Runner, the loop's run and each turn of it) and uvloop's
# (its run and the coroutine it wraps the main one in: the loop itself is C code, with no frames)
_LOOP_RUNNING_CODE = frozenset(
    function.__code__
    for function in (
        asyncio.runners.run,
        asyncio.runners.Runner.run,
        asyncio.BaseEventLoop.run_until_complete,
        asyncio.BaseEventLoop.run_forever,
        getattr(asyncio.BaseEventLoop, "_run_once", asyncio.BaseEventLoop.run_forever),  # private: may go
    )
)
_UVLOOP_RUNNER = f"{os.sep}uvloop{os.sep}__init__.py"


def _runs_the_loop(code: CodeType) -> bool:
    return code in _LOOP_RUNNING_CODE or code.co_filename.endswith(_UVLOOP_RUNNER)


def _in_python_library(filename: str) -> bool:
    # site-packages may sit under the standard library's directory (a Python installed without a venv)
    if filename.startswith("<"):  # a frozen module of the import system
        return True
    return filename.startswith(_LIBRARY_PATHS) and _SITE_PACKAGES not in filename


def _short(filename: str) -> str:
    """A file as a user reads it: from the package down when installed, else from the working directory."""
    if _SITE_PACKAGES in filename:
        return filename.rsplit(_SITE_PACKAGES, 1)[1]
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith(os.pardir) else relative
