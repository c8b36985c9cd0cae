"""The frequency check and search (hub.frequency), held to the brute force of tests/frequency_reference.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.frequency import engine as frequency_check
from hub.frequency.engine import HZ_PER_KHZ, PlanChecker, Product, Spectrum, check, to_hz
from hub.frequency.plan import (
    Band,
    Carrier,
    CarrierState,
    Exclusion,
    TvGrid,
    merge_identical,
    tv_channel_range,
    tv_channels_in,
)
from hub.frequency.search import SearchError, Slot, candidate_grid, coordinate, margins, narrowed, suggest
from hub.frequency.settings import PlanSettings, Profile
from tests.frequency_reference import brute_clean, brute_hits, brute_margin, brute_summary

STANDARD = PlanSettings()
WITH_SEVENTH = PlanSettings(seventh_order=True)

# carriers on a 5 kHz raster in a 3 MHz band: dense enough that products land on carriers often
frequencies = st.integers(min_value=0, max_value=600).map(lambda step: 470 + step * 0.005)
carrier_specs = st.tuples(
    frequencies,
    st.sampled_from([CarrierState.ACTIVE, CarrierState.PLANNED]),
    st.sampled_from([0.0, 0.0, 0.0, 200.0, 8000.0]),
    st.sampled_from([None, "ulxd", "ew-g4", "spectera"]),
)


def plan_of(specs: list[tuple[float, CarrierState, float, str | None]]) -> list[Carrier]:
    return [
        Carrier(f"c{n}", mhz, state, bandwidth_khz=bandwidth, family=family)
        for n, (mhz, state, bandwidth, family) in enumerate(specs)
    ]


def summary(findings: list) -> set[tuple[str, str, str, int, int]]:
    return {
        (f.product.value, f.victim, f.severity, round(abs(f.offset_khz) * HZ_PER_KHZ), f.count)
        for f in findings
        if f.product not in (Product.EXCLUSION, Product.OUT_OF_BAND)
    }


def test_the_hand_worked_example_of_the_docs() -> None:
    """docs/frequency-coordination.md: 2 x 470.200 - 470.600 = 469.800 MHz, on the third carrier."""
    plan = [Carrier("A", 470.200), Carrier("B", 470.600), Carrier("C", 469.800)]
    [finding, *others] = [f for f in check(plan, [], STANDARD) if f.victim == "C"]
    assert not others
    assert (finding.product, finding.sources, finding.product_mhz, finding.offset_khz) == (
        Product.IM3_2TX,
        ("A", "B"),
        469.8,
        0.0,
    )
    assert finding.order == 3 and finding.severity == "alert" and finding.kind == "intermod"


@settings(max_examples=60, deadline=None)
@given(st.lists(carrier_specs, min_size=0, max_size=9), st.booleans())
def test_the_fast_search_finds_exactly_what_the_brute_force_finds(specs: list, seventh: bool) -> None:
    carriers = plan_of(specs)
    chosen = WITH_SEVENTH if seventh else STANDARD
    spectrum = Spectrum(carriers, chosen)
    fast = {
        (hits.product, int(v), tuple(int(s) for s in sources), int(offset))
        for hits in spectrum.hits_on(np.arange(len(carriers), dtype=np.int64))
        for v, sources, offset in zip(hits.victim, hits.sources, hits.offset_hz, strict=True)
    }
    assert fast == brute_hits(carriers, chosen)
    assert summary(check(carriers, [], chosen)) == brute_summary(carriers, chosen)


@settings(max_examples=40, deadline=None)
@given(st.lists(carrier_specs, min_size=3, max_size=9))
def test_the_closest_pair_search_is_exact_when_its_first_look_misses(specs: list) -> None:
    """With one pair looked at on either side of a target, most closest pairs come from the full search of
    the window: both paths give the brute force's answer."""
    carriers = plan_of(specs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frequency_check, "_AROUND", np.arange(-1, 1, dtype=np.int64))
        assert summary(check(carriers, [], STANDARD)) == brute_summary(carriers, STANDARD)


