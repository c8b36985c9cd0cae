"""SSCv2 without sockets: the SSE framer, path spelling and the resource map, from the reference's examples."""

from __future__ import annotations

import json
import random
import re

import pytest
from wmhub_sennheiser.ssc2 import (
    ChannelNumbers,
    ResourceMap,
    SseEvent,
    SseEventTooLargeError,
    SseParser,
    encode_sse,
    normalise_path,
    path_covers,
    schema_paths,
    subscription_paths,
)

OPEN_EVENT = b'event: open\ndata: {"path":"/api/ssc/state/subscriptions/5f1c","sessionUUID":"5f1c"}\n\n'
SPECTERA_RF_EVENT = b'data:{"/api/rf/channels/0":{"rfChannelId":0,"frequency":474000}}\n\n'


def test_open_event_carries_the_session() -> None:
    events = SseParser().feed(OPEN_EVENT)
    assert events == [SseEvent(event="open", data='{"path":"/api/ssc/state/subscriptions/5f1c","sessionUUID":"5f1c"}')]
    assert events[0].json()["sessionUUID"] == "5f1c"


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_splits_the_same(newline: bytes) -> None:
    stream = OPEN_EVENT.replace(b"\n", newline) + SPECTERA_RF_EVENT.replace(b"\n", newline)
    parser = SseParser()
    events = [event for byte in range(len(stream)) for event in parser.feed(stream[byte : byte + 1])]
    assert [event.event for event in events] == ["open", "message"]
    assert events[1].json() == {"/api/rf/channels/0": {"rfChannelId": 0, "frequency": 474000}}


def test_multi_line_data_comments_and_ids() -> None:
    parser = SseParser()
    stream = b': keep-alive\n\nid: 7\nevent: change\ndata: {"a":\ndata: 1}\nretry: 10\nunknown: x\n\n'
    (event,) = parser.feed(stream)
    assert event == SseEvent(event="change", data='{"a":\n1}', id="7")
    assert event.json() == {"a": 1}
    assert parser.feed(b"data: 2\n\n") == [SseEvent(data="2", id="7")]  # the last id carries over


def test_any_chunking_gives_the_same_events() -> None:
    stream = (
        OPEN_EVENT
        + SPECTERA_RF_EVENT.replace(b"\n", b"\r\n")
        + b": comment\r"
        + encode_sse({"/api/device/site": {"deviceName": "A\u00e9"}}, event="message", event_id="1")
    )
    whole = SseParser().feed(stream)
    assert len(whole) == 3
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(stream)), k=rng.randint(1, 12)))
        parser = SseParser()
        bounds = zip([0, *cuts], [*cuts, len(stream)], strict=True)
        assert [event for start, end in bounds for event in parser.feed(stream[start:end])] == whole


def test_event_with_only_a_name_dispatches_nothing() -> None:
    assert SseParser().feed(b"event: close\n\n") == []


def test_a_huge_event_is_refused_not_buffered() -> None:
    parser = SseParser(max_event_bytes=1000)
    parser.feed(b"data: " + b"x" * 500 + b"\n")
    with pytest.raises(SseEventTooLargeError):
        parser.feed(b"data: " + b"x" * 600 + b"\n")
    with pytest.raises(SseEventTooLargeError):
        SseParser(max_event_bytes=1000).feed(b"data: " + b"y" * 2000)  # one line, never terminated


def test_encode_round_trips() -> None:
    data = {"/api/device/site": {"deviceName": "Stage\nLeft"}}
    (event,) = SseParser().feed(encode_sse(data, event="message", event_id="3"))
    assert event.json() == data and event.id == "3"


@pytest.mark.parametrize(
    ("spelling", "normal"),
    [
        ("/device/site", "/api/device/site"),
        ("/api/device/site", "/api/device/site"),
        ("api/device/site/", "/api/device/site"),
        ("/api/audio/inputs", "/api/audio/inputs"),
        ("/apiary", "/api/apiary"),
    ],
)
def test_both_path_spellings_are_accepted(spelling: str, normal: str) -> None:
    assert normalise_path(spelling) == normal


def test_a_collection_subscription_covers_its_members() -> None:
    assert path_covers("/mts/paired/all", "/api/mts/paired/all/12")
    assert not path_covers("/api/mts/paired/all", "/api/mts/paired/allx")


def test_subscriptions_come_from_the_schema_mapped_first_then_raw() -> None:
    schema: dict[str, dict[str, dict[str, object]]] = {
        "paths": {
            "/api/device/site": {"get": {}, "put": {}},
            "/api/mts/paired/all/{mtUid}": {"get": {}},
            "/api/ssc/state/subscriptions/{uuid}": {"get": {}},
            "/api/health/psu": {"get": {}},
            "/api/health/psu/voltage": {"get": {}},
            "/api/firmware/update": {"post": {}},
        }
    }
    assert schema_paths(schema) == [
        "/api/device/site",
        "/api/mts/paired/all",
        "/api/health/psu",
        "/api/health/psu/voltage",
    ]
    assert subscription_paths(schema_paths(schema)) == ["/api/device/site", "/api/mts/paired/all", "/api/health/psu"]
    assert "/api/rf/channels" in subscription_paths(None)


