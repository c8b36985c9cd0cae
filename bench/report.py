"""Markdown tables from benchmark results: ``python -m bench.report bench/results/a.json b.json ...``.

A ceiling result contributes each of its runs as a column.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from bench.run import ROWS, _cell


def columns(paths: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in paths:
        document = orjson.loads(path.read_bytes())
        runs = document.get("runs", [document])
        found += [(f"{path.stem}:{run['channels']}" if len(runs) > 1 else path.stem, run) for run in runs]
    return found


def markdown(paths: list[Path]) -> str:
    chosen = columns(paths)
    lines = ["| | " + " | ".join(name for name, _ in chosen) + " |", "|---" * (len(chosen) + 1) + "|"]
    for key, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(_cell(run.get(key)) for _, run in chosen) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown([Path(argument) for argument in sys.argv[1:]]))
