"""A hub whose event loop falls behind says so: the lag is measured, counted and logged."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from pathlib import Path

import pytest

from hub.app import Hub
from hub.lag import IN_THE_LOOP_ITSELF, LoopMonitor, where_held
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.fault_harness import hub_config


def hog_the_loop(seconds: float) -> None:
    """Keep the event loop busy, as too many devices would: nothing else runs meanwhile."""
    time.sleep(seconds)


async def test_a_blocked_loop_is_reported_late_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    # every late tick warns: one of the machine's own before the hog is no answer
    monitor = LoopMonitor(interval_s=0.05, late_after_s=0.1, warn_every_s=0)
    monitor.start()
    try:
        await eventually(lambda: monitor.ticks >= 2, 2, "the monitor ticking")
        assert monitor.late == 0 and monitor.lag_s < 0.1
        with caplog.at_level(logging.WARNING, logger="hub"):
            hog_the_loop(0.3)
            await eventually(lambda: monitor.late >= 1, 2, "the late tick counted")
        assert monitor.max_lag_s >= 0.2
        shown_where = re.compile(r"most often at tests/test_core_loop_lag\.py:\d+ in hog_the_loop \(\d+ of \d+ looks\)")
        assert [r for r in caplog.records if "not keeping up" in r.getMessage() and shown_where.search(r.getMessage())]
    finally:
        await monitor.stop()


def hold_the_loop_watching(monitor: LoopMonitor, seconds: float) -> list[str]:
    """Block the event loop as plugin code that never awaits would, reading meanwhile what the monitor says."""
    said: list[str] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if (held := monitor.held()) is not None:
            said.append(held)
        time.sleep(0.05)
    return said


async def test_a_loop_held_for_good_is_said_while_it_lasts_naming_the_code_that_holds_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A plugin that never returned to the loop left the hub silent: the late-timer warning waits for a timer
    that never fires, and the slow-call warning for a call that never ends."""
    monitor = LoopMonitor(interval_s=0.05, held_after_s=0.3)
    monitor.start()
    try:
        await eventually(lambda: monitor.ticks >= 2, 2, "the monitor ticking")
        with caplog.at_level(logging.WARNING, logger="hub"):
            said = hold_the_loop_watching(monitor, 1.2)
            await eventually(lambda: monitor.held() is None and monitor.ticks >= 4, 2, "the loop turning again")
            await eventually(
                lambda: any("turns again" in record.getMessage() for record in caplog.records), 3, "the hold's end"
            )
        assert said, "the monitor never said the loop was held"
        assert re.fullmatch(r"held for \d+ s at tests/test_core_loop_lag\.py:\d+ in hold_the_loop_watching", said[-1])
        warnings = [record.getMessage() for record in caplog.records if "has not turned" in record.getMessage()]
        assert len(warnings) == 1, warnings
        assert "held at tests/test_core_loop_lag.py:" in warnings[0] and "in hold_the_loop_watching" in warnings[0]
    finally:
        await monitor.stop()
    assert monitor.held() is None


class SlowStartingEdge:
    """An edge whose start holds the loop as the web edge's does (it builds the OpenAPI document, 0.4-0.6 s)."""

    name = "slow start"

    async def start(self) -> None:
        hog_the_loop(0.5)

    async def stop(self) -> None:
        pass


@pytest.mark.alone("the loop's lateness after a start, which other tests' processes beside it can cause")
async def test_start_up_work_is_not_taken_for_the_hub_falling_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: nearly every start, with no device at all, logged "the hub is not keeping up": the
    monitor ran while the hub started, and counted its one-off start-up work as lag."""
    hub = Hub(hub_config(tmp_path, []), PluginHost(), edges=lambda _hub: [SlowStartingEdge()])
    with caplog.at_level(logging.WARNING, logger="hub"):
        async with hub:
            await eventually(lambda: hub.loop_monitor.ticks >= 2, 5, "the monitor ticking after the start")
            assert hub.loop_monitor.late == 0 and hub.loop_monitor.max_lag_s < 0.1
    assert not [record for record in caplog.records if "not keeping up" in record.getMessage()]


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_a_thread_waiting_in_its_event_loop_is_said_to_be_in_the_loop_itself(runner: str) -> None:
    """An outside review: with nothing but the loop on its thread's stack (a hub stopped by Ctrl-Z and continued,
    its watch waking first), the place named was uvloop's runner, `uvloop/__init__.py:92 in run`, as if it were
    code holding the loop; on asyncio's own loop it would have been the function that runs the loop."""
    run = asyncio.run if runner == "asyncio" else pytest.importorskip("uvloop").run
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
    waiting = threading.Event()

    async def wait_for_the_end() -> None:
        end = asyncio.get_running_loop().create_future()
        running.append((asyncio.get_running_loop(), end))
        waiting.set()
        await end

    def runs_the_loop() -> None:  # outside Python's library, as the hub's own _run_forever
        run(wait_for_the_end())

    thread = threading.Thread(target=runs_the_loop)
    thread.start()
    try:
        assert waiting.wait(5)
        seen = set()
        deadline = time.monotonic() + 5
        while IN_THE_LOOP_ITSELF not in seen and time.monotonic() < deadline:
            seen.add(where_held(thread.ident or 0))  # the coroutine may not have suspended yet at the first looks
            time.sleep(0.01)
        assert seen <= {IN_THE_LOOP_ITSELF} | {place for place in seen if "in wait_for_the_end" in place}, seen
        assert IN_THE_LOOP_ITSELF in seen, seen
    finally:
        for loop, end in running:
            loop.call_soon_threadsafe(end.set_result, None)
        thread.join(5)
