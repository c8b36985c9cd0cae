"""Held meter readings (DeviceSink.defer_meters): merged when the hub's consumers look, not per sample."""

from __future__ import annotations

import asyncio

import pytest

from hub import state as state_module
from hub.devices import DeviceHandle
from hub.drivers import Endpoint
from hub.state import StateStore
from hub.testing import eventually


def identified(store: StateStore, serial: str) -> DeviceHandle:
    handle = DeviceHandle(store, Endpoint.parse(f"shure://127.0.0.1:2202?id={serial}"), "shure", plugin="shure")
    handle.identify(unique_id=serial, family="ulxd", model="ULXD4D", channel_count=2)
    return handle


def level(store: StateStore, device_id: str, channel: int = 1) -> float | None:
    found = store.devices[device_id].channel(channel)
    assert found is not None
    return found.rf_dbm


class Receiver:
    """A driver's side of holding: readings arrive, the newest is merged when the hub asks."""

    def __init__(self, handle: DeviceHandle) -> None:
        self.handle = handle
        self.newest: float | None = None
        self.merges = 0
        self._held = False

    def reading(self, rf_dbm: float) -> None:
        self.newest = rf_dbm
        if not self._held:
            self._held = True
            self.handle.defer_meters(self.merge)

    def merge(self) -> None:
        self._held = False
        self.merges += 1
        self.handle.update_channel(1, {"rf_dbm": self.newest})


async def test_readings_wait_for_the_look_and_only_the_newest_is_merged() -> None:
    store = StateStore()
    store.meter_look_interval = lambda: 3600.0  # no look of its own during the test
    receiver = Receiver(identified(store, "A1"))
    for rf_dbm in (-90, -80, -70):
        receiver.reading(rf_dbm)
    assert level(store, "shure-A1") is None, "held until somebody looks"
    applied = store.updates_applied
    store.merge_held_meters()
    assert level(store, "shure-A1") == -70
    assert store.updates_applied - applied == 1 and receiver.merges == 1
    receiver.reading(-60)
    store.merge_held_meters()
    assert level(store, "shure-A1") == -60 and receiver.merges == 2
    store.close()


async def test_the_store_looks_by_itself_at_the_look_interval() -> None:
    store = StateStore()
    store.meter_look_interval = lambda: 0.05
    receiver = Receiver(identified(store, "A1"))
    receiver.reading(-75)
    await eventually(lambda: level(store, "shure-A1") == -75, 2, "the held reading merged by the look timer")
    receiver.reading(-65)
    await eventually(lambda: level(store, "shure-A1") == -65, 2, "the next one at the next look")
    assert receiver.merges == 2
    store.close()


async def test_a_merge_that_raises_is_that_devices_protocol_error_and_the_others_still_merge() -> None:
    store = StateStore()
    store.meter_look_interval = lambda: 3600.0
    broken, healthy = identified(store, "BAD"), identified(store, "GOOD")
    calls: list[str] = []

    def explode() -> None:
        calls.append("explode")
        raise ValueError("a decoder bug")

    broken.defer_meters(explode)
    good = Receiver(healthy)
    good.reading(-72)
    store.merge_held_meters()
    assert level(store, "shure-GOOD") == -72
    assert broken.protocol_errors == 1 and healthy.protocol_errors == 0
    store.merge_held_meters()
    assert calls == ["explode"], "a merge is called once"
    store.close()


async def test_readings_held_when_the_hub_stops_are_dropped() -> None:
    store = StateStore()
    store.meter_look_interval = lambda: 3600.0
    receiver = Receiver(identified(store, "A1"))
    receiver.reading(-70)
    store.close()
    store.merge_held_meters()
    assert receiver.merges == 0 and level(store, "shure-A1") is None


async def test_a_large_look_is_merged_in_slices_with_the_loop_let_run_between(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state_module, "LOOK_SLICE_S", 0.0)  # one merge per slice
    store = StateStore()
    store.meter_look_interval = lambda: 3600.0
    receivers = [Receiver(identified(store, f"R{number}")) for number in range(3)]
    for number, receiver in enumerate(receivers):
        receiver.reading(-60 - number)
    store.merge_held_meters()
    assert [receiver.merges for receiver in receivers] == [1, 0, 0], "the rest waits for the next loop turn"
    await eventually(lambda: all(receiver.merges == 1 for receiver in receivers), 2, "every receiver merged")
    assert [level(store, f"shure-R{number}") for number in range(3)] == [-60, -61, -62]
    store.close()


async def test_a_second_look_during_a_sliced_one_runs_the_rest_first_and_close_stops_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state_module, "LOOK_SLICE_S", 0.0)  # one merge per slice
    store = StateStore()
    store.meter_look_interval = lambda: 3600.0
    receivers = [Receiver(identified(store, f"R{number}")) for number in range(3)]
    for receiver in receivers:
        receiver.reading(-70)
    store.merge_held_meters()
    receivers[0].reading(-50)
    store.merge_held_meters()  # the first look's rest comes before this one's
    assert [receiver.merges for receiver in receivers] == [1, 1, 0]
    store.close()
    for _ in range(3):  # a continuation scheduled with call_soon would run within these turns of the loop
        await asyncio.sleep(0)
    assert [receiver.merges for receiver in receivers] == [1, 1, 0], "nothing of either look runs after close"
    assert level(store, "shure-R0") == -70
