"""The ceiling plot for docs/performance.md: hub CPU and change-to-MQTT p99 against channel count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.run import P99_LIMIT_MS


def plot_ceiling(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    channels = [run["channels"] for run in runs]
    figure, cpu_axis = plt.subplots(figsize=(7, 4), dpi=120)
    cpu_axis.plot(channels, [run["hub_cpu_percent"] for run in runs], "o-", color="tab:blue", label="hub CPU")
    cpu_axis.set_xlabel("channels (metering every 100 ms)")
    cpu_axis.set_ylabel("hub CPU, % of one core", color="tab:blue")
    cpu_axis.set_ylim(bottom=0)
    latency_axis = cpu_axis.twinx()
    p99 = [run["latency_ms_p99"] for run in runs]
    latency_axis.plot(channels, p99, "s--", color="tab:red", label="change -> MQTT p99")
    latency_axis.axhline(P99_LIMIT_MS, color="tab:red", linewidth=0.8, linestyle=":")
    latency_axis.set_ylabel("p99 latency, ms", color="tab:red")
    latency_axis.set_ylim(bottom=0)
    for run in runs:
        if not run["passed"]:
            cpu_axis.annotate(
                "failed",
                (run["channels"], run["hub_cpu_percent"]),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
            )
    figure.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
