"""The checks of what a plugin declares about its devices (``device_capabilities``), where the hub takes it.

A declaration the hub cannot use would fail every command it covers, or raise false alerts: a name pattern
that does not compile crashed every name command; a FREQUENCY band given as ``min=608, max=470`` refused every
frequency and flagged every carrier out of band. So each command's limits are checked once they are declared,
and a command whose limits are unusable is left out of the device's capabilities, as if never declared: the
hub then refuses that command ("has no … control") and builds no entity for it, rather than send values it
cannot check to the plugin or raise alerts against a band that does not exist. The plugin is told why, once.

A name pattern that Python compiles but a browser cannot (the board puts it in an ``<input pattern>``, which
browsers compile with JavaScript's ``v`` flag) is kept, with a warning: the hub still checks every name; only
the board's own check as you type is lost. :func:`vflag_problem` is a small scan for the usual causes, not a
JavaScript engine.
"""

from __future__ import annotations

import math
import re
from typing import Final

from hub.model import Capabilities, CommandKind, CommandLimits, NumberLimits, TextLimits


def checked_capabilities(declared: Capabilities) -> tuple[Capabilities, list[str], list[str]]:
    """(the capabilities the hub keeps, why each left-out command was refused, warnings about the kept ones)."""
    kept: dict[CommandKind, CommandLimits] = {}
    refused: list[str] = []
    warned: list[str] = []
    for kind, limits in declared.commands.items():
        where = f"commands[{getattr(kind, 'value', kind)!s}]"
        try:
            problem = _limits_problem(limits, where)
        except Exception as exc:  # a declaration built around pydantic's checks (model_construct): unusable
            problem = f"{where}: unreadable ({type(exc).__name__}: {exc})"
        if problem is not None:
            refused.append(f"{problem}: the command is left out, as if not declared")
            continue
        kept[kind] = limits
        if limits.text is not None:
            browser = vflag_problem(limits.text.pattern)
            if browser is not None:
                warned.append(
                    f"{where}.text.pattern {limits.text.pattern!r}: {browser}; browsers compile it with the v flag "
                    "and the board then leaves the field unchecked (the hub still checks every name)"
                )
    if not refused:
        return declared, refused, warned
    return declared.model_copy(update={"commands": kept}), refused, warned


def _limits_problem(limits: object, where: str) -> str | None:
    if not isinstance(limits, CommandLimits):
        return f"{where}: not a CommandLimits"
    if limits.text is not None:
        problem = _text_problem(limits.text, f"{where}.text")
        if problem is not None:
            return problem
    if limits.number is not None:
        problem = _number_problem(limits.number, f"{where}.number")
        if problem is not None:
            return problem
    if limits.slots is not None and not (_whole(limits.slots) and limits.slots >= 1):
        return f"{where}.slots {limits.slots!r}: must be a whole number of at least 1"
    if limits.choices is not None and not (
        limits.choices and all(isinstance(choice, str) for choice in limits.choices)
    ):
        return f"{where}.choices {limits.choices!r}: must be a non-empty tuple of text"
    return None


