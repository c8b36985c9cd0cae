"""Side by side with micboard, in one run on this machine: the only comparison docs/performance.md quotes.

    python -m bench.ab --receivers 250 --rounds 4          # 1,000 channels, four alternating rounds
    python -m bench.ab --receivers 250 --rounds 4 --label before

Runs ``../shared/bench/ab_micboard.py`` (micboard's backend from ``../shared/anchors/micboard`` and this
checkout's hub against one simulated ULX-D Quad fleet, alternating which goes first each round) with this
checkout's ``.venv``, and keeps what it printed under ``bench/results/ab/<date>-<label>-c<channels>.jsonl``:
a first line naming the machine, the commit and the load before the run, one line per measurement, and the
summary with the ratio of the hub's CPU per 1,000 channels to micboard's. The ratio is the figure to track;
absolute percentages move with the machine and whatever else it is doing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED_BENCH = ROOT.parent / "shared" / "bench"
RESULTS = ROOT / "bench" / "results" / "ab"


def fleet_addresses(count: int) -> list[str]:
    """The shared fleet's receiver addresses: 127.0.1.1 upward, skipping .0 and .255 (shure_fleet.py)."""
    addresses: list[str] = []
    number = (127 << 24) + (1 << 8) + 1
    while len(addresses) < count:
        if number & 0xFF not in (0, 255):
            addresses.append(".".join(str((number >> shift) & 0xFF) for shift in (24, 16, 8, 0)))
        number += 1
    return addresses


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "machine": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit.stdout.strip() or None,
        "load_average_before": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--receivers", type=int, default=250, help="ULX-D Quads: four channels each")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--window", type=float, default=40)
    parser.add_argument("--label", default="main")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    out = RESULTS / f"{started:%Y-%m-%d}-{args.label}-c{args.receivers * 4}.jsonl"
    command = [sys.executable, str(SHARED_BENCH / "ab_micboard.py"), "--wmhub", str(ROOT / ".venv")]
    command += ["--receivers", str(args.receivers), "--rounds", str(args.rounds), "--window", str(args.window)]
    with out.open("w") as record:
        record.write(json.dumps({"started": started.isoformat(timespec="seconds"), **machine()}) + "\n")
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as run:
            assert run.stdout is not None
            for line in run.stdout:
                print(line, end="", flush=True)
                record.write(line if line.startswith("{") else json.dumps({"summary": line.strip()}) + "\n")
        if run.returncode:
            raise SystemExit(f"ab_micboard.py failed (exit {run.returncode}); partial results in {out}")
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
