"""The ceiling plot for docs/performance.md: hub CPU and change-to-MQTT p99 against channel count.

``python -m bench.plot docs/performance.png bench/results/ceiling-a.json bench/results/ceiling-b.json`` draws
one pair of lines per saved ceiling run (e.g. one hub process and two), labelled by their hub count.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from bench.run import P99_LIMIT_MS

Series = tuple[str, list[dict[str, Any]]]


def label(runs: list[dict[str, Any]]) -> str:
    hubs = runs[0].get("hubs", 1) if runs else 1
    return "1 hub process" if hubs == 1 else f"{hubs} hub processes"


def plot_ceiling(series: list[Series], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    figure, cpu_axis = plt.subplots(figsize=(7, 4), dpi=120)
    latency_axis = cpu_axis.twinx()
    markers = "os^v"
    for number, (name, runs) in enumerate(series):
        channels = [run["channels"] for run in runs]
        marker = markers[number % len(markers)]
        cpu = [run["hub_cpu_percent"] for run in runs]
        cpu_axis.plot(channels, cpu, f"{marker}-", color="tab:blue", label=f"hub CPU, {name}")
        p99 = [run["latency_ms_p99"] for run in runs]
        latency_axis.plot(channels, p99, f"{marker}--", color="tab:red", label=f"change -> MQTT p99, {name}")
        for run in runs:
            if not run["passed"]:
                latency_axis.annotate(
                    "failed",
                    (run["channels"], run["latency_ms_p99"]),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                )
    cpu_axis.set_xlabel("channels (metering every 100 ms)")
    cpu_axis.set_ylabel("hub CPU (all hub processes), % of one core", color="tab:blue")
    cpu_axis.set_ylim(bottom=0)
    latency_axis.axhline(P99_LIMIT_MS, color="tab:red", linewidth=0.8, linestyle=":")
    latency_axis.set_ylabel("p99 latency, ms", color="tab:red")
    highest = max((run["latency_ms_p99"] or 0 for _, runs in series for run in runs), default=0)
    latency_axis.set_ylim(bottom=0, top=max(highest, P99_LIMIT_MS) * 1.15)  # room for the "failed" labels
    figure.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88), fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m bench.plot OUTPUT.png CEILING.json [CEILING.json ...]")
    output, *documents = argv
    series = []
    for document in documents:
        runs = orjson.loads(Path(document).read_bytes())["runs"]
        series.append((label(runs), runs))
    plot_ceiling(series, Path(output))


if __name__ == "__main__":
    main(sys.argv[1:])