def spectera_mobile(**overrides: object) -> dict[str, object]:
    mobile: dict[str, object] = {
        "mtUid": 4,
        "type": "SKM",
        "name": "Vocal 1",
        "serial": "1234567",
        "state": "Connected",
        "batteryFillLevel": 80,
        "batteryRuntime": 310,
        "batteryLow": False,
        "micLqi": 3,
        "rssi": -61.5,
        "dominantAntenna": "A2",
        "interference": {"severity": "none"},
        "rfChannelId": 0,
    }
    mobile.update(overrides)
    return mobile


def test_spectera_mobile_device_maps_to_a_channel() -> None:
    resources = ResourceMap()
    resources.apply_all({"/api/rf/channels": [{"rfChannelId": 0, "frequency": 474000, "bandwidthMode": 8000}]})
    changes = resources.apply_all({"/api/mts/paired/all/4": spectera_mobile()})
    assert changes.new_channel_count == 1
    assert changes.channels[1] == {
        "name": "Vocal 1",
        "frequency_mhz": 474.0,
        "rf_bandwidth_khz": 8000.0,  # the RF channel's bandwidthMode (src/types.ts)
        "tx_present": True,
        "tx_model": "SKM",
        "tx_id": "1234567",  # the pack's serial
        "warnings": [],
        "battery_percent": 80,
        "battery_runtime_min": 310,
        "rf_quality_percent": 75,  # micLqi runs 0..4 (Spectera client src/feedbacks.ts)
        "rf_dbm": -61.5,
        "antenna": "A2",
        "audio_dbfs": None,
        "audio_peak": None,
    }


def test_the_reference_rf_event_retunes_every_mobile_on_that_channel() -> None:
    resources = ResourceMap()
    resources.apply(
        "/api/mts/paired/all",
        [spectera_mobile(mtUid=9, rfChannelId=1), spectera_mobile(mtUid=2), spectera_mobile(mtUid=5)],
    )
    assert resources.numbers.of == {"2": 1, "5": 2, "9": 3}  # numbered in mtUid order
    (event,) = SseParser().feed(SPECTERA_RF_EVENT)
    changes = resources.apply_all(event.json())
    assert {index: fields["frequency_mhz"] for index, fields in changes.channels.items()} == {1: 474.0, 2: 474.0}


def test_a_transmitter_switched_off_has_no_battery() -> None:
    resources = ResourceMap()
    resources.apply("/api/mts/paired/all/4", spectera_mobile())
    changes = resources.apply("/api/mts/paired/all/4", {"state": "offline"})  # partial event
    fields = changes.channels[1]
    assert fields["tx_present"] is False
    assert fields["battery_percent"] is None and fields["battery_runtime_min"] is None
    assert fields["rf_dbm"] is None and fields["name"] == "Vocal 1"
    deleted = resources.apply("/api/mts/paired/all/4", None)  # the reference's deletion shape
    assert deleted.channels[1]["tx_present"] is False


def test_a_sleeping_pack_is_not_on_air() -> None:
    # src/types.ts MtState in companion-module-sennheiser-spectera: Connected, Disconnected, Syncing, Sleeping, ...
    resources = ResourceMap()
    resources.apply("/api/mts/paired/all/4", spectera_mobile())
    fields = resources.apply("/api/mts/paired/all/4", {"state": "Sleeping", "sleep": True}).channels[1]
    assert (fields["tx_present"], fields["battery_percent"], fields["rf_quality_percent"]) == (False, None, None)
    assert resources.apply("/api/mts/paired/all/4", {"state": "Connected"}).channels[1]["battery_percent"] == 80


def test_a_pack_with_the_placeholder_serial_gets_no_channel_until_it_has_a_real_one() -> None:
    # Spectera's own client skips serial "0000000000": newly paired, still syncing (src/api.ts)
    resources = ResourceMap()
    placeholder = spectera_mobile(mtUid=3, serial="0000000000", name="")
    changes = resources.apply("/api/mts/paired/all", [placeholder, spectera_mobile(mtUid=4)])
    assert resources.numbers.of == {"4": 1} and set(changes.channels) == {1}
    assert not resources.apply("/api/device/state", {"state": "Normal", "warnings": ["x"]}).channels.keys() - {1}
    synced = resources.apply("/api/mts/paired/all/3", {"serial": "7000003", "name": "Spare"})
    assert resources.numbers.of == {"4": 1, "3": 2} and synced.channels[2]["name"] == "Spare"
    assert resources.apply("/api/mts/paired/all/77", None).channels == {}  # unknown and deleted: nothing


