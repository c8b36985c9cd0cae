"""Where the hub's memory goes at a given fleet size: Python heap by source file and live objects by type.

    python -m bench.memory --receivers 250 --out bench/results/memory-c1000.json

Starts a Mosquitto and the shared ULX-D Quad fleet (``../shared/bench/shure_fleet.py``, 4 channels a receiver,
metering every 100 ms), then runs ``wmhub run`` in this process with tracemalloc on. Once every channel has
metered for ``--settle`` seconds it records the process's RSS, the traced Python heap grouped by source file
(top 25) and by package, and the live objects by type (top 25), then stops the hub with SIGTERM as systemd
would. tracemalloc adds its own overhead to RSS: compare the RSS of a plain run (``bench.ab``) with the
traced heap, not the RSS printed here.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.ab import SHARED_BENCH, fleet_addresses
from bench.probes import free_port, memory_mb

TOP = 25
FLEET_ADDRESS = ("--base-address", "127.0.1.1")


def _package(filename: str) -> str:
    """The top-level package a source file belongs to (site-packages/<pkg>/..., or the project's folder)."""
    parts = Path(filename).parts
    for anchor in ("site-packages", "lib-dynload"):
        if anchor in parts:
            return parts[parts.index(anchor) + 1] if parts.index(anchor) + 1 < len(parts) else anchor
    for own in ("hub", "wmhub_shure", "wmhub_sennheiser"):
        if own in parts:
            return own
    return "python stdlib" if "lib" in parts else "other"


def snapshot_report(receivers: int) -> dict[str, Any]:
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    by_file = snapshot.statistics("filename")
    by_package: collections.Counter[str] = collections.Counter()
    for stat in by_file:
        by_package[_package(stat.traceback[0].filename)] += stat.size
    types = collections.Counter(type(item).__name__ for item in gc.get_objects())
    rss, _ = memory_mb(os.getpid())
    return {
        "receivers": receivers,
        "channels": receivers * 4,
        "rss_mb_with_tracemalloc": round(rss, 1),
        "traced_mb": round(sum(stat.size for stat in by_file) / 2**20, 2),
        "by_package_mb": {name: round(size / 2**20, 2) for name, size in by_package.most_common()},
        "top_files_mb": {
            stat.traceback[0].filename.split("site-packages/")[-1]: round(stat.size / 2**20, 2)
            for stat in by_file[:TOP]
        },
        "top_lines_mb": {
            f"{stat.traceback[0].filename.split('site-packages/')[-1]}:{stat.traceback[0].lineno}": round(
                stat.size / 2**20, 2
            )
            for stat in snapshot.statistics("lineno")[:TOP]
        },
        "top_object_types": dict(types.most_common(TOP)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--receivers", type=int, default=250)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds of metering before the snapshot")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wmhub-memory-"))
    mqtt_port, http_port = free_port(), free_port()
    (work / "m.conf").write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\n")
    mosquitto = subprocess.Popen(["mosquitto", "-c", str(work / "m.conf")], stderr=subprocess.DEVNULL)
    fleet = subprocess.Popen(
        [sys.executable, str(SHARED_BENCH / "shure_fleet.py"), "--count", str(args.receivers), *FLEET_ADDRESS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    devices = [f"shure://{address}" for address in fleet_addresses(args.receivers)]
    (work / "wmhub.toml").write_text(
        f'hub_id = "memory"\nmeter_rate_ms = 100\ndevices = {json.dumps(devices)}\n'
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{mqtt_port}"\n[http]\nhost = "127.0.0.1"\nport = {http_port}\n'
    )
    report: dict[str, Any] = {}

    def snapshot_then_stop() -> None:
        report.update(snapshot_report(args.receivers))
        os.kill(os.getpid(), signal.SIGTERM)

    tracemalloc.start(1)
    # the hub owns the event loop of this thread until it stops; the snapshot is taken from a timer thread,
    # as an outside observer would, and ends the run the way systemd does
    timer = threading.Timer(args.settle, snapshot_then_stop)
    timer.start()
    started = time.monotonic()
    try:
        from hub.cli import main as wmhub

        wmhub(["run", "--config", str(work / "wmhub.toml"), "--data-dir", str(work)])
    finally:
        timer.cancel()
        fleet.terminate()
        mosquitto.terminate()
        fleet.wait(10)
        mosquitto.wait(10)
    report["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
