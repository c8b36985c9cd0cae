"""The codec against the literal lines of the protocol reference, and the framer against any split."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wmhub_shure.families import (
    AXIENT,
    FAMILIES,
    PSM1000,
    QLXD,
    SLXD,
    SLXD_PLUS,
    UHFR,
    ULXD,
    Codec,
    Family,
    build_set,
    engaged,
    family_of_model,
    milliwatts,
    tx_lock_of,
    word,
)
from wmhub_shure.protocol import ANGLE, STAR, Framer, encode, parse, sample_bodies

from hub.model import Command, CommandKind, InvalidValueError, NotSupportedError


@pytest.mark.parametrize(
    ("line", "channel", "param", "index", "value"),
    [
        (b"< REP DEVICE_ID Main Rack >", None, "DEVICE_ID", None, "Main Rack"),
        (b"< REP 2 CHAN_NAME Jane Smith >", 2, "CHAN_NAME", None, "Jane Smith"),
        (b"< REP 1 SLOT_STATUS 8 EMPTY >", 1, "SLOT_STATUS", 8, "EMPTY"),
        (b"< REP FW_VER {2.0.15.2                } >", None, "FW_VER", None, "2.0.15.2"),
        (b"< REP RF_BAND {G55     } >", None, "RF_BAND", None, "G55"),
        (b"< REP 1 CHAN_NAME {05} >", 1, "CHAN_NAME", None, "05"),
        (b"< REP 1 RSSI_LED_BITMAP 2 00 >", 1, "RSSI_LED_BITMAP", 2, "00"),
        (b"< REP 1 GROUP_CHANNEL {--,--} >", 1, "GROUP_CHANNEL", None, "--,--"),
        (b"< REP 1 SLOT_BATT_MINS 8 65535 >", 1, "SLOT_BATT_MINS", 8, "65535"),
        (b"< REP MODEL {AD4Q-A} >", None, "MODEL", None, "AD4Q-A"),
        (b"< REP DEVICE_ID {RF 5-8} >", None, "DEVICE_ID", None, "RF 5-8"),
        (b"< REP 1 LINK_STATUS 2 online  >", 1, "LINK_STATUS", 2, "online"),
        (b"< REP 3 SLOT_TX_MODEL 1 {          } >", 3, "SLOT_TX_MODEL", 1, ""),
        (b"< REP 1 CHAN_NAME {Lead  Vox >  1                   } >", 1, "CHAN_NAME", None, "Lead  Vox >  1"),
        (b"<   REP   1    METER_RATE   00100   >", 1, "METER_RATE", None, "00100"),
        (b"* REPORT 1 CHAN_NAME Bob *", 1, "CHAN_NAME", None, "Bob"),
        (b"< REP 1 UNHEARD_OF_PARAM 7 XYZ >", 1, "UNHEARD_OF_PARAM", None, "7 XYZ"),
    ],
)
def test_reference_lines_parse_to_their_scope_and_value(
    line: bytes, channel: int | None, param: str, index: int | None, value: str
) -> None:
    framing = STAR if line.startswith(b"*") else ANGLE
    (body,) = Framer(framing).feed(line)
    report = parse(body)
    assert report is not None
    assert (report.channel, report.param, report.index, report.value) == (channel, param, index, value)


def test_error_reply_is_recognised() -> None:
    report = parse(Framer().feed(b"< REP ERR >")[0])
    assert report is not None and report.is_error and report.channel is None


@pytest.mark.parametrize(
    ("codec", "value"),
    [
        (word(), "normal"),
        (word(), None),
        (milliwatts(), "20mW"),
        (milliwatts(), None),
        (engaged(), True),
        (engaged(), False),
        (engaged(), None),
    ],
)
def test_new_codecs_read_back_what_they_write(codec: Codec, value: Any) -> None:
    assert codec.decode(codec.encode(value)) == value


def test_ulxd_locks_combine_only_once_both_are_known() -> None:
    assert ULXD.channel_params["TX_PWR_LOCK"].decode("ON") == {}  # a share alone sets nothing; the driver combines
    assert [tx_lock_of(True, None), tx_lock_of(None, False)] == [None, None]
    assert [tx_lock_of(False, False), tx_lock_of(True, False), tx_lock_of(False, True), tx_lock_of(True, True)] == [
        "none",
        "power",
        "menu",
        "all",
    ]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # CO docs/SLXDplus-protocol.md: the literal example, and "na" while the address is assigned automatically
        (
            "SC AUTO 192.168.001.025 255.255.255.000 000.000.000.000 00:0E:DD:45:60:EB",
            {"ip_address": "192.168.1.25", "mac_address": "00:0E:DD:45:60:EB"},
        ),
        ("SC AUTO na na na 00:0e:dd:45:60:eb", {"ip_address": None, "mac_address": "00:0E:DD:45:60:EB"}),
        ("SC", {"ip_address": None, "mac_address": None}),
        ("SC MANUAL 300.1.1.1 255.0.0.0 0.0.0.0 junk", {"ip_address": None, "mac_address": None}),
    ],
)
def test_network_settings_give_address_and_mac(settings: str, expected: dict[str, Any]) -> None:
    assert SLXD_PLUS.device_state["NET_SETTINGS"].decode(settings) == expected


@pytest.mark.parametrize(
    ("family", "line", "field", "expected"),
    [
        (AXIENT, b"< REP 1 AUDIO_MUTE OFF >", "muted", False),
        (AXIENT, b"< REP 1 TX_BATT_MINS 65534 >", "battery_runtime_min", None),
        (AXIENT, b"< REP 1 TX_BATT_MINS 00090 >", "battery_runtime_min", 90),
        (AXIENT, b"< REP 1 AUDIO_LEVEL_RMS 020 >", "audio_dbfs", -100),
        (AXIENT, b"< REP 1 FREQUENCY 0470125 >", "frequency_mhz", 470.125),
        (AXIENT, b"< REP 1 TX_MODEL UNKNOWN >", "tx_model", None),
        (AXIENT, b"< REP 1 TX_MUTE_MODE_STATUS MUTE >", "tx_muted", True),
        (AXIENT, b"< REP 1 CHAN_QUALITY 004 >", "rf_quality_percent", 80),
        (AXIENT, b"< REP 1 AUDIO_GAIN 040 >", "gain_db", 22),
        (SLXD, b"< REP 1 TX_BATT_BARS 004 >", "battery_bars", 4),
        (SLXD, b"< REP 1 TX_BATT_BARS 255 >", "battery_bars", None),
        (SLXD, b"< REP 1 TX_BATT_MINS 65535 >", "battery_runtime_min", None),
        (SLXD, b"< REP 1 AUDIO_GAIN 000 >", "gain_db", -18),
        (SLXD, b"< REP 1 TX_TYPE SLXD2 >", "tx_model", "SLXD2"),
        (ULXD, b"< REP 1 FREQUENCY 470000 >", "frequency_mhz", 470.0),
        (ULXD, b"< REP 1 BATT_BARS U >", "battery_bars", None),
        (ULXD, b"< REP 1 TX_TYPE UNKN >", "tx_model", None),
        (ULXD, b"< REP 1 RF_ANTENNA XB >", "antenna", "B"),
        (ULXD, b"< REP 1 CHAN_NAME {Vox1    } >", "name", "Vox1"),
        (UHFR, b"* REPORT 1 CHAN_NAME Bob *", "name", "Bob"),
        (PSM1000, b"< REP 2 FREQUENCY 518200 >", "frequency_mhz", 518.2),
        # transmitter and battery detail, encodings as CO src/internalAPI.js notes them (issue 18)
        (AXIENT, b"< REP 1 TX_POWER_LEVEL 010 >", "tx_power", "10mW"),
        (AXIENT, b"< REP 1 TX_POWER_LEVEL 255 >", "tx_power", None),
        (AXIENT, b"< REP 1 TX_LOCK MENU >", "tx_locked", "menu"),
        (AXIENT, b"< REP 1 TX_LOCK LOCKED >", "tx_locked", "all"),
        (AXIENT, b"< REP 1 TX_LOCK UNKNOWN >", "tx_locked", None),
        (AXIENT, b"< REP 1 TX_OFFSET 012 >", "tx_offset_db", 0),
        (AXIENT, b"< REP 1 TX_OFFSET 000 >", "tx_offset_db", -12),
        (AXIENT, b"< REP 1 TX_OFFSET 255 >", "tx_offset_db", None),
        (AXIENT, b"< REP 1 TX_TALK_SWITCH ON >", "tx_talk_switch", True),
        (AXIENT, b"< REP 1 TX_DEVICE_ID {Lead Vox   } >", "tx_id", "Lead Vox"),
        (AXIENT, b"< REP 1 TX_BATT_HEALTH_PERCENT 093 >", "battery_health_percent", 93),
        (AXIENT, b"< REP 1 TX_BATT_CYCLE_COUNT 00042 >", "battery_cycles", 42),
        (AXIENT, b"< REP 1 TX_BATT_CYCLE_COUNT 65535 >", "battery_cycles", None),
        (AXIENT, b"< REP 1 TX_BATT_TEMP_C 065 >", "battery_temp_c", 25),
        (AXIENT, b"< REP 1 TX_BATT_TEMP_C 255 >", "battery_temp_c", None),
        (AXIENT, b"< REP 1 GROUP_CHANNEL {--,--} >", "group_channel", None),
        (AXIENT, b"< REP 1 FREQUENCY2 0596500 >", "frequency2_mhz", 596.5),
        (ULXD, b"< REP 1 TX_RF_PWR NORMAL >", "tx_power", "normal"),
        (ULXD, b"< REP 1 TX_RF_PWR UNKN >", "tx_power", None),
        (ULXD, b"< REP 1 TX_OFFSET 009 >", "tx_offset_db", 9),
        (ULXD, b"< REP 1 TX_MUTE_BUTTON_STATUS PRESSED >", "tx_talk_switch", True),
        (ULXD, b"< REP 1 TX_MUTE_BUTTON_STATUS RELEASED >", "tx_talk_switch", False),
        (ULXD, b"< REP 1 BATT_CYCLE 00012 >", "battery_cycles", 12),
        (ULXD, b"< REP 1 GROUP_CHAN 1,01 >", "group_channel", "1,01"),
        (SLXD, b"< REP 1 GROUP_CHANNEL {1,1  } >", "group_channel", "1,1"),
        (SLXD, b"< REP 1 AUDIO_LEVEL_PEAK 102 >", "audio_peak_dbfs", -18),
    ],
)
def test_reference_values_convert_to_model_units(family: Family, line: bytes, field: str, expected: Any) -> None:
    report = parse(Framer(family.framing).feed(line)[0])
    assert report is not None
    spec = family.channel_params[report.param]
    assert spec.field == field
    assert spec.codec.decode(report.value) == expected


@pytest.mark.parametrize(
    ("family", "line", "expected"),
    [
        # AD, TX off (micboard's AD4Q dump): quality 255, antennas XX, RSSI A -109 / B -108 dBm, peak -115 dBFS
        (
            AXIENT,
            b"< SAMPLE 1 ALL 255 000 005 033 XX 00 011 00 012 >",
            {
                "rf_quality_percent": None,
                "audio_peak": False,
                "audio_peak_dbfs": -115,
                "audio_dbfs": -87,
                "antenna": None,
                "rf_dbm": -108,
                "rf_antennas": {"A": -109, "B": -108},
            },
        ),
        # quadversity: four bitmap/RSSI pairs, one level per antenna A-D
        (
            AXIENT,
            b"< SAMPLE 2 ALL 005 200 110 100 XBXX 00 011 31 080 00 011 00 012 >",
            {
                "rf_quality_percent": 100,
                "audio_peak": True,
                "audio_peak_dbfs": -10,
                "audio_dbfs": -20,
                "antenna": "B",
                "rf_dbm": -40,
                "rf_antennas": {"A": -109, "B": -40, "C": -109, "D": -108},
            },
        ),
        (ULXD, b"< SAMPLE 1 ALL AX 090 030 >", {"antenna": "A", "rf_dbm": -38, "audio_dbfs": -20}),
        (QLXD, b"< SAMPLE 1 ALL XX 000 000 >", {"antenna": None, "rf_dbm": -128, "audio_dbfs": -50}),
        (SLXD_PLUS, b"< SAMPLE 3 ALL 102 095 050 >", {"audio_peak_dbfs": -18, "audio_dbfs": -25, "rf_dbm": -70}),
        (
            UHFR,
            b"* SAMPLE 1 ALL AX 20 X 4 8 *",
            {"antenna": "A", "rf_dbm": -20, "battery_bars": 4, "tx_present": True, "audio_dbfs": -24},
        ),
    ],
)
def test_sample_lines_decode_to_meters(family: Family, line: bytes, expected: dict[str, Any]) -> None:
    assert family.sample is not None
    (body,) = Framer(family.framing).feed(line)
    assert family.sample(body.split()) == expected


def test_framer_handles_a_split_at_every_byte() -> None:
    stream = (
        b"< REP 1 CHAN_NAME {A>B {x}                      } >< SAMPLE 1 ALL AX 090 030 >"
        b"< REP DEVICE_ID {RF 5-8} >< REP ERR >"
    )
    whole = Framer().feed(stream)
    assert len(whole) == 4
    for cut in range(len(stream) + 1):
        framer = Framer()
        assert framer.feed(stream[:cut]) + framer.feed(stream[cut:]) == whole
    framer = Framer()
    assert [message for byte in stream for message in framer.feed(bytes([byte]))] == whole


def test_a_read_of_back_to_back_samples_with_junk_between_loses_only_the_junk() -> None:
    # a clean read of whole messages takes a shortcut; a stray delimiter anywhere must not fool it
    clean = b"< SAMPLE 1 ALL AX 063 020 >< SAMPLE 2 ALL XB 069 014 >"
    assert Framer().feed(clean) == [b" SAMPLE 1 ALL AX 063 020 ", b" SAMPLE 2 ALL XB 069 014 "]
    for junk in (b"x", b"<x", b"x>", b">"):
        framer = Framer()
        got = framer.feed(clean.replace(b"><", b">" + junk + b"<"))
        assert got == [b" SAMPLE 1 ALL AX 063 020 ", b" SAMPLE 2 ALL XB 069 014 "], junk
        assert framer.dropped_bytes == len(junk), junk


def test_only_a_read_of_nothing_but_whole_samples_may_wait_unparsed() -> None:
    # what the driver holds for the hub's next look at levels; anything else goes through the framer at once
    clean = b"< SAMPLE 1 ALL AX 063 020 >< SAMPLE 2 ALL XB 069 014 >"
    assert Framer().samples_only(clean) == 2
    assert sample_bodies(clean) == [b" SAMPLE 1 ALL AX 063 020 ", b" SAMPLE 2 ALL XB 069 014 "]
    for mixed in (
        b"< SAMPLE 1 ALL AX 063 020 >< REP 1 CHAN_NAME {Bob} >",  # a report: state, not a level
        b"< SAMPLE 1 ALL AX 063 020 >< REP 1 AUDIO_MUTE ON >",
        b"< SAMPLE 1 ALL AX 063 020 >x< SAMPLE 2 ALL XB 069 014 >",  # junk between
        b"< SAMPLE 1 ALL AX 063 020 >< SAMPLE 2 ALL",  # split mid-message
        b"SAMPLE 2 ALL XB 069 014 >",  # the rest of one
        b"<SAMPLE 1 ALL AX 063 020>",  # not spaced as the devices send it: parsed at once, liberal as ever
        b"",
    ):
        assert Framer().samples_only(mixed) == 0, mixed
    framer = Framer()
    framer.feed(b"< REP 1 CHAN_NAME {Bo")
    assert framer.samples_only(clean) == 0, "a message still open comes first"
    star = Framer(STAR)
    assert star.samples_only(b"* SAMPLE 1 ALL AX 20 X 4 8 *") == 0


def test_star_framer_handles_splits() -> None:
    stream = b"* REPORT 1 CHAN_NAME Bob ** SAMPLE 1 ALL AX 20 X 4 8 *"
    for cut in range(len(stream) + 1):
        framer = Framer(STAR)
        got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert [m.strip() for m in got] == [b"REPORT 1 CHAN_NAME Bob", b"SAMPLE 1 ALL AX 20 X 4 8"]


def test_framer_drops_garbage_and_bounds_its_buffer() -> None:
    framer = Framer(max_buffer=1024)
    assert framer.feed(b"\x00\xffjunk>< REP 1 AUDIO_MUTE ON >") == [b" REP 1 AUDIO_MUTE ON "]
    assert framer.dropped_bytes > 0
    for _ in range(100):
        framer.feed(b"x" * 100)  # a device that never sends a delimiter
    assert framer.buffered <= 1024
    assert framer.feed(b"< REP 1 AUDIO_MUTE OFF >") == [b" REP 1 AUDIO_MUTE OFF "]


def test_models_map_to_families() -> None:
    assert family_of_model("AD4Q-A") == (AXIENT, "AD4Q", 4)
    assert family_of_model("SLXD4QDAN+") == (SLXD_PLUS, "SLXD4QDAN+", 4)
    assert family_of_model("SLXD4D") == (SLXD, "SLXD4D", 2)
    assert family_of_model("MXA910") is None


def _command(kind: CommandKind, value: Any, channel: int | None = 1, slot: int | None = None) -> Command:
    return Command(device_id="shure-x", channel=channel, kind=kind, value=value, slot=slot)


def test_set_encoding_follows_the_reference() -> None:
    def wire(family: Family, command: Command) -> bytes:
        request = build_set(family, command)
        values = request.values if request.index is None else (str(request.index), *request.values)
        return encode(family.framing, "SET", request.param, *values, channel=request.channel)

    assert wire(ULXD, _command(CommandKind.NAME, "Vox1")) == b"< SET 1 CHAN_NAME {Vox1} >"
    assert wire(ULXD, _command(CommandKind.FREQUENCY, 470.0)) == b"< SET 1 FREQUENCY 470000 >"
    assert wire(AXIENT, _command(CommandKind.FREQUENCY, 470.125)) == b"< SET 1 FREQUENCY 0470125 >"
    assert wire(AXIENT, _command(CommandKind.GAIN, 22)) == b"< SET 1 AUDIO_GAIN 040 >"
    assert wire(AXIENT, _command(CommandKind.GAIN_STEP, 3)) == b"< SET 1 AUDIO_GAIN INC 3 >"
    assert wire(AXIENT, _command(CommandKind.MUTE, "toggle")) == b"< SET 1 AUDIO_MUTE TOGGLE >"
    assert wire(AXIENT, _command(CommandKind.RF_OUTPUT, False, slot=3)) == b"< SET 1 SLOT_RF_OUTPUT 3 RF_MUTE >"
    assert wire(SLXD, _command(CommandKind.IDENTIFY, None, channel=None)) == b"< SET FLASH ON >"
    assert wire(SLXD, _command(CommandKind.METER_RATE, 100, channel=None)) == b"< SET 0 METER_RATE 00100 >"
    # the P10T takes bare names and RF_MUTE 0|1 (CO PSM1000 module src/actions.js)
    assert wire(PSM1000, _command(CommandKind.NAME, "IEM 1")) == b"< SET 1 CHAN_NAME IEM 1 >\r\n"
    assert wire(PSM1000, _command(CommandKind.RF_OUTPUT, False)) == b"< SET 1 RF_MUTE 1 >\r\n"
    assert wire(PSM1000, _command(CommandKind.DEVICE_NAME, "IEM", channel=None)) == b"< SET DEVICE_NAME IEM >\r\n"


@pytest.mark.parametrize(
    ("family", "kind", "value", "message"),
    [
        (ULXD, CommandKind.NAME, "NineChars", "at most 8"),
        (AXIENT, CommandKind.NAME, "x" * 32, "at most 31"),
        (SLXD_PLUS, CommandKind.NAME, "Vox{1}", "contains"),
        (AXIENT, CommandKind.NAME, "Café", "ASCII letters"),
        (AXIENT, CommandKind.NAME, "", "non-empty"),
        (AXIENT, CommandKind.GAIN, 43, "outside -18..+42"),
        (SLXD, CommandKind.GAIN, 1.5, "whole number"),
        (ULXD, CommandKind.FREQUENCY, 470.0001, "whole number of kHz"),
        (AXIENT, CommandKind.FREQUENCY, 1500.0, "outside"),
        (AXIENT, CommandKind.MUTE, "maybe", "toggle"),
        (AXIENT, CommandKind.METER_RATE, 50, "100..99999"),
        (AXIENT, CommandKind.RF_OUTPUT, True, "slot"),
        (PSM1000, CommandKind.RF_OUTPUT, "on", "false .RF muted."),
    ],
)
def test_out_of_range_values_are_refused_with_a_clear_message(
    family: Family, kind: CommandKind, value: Any, message: str
) -> None:
    with pytest.raises(InvalidValueError, match=message.replace("+", r"\+").replace("{", r"\{")):
        build_set(family, _command(kind, value))


def test_controls_a_family_lacks_are_not_supported() -> None:
    with pytest.raises(NotSupportedError, match="QLX-D"):
        build_set(QLXD, _command(CommandKind.MUTE, True))
    with pytest.raises(NotSupportedError):
        build_set(UHFR, _command(CommandKind.NAME, "Bob"))
    assert all(family.fields for family in FAMILIES.values())


def test_framer_resyncs_after_an_unclosed_brace() -> None:
    framer = Framer()
    assert framer.feed(b"<" + b"{" * 600) == []
    messages = framer.feed(b"< REP 1 CHAN_NAME {Vox} >< REP 1 AUDIO_MUTE ON >")
    assert messages[-2:] == [b" REP 1 CHAN_NAME {Vox} ", b" REP 1 AUDIO_MUTE ON "]


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=400), max_size=5))
def test_any_bytes_split_anywhere_never_break_the_codec(junk: bytes, cuts: list[int]) -> None:
    valid = b"< REP 2 CHAN_NAME {Jane Smith                     } >< SAMPLE 1 ALL AX 090 030 >"
    stream = junk + valid
    framer = Framer(max_buffer=256)
    bounds = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    messages = []
    for start, end in itertools.pairwise(bounds):
        messages.extend(framer.feed(stream[start:end]))
        assert framer.buffered <= 256
    for body in messages:
        parse(body)  # never raises, whatever the junk
    for family in FAMILIES.values():
        if family.sample is not None:
            with contextlib.suppress(ValueError, IndexError):
                family.sample(junk.split())
    if b"{" not in junk and b"<" not in junk and b">" not in junk:
        assert messages[-1] == b" SAMPLE 1 ALL AX 090 030 "
