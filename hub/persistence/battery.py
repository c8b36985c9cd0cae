"""Remaining runtime of a transmitter that reports only battery bars (alkaline cells), from its drain history.

An alkaline cell's voltage falls quickly at first, then slowly and nearly linearly, then steeply at the
end; a transmitter maps voltage to bars, so every bar lasts a different time, but the *fraction of the
cell's life* at which each bar count first appears is much the same from cell to cell and load to load.
We record when each bar count first appeared since the cell went in, fit ``t = t0 + fraction * life`` by
least squares, and report ``t0 + life - now``. See docs/battery-estimate.md for the method and its limits.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

FULL_BARS: Final = 5
LEVEL_PER_BAR: Final = 20  # history stores a bars-only battery as bars * 20, on the same 0-100 scale as percent

# A model of one alkaline AA cell under a bodypack's constant ~100-150 mA draw: volts against the
# fraction of its life used, piecewise linear through typical published discharge curves (fast initial
# drop, long slow slope, knee near the end). Unverified against a specific transmitter.
ALKALINE_CURVE: Final[tuple[tuple[float, float], ...]] = (
    (0.00, 1.58),
    (0.03, 1.47),
    (0.25, 1.36),
    (0.60, 1.24),
    (0.85, 1.13),
    (0.95, 1.02),
    (1.00, 0.90),
)
# Per-cell volts at which a transmitter is assumed to show 5, 4, 3, 2 and 1 bars (vendors do not publish
# theirs; these space the bars over the slope the way front panels are seen to).
BAR_THRESHOLDS_V: Final[tuple[float, ...]] = (1.40, 1.31, 1.23, 1.15, 1.05)


def cell_volts(fraction: float, curve: Sequence[tuple[float, float]] = ALKALINE_CURVE) -> float:
    """Volts of a cell with ``fraction`` (0..1) of its life used."""
    for (f0, v0), (f1, v1) in itertools.pairwise(curve):
        if fraction <= f1:
            return v0 + (v1 - v0) * (max(fraction, f0) - f0) / (f1 - f0)
    return curve[-1][1]


def bars_at(volts: float, thresholds: Sequence[float] = BAR_THRESHOLDS_V) -> int:
    return sum(volts >= threshold for threshold in thresholds)


def _fraction_at(volts: float, curve: Sequence[tuple[float, float]] = ALKALINE_CURVE) -> float:
    for (f0, v0), (f1, v1) in itertools.pairwise(curve):
        if v1 <= volts <= v0:
            return f0 + (f1 - f0) * (v0 - volts) / (v0 - v1)
    raise ValueError(f"{volts} V is outside the curve")


# Fraction of a cell's life used when the display first shows N bars: N+1 bars' threshold crossed.
ALKALINE_BAR_FRACTIONS: Final[Mapping[int, float]] = {
    bars: _fraction_at(threshold)
    for bars, threshold in zip(range(FULL_BARS - 1, -1, -1), BAR_THRESHOLDS_V, strict=True)
}

# A rise of this many bars means a fresh cell (an alkaline cell recovers up to a bar after a rest)
INSERTION_RISE_BARS: Final = 2


@dataclass(frozen=True)
class RuntimeEstimate:
    minutes: int
    bars: int
    method: str
    observed_points: int
    life_minutes: float


@dataclass(frozen=True)
class DrainEvents:
    inserted_at: float | None
    first_shown: dict[int, float]  # bars -> when that count was first shown since insertion
    bars: int | None  # the count shown last


def bars_of(level: float) -> int:
    """The bar count a bucket average stands for (a bucket that flickers 3/2 half the time reads as 3)."""
    return max(0, min(FULL_BARS, math.floor(level / LEVEL_PER_BAR + 0.5)))


def drain_events(samples: Sequence[tuple[float, float]]) -> DrainEvents:
    """Find the last cell insertion and each bar count's first appearance in (time, level) samples."""
    inserted_at: float | None = None
    first_shown: dict[int, float] = {}
    lowest: int | None = None
    bars: int | None = None
    for at, level in samples:
        bars = bars_of(level)
        if lowest is None:
            lowest = bars
        elif bars >= lowest + INSERTION_RISE_BARS and bars >= FULL_BARS - 1:
            inserted_at, first_shown, lowest = at, {}, bars
        elif bars < lowest:
            for skipped in range(bars, lowest):
                first_shown[skipped] = at
            lowest = bars
    return DrainEvents(inserted_at, first_shown, bars)


def estimate_runtime(
    samples: Sequence[tuple[float, float]],
    now: float,
    fractions: Mapping[int, float] = ALKALINE_BAR_FRACTIONS,
) -> RuntimeEstimate | None:
    """Estimate the minutes left, or None until two points of the drain are known (the insertion and one
    bar change, or two bar changes)."""
    events = drain_events(samples)
    if events.bars is None:
        return None
    points = [(fractions[bars], at) for bars, at in events.first_shown.items() if bars in fractions]
    if events.inserted_at is not None:
        points.append((0.0, events.inserted_at))
    if len(points) < 2:
        return None
    mean_f = sum(f for f, _ in points) / len(points)
    mean_t = sum(t for _, t in points) / len(points)
    spread = sum((f - mean_f) ** 2 for f, _ in points)
    if spread <= 0:
        return None
    life = sum((f - mean_f) * (t - mean_t) for f, t in points) / spread
    if life <= 0:
        return None
    start = mean_t - life * mean_f
    # the count shown now has not ended yet: the cell lives at least until its next bar would appear
    next_fraction = fractions.get(events.bars - 1)
    if next_fraction is not None and now > start:
        life = max(life, (now - start) / next_fraction)
    remaining = max(0.0, start + life - now)
    return RuntimeEstimate(
        minutes=round(remaining / 60),
        bars=events.bars,
        method="alkaline-bars-profile",
        observed_points=len(points),
        life_minutes=life / 60,
    )
