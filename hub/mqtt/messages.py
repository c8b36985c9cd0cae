"""Inbound MQTT messages (hub requests, set/get): JSON objects, validated strictly, refused with a reason.

Shared by :mod:`hub.mqtt.control` and :mod:`hub.mqtt.requests`; nothing here does I/O.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from hub.model import deadline_passed
from hub.text import preview

# A request's "transaction" comes back in its answer as it was sent. The bounds keep that answer encodable
# (orjson writes at most 255 levels; the parser reads 1,024) and small: an id, or a small object of ids.
MAX_TRANSACTION_LEVELS: Final = 32
MAX_TRANSACTION_BYTES: Final = 4096
# Keys any request may carry beside its own: "transaction" comes back in the answer, "deadline" bounds when the
# hub may still begin it (check_deadline).
REQUEST_KEYS: Final = frozenset({"transaction", "deadline"})
# A refused request's answer names this many of its bad keys and counts the rest: a 64 KiB message of 6,500
# unknown keys is not answered (to every subscriber of the response topic) and logged at twice its size.
KEYS_NAMED: Final = 5


class RequestError(Exception):
    """A request that cannot be carried out; the message goes back to the requester."""


class StrictMessage(BaseModel):
    # strict: JSON's own types only, as REST takes them ("yes", 1 or "3" are not true, true or 3)
    model_config = ConfigDict(extra="forbid", strict=True)


def parse_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"payload is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RequestError("payload must be a JSON object")
    if "transaction" in value:
        _check_transaction(value["transaction"])
    return value


def _check_transaction(transaction: Any) -> None:
    """Refuse a transaction the answer could not echo: the request is then refused whole, before anything
    is done, and its answer carries no transaction (the caller matches it by topic and time)."""
    level: list[Any] = [transaction]
    for _ in range(MAX_TRANSACTION_LEVELS):
        level = [
            inner
            for value in level
            if isinstance(value, dict | list)
            for inner in (value.values() if isinstance(value, dict) else value)
        ]
        if not level:
            break
    else:
        raise RequestError(f"transaction: nested more than {MAX_TRANSACTION_LEVELS} levels deep")
    if len(orjson.dumps(transaction)) > MAX_TRANSACTION_BYTES:
        raise RequestError(f"transaction: longer than {MAX_TRANSACTION_BYTES} bytes as JSON")


def check_deadline(request: dict[str, Any], now: float) -> None:
    """Refuse a request begun after its ``deadline``, the sender's wall-clock time (seconds since the epoch)
    after which it no longer waits: a message that sat in a stalled hub's socket, or behind the receiver's
    queue, is answered instead of being carried out long after its sender reported a failure (docs/mqtt.md,
    "Deadlines"). ``now`` is this hub's clock, compared as is: a sender writes the deadline in it, learnt from
    the ``hub_time`` of this hub's answers (``wmhub fleet`` does), or else a hub whose clock is behind the
    sender's may begin a request that much later than meant, one ahead refuses requests still in time and its
    answer says by how much. A request without a deadline is carried out however late it arrives, as ever."""
    if "deadline" not in request:
        return
    deadline = request["deadline"]
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise RequestError("deadline: a number, the sender's clock in seconds since the epoch")
    if now > deadline:
        raise RequestError(
            deadline_passed(
                f" {now - deadline:.1f} s ago by this hub's clock (if the sender still waits, its clock is that far "
                "behind the hub's)"
            )
        )


ModelT = TypeVar("ModelT", bound=BaseModel)


def validate(model: type[ModelT], request: dict[str, Any]) -> ModelT:
    """Validate a request without its ``transaction`` and ``deadline`` (unless ``model`` has a field for one);
    the message names the first KEYS_NAMED bad keys and counts the others."""
    body = {key: value for key, value in request.items() if key not in REQUEST_KEYS or key in model.model_fields}
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # by key, without the value (it may be huge); a key of several types lists each one it failed
        problems: dict[str, list[str]] = {}
        for problem in exc.errors():
            key = preview(problem["loc"][0]) if problem["loc"] else "payload"
            message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
            problems.setdefault(key.strip("'"), []).append(message)
        named = [f"{key}: {' or '.join(messages)}" for key, messages in list(problems.items())[:KEYS_NAMED]]
        if len(problems) > KEYS_NAMED:
            named.append(f"and {len(problems) - KEYS_NAMED} more keys")
        raise RequestError("; ".join(named)) from None


def shortened(message: str) -> str:
    """An error message cut to a length fit for a log line and a response (it may quote what was sent)."""
    return message if len(message) <= 300 else f"{message[:300]}… ({len(message)} characters)"
