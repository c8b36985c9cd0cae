"""Alert rules, lifecycle and storms, driven by a simulated clock through the store's own tick."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub.persistence import (
    IN_MEMORY,
    AlertEvent,
    AlertKind,
    AlertSettings,
    ConflictError,
    NotFoundError,
    Persistence,
    SimulatedClock,
    Source,
)
from hub.persistence.testing import open_simulated, put_receiver, quick_settings
from hub.state import StateStore
from hub.testing import eventually

TICK_S = 0.5


@dataclass
class Venue:
    store: Persistence
    state: StateStore
    clock: SimulatedClock
    events: list[AlertEvent]

    def run(self, seconds: float, each_tick: Callable[[int], None] | None = None) -> None:
        """Let ``seconds`` of simulated time pass, one store tick at a time."""
        for tick in range(round(seconds / TICK_S)):
            if each_tick is not None:
                each_tick(tick)
            self.clock.advance(TICK_S)
            self.store.step()

    def set(self, channel: int = 1, **fields: Any) -> None:
        self.state.update_channel("shure-A", channel, fields)

    def raised(self, kind: AlertKind) -> list[AlertEvent]:
        return [e for e in self.events if e.action == "raised" and e.alert.kind is kind]

    def open_kinds(self) -> set[AlertKind]:
        return {alert.kind for alert in self.store.alerts.open_alerts()}


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    state = StateStore()
    put_receiver(state, "shure-A", channels=2, battery_bars=5, rf_quality_percent=90, rf_dbm=-50.0)
    clock = SimulatedClock()
    store = await open_simulated(IN_MEMORY, state, clock)
    await store.devices.add("shure://127.0.0.1:2202", source=Source.CLI, device_id="shure-A")
    events: list[AlertEvent] = []
    store.alerts.add_listener(events.append)
    yield Venue(store, state, clock, events)
    await store.close()


async def test_low_battery_lifecycle_raised_acknowledged_cleared(venue: Venue) -> None:
    venue.set(battery_bars=1)
    venue.run(1.0)
    assert venue.events == [], "debounced: not raised at once"
    venue.run(2.0)
    [raised] = venue.raised(AlertKind.LOW_BATTERY)
    assert raised.alert.channel == 1 and "battery low (1 bars)" in raised.alert.message

    acknowledged = await venue.store.alerts.acknowledge(raised.alert.id, source=Source.UI, by="desk")
    assert acknowledged.acknowledged_at == venue.clock.now() and acknowledged.acknowledged_by == "desk"
    assert venue.store.alerts.open_alerts() == [acknowledged], "acknowledged alerts stay open"

    venue.set(battery_bars=5)  # a fresh battery
    venue.run(10.0)
    assert [e.action for e in venue.events] == ["raised", "acknowledged", "cleared"]
    cleared = venue.events[-1].alert
    assert cleared.cleared_at is not None and cleared.cleared_at - cleared.raised_at >= 5.0
    assert venue.store.alerts.open_alerts() == []
    [stored] = await venue.store.alerts.recent()
    assert (stored.acknowledged_by, stored.cleared_at) == ("desk", cleared.cleared_at)
    audit = await venue.store.audit.query(target=f"alert/{raised.alert.id}")
    assert [(entry.action, entry.source) for entry in audit] == [("alert.acknowledge", "ui")]


async def test_a_value_flickering_around_a_threshold_raises_one_alert(venue: Venue) -> None:
    # percent flickers 19/21 around the 20 % threshold, every tick for ten minutes; bars flicker 1/2 on ch 2
    def flicker(tick: int) -> None:
        venue.set(1, battery_percent=19 if tick % 2 else 21)
        venue.set(2, battery_bars=1 if tick % 2 else 2)

    venue.run(600.0, flicker)
    assert len(venue.raised(AlertKind.LOW_BATTERY)) == 2, "one alert per channel, not one per flicker"
    assert [e.action for e in venue.events] == ["raised", "raised"]

    # RF dipping below the threshold for one tick in every three is a storm of a different shape
    venue.run(600.0, lambda tick: venue.set(1, rf_quality_percent=20 if tick % 3 == 0 else 35))
    assert len(venue.raised(AlertKind.RF_LOW)) <= 1


async def test_transmitter_off_alerts_only_for_an_assigned_channel(venue: Venue) -> None:
    anna = await venue.store.performers.create("Anna", source=Source.REST)
    await venue.store.performers.assign(anna.id, "shure-A", 1, source=Source.REST)
    venue.set(1, tx_present=False, battery_bars=None)
    venue.set(2, tx_present=False, battery_bars=None)
    venue.run(6.0)
    [raised] = venue.raised(AlertKind.TX_OFF)
    assert raised.alert.channel == 1 and raised.alert.severity == "critical"
    assert raised.alert.message.startswith("Anna (shure-A ch 1)")
    venue.set(1, tx_present=True)
    venue.run(6.0)
    assert AlertKind.TX_OFF not in venue.open_kinds()


async def test_rf_low_needs_n_seconds_and_audio_clip_is_immediate(venue: Venue) -> None:
    venue.set(rf_quality_percent=10)
    venue.run(3.0)
    venue.set(rf_quality_percent=90)
    venue.run(3.0)
    assert venue.raised(AlertKind.RF_LOW) == [], "a 3 s dip is shorter than the 5 s rule"
    venue.set(rf_dbm=-95.0)
    venue.run(6.0)
    assert len(venue.raised(AlertKind.RF_LOW)) == 1
    venue.set(audio_peak=True)
    venue.run(TICK_S)
    assert len(venue.raised(AlertKind.AUDIO_CLIP)) == 1


async def test_device_warnings_become_alerts(venue: Venue) -> None:
    venue.set(warnings=["Interference", "LowBattery"])
    venue.set(2, warnings=["Aes256Error"])
    venue.run(3.0)
    details = sorted((e.alert.channel, e.alert.detail) for e in venue.raised(AlertKind.DEVICE_WARNING))
    assert details == [(1, "interference"), (2, "encryption")]
    venue.set(warnings=["UnregisteredTransmitter"])
    venue.run(6.0)
    open_details = {a.detail for a in venue.store.alerts.open_alerts() if a.channel == 1}
    assert open_details == {"unregistered"}


async def test_device_offline_and_channels_held_while_it_is_away(venue: Venue) -> None:
    venue.set(battery_bars=1)
    venue.run(3.0)
    venue.state.set_online("shure-A", False)
    venue.run(4.0)
    assert venue.open_kinds() == {AlertKind.LOW_BATTERY, AlertKind.DEVICE_OFFLINE}
    venue.run(60.0)
    assert AlertKind.LOW_BATTERY in venue.open_kinds(), "an offline device's alerts are held, not cleared"
    venue.state.set_online("shure-A", True)
    venue.run(6.0)
    assert venue.open_kinds() == {AlertKind.LOW_BATTERY}


async def test_a_known_device_never_reached_is_offline(venue: Venue) -> None:
    await venue.store.devices.add("ssc://127.0.0.1:45", source=Source.CLI)
    venue.run(4.0)
    [raised] = venue.raised(AlertKind.DEVICE_OFFLINE)
    assert raised.alert.device_id == "ssc://127.0.0.1:45"
    venue.store.devices.bind("ssc://127.0.0.1:45", "sennheiser-B")
    put_receiver(venue.state, "sennheiser-B", channels=1)
    venue.run(6.0)
    assert venue.open_kinds() == set(), "once it identified itself the device is online under its id"

    await venue.store.devices.add("ssc://127.0.0.1:46", source=Source.CLI)
    venue.run(4.0)
    assert venue.open_kinds() == {AlertKind.DEVICE_OFFLINE}
    await venue.store.devices.remove("ssc://127.0.0.1:46", source=Source.CLI)
    venue.run(6.0)
    assert venue.open_kinds() == set()


async def test_preferences_disable_kinds_and_move_thresholds(venue: Venue) -> None:
    anna = await venue.store.performers.create("Anna", source=Source.REST)
    await venue.store.performers.assign(
        anna.id, "shure-A", 1, source=Source.REST, alert_prefs={"battery_bars": 3, "disabled_kinds": ["audio_clip"]}
    )
    venue.set(battery_bars=3, audio_peak=True)
    venue.set(2, battery_bars=3, audio_peak=True)
    venue.run(3.0)
    assert sorted((e.alert.kind, e.alert.channel) for e in venue.events if e.action == "raised") == [
        (AlertKind.AUDIO_CLIP, 2),
        (AlertKind.LOW_BATTERY, 1),
    ]


async def test_acknowledge_refuses_unknown_and_cleared_alerts(venue: Venue) -> None:
    with pytest.raises(NotFoundError):
        await venue.store.alerts.acknowledge(42, source=Source.REST)
    venue.set(audio_peak=True)
    venue.run(TICK_S)
    venue.set(audio_peak=False)
    venue.run(11.0)
    [cleared] = [e.alert for e in venue.events if e.action == "cleared"]
    with pytest.raises(ConflictError):
        await venue.store.alerts.acknowledge(cleared.id, source=Source.REST)


async def test_a_broken_listener_does_not_stop_alerts(venue: Venue) -> None:
    def broken(event: AlertEvent) -> None:
        raise RuntimeError("listener bug")

    venue.store.alerts.add_listener(broken)
    venue.set(audio_peak=True)
    venue.run(TICK_S)
    assert len(venue.raised(AlertKind.AUDIO_CLIP)) == 1


async def test_open_alerts_survive_a_restart_and_clear_only_on_news(tmp_path: Path) -> None:
    state = StateStore()
    put_receiver(state, "shure-A", channels=1, battery_bars=1)
    clock = SimulatedClock()
    store = await open_simulated(tmp_path, state, clock)
    await store.devices.add("shure://127.0.0.1:2202", source=Source.CLI, device_id="shure-A")
    for _ in range(6):
        clock.advance(TICK_S)
        store.step()
    [before] = store.alerts.open_alerts()
    await store.close()

    fresh_state = StateStore()  # after a restart the device has not reconnected yet
    again = await open_simulated(tmp_path, fresh_state, clock)
    try:
        assert again.alerts.open_alerts() == [before]
        for _ in range(40):
            clock.advance(TICK_S)
            again.step()
        assert before in again.alerts.open_alerts(), "no news is not good news"
        put_receiver(fresh_state, "shure-A", channels=1, battery_bars=5)
        for _ in range(20):
            clock.advance(TICK_S)
            again.step()
        assert again.alerts.open_alerts() == []
    finally:
        await again.close()


async def test_meter_only_changes_still_raise_rf_low_after_the_debounce(venue: Venue) -> None:
    # only rf_dbm moves, every tick, as live metering does: the RF rule alone is re-judged, and its timer runs
    judged_with: dict[float, float] = {}

    def meter(tick: int) -> None:
        venue.set(rf_dbm=-95.0 - tick % 3)
        judged_with[venue.clock.now() + TICK_S] = -95.0 - tick % 3

    venue.run(6.0, meter)
    [raised] = venue.raised(AlertKind.RF_LOW)
    assert raised.alert.channel == 1
    assert raised.alert.message == f"shure-A ch 1: RF signal low (90%, {judged_with[raised.alert.raised_at]:g} dBm)"
    venue.run(6.0, lambda tick: venue.set(rf_dbm=-50.0 - tick % 3))
    assert AlertKind.RF_LOW not in venue.open_kinds()


async def test_a_device_going_offline_raises_device_offline_and_holds_its_channels(venue: Venue) -> None:
    venue.set(rf_dbm=-95.0)
    venue.run(2.0)
    venue.state.set_online("shure-A", False)
    venue.run(10.0)
    assert venue.open_kinds() == {AlertKind.DEVICE_OFFLINE}, "an RF dip pending when it went away is held"
    venue.state.set_online("shure-A", True)  # back, still low: the pending RF alert runs on
    venue.run(6.0)
    assert venue.open_kinds() == {AlertKind.RF_LOW}


async def test_assigning_a_channel_whose_transmitter_is_already_off_raises_tx_off(venue: Venue) -> None:
    venue.set(2, tx_present=False)
    venue.run(6.0)
    assert venue.raised(AlertKind.TX_OFF) == [], "not assigned: nobody misses it"
    anna = await venue.store.performers.create("Anna", source=Source.REST)
    await venue.store.performers.assign(anna.id, "shure-A", 2, source=Source.REST)
    venue.run(11.0)  # no state change at all: the sweep notices the assignment
    [raised] = venue.raised(AlertKind.TX_OFF)
    assert raised.alert.message.startswith("Anna (shure-A ch 2)")
    await venue.store.performers.assign(
        anna.id, "shure-A", 2, source=Source.REST, alert_prefs={"disabled_kinds": ["tx_off"]}
    )
    venue.run(11.0)
    assert AlertKind.TX_OFF not in venue.open_kinds(), "disabling the kind clears it without a state change"


async def test_devices_removed_and_added_in_the_middle_of_a_sliced_tick() -> None:
    """The ticker lets the event loop run between slices of a tick, and what runs there may remove or add
    devices: whichever slice it lands after, the tick goes on, the removed device's alerts clear and no
    other device's alerts move."""
    state = StateStore()
    clock = SimulatedClock()
    # a sweep on every tick: every tick then also looks at every device and channel
    store = await open_simulated(IN_MEMORY, state, clock, alerts=AlertSettings(sweep_every_s=TICK_S))
    events: list[AlertEvent] = []
    store.alerts.add_listener(events.append)

    def run(seconds: float) -> None:
        for _ in range(round(seconds / TICK_S)):
            clock.advance(TICK_S)
            store.step()

    async def add(device_id: str, port: int, battery_bars: int) -> None:
        put_receiver(state, device_id, channels=2, battery_bars=battery_bars)
        await store.devices.add(f"shure://127.0.0.1:{port}", source=Source.CLI, device_id=device_id)

    await add("shure-A", 2202, battery_bars=1)
    run(3.0)
    [kept_a, kept_b] = store.alerts.open_alerts()
    for round_number in range(200):  # in round n the device goes after slice n, until the tick has no slice n
        removed, added = f"shure-R{round_number}", f"shure-N{round_number}"
        await add(removed, 3000 + round_number, battery_bars=1)
        run(3.0)
        assert {alert.device_id for alert in store.alerts.open_alerts()} == {"shure-A", removed}
        for channel in (1, 2):  # changes of the removed device wait in the tick when it goes
            state.update_channel(removed, channel, {"rf_dbm": -60.0, "tx_present": True})
            state.update_channel("shure-A", channel, {"rf_dbm": -60.0})
        clock.advance(TICK_S)
        for number, _ in enumerate(store.tick(0.0)):  # a slice per item of work
            if number == round_number:
                state.remove_device(removed)
                await store.devices.remove(removed, source=Source.CLI)
            elif number == round_number + 1:
                await add(added, 4000 + round_number, battery_bars=5)
        if removed in state.devices:
            break
        if added not in state.devices:
            await add(added, 4000 + round_number, battery_bars=5)
        run(6.0)
        assert store.alerts.open_alerts() == [kept_a, kept_b], f"removed after slice {round_number}"
        devices_raised = {event.alert.device_id for event in events if event.action == "raised"}
        assert devices_raised == {"shure-A"} | {f"shure-R{number}" for number in range(round_number + 1)}
        state.remove_device(added)  # every round's tick the same
        await store.devices.remove(added, source=Source.CLI)
    assert round_number > 10, "the tick was cut into a slice per item"
    assert [event.alert for event in events if event.alert.device_id == "shure-A"] == [kept_a, kept_b]


