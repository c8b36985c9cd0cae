"""Bad input against the Shure codec: framer, parser, SAMPLE decoders and the SET encoder."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from hypothesis import strategies as st
from wmhub_shure.families import FAMILIES, build_set
from wmhub_shure.protocol import ANGLE, MAX_BUFFER, STAR, Framer, Framing, encode, parse

from hub.model import Channel, Command, CommandError, CommandKind
from hub.testing import as_the_sink_takes
from tests.reliability_report import fuzz

FRAMINGS = st.sampled_from([ANGLE, STAR])
# Bytes that look like the protocol (delimiters, braces, digits, words) so hypothesis reaches the
# interesting paths, mixed with arbitrary bytes.
PROTOCOLISH = st.lists(
    st.one_of(
        st.sampled_from([b"<", b">", b"*", b"{", b"}", b" ", b"REP", b"SAMPLE", b"ALL", b"ERR", b"1", b"255"]),
        st.binary(max_size=8),
    ),
    max_size=60,
).map(b"".join)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)], strict=True)]


@fuzz(
    "Shure framer",
    "random and protocol-like bytes, split at any byte",
    "no exception; same messages whatever the split; buffer never above its bound",
    framing=FRAMINGS,
    data=PROTOCOLISH,
    cuts=st.lists(st.integers(0, 500), max_size=10),
)
def test_framer_split_invariant_and_bounded(framing: Framing, data: bytes, cuts: list[int]) -> None:
    whole = Framer(framing).feed(data)
    framer = Framer(framing)
    pieces: list[bytes] = []
    for chunk in chunks(data, cuts):
        pieces += framer.feed(chunk)
        assert framer.buffered <= MAX_BUFFER
    assert pieces == whole
    for body in pieces:
        parse(body)  # must not raise; None for junk


@fuzz(
    "Shure framer",
    "a device that never sends a delimiter (1 MiB in 4 KiB reads)",
    "the buffer stays below 16 KiB + one read; the junk is dropped",
    max_examples=20,
    framing=FRAMINGS,
    filler=st.binary(min_size=1, max_size=64).filter(lambda b: b"<" not in b and b">" not in b and b"*" not in b),
    opener=st.booleans(),
)
def test_framer_never_grows_without_a_delimiter(framing: Framing, filler: bytes, opener: bool) -> None:
    framer = Framer(framing)
    read = (framing.start if opener else b"") + filler * (4096 // len(filler) + 1)
    for _ in range(256):
        assert framer.feed(read[:4096]) == []
        assert framer.buffered <= MAX_BUFFER + 4096
        read = filler * (4096 // len(filler) + 1)
    # junk between messages is discarded at once (whitespace silently), an unclosed message once too long
    assert framer.dropped_bytes > 0 or framer.buffered == 0


SAFE_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="{}<>*"), min_size=1)


@fuzz(
    "Shure encoder + framer + parser",
    "random parameter names, channels and values",
    "encode -> split anywhere -> frame -> parse gives back the same verb, channel, parameter and value",
    framing=FRAMINGS,
    verb=st.sampled_from(["SET", "GET", "REP"]),
    channel=st.none() | st.integers(0, 8),
    param=st.from_regex(r"[A-Z][A-Z_]{0,20}", fullmatch=True),
    words=st.lists(SAFE_TEXT, max_size=3),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_encode_frame_parse_round_trip(
    framing: Framing, verb: str, channel: int | None, param: str, words: list[str], cuts: list[int]
) -> None:
    if framing is STAR:
        words = [word.replace("*", "") or "x" for word in words]
    message = encode(framing, verb, param, *words, channel=channel)
    framer = Framer(framing)
    bodies: list[bytes] = []
    for chunk in chunks(message + message, cuts):
        bodies += framer.feed(chunk)
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    report = parse(bodies[0])
    assert report is not None
    assert (report.verb, report.channel, report.param) == (verb, channel, param)
    if words and not (report.index is not None):
        assert report.value == " ".join(words)


@fuzz(
    "Shure parser",
    "random message bodies (any bytes, unbalanced braces)",
    "a Report or None, never an exception",
    body=PROTOCOLISH,
)
def test_parse_never_raises(body: bytes) -> None:
    parse(body)


@fuzz(
    "Shure SAMPLE decoders",
    "random SAMPLE token lists for every family",
    "a dict of fields, or ValueError/IndexError that the driver counts as a bad message",
    family=st.sampled_from([family for family in FAMILIES.values() if family.sample is not None]),
    tokens=st.lists(st.one_of(st.binary(max_size=6), st.integers(-999, 99999).map(lambda n: str(n).encode()))),
)
def test_sample_decoders_fail_only_with_value_errors(family: Any, tokens: list[bytes]) -> None:
    with contextlib.suppress(ValueError, IndexError):
        family.sample([b"SAMPLE", b"1", b"ALL", *tokens])


COMMAND_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e300, -0.0, 5e-324]),
    st.text(max_size=40),
    st.just("toggle"),
)


@st.composite
def family_and_command(draw: st.DrawFn) -> tuple[Any, Command]:
    family = draw(st.sampled_from(list(FAMILIES.values())))
    # mostly kinds the family has, so the value checks (not just the kind check) are exercised
    mostly_own = draw(st.integers(0, 4)) > 0
    kinds: list[CommandKind] = sorted(family.controls) if family.controls and mostly_own else list(CommandKind)
    command = Command(
        device_id="shure-x",
        kind=draw(st.sampled_from(kinds)),
        value=draw(COMMAND_VALUES),
        channel=draw(st.integers(1, 8) | st.none()),
        slot=draw(st.none() | st.integers(1, 12)),
    )
    return family, command


@fuzz(
    "Shure SET encoder (build_set)",
    "every command kind with random values (NaN, infinity, huge, wrong types, odd strings), slots, channels",
    "a SET whose values fit the family's limits, or InvalidValueError/NotSupportedError; nothing else",
    max_examples=400,
    family_command=family_and_command(),
    gain_now=st.none() | st.floats(-30, 60),
)
def test_build_set_refuses_with_typed_errors(family_command: tuple[Any, Command], gain_now: float | None) -> None:
    family, command = family_command
    try:
        request = build_set(family, command, gain_now)
    except CommandError:
        return
    wire = encode(family.framing, "SET", request.param, *request.values, channel=request.channel)
    assert len(wire) < 200
    framed = Framer(family.framing).feed(wire)
    assert len(framed) == 1, f"{wire!r} does not frame as one message"
    report = parse(framed[0])
    assert report is not None and report.param == request.param


WIRE_VALUES = st.one_of(
    st.integers(-99999, 999999).map(str),
    st.integers(0, 999).map(lambda n: f"{n:03d}"),
    st.integers(0, 99999).map(lambda n: f"{n:05d}"),
    st.sampled_from(["", "U", "UNKN", "ON", "OFF", "MUTE", "--", "255", "65535", "65534", "65533", "007", "-001"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12),
)


@st.composite
def reported_param(draw: st.DrawFn) -> tuple[Any, str]:
    family = draw(st.sampled_from(list(FAMILIES.values())))
    name = draw(st.sampled_from(sorted(family.channel_params)))
    return family.channel_params[name], draw(WIRE_VALUES)


@fuzz(
    "Shure value conversions",
    "every channel parameter of every family with random wire values (out of range, negative, junk)",
    "a value the hub model accepts once the sink checked it, so no device value can make the REST API fail",
    max_examples=400,
    reported=reported_param(),
)
def test_every_reported_value_fits_the_model(reported: tuple[Any, str]) -> None:
    param, wire = reported
    Channel(index=1, **as_the_sink_takes(param.decode(wire)))  # raises ValidationError for what it cannot hold


@fuzz(
    "Shure SAMPLE decoders",
    "SAMPLE lines with numbers out of every documented range",
    "fields the sink passes on as a valid model, or ValueError/IndexError for a malformed line",
    family=st.sampled_from([family for family in FAMILIES.values() if family.sample is not None]),
    numbers=st.lists(st.integers(-999, 99999).map(lambda n: str(n).encode()), min_size=8, max_size=16),
    marks=st.sampled_from([b"AX", b"XB", b"BB", b"XXBX", b"AB"]),
)
def test_sample_fields_fit_the_model(family: Any, numbers: list[bytes], marks: bytes) -> None:
    tokens = [b"SAMPLE", b"1", b"ALL", *numbers]
    tokens[3 if family.key in ("ulxd", "qlxd", "uhfr") else 7] = marks
    try:
        fields = family.sample(tokens)
    except (ValueError, IndexError):
        return
    Channel(index=1, **as_the_sink_takes(fields))


@fuzz(
    "Shure framer",
    "junk with stray '<' but no '>' right before a real message, in any split",
    "the real message still comes out whole (junk costs no state message)",
    junk=st.binary(max_size=600).filter(lambda data: b">" not in data and b"{" not in data and b"}" not in data),
    name=SAFE_TEXT.map(lambda text: text[:8]),
    cuts=st.lists(st.integers(0, 700), max_size=5),
)
def test_framer_recovers_the_message_after_junk(junk: bytes, name: str, cuts: list[int]) -> None:
    message = encode(ANGLE, "REP", "CHAN_NAME", "{" + name + "}", channel=1)
    framer = Framer(ANGLE)
    bodies: list[bytes] = []
    for chunk in chunks(b"<" + junk + message, cuts):
        bodies += framer.feed(chunk)
    report = parse(bodies[-1]) if bodies else None
    assert report is not None and (report.param, report.value) == ("CHAN_NAME", name), bodies
