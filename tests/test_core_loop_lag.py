"""A hub whose event loop falls behind says so: the lag is measured, counted and logged."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from hub.app import Hub
from hub.lag import LoopMonitor
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.fault_harness import hub_config


def hog_the_loop(seconds: float) -> None:
    """Keep the event loop busy, as too many devices would: nothing else runs meanwhile."""
    time.sleep(seconds)


async def test_a_blocked_loop_is_reported_late_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    monitor = LoopMonitor(interval_s=0.05, late_after_s=0.1)
    monitor.start()
    try:
        await eventually(lambda: monitor.ticks >= 2, 2, "the monitor ticking")
        assert monitor.late == 0 and monitor.lag_s < 0.1
        with caplog.at_level(logging.WARNING, logger="hub"):
            hog_the_loop(0.3)
            await eventually(lambda: monitor.late >= 1, 2, "the late tick counted")
        assert monitor.max_lag_s >= 0.2
        assert any("not keeping up" in record.getMessage() for record in caplog.records)
    finally:
        await monitor.stop()


class SlowStartingEdge:
    """An edge whose start holds the loop as the web edge's does (it builds the OpenAPI document, 0.4-0.6 s)."""

    name = "slow start"

    async def start(self) -> None:
        hog_the_loop(0.5)

    async def stop(self) -> None:
        pass


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
