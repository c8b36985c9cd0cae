"""What the fuzz and fault suites measured, and the renderer of ``docs/reliability.md``.

Each fuzz or fault test appends one JSON line to ``build/reliability/results.jsonl`` (or the file named by
``RELIABILITY_RESULTS``); the document is rendered from those lines:

    .venv/bin/python -m tests.reliability_report                 # run both suites afresh, then write the doc
    .venv/bin/python -m tests.reliability_report --render-only   # write it from the results already there
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("RELIABILITY_RESULTS", ROOT / "build" / "reliability" / "results.jsonl"))
DOC = ROOT / "docs" / "reliability.md"
FUZZ_EXAMPLES = 200
SUITES = ("test_fuzz_*.py", "test_faults_*.py")


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
            phases=tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate),
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
        ".venv/bin/python -m tests.reliability_report   # runs tests/test_fuzz_*.py and tests/test_faults_*.py",
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
    lines += ["", *HOW_IT_WORKS]
    return "\n".join(lines) + "\n"


HOW_IT_WORKS = """## How the suites work

- `tests/faultproxy.py`: an asyncio TCP/UDP proxy on 127.0.0.1 between the hub and a simulator. It adds
  latency (`delay_s`, in order, without throttling), drops datagrams (`loss_rate`), flips bytes
  (`corrupt_rate`), resets every connection (`cut()`), refuses new ones (`refuse`) and blackholes traffic
  while keeping sockets open (`blackhole()`, a half-open path; `heal()` lets new connections through).
- `tests/fault_harness.py`: a whole hub in-process (MQTT to a real Mosquitto, HTTP on a free port) with
  `offline_after_s = 1.5` and `io_timeout_s = 1.0`, so faults show within seconds; detection times scale
  with `offline_after_s` (default 10 s) for faults only silence reveals (half-open, a powered-off device).
- Sennheiser receiver faults replay public transcripts (`plugins/sennheiser/tests/transcripts/`) instead of a
  simulator: the fake device answers only what the transcript holds, so the hub meets replies its own
  simulators would never send (silence on optional queries, devices that are no receivers, late replies).
- Device faults use the simulators' own fault modes (Shure: stop/start, `drop_clients`, name changed at
  the front panel; Sennheiser: transmitter switched off) through the proxy; hub faults restart Mosquitto,
  start the hub before any broker exists, and run `wmhub run` as a child process for SIGTERM, SIGHUP and
  SIGKILL.
