"""Cost of one persistence store tick (alerts, history) with every channel metering.

``python -m bench.store_tick --channels 10000`` builds a state store of N channels on N/4 online receivers
(transmitters on), opens the store on a temporary directory without its ticker, and then, for each tick of
simulated time, changes every channel's rf_dbm, audio_dbfs and audio_peak through ``StateStore.update_channel``
(what 10 Hz metering leaves behind in one 0.5 s tick) and times ``Persistence.step()`` alone. The simulated
clock starts 20 s before an hour, so a run of 70 s or more crosses history's 10 s bucket ends, the ends of
its 10 min and hourly blocks and the 60 s write of open blocks: the slowest ticks are there.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from hub.state import StateStore
from hub.store import SimulatedClock
from hub.store.testing import open_simulated, put_receiver

CHANNELS_PER_DEVICE = 4
TICK_S = 0.5
HOUR_BEFORE_2026 = 1_767_225_600.0


async def run(channels: int, seconds: float, clip_every: int, seed: int) -> dict[str, float]:
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
    keys = [(f"shure-{number}", index) for number in range(devices) for index in range(1, CHANNELS_PER_DEVICE + 1)]
    # start 20 s before an hour: the run crosses 10 s buckets, the 10 min and the hourly block ends
    clock = SimulatedClock(start=HOUR_BEFORE_2026 - 20.0)
    with tempfile.TemporaryDirectory() as directory:
        store = await open_simulated(Path(directory), state, clock)
        try:
            store.step()  # the first tick judges every channel once: not the steady state being measured
            update = state.update_channel
            timings = []
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
                started = time.perf_counter()
                store.step()
                timings.append(time.perf_counter() - started)
                if tick % 20 == 19:
                    await store.db.sync()  # let the writer keep up, outside the timed step
        finally:
            await store.close()
    mean_ms = statistics.fmean(timings) * 1000
    return {
        "ticks": len(timings),
        "mean_ms": mean_ms,
        "p99_ms": sorted(timings)[int(len(timings) * 0.99)] * 1000,
        "max_ms": max(timings) * 1000,
        "us_per_channel": mean_ms * 1000 / len(keys),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=70.0, help="simulated time (0.5 s ticks)")
    parser.add_argument("--clip-every", type=int, default=0, help="a channel clips on one tick in this many (0: never)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(run(args.channels, args.seconds, args.clip_every, args.seed))
    print(
        f"{args.channels} channels, {result['ticks']:.0f} ticks: mean {result['mean_ms']:.2f} ms, "
        f"p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms per tick, "
        f"{result['us_per_channel']:.2f} us per channel"
    )


if __name__ == "__main__":
    main()
