"""Reading numbers out of device JSON, which every Sennheiser protocol here carries."""

from __future__ import annotations

import math
from typing import Any


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
