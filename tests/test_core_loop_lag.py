"""A hub whose event loop falls behind says so: the lag is measured, counted and logged."""

from __future__ import annotations

import logging
import time

import pytest

from hub.lag import LoopMonitor
from hub.testing import eventually


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
