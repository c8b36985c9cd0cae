"""The model's types, enforced where driver reports enter the hub (the sink), for every plugin alike.

Devices are reached over their own protocols, parsed by plugins the hub does not control. One value of the
wrong type in the store (``"strong"`` for a level, a number for a name) would fail every reader of it, the
REST API, the board, the history, for the whole venue. So each value a driver reports is checked against
the field's type in :mod:`hub.model` before it is merged:

- a value of the wrong type (or a field the model does not have) is refused: the field keeps its value;
- a number outside the model's range, NaN or infinity is a reading the device could not make: unknown (None);
- text loses its control characters and the spaces around it, a lone surrogate becomes U+FFFD
  (:func:`hub.text.device_text`), and it is cut to the family's width; text that is then empty (a receiver's
  name of only spaces) is no text: None, shown everywhere as a device or channel without a name.

Checking runs on every meter sample: a value that is plainly fine (a finite float, a bool, short clean
text) is passed by an inline test on its class; only the rest goes to the field's own check function.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any, Final, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from hub.model import CHANNEL_FIELDS, DEVICE_FIELDS, MAX_SLOTS, METER_FIELDS, Channel, Device, SlotState, numeric_bounds
from hub.text import device_text

# A check returns the value to store, UNKNOWN for a reading outside the model, or REFUSED.
REFUSED: Final = object()
UNKNOWN: Final = object()
Check = Callable[[Any], Any]


# The widest whole number JSON encoders (orjson) and SQLite take; a device's 2**70 is no reading it made.
MAX_WHOLE: Final = 2**63 - 1


def _boolean(value: Any) -> Any:
    return value if value is True or value is False else REFUSED


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return REFUSED
    if isinstance(value, int):
        return value if -MAX_WHOLE <= value <= MAX_WHOLE else UNKNOWN
    return value if math.isfinite(value) else UNKNOWN


def _whole(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return REFUSED
    if isinstance(value, int):
        return value if -MAX_WHOLE <= value <= MAX_WHOLE else UNKNOWN
    if not math.isfinite(value) or abs(value) > MAX_WHOLE:
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


def _shown_text(value: str, width: int) -> str:
    # stripped again after the controls are gone: "\x1b[0m Vocal" would otherwise keep its space
    return device_text(value.strip(), width).strip()


def _text(width: int) -> Check:
    def text(value: Any) -> Any:
        # blank is no text (a receiver's name of spaces): None, as the Shure plugin decodes it, so Home
        # Assistant, the board and the REST API fall back to what they show for a device without a name
        return (_shown_text(value, width) or None) if isinstance(value, str) else REFUSED

    return text


def _texts(width: int) -> Check:
    def texts(value: Any) -> Any:
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            return REFUSED
        return [shown for item in value[:MAX_WARNINGS] if (shown := _shown_text(item, width))]

    return texts


# Quadversity (Axient A-D) is the most antennas any family reports per channel; a few more leave room.
MAX_ANTENNAS: Final = 8


# an antenna's level is an RF level: a value outside rf_dbm's bounds (4e22 dBm) is an antenna not reported
_antenna_level: Final = _bounded(_number, *numeric_bounds(Channel)["rf_dbm"])


def _levels(width: int) -> Check:
    """Per-antenna levels: short names to finite numbers; a non-finite level is an antenna not reported."""

    def levels(value: Any) -> Any:
        if not isinstance(value, dict) or len(value) > MAX_ANTENNAS:
            return REFUSED
        checked: dict[str, float] = {}
        for name, level in value.items():
            number = _antenna_level(level)
            if not isinstance(name, str) or number is REFUSED:
                return REFUSED
            if number is not UNKNOWN:
                checked[device_text(name, width)] = number
        return checked or UNKNOWN

    return levels


def _slots(width: int) -> Check:
    """A channel's transmitter slots: each checked like a model of its own (a wrong-typed value in a slot is
    left out, a number outside its range is unknown); a slot without a valid number refuses the whole list."""
    rules = FieldRules(SlotState, frozenset(SlotState.model_fields), width)

    def slots(value: Any) -> Any:
        if not isinstance(value, list | tuple) or len(value) > MAX_SLOTS:
            return REFUSED
        states: dict[int, SlotState] = {}
        for item in value:
            fields = item.model_dump() if isinstance(item, SlotState) else item
            if not isinstance(fields, dict):
                return REFUSED
            kept = checked(fields, rules, _unheard)
            try:
                state = SlotState.model_validate(kept)
            except ValidationError:
                return REFUSED
            states[state.slot] = state
        return [states[slot] for slot in sorted(states)]

    return slots


def _unheard(name: str, value: Any, why: str) -> None:
    """A value left out inside a slot: the slot's other values still count, so nothing more is said."""


def _admits_none(model: type[BaseModel], name: str) -> bool:
    annotation = model.model_fields[name].annotation
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _base_type(model: type[BaseModel], name: str) -> Any:
    """The field's type without its ``| None``."""
    annotation = model.model_fields[name].annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    return annotation