- Reconnect timing (`hub/supervisor.py`, `hub/backoff.py`): after a device's connection fails the hub waits
  0.5 s, then 1, 2, 4, 8, 16 and at most 30 s before each new attempt, each cut by a random factor of up to a
  half (so a venue's receivers do not all retry at once). A connection that lasted 30 s (`STAYED_UP_S`) starts
  the sequence over; one that drops sooner does not. So a flapping receiver (a loose cable, a reboot loop, a
  device that accepts and then fails) is retried only every 15-30 s after about seven short connections in
  a row: once it is steady again, it may take up to 30 s to come back, and its next drop is retried within a
  second only after it has stayed up 30 s. A receiver that was up and drops once (a reboot) is retried after
  0.25-0.5 s, as the rows above show.
- Lost state: state changes made during or after a fault that the hub (store, MQTT) did not show once it
  recovered. Lost control: commands sent after recovery (REST or MQTT) that were not both confirmed and
  applied by the simulator. Commands sent while a device is offline are refused at once with
  `unavailable`, never queued or silently dropped.
- Fuzz tests are hypothesis properties (`tests/test_fuzz_*.py`, 200 examples each unless the row says
  otherwise, no example database, deterministic enough for CI). The edge tests drive a real hub over real
  sockets; generated URLs never name a host other than 127.0.0.1.

## Found by these suites, and fixed

- Shure SET encoder: a gain or frequency of NaN or infinity (Python's JSON accepts both) raised
  OverflowError/ValueError instead of InvalidValueError.
- SSCv1 decoder: one datagram of nested brackets raised RecursionError past SscDecodeError.
- SSCv2 resource map: NaN, infinity or integers beyond a float, and a non-list `warnings`, raised inside
  the event handler, which dropped the device's event stream.
- Config: clashing environment variables (`WMHUB_MQTT` and `WMHUB_MQTT__URL`) raised TypeError instead of
  ConfigError.
- SSCv1 driver at 30 % loss: a subscription notification still holding the old value was taken for the
  reply to a SET whose datagram was lost, reporting a refusal that never happened.
- MQTT bridge: at a clean stop the devices' `offline` availability was still coalescing and was lost about
  half the time, leaving retained `online` behind.
- Hub info topic: an MQTT password containing `@` was partly shown.
- A hub with no configured API token did not start on a read-only data dir (EROFS storing the token).
- REST channels did not say their receiver was offline; they carry `device_online` now.
- Shure: an impossible reading (battery 250 %, 7 bars, AD quality -1) reached the model out of range, and
  one such value made `/api/v1/devices` and `/api/v1/channels` answer 500 for the whole venue; it now
  decodes as unknown. SSCv2: a non-string name did the same.
- Shure framer: junk opened with a `<` it never closed swallowed the real message after it.
- Shure, from the conformance corpus (plugins/shure/tests/transcripts): an ERR to the untracked GET 0 ALL was
  charged to the next request (SET METER_RATE) and connect failed; a receiver refusing SET 0 METER_RATE was
  never monitored; a receiver silent on GET MODEL was never monitored; a late GET 0 ALL burst's
  `METER_RATE 00000` confirmed a newer SET; an unknown model (MXWAPT8) was taken for a ULX-D.
- Sennheiser G3/G4 (MCP): a receiver that did not answer an optional query (`RfConfig`, `FirmwareRevision`)
  was never monitored (the timeout failed the connection, retried forever, logged as a bare
  `TimeoutError`); both are now asked together, silence counts as "not supported", a late answer is still
  taken, and every timeout names the query and the receiver.
- Sennheiser SSCv2: a device without a schema that lacks one documented resource (a TCC M has no
  transmitters) was never monitored: the one unknown path made the device refuse the whole subscription.
- There was no limit on control commands: a per-device rate limit (`control_rate_per_s`, default 10 a
  second with a one-second burst) now refuses a flood with `rate_limited` (REST 429) before it reaches
  the receiver.
- MQTT: anyone who could publish to the broker could add and remove devices (and so make the hub probe
  any host and port); admin requests are now off unless `mqtt.admin`, and the shipped Mosquitto
  configuration lets only the hub's and Home Assistant's logins publish. `mqtt.require_token` sent the
  REST write token in clear inside payloads every `#` subscriber reads; it is gone.
- MQTT `set`: `"muted": "yes"`, `"on"`, `"1"`, `0` and `1.0` were carried out as booleans; a 5 MB name
  was parsed, logged whole and echoed whole on `response/set`.
- Device sink: `update_channel(1, {"rf_dbm": "strong", ...})` from a plugin was stored and made REST
  answer 500 for every device; `update_channel(0, ...)` or an unknown field raised into the driver and
  reconnected it forever; a 100,000-character name with escape sequences was stored and printed by
  `wmhub devices`.
- Plugin API: `apply_command` returning `None`, `"yes"` or an awaitable of 42 was answered as "does not
  implement controls"; an `async def register_drivers` registered nothing without a word.
- `wmhub run` with a device URL of an unknown scheme or no host, a busy or unresolvable HTTP address, an
  MQTT URL with a bad port or bracket, a data dir that is a file or a missing `mqtt.ca_file` printed a
  traceback and hung, ignoring SIGTERM (the database's writer thread outlived the failed start); a
  mistyped MQTT URL was echoed with its password.
- A device added at run time with a password in its URL showed it in alerts (REST, MQTT, board), the
  audit log and the database; a closed port and a silent one read differently in `/api/health`.
- hub.redact (its own fuzz test): a secret option inside another option's value
  (`url=shure://h?api_key=...`) was taken for part of that value and left unmasked.
- HTTP: connections that sent half a request stayed open for good; any Host header was served; the board
  could be framed; a NUL in an extended name or `by`, and alert id 2**63, answered 500.

## Not covered, and why

- A data dir turning read-only under a running hub: Linux refuses to remount a filesystem read-only while
  files on it are open for writing, so the read-only case is the start-time one; disk full covers writes
  failing mid-run. Both need root for the tmpfs; without it only the read-only start runs (directory mode).
- Sennheiser EW-DX frequencies are checked against the family's whole range (470-1075 MHz): the hub does
  not know a receiver's band variant, so a frequency outside it is refused by the receiver (406, shown as
  `refused`) rather than by the hub.
- MQTT `set` on a device the hub does not know gets no response: the hub subscribes to the control topics
  of its own devices only.
- Meter loss is counted as datagrams the proxy dropped, not per meter field: meters are allowed to drop.
- atheris (coverage-guided fuzzing) is not used: hypothesis reaches every parser path listed here in
  seconds, and atheris would add a native dependency CI does not have.
- Real network equipment (switch reboots, multicast storms, Wi-Fi) is modelled only by the proxy.
""".splitlines()


def run_suites() -> int:
    """Run the fuzz and fault suites against a fresh results file; pytest's exit status."""
    RESULTS.unlink(missing_ok=True)
    suites = sorted(str(path.relative_to(ROOT)) for pattern in SUITES for path in (ROOT / "tests").glob(pattern))
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites], cwd=ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability_report", description=__doc__)
    parser.add_argument("--render-only", action="store_true", help="write the document from the last results")
    args = parser.parse_args(argv)
    status = 0 if args.render_only else run_suites()
    rows = latest_rows()
    if not rows:
        print(f"no results in {RESULTS}: run the fuzz and fault suites first", file=sys.stderr)
        return 1
    DOC.write_text(render(rows), encoding="utf-8")
    print(f"wrote {DOC} ({len(rows)} cases)" + ("" if status == 0 else f"; the suites failed (status {status})"))
    return status


if __name__ == "__main__":
    sys.exit(main())
