"""Clean frequencies: the best one for one carrier, and a compatible set for a group.

A candidate is clean when, placed among the fixed carriers, it neither suffers nor creates a product or a
spacing problem, and touches no exclusion. Its margin is how far (kHz) it stays from the nearest problem
beyond what the guards ask; the search prefers the largest margin, then the candidate nearest to where the
carrier is now (the smallest retune).

Every relation of a new carrier ``x`` with the fixed carriers is a distance between ``x`` (or 2x, 3x)
and a sorted set built once from the fixed carriers (``m`` = 2, 3, 4 for the 3rd, 5th and 7th order):

* it suffers ``m*fi - (m-1)*fj``: x against {m*fi - (m-1)*fj}
* it is f1 of a product reaching fv: m*x against {(m-1)*fj + fv}
* it is f2 of a product reaching fv: (m-1)*x against {m*fi - fv}
* 3 transmitters, whichever role it plays: x + fa against the pair sums {fb + fd}

so every candidate costs a few binary searches. Guards and bandwidths are taken at their largest over the
fixed carriers: the margin never overstates, and a candidate called clean is clean (the tests hold it to
the full check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from hub.frequency.engine import (
    HZ_PER_KHZ,
    HZ_PER_MHZ,
    TWO_TX,
    Ints,
    Product,
    Spectrum,
    guard_hz,
    to_hz,
)
from hub.frequency.plan import Band, Carrier, CarrierState, Exclusion
from hub.frequency.settings import PlanSettings

MAX_CANDIDATES: Final = 200_000  # one channel: a 200 MHz band at 1 kHz steps; finer requests are refused
# a group is searched once per frequency chosen: a 200 MHz band at 25 kHz steps, 48 frequencies at most
MAX_GROUP_CANDIDATES: Final = 8_001
MAX_GROUP: Final = 48
_FAR: Final = np.int64(1) << 60


class SearchError(ValueError):
    """The request cannot be searched (no band, an empty range, too many candidates)."""


@dataclass(frozen=True)
class Candidate:
    frequency_mhz: float
    margin_khz: float


@dataclass(frozen=True)
class Coordination:
    frequencies: list[Candidate]
    backups: list[Candidate]
    wanted: int
    band: Band
    fixed: int = 0
    notes: list[str] = field(default_factory=list)


def _nearest(sorted_values: Ints, queries: Ints) -> Ints:
    """|query - nearest value| for each query (a huge number when there are no values)."""
    if not sorted_values.size:
        return np.full(queries.shape, _FAR, dtype=np.int64)
    at = np.searchsorted(sorted_values, queries)
    above = sorted_values[np.minimum(at, sorted_values.size - 1)]
    below = sorted_values[np.maximum(at - 1, 0)]
    distance: Ints = np.minimum(np.abs(above - queries), np.abs(queries - below)).astype(np.int64)
    return distance


def _shown(margin_hz: int, band: Band) -> float:
    """A margin in kHz, at most the band's width (with nothing else in the band it is boundless)."""
    return min(margin_hz, to_hz(band.high_mhz - band.low_mhz)) / HZ_PER_KHZ


