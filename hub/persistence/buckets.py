"""How history stores a block (hub.persistence.history): the bucket format, and the one way two blocks of the
same channel and time are joined. Apart from history so that the database's migrations (hub.persistence.db),
which history imports, can join blocks too.

A bucket is 9 signed bytes: min, avg, max of battery level, RF dBm and audio dBFS in whole units; a missing
value is -128. A block is BUCKETS_PER_BLOCK buckets of one channel at one resolution.
"""

from __future__ import annotations

from array import array
from typing import Final

MISSING: Final = -128
METRICS: Final = ("battery", "rf_dbm", "audio_dbfs")
VALUES_PER_BUCKET: Final = 3 * len(METRICS)
BUCKETS_PER_BLOCK: Final = 60
EMPTY_BUCKET: Final = array("b", [MISSING]) * VALUES_PER_BUCKET
_EMPTY_BUCKET_BYTES: Final = EMPTY_BUCKET.tobytes()


def keep_recorded(stored: object, new: object) -> object:
    """:func:`merged` as the SQL function ``history_keep_recorded``: history merges a block that may be stored
    already into its row (the wall clock set back re-lives stored time), and migration 8 joins two series of one
    channel with it. Never raises (a raise would fail a whole write batch, or the migration): when only one of
    the two is a block, that one."""
    if not isinstance(new, bytes):
        return stored
    if not isinstance(stored, bytes):
        return new
    return merged(stored, new)


def merged(stored: bytes, new: bytes) -> bytes:
    """A block's stored bytes with the buckets they lack taken from ``new``: a bucket recorded first is kept.
    Blocks of two sizes (no block of this format): ``new``."""
    if len(stored) != len(new) or stored == new:
        return new
    if _EMPTY_BUCKET_BYTES not in stored:
        return stored  # every bucket recorded
    size = VALUES_PER_BUCKET
    return b"".join(
        new[at : at + size] if stored[at : at + size] == _EMPTY_BUCKET_BYTES else stored[at : at + size]
        for at in range(0, len(new), size)
    )