def test_a_channel_stays_with_its_pack_and_an_unpaired_one_leaves_a_gap_the_next_pack_fills() -> None:
    numbers = ChannelNumbers()
    first = ResourceMap(numbers)
    first.apply("/api/mts/paired/all", [spectera_mobile(mtUid=uid) for uid in (7, 3, 5)])
    assert numbers.of == {"3": 1, "5": 2, "7": 3}
    # the next connection's list lacks pack 5 (unpaired meanwhile): its channel empties, the others stay
    changes = ResourceMap(numbers).apply("/api/mts/paired/all", [spectera_mobile(mtUid=7), spectera_mobile(mtUid=3)])
    assert numbers.of == {"3": 1, "7": 3} and numbers.count == 3
    assert (changes.channels[2]["tx_id"], changes.channels[2]["tx_present"], changes.channels[2]["warnings"]) == (
        None,
        False,
        [],
    )
    again = ResourceMap(numbers)
    again.apply("/api/mts/paired/all", [spectera_mobile(mtUid=uid) for uid in (3, 7, 9, 11)])
    assert numbers.of == {"3": 1, "7": 3, "9": 2, "11": 4} and again.mobile(2) is not None
    assert again.apply("/api/mts/paired/all/9", None).channels[2]["name"] is None and again.mobile(2) is None


@pytest.mark.parametrize(
    ("kept", "said"),
    [
        ([1, 2], "not {"),
        ({"channels": {"3": 1}, "count": True}, "not {"),
        ({"channels": {"3": 1, "7": 5}, "count": 3}, "no whole number from 1 to its count 3"),
        ({"channels": {"3": 1.0}, "count": 3}, "no whole number"),
        ({"channels": {"3": 2, "7": 2}, "count": 3}, "two transmitters on one channel"),
        ({"channels": {}, "count": 513}, "a count of 513 channels"),
    ],
)
def test_kept_numbers_that_cannot_be_meant_are_refused_saying_why(kept: object, said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        ChannelNumbers.from_memory(kept)


def test_the_numbers_come_back_from_what_the_driver_keeps_as_they_went() -> None:
    numbers = ChannelNumbers()
    ResourceMap(numbers).apply("/api/mts/paired/all", [spectera_mobile(mtUid=uid) for uid in (7, 3, 5)])
    numbers.free("5")
    kept = json.loads(json.dumps(numbers.memory()))  # as the hub hands it back
    assert kept == {"channels": {"3": 1, "7": 3}, "count": 3}
    again = ChannelNumbers.from_memory(kept)
    assert (again.of, again.count) == ({"3": 1, "7": 3}, 3) and again.number("9") == 2
    assert ChannelNumbers.from_memory(None) == ChannelNumbers()


def test_identity_site_and_state() -> None:
    resources = ResourceMap()
    identity = {
        "product": "TCCM",
        "hardwareRevision": "1",
        "serial": "1023456789",
        "vendor": "Sennheiser electronic GmbH & Co. KG",
    }
    changes = resources.apply("/device/identity", identity)
    assert changes.identity == identity and changes.device == {"model": "TCCM"}
    assert resources.apply("/device/site", {"deviceName": "Rack A", "location": "FOH"}).device == {"name": "Rack A"}
    resources.apply(
        "/api/mts/paired/all/1", spectera_mobile(mtUid=1, batteryLow=True, interference={"severity": "HIGH"})
    )
    changes = resources.apply("/api/device/state", {"state": "ok", "warnings": ["PSU redundancy lost"]})
    assert changes.channels[1]["warnings"] == ["PSU redundancy lost", "battery low", "interference high"]


def test_metering_and_unknown_resources() -> None:
    resources = ResourceMap()
    resources.apply("/api/mts/paired/all/4", spectera_mobile(micAudiolinkId=2))
    resources.apply("/api/audio/outputs", [{"outputId": 0, "micAudiolinkId": -1}, {"outputId": 1, "micAudiolinkId": 2}])
    # the shape of Spectera's AudioLevels (companion-module-sennheiser-spectera src/types.ts), in dBFS
    metering = {"aoIpIn": {"peak": [-3.0], "rms": [-9.0]}, "aoIpOut": {"peak": [-80.0, -0.5], "rms": [-90.0, -23.5]}}
    changes = resources.apply("/api/audio/metering", {**metering, "updateCounter": 7})
    assert changes.channels == {1: {"audio_dbfs": -23.5, "audio_peak": True}}
    # a partial event keeps the other interfaces; a re-routed output moves the pack's level
    resources.apply("/api/audio/outputs/0", {"micAudiolinkId": 2})
    resources.apply("/api/audio/outputs/1", {"micAudiolinkId": -1})
    changes = resources.apply("/api/audio/metering", {"madi1Out": {"peak": [-30.0], "rms": [-40.0]}})
    assert changes.channels == {1: {"audio_dbfs": -90.0, "audio_peak": False}}
    level = json.loads('{"rms":-110}')  # TCC M, GET /api/audio/inputs/reference/level
    assert not resources.apply("/api/audio/inputs/reference/level", level)
    assert resources.raw == {"/api/audio/inputs/reference/level": {"rms": -110}}
    resources.apply("/api/audio/links/3", {"id": 3})
    resources.apply_all(json.loads('{"/api/audio/links/3":null}'))
    assert "/api/audio/links/3" not in resources.raw
