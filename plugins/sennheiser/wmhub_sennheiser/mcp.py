"""Media Control Protocol (ew G3/G4 and 2000 series, ASCII over UDP 53212): framing and decoding. No I/O.

Commands are case-sensitive words terminated by CR. Replies and pushed attributes are ``Keyword values``
lines; errors are ``<code>: <text> [ <instruction> ]``. The vendor examples disagree on separators,
spacing and keyword case, so the parsers here accept ``\\r`` or ``\\n``, any spacing and any case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntFlag
from typing import Any, Final

from hub.text import VALUE_DIGITS, small_number

PORT: Final = 53212
# the families the hub shows: the receivers (EM) and the in-ear transmitters (SR)
EM_FAMILY: Final = "ew G4"
SR_FAMILY: Final = "ew IEM G4"
# RfConfig, (low kHz, high kHz, step kHz) per sub-range; when none was read, the span of all G3/G4 bands
# (unverified per band): the device refuses the rest
RfConfig = tuple[tuple[int, ...], ...]
FALLBACK_RF_CONFIG: Final[RfConfig] = ((470_000, 960_000, 25),)
TERMINATOR: Final = b"\r"
MAX_MESSAGE_BYTES: Final = 1500

ERROR_TEXT: Final = {
    1000: "Invalid command",
    1010: "Invalid parameter",
    1020: "Value out of range",
    1030: "Relative parameter(s) not supported",
    1040: "Invalid numbers of parameter",
    1050: "Incorrect termination (missing CR)",
}

# Push mode bits
PUSH_CONFIG: Final = 1
PUSH_ON_WARNING: Final = 2
PUSH_ON_PILOT_OR_BATTERY: Final = 4

# An in-ear transmitter (SR IEM G4) answers the same framing with its own lines (TI 1254, reference 3.3-3.4)
SR_CONFIG_KEYWORDS: Final = ("Name", "Frequency", "Sensitivity", "Mode", "Equalizer", "Mute")
SR_CYCLIC_KEYWORDS: Final = ("AF", "States", "Msg", "Config")
# Attributes a receiver (EM) sends when its configuration changes; re-query these when Config moves.
EM_CONFIG_KEYWORDS: Final = ("Name", "Frequency", "Squelch", "AfOut", "Equalizer", "Mute")
EM_CYCLIC_KEYWORDS: Final = ("RF1", "RF2", "States", "RF", "AF", "Bat", "Msg", "Config")


def encode(keyword: str, *args: object) -> bytes:
    return " ".join([keyword, *(str(arg) for arg in args)]).encode("ascii") + TERMINATOR


def split_lines(data: bytes) -> list[str]:
    """One datagram may hold several lines; the vendor text says ';' but every example uses CR."""
    text = data.decode("ascii", errors="replace")
    return [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]


@dataclass(frozen=True)
class Line:
    """``Keyword arg arg ...``; ``text`` is everything after the keyword (a Name may contain spaces)."""

    keyword: str
    args: tuple[str, ...]
    text: str

    @property
    def key(self) -> str:
        """The keyword in lower case, for case-insensitive matching of received attributes."""
        return self.keyword.lower()


@dataclass(frozen=True)
class ErrorLine:
    """``1020: Value out of range [ Squelch 2 ]``."""

    code: int
    text: str
    instruction: str | None

    @property
    def keyword(self) -> str | None:
        """The keyword of the refused instruction, if the device quoted it."""
        return self.instruction.split()[0] if self.instruction else None

    def __str__(self) -> str:
        quoted = f" [{self.instruction}]" if self.instruction else ""
        return f"{self.code}: {self.text or ERROR_TEXT.get(self.code, 'error')}{quoted}"


_ERROR = re.compile(r"^(\d+)\s*:\s*([^\[]*?)\s*(?:\[\s*(.*?)\s*\]\s*)?$")


def parse_line(line: str) -> Line | ErrorLine:
    match = _ERROR.match(line)
    code = small_number(match.group(1)) if match else None
    if match and code is not None:  # a "code" of thousands of digits is no error line: an unknown keyword
        return ErrorLine(code, match.group(2), match.group(3) or None)
    keyword, _, text = line.partition(" ")
    return Line(keyword, tuple(text.split()), text.strip())


def parse(data: bytes) -> list[Line | ErrorLine]:
    return [parse_line(line) for line in split_lines(data)]


class MuteFlags(IntFlag):
    """The mute bits of ``States`` and ``AF``: bit 0 any, 1 TX, 2 RF, 3 RX."""

    ANY = 1
    TX = 2
    RF = 4
    RX = 8


@dataclass(frozen=True)
class AntennaLevel:
    """``RF1``/``RF2``: per-antenna RF level over the cycle; 100 % = 40 dBµV and more is possible."""

    min_percent: int
    max_percent: int
    active: bool


@dataclass(frozen=True)
class States:
    mute: MuteFlags
    pilot: int


@dataclass(frozen=True)
class RfLevel:
    level_percent: int
    antenna: int
    pilot: bool


@dataclass(frozen=True)
class AudioLevel:
    """``AF``: 0 % = -50 dB, 100 % = peak. A transmitter (SR) sends more fields and no mute bits."""

    peak_percent: int
    peak_hold_percent: int
    mute: MuteFlags | None


@dataclass(frozen=True)
class Frequency:
    khz: int
    bank: int | None
    channel: int | None


class McpFieldError(ValueError):
    """An attribute line whose fields cannot be read."""


def _ints(line: Line, count: int) -> list[int]:
    if len(line.args) < count:
        raise McpFieldError(f"{line.keyword} needs {count} fields, got {' '.join(line.args)!r}")
    numbers = []
    for arg in line.args[:count]:
        number = small_number(arg, VALUE_DIGITS, signed=True)
        if number is None:
            raise McpFieldError(f"{line.keyword}: not numbers: {' '.join(line.args)!r}")
        numbers.append(number)
    return numbers


def decode_attribute(line: Line) -> Any:
    """The typed value of one attribute line (keywords matched case-insensitively, extra fields ignored).

    Returns None for keywords this client does not interpret. Raises McpFieldError for a known keyword
    with unreadable fields.
    """
    key = line.key
    if key in ("rf1", "rf2"):
        low, high, active = _ints(line, 3)
        return AntennaLevel(low, high, bool(active))
    if key == "states":
        flags, pilot = _ints(line, 2)
        return States(MuteFlags(flags & 0xF), pilot)
    if key == "rf":
        level, antenna, pilot = _ints(line, 3)
        return RfLevel(level, antenna, bool(pilot))
    if key == "af":
        peak, hold = _ints(line, 2)
        mute = MuteFlags(_ints(line, 3)[2] & 0xF) if len(line.args) == 3 else None
        return AudioLevel(peak, hold, mute)
    if key == "bat":
        if not line.args or line.args[0] == "?":
            return None  # no battery telegram: the transmitter is off or out of range
        return _ints(line, 1)[0]
    if key == "msg":
        return tuple(word for word in line.args if word.upper() != "OK")
    if key == "config":
        return _ints(line, 1)[0]
    if key == "frequency":
        values = _ints(line, 1) if len(line.args) < 3 else _ints(line, 3)
        return Frequency(values[0], *(values[1:] if len(values) == 3 else (None, None)))
    if key == "name":
        return line.text
    if key == "mute":
        return bool(_ints(line, 1)[0])
    if key == "firmwarerevision":
        return line.args[0] if line.args else None
    if key == "rfconfig":
        numbers = _ints(line, len(line.args) - len(line.args) % 3)
        triples = (tuple(numbers[i : i + 3]) for i in range(0, len(numbers), 3))
        # an inverted sub-range or a step of 0 tunes nothing: left out (the fallback stands if none is left)
        return tuple(triple for triple in triples if triple[0] <= triple[1] and triple[2] > 0)
    return None


def audio_dbfs(peak_percent: int) -> float:
    """0 % = -50 dB and 100 % = 0 dB (peak), linear in dB between."""
    return round(-50.0 + 0.5 * max(0, min(peak_percent, 100)), 1)


# 50-ohm input: dBm = dBµV - 107. TI 1254 fixes only 100 % = 40 dBµV; reading the percentage as linear in
# dBµV from 0 dBµV is our assumption (unverified), so these levels are indicative, for comparing antennas.
DBUV_PER_PERCENT: Final = 0.4
DBM_AT_0_DBUV: Final = -107.0


def antenna_dbm(percent: int) -> float:
    return round(DBM_AT_0_DBUV + DBUV_PER_PERCENT * max(0, percent), 1)


def group_channel(frequency: Frequency) -> str | None:
    """``bank.channel``; ``0 0`` (or none given) means the frequency is set outside the presets."""
    if not frequency.bank and not frequency.channel:
        return None
    return f"{frequency.bank}.{frequency.channel}"


def merge_fields(fields: dict[str, Any], new: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    """Add one line's fields; ``RF1`` and ``RF2`` each fill their own entry of ``rf_antennas``."""
    for name, value in new.items():
        if name == "rf_antennas":
            value = {**(fields.get(name) or state.get(name) or {}), **value}
        fields[name] = value


