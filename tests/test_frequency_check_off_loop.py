"""A live frequency check of seconds runs beside the hub, not in its place: an outside audit (250 receivers,
1,000 channels) found /api/health and /metrics silent for 9-36 s while the check ran on the event loop, so
monitoring marked the hub down exactly while it was busy with its own work. Here ``wmhub run`` checks a crowded
plan of declared carriers (seconds per full check on this machine) while a monitor probes it, and is stopped
in the middle of such a check."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from hub.frequency import Carrier, CarrierState, PlanSettings, check
from tests.test_faults_startup import EXIT_DEADLINE_S, RunningHub, running_hub

TOKEN: Final = "freq-check-token-0123456789"
# Carriers on four frequencies 25 kHz apart: every carrier takes part in products on every other, the worst
# case of the engine. 160 of them take about 2 s per full check here (the test machine, loaded), 200 about 3.5 s.
CROWDED_MHZ: Final = (470.0, 470.025, 470.05, 470.075)
PROBE_TIMEOUT_S: Final = 30.0  # a silent hub is measured, not given up on
ANSWER_WITHIN_S: Final = 1.0  # what a monitor probing every few seconds may wait


def crowded_carriers(count: int) -> list[tuple[int, str, float]]:
    return [(number, f"crowded {number}", CROWDED_MHZ[number % len(CROWDED_MHZ)]) for number in range(1, count + 1)]


@contextmanager
def hub_with_declared_carriers(data_dir: Path, count: int) -> Iterator[RunningHub]:
    """``wmhub run`` whose database holds ``count`` crowded declared carriers, one more than its live check takes
    on: it starts with no check ("checked": false), and removing one carrier starts a full check."""
    env = {"WMHUB_HTTP__TOKEN": TOKEN, "WMHUB_FREQUENCY__MAX_LIVE_CARRIERS": str(count - 1)}
    with running_hub(data_dir, env=env) as first:  # makes the database
        first.stop()
    # closed before the hub opens it: a connection left open (sqlite3's `with` only commits) made the hub's
    # exclusive open find the database locked now and then, and run degraded
    with contextlib.closing(sqlite3.connect(data_dir / "wmhub.sqlite3")) as database, database:
        database.executemany(
            "INSERT INTO declared_carriers (id, label, frequency_mhz) VALUES (?, ?, ?)", crowded_carriers(count)
        )
    with running_hub(data_dir, env=env) as hub:
        deadline = time.monotonic() + EXIT_DEADLINE_S
        while len(plan_of(hub)["carriers"]) != count:  # the first refresh: too many to check
            assert time.monotonic() < deadline, "the plan never took the declared carriers in"
            time.sleep(0.1)
        assert plan_of(hub)["checked"] is False
        yield hub


def plan_of(hub: RunningHub) -> dict[str, Any]:
    status, body = hub.request(
        urllib.request.Request(f"http://127.0.0.1:{hub.port}/api/v1/frequency-plan"), timeout=PROBE_TIMEOUT_S
    )
    assert status == 200, body
    plan: dict[str, Any] = json.loads(body)
    return plan


def remove_declared_carrier(hub: RunningHub, number: int) -> None:
    """What starts the check: the plan comes back under frequency.max_live_carriers."""
    url = f"http://127.0.0.1:{hub.port}/api/v1/frequency-plan/carriers/{number}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"}, method="DELETE")
    assert hub.request(request)[0] == 204


@dataclass
class HealthMonitor:
    """A monitor that probes /api/health back to back on its own thread: the slowest answer it waited for."""

    hub: RunningHub
    slowest_s: float = 0.0
    probes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        url = f"http://127.0.0.1:{self.hub.port}/api/health"
        while not self._stop.is_set():
            started = time.monotonic()
            status, _ = self.hub.request(urllib.request.Request(url), timeout=PROBE_TIMEOUT_S)
            assert status == 200
            self.slowest_s = max(self.slowest_s, time.monotonic() - started)
            self.probes += 1
            self._stop.wait(0.05)  # a pace, not a wait for anything

    @contextmanager
    def probing(self) -> Iterator[HealthMonitor]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(PROBE_TIMEOUT_S)


def finding_keys(findings: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {(f["victim"], f["product"], f["severity"], f["count"]) for f in findings}


def test_health_answers_at_once_all_through_a_check_of_seconds_and_the_check_finds_what_it_did(
    tmp_path: Path,
) -> None:
    count = 160
    with hub_with_declared_carriers(tmp_path / "data", count) as hub, HealthMonitor(hub).probing() as monitor:
        remove_declared_carrier(hub, count)
        answers: list[tuple[float, dict[str, Any]]] = []
        deadline = time.monotonic() + 120
        while not answers or not answers[-1][1]["checked"]:
            assert time.monotonic() < deadline, "the check never ended"
            started = time.monotonic()
            plan = plan_of(hub)
            answers.append((time.monotonic() - started, plan))
        probes_during_the_check = monitor.probes
    # the plan answered at once all through, with the last result while the check ran
    slowest_plan_s = max(took for took, _ in answers)
    assert slowest_plan_s < ANSWER_WITHIN_S, f"GET /api/v1/frequency-plan took {slowest_plan_s:.1f} s"
    running = [plan for _, plan in answers if plan["checking"]]
    assert running, "no answer said a check was running"
    assert all(plan["checked"] is False and len(plan["carriers"]) == count for plan in running)
    assert monitor.slowest_s < ANSWER_WITHIN_S, f"/api/health took {monitor.slowest_s:.1f} s during the check"
    assert probes_during_the_check >= 3, "the monitor probed the hub while it checked"
    # the check itself is whole: the findings of these carriers, as the engine finds them on its own
    done = answers[-1][1]
    assert done["checking"] is False and len(done["carriers"]) == count - 1
    expected = check(
        [
            Carrier(id=f"declared:{number}", frequency_mhz=mhz, state=CarrierState.ACTIVE, label=label)
            for number, label, mhz in crowded_carriers(count - 1)
        ],
        [],
        PlanSettings(),
    )
    assert expected and done["alerts"] == len(expected) and done["warnings"] == 0
    assert finding_keys(done["findings"]) == {(f.victim, f.product.value, f.severity, f.count) for f in expected}


def test_the_hub_stops_at_once_in_the_middle_of_a_check_of_seconds(tmp_path: Path) -> None:
    # A full check of several seconds here, in steps of well under a second (hub.frequency.engine ROWS_PER_STEP):
    # the stop waits for the step running (an idle hub stops in a few hundredths of a second), not for the check
    count = 300
    with hub_with_declared_carriers(tmp_path / "data", count) as hub:
        remove_declared_carrier(hub, count)
        deadline = time.monotonic() + EXIT_DEADLINE_S
        while not plan_of(hub).get("checking"):
            assert time.monotonic() < deadline, "no check started"
        started = time.monotonic()
        stderr = hub.stop()
        took = time.monotonic() - started
        assert hub.process.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
    assert took < 5.0, f"the stop waited {took:.1f} s for the check"
