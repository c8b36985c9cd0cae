"""SSCv1 (Sennheiser Sound Control, JSON over UDP): message model, errors and subscriptions. No I/O.

An OSC address ``/a/b/c`` travels as the nested JSON object ``{"a":{"b":{"c":leaf}}}``; a ``null`` leaf
asks for the value, any other leaf sets it. Requests carry ``osc/xid`` and the device reflects it; errors
arrive as ``{"osc":{"error":[tree]}}`` where each failing leaf holds ``[code]`` or ``[code, {"desc": ...}]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from wmhub_sennheiser.values import DeviceJsonError, device_json, finite_number

Address = tuple[str, ...]

XID: Final[Address] = ("osc", "xid")
ERROR: Final[Address] = ("osc", "error")
SUBSCRIBE: Final[Address] = ("osc", "state", "subscribe")
PING: Final[Address] = ("osc", "ping")
DEFAULT_LIFETIME_S: Final = 10
# Real devices fragment badly above one Ethernet frame; split requests below this by default.
DEFAULT_MAX_MESSAGE_BYTES: Final = 1400


class SscDecodeError(ValueError):
    """A datagram that is not an SSC message (not JSON, or not a JSON object)."""


def address(text: str) -> Address:
    """``"/rx1/name"`` -> ``("rx1", "name")``."""
    return tuple(part for part in text.split("/") if part)


def address_text(path: Address) -> str:
    return "/" + "/".join(path)


def tree(leaves: Mapping[Address, Any] | Iterable[Address]) -> dict[str, Any]:
    """Nest leaves into one SSC object; an iterable of addresses gives a get (``null`` leaves)."""
    pairs = leaves.items() if isinstance(leaves, Mapping) else ((path, None) for path in leaves)
    root: dict[str, Any] = {}
    for path, value in pairs:
        node = root
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return root


def flatten(node: Mapping[str, Any], prefix: Address = ()) -> dict[Address, Any]:
    """The leaves of an SSC object; lists are values, not subtrees."""
    leaves: dict[Address, Any] = {}
    for key, value in node.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            leaves.update(flatten(value, path))
        else:
            leaves[path] = value
    return leaves


def encode(body: Mapping[str, Any], xid: int | None = None) -> bytes:
    """One datagram: the JSON object, no terminator. ``xid`` goes to ``osc/xid``."""
    message = dict(body)
    if xid is not None:
        osc = dict(message.get("osc") or {})
        osc["xid"] = xid
        message["osc"] = osc
    return json.dumps(message, separators=(",", ":")).encode()


class ErrorKind(StrEnum):
    """What an SSC error code means to a client."""

    OK = "ok"  # 1xx/2xx, only reported when asked for
    SUBSCRIPTION_ENDED = "subscription_ended"  # 310: renew
    MISSING = "missing"  # 404/454: this model lacks the address; stop asking
    NOT_ACCEPTABLE = "not_acceptable"  # 406: wrong type or read-only
    NO_TRANSMITTER = "no_transmitter"  # 424: on mates/txN leaves, the transmitter is absent
    TOO_LARGE = "too_large"  # 413/414/450: split the request
    NOT_UNDERSTOOD = "not_understood"  # 400: nothing in the message was executed
    OTHER = "other"


_KINDS: Final = {
    310: ErrorKind.SUBSCRIPTION_ENDED,
    400: ErrorKind.NOT_UNDERSTOOD,
    404: ErrorKind.MISSING,
    454: ErrorKind.MISSING,
    406: ErrorKind.NOT_ACCEPTABLE,
    424: ErrorKind.NO_TRANSMITTER,
    413: ErrorKind.TOO_LARGE,
    414: ErrorKind.TOO_LARGE,
    450: ErrorKind.TOO_LARGE,
}

ERROR_TEXT: Final = {
    310: "subscription terminates",
    400: "message not understood",
    404: "address not found",
    406: "not acceptable",
    413: "request too long",
    414: "request too complex",
    424: "failed dependency",
    450: "answer too long",
    454: "parameter address not found",
    500: "internal server error",
}


@dataclass(frozen=True)
class SscError:
    """One failing leaf. ``in_subscription`` marks errors reported inside an ``osc/state/subscribe`` tree."""

    address: Address
    code: int
    desc: str | None = None
    in_subscription: bool = False

    @property
    def kind(self) -> ErrorKind:
        if self.code < 300:
            return ErrorKind.OK
        return _KINDS.get(self.code, ErrorKind.OTHER)

    def __str__(self) -> str:
        text = self.desc or ERROR_TEXT.get(self.code, "error")
        return f"{address_text(self.address)}: {self.code} {text}"


@dataclass(frozen=True)
class Message:
    """A decoded datagram: the values it carries, its errors and, for replies, the reflected xid."""

    values: dict[Address, Any] = field(default_factory=dict)
    errors: tuple[SscError, ...] = ()
    xid: int | None = None
    subscription_echo: tuple[Mapping[str, Any], ...] | None = None

    @property
    def addresses(self) -> set[Address]:
        return set(self.values) | {error.address for error in self.errors}


def _error_leaf(node: Any) -> tuple[int, str | None] | None:
    """``[code]`` or ``[code, {"desc": text}]`` -> (code, desc); anything else is not an error leaf."""
    if not isinstance(node, list) or not node or not isinstance(node[0], int) or isinstance(node[0], bool):
        return None
    desc = None
    if len(node) > 1 and isinstance(node[1], dict) and isinstance(node[1].get("desc"), str):
        desc = node[1]["desc"]
    return node[0], desc


def _walk_errors(node: Any, prefix: Address, found: list[SscError]) -> None:
    leaf = _error_leaf(node)
    if leaf is not None:
        in_subscription = prefix[: len(SUBSCRIBE)] == SUBSCRIBE
        path = prefix[len(SUBSCRIBE) :] if in_subscription else prefix
        found.append(SscError(path, leaf[0], leaf[1], in_subscription))
    elif isinstance(node, dict):
        for key, child in node.items():
            if key != "#":
                _walk_errors(child, (*prefix, key), found)
    elif isinstance(node, list):
        # a list of trees: the error array itself, or a subscribe array mirrored inside it
        for child in node:
            _walk_errors(child, prefix, found)


def decode(data: bytes) -> Message:
    """Decode one datagram. Raises SscDecodeError for anything that is not a JSON object."""
    try:
        return _decode(data)
    except RecursionError:  # device_json bounds the nesting; kept so that no datagram can be a plugin bug
        raise SscDecodeError("JSON nested too deeply") from None


def _decode(data: bytes) -> Message:
    try:
        body = device_json(data)
    except DeviceJsonError as exc:
        raise SscDecodeError(str(exc)) from None
    except ValueError as exc:  # bad JSON, not UTF-8, or an integer longer than CPython converts (4,300 digits)
        raise SscDecodeError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise SscDecodeError("not a JSON object")
    values = flatten(body)
    xid = values.pop(XID, None)
    errors: list[SscError] = []
    if ERROR in values:
        _walk_errors(values.pop(ERROR), (), errors)
    echo = values.pop(SUBSCRIBE, None)
    return Message(
        values=values,
        errors=tuple(errors),
        xid=xid if isinstance(xid, int) and not isinstance(xid, bool) else None,
        subscription_echo=tuple(item for item in echo if isinstance(item, dict)) if isinstance(echo, list) else None,
    )


def error_body(errors: Iterable[SscError]) -> dict[str, Any]:
    """The ``{"osc":{"error":[tree]}}`` object for some failing leaves (the device side of :func:`decode`)."""
    leaves: dict[Address, Any] = {}
    for error in errors:
        leaves[error.address] = [error.code] if error.desc is None else [error.code, {"desc": error.desc}]
    return {"osc": {"error": [tree(leaves)]}}


@dataclass(frozen=True)
class SubscriptionParams:
    """The ``#`` parameters of one subscription set. ``min_ms == max_ms == 0`` means notify on change."""

    min_ms: int = 0
    max_ms: int = 0
    lifetime_s: float = DEFAULT_LIFETIME_S
    count: int | None = None

    @classmethod
    def periodic(cls, interval_ms: int, lifetime_s: float) -> SubscriptionParams:
        return cls(interval_ms, interval_ms, lifetime_s)

    def as_json(self) -> dict[str, Any]:
        params: dict[str, Any] = {"min": self.min_ms, "max": self.max_ms, "lifetime": self.lifetime_s}
        if self.count is not None:
            params["count"] = self.count
        return params

    @classmethod
    def from_json(cls, params: Mapping[str, Any]) -> SubscriptionParams:
        """Read ``#`` parameters; unknown keys are ignored as the guide says they should be."""

        def number(key: str, default: float) -> float:
            value = finite_number(params.get(key, default))
            return value if value is not None and value >= 0 else default

        count = params.get("count")
        return cls(
            min_ms=int(number("min", 0)),
            max_ms=int(number("max", 0)),
            lifetime_s=number("lifetime", DEFAULT_LIFETIME_S) or DEFAULT_LIFETIME_S,
            count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        )