def _check_for(model: type[BaseModel], name: str, width: int) -> Check:
    base = _base_type(model, name)
    if base is bool:
        return _boolean
    if base is str:
        return _text(width)
    if get_origin(base) is list:
        return _slots(width) if get_args(base) == (SlotState,) else _texts(width)
    if get_origin(base) is dict:
        return _levels(width)
    check = _whole if base is int else _number
    bounds = numeric_bounds(model).get(name)
    return check if bounds is None else _bounded(check, *bounds)


class FieldRules:
    """The checks of one model's fields, text cut to ``width``. ``classes`` is the fast path: the class a
    plainly fine value of the field has (float for levels, bool for flags, int for counts, str for text)."""

    def __init__(
        self, model: type[BaseModel], fields: frozenset[str], width: int, others_why: str | None = None
    ) -> None:
        self.model = model
        self.width = width
        self.others_why = others_why  # why a field of the model outside ``fields`` is refused, if it may be known
        self.checks = {name: _check_for(model, name, width) for name in fields}
        # the fields a reading may leave unknown (None); the others (a channel's warnings) never are
        self.nullable = frozenset(name for name in fields if _admits_none(model, name))
        self.classes: dict[str, type] = {}
        # (lowest, highest) allowed: ``ranges`` for a float in a float field, ``wholes`` for a whole number in
        # an int or float field (which JSON and SQLite must hold too)
        self.ranges: dict[str, tuple[float, float]] = {}
        self.wholes: dict[str, tuple[float, float]] = {}
        bounds = numeric_bounds(model)
        for name in fields:
            base = _base_type(model, name)
            if base not in (bool, float, int, str):
                continue
            self.classes[name] = base
            if base is int or base is float:
                low, high = bounds.get(name, (None, None))
                self.wholes[name] = (
                    -MAX_WHOLE if low is None else max(low, -MAX_WHOLE),
                    MAX_WHOLE if high is None else min(high, MAX_WHOLE),
                )
                if base is float:
                    self.ranges[name] = (
                        -sys.float_info.max if low is None else low,
                        sys.float_info.max if high is None else high,
                    )


# A device's capabilities come from its plugin's declaration (the device_capabilities hook), never from what
# a driver reports.
REPORTED_DEVICE_FIELDS: Final = DEVICE_FIELDS - {"capabilities"}
# extended_name is the user's, kept by the hub (the venue store): a driver reporting it would overwrite it
REPORTED_CHANNEL_FIELDS: Final = CHANNEL_FIELDS - {"extended_name"}
# why a driver may not report a field the model has (the warning must not say it is no field of the model)
NOT_REPORTED: Final = {
    "capabilities": "a field of the model the plugin declares through device_capabilities, not reported: dropped",
    "extended_name": "a field of the model set by the user (the hub keeps it), not by a driver: dropped",
}


def model_rules(width: int) -> tuple[FieldRules, FieldRules]:
    """(channel rules, device rules), with text cut to ``width`` characters."""
    return FieldRules(Channel, REPORTED_CHANNEL_FIELDS, width), FieldRules(Device, REPORTED_DEVICE_FIELDS, width)


def merge_rules(width: int) -> FieldRules:
    """The channel rules of a merge of held meter readings (``DeviceSink.defer_meters``): meter fields only,
    since the merge runs only when someone looks and state must never wait for that."""
    return FieldRules(
        Channel,
        REPORTED_CHANNEL_FIELDS & METER_FIELDS,
        width,
        others_why="not a meter field: a merge of held meter readings (defer_meters) writes those only: dropped",
    )


Refusal = Callable[[str, Any, str], None]


def checked(fields: Mapping[str, Any], rules: FieldRules, refuse: Refusal) -> Mapping[str, Any]:
    """``fields`` as the store may take them; ``refuse(name, value, why)`` hears of each value left out or
    read as unknown. The mapping is copied only when something in it changed: this runs per meter sample."""
    classes = rules.classes
    checks = rules.checks
    width = rules.width
    result: dict[str, Any] | None = None
    for name, value in fields.items():
        plain = classes.get(name)
        of_class = value.__class__  # compared apart from ``value``, which type checkers would narrow to object
        if of_class is plain:
            if plain is str:
                # no control or format characters at all (the one space isprintable passes is checked apart:
                # a blank name, or one padded with spaces, is trimmed)
                if value and len(value) <= width and value.isprintable() and value[0] != " " and value[-1] != " ":
                    continue
            elif plain is float:
                low, high = rules.ranges[name]
                if low <= value <= high:  # false for NaN; infinity is outside every range
                    continue
            elif plain is int:
                low, high = rules.wholes[name]
                if low <= value <= high:
                    continue
            else:  # bool
                continue
        elif of_class is int and plain is float:
            low, high = rules.wholes[name]
            if low <= value <= high:
                continue  # a whole reading of a level (a ULX-D's RF in dBm): held as it is, as the field's check would
        if value is None:
            if name in rules.nullable:
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
            refuse(name, value, _why_refused(name, rules))
        elif accepted is UNKNOWN:
            result[name] = None
            refuse(name, value, "outside the model's range: unknown")
        else:
            result[name] = accepted
    return fields if result is None else result


def _why_refused(name: str, rules: FieldRules) -> str:
    if name in rules.checks:
        return "the wrong type: dropped"
    if name in rules.model.model_fields:
        if name in NOT_REPORTED:
            return NOT_REPORTED[name]
        if rules.others_why is not None:
            return rules.others_why
    return "not a field of the model"