crowded_specs = st.tuples(
    st.sampled_from([470.0, 470.4, 470.8]),
    st.sampled_from([CarrierState.ACTIVE, CarrierState.PLANNED]),
    st.just(0.0),
    st.just(None),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(crowded_specs, min_size=3, max_size=9))
def test_a_crowded_plan_keeps_exact_counts_when_the_closest_pair_search_runs_out(specs: list) -> None:
    """Hundreds of carriers on a few frequencies gave windows of millions of pairs per row; the search for
    the closest valid pair now stops at a budget. What it finds may be less close; the counts stay exact."""
    carriers = plan_of(specs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frequency_check, "_AROUND", np.arange(-1, 1, dtype=np.int64))
        patch.setattr(frequency_check, "_SEARCH_BUDGET", 2)
        fast = {entry[:3] + entry[4:] for entry in summary(check(carriers, [], STANDARD))}
    assert fast == {entry[:3] + entry[4:] for entry in brute_summary(carriers, STANDARD)}


@settings(max_examples=40, deadline=None)
@given(st.lists(carrier_specs, min_size=1, max_size=9), st.data())
def test_a_re_check_after_changes_equals_a_full_check(specs: list, data: st.DataObject) -> None:
    carriers = plan_of(specs)
    checker = PlanChecker(STANDARD)
    checker.check(carriers, [])
    for step in range(3):
        at = data.draw(st.integers(0, len(carriers) - 1))
        action = data.draw(st.sampled_from(["move", "switch", "remove", "add"]))
        if action == "move":
            carriers[at] = Carrier(carriers[at].id, data.draw(frequencies), carriers[at].state)
        elif action == "switch":
            state = CarrierState.PLANNED if carriers[at].state is CarrierState.ACTIVE else CarrierState.ACTIVE
            carriers[at] = Carrier(carriers[at].id, carriers[at].frequency_mhz, state, bandwidth_khz=200.0)
        elif action == "remove" and len(carriers) > 1:
            del carriers[at]
        else:
            carriers.append(Carrier(f"new{step}", data.draw(frequencies)))
        assert summary(checker.update(carriers)) == summary(check(carriers, [], STANDARD))


def crowded_plan(narrowband: int, *, wideband: bool) -> list[Carrier]:
    """``narrowband`` carriers at random on a 25 kHz raster in 470-480 MHz (the auditor's crowded plan), and
    with ``wideband`` two 8 MHz Spectera carriers next to them."""
    rnd = np.random.default_rng(5)
    plan = [Carrier(f"d{n}", 470 + int(step) * 0.025) for n, step in enumerate(rnd.integers(0, 401, narrowband))]
    if wideband:
        plan += [Carrier(f"wmas{n}", mhz, bandwidth_khz=8000, family="spectera") for n, mhz in enumerate((474, 482))]
    return plan


