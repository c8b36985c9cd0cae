"""The hub hands heap that bursts freed back to the operating system (hub/memory.py)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from hub.memory import HeapTrimmer
from hub.testing import eventually


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError("VmRSS")


def test_heap_freed_by_a_burst_goes_back_to_the_system() -> None:
    trimmer = HeapTrimmer()
    if not trimmer.available:
        pytest.fail("this machine's C library (glibc) has malloc_trim; the hub's RSS figures rely on it")
    # a publishing burst: thousands of encoder buffers, a few of which stay alive and pin the heap's top
    burst = [orjson.dumps({"channel": n, "name": "x" * 600}) for n in range(40_000)]
    survivors = burst[::500]
    del burst
    before = rss_kb()
    trimmer.trim()
    after = rss_kb()
    assert survivors and trimmer.trims == 1
    assert before - after > 40_000, f"RSS {before} kB before the trim, {after} kB after"


async def test_the_trimmer_trims_after_start_and_stops_cleanly() -> None:
    trimmer = HeapTrimmer(first_s=0, every_s=3600)
    trimmer.start()
    await eventually(lambda: trimmer.trims, 5, "the first trim")
    await trimmer.stop()
    assert trimmer.trims == 1
