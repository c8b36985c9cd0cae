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

so every candidate costs a few binary searches. Each fixed carrier (and each product, and each pair) keeps
its own width, edge to edge: an 8 MHz carrier widens only the relations it is part of, not every one. The
3-transmitter guard is taken at its largest over the fixed carriers, so the margin never overstates, and a
candidate called clean is clean (the tests hold it to the full check).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from hub.frequency.engine import (
    HZ_PER_KHZ,
    HZ_PER_MHZ,
    TWO_TX,
    CheckCancelled,
    Ints,
    Product,
    Spectrum,
    guard_hz,
    never,
    to_hz,
)
from hub.frequency.plan import Band, Carrier, CarrierState, Exclusion
from hub.frequency.settings import PlanSettings

MAX_CANDIDATES: Final = 200_000  # one channel: a 200 MHz band at 1 kHz steps; finer requests are refused
# a group is searched once per frequency chosen: a 200 MHz band at 25 kHz steps, 48 frequencies at most
MAX_GROUP_CANDIDATES: Final = 8_001
MAX_GROUP: Final = 48
# In a band known only as a plugin's whole range (the receiver tunes a part of it, its band variant, which is
# around where it tunes now), a suggestion stays near the current frequency. Conservative choices of this
# project: room beyond ENOUGH_MARGIN_KHZ (past every guard, more than the largest product guard of any
# profile) ranks alike, so a clean frequency just inside the receiver's unknown band edge beats more room
# just past it, where there are no carriers; the search spans WHOLE_RANGE_WINDOW_MHZ either side (less than
# half the narrowest band variant the plugins name), in steps of at least WHOLE_RANGE_STEP_KHZ (the tuning
# step of every receiver family the plugins name, where the protocol's own is 1 kHz); and a nearer
# NEARNESS_MHZ of retune wins over any margin, so a crowded plan does not send the receiver to the window's
# edge for more room.
ENOUGH_MARGIN_KHZ: Final = 200.0
WHOLE_RANGE_WINDOW_MHZ: Final = 24.0
WHOLE_RANGE_STEP_KHZ: Final = 25.0
NEARNESS_MHZ: Final = 5.0
_FAR: Final = np.int64(1) << 60
# Distinct widths searched apart per relation; beyond this many, widths are rounded up to their group's widest
# (a margin then understates, never overstates). A plan has a handful: narrowband, 200 kHz, 6 or 8 MHz.
_WIDTH_GROUPS: Final = 8


class SearchError(ValueError):
    """The request cannot be searched (no band, an empty range, too many candidates)."""


@dataclass(frozen=True)
class Candidate:
    frequency_mhz: float
    margin_khz: float


@dataclass(frozen=True)
class Slot:
    """Where one frequency of a group goes: the grid searched (a channel's band within the request's range, on
    its tuning step: :func:`narrowed`), the band the carrier's whole width must stay inside, and the family
    (guards) and width of the carrier that takes it."""

    grid: Band
    band: Band
    family: str | None = None
    bandwidth_khz: float = 0.0


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


class _Rooms:
    """Points that each keep their own room (a radius, Hz): per query, the least |query - point| - radius,
    the margin the nearest of them leaves. Points of one radius are searched together. A point may stand for
    carriers (``members``: one row per point), so that a search can leave those of one carrier out."""

    def __init__(self, points: Ints, radius: Ints, members: Ints | None = None) -> None:
        distinct = np.unique(radius)
        if distinct.size > _WIDTH_GROUPS:
            widest = distinct[np.linspace(0, distinct.size - 1, _WIDTH_GROUPS + 1).astype(np.int64)[1:]]
            radius = widest[np.searchsorted(widest, radius)]
            distinct = np.unique(radius)
        held = np.zeros((points.size, 0), dtype=np.int64) if members is None else members
        self.groups: list[tuple[int, Ints, Ints]] = []
        for room in distinct:
            mine = np.flatnonzero(radius == room)
            ranked = mine[np.argsort(points[mine], kind="stable")]
            self.groups.append((int(room), points[ranked], held[ranked]))

    def without(self, carrier: int) -> _Rooms:
        """The same points less those that stand for ``carrier`` (still sorted: nothing to sort again)."""
        rest = copy.copy(self)
        rest.groups = []
        for room, points, members in self.groups:
            kept = ~(members == carrier).any(axis=1)
            rest.groups.append((room, points[kept], members[kept]))
        return rest

    def margin(self, queries: Ints) -> Ints:
        margin = np.full(queries.shape, _FAR, dtype=np.int64)
        for room, points, _ in self.groups:
            margin = np.minimum(margin, _nearest(points, queries) - room)
        return margin


def _shown(margin_hz: int, band: Band) -> float:
    """A margin in kHz, at most the band's width (with nothing else in the band it is boundless)."""
    return min(margin_hz, to_hz(band.high_mhz - band.low_mhz)) / HZ_PER_KHZ