def test_a_wideband_carrier_does_not_make_every_triple_of_a_crowded_plan_a_candidate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every search window was widened by the widest carrier of the plan: with one 8 MHz carrier in it, every
    narrowband pair and triple became a candidate, and 600 crowded carriers froze a hub for minutes and
    gigabytes. The candidates listed now grow with the square of the plan, as without the wideband ones."""
    listed = [0]

    def counted(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, positions = expand(lo, hi)
        listed[0] += rows.size
        return rows, positions

    expand = frequency_check._expand
    monkeypatch.setattr(frequency_check, "_expand", counted)

    def candidates(narrowband: int) -> tuple[int, int]:
        plan = crowded_plan(narrowband, wideband=True)
        listed[0] = 0
        checker = PlanChecker(STANDARD)
        checker.check(plan, [])
        full = listed[0]
        listed[0] = 0
        checker.update([*plan, Carrier("one-more", 475.1)])
        return full, listed[0]

    (small_full, _), (large_full, large_update) = candidates(100), candidates(200)
    carriers = 202
    assert large_full < 64 * carriers**2, "a full check lists candidates in proportion to the pairs, not triples"
    assert large_full < 5 * small_full, "twice the carriers: four times the work, not eight"
    assert large_update < 64 * carriers**2, "a re-check lists no more (beyond that it checks in full)"


@settings(max_examples=30, deadline=None)
@given(st.lists(frequencies, min_size=0, max_size=5, unique=True), st.sampled_from(list(Profile)))
def test_a_suggestion_is_clean_and_has_the_largest_margin_there_is(fixed_mhz: list[float], profile: Profile) -> None:
    chosen = PlanSettings(profile=profile)
    fixed = [Carrier(f"f{n}", mhz) for n, mhz in enumerate(fixed_mhz)]
    band = Band(470.0, 473.0, 25.0)
    moving = Carrier("moving", 471.0)
    best = suggest(moving, fixed, band, chosen, count=3)
    grid = candidate_grid(band)
    exact = [brute_margin(int(x), fixed, chosen) for x in grid]
    assert np.array_equal(margins(grid, fixed, chosen), np.minimum(exact, 1 << 60)), "exact for narrowband"
    if max(exact) < 0:
        assert best == []
        return
    assert best[0].margin_khz * HZ_PER_KHZ == min(max(exact), 3_000_000), "at most the band's width"
    for candidate in best:
        placed = [*fixed, Carrier("moving", candidate.frequency_mhz)]
        assert not [f for f in check(placed, [], chosen) if "moving" in (f.victim, *f.sources)]


def test_one_wideband_carrier_leaves_the_rest_of_the_band_to_suggestions() -> None:
    """Every candidate was widened by the widest fixed carrier (2 x 4 MHz for spacing, 24 MHz for 3f1-2f2):
    one 8 MHz carrier anywhere left nothing to suggest (an outside audit: 284 clean frequencies by the brute
    force, none by the hub). Each carrier now keeps its own width: what the brute force finds clean is found,
    and nothing else."""
    fixed = [Carrier("a", 600.0), Carrier("b", 600.5), Carrier("c", 602.0),
             Carrier("wmas", 650.0, bandwidth_khz=8000, family="spectera")]  # fmt: skip
    band = Band(590.0, 700.0, 250.0)
    found = suggest(Carrier("x", 600.5), fixed, band, STANDARD, count=1000)
    clean = [int(x) for x in candidate_grid(band) if brute_clean(int(x), fixed, STANDARD)]
    assert clean, "the brute force finds clean frequencies"
    assert sorted(to_hz(c.frequency_mhz) for c in found) == clean
    assert all(not (646.0 <= c.frequency_mhz <= 654.0) for c in found), "never inside the wide carrier"


@settings(max_examples=40, deadline=None)
@given(st.lists(carrier_specs, min_size=0, max_size=5), st.sampled_from([0.0, 200.0, 8000.0]))
def test_a_suggestion_among_carriers_of_any_width_is_clean_by_the_full_check(specs: list, bandwidth: float) -> None:
    fixed = plan_of(specs)
    band = Band(469.0, 474.0, 100.0)
    moving = Carrier("moving", 471.0, bandwidth_khz=bandwidth)
    for candidate in suggest(moving, fixed, band, STANDARD, count=60):
        assert brute_clean(to_hz(candidate.frequency_mhz), fixed, STANDARD, bandwidth_khz=bandwidth)


def test_a_suggestion_prefers_the_smallest_retune_among_equal_margins() -> None:
    [best] = suggest(Carrier("x", 475.0), [], Band(470.0, 480.0, 25.0), STANDARD, count=1)
    assert best.frequency_mhz == 475.0 and best.margin_khz == 10_000, "alone in the band: the band's width"


def test_a_suggestion_keeps_to_the_range_the_step_and_out_of_exclusions() -> None:
    band = Band(470.0, 490.0, 25.0)
    tv = Exclusion.tv(TvGrid.EU, 22)  # 478-486 MHz
    found = suggest(Carrier("x", 480.0), [], band, STANDARD, within=(477.0, 487.0), step_khz=100, exclusions=[tv])
    assert found and all(477.0 <= c.frequency_mhz <= 478.0 or 486.0 <= c.frequency_mhz <= 487.0 for c in found)
    assert all(round(c.frequency_mhz * 10) == c.frequency_mhz * 10 for c in found), "on the 100 kHz step"
    assert not [c for c in found if tv.low_mhz <= c.frequency_mhz <= tv.high_mhz]


def test_a_suggestion_in_a_whole_range_stays_near_where_the_receiver_tunes() -> None:
    """A Shure receiver's range is the protocol's 100-999.999 MHz at 1 kHz: 900,000 candidates were refused, and
    in a crowded plan the only room of 1 MHz was hundreds of MHz away (an outside audit saw 583.95 -> 910.95)."""
    whole = Band(100.0, 999.999, 1.0, whole_range=True)
    crowd = [Carrier(f"c{n}", 560.0 + n * 1.3) for n in range(30)]  # 560-598 MHz, products all around
    found = suggest(Carrier("x", 583.95, band=whole), crowd, whole, STANDARD)
    assert found, "something clean near 583.95"
    assert all(abs(c.frequency_mhz - 583.95) <= 24 for c in found), [c.frequency_mhz for c in found]
    assert abs(found[0].frequency_mhz - 583.95) <= 5, "the nearest 5 MHz first"
    assert all(round(c.frequency_mhz * 40) == c.frequency_mhz * 40 for c in found), "on a 25 kHz grid"
    findings = check([*crowd, Carrier("x", found[0].frequency_mhz)], [], STANDARD)
    assert [f for f in findings if "x" in (f.victim, *f.sources)] == [], "clean by the full check"


def test_a_whole_range_suggestion_stays_inside_the_receivers_band_edge_when_that_is_clean() -> None:
    """An EW-DX at 606.9 MHz in its 470.2-607.8 MHz band, known to the hub only as the plugin's 470-1075 MHz:
    the most room was past the band edge, where there are no carriers, and 611.55 MHz was suggested (the
    receiver answered "406 not acceptable"; an outside audit). Modest room near where it tunes wins now."""
    whole = Band(470.0, 1075.0, 25.0, whole_range=True)
    others = [Carrier("a", 600.0), Carrier("b", 601.0), Carrier("c", 603.5)]
    found = suggest(Carrier("x", 606.9, band=whole), others, whole, STANDARD)
    assert found and found[0].frequency_mhz < 607.8 and abs(found[0].frequency_mhz - 606.9) <= 0.3, found
    assert brute_clean(to_hz(found[0].frequency_mhz), others, STANDARD)


def test_a_band_given_with_the_request_wins_over_the_carriers_own() -> None:
    """A configured 470-520 MHz band was applied on top of a requested 534-598 MHz: nothing was clean."""
    requested = Band(534.0, 598.0, 25.0)
    found = suggest(Carrier("x", 500.0, band=Band(470.0, 520.0, 25.0)), [], requested, STANDARD)
    assert found and all(534.0 <= c.frequency_mhz <= 598.0 for c in found)


def test_a_step_off_the_bands_grid_is_refused() -> None:
    """A 30 kHz step in a 25 kHz band gave frequencies the receiver refuses (498.01 MHz)."""
    with pytest.raises(SearchError, match="not a multiple of the band's 25 kHz"):
        suggest(Carrier("x", 498.0), [], Band(470.2, 515.8, 25.0, whole_range=True), STANDARD, step_khz=30)
    found = suggest(Carrier("x", 498.0), [], Band(470.0, 514.0, 25.0), STANDARD, step_khz=50)
    assert found and all(round((c.frequency_mhz - 470.0) * 20, 6).is_integer() for c in found)


def test_two_narrowband_channels_of_one_receiver_on_one_frequency_are_two_carriers_that_collide() -> None:
    """They were merged into one carrier, so the collision was never flagged (an outside audit)."""
    same = [Carrier(f"rx:{n}", 518.0, device_id="rx", channels=(n,)) for n in (1, 2)]
    assert [c.id for c in merge_identical(same)] == ["rx:1", "rx:2"]
    found = check(merge_identical(same), [], STANDARD)
    assert {(f.product, f.victim, f.severity) for f in found} == {
        (Product.SPACING, "rx:1", "alert"),
        (Product.SPACING, "rx:2", "alert"),
    }


def test_a_search_refuses_an_empty_range_and_a_step_too_fine() -> None:
    with pytest.raises(SearchError):
        candidate_grid(Band(470.0, 480.0), within=(500.0, 510.0))
    with pytest.raises(SearchError):
        candidate_grid(Band(470.0, 870.0, 0.001))


def test_a_coordinated_group_is_compatible_with_itself_and_the_fixed_carriers() -> None:
    fixed = [Carrier("iem", 471.100)]
    result = coordinate(8, fixed, Band(470.0, 486.0, 25.0), STANDARD, backups=2)
    assert len(result.frequencies) == 8 and len(result.backups) == 2 and not result.notes
    placed = fixed + [Carrier(f"n{n}", c.frequency_mhz) for n, c in enumerate(result.frequencies + result.backups)]
    assert check(placed, [], STANDARD) == []


def test_each_frequency_of_a_group_is_on_its_own_channels_grid_and_clean_with_its_width() -> None:
    """A group's n-th frequency is searched on the n-th channel's grid (its band within the request's range,
    on its step) with its carrier's width and family: the set passes the full check, each inside its band."""
    wanted = Band(470.0, 560.0, 25.0)
    spectera, ulxd = Band(470.0, 700.0, 1000.0), Band(470.0, 534.0, 25.0)
    slots = [
        Slot(narrowed(spectera, (wanted.low_mhz, wanted.high_mhz)), spectera, "spectera", 8000.0),
        Slot(narrowed(ulxd, (wanted.low_mhz, wanted.high_mhz), 50.0), ulxd, "ulxd"),
        Slot(narrowed(ulxd, (wanted.low_mhz, wanted.high_mhz)), ulxd, "ulxd"),
    ]
    fixed = [Carrier("iem", 480.1)]
    result = coordinate(3, fixed, wanted, STANDARD, slots=slots)
    assert len(result.frequencies) == 3 and not result.notes
    first, second, third = (round(c.frequency_mhz * 1000) for c in result.frequencies)
    assert first % 1000 == 0 and 474_000 <= first <= 560_000, first  # whole MHz, its 8 MHz inside the band
    assert min(second, third) >= 470_000 and max(second, third) <= 534_000, (second, third)
    assert second % 50 == 0 and third % 25 == 0
    placed = fixed + [
        Carrier(f"n{n}", c.frequency_mhz, bandwidth_khz=slot.bandwidth_khz, family=slot.family, band=slot.band)
        for n, (c, slot) in enumerate(zip(result.frequencies, slots, strict=True))
    ]
    assert check(placed, [], STANDARD) == []
    with pytest.raises(SearchError, match="not a multiple"):
        narrowed(ulxd, (470.0, 480.0), 5.0)
    with pytest.raises(SearchError, match="200-240 MHz holds no tunable frequency"):
        narrowed(ulxd, (200.0, 240.0))
    assert narrowed(ulxd, (470.01, 480.0)).low_mhz == 470.025, "the first frequency of the band's own grid"


