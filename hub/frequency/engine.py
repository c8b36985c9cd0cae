"""The plan check: intermodulation products, carrier spacing, exclusions and tunable bands.

Frequencies are whole hertz (int64), so a product lands exactly where the arithmetic says. The search is
victim-side and vectorised (numpy, see docs/adr/0011-frequency-numpy.md): for a set of victims, every
product that may reach one of them is found with sorted searches instead of a loop over transmitter pairs
or triples:

* 2-transmitter products ``m*f1 - (m-1)*f2`` (m = 2, 3, 4: the 3rd, 5th and 7th order) reach victim ``v``
  when ``f2`` lies within the guard (divided by m-1) of ``(m*f1 - v)/(m-1)``: one search per (v, f1).
* 3-transmitter products ``f1 + f2 - f3`` reach ``v`` when the pair sum ``f1 + f2`` lies within the guard
  of ``v + f3``: one search per (v, f3) in the sorted pair sums.

A product hits a victim when it comes closer than the victim family's guard, widened by the half
bandwidths of the victim and of the product (the sum of its sources' half bandwidths, each times its
coefficient). The sources of a product are never its victim. Each search first takes a window as wide as
the guard and the bandwidths of that row could need (narrowband and wideband carriers or pairs searched
apart, so one 8 MHz carrier does not widen the window of every narrowband row), then applies the exact
condition, so the result is exactly the brute force's (tests/test_frequency_check.py compares both on
random plans). 3-transmitter products are counted rather than listed: a pair whose sum lies within the
window widened by its own half bandwidths is counted from the pairs' sorted reach (sum - width, sum + width).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from hub.frequency.plan import Carrier, CarrierState, Exclusion
from hub.frequency.settings import Guards, PlanSettings

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Severity = Literal["alert", "warning"]
HZ_PER_MHZ: Final = 1_000_000
HZ_PER_KHZ: Final = 1_000
# (victim, third carrier) rows judged per vectorised step: a step's victims are this many over the carriers. It
# bounds the memory of one step, and how long a check in its worker thread takes to stop: 64 victims per step
# took 10 s a step at 600 crowded carriers (a stop waited for it), 6 take 0.8 s, and the whole check was no
# slower (41 s against 54; 995 carriers spread over 10 MHz: 3.3 s against 3.0)
ROWS_PER_STEP: Final = 4096


class CheckCancelled(Exception):
    """The check was told to stop before it was done (the hub stops): what it found so far is incomplete."""


def never() -> bool:
    """A ``cancelled`` that never says stop (a check or search run to its end)."""
    return False


class Product(StrEnum):
    IM3_2TX = "2f1-f2"
    IM3_3TX = "f1+f2-f3"
    IM5_2TX = "3f1-2f2"
    IM7_2TX = "4f1-3f2"
    SPACING = "spacing"
    EXCLUSION = "exclusion"
    OUT_OF_BAND = "out_of_band"


ORDER: Final = {Product.IM3_2TX: 3, Product.IM3_3TX: 3, Product.IM5_2TX: 5, Product.IM7_2TX: 7}
# the coefficient m of f1 in m*f1 - (m-1)*f2, and the Guards field of each 2-transmitter product
TWO_TX: Final = {Product.IM3_2TX: 2, Product.IM5_2TX: 3, Product.IM7_2TX: 4}
GUARD_FIELD: Final = {
    Product.IM3_2TX: "im3_2tx_khz",
    Product.IM3_3TX: "im3_3tx_khz",
    Product.IM5_2TX: "im5_2tx_khz",
    Product.IM7_2TX: "im7_2tx_khz",
    Product.SPACING: "spacing_khz",
}


def to_hz(mhz: float) -> int:
    return round(mhz * HZ_PER_MHZ)


def guard_hz(guards: Guards, product: Product) -> int:
    return round(float(getattr(guards, GUARD_FIELD[product])) * HZ_PER_KHZ)


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem of one carrier (the victim). For intermodulation: the closest product of its kind, and
    ``count``, how many products of that kind and severity reach the victim in all."""

    product: Product
    victim: str
    sources: tuple[str, ...]
    product_mhz: float | None
    offset_khz: float
    guard_khz: float
    severity: Severity
    count: int = 1

    def counted(self, count: int) -> Finding:
        """The same finding with another count (dataclasses.replace costs ten times as much)."""
        return Finding(
            self.product,
            self.victim,
            self.sources,
            self.product_mhz,
            self.offset_khz,
            self.guard_khz,
            self.severity,
            count,
        )

    @property
    def order(self) -> int | None:
        return ORDER.get(self.product)

    @property
    def kind(self) -> str:
        return "intermod" if self.product in ORDER else self.product.value


@dataclass(frozen=True)
class Hits:
    """Raw hits of one product kind: victim, sources (in the product's roles f1, f2[, f3]) and the offset
    of the product from the victim, all as carrier indices and hertz."""

    product: Product
    victim: Ints
    sources: Ints  # shape (hits, 2 or 3)
    offset_hz: Ints

    def __len__(self) -> int:
        return len(self.victim)


