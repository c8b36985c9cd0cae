"""The per-sample benchmark runs the path it names: reads held by the drivers, merged at each look."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_instruction_count_mode_feeds_samples_and_merges_only_the_newest() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.sample_path", "--receivers", "6", "--ticks", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[0] == "samples" and words[2] == "merged"
    fed, merged = int(words[1]), int(words[3])
    # ten ticks are two looks: each merges at most one sample per channel of the five it held
    assert 0 < merged <= fed * 2 / 10