def test_a_band_too_small_for_the_group_says_how_many_fit() -> None:
    result = coordinate(20, [], Band(470.0, 471.0, 25.0), STANDARD)
    assert len(result.frequencies) < 20 and "only" in result.notes[0]


def test_identical_frequencies_on_one_device_are_one_carrier() -> None:
    states = {1: CarrierState.ACTIVE, 2: CarrierState.PLANNED, 3: CarrierState.PLANNED, 4: CarrierState.PLANNED}
    channels = [
        Carrier(f"spectera-1:{n}", 482.0 if n % 2 else 474.0, state, 6000, "spectera", "", "spectera-1", (n,))
        for n, state in states.items()
    ]
    merged = merge_identical([*channels, Carrier("other:1", 474.0, device_id="other", channels=(1,))])
    assert [(c.id, c.frequency_mhz, c.state) for c in merged] == [
        ("spectera-1:1+3", 482.0, CarrierState.ACTIVE),
        ("spectera-1:2+4", 474.0, CarrierState.PLANNED),
        ("other:1", 474.0, CarrierState.ACTIVE),
    ]
    found = check(merged, [], STANDARD)
    [spacing] = [f for f in found if f.victim == "other:1" and f.product is Product.SPACING]
    assert spacing.sources == ("spectera-1:2+4",) and spacing.severity == "warning"
    # the 2f1-f2 product of two 6 MHz carriers is 18 MHz wide: 2 x 474 - 482 = 466 MHz reaches 474 MHz
    [wide] = [f for f in found if f.victim == "other:1" and f.product is Product.IM3_2TX]
    assert wide.sources == ("spectera-1:2+4", "spectera-1:1+3") and wide.offset_khz == -8000