@dataclass(frozen=True)
class _Rows:
    """3-transmitter rows (victim, third carrier) whose closest pair is wanted: the target f1 + f2 of each,
    the room victim and third give (a pair adds its half bandwidths), and the pair groups each takes."""

    victim: Ints
    third: Ints
    target: Ints
    window: Ints
    take_on_air: Bools
    take_planned: bool

    def column(self) -> _Rows:
        """The rows as a column, to be compared with several pairs per row."""
        return _Rows(
            self.victim[:, np.newaxis],
            self.third[:, np.newaxis],
            self.target[:, np.newaxis],
            self.window[:, np.newaxis],
            self.take_on_air[:, np.newaxis],
            self.take_planned,
        )

    def taken(self, at: Ints) -> _Rows:
        """The rows at ``at``, one per pair looked at."""
        return _Rows(
            self.victim[at], self.third[at], self.target[at], self.window[at], self.take_on_air[at], self.take_planned
        )


def _ceil_div(values: Ints, divisor: int) -> Ints:
    return -((-values) // divisor)


def _expand(lo: Ints, hi: Ints) -> tuple[Ints, Ints]:
    """For query rows with matches at positions lo[r] .. hi[r]-1: (row of each match, its position)."""
    counts = np.maximum(hi - lo, 0).ravel()
    rows = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    positions = lo.ravel()[rows] + (np.arange(rows.size, dtype=np.int64) - starts[rows])
    return rows, positions


class _Reach:
    """Intervals [centre - half, centre + half] (carriers, or pairs of them as sum and summed half bandwidths),
    sorted by both ends: how many come closer than a radius to a point, in two binary searches."""

    def __init__(self, centre: Ints, half: Ints) -> None:
        self.low: Ints = np.sort(centre - half)
        self.high: Ints = np.sort(centre + half)

    def within(self, point: Ints, radius: Ints) -> Ints:
        """Per query, the intervals with |centre - point| < radius + half, for radius > 0: those whose low end
        is below point + radius, less those whose high end is at or below point - radius (which, with a
        positive radius, all have their low end below point + radius too)."""
        below: Ints = np.searchsorted(self.low, point + radius, "left").astype(np.int64)
        return below - np.searchsorted(self.high, point - radius, "right").astype(np.int64)


class Spectrum:
    """The carriers of a plan as arrays, sorted views and pair sums: built once, searched many times."""

    def __init__(self, carriers: Sequence[Carrier], settings: PlanSettings) -> None:
        self.carriers = list(carriers)
        self.settings = settings
        self.n = n = len(self.carriers)
        self.freq: Ints = np.array([to_hz(c.frequency_mhz) for c in self.carriers], dtype=np.int64)
        self.half: Ints = np.array([round(c.bandwidth_khz * 500) for c in self.carriers], dtype=np.int64)
        self.active: Bools = np.array([c.state is CarrierState.ACTIVE for c in self.carriers], dtype=np.bool_)
        by_family = {family: settings.guards(family) for family in {c.family for c in self.carriers}}
        family_of = [c.family for c in self.carriers]
        self.guard: dict[Product, Ints] = {
            product: np.array([guard_hz(by_family[family], product) for family in family_of], dtype=np.int64)
            for product in GUARD_FIELD
        }
        first, second = np.triu_indices(n, 1)
        sums = self.freq[first] + self.freq[second]
        by_sum = np.argsort(sums, kind="stable")
        self.pair_sum: Ints = sums[by_sum].astype(np.int64)
        self.pair_first: Ints = first[by_sum].astype(np.int64)
        self.pair_second: Ints = second[by_sum].astype(np.int64)
        self.index = {carrier.id: number for number, carrier in enumerate(self.carriers)}
        self._derive()

    def _derive(self) -> None:
        """The sorted views and pair groups, from the carriers' arrays and the sorted pair sums."""
        self.narrow: Bools = self.half == 0
        self.order: Ints = np.argsort(self.freq, kind="stable").astype(np.int64)
        self.sorted_freq: Ints = self.freq[self.order]
        self.max_half = int(self.half.max()) if self.n else 0
        self.involving_budget = max(_INVOLVING_LEAST, self.n * self.n)
        # A search window must never be widened for every row by the widest carrier: next to one 8 MHz carrier
        # that made every narrowband pair and triple of a crowded plan a candidate (minutes and gigabytes).
        # Narrowband and wideband carriers and pairs are therefore searched apart, each with its own window.
        self.narrow_order: Ints = self.order[self.narrow[self.order]]
        self.wide_order: Ints = self.order[~self.narrow[self.order]]
        narrow_pair = self.narrow[self.pair_first] & self.narrow[self.pair_second]
        self.pair_active: Bools = self.active[self.pair_first] & self.active[self.pair_second]
        # the 3-transmitter summary counts narrowband pairs by group (both on air, or not) with prefix sums
        self.pair_on_air: Bools = narrow_pair & self.pair_active
        self.pair_planned: Bools = narrow_pair & ~self.pair_active
        self.on_air_before: Ints = np.concatenate([[0], np.cumsum(self.pair_on_air)]).astype(np.int64)
        self.planned_before: Ints = np.concatenate([[0], np.cumsum(self.pair_planned)]).astype(np.int64)
        narrow = np.flatnonzero(narrow_pair)
        self.narrow_sum: Ints = self.pair_sum[narrow]
        self.narrow_first: Ints = self.pair_first[narrow]
        self.narrow_second: Ints = self.pair_second[narrow]
        wide = np.flatnonzero(~narrow_pair)
        self.wide_sum: Ints = self.pair_sum[wide]
        self.wide_first: Ints = self.pair_first[wide]
        self.wide_second: Ints = self.pair_second[wide]
        wide_span = self.half[self.wide_first] + self.half[self.wide_second]
        self.max_pair_span = int(wide_span.max()) if wide_span.size else 0
        # ... and the few pairs with a wideband member by the reach of each: sum -/+ its half bandwidths
        wide_on = self.pair_active[wide]
        self.wide_pairs_on_air = _Reach(self.wide_sum[wide_on], wide_span[wide_on])
        self.wide_pairs_planned = _Reach(self.wide_sum[~wide_on], wide_span[~wide_on])
        self.on_air_reach = _Reach(self.freq[self.active], self.half[self.active])
        self.planned_reach = _Reach(self.freq[~self.active], self.half[~self.active])

    def with_carrier(self, number: int, carrier: Carrier) -> Spectrum:
        """This spectrum with carrier ``number`` replaced (same id): its pair sums are taken out of the sorted
        pairs and put back where they belong, instead of sorting every pair again."""
        changed = copy.copy(self)
        changed.carriers = [*self.carriers[:number], carrier, *self.carriers[number + 1 :]]
        changed.freq, changed.half, changed.active = self.freq.copy(), self.half.copy(), self.active.copy()
        changed.freq[number] = to_hz(carrier.frequency_mhz)
        changed.half[number] = round(carrier.bandwidth_khz * 500)
        changed.active[number] = carrier.state is CarrierState.ACTIVE
        guards = self.settings.guards(carrier.family)
        changed.guard = {product: values.copy() for product, values in self.guard.items()}
        for product, values in changed.guard.items():
            values[number] = guard_hz(guards, product)
        kept = (self.pair_first != number) & (self.pair_second != number)
        others = np.delete(np.arange(self.n, dtype=np.int64), number)
        sums = changed.freq[number] + changed.freq[others]
        by_sum = np.argsort(sums, kind="stable")
        sums, others = sums[by_sum], others[by_sum]
        rest = self.pair_sum[kept]
        at = np.searchsorted(rest, sums, "right")
        changed.pair_sum = np.insert(rest, at, sums)
        changed.pair_first = np.insert(self.pair_first[kept], at, np.minimum(others, number))
        changed.pair_second = np.insert(self.pair_second[kept], at, np.maximum(others, number))
        changed._derive()
        return changed

    # every hit on a set of victims (the reference path: exact, one entry per product)

    def hits_on(self, victims: Ints) -> Iterator[Hits]:
        """Every intermodulation and spacing hit whose victim is in ``victims`` (carrier indices)."""
        if not victims.size or self.n < 2:
            return
        yield from self._two_tx(victims)
        if self.n >= 3:
            yield self._three_tx_hits(victims, self.pair_sum, self.pair_first, self.pair_second)
        yield self._spacing_hits(victims)

    def _two_tx(self, victims: Ints) -> Iterator[Hits]:
        for product, m in TWO_TX.items():
            if self.guard[product].any():
                yield self._two_tx_hits(victims, product, m)

    def _two_tx_hits(self, victims: Ints, product: Product, m: int) -> Hits:
        guard, freq, half = self.guard[product], self.freq, self.half
        # per (victim, f1): the room the victim and f1 give; f2 adds its own, searched apart by width
        window = (guard[victims] + half[victims])[:, np.newaxis] + m * half[np.newaxis, :]
        window = np.where(guard[victims][:, np.newaxis] > 0, window, -1)
        # f2 = (m*f1 - v) / (m-1) for the product to land on v exactly
        target = m * freq[np.newaxis, :] - freq[victims][:, np.newaxis]
        found = []
        for order, widest in ((self.narrow_order, 0), (self.wide_order, self.max_half)):
            values = freq[order]
            reach = np.where(window < 0, -1, window + (m - 1) * widest)
            lo = np.searchsorted(values, _ceil_div(target - reach, m - 1), "left").astype(np.int64)
            hi = np.searchsorted(values, (target + reach) // (m - 1), "right").astype(np.int64)
            rows, positions = _expand(lo, hi)
            found.append((victims[rows // self.n], rows % self.n, order[positions]))
        victim, first, second = (np.concatenate(column) for column in zip(*found, strict=True))
        return self._two_tx_kept(product, m, victim, first, second)

    def _two_tx_kept(self, product: Product, m: int, victim: Ints, first: Ints, second: Ints) -> Hits:
        guard, freq, half = self.guard[product], self.freq, self.half
        offset = m * freq[first] - (m - 1) * freq[second] - freq[victim]
        allowed = guard[victim] + half[victim] + m * half[first] + (m - 1) * half[second]
        keep = (
            (first != second)
            & (victim != first)
            & (victim != second)
            & (guard[victim] > 0)
            & (np.abs(offset) < allowed)
        )
        return Hits(product, victim[keep], np.stack([first[keep], second[keep]], axis=1), offset[keep])

    def _three_tx_hits(self, victims: Ints, sums: Ints, firsts: Ints, seconds: Ints) -> Hits:
        """3-transmitter hits on ``victims`` from the pairs given (sorted by sum)."""
        freq = self.freq
        window = int(self.guard[Product.IM3_3TX][victims].max()) + int(self.half[victims].max()) + 3 * self.max_half
        # f1 + f2 = v + f3 for the product to land on v exactly
        target = freq[victims][:, np.newaxis] + freq[np.newaxis, :]
        lo = np.searchsorted(sums, target - window, "left").astype(np.int64)
        hi = np.searchsorted(sums, target + window, "right").astype(np.int64)
        rows, positions = _expand(lo, hi)
        victim = victims[rows // self.n]
        return self._three_tx_kept(victim, firsts[positions], seconds[positions], rows % self.n)

    def _three_tx_kept(self, victim: Ints, first: Ints, second: Ints, third: Ints) -> Hits:
        guard, freq, half = self.guard[Product.IM3_3TX], self.freq, self.half
        offset = freq[first] + freq[second] - freq[third] - freq[victim]
        allowed = guard[victim] + half[victim] + half[first] + half[second] + half[third]
        keep = (
            (victim != third)
            & (first != victim)
            & (first != third)
            & (second != victim)
            & (second != third)
            & (guard[victim] > 0)
            & (np.abs(offset) < allowed)
        )
        sources = np.stack([first[keep], second[keep], third[keep]], axis=1)
        return Hits(Product.IM3_3TX, victim[keep], sources, offset[keep])

    def _spacing_hits(self, victims: Ints) -> Hits:
        spacing, freq, half = self.guard[Product.SPACING], self.freq, self.half
        window = int(spacing.max()) + int(half[victims].max()) + self.max_half
        centre = freq[victims]
        lo = np.searchsorted(self.sorted_freq, centre - window, "left").astype(np.int64)
        hi = np.searchsorted(self.sorted_freq, centre + window, "right").astype(np.int64)
        rows, positions = _expand(lo, hi)
        return self._spacing_kept(victims[rows], self.order[positions])

    def _spacing_kept(self, victim: Ints, other: Ints) -> Hits:
        spacing, freq, half = self.guard[Product.SPACING], self.freq, self.half
        offset = freq[other] - freq[victim]
        gap = np.abs(offset) - half[other] - half[victim]
        keep = (other != victim) & (gap < np.maximum(spacing[victim], spacing[other]))
        return Hits(Product.SPACING, victim[keep], other[keep][:, np.newaxis], offset[keep])

    # every hit a carrier takes part in, as victim or source (what one change can alter)

    def hits_involving(self, carrier: int) -> list[Hits] | None:
        """Every hit ``carrier`` takes part in, as victim or source: one batch per product; None when they
        are too many to list (a wideband carrier in a crowded plan takes part in millions of 3-transmitter
        products: a full check counts them instead)."""
        if self.n < 2:
            return []
        one = np.array([carrier], dtype=np.int64)
        everyone = np.arange(self.n, dtype=np.int64)
        freq, own = self.freq, int(self.freq[carrier])
        found = []
        for product, m in TWO_TX.items():
            if not self.guard[product].any():
                continue
            batches = [self._two_tx_hits(one, product, m)]
            reach = int(self.guard[product].max()) + 2 * m * self.max_half  # victim's and product's widths
            for first, second in ((np.full(self.n, carrier), everyone), (everyone, np.full(self.n, carrier))):
                products = m * freq[first] - (m - 1) * freq[second]
                rows, victims = self._near(products, reach)
                batches.append(self._two_tx_kept(product, m, victims, first[rows], second[rows]))
            found.append(_joined(batches))
        spacing = self._spacing_hits(one)
        mirrored = Hits(Product.SPACING, spacing.sources[:, 0], spacing.victim[:, np.newaxis], -spacing.offset_hz)
        found.append(_joined([spacing, mirrored]))
        if self.n < 3:
            return found
        # own + f_a = f_b + f_d: whichever of the four is the victim, the other three are its sources; per
        # partner a the room the guard, own and a give, plus the pair's own width (narrowband pairs apart)
        room = int(self.guard[Product.IM3_3TX].max()) + int(self.half[carrier]) + self.half
        pair_sets = (
            (self.narrow_sum, self.narrow_first, self.narrow_second, room),
            (self.wide_sum, self.wide_first, self.wide_second, room + self.max_pair_span),
        )
        windows = [
            (np.searchsorted(sums, own + freq - reach, "left"), np.searchsorted(sums, own + freq + reach, "right"))
            for sums, _, _, reach in pair_sets
        ]
        if sum(int(np.maximum(hi - lo, 0).sum()) for lo, hi in windows) > self.involving_budget:
            return None
        listed = []
        for (sums, firsts, seconds, _), (lo, hi) in zip(pair_sets, windows, strict=True):
            partner, positions = _expand(lo.astype(np.int64), hi.astype(np.int64))
            listed.append((partner, firsts[positions], seconds[positions], sums[positions]))
        partner, b, d, pair_sum = (np.concatenate(column) for column in zip(*listed, strict=True))
        clean = (partner != carrier) & (b != carrier) & (d != carrier) & (b != partner) & (d != partner)
        partner, b, d, pair_sum = partner[clean], b[clean], d[clean], pair_sum[clean]
        beyond = pair_sum - own - freq[partner]  # f_b + f_d - own - f_a
        widths = self.half[partner] + self.half[b] + self.half[d] + self.half[carrier]
        mine = np.full(partner.size, carrier, dtype=np.int64)
        low, high = np.minimum(mine, partner), np.maximum(mine, partner)
        guard = self.guard[Product.IM3_3TX]
        batches = []
        for victim, first, second, third, offset in (
            (partner, b, d, mine, beyond),
            (mine, b, d, partner, beyond),
            (b, low, high, d, -beyond),
            (d, low, high, b, -beyond),
        ):
            keep = (guard[victim] > 0) & (np.abs(offset) < guard[victim] + widths)
            sources = np.stack([first[keep], second[keep], third[keep]], axis=1)
            batches.append(Hits(Product.IM3_3TX, victim[keep], sources, offset[keep]))
        found.append(_joined(batches))
        return found

    def _near(self, products: Ints, reach: int) -> tuple[Ints, Ints]:
        """(product row, carrier) for every carrier within ``reach`` of a product."""
        lo = np.searchsorted(self.sorted_freq, products - reach, "left").astype(np.int64)
        hi = np.searchsorted(self.sorted_freq, products + reach, "right").astype(np.int64)
        rows, positions = _expand(lo, hi)
        return rows, self.order[positions]

    # findings: the closest hit per victim, product and severity, with the number of hits

    def findings_on(self, victims: Ints, products: Set[Product] = frozenset(GUARD_FIELD)) -> list[Finding]:
        """The intermodulation and spacing findings of ``victims``, of the ``products`` asked for."""
        found: list[Finding] = []
        if not victims.size or self.n < 2:
            return found
        for product, m in TWO_TX.items():
            if product in products and self.guard[product].any():
                found += self.summarise(self._two_tx_hits(victims, product, m))
        if Product.SPACING in products:
            found += self.summarise(self._spacing_hits(victims))
        if self.n >= 3 and Product.IM3_3TX in products:
            found += self._three_tx_findings(victims)
        return found

    def summarise(self, hits: Hits, counts: Ints | None = None, all_on_air: bool | None = None) -> list[Finding]:
        """One finding per (victim, severity): the hit with the smallest offset, and the sum of ``counts``
        (one per hit unless given: a counted row stands for many hits). ``all_on_air`` gives the severity
        of every hit when the caller counted by it (the named hit may then be only an example)."""
        return [
            self.finding(hits, at, total, "alert" if on_air else "warning")
            for at, total, on_air in self.groups(hits, counts, all_on_air)
        ]

    def groups(
        self, hits: Hits, counts: Ints | None = None, all_on_air: bool | None = None
    ) -> list[tuple[int, int, bool]]:
        """(index of the closest hit, number of hits, all on air) per (victim, severity) of ``hits``."""
        if not len(hits):
            return []
        if all_on_air is None:
            on_air = self.active[hits.victim]
            for column in range(hits.sources.shape[1]):
                on_air = on_air & self.active[hits.sources[:, column]]
        else:
            on_air = np.full(len(hits), all_on_air)
        key = hits.victim * 2 + on_air
        # one sort by (victim, severity, distance): the key above the 40 bits a distance in hertz needs
        ranked = np.argsort((key << 40) | np.abs(hits.offset_hz))
        ordered = key[ranked]
        starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
        weights = np.ones(len(hits), dtype=np.int64) if counts is None else counts
        totals = np.add.reduceat(weights[ranked], starts)
        closest = ranked[starts]
        return list(zip(closest.tolist(), totals.tolist(), (key[closest] % 2 == 1).tolist(), strict=True))

    def _three_tx_findings(self, victims: Ints) -> list[Finding]:
        """3-transmitter findings without listing every product: per (victim, third carrier) the pairs in the
        window are counted (narrowband pairs from prefix sums, pairs with a wideband member by their reach),
        less the pairs that contain the victim or the third carrier (counted from the carriers' reach), and
        the closest valid pair is looked up among the few pairs next to the target."""
        n, freq, half, active = self.n, self.freq, self.half, self.active
        victim = np.repeat(victims, n)
        third = np.tile(np.arange(n, dtype=np.int64), victims.size)
        distinct = victim != third
        victim, third = victim[distinct], third[distinct]
        guard = self.guard[Product.IM3_3TX][victim]
        target = freq[victim] + freq[third]
        # the room victim and third give; a pair adds its own half bandwidths
        window = np.where(guard > 0, guard + half[victim] + half[third], 0)
        open_window = window > 0
        lo = np.searchsorted(self.pair_sum, target - window, "right").astype(np.int64)
        hi = np.maximum(np.searchsorted(self.pair_sum, target + window, "left").astype(np.int64), lo)
        on_air = self.on_air_before[hi] - self.on_air_before[lo]
        planned = self.planned_before[hi] - self.planned_before[lo]
        if self.wide_sum.size:
            on_air += np.where(open_window, self.wide_pairs_on_air.within(target, window), 0)
            planned += np.where(open_window, self.wide_pairs_planned.within(target, window), 0)
        # pairs in the window that contain the victim or the third carrier: {victim, third} itself (always in
        # an open window), {victim, x} with |x - third| < window + the victim's and x's half bandwidths,
        # {third, y} with |y - victim| < window + the third's and y's
        apart = np.abs(freq[victim] - freq[third])
        v_on, t_on = active[victim], active[third]

        def near(reach: _Reach, centre: Ints, other: Ints, centre_in: Bools, other_in: Bools) -> Ints:
            radius = window + half[other]
            count = reach.within(freq[centre], radius) - centre_in - (other_in & (apart < radius + half[other]))
            return np.where(open_window, count, 0).astype(np.int64)

        on_near_third = near(self.on_air_reach, third, victim, t_on, v_on)
        planned_near_third = near(self.planned_reach, third, victim, ~t_on, ~v_on)
        on_near_victim = near(self.on_air_reach, victim, third, v_on, t_on)
        planned_near_victim = near(self.planned_reach, victim, third, ~v_on, ~t_on)
        on_air -= (open_window & v_on & t_on) + np.where(v_on, on_near_third, 0) + np.where(t_on, on_near_victim, 0)
        planned -= (
            (open_window & ~(v_on & t_on))
            + np.where(v_on, planned_near_third, on_near_third + planned_near_third)
            + np.where(t_on, planned_near_victim, on_near_victim + planned_near_victim)
        )
        # where the closest valid pair may be: a pair with a wideband member reaches further
        reach = np.where(open_window, window + self.max_pair_span, 0)
        lo = np.searchsorted(self.pair_sum, target - reach, "right").astype(np.int64)
        hi = np.maximum(np.searchsorted(self.pair_sum, target + reach, "left").astype(np.int64), lo)
        alert_row = v_on & t_on
        found: list[Finding] = []
        for alert in (True, False):
            count = np.where(alert_row, on_air, 0) if alert else planned + np.where(alert_row, 0, on_air)
            rows = np.flatnonzero(count > 0)
            if not rows.size:
                continue
            # an alert is all four on air; a warning is a planned pair, or any pair when victim or third is planned
            take_on_air = np.full(rows.size, True) if alert else ~alert_row[rows]
            positions = self._closest_pairs(
                _Rows(victim[rows], third[rows], target[rows], window[rows], take_on_air, not alert),
                lo[rows],
                hi[rows],
            )
            hits = Hits(
                Product.IM3_3TX,
                victim[rows],
                np.stack([self.pair_first[positions], self.pair_second[positions], third[rows]], axis=1),
                self.pair_sum[positions] - target[rows],
            )
            found += self.summarise(hits, count[rows], alert)
        return found

    def _closest_pairs(self, rows: _Rows, lo: Ints, hi: Ints) -> Ints:
        """Per row, the position of the pair nearest the target in [lo, hi) whose product reaches the victim,
        that holds neither the victim nor the third carrier and is of a group taken. The few pairs on either
        side of the target nearly always hold it; a row where they do not (a side neither exhausted nor
        holding one) is searched through its window, as far as a budget allows."""
        last = self.pair_sum.size - 1
        at = np.searchsorted(self.pair_sum, rows.target)
        position = np.clip(at[:, np.newaxis] + _AROUND[np.newaxis, :], 0, last)
        inside = (position >= lo[:, np.newaxis]) & (position < hi[:, np.newaxis])
        ok = inside & self._eligible(position, rows.column())
        distance = np.where(ok, np.abs(self.pair_sum[position] - rows.target[:, np.newaxis]), _FAR)
        closest = position[np.arange(rows.target.size), np.argmin(distance, axis=1)]
        side = _AROUND.size // 2
        left_open = ~ok[:, :side].any(axis=1) & (at - side > lo)
        right_open = ~ok[:, side:].any(axis=1) & (at + side < hi)
        unresolved = np.flatnonzero(left_open | right_open)
        if unresolved.size:
            # Outward from the target, as far as a budget shared by all such rows allows: a plan with
            # hundreds of carriers on a few frequencies has windows of millions of pairs per row, and listing
            # them all held gigabytes and the event loop for minutes. The counts and severities come from
            # the prefix sums either way; such a row names the closest valid pair within its reach, or, when
            # none is there, the nearest pair the first look found (an example that may hold the victim).
            reach = max(side, _SEARCH_BUDGET // (2 * unresolved.size))
            near_lo = np.maximum(lo[unresolved], at[unresolved] - reach)
            near_hi = np.minimum(hi[unresolved], at[unresolved] + reach)
            self._search(closest, unresolved, near_lo, near_hi, rows)
        found: Ints = closest.astype(np.int64)
        return found

    def _search(self, closest: Ints, unresolved: Ints, lo: Ints, hi: Ints, rows: _Rows) -> None:
        """Set ``closest`` of each row in ``unresolved`` that has a valid pair in its [lo, hi) to the nearest."""
        at, spots = _expand(lo, hi)
        ok = self._eligible(spots, rows.taken(unresolved[at]))
        at, spots = at[ok], spots[ok]
        if at.size:
            distance = np.abs(self.pair_sum[spots] - rows.target[unresolved[at]])
            ranked = np.lexsort((distance, at))
            first = np.flatnonzero(np.concatenate([[True], at[ranked][1:] != at[ranked][:-1]]))
            closest[unresolved[at[ranked][first]]] = spots[ranked][first]

    def _eligible(self, position: Ints, rows: _Rows) -> Bools:
        first, second = self.pair_first[position], self.pair_second[position]
        group = (self.pair_active[position] & rows.take_on_air) | (~self.pair_active[position] & rows.take_planned)
        reaches = np.abs(self.pair_sum[position] - rows.target) < rows.window + self.half[first] + self.half[second]
        eligible: Bools = (
            group
            & reaches
            & (first != rows.victim)
            & (first != rows.third)
            & (second != rows.victim)
            & (second != rows.third)
        )
        return eligible

    def finding(self, hits: Hits, at: int, count: int, severity: Severity) -> Finding:
        victim = int(hits.victim[at])
        sources = [int(source) for source in hits.sources[at]]
        offset = int(hits.offset_hz[at])
        product = hits.product
        if product is Product.SPACING:
            guard = max(int(self.guard[product][victim]), int(self.guard[product][sources[0]]))
            product_mhz = None
        else:
            guard = int(self.guard[product][victim])
            product_mhz = (int(self.freq[victim]) + offset) / HZ_PER_MHZ
        return Finding(
            product=product,
            victim=self.carriers[victim].id,
            sources=tuple(self.carriers[source].id for source in sources),
            product_mhz=product_mhz,
            offset_khz=offset / HZ_PER_KHZ,
            guard_khz=guard / HZ_PER_KHZ,
            severity=severity,
            count=count,
        )

    def placement_findings(self, victims: Iterable[int], exclusions: Sequence[Exclusion]) -> list[Finding]:
        """Carriers inside an exclusion, or outside their device's tunable band."""
        found: list[Finding] = []
        for number in victims:
            carrier = self.carriers[number]
            severity: Severity = "alert" if self.active[number] else "warning"
            for exclusion in exclusions:
                if carrier.low_mhz <= exclusion.high_mhz and carrier.high_mhz >= exclusion.low_mhz:
                    centre = (exclusion.low_mhz + exclusion.high_mhz) / 2
                    name = exclusion.label or f"{exclusion.low_mhz:g}-{exclusion.high_mhz:g} MHz"
                    offset = round((carrier.frequency_mhz - centre) * 1000, 3)
                    found.append(Finding(Product.EXCLUSION, carrier.id, (name,), None, offset, 0.0, severity))
            band = carrier.band
            if band is not None and not band.contains(carrier.low_mhz, carrier.high_mhz):
                edge = band.low_mhz if carrier.low_mhz < band.low_mhz else band.high_mhz
                offset = round((carrier.frequency_mhz - edge) * 1000, 3)
                name = f"{band.low_mhz:g}-{band.high_mhz:g} MHz"
                found.append(Finding(Product.OUT_OF_BAND, carrier.id, (name,), None, offset, 0.0, severity))
        return found


_AROUND: Final = np.arange(-4, 4, dtype=np.int64)  # pairs looked at on either side of a 3-transmitter target
_FAR: Final = np.int64(1) << 60
# Pairs looked at, in all, for the 3-transmitter rows the few pairs next to the target could not settle.
_SEARCH_BUDGET: Final = 1 << 20
# Candidate products listed for one changed carrier before a re-check gives up and checks the plan in full: as
# many as the (victim, third carrier) rows a full check counts, so a re-check never costs much more than one.
_INVOLVING_LEAST: Final = 1 << 16


def finding_view(finding: Finding, labels: Mapping[str, str]) -> dict[str, Any]:
    """A finding as REST and MQTT show it, with the carriers' labels next to their ids."""
    return {
        "kind": finding.kind,
        "product": finding.product.value,
        "order": finding.order,
        "severity": finding.severity,
        "victim": finding.victim,
        "victim_label": labels.get(finding.victim, finding.victim),
        "sources": list(finding.sources),
        "source_labels": [labels.get(source, source) for source in finding.sources],
        "product_mhz": finding.product_mhz,
        "offset_khz": finding.offset_khz,
        "guard_khz": finding.guard_khz,
        "count": finding.count,
    }


def _group_key(finding: Finding) -> tuple[str, Product, Severity, tuple[str, ...]]:
    placement = finding.product in (Product.EXCLUSION, Product.OUT_OF_BAND)
    return finding.victim, finding.product, finding.severity, finding.sources if placement else ()


def merge_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Findings of one (victim, product, severity) as one: counts added, the closest kept."""
    merged: dict[tuple[str, Product, str, tuple[str, ...]], Finding] = {}
    for finding in findings:
        key = _group_key(finding)
        seen = merged.get(key)
        if seen is None:
            merged[key] = finding
        else:
            closest = finding if abs(finding.offset_khz) < abs(seen.offset_khz) else seen
            merged[key] = closest.counted(seen.count + finding.count)
    return list(merged.values())


def check(carriers: Sequence[Carrier], exclusions: Sequence[Exclusion], settings: PlanSettings) -> list[Finding]:
    """Every finding of a plan (a full check)."""
    spectrum = Spectrum(carriers, settings)
    return findings_for(spectrum, range(spectrum.n), exclusions)


def findings_for(
    spectrum: Spectrum,
    victims: Iterable[int],
    exclusions: Sequence[Exclusion],
    cancelled: Callable[[], bool] = never,
) -> list[Finding]:
    """The findings on ``victims``, a step of about ROWS_PER_STEP rows at a time; ``cancelled`` is asked before
    each step, and a yes raises CheckCancelled (a check of seconds, run in a worker thread, stops within a step)."""
    chosen = np.array(sorted(victims), dtype=np.int64)
    found: list[Finding] = []
    step = max(1, ROWS_PER_STEP // max(1, spectrum.n))
    for start in range(0, chosen.size, step):
        if cancelled():
            raise CheckCancelled
        found += spectrum.findings_on(chosen[start : start + step])
    found += spectrum.placement_findings(chosen.tolist(), exclusions)
    return found


GroupKey = tuple[Product, Severity, tuple[str, ...]]


class PlanChecker:
    """A full check once, then re-checks of only what a change can alter.

    ``update`` compares the new carriers with the last ones by id. Every hit a changed carrier takes part
    in (as victim or source) is taken away as it was and added as it is now, which keeps each finding's
    count right; a victim whose closest hit involved a changed carrier, and every changed carrier itself,
    is judged again in full. Many changes at once, or other exclusions, re-check everything."""

    FULL_CHECK_OVER: Final = 16  # changed carriers beyond which a full check is cheaper

    def __init__(self, settings: PlanSettings, cancelled: Callable[[], bool] = never) -> None:
        self.settings = settings
        # asked between the steps of a check: True stops it with CheckCancelled, and leaves this checker's state
        # undefined (its next use must be a full check)
        self.cancelled = cancelled
        self.spectrum = Spectrum([], settings)
        self.exclusions: tuple[Exclusion, ...] = ()
        self.by_victim: dict[str, dict[GroupKey, Finding]] = {}

    @property
    def findings(self) -> list[Finding]:
        return [finding for found in self.by_victim.values() for finding in found.values()]

    def check(self, carriers: Sequence[Carrier], exclusions: Sequence[Exclusion]) -> list[Finding]:
        self.spectrum = Spectrum(carriers, self.settings)
        self.exclusions = tuple(exclusions)
        self.by_victim = {carrier.id: {} for carrier in carriers}
        self._store(findings_for(self.spectrum, range(self.spectrum.n), self.exclusions, self.cancelled))
        return self.findings

    def _store(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.by_victim[finding.victim][_group_key(finding)[1:]] = finding

    def update(self, carriers: Sequence[Carrier], exclusions: Sequence[Exclusion] | None = None) -> list[Finding]:
        if exclusions is not None and tuple(exclusions) != self.exclusions:
            return self.check(carriers, exclusions)
        old = self.spectrum
        previous = {carrier.id: carrier for carrier in old.carriers}
        current = {carrier.id: carrier for carrier in carriers}
        changed = {cid for cid, carrier in current.items() if previous.get(cid) != carrier}
        removed = set(previous) - set(current)
        if len(changed) + len(removed) > self.FULL_CHECK_OVER:
            return self.check(carriers, self.exclusions)
        new = self._next(old, carriers, changed, removed)
        self.spectrum = new
        by_victim = {cid: self.by_victim.get(cid, {}) for cid in current}
        self.by_victim = by_victim
        moved = changed | removed
        again = set(changed)  # judged again in full
        lost: dict[str, set[Product]] = {}  # products of a victim whose closest hit involved a changed carrier
        # per (victim, product, severity): the change in the number of hits, and the closest new hit
        deltas: dict[tuple[str, GroupKey], _Delta] = {}
        for spectrum, ids, sign in ((old, moved, -1), (new, changed, 1)):
            done: list[int] = []
            for cid in sorted(ids & set(spectrum.index)):
                if self.cancelled():
                    raise CheckCancelled
                number = spectrum.index[cid]
                involving = spectrum.hits_involving(number)
                if involving is None:
                    return self.check(carriers, self.exclusions)
                for hits in involving:
                    if done:  # a hit of two changed carriers is counted with the first of them only
                        involved = np.concatenate([hits.victim[:, np.newaxis], hits.sources], axis=1)
                        fresh: Bools = np.asarray(~np.isin(involved, done).any(axis=1), dtype=np.bool_)
                        hits = _only(hits, fresh)
                    self._note(deltas, spectrum, hits, sign)
                done.append(number)
        for (victim, key), delta in deltas.items():
            found = by_victim.get(victim)
            if found is None or victim in again or key[0] in lost.get(victim, ()):
                continue
            seen = found.get(key)
            count = (seen.count if seen is not None else 0) + delta.count
            if count <= 0:
                found.pop(key, None)
            elif seen is not None and moved & {seen.victim, *seen.sources}:
                lost.setdefault(victim, set()).add(key[0])  # its closest hit is gone: find the next closest
            elif delta.closest is not None and (
                seen is None or delta.distance < abs(seen.offset_khz) * HZ_PER_KHZ - 0.5
            ):
                spectrum, hits, at = delta.closest
                found[key] = spectrum.finding(hits, at, count, key[1])
            elif seen is not None:
                found[key] = seen.counted(count)
        for cid in again & set(current):
            by_victim[cid] = {}
        again_numbers = [new.index[cid] for cid in again if cid in new.index]
        self._store(findings_for(new, again_numbers, self.exclusions, self.cancelled))
        for product in {product for products in lost.values() for product in products}:
            victims = [victim for victim, products in lost.items() if product in products]
            for victim in victims:
                for key in [key for key in by_victim[victim] if key[0] is product]:
                    del by_victim[victim][key]
            self._store(new.findings_on(np.array([new.index[v] for v in victims], dtype=np.int64), {product}))
        return self.findings

    @staticmethod
    def _note(deltas: dict[tuple[str, GroupKey], _Delta], spectrum: Spectrum, hits: Hits, sign: int) -> None:
        groups = spectrum.groups(hits)
        if not groups:
            return
        closest = [at for at, _, _ in groups]
        victims = [spectrum.carriers[victim].id for victim in hits.victim[closest].tolist()]
        distances = np.abs(hits.offset_hz[closest]).tolist()
        for (at, count, alert), victim, distance in zip(groups, victims, distances, strict=True):
            key: GroupKey = (hits.product, "alert" if alert else "warning", ())
            delta = deltas.get((victim, key))
            if delta is None:
                delta = deltas[victim, key] = _Delta()
            delta.count += sign * count
            if sign > 0 and (delta.closest is None or distance < delta.distance):
                delta.closest, delta.distance = (spectrum, hits, at), distance

    def _next(self, old: Spectrum, carriers: Sequence[Carrier], changed: set[str], removed: set[str]) -> Spectrum:
        """The spectrum of ``carriers``: one carrier retuned or switched is patched in, anything else built."""
        if len(changed) == 1 and not removed and [c.id for c in carriers] == [c.id for c in old.carriers]:
            [cid] = changed
            return old.with_carrier(old.index[cid], carriers[old.index[cid]])
        return Spectrum(carriers, self.settings)


@dataclass
class _Delta:
    count: int = 0
    closest: tuple[Spectrum, Hits, int] | None = None
    distance: int = 0


def _joined(batches: Sequence[Hits]) -> Hits:
    return Hits(
        batches[0].product,
        np.concatenate([batch.victim for batch in batches]),
        np.concatenate([batch.sources for batch in batches]),
        np.concatenate([batch.offset_hz for batch in batches]),
    )


def _only(hits: Hits, keep: Bools) -> Hits:
    return Hits(hits.product, hits.victim[keep], hits.sources[keep], hits.offset_hz[keep])