def subscribe_body(sets: Sequence[tuple[SubscriptionParams, Iterable[Address]]]) -> dict[str, Any]:
    """``{"osc":{"state":{"subscribe":[{"#":{...}, <tree>}, ...]}}}``: one array element per set."""
    return {"osc": {"state": {"subscribe": [{"#": params.as_json(), **tree(paths)} for params, paths in sets]}}}


def cancel_body(paths: Iterable[Address]) -> dict[str, Any]:
    """End a subscription early (spelled correctly: a misspelt key is silently ignored by devices)."""
    return {"osc": {"state": {"subscribe": [{"#": {"cancel": True}, **tree(paths)}]}}}


def renew_after_s(lifetime_s: float) -> float:
    """When to renew a subscription: one second before it ends, or halfway for very short lifetimes."""
    return max(lifetime_s - 1.0, lifetime_s / 2)


class MessageTooLargeError(ValueError):
    """A single address does not fit in one message."""


def split(
    paths: Sequence[Address], encode_chunk: Callable[[Sequence[Address]], bytes], max_bytes: int
) -> list[list[Address]]:
    """Group addresses greedily so that no encoded chunk exceeds ``max_bytes``."""
    chunks: list[list[Address]] = []
    current: list[Address] = []
    for path in paths:
        candidate = [*current, path]
        if len(encode_chunk(candidate)) <= max_bytes:
            current = candidate
            continue
        if not current:
            raise MessageTooLargeError(f"{address_text(path)} alone exceeds {max_bytes} bytes")
        chunks.append(current)
        current = [path]
        if len(encode_chunk(current)) > max_bytes:
            raise MessageTooLargeError(f"{address_text(path)} alone exceeds {max_bytes} bytes")
    if current:
        chunks.append(current)
    return chunks
