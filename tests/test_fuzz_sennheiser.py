"""Bad input against the Sennheiser codecs: SSCv1 JSON, MCP (G3/G4) ASCII, SSCv2 SSE and resource map."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

from hypothesis import strategies as st
from wmhub_sennheiser import families, mcp, ssc1, ssc2

from hub.model import Channel, Device, InvalidValueError
from hub.testing import as_the_sink_takes
from tests.reliability_report import fuzz

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan]),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)
SSC_KEYS = st.sampled_from(["osc", "xid", "error", "state", "subscribe", "#", "rx1", "name", "desc", "mates"])
# Trees shaped like SSC messages (osc/error, osc/state/subscribe, error leaves) so the decoder's
# special paths are reached, not only the generic JSON ones.
SSC_TREES = st.recursive(
    SCALARS | st.lists(st.integers(0, 999), min_size=1, max_size=2),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(SSC_KEYS, children, max_size=4),
    max_leaves=25,
)


def nested(depth: int, data: bytes = b"[") -> bytes:
    return data * depth


@fuzz(
    "SSCv1 decoder",
    "random bytes, random JSON, SSC-shaped trees (errors, subscriptions, xid), NaN/Infinity literals",
    "a Message or SscDecodeError; never another exception",
    max_examples=300,
    payload=st.one_of(
        st.binary(max_size=200),
        JSON_VALUES.map(lambda value: json.dumps(value).encode()),
        SSC_TREES.map(lambda value: json.dumps(value).encode()),
    ),
)
def test_ssc1_decode_only_raises_decode_error(payload: bytes) -> None:
    try:
        message = ssc1.decode(payload)
    except ssc1.SscDecodeError:
        return
    for error in message.errors:
        str(error)  # every decoded error can be shown to a user
    assert message.xid is None or isinstance(message.xid, int)


@fuzz(
    "SSCv1 decoder",
    "deeply nested JSON in one datagram (up to 64 KiB of '[' or '{\"a\":')",
    "SscDecodeError, not a RecursionError that would take the device's reader down",
    max_examples=20,
    depth=st.integers(1, 65_000),
    opener=st.sampled_from([b"[", b'{"a":', b'{"osc":{"error":[']),
)
def test_ssc1_decode_deep_nesting(depth: int, opener: bytes) -> None:
    with contextlib.suppress(ssc1.SscDecodeError):
        ssc1.decode(nested(depth // len(opener) + 1, opener))


SSC_ADDRESSES = st.lists(
    st.text(st.characters(codec="ascii", exclude_characters="/"), min_size=1, max_size=8), min_size=1, max_size=4
).map(tuple)


@fuzz(
    "SSCv1 encoder + decoder",
    "random addresses and JSON leaf values, with an xid",
    "decode(encode(tree)) gives back every leaf and the xid",
    leaves=st.dictionaries(
        SSC_ADDRESSES.filter(lambda path: path[0] != "osc"), SCALARS.filter(lambda v: v == v), max_size=6
    ),
    xid=st.integers(0, 2**31),
)
def test_ssc1_round_trip(leaves: dict[tuple[str, ...], Any], xid: int) -> None:
    # a leaf that is also the prefix of another leaf cannot exist in one tree: keep the longer one
    leaves = {
        path: value
        for path, value in leaves.items()
        if not any(other[: len(path)] == path and other != path for other in leaves)
    }
    message = ssc1.decode(ssc1.encode(ssc1.tree(leaves), xid=xid))
    assert message.xid == xid
    assert message.values == {path: value for path, value in leaves.items()}


@fuzz(
    "SSCv1 request splitter",
    "random address lists and size limits",
    "every chunk fits the limit or MessageTooLargeError; no address lost",
    paths=st.lists(SSC_ADDRESSES, max_size=30),
    max_bytes=st.integers(1, 400),
)
def test_ssc1_split_bounded(paths: list[tuple[str, ...]], max_bytes: int) -> None:
    def encode_chunk(chunk: Any) -> bytes:
        return ssc1.encode(ssc1.tree(chunk), xid=1)

    try:
        chunks = ssc1.split(paths, encode_chunk, max_bytes)
    except ssc1.MessageTooLargeError:
        return
    assert [path for chunk in chunks for path in chunk] == paths
    assert all(len(encode_chunk(chunk)) <= max_bytes for chunk in chunks)


MCP_WORDS = st.sampled_from(
    [
        "RF1",
        "RF2",
        "States",
        "RF",
        "AF",
        "Af",
        "Bat",
        "Msg",
        "Config",
        "Frequency",
        "Name",
        "Mute",
        "FirmwareRevision",
        "RfConfig",
        "1020:",
        "?",
        "OK",
        "AF_Peak",
        "[",
        "]",
        "-1",
        "0",
        "99999999999999999999",
    ]
)
MCP_DATAGRAMS = st.one_of(
    st.binary(max_size=200),
    st.lists(st.one_of(MCP_WORDS, st.text(max_size=6), st.sampled_from(["\r", "\n", " "])), max_size=30).map(
        lambda words: " ".join(words).encode("utf-8", "replace")
    ),
)


@fuzz(
    "MCP (G3/G4) parser",
    "random datagrams and keyword lines with wrong counts, non-numbers, huge numbers, unknown keywords",
    "lines, ErrorLines and hub fields, or McpFieldError for a known keyword with bad fields",
    max_examples=300,
    datagram=MCP_DATAGRAMS,
)
def test_mcp_parse_and_decode(datagram: bytes) -> None:
    for line in mcp.parse(datagram):
        str(line)
        if isinstance(line, mcp.Line):
            try:
                fields = mcp.em_channel_fields(line)
            except mcp.McpFieldError:
                continue
            Channel(index=1, **as_the_sink_takes(fields))  # raises for a value the hub model cannot hold


FINITE_JSON = st.recursive(
    SCALARS.filter(lambda value: not isinstance(value, float) or math.isfinite(value)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


def sse_events() -> st.SearchStrategy[list[tuple[str | None, Any]]]:
    return st.lists(st.tuples(st.none() | st.sampled_from(["message", "close", "ping"]), FINITE_JSON), max_size=6)


@fuzz(
    "SSCv2 SSE parser",
    "valid events split at any byte, with CR / LF / CRLF line ends and comments",
    "the same events whatever the split; the pending buffer never above the bound",
    events=sse_events(),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
)
def test_sse_split_invariant(events: list[tuple[str | None, Any]], newline: bytes, cuts: list[int]) -> None:
    stream = b":comment" + newline + newline
    for kind, data in events:
        stream += ssc2.encode_sse(data, event=kind).replace(b"\n", newline)
    parser = ssc2.SseParser(max_event_bytes=64 * 1024)
    got: list[ssc2.SseEvent] = []
    points = sorted({min(cut, len(stream)) for cut in cuts})
    for start, end in zip([0, *points], [*points, len(stream)], strict=True):
        got += parser.feed(stream[start:end])
    assert [(event.event, event.json()) for event in got] == [(kind or "message", data) for kind, data in events]


@fuzz(
    "SSCv2 SSE parser",
    "random bytes, and a stream that never ends its line or event (2 MiB in 8 KiB reads)",
    "events or SseEventTooLargeError once the bound (64 KiB here) is passed; memory stays bounded",
    max_examples=20,
    junk=st.binary(max_size=300),
    filler=st.sampled_from([b"x", b"data: x\n", b"data: " + b"y" * 100 + b"\r\n", b": comment\n"]),
)
def test_sse_bounded(junk: bytes, filler: bytes) -> None:
    parser = ssc2.SseParser(max_event_bytes=64 * 1024)
    with contextlib.suppress(ssc2.SseEventTooLargeError):
        parser.feed(junk)
    read = filler * (8192 // len(filler))
    refused = False
    for _ in range(256):
        try:
            parser.feed(read)
        except ssc2.SseEventTooLargeError:
            refused = True
            break
    assert refused or filler == b": comment\n"  # comments are dropped as they arrive, so nothing grows


RESOURCE_PATHS = st.sampled_from(
    [
        ssc2.IDENTITY_PATH,
        ssc2.SITE_PATH,
        ssc2.STATE_PATH,
        ssc2.MOBILES_PATH,
        ssc2.MOBILES_PATH + "/7",
        ssc2.RF_CHANNELS_PATH,
        ssc2.RF_CHANNELS_PATH + "/1",
        ssc2.METERING_PATH,
        ssc2.AUDIO_OUTPUTS_PATH,
        ssc2.AUDIO_OUTPUTS_PATH + "/1",
        "/device/site",
        "/api/unknown/x",
    ]
)
MOBILE_KEYS = st.sampled_from(
    [
        "mtUid",
        "rfChannelId",
        "state",
        "name",
        "type",
        "batteryFillLevel",
        "batteryRuntime",
        "micLqi",
        "rssi",
        "dominantAntenna",
        "batteryLow",
        "interference",
        "frequency",
        "warnings",
        "deviceName",
        "product",
        "serial",
        "micAudiolinkId",
        "outputId",
        "aoIpOut",
        "madi1Out",
        "peak",
        "rms",
    ]
)
RESOURCE_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(MOBILE_KEYS, children, max_size=6),
    max_leaves=40,
)
# Mostly well-formed objects with one or two bad fields: the shape real firmware bugs take.
MOBILE = st.fixed_dictionaries(
    {
        "mtUid": st.integers(1, 3) | st.text(max_size=3),
        "state": st.sampled_from(["Connected", "Sleeping", "off", None, 1]),
    },
    optional={
        key: SCALARS | RESOURCE_VALUES
        for key in [
            "batteryFillLevel",
            "batteryRuntime",
            "micLqi",
            "rssi",
            "name",
            "type",
            "dominantAntenna",
            "interference",
            "rfChannelId",
            "batteryLow",
            "serial",
            "micAudiolinkId",
        ]
    },
)
LEVELS = st.fixed_dictionaries(
    {}, optional={"peak": st.lists(SCALARS, max_size=3), "rms": st.lists(SCALARS, max_size=3)}
)
EVENTS = st.dictionaries(
    RESOURCE_PATHS,
    st.one_of(
        RESOURCE_VALUES,
        MOBILE,
        st.lists(MOBILE, max_size=3),
        st.fixed_dictionaries({}, optional={"warnings": RESOURCE_VALUES, "deviceName": SCALARS, "product": SCALARS}),
        st.lists(st.fixed_dictionaries({"outputId": st.integers(0, 2)}, optional={"micAudiolinkId": SCALARS})),
        st.fixed_dictionaries({}, optional={"aoIpOut": LEVELS, "madi1Out": LEVELS, "updateCounter": SCALARS}),
    ),
    max_size=3,
)


@fuzz(
    "SSCv2 resource map",
    "events with random resource values (wrong types, NaN/infinity, partial objects, deletions)",
    "hub fields within the model's ranges; never an exception (an exception would drop the event stream)",
    events=st.lists(EVENTS, max_size=5),
)
def test_resource_map_never_raises(events: list[dict[str, Any]]) -> None:
    resources = ssc2.ResourceMap()
    for event in events:
        changes = resources.apply_all(event)
        for fields in changes.channels.values():
            Channel(index=1, **as_the_sink_takes(fields))  # raises for a value the hub model cannot hold
            for name in ("rf_dbm", "audio_dbfs"):
                assert fields.get(name) is None or math.isfinite(fields[name])


# companion-module-sennheiser-spectera src/utils.ts MOBILE_DEVICE_NAME_ALLOWED
SPECTERA_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+=*/;<>#|,. ")


@fuzz(
    "SSCv2 control checks",
    "random names and frequencies (wrong types, NaN, huge, unprintable)",
    "a problem text or None; never an exception",
    name=SCALARS,
    khz=SCALARS,
)
def test_ssc2_control_checks(name: Any, khz: Any) -> None:
    if ssc2.name_problem(name, ssc2.DEVICE_NAME_MAX_CHARS) is None:
        assert isinstance(name, str) and 0 < len(name) <= ssc2.DEVICE_NAME_MAX_CHARS and name.isprintable()
    with contextlib.suppress(InvalidValueError):
        taken = ssc2.MOBILE_NAME.check(name)
        assert 0 < len(taken) <= 16 and taken.strip() and set(taken) <= SPECTERA_NAME_CHARACTERS
    problem = ssc2.frequency_problem(khz)
    if problem is None:
        assert ssc2.FREQUENCY_RANGE_KHZ[0] <= khz <= ssc2.FREQUENCY_RANGE_KHZ[1]


@st.composite
def ssc1_leaf(draw: st.DrawFn) -> tuple[Any, tuple[str, ...], Any]:
    family = draw(st.sampled_from(list(families.FAMILIES)))
    pattern = draw(st.sampled_from(sorted([*family.leaves, *family.meters, *family.meter_arrays, "/device/name"])))
    path = ssc1.address(pattern.format(n=draw(st.integers(1, 4))))
    value = draw(st.one_of(SCALARS, JSON_VALUES, st.lists(st.lists(SCALARS, max_size=8), max_size=4)))
    return family, path, value


@fuzz(
    "SSCv1 value conversions",
    "every parameter and meter array of every product family with random JSON values",
    "fields the sink passes on as a valid model (out-of-range readings become unknown), never an exception",
    max_examples=400,
    leaf=ssc1_leaf(),
)
def test_ssc1_values_fit_the_model(leaf: tuple[Any, tuple[str, ...], Any]) -> None:
    family, path, value = leaf
    for channel, fields in families.ChannelMapper(family).values({path: value}).items():
        if channel == families.DEVICE:
            Device(id="x", vendor="sennheiser", host="127.0.0.1", port=1, **as_the_sink_takes(fields, device=True))
        else:
            Channel(index=max(1, channel), **as_the_sink_takes(fields))