def candidate_grid(
    band: Band,
    within: tuple[float, float] | None = None,
    step_khz: float | None = None,
    limit: int = MAX_CANDIDATES,
) -> Ints:
    """The tunable frequencies (Hz) of ``band``, on its step from its lower edge, inside ``within``."""
    step = to_hz((step_khz or band.step_khz) / 1000)
    if step <= 0:
        raise SearchError("the tuning step must be positive")
    low, high = to_hz(band.low_mhz), to_hz(band.high_mhz)
    if within is not None:
        low_wanted, high_wanted = to_hz(min(within)), to_hz(max(within))
        first = low + max(0, -(-(low_wanted - low) // step)) * step
        low, high = first, min(high, high_wanted)
    if high < low:
        raise SearchError("the range holds no tunable frequency of the band")
    count = (high - low) // step + 1
    if count > limit:
        raise SearchError(f"{count} candidates: narrow the range or take a coarser step (at most {limit})")
    return low + step * np.arange(count, dtype=np.int64)


def margins(
    candidates: Ints,
    fixed: Sequence[Carrier],
    settings: PlanSettings,
    *,
    family: str | None = None,
    bandwidth_khz: float = 0.0,
    exclusions: Sequence[Exclusion] = (),
    bands: Sequence[Band] = (),
) -> Ints:
    """The margin (Hz) of each candidate among ``fixed``: negative where it would be a finding, including
    where its width would reach past the edge of one of ``bands`` (a wideband carrier near the band's end)."""
    spectrum = Spectrum(fixed, settings)
    own = settings.guards(family)
    own_half = round(bandwidth_khz * 500)
    widest = max(own_half, spectrum.max_half)
    freq = spectrum.freq
    margin = np.full(candidates.shape, _FAR, dtype=np.int64)
    if spectrum.n:
        spacing = max(guard_hz(own, Product.SPACING), int(spectrum.guard[Product.SPACING].max()))
        margin = np.minimum(margin, _nearest(spectrum.sorted_freq, candidates) - spacing - 2 * widest)
    if spectrum.n >= 2:
        first, second = np.nonzero(~np.eye(spectrum.n, dtype=np.bool_))
        for product, m in TWO_TX.items():
            own_guard = guard_hz(own, product)
            their_guard = int(spectrum.guard[product].max())
            widen = 2 * m * widest
            if own_guard:  # it suffers m*fi - (m-1)*fj
                suffered = np.sort(m * freq[first] - (m - 1) * freq[second])
                margin = np.minimum(margin, _nearest(suffered, candidates) - own_guard - widen)
            if their_guard:  # it is f1, then f2, of a product reaching a fixed carrier
                as_first = np.sort((m - 1) * freq[first] + freq[second])
                margin = np.minimum(margin, _nearest(as_first, m * candidates) - their_guard - widen)
                as_second = np.sort(m * freq[first] - freq[second])
                margin = np.minimum(margin, _nearest(as_second, (m - 1) * candidates) - their_guard - widen)
        guard3 = max(guard_hz(own, Product.IM3_3TX), int(spectrum.guard[Product.IM3_3TX].max()))
        if guard3:
            for start in range(0, candidates.size, 4096):
                chunk = candidates[start : start + 4096]
                sums = chunk[:, np.newaxis] + freq[np.newaxis, :]
                nearest = _nearest(spectrum.pair_sum, sums.ravel()).reshape(sums.shape).min(axis=1)
                margin[start : start + 4096] = np.minimum(margin[start : start + 4096], nearest - guard3 - 4 * widest)
    for exclusion in exclusions:
        touching = (candidates + own_half >= to_hz(exclusion.low_mhz)) & (
            candidates - own_half <= to_hz(exclusion.high_mhz)
        )
        margin[touching] = -_FAR
    for band in bands:
        outside = (candidates - own_half < to_hz(band.low_mhz)) | (candidates + own_half > to_hz(band.high_mhz))
        margin[outside] = -_FAR
    return margin


def suggest(
    carrier: Carrier,
    others: Sequence[Carrier],
    band: Band,
    settings: PlanSettings,
    *,
    exclusions: Sequence[Exclusion] = (),
    within: tuple[float, float] | None = None,
    step_khz: float | None = None,
    count: int = 5,
) -> list[Candidate]:
    """Up to ``count`` clean frequencies for ``carrier`` among ``others``: largest margin first, then the
    nearest to where it is now. Empty when nothing in the band is clean."""
    candidates = candidate_grid(band, within, step_khz)
    margin = margins(
        candidates,
        others,
        settings,
        family=carrier.family,
        bandwidth_khz=carrier.bandwidth_khz,
        exclusions=exclusions,
        bands=[band] if carrier.band is None else [band, carrier.band],
    )
    clean = np.nonzero(margin >= 0)[0]
    if not clean.size:
        return []
    retune = np.abs(candidates[clean] - to_hz(carrier.frequency_mhz))
    ranked = clean[np.lexsort((retune, -margin[clean]))][:count]
    return [Candidate(int(candidates[at]) / HZ_PER_MHZ, _shown(int(margin[at]), band)) for at in ranked]


def coordinate(
    count: int,
    fixed: Sequence[Carrier],
    band: Band,
    settings: PlanSettings,
    *,
    backups: int = 0,
    family: str | None = None,
    exclusions: Sequence[Exclusion] = (),
    step_khz: float | None = None,
) -> Coordination:
    """A compatible set of ``count`` frequencies (and ``backups`` more, compatible with all of them) in
    ``band`` around the ``fixed`` carriers, chosen one by one, each with the largest margin left."""
    if not 1 <= count + backups <= MAX_GROUP:
        raise SearchError(f"a group has 1 to {MAX_GROUP} frequencies with its backups")
    candidates = candidate_grid(band, None, step_khz, MAX_GROUP_CANDIDATES)
    placed = list(fixed)
    chosen: list[Candidate] = []
    for number in range(count + backups):
        margin = margins(candidates, placed, settings, family=family, exclusions=exclusions)
        best = int(np.argmax(margin))
        if margin[best] < 0:
            break
        frequency = int(candidates[best]) / HZ_PER_MHZ
        chosen.append(Candidate(frequency, _shown(int(margin[best]), band)))
        placed.append(Carrier(f"new:{number + 1}", frequency, CarrierState.PLANNED, family=family))
    notes = []
    if len(chosen) < count + backups:
        notes.append(f"only {len(chosen)} of {count + backups} frequencies fit the band with these guards")
    return Coordination(chosen[:count], chosen[count:], count, band, len(fixed), notes)
