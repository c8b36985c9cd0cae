"""Remaining runtime of a transmitter that reports only battery bars (alkaline cells), from its drain history.

An alkaline cell's voltage falls quickly at first, then slowly and nearly linearly, then steeply at the
end; a transmitter maps voltage to bars, so every bar lasts a different time, but the *fraction of the
cell's life* at which each bar count first appears is much the same from cell to cell and load to load.
We record when each bar count first appeared since the cell went in, fit ``t = t0 + fraction * life`` by
least squares, and report ``t0 + life - now``. See docs/battery-estimate.md for the method and its limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

FULL_BARS: Final = 5
LEVEL_PER_BAR: Final = 20  # history stores a bars-only battery as bars * 20, on the same 0-100 scale as percent

# Fraction of an alkaline cell's life elapsed when the display first shows N bars. From a typical AA
# discharge curve under a constant ~100-150 mA load (a bodypack's draw) and evenly spaced voltage bar
# thresholds; unverified against a specific transmitter's thresholds, which vendors do not publish.
ALKALINE_BAR_FRACTIONS: Final[Mapping[int, float]] = {4: 0.20, 3: 0.42, 2: 0.62, 1: 0.80, 0: 0.95}

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
