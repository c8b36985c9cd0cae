"""Giving freed heap back to the operating system.

When receivers connect, the hub publishes every retained topic and Home Assistant config at once, and the
C allocator (glibc) keeps the memory those bursts freed: at 1,000 channels about 30 MB of the hub's RSS was
heap nobody used (docs/performance.md, "Where the memory goes"). glibc returns it only when asked, with
``malloc_trim``. The hub asks 5 s after start, when the first connection burst is over, and then every
30 s, so a later burst (a rack power-cycled, a broker reconnect) does not stay in the RSS either. A call
that returns tens of megabytes takes a few milliseconds of the event loop (measured: 39 ms to return
150 MB), one with little to return about a millisecond. Where the C library has no ``malloc_trim`` (musl,
macOS) this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from hub.background import BackgroundLoop

log = logging.getLogger("hub")

FIRST_TRIM_S = 5.0
TRIM_EVERY_S = 30.0


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class HeapTrimmer(BackgroundLoop):
    """``start()`` from inside the loop, ``await stop()``; ``trims`` counts the calls made."""

    name = "heap trimmer"

    def __init__(self, first_s: float = FIRST_TRIM_S, every_s: float = TRIM_EVERY_S) -> None:
        super().__init__()
        self.first_s = first_s
        self.every_s = every_s
        self.trims = 0
        self._malloc_trim = _find_malloc_trim()

    @property
    def available(self) -> bool:
        return self._malloc_trim is not None

    def _should_run(self) -> bool:
        return self.available

    def trim(self) -> None:
        if self._malloc_trim is not None:
            self._malloc_trim(0)
            self.trims += 1

    async def _run(self) -> None:
        await asyncio.sleep(self.first_s)
        while True:
            self.trim()
            await asyncio.sleep(self.every_s)
