"""Frequency coordination benchmark (docs/performance.md, "Frequency coordination").

    python -m bench.frequency [--carriers 500] [--repeat 5] [--seed 1]

1. a full check of N carriers with every 3rd-order product (and the 5th), on one core;
2. a re-check after one carrier moved (PlanChecker.update);
3. a suggestion for one channel over a 100 MHz band at 25 kHz steps against 200 carriers.

The plan is random on the 25 kHz raster of 470-608 MHz (US TV channels 14-36): far denser in products
than a coordinated plan, so the numbers are a worst case. Prints one JSON object.
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

import numpy as np

from hub.frequency.engine import PlanChecker, check
from hub.frequency.plan import Band, Carrier, CarrierState
from hub.frequency.search import suggest
from hub.frequency.settings import PlanSettings


def random_plan(count: int, rng: random.Random, low: float = 470.0, high: float = 608.0) -> list[Carrier]:
    steps = rng.sample(range(int((high - low) * 40)), count)
    return [
        Carrier(f"c{n}", low + step / 40, CarrierState.ACTIVE if rng.random() < 0.8 else CarrierState.PLANNED)
        for n, step in enumerate(steps)
    ]


def timed(work: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--carriers", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    settings = PlanSettings()
    plan = random_plan(args.carriers, rng)

    full_s, findings = timed(lambda: check(plan, [], settings), args.repeat)
    checker = PlanChecker(settings)
    checker.check(plan, [])
    moves = []
    for _ in range(args.repeat * 4):
        at = rng.randrange(len(plan))
        plan[at] = Carrier(plan[at].id, 470.0 + rng.randrange(138 * 40) / 40, plan[at].state)
        start = time.perf_counter()
        checker.update(plan)
        moves.append(time.perf_counter() - start)

    fixed = random_plan(200, rng, 470.0, 570.0)
    suggest_s, best = timed(
        lambda: suggest(Carrier("x", 520.0), fixed, Band(470.0, 570.0, 25.0), settings, count=1), args.repeat
    )
    print(
        json.dumps(
            {
                "carriers": args.carriers,
                "findings": len(findings),  # type: ignore[arg-type]
                "full_check_s": round(full_s, 4),
                "recheck_one_change_s_median": round(statistics.median(moves), 4),
                "recheck_one_change_s_max": round(max(moves), 4),
                "suggest_100mhz_25khz_200_carriers_s": round(suggest_s, 4),
                "suggested": [vars(candidate) for candidate in best],  # type: ignore[attr-defined]
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
