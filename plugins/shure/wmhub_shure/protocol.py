"""The Shure command-string codec: framer, tolerant parser and message encoder. Pure: no I/O.

Digital families (TCP) wrap each message in ``<`` ... ``>``; UHF-R (UDP) wraps it in ``*`` ... ``*``.
Neither sends a line terminator, so messages arrive back to back and split at any byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hub.text import small_number

MAX_BUFFER: Final = 16 * 1024
# The longest real message is a slot report with a 31-character brace field; far below this.
MAX_MESSAGE: Final = 512
# Single bytes are looked for as ints: ``int in bytes`` is one memchr, while ``bytes in bytes`` (CPython
# 3.11) first tries to read the needle as an int and raises and clears a TypeError, ten times the cost.
_OPEN_BRACE: Final = ord("{")
# How every meter sample of the angle-bracket families starts (reference section 5.2).
_SAMPLE_OPEN: Final = b"< SAMPLE "


@dataclass(frozen=True, slots=True)
class Framing:
    """The delimiters of one transport: ``<``/``>`` for TCP families, ``*``/``*`` for UHF-R."""

    start: bytes
    end: bytes
    client_suffix: bytes = b""  # PSM1000 clients terminate requests with CRLF

    def wrap(self, body: str) -> bytes:
        return b"%s %s %s%s" % (self.start, body.encode("ascii"), self.end, self.client_suffix)


ANGLE: Final = Framing(b"<", b">")
ANGLE_CRLF: Final = Framing(b"<", b">", b"\r\n")
STAR: Final = Framing(b"*", b"*")


class Framer:
    """Buffers a byte stream and cuts it into message bodies (the text between the delimiters).

    A ``>`` inside an open brace field belongs to the value (names may hold punctuation), so the cut
    waits for the brace to close, unless the message grows past MAX_MESSAGE (then the brace was junk).
    Bytes outside any message are dropped and counted; so is a buffer that outgrows ``max_buffer``
    because a device never sends a delimiter.
    """

    __slots__ = ("_buffer", "_end", "_start", "dropped_bytes", "max_buffer")

    def __init__(self, framing: Framing = ANGLE, max_buffer: int = MAX_BUFFER) -> None:
        self._start = framing.start
        self._end = framing.end
        self._buffer = b""
        self.max_buffer = max_buffer
        self.dropped_bytes = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if not self._buffer:
            clean = self._whole_messages(data)
            if clean is not None:
                return clean
        buffer = self._buffer + data if self._buffer else data
        messages = self._cut_paired(buffer) if self._start == self._end else self._cut_bracketed(buffer)
        if len(self._buffer) > self.max_buffer:
            self.dropped_bytes += len(self._buffer)
            self._buffer = b""
        return messages

    def samples_only(self, data: bytes) -> int:
        """How many SAMPLE messages ``data`` is when, with nothing buffered before it, it is nothing but whole
        SAMPLE messages back to back; else 0.

        Such a read can wait, unparsed, until somebody wants the levels (:func:`sample_bodies`): every
        message in it starts with the one ``<`` it may hold, so equal counts mean every one is a sample."""
        if self._buffer or not self._is_whole(data):
            return 0
        samples = data.count(_SAMPLE_OPEN)
        return samples if samples == data.count(self._start) else 0

    def _whole_messages(self, data: bytes) -> list[bytes] | None:
        """The bodies of a read that is nothing but whole brace-less messages back to back, else None."""
        return data[1:-1].split(self._end + self._start) if self._is_whole(data) else None

    def _is_whole(self, data: bytes) -> bool:
        # Nearly every read of a metering receiver, and it needs no search per message: once the ``><``
        # between messages are taken out, a stray delimiter anywhere would still be there.
        start, end = self._start, self._end
        if start == end or not data or data[0] != start[0] or data[-1] != end[0] or _OPEN_BRACE in data:
            return False
        stray = data[1:-1].replace(end + start, b"")
        return start[0] not in stray and end[0] not in stray

    def _cut_bracketed(self, buffer: bytes) -> list[bytes]:
        parts = buffer.split(self._end)
        rest = parts.pop()
        messages: list[bytes] = []
        carry = b""
        start = self._start
        for part in parts:
            if carry:
                part = carry + self._end + part
                carry = b""
            # Without a brace field (every meter sample) a message is what follows the last '<': junk before
            # it may hold a '<' of its own. The brace checks below find the same, at more cost per part.
            brace = _OPEN_BRACE in part
            begin = part.find(start) if brace else part.rfind(start)
            if begin < 0:
                self.dropped_bytes += len(part) + 1
                continue
            body = part[begin + 1 :]
            if brace and b"{" in body and body.count(b"{") > body.count(b"}"):
                if len(body) < MAX_MESSAGE:
                    carry = part[begin:]
                    continue
                begin = self._resync(part, begin)
                body = part[begin + 1 :]
            elif brace and start in body:  # junk opened with a '<' it never closed: the real message starts later
                begin = self._resync(part, begin)
                body = part[begin + 1 :]
            self.dropped_bytes += begin
            messages.append(body)
        self._buffer = carry + self._end + rest if carry else rest
        return messages

    def _resync(self, part: bytes, first: int) -> int:
        """After junk with an unclosed brace, start at the last ``<`` that opens a brace-balanced message."""
        begin = part.rfind(self._start)
        while begin > first:
            tail = part[begin + 1 :]
            if tail.count(b"{") == tail.count(b"}"):
                return begin
            begin = part.rfind(self._start, 0, begin)
        return first

    def _cut_paired(self, buffer: bytes) -> list[bytes]:
        parts = buffer.split(self._start)
        complete = (len(parts) - 1) // 2
        for gap in parts[0 : 2 * complete + 1 : 2]:
            self.dropped_bytes += len(gap.strip())
        messages = parts[1 : 2 * complete + 1 : 2]
        self._buffer = self._start + parts[-1] if (len(parts) - 1) % 2 else b""
        return messages


def sample_bodies(data: bytes) -> list[bytes]:
    """The message bodies of a read that :meth:`Framer.samples_only` counted."""
    return data[1:-1].split(b"><")


@dataclass(frozen=True, slots=True)
class Report:
    """One device message other than SAMPLE: ``REP``/``REPORT`` (or a client's ``GET``/``SET``).

    ``channel`` is None for receiver-level reports; ``index`` is the antenna or slot number that follows
    indexed parameters (``RSSI 1 -80``, ``SLOT_STATUS 8 EMPTY``). ``value`` is the brace field trimmed
    of its padding, or the remaining tokens joined by single spaces; ``args`` are the unbraced tokens
    after the parameter (and index), for parameters with several values (``AUDIO_GAIN INC 3``).
    """

    verb: str
    channel: int | None
    param: str
    index: int | None
    value: str
    args: tuple[str, ...] = ()
    braced: bool = False

    @property
    def is_error(self) -> bool:
        return self.param == "ERR"


def _is_indexed(param: str) -> bool:
    return param.startswith("SLOT_") or param in INDEXED_PARAMS


INDEXED_PARAMS: Final = frozenset({"RSSI", "RSSI_LED_BITMAP", "LINK_STATUS", "NET_SETTINGS_IDX"})


def parse(body: bytes) -> Report | None:
    """Parse one message body; None when it is not a well-formed message (counted by the caller)."""
    text = body.decode("ascii", "replace")
    braced = False
    brace_value = ""
    open_at = text.find("{")
    if open_at >= 0:
        close_at = text.rfind("}")
        if close_at < open_at:
            return None
        brace_value = text[open_at + 1 : close_at].rstrip()
        tokens = text[:open_at].split()
        trailing = text[close_at + 1 :].split()
        braced = True
    else:
        tokens = text.split()
        trailing = []
    if not tokens:
        return None
    verb = tokens[0].upper()
    position = 1
    channel: int | None = None
    if len(tokens) > position and tokens[position].isdigit():
        channel = small_number(tokens[position])
        if channel is None:  # a "channel" of thousands of digits is junk, not a parameter name
            return None
        position += 1
    if len(tokens) <= position:
        return None
    param = tokens[position].upper()
    position += 1
    index: int | None = None
    rest = tokens[position:]
    if rest and _is_indexed(param) and rest[0].isdigit() and (len(rest) > 1 or braced):
        index = small_number(rest[0])
        if index is None:
            return None
        rest = rest[1:]
    if braced:
        return Report(verb, channel, param, index, brace_value, (*rest, *trailing), True)
    return Report(verb, channel, param, index, " ".join(rest), tuple(rest))


def encode(framing: Framing, verb: str, param: str, *values: str, channel: int | None = None) -> bytes:
    """``< VERB [channel] PARAM [values...] >`` with the delimiters of ``framing``."""
    head = verb if channel is None else f"{verb} {channel}"
    return framing.wrap(" ".join((head, param, *values)))


def brace(text: str, width: int = 0) -> str:
    """A brace field, right-padded to ``width`` like the devices do (0: no padding)."""
    return "{" + text.ljust(width) + "}"