def em_channel_fields(line: Line) -> Mapping[str, Any]:
    """Hub channel fields carried by one receiver (EM) attribute line; empty if it carries none."""
    value = decode_attribute(line)
    if isinstance(value, AntennaLevel):
        return {"rf_antennas": {line.keyword.upper(): antenna_dbm(value.max_percent)}}
    if isinstance(value, RfLevel):
        return {
            "rf_quality_percent": max(0, min(value.level_percent, 100)),
            "antenna": {1: "A", 2: "B"}.get(value.antenna),
        }
    if isinstance(value, States):
        return {"tx_muted": bool(value.mute & MuteFlags.TX)}
    if isinstance(value, AudioLevel):
        return {"audio_dbfs": audio_dbfs(value.peak_percent)}
    if line.key == "bat":
        if value is None:
            return {"tx_present": False, "battery_percent": None}
        return {"tx_present": True, "battery_percent": max(0, min(int(value), 100))}
    if line.key == "msg":
        warnings = list(value)
        return {"warnings": warnings, "audio_peak": "AF_Peak" in warnings}
    if isinstance(value, Frequency):
        return {"frequency_mhz": value.khz / 1000, "group_channel": group_channel(value)}
    if line.key == "name":
        return {"name": value}
    if line.key == "mute":
        return {"muted": value}
    return {}


def sr_channel_fields(line: Line) -> Mapping[str, Any]:
    """Hub fields carried by one in-ear transmitter (SR IEM G4) line; the channel is the transmitter itself.

    ``AF <left%> <right%> <hold left%> <hold right%>`` (TI 1254's own example prints ``Af`` with five
    values: the first two are read, the rest tolerated); ``States <rfmute 0|1> <flag>`` (Companion
    evolutionwireless src/api.ts reads the first as RF mute, any non-zero value here); ``Sensitivity <dB>``
    is the input sensitivity (-42..0), shown as the transmitter's input offset; ``Mute`` is the RF mute.
    """
    key = line.key
    if key == "af":
        left, right = _ints(line, 2)
        return {"audio_dbfs": audio_dbfs(max(left, right))}
    if key == "states":
        return {"muted": _ints(line, 1)[0] != 0}
    if key == "sensitivity":
        return {"tx_offset_db": float(_ints(line, 1)[0])}
    if key in ("msg", "frequency", "name", "mute"):
        return em_channel_fields(line)
    return {}
