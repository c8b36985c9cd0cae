"""SSCv1 message model and product maps against the literal messages of the protocol reference."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from wmhub_sennheiser import ssc1
from wmhub_sennheiser.families import (
    CHG70N,
    EM6000,
    EWDX,
    SLDW,
    ChannelMapper,
    SscFamily,
    em6000_meter_fields,
    family_for,
)
from wmhub_sennheiser.ssc1 import ErrorKind, SscError, SubscriptionParams

from hub.model import CommandKind, InvalidValueError


@pytest.mark.parametrize(
    ("datagram", "values", "xid"),
    [
        (b'{"brightness":75,"osc":{"xid":1234567890}}', {("brightness",): 75}, 1234567890),
        (b'{"osc":{"ping":null}}', {("osc", "ping"): None}, None),
        (b'{"osc":{"feature":{"timetag":false}}}', {("osc", "feature", "timetag"): False}, None),
        (b'{"rx1":{"name":"rx1"}}', {("rx1", "name"): "rx1"}, None),
        (b'{"audio":{"out1":{"level_db":-56}}}', {("audio", "out1", "level_db"): -56}, None),
        (
            b'{"mates":{"tx1":{"warnings":["LowBattery","AfPeak"]}}}',
            {("mates", "tx1", "warnings"): ["LowBattery", "AfPeak"]},
            None,
        ),
        (b'{"sys":{"clock_frequency_measured":"48000 Hz"}}', {("sys", "clock_frequency_measured"): "48000 Hz"}, None),
    ],
)
def test_reference_replies_decode_to_their_leaves(datagram: bytes, values: dict[Any, Any], xid: int | None) -> None:
    message = ssc1.decode(datagram)
    assert message.values == values
    assert message.xid == xid
    assert message.errors == ()


def test_a_get_request_is_the_nested_address_with_a_null_leaf_and_the_xid() -> None:
    body = ssc1.tree([ssc1.address("/brightness")])
    assert json.loads(ssc1.encode(body, xid=1234567890)) == {"osc": {"xid": 1234567890}, "brightness": None}
    assert json.loads(ssc1.encode(ssc1.tree({("rx1", "mute"): True}))) == {"rx1": {"mute": True}}


@pytest.mark.parametrize(
    ("datagram", "expected"),
    [
        (b'{"osc":{"error":[{"write_protection":[406]}]}}', SscError(("write_protection",), 406)),
        (b'{"osc":{"error":[{"brightness":[310]}]}}', SscError(("brightness",), 310)),
        (
            b'{"osc":{"error":[{"mates":{"tx2":{"battery":{"gauge":[424,{"desc":"TX not present"}]}}}}]}}',
            SscError(("mates", "tx2", "battery", "gauge"), 424, "TX not present"),
        ),
    ],
)
def test_error_trees_decode_to_typed_errors(datagram: bytes, expected: SscError) -> None:
    assert ssc1.decode(datagram).errors == (expected,)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (310, ErrorKind.SUBSCRIPTION_ENDED),
        (404, ErrorKind.MISSING),
        (454, ErrorKind.MISSING),
        (406, ErrorKind.NOT_ACCEPTABLE),
        (424, ErrorKind.NO_TRANSMITTER),
        (413, ErrorKind.TOO_LARGE),
        (414, ErrorKind.TOO_LARGE),
        (450, ErrorKind.TOO_LARGE),
        (400, ErrorKind.NOT_UNDERSTOOD),
        (202, ErrorKind.OK),
        (500, ErrorKind.OTHER),
    ],
)
def test_error_codes_have_their_documented_meaning(code: int, kind: ErrorKind) -> None:
    assert SscError(("x",), code).kind is kind


def test_an_error_inside_a_subscription_names_the_subscribed_address() -> None:
    datagram = b'{"osc":{"error":[{"osc":{"state":{"subscribe":[{"rx9":{"name":[454]}}]}}}]}}'
    (error,) = ssc1.decode(datagram).errors
    assert error.address == ("rx9", "name")
    assert error.in_subscription
    assert error.kind is ErrorKind.MISSING


def test_values_and_errors_in_one_reply_are_both_kept() -> None:
    message = ssc1.decode(b'{"rx1":{"name":"LEAD"},"osc":{"xid":7,"error":[{"rx1":{"gain":[406]}}]}}')
    assert message.values == {("rx1", "name"): "LEAD"}
    assert message.errors == (SscError(("rx1", "gain"), 406),)
    assert message.xid == 7


@pytest.mark.parametrize("datagram", [b"", b"garbage\x00\xff", b"[1,2]", b'"text"'])
def test_garbage_is_refused_with_a_decode_error(datagram: bytes) -> None:
    with pytest.raises(ssc1.SscDecodeError):
        ssc1.decode(datagram)


def test_the_subscribe_request_puts_parameters_under_hash_in_each_set() -> None:
    body = ssc1.subscribe_body([(SubscriptionParams(0, 0, 10, 1000), [("rx1", "frequency")])])
    expected = {
        "osc": {
            "state": {
                "subscribe": [{"#": {"min": 0, "max": 0, "lifetime": 10, "count": 1000}, "rx1": {"frequency": None}}]
            }
        }
    }
    assert body == expected
    cancel = ssc1.cancel_body([("mm",)])
    assert cancel == {"osc": {"state": {"subscribe": [{"#": {"cancel": True}, "mm": None}]}}}


def test_the_subscription_echo_is_returned_separately_from_values() -> None:
    datagram = b'{"osc":{"xid":3,"state":{"subscribe":[{"#":{"min":250,"max":250,"lifetime":20},"mm":null}]}}}'
    message = ssc1.decode(datagram)
    assert message.values == {}
    assert message.subscription_echo is not None
    params = SubscriptionParams.from_json(message.subscription_echo[0]["#"])
    assert params == SubscriptionParams.periodic(250, 20)


def test_unknown_subscription_parameters_are_ignored() -> None:
    assert SubscriptionParams.from_json({"bw": 100, "lifetime": 5, "x": "y"}) == SubscriptionParams(0, 0, 5)


@pytest.mark.parametrize(("lifetime", "renew"), [(10, 9), (20, 19), (2, 1), (1, 0.5)])
def test_subscriptions_are_renewed_before_their_lifetime_runs_out(lifetime: float, renew: float) -> None:
    assert ssc1.renew_after_s(lifetime) == renew


def test_split_keeps_every_message_under_the_limit_and_loses_no_address() -> None:
    paths = [("rx" + str(n), leaf) for n in range(1, 5) for leaf in ("name", "frequency", "mute", "gain", "warnings")]

    def encode(chunk: Sequence[tuple[str, ...]]) -> bytes:
        return ssc1.encode(ssc1.tree(chunk), xid=4294967295)

    chunks = ssc1.split(paths, encode, 120)
    assert len(chunks) > 1
    assert all(len(encode(chunk)) <= 120 for chunk in chunks)
    assert [path for chunk in chunks for path in chunk] == paths
    with pytest.raises(ssc1.MessageTooLargeError):
        ssc1.split(paths, encode, 20)


# --- product maps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "family", "channels"),
    [
        ("EW-DX EM 4", EWDX, 4),
        ("EW-DX EM 2 Dante", EWDX, 2),
        ("EM6000", EM6000, 2),
        ("EM6000-Dante", EM6000, 2),
        ("SL Rack Receiver DW", SLDW, 1),
        ("SL MCR 4 DW", SLDW, 4),
        ("SLDW", SLDW, 1),  # TI 1094 8.18: the SL Rack Receiver DW
        ("SLDW4CH", SLDW, 4),  # TI 1094 11.21: the SL MCR 4 DW
    ],
)
def test_products_are_recognised_with_their_channel_count(product: str, family: SscFamily, channels: int) -> None:
    found = family_for(product)
    assert found is family
    assert found.channel_count(product) == channels


def test_unknown_products_are_not_claimed() -> None:
    assert family_for("KH 150") is None
    assert family_for("L6000") is None


@pytest.mark.parametrize(
    ("datagram", "channel", "fields"),
    [
        (
            b'{"mates":{"tx1":{"warnings":["LowBattery","AfPeak"]}}}',
            1,
            {"warnings": ["LowBattery", "AfPeak"], "tx_present": True},
        ),
        (b'{"mates":{"tx2":{"warnings":[]}}}', 2, {"warnings": [], "tx_present": True}),
        (b'{"mates":{"tx2":{"battery":{"type":"Battery"}}}}', 2, {"battery_type": "Battery", "tx_present": True}),
        (b'{"mates":{"tx2":{"type":"SKM"}}}', 2, {"tx_model": "SKM", "tx_present": True}),
        (b'{"rx1":{"frequency":546400}}', 1, {"frequency_mhz": 546.4}),
        (b'{"rx3":{"mute":true,"gain":9}}', 3, {"muted": True, "gain_db": 9.0}),
        (b'{"m":{"rx1":{"rsqi":85,"divi":2}}}', 1, {"rf_quality_percent": 85, "tx_present": True, "antenna": "B"}),
        (b'{"m":{"rx2":{"af":-23.5,"rssi":-61.0}}}', 2, {"audio_dbfs": -23.5, "rf_dbm": -61.0}),
        (b'{"mates":{"tx1":{"battery":{"gauge":70,"lifetime":185}}}}', 1, {"battery_percent": 70}),
    ],
)
def test_ewdx_leaves_map_to_hub_fields(datagram: bytes, channel: int, fields: dict[str, Any]) -> None:
    updates = ChannelMapper(EWDX).values(ssc1.decode(datagram).values)
    assert fields.items() <= updates[channel].items()


def test_ewdx_receiver_and_transmitter_warnings_are_merged() -> None:
    mapper = ChannelMapper(EWDX)
    mapper.values({("rx1", "warnings"): ["Aes256Error"]})
    updates = mapper.values({("mates", "tx1", "warnings"): ["LowBattery"]})
    assert updates[1]["warnings"] == ["Aes256Error", "LowBattery"]


def test_ewdx_424_on_a_transmitter_leaf_means_no_transmitter() -> None:
    message = ssc1.decode(b'{"osc":{"error":[{"mates":{"tx2":{"battery":{"gauge":[424]}}}}]}}')
    updates = ChannelMapper(EWDX).errors(message.errors)
    assert updates[2]["tx_present"] is False
    assert updates[2]["battery_percent"] is None


def test_ewdx_no_link_clears_the_transmitter() -> None:
    updates = ChannelMapper(EWDX).values({("m", "rx1", "rsqi"): 0})
    assert updates[1]["tx_present"] is False
    assert updates[1]["battery_percent"] is None


@pytest.mark.parametrize(
    ("battery", "fields"),
    [
        (["70%", "2:10"], {"tx_present": True, "battery_percent": 70, "battery_runtime_min": 130}),
        (["100%", "-:--"], {"tx_present": True, "battery_percent": 100, "battery_runtime_min": None}),
        (["low", "0:12"], {"tx_present": True, "battery_percent": None, "battery_runtime_min": 12}),
        ([], {"tx_present": False, "battery_percent": None, "battery_runtime_min": None}),
    ],
)
def test_em6000_battery_array(battery: list[str], fields: dict[str, Any]) -> None:
    updates = ChannelMapper(EM6000).values({("rx1", "skx", "battery"): battery})
    assert fields.items() <= updates[1].items()


def test_em6000_warnings_reference_example() -> None:
    message = ssc1.decode(b'{"rx1":{"active_warnings":["RFPeak","AFPeak"]}}')
    assert ChannelMapper(EM6000).values(message.values)[1]["warnings"] == ["RFPeak", "AFPeak"]


@pytest.mark.parametrize(
    ("row", "fields"),
    [
        (
            [175, 0, 155, 0, 1, 0, 204, 199, 1],
            {"rf_dbm": -40.0, "antenna": "A", "rf_quality_percent": 80, "audio_dbfs": -28.0}
            | {"rf_antennas": {"RF1": -40.0, "RF2": -50.0}, "audio_peak": True},  # AF_PEAK is a flag
        ),
        (
            [0, 0, 0, 0, 0, 0, 0, 0, 0],
            {"rf_dbm": -127.5, "antenna": None, "rf_quality_percent": 0, "audio_dbfs": -127.5}
            | {"rf_antennas": {"RF1": -127.5, "RF2": -127.5}, "audio_peak": False},
        ),
        (
            [255, 1, 255, 1, 1, 1, 255, 255, 1],
            {"rf_dbm": 0.0, "antenna": "AB", "rf_quality_percent": 100, "audio_dbfs": 0.0}
            | {"rf_antennas": {"RF1": 0.0, "RF2": 0.0}, "audio_peak": True},
        ),
        # LQI 128 is 50 %, not 0 or 100 (a known client bug rounds before scaling)
        (
            [200, 0, 100, 0, 0, 1, 128, 100, 0],
            {"rf_dbm": -27.5, "antenna": "B", "rf_quality_percent": 50, "audio_dbfs": -77.5}
            | {"rf_antennas": {"RF1": -27.5, "RF2": -77.5}, "audio_peak": False},
        ),
    ],
)
def test_em6000_meter_row_formulas(row: list[int], fields: dict[str, Any]) -> None:
    assert em6000_meter_fields(row) == fields


def test_em6000_meter_array_has_one_row_per_channel() -> None:
    updates = ChannelMapper(EM6000).values({("mm",): [[200] * 9, [100] * 9]})
    assert set(updates) == {1, 2}
    assert updates[2]["rf_dbm"] == -77.5


@pytest.mark.parametrize(
    ("leaves", "fields"),
    [
        ({("mates", "tx1", "bat_lifetime"): 36240}, {"battery_runtime_min": 604, "tx_present": True}),
        (
            {("mates", "tx1", "bat_gauge"): 80, ("mates", "tx1", "bat_bars"): 4},
            {"battery_percent": 80, "battery_bars": 4},
        ),
        ({("rx1", "name"): "rx1"}, {"name": "rx1"}),
    ],
)
def test_sldw_leaves(leaves: dict[Any, Any], fields: dict[str, Any]) -> None:
    assert fields.items() <= ChannelMapper(SLDW).values(leaves)[1].items()


@pytest.mark.parametrize(
    ("family", "datagram", "fields"),
    [
        (
            EWDX,
            b'{"mates":{"tx1":{"battery":{"gauge":NaN,"lifetime":Infinity}}},"m":{"rx1":{"rsqi":NaN,"af":-Infinity}}}',
            {"battery_percent": None, "battery_runtime_min": None, "rf_quality_percent": None, "audio_dbfs": None},
        ),
        (SLDW, b'{"mates":{"tx1":{"bat_bars":NaN,"bat_lifetime":1e400}}}', {"battery_bars": None}),
        (EM6000, b'{"mm":[[NaN,0,Infinity,0,1,0,NaN,Infinity,0]]}', {"rf_dbm": None, "audio_dbfs": None}),
    ],
)
def test_non_finite_numbers_from_a_device_show_as_unknown(family: SscFamily, datagram: bytes, fields: Any) -> None:
    # Python's json reads NaN and Infinity; they must become "unknown", not break the mapping or the hub's JSON
    assert fields.items() <= ChannelMapper(family).values(ssc1.decode(datagram).values)[1].items()


def test_speechline_dw_mutes_by_mute_state_and_by_mute_where_only_that_answers() -> None:
    mute = SLDW.controls[CommandKind.MUTE]
    assert mute.path(1) == ("rx1", "mute_state")  # TI 1094 and Specialelektronik/Sennheiser name it
    assert mute.path(1, {("rx1", "mute_state")}) == ("rx1", "mute")  # a firmware with the unverified leaf
    assert mute.path(1, {("rx1", "mute_state"), ("rx1", "mute")}) == ("rx1", "mute_state")  # refused as missing
    assert ChannelMapper(SLDW).values({("rx1", "mute"): True})[1] == {"muted": True}


@pytest.mark.parametrize(
    ("family", "kind", "value", "device_value"),
    [
        (EWDX, CommandKind.GAIN, 9, 9),
        (EWDX, CommandKind.FREQUENCY, 546.4, 546400),
        (EWDX, CommandKind.NAME, "VOX 1", "VOX 1"),
        (EM6000, CommandKind.FREQUENCY, 470.1, 470100),
        (SLDW, CommandKind.NAME, "Desk_1", "Desk_1"),
    ],
)
def test_control_values_in_range_encode(family: Any, kind: CommandKind, value: Any, device_value: Any) -> None:
    assert family.controls[kind].encode(value) == device_value


@pytest.mark.parametrize(
    ("family", "kind", "value", "message"),
    [
        (EWDX, CommandKind.GAIN, 45, "outside"),
        (EWDX, CommandKind.GAIN, 10, "grid"),
        (EWDX, CommandKind.NAME, "TOO LONG NAME", "longer than 8"),
        (EWDX, CommandKind.NAME, "Café", "printable ASCII"),
        (EM6000, CommandKind.FREQUENCY, 800.0, "outside"),
        (EM6000, CommandKind.FREQUENCY, 470.11, "grid"),
        (SLDW, CommandKind.NAME, "Desk 1", "letters, digits"),
    ],
)
def test_control_values_out_of_range_are_refused(family: Any, kind: CommandKind, value: Any, message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        family.controls[kind].encode(value)


def test_sldw_mates_active_lists_the_linked_transmitters() -> None:
    # TI 1094 8.52: ["tx1"] with a link, [] without; channels the device lacks are dropped by the driver
    linked = SLDW.convert(ssc1.address("/mates/active"), ["tx1"])
    assert linked[1] == {"tx_present": True}
    unlinked = SLDW.convert(ssc1.address("/mates/active"), [])
    assert unlinked[1]["tx_present"] is False and unlinked[1]["battery_percent"] is None


# Leaves whose JSON type no public source prints are read liberally (families.py says which):
@pytest.mark.parametrize(
    ("family", "path", "value", "updates"),
    [
        (EM6000, "/rx1/encryption", True, {1: {"encryption": "on"}}),
        (EM6000, "/rx1/encryption", "Off", {1: {"encryption": "off"}}),  # text instead of a bool
        (EM6000, "/rx1/encryption", 1, {1: {"encryption": None}}),  # neither: unknown, not a guess
        (EM6000, "/rx2/skx/autolock", False, {2: {"tx_locked": "none"}}),
        (EM6000, "/rx2/skx/autolock", "menu", {2: {"tx_locked": "menu"}}),  # as the device states it
        (EM6000, "/rx1/skx/autolock", "On", {1: {"tx_locked": "all"}}),  # D6000 guide 8.28: "On" / "Off"
        (EM6000, "/rx1/skx/autolock", "Off", {1: {"tx_locked": "none"}}),
        (EM6000, "/rx1/skx/autolock", "", {1: {"tx_locked": None}}),  # no transmitter reports
        (SLDW, "/mates/active", "tx1", {}),  # not the documented list: nothing to show
        (EM6000, "/rx1/active_bank_channel", ["U1", 7], {1: {"group_channel": "U1.7"}}),
        (EM6000, "/rx1/active_bank_channel", "B1", {1: {"group_channel": None}}),
        (EWDX, "/device/network/ether/macs", "00:1b:66:00:00:01", {0: {"mac_address": "00:1b:66:00:00:01"}}),
        (EWDX, "/device/network/ether/macs", [None, "00:1b:66:00:00:02"], {0: {"mac_address": "00:1b:66:00:00:02"}}),
        (EWDX, "/device/network/ipv4/ipaddr", "", {0: {"ip_address": None}}),
        (EWDX, "/mates/tx1/lock", True, {1: {"tx_locked": "all", "tx_present": True}}),
        (
            CHG70N,
            "/bays/device_type",
            [None, "BA70"],
            {1: {"tx_model": None}, 2: {"tx_present": True, "tx_model": "BA70"}},
        ),
        (CHG70N, "/bays/bat_gauge", None, {}),  # not a list over the bays: nothing to show
    ],
)
def test_liberal_leaves_keep_what_can_be_read_and_drop_the_rest(
    family: SscFamily, path: str, value: Any, updates: dict[int, dict[str, Any]]
) -> None:
    assert family.convert(ssc1.address(path), value) == updates


def test_the_charger_is_known_by_its_product_before_the_ewdx_pattern_claims_it() -> None:
    assert family_for("CHG 70N") is CHG70N and family_for("EW-DX CHG70N") is CHG70N
    assert CHG70N.state_addresses(2)[0] == ("device", "name") and ("bays", "bat_health") in CHG70N.state_addresses(2)
