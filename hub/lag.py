"""The hub's own "cannot keep up" signal: how late its event loop runs.

Every driver, the MQTT client and the web server share one asyncio loop. When more work arrives than one
core does (samples from every receiver, ten a second per channel), the loop falls behind: a timer due in
250 ms fires later, and every sample waits in its socket buffer about as long before it is merged. The
timer's lateness is therefore the age samples have when the hub gets to them; it is exported as a metric
and, when it passes ``late_after_s``, logged as a warning, so a saturated hub never serves stale data
without saying so.
"""

from __future__ import annotations

import asyncio
import logging

from hub.background import BackgroundLoop

log = logging.getLogger("hub")


class LoopMonitor(BackgroundLoop):
    """``start()`` from inside the loop; read ``lag_s``, ``max_lag_s``, ``late`` and ``ticks``; ``await stop()``."""

    name = "event loop monitor"

    def __init__(self, interval_s: float = 0.25, late_after_s: float = 0.1, warn_every_s: float = 60.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.late_after_s = late_after_s
        self.warn_every_s = warn_every_s
        self.lag_s = 0.0
        self.max_lag_s = 0.0
        self.late = 0
        self.ticks = 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_warning = -self.warn_every_s
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            self.ticks += 1
            self.lag_s = max(0.0, now - due)
            self.max_lag_s = max(self.max_lag_s, self.lag_s)
            if self.lag_s > self.late_after_s:
                self.late += 1
                if now - last_warning >= self.warn_every_s:
                    last_warning = now
                    log.warning(
                        "the hub is not keeping up: its event loop runs %.0f ms late, so device data is that "
                        "old when merged (%d late ticks so far). A plugin that blocks the loop is named in a "
                        "warning of its own; without one, fewer devices or a slower meter rate help",
                        self.lag_s * 1000,
                        self.late,
                    )
