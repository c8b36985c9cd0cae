"""The device side of SSCv1's JSON, for the simulated and the replayed devices; not shared with the driver.

Written from the vendor's rules as the reference quotes them (1.2-1.4): an address ``/a/b/c`` is the
nested object ``{"a":{"b":{"c":leaf}}}``, a ``null`` leaf asks, any other sets (lists are values, not
subtrees); ``osc/xid`` is reflected; errors are ``{"osc":{"error":[tree]}}`` with ``[code]`` leaves;
subscription sets carry ``#`` parameters with a lifetime of 10 s unless given. Keeping this apart from
``wmhub_sennheiser.ssc1`` means a mistake in the driver's codec is not made by the devices it is tested
against too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

Address = tuple[str, ...]

XID: Final[Address] = ("osc", "xid")
SUBSCRIBE: Final[Address] = ("osc", "state", "subscribe")
PING: Final[Address] = ("osc", "ping")
LIFETIME_S: Final = 10


def leaves(node: Mapping[str, Any], prefix: Address = ()) -> dict[Address, Any]:
    """Every leaf of an object by its address; an empty object and a list are leaf values."""
    found: dict[Address, Any] = {}
    for key, value in node.items():
        if isinstance(value, Mapping) and value:
            found.update(leaves(value, (*prefix, key)))
        else:
            found[(*prefix, key)] = value
    return found


def nest(values: Mapping[Address, Any] | Iterable[Address]) -> dict[str, Any]:
    """The object holding these leaves; addresses alone make ``null`` leaves (a read)."""
    pairs = values.items() if isinstance(values, Mapping) else ((path, None) for path in values)
    root: dict[str, Any] = {}
    for path, value in pairs:
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return root


def lookup(node: Any, path: Address) -> tuple[bool, Any]:
    """(found, value) of the leaf at ``path``."""
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False, None
        node = node[key]
    return True, node


def errors(codes: Mapping[Address, int]) -> dict[str, Any]:
    """``{"osc":{"error":[tree]}}`` with ``[code]`` at each failing address."""
    return {"osc": {"error": [nest({path: [code] for path, code in codes.items()})]}}


def message(body: Mapping[str, Any], xid: Any = None) -> bytes:
    """One datagram (no terminator), ``osc/xid`` reflected when the request had one."""
    if xid is not None:
        body = {**body, "osc": {**(body.get("osc") or {}), "xid": xid}}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Rate:
    """A subscription set's ``#`` parameters as the device applies them. ``max_ms`` 0: on change."""

    min_ms: int
    max_ms: int
    lifetime_s: float

    @classmethod
    def from_hash(cls, params: Mapping[str, Any]) -> Rate:
        def number(key: str, default: float) -> float:
            value: Any = params.get(key)
            usable = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            return float(value) if usable else default

        return cls(int(number("min", 0)), int(number("max", 0)), number("lifetime", LIFETIME_S) or LIFETIME_S)

    def as_hash(self, asked: Mapping[str, Any]) -> dict[str, Any]:
        """The echo: what was asked, with the effective values filled in."""
        return {**asked, "min": self.min_ms, "max": self.max_ms, "lifetime": self.lifetime_s}