def test_tv_grids_and_exclusions() -> None:
    assert tv_channel_range(TvGrid.US, 14) == (470.0, 476.0)
    assert tv_channel_range(TvGrid.EU, 21) == (470.0, 478.0)
    assert tv_channel_range(TvGrid.EU, 48) == (686.0, 694.0)
    assert [number for number, _, _ in tv_channels_in(TvGrid.US, 475.0, 483.0)] == [14, 15, 16]
    with pytest.raises(ValueError, match="14 to 36"):
        tv_channel_range(TvGrid.US, 13)
    with pytest.raises(ValueError, match="14 to 36"):  # 38-51 went to mobile broadband in the 600 MHz repack
        tv_channel_range(TvGrid.US, 38)
    plan = [
        Carrier("in-tv", 474.0),
        Carrier("planned-in-range", 500.5, CarrierState.PLANNED),
        Carrier("wide-edge", 478.5, bandwidth_khz=2000, band=Band(470.0, 479.0)),
    ]
    exclusions = [Exclusion.tv(TvGrid.EU, 21), Exclusion(500.0, 501.0, "talkback")]
    found = {(f.victim, f.product, f.severity, f.sources) for f in check(plan, exclusions, STANDARD)}
    assert ("in-tv", Product.EXCLUSION, "alert", ("TV EU ch 21",)) in found
    assert ("planned-in-range", Product.EXCLUSION, "warning", ("talkback",)) in found
    assert ("wide-edge", Product.EXCLUSION, "alert", ("TV EU ch 21",)) in found, "its lower edge is at 477.5"
    assert ("wide-edge", Product.OUT_OF_BAND, "alert", ("470-479 MHz",)) in found, "its upper edge is at 479.5"


