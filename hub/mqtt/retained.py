"""The retained topics an MQTT client keeps set on the broker, kept small, and put back after each connect.

A broker restarted without persistence has lost every retained value; a node of a cluster may never have had
them. So the client remembers each retained topic it set (and each one it cleared while disconnected) and
sends them all again once connected."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from typing import Final

# A Home Assistant config is about 23 KB of repetitive JSON per receiver and compresses twentyfold.
DEFLATE_ABOVE_BYTES: Final = 2048


class Deflated(bytes):
    """A kept retained payload stored zlib-compressed (see :func:`compact`)."""


def compact(payload: bytes) -> bytes:
    """What the client keeps of a retained payload to send again after a reconnect: a copy holding only its
    bytes, since orjson returns its whole output buffer (4-8 KB for a 500-byte channel state), and deflated
    when large. Kept as they came, these were 25 MB of the hub's heap at 1,000 channels (docs/performance.md,
    "Where the memory goes")."""
    if len(payload) > DEFLATE_ABOVE_BYTES:
        return Deflated(zlib.compress(payload, 1))
    return bytes(memoryview(payload))


def expand(kept: bytes) -> bytes:
    """The payload as published, from what :func:`compact` kept."""
    return zlib.decompress(kept) if isinstance(kept, Deflated) else kept


class RetainedTopics:
    """Every retained topic set now, with its payload compacted, and the clears a reconnect still owes."""

    def __init__(self) -> None:
        # topic -> (payload as kept, qos)
        self._kept: dict[str, tuple[bytes, int]] = {}
        # retained topics cleared while disconnected: the broker may still hold their old value
        self._owed_clears: dict[str, int] = {}

    @property
    def kept(self) -> Mapping[str, tuple[bytes, int]]:
        return self._kept

    def keep(self, topic: str, payload: bytes, qos: int) -> None:
        """``topic`` is now set to ``payload`` (an empty payload clears it)."""
        if payload:
            self._kept[topic] = (compact(payload), qos)
            self._owed_clears.pop(topic, None)
        else:
            self._kept.pop(topic, None)

    def forget(self, topic: str) -> None:
        """``topic`` is someone else's now: neither re-sent nor cleared after a reconnect."""
        self._kept.pop(topic, None)
        self._owed_clears.pop(topic, None)

    def owe_clear(self, topic: str, qos: int) -> None:
        """``topic`` was cleared while disconnected: clear it on the broker after the next connect."""
        self._owed_clears[topic] = qos

    def retains(self, topic: str, payload: bytes, qos: int) -> bool:
        """True when ``topic`` is kept set to exactly this payload and QoS."""
        kept = self._kept.get(topic)
        return kept is not None and kept[1] == qos and expand(kept[0]) == payload

    def replay(self) -> Iterator[tuple[str, bytes, int]]:
        """What to publish (retained) after a connect: the owed clears, then every kept topic, one at a time
        (expanded as it goes, never all at once)."""
        owed, self._owed_clears = self._owed_clears, {}
        for topic, qos in owed.items():
            yield topic, b"", qos
        for topic, (payload, qos) in self._kept.items():
            yield topic, expand(payload), qos