async def test_the_running_store_raises_alerts_on_its_own_as_its_clock_advances() -> None:
    """A hub never calls step(): its ticker sleeps on the store's clock and ticks when the time has come."""
    state = StateStore()
    put_receiver(state, "shure-A", channels=1, battery_bars=1)
    clock = SimulatedClock()
    store = await Persistence.open(IN_MEMORY, state, clock=clock, settings=quick_settings(tick_s=TICK_S))
    try:
        await store.devices.add("shure://127.0.0.1:2202", source=Source.CLI, device_id="shure-A")
        assert store.alerts.open_alerts() == []
        for _ in range(6):
            await eventually(lambda: clock.sleeping, what="the ticker asleep until its next tick")
            clock.advance(TICK_S)
        await eventually(lambda: store.alerts.open_alerts(), what="the low-battery alert raised by the ticker")
        [alert] = store.alerts.open_alerts()
        assert alert.kind is AlertKind.LOW_BATTERY and alert.channel == 1
    finally:
        await store.close()


async def test_an_alert_on_a_channel_the_receiver_no_longer_has_clears(venue: Venue) -> None:
    """Another model at the receiver's address with fewer channels: what was open on a channel that is gone
    clears, where a channel that is only unheard (the device offline) holds its alerts."""
    venue.set(channel=2, battery_bars=1)
    venue.run(3.0)
    assert venue.store.alerts.open_alerts()[0].channel == 2
    venue.state.set_channel_count("shure-A", 1)
    venue.run(10.0)
    assert venue.store.alerts.open_alerts() == []
    assert [event.action for event in venue.events] == ["raised", "cleared"]


async def test_the_running_store_checks_the_show_on_time_after_the_wall_clock_is_set_back() -> None:
    """An outside audit: the wall clock set back an hour held the show check (the swap list on MQTT, the
    'will not last' alerts) for that hour: its next run was due at a wall time an hour away."""
    state = StateStore()
    put_receiver(state, "shure-A", channels=1, battery_bars=5)
    clock = SimulatedClock()
    store = await Persistence.open(IN_MEMORY, state, clock=clock, settings=quick_settings(tick_s=TICK_S))
    checks: list[float] = []
    store.show.add_listener(lambda swap: checks.append(clock.monotonic()))
    try:

        async def run_for(seconds: float) -> None:
            until = clock.monotonic() + seconds
            while clock.monotonic() < until:
                await eventually(lambda: clock.sleeping, what="the ticker asleep until its next tick")
                clock.advance(TICK_S)

        await run_for(5)
        assert len(checks) == 1, "the first check, at the first tick"
        clock.set_wall(-3600)
        await run_for(65)
        await eventually(lambda: len(checks) >= 3, what="a show check every 30 s, the wall clock notwithstanding")
    finally:
        await store.close()