def _text_problem(text: object, where: str) -> str | None:
    if not isinstance(text, TextLimits):
        return f"{where}: not a TextLimits"
    if not isinstance(text.pattern, str):
        return f"{where}.pattern {text.pattern!r}: not text"
    try:
        re.compile(text.pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"{where}.pattern {text.pattern!r} does not compile in Python ({exc})"
    if not (_whole(text.min_length) and _whole(text.max_length) and 0 <= text.min_length <= text.max_length):
        return f"{where}: min_length {text.min_length!r} above max_length {text.max_length!r}"
    return None


def _number_problem(number: object, where: str) -> str | None:
    if not isinstance(number, NumberLimits):
        return f"{where}: not a NumberLimits"
    for name in ("min", "max", "step"):
        value = getattr(number, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"{where}.{name} {value!r}: not a finite number"
    if number.step <= 0:
        return f"{where}.step {number.step!r}: must be above 0"
    if number.min > number.max:
        return f"{where}: min {number.min:g} above max {number.max:g} (inverted)"
    return None


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# JavaScript's v flag (unicodeSets), which browsers use for <input pattern>:
# escapes allowed outside a class: the syntax characters and '/', and the letter escapes
_SYNTAX: Final = frozenset("^$\\.*+?()[]{}|/")
_LETTER_ESCAPES: Final = frozenset("dDwWsSbBfnrtv0xucpPk123456789")
# inside a class these must be escaped, and these may be (ClassSetSyntaxCharacter, ClassSetReservedPunctuator)
_CLASS_SYNTAX: Final = frozenset("()[]{}/-\\|")
_CLASS_ESCAPABLE: Final = _CLASS_SYNTAX | frozenset("&!#%,:;<=>@`~^$.*+?")
# two of these in a row inside a class are reserved (ClassSetReservedDoublePunctuator)
_DOUBLE_PUNCTUATORS: Final = frozenset("&!#$%*+,.:;<=>?@^`~")
_QUANTIFIER: Final = re.compile(r"\{\d+(?:,\d*)?\}")
_GROUP_OPENINGS: Final = ("(?:", "(?=", "(?!", "(?<=", "(?<!")


def vflag_problem(pattern: str) -> str | None:
    """What makes ``pattern`` (valid in Python) invalid under JavaScript's ``v`` flag, or None. A scan for the
    usual causes: inside a class, an unescaped ``( ) [ ] { } / |`` or a ``-`` that is no range, or a doubled
    punctuator; outside, a lone ``{ } ]``, an escape JavaScript does not know (``\\A``, ``\\Z``, ``\\-``), or a
    group only Python has (``(?P<…>``, ``(?i)``)."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 < n and pattern[i + 1] not in _SYNTAX and pattern[i + 1] not in _LETTER_ESCAPES:
                return f"the escape \\{pattern[i + 1]} is not JavaScript's (write the character plain)"
            i += 2
        elif ch == "[":
            problem, i = _class_problem(pattern, i + 1)
            if problem is not None:
                return problem
        elif ch == "(":
            if pattern.startswith("(?", i) and not pattern.startswith(_GROUP_OPENINGS, i):
                return f"the group {pattern[i : i + 4]!r}… is Python's only (use (?:…), no inline flags)"
            i += 1
        elif ch == "{":
            quantifier = _QUANTIFIER.match(pattern, i)
            if quantifier is None or i == 0:
                return "a '{' that is no {n,m} quantifier (escape it: \\{)"
            i = quantifier.end()
        elif ch in "}]":
            return f"a lone {ch!r} (escape it: \\{ch})"
        else:
            i += 1
    return None


def _class_problem(pattern: str, i: int) -> tuple[str | None, int]:
    """Scan the class whose '[' was just before ``i``; (a problem or None, the index after its ']')."""
    n = len(pattern)
    if i < n and pattern[i] == "^":
        i += 1
    if i < n and pattern[i] == "]":
        return "a ']' first in a class (escape it: \\])", i
    range_start = False  # the previous item is one character, which a '-' could make a range from
    while i < n:
        ch = pattern[i]
        if ch == "]":
            return None, i + 1
        if ch == "\\":
            if i + 1 < n and pattern[i + 1] not in _CLASS_ESCAPABLE and pattern[i + 1] not in _LETTER_ESCAPES:
                return f"the escape \\{pattern[i + 1]} inside a class is not JavaScript's", i
            single = i + 1 < n and pattern[i + 1] not in "dDwWsSpP"
            i += 2
        elif ch == "-":
            if not range_start or i + 1 >= n or pattern[i + 1] == "]":
                return "a '-' inside a class that is no range (escape it: \\-)", i
            i += 1
            if pattern[i] == "\\":
                i += 2
            elif pattern[i] in _CLASS_SYNTAX:
                return f"an unescaped {pattern[i]!r} inside a class (escape it: \\{pattern[i]})", i
            else:
                i += 1
            range_start = False
            continue
        elif ch in _CLASS_SYNTAX:
            return f"an unescaped {ch!r} inside a class (escape it: \\{ch})", i
        elif ch in _DOUBLE_PUNCTUATORS and i + 1 < n and pattern[i + 1] == ch:
            return f"{ch + ch!r} inside a class (reserved: escape one of them)", i
        else:
            single = True
            i += 1
        range_start = single
    return "an unterminated class", i
