"""Side by side with micboard, in one run on this machine: the only comparison docs/performance.md quotes.

    python -m bench.ab --receivers 250 --rounds 4          # 1,000 channels, four alternating rounds
    python -m bench.ab --receivers 250 --rounds 4 --label before
    python -m bench.ab --receivers 250,500,1000,2000,3000 --rounds 1 --plot docs/ab-sweep.png   # one sweep

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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

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


def new_record(directory: Path, stem: str) -> Path:
    """A new, empty ``<stem>.jsonl`` in ``directory``, numbered ``<stem>-2.jsonl``, ``-3`` ... when an earlier run
    of the same day and label holds the name: a run never overwrites the record of another."""
    path, number = directory / f"{stem}.jsonl", 1
    while True:
        try:
            path.open("x").close()
            return path
        except FileExistsError:
            number += 1
            path = directory / f"{stem}-{number}.jsonl"


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


def run_counts(counts: list[int], rounds: int, window: float, record: TextIO) -> list[dict[str, Any]]:
    """Each count through ab_micboard.py in turn, every line kept; the measurements, each with its count."""
    measurements: list[dict[str, Any]] = []
    for receivers in counts:
        command = [sys.executable, str(SHARED_BENCH / "ab_micboard.py"), "--wmhub", str(ROOT / ".venv")]
        command += ["--receivers", str(receivers), "--rounds", str(rounds), "--window", str(window)]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as run:
            assert run.stdout is not None
            for line in run.stdout:
                print(line, end="", flush=True)
                if line.startswith("{"):
                    measurement = {"receivers": receivers, "channels": receivers * 4, **json.loads(line)}
                    measurements.append(measurement)
                    record.write(json.dumps(measurement) + "\n")
                else:
                    record.write(json.dumps({"receivers": receivers, "summary": line.strip()}) + "\n")
                record.flush()
        if run.returncode:
            raise SystemExit(f"ab_micboard.py failed at {receivers} receivers (exit {run.returncode})")
    return measurements


class Reader:
    """``bench.reader`` as a system ``ab_micboard.measure`` can run: read everything, decode nothing."""

    def __init__(self, receivers: int, imports: bool) -> None:
        self.receivers, self.imports = receivers, imports
        self.name = "read-only, hub's libraries imported" if imports else "read-only"

    def start(self) -> subprocess.Popen[bytes]:
        command = [str(ROOT / ".venv" / "bin" / "python"), "-m", "bench.reader", "--receivers", str(self.receivers)]
        return subprocess.Popen([*command, *(["--imports"] if self.imports else [])], cwd=ROOT, start_new_session=True)

    def lags(self, tick: int) -> list[int]:
        return []  # it keeps no levels: its freshness is not measured


def run_floor(counts: list[int], rounds: int, window: float, record: TextIO) -> list[dict[str, Any]]:
    """The read-only floor on the same fleet, measured the way ab_micboard.py measures micboard and the hub."""
    sys.path.insert(0, str(SHARED_BENCH))
    import ab_micboard

    measurements: list[dict[str, Any]] = []
    for receivers in counts:
        status = Path(tempfile.mkdtemp(prefix="ab-floor-")) / "fleet.json"
        fleet_options = ["--base-address", "127.0.1.1", "--status-file", str(status), "--report-interval", "0.1"]
        fleet = subprocess.Popen(
            [sys.executable, str(SHARED_BENCH / "shure_fleet.py"), "--count", str(receivers), *fleet_options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(3)
            for round_ in range(rounds):
                for system in (Reader(receivers, imports=False), Reader(receivers, imports=True)):
                    result = ab_micboard.measure(system, receivers, status, 10, window)
                    measurement = {"receivers": receivers, "channels": receivers * 4, **result, "round": round_}
                    measurements.append(measurement)
                    print(json.dumps(measurement), flush=True)
                    record.write(json.dumps(measurement) + "\n")
                    record.flush()
        finally:
            fleet.terminate()
            fleet.wait(10)
    return measurements


def current(measurement: dict[str, Any]) -> bool:
    """Every channel seen, none of their levels older than 1 s (10 fleet ticks).

    ab_micboard.py's "fresh" also rejects levels more than 3 ticks *newer* than the tick it read before
    asking: at 12,000 channels the hub's device list is three REST pages, read after that tick."""
    lag = measurement.get("max_lag_ticks")
    return measurement.get("channels_seen") == measurement["channels"] and lag is not None and lag <= 10


def plot_sweep(measurements: list[dict[str, Any]], path: Path, title: str) -> None:
    """CPU per 1,000 channels of both systems against the channel count (the median of a count's rounds)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=120)
    for system, style in (("micboard", "s--"), ("wmhub", "o-")):
        by_count: dict[int, list[float]] = {}
        failed: set[int] = set()
        for measurement in measurements:
            if measurement.get("system") != system:
                continue
            if current(measurement):
                by_count.setdefault(measurement["channels"], []).append(measurement["cpu_per_1000ch"])
            else:  # its CPU measures a system that fell over
                failed.add(measurement["channels"])
        counts = sorted(by_count)
        line = axis.plot(counts, [statistics.median(by_count[count]) for count in counts], style, label=system)
        for count in sorted(failed - set(by_count)):
            axis.axvline(count, color=line[0].get_color(), linewidth=0.8, linestyle=":")
            axis.annotate(
                f"{system}: levels not current",
                (count, 0),
                rotation=90,
                fontsize="x-small",
                xytext=(-10, 10),
                textcoords="offset points",
                color=line[0].get_color(),
            )
    axis.set_xlabel("channels (ULX-D Quads metering every 100 ms)")
    axis.set_ylabel("CPU per 1,000 channels, % of one core")
    axis.set_ylim(bottom=0)
    axis.set_title(title, fontsize="small")
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--receivers", default="250", help="ULX-D Quads (four channels each); several, comma-separated, for a sweep"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--window", type=float, default=40)
    parser.add_argument("--label", default="main")
    parser.add_argument("--plot", type=Path, help="draw both systems' CPU per channel against the count here")
    parser.add_argument(
        "--floor", action="store_true", help="then measure bench.reader (read only) on the same fleet sizes"
    )
    parser.add_argument("--replot", type=Path, help="draw --plot from a results file instead of running")
    args = parser.parse_args()
    if args.replot is not None:
        if args.plot is None:
            parser.error("--replot draws the file --plot names")
        about, *lines = [json.loads(line) for line in args.replot.read_text().splitlines()]
        measurements = [line for line in lines if "system" in line]
        plot_sweep(measurements, args.plot, f"{about['started']}, {about['cpu']}, commit {about['commit']}")
        return
    try:
        counts = [int(count) for count in args.receivers.split(",")]
    except ValueError:
        parser.error(f"--receivers: whole numbers, comma-separated, not {args.receivers!r}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    span = f"c{counts[0] * 4}" if len(counts) == 1 else f"c{counts[0] * 4}-{counts[-1] * 4}"
    out = new_record(RESULTS, f"{started:%Y-%m-%d}-{args.label}-{span}")
    about = {"started": started.isoformat(timespec="seconds"), **machine()}
    with out.open("a") as record:
        record.write(json.dumps(about) + "\n")
        measurements = run_counts(counts, args.rounds, args.window, record)
        if args.floor:
            run_floor(counts, args.rounds, args.window, record)
    print(f"results: {out.relative_to(ROOT)}")
    if args.plot is not None:
        plot_sweep(measurements, args.plot, f"{about['started']}, {about['cpu']}, commit {about['commit']}")
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
