"""Bad input against the sink every driver writes to: any field name, any value, any channel index.

Whatever a plugin hands the sink, what the store then holds is a valid model (so REST, MQTT, the board and
the history can read it), every string in it is printable and within the width, and nothing raises into
the driver (which would drop its connection).
"""

from __future__ import annotations

import math
import re
from typing import Any

from hypothesis import strategies as st

from hub.devices import DeviceHandle
from hub.drivers import Endpoint
from hub.fieldcheck import REFUSED, UNKNOWN, checked, model_rules
from hub.model import CHANNEL_FIELDS, DEVICE_FIELDS, Channel, Device
from hub.mqtt import payloads
from hub.state import StateStore
from tests.reliability_report import fuzz

WIDTH = 31
NAMES = st.sampled_from(sorted(CHANNEL_FIELDS | DEVICE_FIELDS | {"index", "updated_at", "volume", ""}))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Lu"]), max_size=100),
    st.binary(max_size=10),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=40) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12,
)
# what must never reach a terminal or a log line from a device (hub.text)
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
INDEXES = st.one_of(st.integers(-3, 600), st.booleans(), st.floats(), st.text(max_size=3), st.none())


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, dict):  # per-antenna levels: the antenna names are device text too
        return [text for key, item in value.items() for text in [*_strings(key), *_strings(item)]]
    return []


def _numbers(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [number for item in value.values() for number in _numbers(item)]
    return []


@fuzz(
    "device sink (every plugin's way into the store)",
    "any field name, any value (wrong types, NaN, 2**70, control and format characters, 300-character text, "
    "nested lists), any channel index, in update_channel, update_device and identify",
    "never raises; the store stays a valid model that REST/MQTT serialise; no control character in any string, "
    "each at most the family's width; each refused value counted as a protocol error",
    updates=st.lists(
        st.tuples(st.sampled_from(["channel", "device"]), INDEXES, st.dictionaries(NAMES, VALUES, max_size=6)),
        max_size=8,
    ),
    identity=st.tuples(VALUES, VALUES, st.one_of(st.integers(-2, 600), VALUES)),
)
def test_any_report_leaves_a_valid_model(
    updates: list[tuple[str, Any, dict[str, Any]]], identity: tuple[Any, Any, Any]
) -> None:
    store = StateStore()
    handle = DeviceHandle(store, Endpoint.parse("fuzz://127.0.0.1:9"), "fuzz", plugin="fuzzer", text_width=WIDTH)
    unique_id, model, channels = identity
    handle.identify(unique_id=unique_id, family="fuzz", model=model, channel_count=channels)
    for kind, index, fields in updates:
        if kind == "channel":
            handle.update_channel(index, fields)
        else:
            handle.update_device(fields)
    assert handle.device_id is not None and len(handle.device_id) <= len("fuzz-") + 64
    assert not any(char in handle.device_id for char in "/+# \n")
    device = store.devices[handle.device_id]
    Device.model_validate(device.model_dump())  # what REST and the board serialise
    values = [value for part in [device, *device.channels] for value in part.model_dump().values()]
    for channel in device.channels:
        Channel.model_validate(channel.model_dump())
        payloads.encode(payloads.channel_state(channel))  # what MQTT publishes
    payloads.encode(payloads.device_state(device))
    assert not [number for value in values for number in _numbers(value) if not math.isfinite(number)]
    texts = [text for value in values for text in _strings(value) if text not in (device.id, device.host)]
    assert all(UNSAFE.search(text) is None and len(text) <= WIDTH for text in texts), texts


def test_per_antenna_levels_keep_what_a_device_reported_sanely() -> None:
    store = StateStore()
    handle = DeviceHandle(store, Endpoint.parse("fuzz://127.0.0.1:9"), "fuzz", plugin="fuzzer", text_width=WIDTH)
    handle.identify(unique_id="Q1", family="fuzz", model="quad", channel_count=1)
    handle.update_channel(1, {"rf_antennas": {"A": -61.5, "B": -70, "C": math.nan, "D\x1b[2J": -90.0}})
    assert store.devices[handle.device_id].channels[0].rf_antennas == {"A": -61.5, "B": -70, "D[2J": -90.0}
    handle.update_channel(1, {"rf_antennas": {"A": "strong"}})  # refused: the last good levels stay
    handle.update_channel(1, {"rf_antennas": {f"ant{n}": -60.0 for n in range(20)}})  # more than any receiver has
    assert store.devices[handle.device_id].channels[0].rf_antennas == {"A": -61.5, "B": -70, "D[2J": -90.0}
    assert handle.protocol_errors == 2


def test_transmitter_slots_keep_what_a_device_reported_sanely() -> None:
    store = StateStore()
    handle = DeviceHandle(store, Endpoint.parse("fuzz://127.0.0.1:9"), "fuzz", plugin="fuzzer", text_width=WIDTH)
    handle.identify(unique_id="S1", family="fuzz", model="showlink", channel_count=1)
    reported = [
        {"slot": 2, "status": "empty", "battery_percent": 250},  # out of range: unknown, the slot stays
        {"slot": 1, "tx_model": "ADX2\x1b[2J", "battery_bars": "four", "rf_power_mode": "normal", "rf_output": True},
    ]
    handle.update_channel(1, {"tx_slots": reported})
    slots = store.devices[handle.device_id].channels[0].tx_slots
    assert slots is not None
    assert [slot.model_dump(exclude_none=True) for slot in slots] == [
        {"slot": 1, "tx_model": "ADX2[2J", "rf_power_mode": "normal", "rf_output": True},
        {"slot": 2, "status": "empty"},
    ]
    handle.update_channel(1, {"tx_slots": [{"slot": 0}]})  # refused: no such slot; the last good slots stay
    handle.update_channel(1, {"tx_slots": [{"slot": n} for n in range(1, 40)]})  # more than any receiver has
    handle.update_channel(1, {"tx_slots": ["slot 1"]})
    assert store.devices[handle.device_id].channels[0].tx_slots == slots
    assert handle.protocol_errors == 3


def test_numbers_wider_than_64_bits_read_as_unknown() -> None:
    store = StateStore()
    handle = DeviceHandle(store, Endpoint.parse("fuzz://127.0.0.1:9"), "fuzz", plugin="fuzzer", text_width=WIDTH)
    handle.identify(unique_id="W1", family="fuzz", model="wide", channel_count=1)
    handle.update_channel(
        1, {"battery_cycles": 2**70, "rf_dbm": -(2**70), "gain_db": 2**70, "battery_runtime_min": 1e30}
    )
    channel = store.devices[handle.device_id].channels[0]
    assert (channel.battery_cycles, channel.rf_dbm, channel.gain_db, channel.battery_runtime_min) == (None,) * 4
    payloads.encode(payloads.channel_state(channel))  # what MQTT publishes


@fuzz(
    "sink field checks (the inline fast path beside each field's own check)",
    "any field with a fast path, any scalar (ints for float levels, 2**70, NaN, infinity, bools, text)",
    "what the fast path lets through is what the field's own check would have stored",
    name=st.sampled_from(sorted(model_rules(WIDTH)[0].classes)),
    value=SCALARS,
)
def test_the_fast_path_stores_what_each_fields_check_would(name: str, value: Any) -> None:
    rules = model_rules(WIDTH)[0]
    own = None if value is None else rules.checks[name](value)  # None is a field's "unknown", always taken
    kept = checked({name: value}, rules, lambda *refusal: None)
    if own is REFUSED:
        assert kept == {}
    else:
        expected = None if own is UNKNOWN else own
        assert kept == {name: expected} and type(kept[name]) is type(expected)
