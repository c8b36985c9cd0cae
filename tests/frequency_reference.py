"""A brute-force frequency check: every ordered pair and triple of carriers, one product at a time.

Slow and obviously right; tests hold hub.frequency's vectorised search to it on random plans."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hub.frequency.engine import TWO_TX, Product, guard_hz, to_hz
from hub.frequency.plan import Carrier, CarrierState
from hub.frequency.settings import PlanSettings

Hit = tuple[Product, int, tuple[int, ...], int]  # product, victim, sources, offset (Hz)


def _half(carrier: Carrier) -> int:
    return round(carrier.bandwidth_khz * 500)


def brute_hits(carriers: Sequence[Carrier], settings: PlanSettings) -> set[Hit]:
    freq = [to_hz(c.frequency_mhz) for c in carriers]
    half = [_half(c) for c in carriers]
    guards = [settings.guards(c.family) for c in carriers]
    hits: set[Hit] = set()
    indices = range(len(carriers))
    for victim in indices:
        for product, m in TWO_TX.items():
            guard = guard_hz(guards[victim], product)
            if not guard:
                continue
            for first, second in itertools.permutations(indices, 2):
                if victim in (first, second):
                    continue
                offset = m * freq[first] - (m - 1) * freq[second] - freq[victim]
                if abs(offset) < guard + half[victim] + m * half[first] + (m - 1) * half[second]:
                    hits.add((product, victim, (first, second), offset))
        guard = guard_hz(guards[victim], Product.IM3_3TX)
        for first, second, third in itertools.permutations(indices, 3):
            if victim in (first, second, third) or first > second or not guard:
                continue
            offset = freq[first] + freq[second] - freq[third] - freq[victim]
            if abs(offset) < guard + half[victim] + half[first] + half[second] + half[third]:
                hits.add((Product.IM3_3TX, victim, (first, second, third), offset))
        for other in indices:
            if other == victim:
                continue
            offset = freq[other] - freq[victim]
            spacing = max(guard_hz(guards[victim], Product.SPACING), guard_hz(guards[other], Product.SPACING))
            if abs(offset) - half[other] - half[victim] < spacing:
                hits.add((Product.SPACING, victim, (other,), offset))
    return hits


def brute_summary(carriers: Sequence[Carrier], settings: PlanSettings) -> set[tuple[str, str, str, int, int]]:
    """(product, victim id, severity, closest |offset| Hz, count) per victim, product and severity."""
    closest: dict[tuple[str, str, str], tuple[int, int]] = {}
    for product, victim, sources, offset in brute_hits(carriers, settings):
        involved = [carriers[n] for n in (victim, *sources)]
        severity = "alert" if all(c.state is CarrierState.ACTIVE for c in involved) else "warning"
        key = (product.value, carriers[victim].id, severity)
        best, count = closest.get(key, (abs(offset), 0))
        closest[key] = (min(best, abs(offset)), count + 1)
    return {(*key, best, count) for key, (best, count) in closest.items()}


def brute_margin(x_hz: int, fixed: Sequence[Carrier], settings: PlanSettings, family: str | None = None) -> int:
    """How far (Hz) a narrowband carrier at ``x_hz`` stays from its nearest problem among narrowband
    ``fixed`` carriers, beyond the guards; negative when it would be a finding."""
    freq = [to_hz(c.frequency_mhz) for c in fixed]
    own = settings.guards(family)
    theirs = [settings.guards(c.family) for c in fixed]
    worst = 1 << 60
    for n, f in enumerate(freq):
        spacing = max(guard_hz(own, Product.SPACING), guard_hz(theirs[n], Product.SPACING))
        worst = min(worst, abs(x_hz - f) - spacing)
    everyone = [x_hz, *freq]
    guards = [own, *theirs]
    indices = range(len(everyone))
    for product, m in TWO_TX.items():
        for first, second in itertools.permutations(indices, 2):
            for victim in indices:
                if victim in (first, second) or 0 not in (first, second, victim):
                    continue
                guard = guard_hz(guards[victim], product)
                if guard:
                    offset = m * everyone[first] - (m - 1) * everyone[second] - everyone[victim]
                    worst = min(worst, abs(offset) - guard)
    for first, second, third in itertools.permutations(indices, 3):
        for victim in indices:
            if victim in (first, second, third) or first > second or 0 not in (first, second, third, victim):
                continue
            guard = guard_hz(guards[victim], Product.IM3_3TX)
            if guard:
                offset = everyone[first] + everyone[second] - everyone[third] - everyone[victim]
                worst = min(worst, abs(offset) - guard)
    return worst


def brute_clean(
    x_hz: int,
    fixed: Sequence[Carrier],
    settings: PlanSettings,
    *,
    bandwidth_khz: float = 0.0,
    family: str | None = None,
) -> bool:
    """Whether a carrier at ``x_hz`` (of that width and family) among ``fixed`` takes part in no hit at all, as
    victim or source: clean by the full check."""
    new = Carrier("candidate", x_hz / 1_000_000, bandwidth_khz=bandwidth_khz, family=family)
    placed = [*fixed, new]
    me = len(fixed)
    return not any(victim == me or me in sources for _, victim, sources, _ in brute_hits(placed, settings))
