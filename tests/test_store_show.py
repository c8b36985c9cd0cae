"""The show's end and the battery swap list: which packs will not last, in which order, and the alert that
says so once per pack, checked against times worked out by hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.persistence import IN_MEMORY, AlertEvent, AlertKind, InvalidInputError, Persistence, SimulatedClock, Source
from hub.persistence import show as show_module
from hub.persistence.battery import ALKALINE_BAR_FRACTIONS
from hub.persistence.history import encode_bucket
from hub.persistence.show import ESTIMATE_BAND
from hub.persistence.testing import open_simulated, put_receiver
from hub.state import StateStore

START = 1_767_225_600.0  # midnight: history buckets and blocks start on round times
MINUTE = 60.0


@dataclass
class Show:
    store: Persistence
    state: StateStore
    clock: SimulatedClock
    events: list[AlertEvent]

    def show_alerts(self, action: str) -> list[AlertEvent]:
        return [e for e in self.events if e.action == action and e.alert.kind is AlertKind.SHOW_BATTERY]


@pytest.fixture
async def show() -> AsyncIterator[Show]:
    state = StateStore()
    # channel 1..4 report their own runtime; 5 reports bars only and has no history yet; 6 is switched off
    put_receiver(state, "shure-A", channels=6, battery_bars=4, battery_type="LION")
    for index, minutes in zip(range(1, 5), (50, 110, 120, 300), strict=True):
        state.update_channel("shure-A", index, {"battery_runtime_min": minutes})
    state.update_channel("shure-A", 5, {"battery_type": "ALKA"})
    state.update_channel("shure-A", 6, {"tx_present": False, "battery_runtime_min": 10})
    clock = SimulatedClock(start=START)
    store = await open_simulated(IN_MEMORY, state, clock)
    events: list[AlertEvent] = []
    store.alerts.add_listener(events.append)
    performer = await store.performers.create("Mara", source=Source.CLI)
    await store.performers.assign(performer.id, "shure-A", 2, source=Source.CLI)
    await store.slots.set(7, "shure-A", 2, source=Source.CLI)
    yield Show(store, state, clock, events)
    await store.close()


async def test_swap_list_orders_the_packs_that_end_before_the_show_plus_margin(show: Show) -> None:
    # the show ends in 100 min and a pack must last 15 min beyond: deadline 115 min from now
    await show.store.show.set(START + 100 * MINUTE, 15, source=Source.REST)
    swap = await show.store.show.swap_list()
    assert swap.deadline == START + 115 * MINUTE
    # 50 min and 110 min are short of 115; 120 and 300 last; channel 6's transmitter is off
    assert [(e.channel, e.empty_at) for e in swap.items] == [(1, START + 50 * MINUTE), (2, START + 110 * MINUTE)]
    second = swap.items[1]
    assert (second.performer, second.slot, second.battery_type, second.source) == ("Mara", 7, "LION", "transmitter")
    assert second.earliest_empty_at == second.latest_empty_at == second.empty_at
    assert [ref.channel for ref in swap.no_estimate] == [5], "a bars-only pack without drain history yet"

    later = await show.store.show.swap_list(until=START + 280 * MINUTE)
    assert [e.channel for e in later.items] == [1, 2, 3], "'until' overrides the show end: 300 > 280 + 15"


async def test_one_alert_per_pack_with_its_time_cleared_when_the_pack_is_swapped(show: Show) -> None:
    await show.store.show.set(START + 100 * MINUTE, 15, source=Source.REST)
    await show.store.show.check()
    raised = show.show_alerts("raised")
    assert sorted(e.alert.channel for e in raised if e.alert.channel is not None) == [1, 2]
    by_channel = {e.alert.channel: e.alert.message for e in raised}
    empty_at = time.strftime("%H:%M", time.localtime(START + 50 * MINUTE))
    ends_at = time.strftime("%H:%M", time.localtime(START + 100 * MINUTE))
    assert f"empty about {empty_at}, the show ends {ends_at}" in by_channel[1]
    assert by_channel[2].startswith("Mara (shure-A ch 2): will not last until the end of the show")

    show.clock.advance(30)
    await show.store.show.check()
    assert len(show.show_alerts("raised")) == 2, "raised once per pack, not at every check"

    show.state.update_channel("shure-A", 1, {"tx_present": False})  # pack out for the swap: the alert holds
    show.clock.advance(30)
    await show.store.show.check()
    assert show.show_alerts("cleared") == []
    show.state.update_channel("shure-A", 1, {"tx_present": True, "battery_runtime_min": 480})
    show.clock.advance(1)
    await show.store.show.check()
    show.clock.advance(show.store.alerts.settings.clear_after_s)
    await show.store.show.check()
    assert [e.alert.channel for e in show.show_alerts("cleared")] == [1]
    assert {a.channel for a in show.store.alerts.open_alerts() if a.kind is AlertKind.SHOW_BATTERY} == {2}


async def test_clearing_the_show_end_clears_its_alerts(show: Show) -> None:
    await show.store.show.set(START + 100 * MINUTE, 15, source=Source.REST)
    await show.store.show.check()
    await show.store.show.set(None, 15, source=Source.REST)
    await show.store.show.check()
    show.clock.advance(show.store.alerts.settings.clear_after_s)
    await show.store.show.check()
    assert sorted(e.alert.channel for e in show.show_alerts("cleared") if e.alert.channel is not None) == [1, 2]
    assert (await show.store.show.swap_list()).items == [], "no show end, no deadline"


async def test_a_bars_only_pack_is_listed_from_its_drain_with_the_estimates_band(show: Show) -> None:
    """A 6 h alkaline cell (docs/battery-estimate.md): inserted at t0, 4 bars from 17 % of its life, 3 bars
    from 39.6 % (the model's fractions). At 45 % of its life the fit is exact: 0.55 x 360 min = 198 min left."""
    life = 6 * 3600.0
    history = show.store.history
    series = history.series("shure-A", 5)
    t0 = START + 3600
    one_bar_before = [(START + 10 * k, 20.0) for k in range(360)]  # the old cell, at one bar
    four, three = ALKALINE_BAR_FRACTIONS[4] * life, ALKALINE_BAR_FRACTIONS[3] * life
    drain = [(t0 + 10 * k, 100.0 if 10 * k < four else 80.0 if 10 * k < three else 60.0)
             for k in range(round(0.45 * life / 10))]  # fmt: skip
    for at, level in one_bar_before + drain:
        history.add_bucket(series, int(at), encode_bucket([level] * 3 + [None] * 6))
    show.clock.advance(t0 + 0.45 * life - show.clock.now())
    show.state.update_channel("shure-A", 5, {"battery_bars": 3})
    now = show.clock.now()

    await show.store.show.set(now + 3 * 3600 + 15 * MINUTE, 0, source=Source.REST)  # deadline 195 min: it lasts
    assert [e.channel for e in (await show.store.show.swap_list()).items if e.channel == 5] == []
    await show.store.show.set(now + 3 * 3600 + 15 * MINUTE, 15, source=Source.REST)  # deadline 210 min
    [entry] = [e for e in (await show.store.show.swap_list()).items if e.channel == 5]
    assert entry.source == "estimate" and entry.minutes_left == 198
    assert entry.empty_at == now + 198 * MINUTE
    assert entry.earliest_empty_at == pytest.approx(now + 198 * MINUTE * (1 - ESTIMATE_BAND))
    assert entry.latest_empty_at == pytest.approx(now + 198 * MINUTE * (1 + ESTIMATE_BAND))
    assert "3 points" in entry.certainty


async def test_the_show_survives_a_restart_and_refuses_nonsense(tmp_path: Path) -> None:
    store = await open_simulated(tmp_path, StateStore(), SimulatedClock(start=START))
    try:
        settings = await store.show.set(START + 7200, 20, source=Source.REST)
        with pytest.raises(InvalidInputError):
            await store.show.set(START, -1, source=Source.REST)
        with pytest.raises(InvalidInputError):
            await store.show.set(float("inf"), 10, source=Source.REST)
    finally:
        await store.close()
    reopened = await open_simulated(tmp_path, StateStore(), SimulatedClock(start=START))
    try:
        assert reopened.show.settings == settings
        [entry] = await reopened.audit.query(target="show")
        assert entry.action == "show.set" and entry.after == {"end_at": START + 7200, "margin_min": 20}
    finally:
        await reopened.close()


async def test_the_show_check_lets_the_hub_run_between_slices_of_its_packs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At a site of thousands the check goes through the transmitters in slices and lets the event loop run
    # in between (device input, MQTT); here a slice of no time at all: the loop runs after every receiver.
    monkeypatch.setattr(show_module, "PACKS_SLICE_S", 0.0)
    state = StateStore()
    for number in range(50):
        put_receiver(state, f"shure-{number:02d}", channels=4, battery_bars=4, battery_runtime_min=60 + number)
    store = await open_simulated(IN_MEMORY, state, SimulatedClock(start=START))
    try:
        await store.show.set(START + 120 * MINUTE, 0, source=Source.REST)
        turns = 0

        async def other_work() -> None:
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1

        beside = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        swap = await store.show.check()
        beside.cancel()
        assert turns >= 50
        assert len(swap.items) == 200, "every pack of every receiver listed, none lost between slices"
        assert [entry.minutes_left for entry in swap.items] == [minutes for minutes in range(60, 110) for _ in range(4)]
    finally:
        await store.close()
