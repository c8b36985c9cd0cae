"""Capped exponential backoff with jitter, shared by every reconnect loop in the hub and its plugins."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# One generator for every backoff: a Random of its own per receiver costs 2.5 KB each for no better jitter.
_JITTER = random.Random()  # nosec B311 # reconnect jitter, not a secret


@dataclass
class Backoff:
    """Delay before the next attempt: base * 2**failures, capped, then scaled by a random factor.

    The jitter (a factor between ``1 - jitter`` and 1) spreads out a whole venue of receivers that lost
    the network at the same moment, so they do not all reconnect in lockstep.
    """

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.5
    failures: int = 0
    _random: random.Random = field(default=_JITTER, repr=False)

    def next_delay(self) -> float:
        delay: float = min(self.cap, self.base * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return delay * (1.0 - self.jitter * self._random.random())

    def reset(self) -> None:
        self.failures = 0