def search_step_khz(band: Band, step_khz: float | None = None) -> float:
    """The step a search of ``band`` takes when the request gives none: the band's own, at least
    WHOLE_RANGE_STEP_KHZ in a plugin's whole range (whose 1 kHz is the protocol's, not a receiver's)."""
    if step_khz:
        return step_khz
    return band.step_khz * -(-WHOLE_RANGE_STEP_KHZ // band.step_khz) if band.whole_range else band.step_khz


def narrowed(band: Band, within: tuple[float, float] | None = None, step_khz: float | None = None) -> Band:
    """The part of ``band`` inside ``within`` on ``step_khz`` (default the band's), still on the band's grid:
    its ``low_mhz`` is the first tunable frequency of that part. A ``step_khz`` must be a multiple of the
    band's (or the frequencies would be off its grid); SearchError when the part holds no frequency."""
    step, band_step = to_hz((step_khz or band.step_khz) / 1000), to_hz(band.step_khz / 1000)
    if step <= 0 or band_step <= 0:
        raise SearchError("the tuning step must be positive")
    if step % band_step:
        raise SearchError(f"step_khz {step_khz:g} is not a multiple of the band's {band.step_khz:g} kHz tuning step")
    low, high = to_hz(band.low_mhz), to_hz(band.high_mhz)
    if within is not None:
        low_wanted, high_wanted = to_hz(min(within)), to_hz(max(within))
        low, high = low + max(0, -(-(low_wanted - low) // step)) * step, min(high, high_wanted)
    if high < low:
        where = f"{min(within):g}-{max(within):g} MHz" if within is not None else "the range"
        raise SearchError(f"{where} holds no tunable frequency of the band {band.low_mhz:g}-{band.high_mhz:g} MHz")
    return Band(low / HZ_PER_MHZ, high / HZ_PER_MHZ, step / HZ_PER_KHZ, band.whole_range)


def candidate_grid(
    band: Band,
    within: tuple[float, float] | None = None,
    step_khz: float | None = None,
    limit: int = MAX_CANDIDATES,
) -> Ints:
    """The tunable frequencies (Hz) of ``band``, on its step from its lower edge, inside ``within``; a
    ``step_khz`` of the request must be a multiple of the band's (or the candidates would be off its grid)."""
    part = narrowed(band, within, step_khz)
    low, high, step = to_hz(part.low_mhz), to_hz(part.high_mhz), to_hz(part.step_khz / 1000)
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
    freq, half = spectrum.freq, spectrum.half
    margin = np.full(candidates.shape, _FAR, dtype=np.int64)
    if spectrum.n:  # edge to edge, the larger of the two families' spacings
        spacing = np.maximum(guard_hz(own, Product.SPACING), spectrum.guard[Product.SPACING])
        margin = np.minimum(margin, _Rooms(freq, half + spacing).margin(candidates) - own_half)
    if spectrum.n >= 2:
        first, second = np.nonzero(~np.eye(spectrum.n, dtype=np.bool_))
        for product, m in TWO_TX.items():
            own_guard = guard_hz(own, product)
            # the victim's guard and half bandwidth, where a fixed carrier is the victim (its guard on)
            guard = spectrum.guard[product][second]
            theirs = guard > 0
            if own_guard:  # it suffers m*fi - (m-1)*fj, as wide as m*hi + (m-1)*hj
                suffered = _Rooms(m * freq[first] - (m - 1) * freq[second], m * half[first] + (m - 1) * half[second])
                margin = np.minimum(margin, suffered.margin(candidates) - own_guard - own_half)
            if theirs.any():  # it is f1 (with fj), then f2 (with fi), of a product reaching a fixed carrier v
                f, v = first[theirs], second[theirs]
                reach = guard[theirs] + half[v]
                as_first = _Rooms((m - 1) * freq[f] + freq[v], reach + (m - 1) * half[f])
                margin = np.minimum(margin, as_first.margin(m * candidates) - m * own_half)
                as_second = _Rooms(m * freq[f] - freq[v], reach + m * half[f])
                margin = np.minimum(margin, as_second.margin((m - 1) * candidates) - (m - 1) * own_half)
        guard3 = max(guard_hz(own, Product.IM3_3TX), int(spectrum.guard[Product.IM3_3TX].max()))
        if guard3:
            margin = np.minimum(margin, _three_tx_margin(candidates, spectrum) - guard3 - own_half)
    for exclusion in exclusions:
        touching = (candidates + own_half >= to_hz(exclusion.low_mhz)) & (
            candidates - own_half <= to_hz(exclusion.high_mhz)
        )
        margin[touching] = -_FAR
    for band in bands:
        outside = (candidates - own_half < to_hz(band.low_mhz)) | (candidates + own_half > to_hz(band.high_mhz))
        margin[outside] = -_FAR
    return margin


def _three_tx_margin(candidates: Ints, spectrum: Spectrum) -> Ints:
    """Per candidate x, the least |fb + fd - (x + fa)| less the widths of fa, fb and fd, over the fixed carriers
    a and the pairs {b, d}: whichever role x plays in a 3-transmitter product, it is this distance (the guard
    is the caller's). For a narrowband fa a pair holding a itself is counted too (it says no more than the
    spacing does); for a wideband fa it is left out, or a's width would count twice."""
    freq, half = spectrum.freq, spectrum.half
    span = half[spectrum.pair_first] + half[spectrum.pair_second]
    margin = np.full(candidates.shape, _FAR, dtype=np.int64)
    narrow = np.flatnonzero(half == 0)
    wide = np.flatnonzero(half > 0)
    members = np.stack([spectrum.pair_first, spectrum.pair_second], axis=1) if wide.size else None
    pairs = _Rooms(spectrum.pair_sum, span, members)
    if narrow.size:
        for start in range(0, candidates.size, 4096):
            chunk = candidates[start : start + 4096]
            sums = chunk[:, np.newaxis] + freq[np.newaxis, narrow]
            nearest = pairs.margin(sums.ravel()).reshape(sums.shape).min(axis=1)
            margin[start : start + 4096] = np.minimum(margin[start : start + 4096], nearest)
    for row in wide.tolist():
        margin = np.minimum(margin, pairs.without(row).margin(candidates + freq[row]) - half[row])
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
    nearest to where it is now. In a band that is only a plugin's whole range, only near where it is now
    (unless ``within`` says where), the nearest NEARNESS_MHZ first, and a margin beyond ENOUGH_MARGIN_KHZ
    counts as enough. Empty when nothing searched is clean."""
    if band.whole_range:
        step_khz = search_step_khz(band, step_khz)
        here = carrier.frequency_mhz
        within = within or (here - WHOLE_RANGE_WINDOW_MHZ, here + WHOLE_RANGE_WINDOW_MHZ)
    candidates = candidate_grid(band, within, step_khz)
    margin = margins(
        candidates,
        others,
        settings,
        family=carrier.family,
        bandwidth_khz=carrier.bandwidth_khz,
        exclusions=exclusions,
        bands=[band],
    )
    clean = np.nonzero(margin >= 0)[0]
    if not clean.size:
        return []
    retune = np.abs(candidates[clean] - to_hz(carrier.frequency_mhz))
    room = margin[clean]
    if band.whole_range:
        room = np.minimum(room, round(ENOUGH_MARGIN_KHZ * HZ_PER_KHZ))
        ranked = clean[np.lexsort((retune, -room, retune // to_hz(NEARNESS_MHZ)))][:count]
    else:
        ranked = clean[np.lexsort((retune, -room))][:count]
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
    slots: Sequence[Slot] = (),
    cancelled: Callable[[], bool] = never,
) -> Coordination:
    """A compatible set of ``count`` frequencies (and ``backups`` more, compatible with all of them) around the
    ``fixed`` carriers, chosen one by one, each with the largest margin left: the n-th in ``slots[n]`` (the
    channel that will take it tunes only there), else (and the backups) in ``band`` on ``step_khz``.
    ``cancelled`` is asked before each frequency, and a yes raises CheckCancelled (each takes seconds among a
    thousand carriers)."""
    if not 1 <= count + backups <= MAX_GROUP:
        raise SearchError(f"a group has 1 to {MAX_GROUP} frequencies with its backups")
    if slots and len(slots) != count:
        raise SearchError(f"{len(slots)} slots for {count} frequencies")
    anywhere = Slot(narrowed(band, None, step_khz), band, family)
    wanted = [*(slots or [anywhere] * count), *[anywhere] * backups]
    grids: dict[Band, Ints] = {}
    placed = list(fixed)
    chosen: list[Candidate] = []
    for number, slot in enumerate(wanted):
        if cancelled():
            raise CheckCancelled
        if slot.grid not in grids:
            grids[slot.grid] = candidate_grid(slot.grid, limit=MAX_GROUP_CANDIDATES)
        candidates = grids[slot.grid]
        margin = margins(
            candidates, placed, settings, family=slot.family, bandwidth_khz=slot.bandwidth_khz,
            exclusions=exclusions, bands=[slot.band],
        )  # fmt: skip
        best = int(np.argmax(margin))
        if margin[best] < 0:
            break
        frequency = int(candidates[best]) / HZ_PER_MHZ
        chosen.append(Candidate(frequency, _shown(int(margin[best]), slot.grid)))
        placed.append(
            Carrier(f"new:{number + 1}", frequency, CarrierState.PLANNED, slot.bandwidth_khz, family=slot.family)
        )
    notes = []
    if len(chosen) < count + backups:
        notes.append(f"only {len(chosen)} of {count + backups} frequencies fit the band with these guards")
    return Coordination(chosen[:count], chosen[count:], count, band, len(fixed), notes)
