"""What the fuzz and fault suites measured, and the renderer of ``docs/reliability.md``.

Each fuzz or fault test appends one JSON line to ``build/reliability/results.jsonl`` (or the file named by
``WMHUB_RELIABILITY_RESULTS``); ``python -m tests.reliability_report`` turns the latest line per case into
the document. Rendering is a separate step so that a partial run (one test file) still updates its rows
and the document is only rewritten when someone asks for it.

    .venv/bin/pytest tests/test_fuzz_*.py tests/test_faults_*.py
    .venv/bin/python -m tests.reliability_report        # writes docs/reliability.md
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("WMHUB_RELIABILITY_RESULTS", ROOT / "build" / "reliability" / "results.jsonl"))
DOC = ROOT / "docs" / "reliability.md"
FUZZ_EXAMPLES = 200


def _append(row: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    row["recorded_at"] = time.time()
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")


def fuzz(
    target: str,
    bad_input: str,
    expected: str,
    /,
    max_examples: int = FUZZ_EXAMPLES,
    shrink: bool = True,
    **strategies: SearchStrategy[Any],
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A hypothesis property test that also records its row: ``target`` got ``bad_input`` and did ``expected``.

    The decorated function takes the drawn values as keyword arguments; its other parameters are pytest
    fixtures, passed through by the test pytest sees. ``shrink=False`` for examples that cost real I/O:
    hypothesis then reports the failing example as found instead of spending minutes minimising it.
    """

    def decorate(check: Callable[..., None]) -> Callable[..., None]:
        examples = 0

        @functools.wraps(check)
        def counted(**arguments: Any) -> None:
            nonlocal examples
            examples += 1
            check(**arguments)

        # no example database: the suite must not leave files in the working tree
        run = settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            phases=None if shrink else [Phase.explicit, Phase.reuse, Phase.generate],
        )(given(**strategies)(counted))

        def test(**fixtures: Any) -> None:
            started = time.monotonic()
            run(**fixtures)
            _append(
                {
                    "kind": "fuzz",
                    "case": f"{target}: {bad_input}",
                    "target": target,
                    "bad_input": bad_input,
                    "expected": expected,
                    "examples": examples,
                    "seconds": round(time.monotonic() - started, 2),
                }
            )

        fixtures = [name for name in inspect.signature(check).parameters if name not in strategies]
        test.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in fixtures]
        )
        test.__name__ = check.__name__
        test.__qualname__ = check.__qualname__
        test.__doc__ = check.__doc__
        return test

    return decorate


@dataclass
class FaultResult:
    """One injected fault: how long until it showed, how long until all was well again, what was lost.

    ``detection_s`` is None where the fault is one the hub should not notice at all (it rides it out);
    ``lost_state``/``lost_control`` count state updates and confirmed commands that never arrived;
    ``lost_meters`` counts dropped meter samples, which the design allows.
    """

    fault: str
    detection_s: float | None = None
    recovery_s: float | None = None
    lost_state: int = 0
    lost_control: int = 0
    lost_meters: int | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> None:
        row = asdict(self)
        row["kind"] = "fault"
        row["case"] = self.fault
        _append(row)


def record_check(area: str, check: str, outcome: str) -> None:
    """A security or behaviour check that is a yes/no outcome rather than a measurement."""
    _append({"kind": "check", "case": f"{area}: {check}", "area": area, "check": check, "outcome": outcome})


def latest_rows(path: Path = RESULTS) -> list[dict[str, Any]]:
    """The last recorded row of every case, in first-seen order."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[(row["kind"], row["case"])] = row
    return list(rows.values())


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(rows: list[dict[str, Any]]) -> str:
    faults = [row for row in rows if row["kind"] == "fault"]
    fuzz_rows = [row for row in rows if row["kind"] == "fuzz"]
    checks = [row for row in rows if row["kind"] == "check"]
    newest = max((row["recorded_at"] for row in rows), default=time.time())
    lines = [
        "# Reliability: faults survived, bad input refused",
        "",
        "<!-- generated by `python -m tests.reliability_report` from the last run of the fuzz and fault",
        "     suites; do not edit by hand -->",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(newest))} on {platform.machine()} "
        f"({os.cpu_count()} CPUs), Python {sys.version.split()[0]}.",
        "",
        "How to reproduce:",
        "",
        "```sh",
        ".venv/bin/pytest tests/test_fuzz_*.py tests/test_faults_*.py",
        ".venv/bin/python -m tests.reliability_report",
        "```",
        "",
        "## Faults",
        "",
        "Detection: seconds from the fault until the hub shows it (device or hub offline). Recovery: seconds",
        "from the end of the fault until the device is online with its state correct again. Lost state /",
        "control: state changes or confirmed commands that never reached MQTT / the device; these must be 0.",
        "Lost meters: meter samples dropped, which the design allows. — means not applicable.",
        "",
        "| Fault | Detection (s) | Recovery (s) | Lost state | Lost control | Lost meters | Notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in faults:
        meters = "—" if row.get("lost_meters") is None else row["lost_meters"]
        lines.append(
            f"| {_cell(row['fault'])} | {_seconds(row.get('detection_s'))} | {_seconds(row.get('recovery_s'))} "
            f"| {row['lost_state']} | {row['lost_control']} | {meters} | {_cell(row.get('notes', ''))} |"
        )
    lines += [
        "",
        "## Bad input (property-based fuzzing with hypothesis)",
        "",
        "Each row is one property test: the examples hypothesis generated, and what held for every one.",
        "",
        "| Target | Bad input | Holds for every example | Examples | Time (s) |",
        "|---|---|---|---|---|",
    ]
    for row in fuzz_rows:
        lines.append(
            f"| {_cell(row['target'])} | {_cell(row['bad_input'])} | {_cell(row['expected'])} "
            f"| {row['examples']} | {row['seconds']:.2f} |"
        )
    if checks:
        lines += ["", "## Security and behaviour checks", "", "| Area | Check | Outcome |", "|---|---|---|"]
        for row in checks:
            lines.append(f"| {_cell(row['area'])} | {_cell(row['check'])} | {_cell(row['outcome'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    rows = latest_rows()
    if not rows:
        raise SystemExit(f"no results in {RESULTS}: run the fuzz and fault suites first")
    DOC.write_text(render(rows), encoding="utf-8")
    print(f"wrote {DOC} ({len(rows)} cases)")


if __name__ == "__main__":
    main()
