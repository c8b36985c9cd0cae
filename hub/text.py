"""Text from outside the hub (device reports, MQTT payloads) made safe to store, print and log.

A device, or whoever answers on its port, decides what its strings contain: a name of 100,000 characters
would become a retained MQTT message that size, and an escape sequence in it would reach a terminal
through ``wmhub devices`` or forge a log line; a lone UTF-16 surrogate (JSON's ``"\\ud800"``, which Python's
JSON decoder takes) is no character at all and cannot be written as UTF-8: a name holding one would fail every
JSON answer, MQTT message and database row it reaches. Every device string passes :func:`device_text` at the
sink; whatever the hub echoes back of a refused value passes :func:`preview`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# The widest text field of any device family the hub knows; a plugin may declare a narrower one.
DEFAULT_TEXT_WIDTH: Final = 255
# How much of a refused value an error message or a log line shows.
PREVIEW_CHARS: Final = 60
URL_PREVIEW_CHARS: Final = 120  # a device URL in a message: whole, as long as any real one is

# C0 and C1 controls (escape sequences, newlines that would forge log lines), Unicode's line and paragraph
# separators, and the bidirectional overrides that make text display in another order than it is stored.
_CONTROLS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# UTF-16 surrogates: in a Python str only when a decoder let them through (JSON escapes, surrogateescape)
_SURROGATES: Final = re.compile("[\ud800-\udfff]")


def device_text(value: str, width: int = DEFAULT_TEXT_WIDTH) -> str:
    """``value`` without control characters, each lone surrogate replaced by U+FFFD (a pair of them joined into
    the character it encodes), cut to ``width`` characters."""
    if len(value) > width * 4:  # never scan a flood: what survives is at most ``width`` long anyway
        value = value[: width * 4]
    if _SURROGATES.search(value) is not None:
        # replaced (U+FFFD, as a UTF-8 decoder shows bad bytes), not dropped: the name then shows that the
        # receiver sent something there the hub cannot show
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if _CONTROLS.search(value) is not None:
        value = _CONTROLS.sub("", value)
    return value[:width]


def escape_controls(value: str) -> str:
    """``value`` with each character :func:`device_text` would remove written as its Python escape (``\\x1b``,
    ``\\n``, ``\\u202e``): a log line for a terminal keeps what a message held visible, but can neither move the
    cursor, set the window title, nor start a line of its own."""
    if _CONTROLS.search(value) is None:
        return value
    return _CONTROLS.sub(lambda found: repr(found.group())[1:-1], value)


def user_text(value: str) -> str:
    """Text a person typed (a name, a title), as the hub stores it: in Unicode's composed form (NFC), so
    "José" typed with a combining accent is the same text as "José" typed precomposed, and without the
    whitespace and invisible format characters (Unicode category Cf: U+200B, U+200E, U+FEFF …) around it."""
    return strip_blank(unicodedata.normalize("NFC", value))


def strip_blank(text: str) -> str:
    """``text`` without the whitespace and invisible format characters (:func:`invisible`) around it: what
    ``str.strip`` leaves of text without the latter."""
    start, end = 0, len(text)
    while start < end and _blank(text[start]):
        start += 1
    while end > start and _blank(text[end - 1]):
        end -= 1
    return text[start:end]


def invisible(char: str) -> bool:
    """Whether ``char`` is an invisible format character (Unicode category Cf: a zero-width space U+200B, the
    byte order mark U+FEFF, a direction mark U+200E, the soft hyphen U+00AD …): text holding one looks the same
    as without it, yet is other text."""
    return unicodedata.category(char) == "Cf"


def _blank(char: str) -> bool:
    return char.isspace() or invisible(char)


def same_name(one: str, other: str) -> bool:
    """Whether two names are the same whatever their case and Unicode form (casefold of NFC)."""
    return _name_key(one) == _name_key(other)


def _name_key(text: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())


def has_controls(value: str, *, layout: bool = False) -> bool:
    """True if ``value`` holds a character :func:`device_text` would remove or replace: what a person typing a name
    never means (a C0 or C1 control, a line or paragraph separator, a direction override). With ``layout``
    (free text such as a performer's notes), line breaks and tabs are allowed. A lone surrogate counts too:
    no text holds one (JSON parsers of REST and MQTT refuse it), and none could be stored or sent."""
    if layout:
        value = value.replace("\n", " ").replace("\t", " ")
    return _CONTROLS.search(value) is not None or _SURROGATES.search(value) is not None


def preview(value: object, limit: int = PREVIEW_CHARS) -> str:
    """A short, printable ``repr`` of a value for messages: at most ``limit`` characters and a length note."""
    if isinstance(value, str | bytes) and len(value) > limit:
        shown = repr(value[:limit])
        return f"{shown}… ({len(value)} {'characters' if isinstance(value, str) else 'bytes'})"
    try:
        text = repr(value)
    except RecursionError:  # a list in a list … a plugin reported: its warning must not raise into the plugin
        return f"a {type(value).__name__} nested too deeply to show"
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


# The widest reading a device's number is read as (``small_number(text, VALUE_DIGITS)``): an impossible one
# (a frequency of 99,999,999,999 MHz) must still reach the model's bounds, to be refused and counted there,
# yet anything this wide is exact enough as a float and far from overflowing one.
VALUE_DIGITS: Final = 18


def small_number(text: str, digits: int = 9, *, signed: bool = False) -> int | None:
    """``text`` as an int if it is at most ``digits`` ASCII digits (a channel index in a path or a topic, a
    port, a number in a device's message), after one ``-`` or ``+`` if ``signed``; else None.

    The guard for every number read from text someone else wrote: ``str.isdigit`` also takes "²", which
    int() refuses; int() reads any script's digits and raises ValueError for more than 4,300 of them; and
    an int of a few hundred digits still raises OverflowError once divided or made a float. Nothing a
    device or a person means here has more than ``digits`` digits, so a longer one is junk, not a number.
    """
    body = text[1:] if signed and text[:1] in ("-", "+") else text
    if 0 < len(body) <= digits and body.isascii() and body.isdigit():
        return int(text)
    return None


_NOT_ID_SAFE: Final = re.compile(r"[^a-zA-Z0-9_-]")


def id_safe(text: str) -> str:
    """``text`` with every character but letters, digits, ``_`` and ``-`` as ``_``: the form of a device id
    Home Assistant takes in discovery topics and unique ids. Two ids with one form are one device there, so
    the hub gives no two devices ids of the same form (hub.devices)."""
    return _NOT_ID_SAFE.sub("_", text)


def family_key(family: str | None) -> str:
    """A family as tables keyed by family name it (the frequency settings, ``[frequency.bands]``): plugins
    report "ew G4", "EW-DX" or "ulxd", a configuration may say "ew_g4"; lower case with every run of other
    characters one '-' makes them one."""
    return "-".join(re.findall(r"[a-z0-9]+", (family or "").lower()))
