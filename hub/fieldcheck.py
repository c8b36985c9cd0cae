"""The model's types, enforced where driver reports enter the hub (the sink), for every plugin alike.

Devices are reached over their own protocols, parsed by plugins the hub does not control. One value of the
wrong type in the store (``"strong"`` for a level, a number for a name) would fail every reader of it, the
REST API, the board, the history, for the whole venue. So each value a driver reports is checked against
the field's type in :mod:`hub.model` before it is merged:

- a value of the wrong type (or a field the model does not have) is refused: the field keeps its value;
- a number outside the model's range, NaN or infinity is a reading the device could not make: unknown (None);
- text loses its control characters and is cut to the family's width.

Checking runs on every meter sample, so each field's check is one small function found by name.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from typing import Any, Final, Union, get_args, get_origin

from pydantic import BaseModel

from hub.model import CHANNEL_BOUNDS, CHANNEL_FIELDS, DEVICE_FIELDS, Channel, Device
from hub.text import device_text

# A check returns the value to store, UNKNOWN for a reading outside the model, or REFUSED.
REFUSED: Final = object()
UNKNOWN: Final = object()
Check = Callable[[Any], Any]


def _boolean(value: Any) -> Any:
    return value if value is True or value is False else REFUSED


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return REFUSED
    return value if math.isfinite(value) else UNKNOWN


def _whole(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return REFUSED
    if isinstance(value, int):
        return value
    if not math.isfinite(value):
        return UNKNOWN
    return int(value) if value.is_integer() else REFUSED


def _bounded(check: Check, low: float | None, high: float | None) -> Check:
    def within(value: Any) -> Any:
        value = check(value)
        if value is REFUSED or value is UNKNOWN:
            return value
        if (low is not None and value < low) or (high is not None and value > high):
            return UNKNOWN
        return value

    return within


# Warnings are short phrases; a device that reports thousands is not telling anything more.
MAX_WARNINGS: Final = 32


def _text(width: int) -> Check:
    def text(value: Any) -> Any:
        return device_text(value, width) if isinstance(value, str) else REFUSED

    return text


def _texts(width: int) -> Check:
    def texts(value: Any) -> Any:
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            return REFUSED
        return [device_text(item, width) for item in value[:MAX_WARNINGS]]

    return texts


def _check_for(model: type[BaseModel], name: str, width: int) -> Check:
    annotation = model.model_fields[name].annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    if annotation is bool:
        return _boolean
    if annotation is str:
        return _text(width)
    if get_origin(annotation) is list:
        return _texts(width)
    check = _whole if annotation is int else _number
    if name in CHANNEL_BOUNDS and model is Channel:
        return _bounded(check, *CHANNEL_BOUNDS[name])
    return check


def model_checks(width: int) -> tuple[dict[str, Check], dict[str, Check]]:
    """(channel checks, device checks) by field name, with text cut to ``width`` characters."""
    return (
        {name: _check_for(Channel, name, width) for name in CHANNEL_FIELDS},
        {name: _check_for(Device, name, width) for name in DEVICE_FIELDS},
    )


Refusal = Callable[[str, Any, str], None]


def checked(fields: Mapping[str, Any], checks: Mapping[str, Check], refuse: Refusal) -> Mapping[str, Any]:
    """``fields`` as the store may take them; ``refuse(name, value, why)`` hears of each value left out or
    read as unknown. The mapping is copied only when something in it changed: this runs per meter sample."""
    result: dict[str, Any] | None = None
    for name, value in fields.items():
        if value is None:
            if name in checks:
                continue
            accepted: Any = REFUSED
        else:
            check = checks.get(name)
            accepted = REFUSED if check is None else check(value)
        if accepted is value:
            continue
        if result is None:
            result = dict(fields)
        if accepted is REFUSED:
            del result[name]
            refuse(name, value, "not a field of the model" if name not in checks else "the wrong type: dropped")
        elif accepted is UNKNOWN:
            result[name] = None
            refuse(name, value, "outside the model's range: unknown")
        else:
            result[name] = accepted
    return fields if result is None else result
