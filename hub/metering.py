"""How fast receivers meter: as fast as the fastest consumer that is there needs, unless the user pins it.

Every meter sample a receiver sends costs the hub a read, a parse and a merge, whoever looks at it. So the
hub asks receivers for levels only as often as someone uses them: history and alerts need one sample a
second per channel (the idle rate); MQTT asks for its meters interval (``mqtt.meter_interval_s``); an open
board for its live interval. Each consumer states its need while it is there (:meth:`MeterDemand.need`)
and releases it when it goes; the rate is the smallest interval asked for. A need released is let go only
after a grace period, so a board reloaded or a browser reconnecting does not flip every receiver's rate.
``meter_rate_ms`` in the configuration pins the rate: then consumers change nothing (docs/performance.md,
"Demand-driven metering", says what each choice costs).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Final

from hub.clock import SYSTEM_CLOCK, Clock
from hub.model import NumberLimits

log = logging.getLogger("hub")

# history keeps per-10-s minimum, mean and maximum; alerts look for RF and audio dropouts over seconds
IDLE_RATE_MS: Final = 1000
FASTEST_RATE_MS: Final = 100  # the fastest rate the supported families take
RELEASE_GRACE_S: Final = 10.0


class MeterDemand:
    """The rate receivers should meter at; ``on_change(rate_ms)`` runs when it changes (never when pinned)."""

    def __init__(
        self,
        pinned_ms: int | None,
        on_change: Callable[[int], None],
        release_grace_s: float = RELEASE_GRACE_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.pinned_ms = pinned_ms
        self.release_grace_s = release_grace_s
        self._clock = clock  # the grace period runs on it
        self._on_change = on_change
        self._needs: dict[int, int] = {}
        self._next_token = 0
        self._applied = self._wanted()
        self._pending_release: asyncio.Task[None] | None = None

    @property
    def rate_ms(self) -> int:
        """The rate in force now."""
        return self._applied

    @property
    def look_interval_s(self) -> float:
        """How often the consumers there now look at levels, pinned or not: held meter readings
        (``DeviceSink.defer_meters``) are merged this often, so samples a pinned rate sends in between
        cost a read each and no decode."""
        return self._consumers_ms() / 1000

    def _consumers_ms(self) -> int:
        return max(FASTEST_RATE_MS, min([IDLE_RATE_MS, *self._needs.values()]))

    def _wanted(self) -> int:
        return self.pinned_ms if self.pinned_ms is not None else self._consumers_ms()

    def need(self, interval_ms: int) -> Callable[[], None]:
        """Ask for levels at least every ``interval_ms``; call what this returns when no longer needed."""
        token = self._next_token
        self._next_token += 1
        self._needs[token] = interval_ms
        if self._wanted() < self._applied:  # faster at once; slower only after the grace period
            self._apply()

        def release() -> None:
            if self._needs.pop(token, None) is None:  # released before
                return
            if self._pending_release is not None:
                self._pending_release.cancel()
            self._pending_release = asyncio.create_task(self._apply_after_grace(), name="meter need released")

        return release

    async def _apply_after_grace(self) -> None:
        await self._clock.sleep(self.release_grace_s)
        self._pending_release = None
        self._apply()

    def _apply(self) -> None:
        wanted = self._wanted()
        if wanted != self._applied:
            self._applied = wanted
            log.info("receivers now meter every %d ms (%s)", wanted, self.describe())
            self._on_change(wanted)

    def describe(self) -> str:
        if self.pinned_ms is not None:
            return "pinned by meter_rate_ms"
        if not self._needs:
            return "idle: history and alerts only"
        return f"{len(self._needs)} consumer(s) asking, the fastest every {min(self._needs.values())} ms"

    def close(self) -> None:
        if self._pending_release is not None:
            self._pending_release.cancel()
            self._pending_release = None


def fitted_rate(limits: NumberLimits | None, rate_ms: int) -> int | float:
    """The rate a family whose METER_RATE takes ``limits`` meters at when the hub wants ``rate_ms``: the
    slowest rate on its grid that is still at least as fast (consumers asked for levels *at least* that
    often), else its fastest. Never 0 or below, which receivers read as "metering off". The hub's own rate
    follows from who is there, not from any one family's menu, so it is fitted here, where a user's
    explicit rate is checked and refused instead. ``rate_ms`` unchanged without limits or a positive grid
    point (the family then answers for itself)."""
    if limits is None:
        return rate_ms
    last = math.floor((limits.max - limits.min) / limits.step + 1e-9)
    first = 0 if limits.min > 0 else math.floor(-limits.min / limits.step + 1e-9) + 1
    if first > last:
        return rate_ms
    steps = min(max(math.floor((rate_ms - limits.min) / limits.step + 1e-9), first), last)
    rate = round(limits.min + steps * limits.step, 9)
    return int(rate) if rate.is_integer() else rate
