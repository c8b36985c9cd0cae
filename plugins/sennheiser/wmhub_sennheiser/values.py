"""Reading device JSON, which every Sennheiser protocol here carries, and the numbers out of it."""

from __future__ import annotations

import json
import math
from typing import Any, Final

# Far deeper than any document a Sennheiser device sends (a handful of levels), far shallower than Python's
# recursion limit: whatever walks a document recursively later (flatten, repr in a log line) never reaches it.
MAX_JSON_DEPTH: Final = 64


class DeviceJsonError(ValueError):
    """JSON from a device nested deeper than :data:`MAX_JSON_DEPTH`: a protocol error, like JSON that is none."""


def device_json(data: str | bytes) -> Any:
    """``data`` parsed as JSON. Raises ValueError for anything else: not JSON (json.JSONDecodeError), no UTF-8
    (UnicodeDecodeError) or nested too deeply (DeviceJsonError), never RecursionError, which the supervisor
    would take for a bug of the plugin."""
    try:
        document = json.loads(data)
    except RecursionError:  # '[' * 100_000 nests past the interpreter's limit inside the parser
        raise DeviceJsonError("JSON nested too deeply") from None
    if isinstance(document, dict | list) and _deeper_than(document, MAX_JSON_DEPTH):
        raise DeviceJsonError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return document


def _deeper_than(document: dict[str, Any] | list[Any], limit: int) -> bool:
    # level by level, not recursively: the check itself must not be what runs out of stack
    level: list[Any] = [document]
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def finite_number(value: Any) -> float | None:
    """A finite number, or None: JSON from a device may hold NaN, Infinity or integers beyond a float.

    Python's json accepts NaN and Infinity; passed on, they would break rounding and the hub's own JSON.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def text(value: Any) -> str | None:
    """A non-empty string, or None: a device may put any JSON where a name belongs."""
    return value if isinstance(value, str) and value else None
