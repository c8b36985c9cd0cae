"""Media Control Protocol (G3/G4) framing and attribute decoding against the reference's literal lines."""

from __future__ import annotations

from typing import Any

import pytest
from wmhub_sennheiser import mcp
from wmhub_sennheiser.mcp import AntennaLevel, AudioLevel, ErrorLine, Frequency, Line, MuteFlags, RfLevel, States


def test_commands_are_cr_terminated_ascii() -> None:
    assert mcp.encode("Push", 60, 100, 3) == b"Push 60 100 3\r"
    assert mcp.encode("Name") == b"Name\r"


@pytest.mark.parametrize(
    ("datagram", "lines"),
    [
        (
            b"Af 15 25 40 38 5\rStates 0 2\rMsg OK\rConfig 555\r",
            ["Af 15 25 40 38 5", "States 0 2", "Msg OK", "Config 555"],
        ),
        (b"Name Vocal 1\r", ["Name Vocal 1"]),
        (b"Bat 0\nMsg OK\r\n", ["Bat 0", "Msg OK"]),
    ],
)
def test_datagrams_split_on_cr_or_lf(datagram: bytes, lines: list[str]) -> None:
    assert mcp.split_lines(datagram) == lines


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("1020: Value out of range [ Push 5 450 1 ] ", ErrorLine(1020, "Value out of range", "Push 5 450 1")),
        ("1020: Value out of range [ Squelch 2 ]", ErrorLine(1020, "Value out of range", "Squelch 2")),
        ("1020: Value out of range [Sensitivity -20]", ErrorLine(1020, "Value out of range", "Sensitivity -20")),
        ("1000: Invalid command", ErrorLine(1000, "Invalid command", None)),
        (
            "1050:Incorrect termination (missing CR)[ Name]",
            ErrorLine(1050, "Incorrect termination (missing CR)", "Name"),
        ),
    ],
)
def test_error_lines_are_parsed_leniently(line: str, expected: ErrorLine) -> None:
    parsed = mcp.parse_line(line)
    assert parsed == expected
    assert isinstance(parsed, ErrorLine)
    assert parsed.keyword == (expected.instruction.split()[0] if expected.instruction else None)


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("RfConfig 566000 608000 25", ((566000, 608000, 25),)),
        (
            "RfConfig 779125 787875 125 797125 805875 125 806125 809750 125",
            ((779125, 787875, 125), (797125, 805875, 125), (806125, 809750, 125)),
        ),
        # an inverted sub-range and a step of 0 tune nothing (a 0 step would divide by zero in the checks)
        ("RfConfig 608000 566000 25 470000 480000 0 566000 608000 25", ((566000, 608000, 25),)),
        ("Name Vocal 1", "Vocal 1"),
        ("FirmwareRevision 1.20.1", "1.20.1"),
        ("Frequency 546400 0 0", Frequency(546400, 0, 0)),
        ("Frequency 546400", Frequency(546400, None, None)),
        ("Mute 1", True),
        ("States 9 1", States(MuteFlags.ANY | MuteFlags.RX, 1)),
        ("States 1 2", States(MuteFlags.ANY, 2)),
        ("Bat 0", 0),
        ("Bat 70", 70),
        ("Bat ?", None),
        ("Msg OK", ()),
        ("Msg AF_Peak Low_Battery", ("AF_Peak", "Low_Battery")),
        ("Config 555", 555),
        ("RF1 40 55 1", AntennaLevel(40, 55, True)),
        ("RF2 10 20 0", AntennaLevel(10, 20, False)),
        ("RF 55 1 1", RfLevel(55, 1, True)),
        ("AF 60 80 8", AudioLevel(60, 80, MuteFlags.RX)),
        ("Af 15 25 40 38 5", AudioLevel(15, 25, None)),
        ("Squelch 7", None),
    ],
)
def test_attributes_decode_to_documented_values(line: str, value: Any) -> None:
    parsed = mcp.parse_line(line)
    assert isinstance(parsed, Line)
    assert mcp.decode_attribute(parsed) == value


def test_keywords_are_matched_case_insensitively_and_extra_fields_ignored() -> None:
    for text in ("AF 60 80 8", "Af 60 80 8", "af 60 80 8"):
        parsed = mcp.parse_line(text)
        assert isinstance(parsed, Line)
        assert mcp.em_channel_fields(parsed) == {"audio_dbfs": -20.0}
    parsed = mcp.parse_line("Bat 30 extra")
    assert isinstance(parsed, Line)
    assert mcp.em_channel_fields(parsed) == {"tx_present": True, "battery_percent": 30}


def test_unreadable_fields_raise() -> None:
    parsed = mcp.parse_line("RF 55 x")
    assert isinstance(parsed, Line)
    with pytest.raises(mcp.McpFieldError):
        mcp.decode_attribute(parsed)


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("Bat ?", {"tx_present": False, "battery_percent": None}),
        ("Bat 100", {"tx_present": True, "battery_percent": 100}),
        ("RF 120 2 1", {"rf_quality_percent": 100, "antenna": "B"}),
        ("AF 0 0 0", {"audio_dbfs": -50.0}),
        ("AF 100 100 0", {"audio_dbfs": 0.0}),
        ("States 3 1", {"tx_muted": True}),
        ("States 9 1", {"tx_muted": False}),
        ("Msg AF_Peak Low_Battery", {"warnings": ["AF_Peak", "Low_Battery"], "audio_peak": True}),
        ("Msg OK", {"warnings": [], "audio_peak": False}),
        ("Frequency 546400 0 0", {"frequency_mhz": 546.4, "group_channel": None}),  # outside the presets
        ("Frequency 822000 2 10", {"frequency_mhz": 822.0, "group_channel": "2.10"}),
        ("RF1 25 65 1", {"rf_antennas": {"RF1": -81.0}}),  # the cycle's highest, 65 % of 40 dBµV, at 50 ohms
        ("RF2 0 100 0", {"rf_antennas": {"RF2": -67.0}}),
        ("Name Vocal 1", {"name": "Vocal 1"}),
        ("Mute 0", {"muted": False}),
        ("Config 12", {}),
    ],
)
def test_receiver_lines_map_to_hub_fields(line: str, fields: dict[str, Any]) -> None:
    parsed = mcp.parse_line(line)
    assert isinstance(parsed, Line)
    assert mcp.em_channel_fields(parsed) == fields