def test_profiles_and_family_guards() -> None:
    dense, robust = PlanSettings(profile=Profile.DENSE), PlanSettings(profile=Profile.ROBUST)
    assert dense.guards("ulxd").spacing_khz < STANDARD.guards("ulxd").spacing_khz < robust.guards("ulxd").spacing_khz
    assert STANDARD.guards("ew-g4").im3_2tx_khz == 1.5 * STANDARD.guards(None).im3_2tx_khz
    assert STANDARD.guards(None).im7_2tx_khz == 0 < WITH_SEVENTH.guards(None).im7_2tx_khz
    described = STANDARD.describe()
    assert described["profile"] == "standard" and described["families"]["ew-g4"]["source"] == "conservative"
    # 400 kHz apart: fine with dense or standard spacing, a finding with robust
    pair = [Carrier("a", 470.0), Carrier("b", 470.375)]
    assert check(pair, [], dense) == [] and check(pair, [], STANDARD) == []
    assert {f.product for f in check(pair, [], robust)} == {Product.SPACING}


def test_seventh_order_only_when_switched_on() -> None:
    # 4 x 470.2 - 3 x 470.4 = 469.6
    plan = [Carrier("a", 470.2), Carrier("b", 470.4), Carrier("victim", 469.6)]
    assert Product.IM7_2TX not in {f.product for f in check(plan, [], STANDARD)}
    assert Product.IM7_2TX in {f.product for f in check(plan, [], WITH_SEVENTH)}


def test_frequencies_are_exact_hertz() -> None:
    assert to_hz(470.0125) == 470_012_500 and to_hz(606.975) == 606_975_000
