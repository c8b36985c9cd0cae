"""Frequency coordination benchmark (docs/performance.md, "Frequency coordination").

    python -m bench.frequency [--carriers 500] [--repeat 5] [--seed 1]

1. a full check of N carriers with every 3rd-order product (and the 5th), on one core;
2. a re-check after one carrier moved (PlanChecker.update), over 20 random moves;
3. a suggestion for one channel over a 100 MHz band at 25 kHz steps against 200 carriers.

Plans are random on a 25 kHz raster: "dense" fills 470-608 MHz (US TV channels 14-36), "wide" 470-960
MHz. Random plans are far denser in products than coordinated ones, so these are worst cases. Times are
the median CPU time of this process (time.process_time: what one core spent, whatever else the machine
ran) next to the wall-clock time. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hub.frequency.engine import PlanChecker, check
from hub.frequency.plan import Band, Carrier, CarrierState
from hub.frequency.search import suggest
from hub.frequency.settings import PlanSettings

PLANS = {"dense": (470.0, 608.0), "wide": (470.0, 960.0)}


def random_plan(count: int, rng: random.Random, low: float, high: float) -> list[Carrier]:
    steps = rng.sample(range(int((high - low) * 40)), count)
    return [
        Carrier(f"c{n}", low + step / 40, CarrierState.ACTIVE if rng.random() < 0.8 else CarrierState.PLANNED)
        for n, step in enumerate(steps)
    ]


def timed(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """(CPU seconds, wall seconds, result) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def medians(runs: list[tuple[float, float, Any]]) -> dict[str, float]:
    return {
        "cpu_s": round(statistics.median(run[0] for run in runs), 4),
        "wall_s": round(statistics.median(run[1] for run in runs), 4),
        "cpu_max_s": round(max(run[0] for run in runs), 4),
    }


def bench_plan(name: str, count: int, repeat: int, rng: random.Random, settings: PlanSettings) -> dict[str, Any]:
    low, high = PLANS[name]
    plan = random_plan(count, rng, low, high)
    full = [timed(lambda: check(plan, [], settings)) for _ in range(repeat)]
    checker = PlanChecker(settings)
    checker.check(plan, [])
    moves = []
    for _ in range(20):
        at = rng.randrange(len(plan))
        plan[at] = Carrier(plan[at].id, low + rng.randrange(int((high - low) * 40)) / 40, plan[at].state)
        moves.append(timed(lambda: checker.update(plan)))
    return {"findings": len(full[0][2]), "full_check": medians(full), "recheck_one_move": medians(moves)}


def main() -> None:
    parser = argparse.ArgumentParser(description="frequency coordination benchmark")
    parser.add_argument("--carriers", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    settings = PlanSettings()
    result: dict[str, Any] = {"carriers": args.carriers}
    for name in PLANS:
        result[name] = bench_plan(name, args.carriers, args.repeat, rng, settings)
    fixed = random_plan(200, rng, 470.0, 870.0)
    band = Band(520.0, 620.0, 25.0)
    runs = [timed(lambda: suggest(Carrier("x", 570.0), fixed, band, settings, count=1)) for _ in range(args.repeat)]
    result["suggest_100mhz_25khz_vs_200"] = {
        **medians(runs),
        "candidates": 4001,
        "best": [vars(candidate) for candidate in runs[0][2]],
    }
    result["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
