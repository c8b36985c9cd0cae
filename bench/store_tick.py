"""Cost of one persistence store tick (alerts, history) with every channel metering.

``python -m bench.store_tick --channels 10000`` builds a state store of N channels on N/4 online receivers
(transmitters on), opens the store on a temporary directory without its ticker, and then, for each tick of
simulated time, changes every channel's rf_dbm, audio_dbfs and audio_peak through ``StateStore.update_channel``
(what 10 Hz metering leaves behind in one 0.5 s tick) and times the tick alone, run the way the store's
ticker runs it: ``Persistence.tick(slice_s)``, each slice (the work between two yields, when the event loop
would run) timed on its own. It reports the whole tick (the sum of its slices: CPU) and the longest slice
(how long the event loop waits at most), with and without the garbage collector's pauses that fell in it:
a full collection scans every container in the process, so it lands in whichever code allocates at the
time, and at 10,000 channels it costs more than any slice of the tick itself. ``--slice-ms inf`` runs each
tick in one slice, as ``step()`` does.
A health source reports every receiver connected. The simulated clock starts 20 s before an hour, so a run
of 70 s or more crosses history's 10 s bucket ends, the ends of its 10 min and hourly blocks and the 60 s
write of open blocks: the slowest ticks are there.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.persistence import SimulatedClock
from hub.persistence.services import StoreSettings
from hub.persistence.testing import open_simulated, put_receiver
from hub.state import StateStore

CHANNELS_PER_DEVICE = 4
TICK_S = 0.5
HOUR_BEFORE_2026 = 1_767_225_600.0


class CollectorPauses:
    """Seconds the garbage collector has paused the process so far, and each full collection's pause."""

    def __init__(self) -> None:
        self.total = 0.0
        self.full: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.total += pause
        if info["generation"] == 2:
            self.full.append(pause)


def timed_slices(ticker: Iterator[None], collector: CollectorPauses) -> list[tuple[float, float]]:
    """Run one tick to its end; (seconds, of which the garbage collector's) of each slice."""
    slices = []
    while True:
        collected = collector.total
        started = time.perf_counter()
        finished = next(ticker, StopIteration) is StopIteration
        slices.append((time.perf_counter() - started, collector.total - collected))
        if finished:
            return slices


async def run(channels: int, seconds: float, clip_every: int, seed: int, slice_s: float) -> dict[str, float]:
    rng = random.Random(seed)
    state = StateStore()
    devices = max(1, channels // CHANNELS_PER_DEVICE)
    for number in range(devices):
        put_receiver(
            state,
            f"shure-{number}",
            channels=CHANNELS_PER_DEVICE,
            battery_bars=4,
            rf_quality_percent=90,
            rf_dbm=-55.0,
            audio_dbfs=-30.0,
            audio_peak=False,
        )
    health: list[dict[str, Any]] = [
        {"url": f"tcp://127.0.0.1:{10_000 + number}", "device_id": f"shure-{number}", "connected": True}
        for number in range(devices)
    ]
    keys = [(f"shure-{number}", index) for number in range(devices) for index in range(1, CHANNELS_PER_DEVICE + 1)]
    # start 20 s before an hour: the run crosses 10 s buckets, the 10 min and the hourly block ends
    clock = SimulatedClock(start=HOUR_BEFORE_2026 - 20.0)
    with tempfile.TemporaryDirectory() as directory:
        store = await open_simulated(Path(directory), state, clock)
        store.health_source = lambda: health
        collector = CollectorPauses()
        gc.callbacks.append(collector)
        try:
            store.step()  # the first tick judges every channel once: not the steady state being measured
            update = state.update_channel
            timings, longest, longest_own, counts = [], [], [], []
            for tick in range(round(seconds / TICK_S)):
                for number, (device_id, index) in enumerate(keys):
                    update(
                        device_id,
                        index,
                        {
                            "rf_dbm": -50.0 - rng.random() * 20.0,
                            "audio_dbfs": -40.0 + rng.random() * 30.0,
                            "audio_peak": clip_every > 0 and (number + tick) % clip_every == 0,
                        },
                    )
                clock.advance(TICK_S)
                slices = timed_slices(store.tick(slice_s), collector)
                timings.append(sum(seconds for seconds, _ in slices))
                longest.append(max(seconds for seconds, _ in slices))
                longest_own.append(max(seconds - collecting for seconds, collecting in slices))
                counts.append(len(slices))
                if tick % 20 == 19:
                    await store.db.sync()  # let the writer keep up, outside the timed step
        finally:
            gc.callbacks.remove(collector)
            await store.close()
    mean_ms = statistics.fmean(timings) * 1000
    return {
        "ticks": len(timings),
        "mean_ms": mean_ms,
        "p99_ms": sorted(timings)[int(len(timings) * 0.99)] * 1000,
        "max_ms": max(timings) * 1000,
        "us_per_channel": mean_ms * 1000 / len(keys),
        "slice_p99_ms": sorted(longest)[int(len(longest) * 0.99)] * 1000,
        "slice_max_ms": max(longest) * 1000,
        "own_slice_p99_ms": sorted(longest_own)[int(len(longest_own) * 0.99)] * 1000,
        "own_slice_max_ms": max(longest_own) * 1000,
        "full_collections": len(collector.full),
        "full_collection_max_ms": max(collector.full, default=0.0) * 1000,
        "slices_mean": statistics.fmean(counts),
        "slices_max": max(counts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=70.0, help="simulated time (0.5 s ticks)")
    parser.add_argument("--clip-every", type=int, default=0, help="a channel clips on one tick in this many (0: never)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--slice-ms", type=float, default=StoreSettings().slice_s * 1000, help="the ticker's slice (inf: one slice)"
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.channels, args.seconds, args.clip_every, args.seed, args.slice_ms / 1000))
    print(
        f"{args.channels} channels, {result['ticks']:.0f} ticks: mean {result['mean_ms']:.2f} ms, "
        f"p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms per tick, "
        f"{result['us_per_channel']:.2f} us per channel; longest slice p99 {result['slice_p99_ms']:.2f} ms, "
        f"max {result['slice_max_ms']:.2f} ms ({args.slice_ms:g} ms slices, {result['slices_mean']:.1f} "
        f"per tick on average, up to {result['slices_max']}); without the garbage collector's pauses in it "
        f"p99 {result['own_slice_p99_ms']:.2f} ms, max {result['own_slice_max_ms']:.2f} ms; "
        f"{result['full_collections']:.0f} full collections, the longest {result['full_collection_max_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
