"""The state store: merges, change detection and coalesced delivery to subscribers."""

import asyncio

import pytest

from hub.devices import DeviceHandle
from hub.drivers import Endpoint
from hub.model import METER_FIELDS, Device
from hub.state import ADDED, ONLINE, REMOVED, StateStore


def store_with_device() -> StateStore:
    store = StateStore()
    store.add_device(Device(id="shure-1", vendor="shure", host="127.0.0.1", port=2202))
    store.set_channel_count("shure-1", 2)
    return store


async def test_a_fast_meter_stream_arrives_as_one_entry_per_window() -> None:
    store = store_with_device()
    meters = store.subscribe(fields=METER_FIELDS, min_interval=0.2)
    for level in range(50):
        store.update_channel("shure-1", 1, {"audio_dbfs": -40.0 + level / 10, "rf_dbm": -60.0})
    batch = await asyncio.wait_for(anext(meters), 2)
    assert batch == {("shure-1", 1): {"audio_dbfs", "rf_dbm"}}
    assert store.devices["shure-1"].channel(1).audio_dbfs == -35.1  # type: ignore[union-attr]


async def test_unchanged_values_notify_nobody() -> None:
    store = store_with_device()
    store.update_channel("shure-1", 1, {"name": "VOX 1"})
    sub = store.subscribe()
    store.update_channel("shure-1", 1, {"name": "VOX 1"})
    assert sub.drain() == {}


async def test_state_subscribers_do_not_see_meter_only_changes() -> None:
    store = store_with_device()
    state = store.subscribe(fields={"name", "battery_bars"})
    store.update_channel("shure-1", 2, {"audio_dbfs": -20.0})
    assert state.drain() == {}
    store.update_channel("shure-1", 2, {"battery_bars": 4, "audio_dbfs": -21.0})
    assert state.drain() == {("shure-1", 2): {"battery_bars"}}


async def test_lifecycle_changes_reach_every_subscriber() -> None:
    store = StateStore()
    sub = store.subscribe(fields={"name"})
    store.add_device(Device(id="x-1", vendor="x", host="h", port=1))
    store.set_channel_count("x-1", 1)
    store.set_online("x-1", True)
    store.remove_device("x-1")
    assert sub.drain() == {("x-1", None): {ADDED, ONLINE, REMOVED}, ("x-1", 1): {ADDED, REMOVED}}


async def test_a_closed_subscription_ends_iteration() -> None:
    store = store_with_device()
    sub = store.subscribe()
    sub.close()
    assert [batch async for batch in sub] == []


async def test_a_replaced_device_receives_the_updates_not_the_one_it_replaced() -> None:
    store = store_with_device()
    store.update_channel("shure-1", 1, {"name": "VOX 1"})
    old = store.devices["shure-1"]
    store.add_device(Device(id="shure-1", vendor="shure", host="127.0.0.1", port=2202))
    store.update_channel("shure-1", 1, {"name": "VOX 2"})
    assert store.devices["shure-1"].channel(1).name == "VOX 2"  # type: ignore[union-attr]
    assert old.channel(1).name == "VOX 1"  # type: ignore[union-attr]
    assert store.devices["shure-1"].last_seen is not None
    store.remove_device("shure-1")
    store.update_channel("shure-1", 1, {"name": "VOX 3"})  # a late sample of a removed device: ignored
    assert "shure-1" not in store.devices


async def test_a_driver_writes_into_the_device_that_holds_its_id_now() -> None:
    # the handle keeps each channel's writer between samples: one of a removed or replaced device must not be used
    store = StateStore()
    handle = DeviceHandle(store, Endpoint.parse("shure://127.0.0.1:2202"), "shure")
    handle.update_channel(1, {"audio_dbfs": -30})  # before it is identified: nowhere to go
    handle.identify(unique_id="A1", family="ulxd", model="ULXD4D", channel_count=2)
    handle.update_channel(1, {"audio_dbfs": -20})
    assert store.devices["shure-A1"].channel(1).audio_dbfs == -20  # type: ignore[union-attr]
    store.add_device(Device(id="shure-A1", vendor="shure", host="127.0.0.1", port=2202))
    handle.update_channel(1, {"audio_dbfs": -10})
    assert store.devices["shure-A1"].channel(1).audio_dbfs == -10  # type: ignore[union-attr]
    store.remove_device("shure-A1")
    handle.update_channel(1, {"audio_dbfs": -5})
    assert "shure-A1" not in store.devices
    handle.identify(unique_id="A1", family="ulxd", model="ULXD4D", channel_count=2)
    handle.update_channel(2, {"audio_dbfs": -3})
    assert store.devices["shure-A1"].channel(2).audio_dbfs == -3  # type: ignore[union-attr]


async def test_channel_fields_reads_live_values_and_never_makes_a_channel() -> None:
    store = store_with_device()
    store.update_channel("shure-1", 2, {"audio_dbfs": -12})
    fields = store.channel_fields("shure-1", 2)
    assert fields is not None and fields["audio_dbfs"] == -12
    store.update_channel("shure-1", 2, {"audio_dbfs": -9})
    assert fields["audio_dbfs"] == -9  # live, not a copy
    assert store.channel_fields("shure-1", 3) is None
    assert store.channel_fields("nobody", 1) is None
    assert [channel.index for channel in store.devices["shure-1"].channels] == [1, 2]


def test_a_misspelt_field_is_named_whether_written_or_subscribed_to() -> None:
    """A plugin author's typo fails at once with the name, instead of a value that never shows up."""
    store = store_with_device()
    with pytest.raises(KeyError, match="unknown channel field 'batery_bars'"):
        store.update_channel("shure-1", 1, {"battery_bars": 3, "batery_bars": 3})
    with pytest.raises(KeyError, match="unknown device field 'firmwar'"):
        store.update_device("shure-1", {"firmwar": "1.2"})
    with pytest.raises(KeyError, match="unknown device or channel field 'rf_dbmm'"):
        store.subscribe(fields={"rf_dbm", "rf_dbmm"})
