"""The database's files damaged, deleted or stalled under a running hub (docs/persistence.md, "When the disk
fails"): the hub keeps monitoring, says so, answers every request promptly and loses nothing it can still
read. The hub runs as ``wmhub run`` on a real data dir where the damage is done to files; a stalled disk
(fsfreeze, a hung NAS) needs root, so there the hub runs in-process and a statement that does not return
holds the database's one thread as a stuck commit does."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hub.testing import eventually
from tests.fault_harness import Api, hub_config, running_hub
from tests.test_faults_startup import RunningHub
from tests.test_faults_startup import running_hub as wmhub_process

DATABASE = "wmhub.sqlite3"
# a commit stuck this long is a stalled disk to the user: health says so (the hub's bound is 3 s)
STALL_SAID_WITHIN_S = 5.0


def names(hub: RunningHub, path: str) -> list[str]:
    status, body = hub.get(path)
    assert status == 200, body
    return [item["name"] for item in json.loads(body)["items"]]


def create(hub: RunningHub, path: str, body: dict[str, str], token: str) -> int:
    return hub.post(path, json.dumps(body), token)[0]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_truncated_wal_index_does_not_kill_the_hub(tmp_path: Path) -> None:
    """SQLite maps ``wmhub.sqlite3-shm`` into memory: truncated under a running hub (a cleanup script, a
    backup tool), the next write died with SIGBUS, no log line, no clean offline. The hub keeps its WAL
    index in its own memory, so there is no such file to lose."""
    with wmhub_process(tmp_path) as hub:
        token = (tmp_path / "api-token").read_text().strip()
        assert create(hub, "/api/v1/locations", {"name": "Stage A", "kind": "stage"}, token) == 201
        index = tmp_path / f"{DATABASE}-shm"
        if index.exists():
            os.truncate(index, 0)
        assert create(hub, "/api/v1/locations", {"name": "Stage B", "kind": "stage"}, token) == 201
        assert hub.process.poll() is None, f"the hub died ({hub.process.returncode}): {hub.stop()}"
        stderr = hub.stop()
    assert hub.process.returncode == 0, stderr
    with wmhub_process(tmp_path) as hub:
        assert names(hub, "/api/v1/locations") == ["Stage A", "Stage B"]


def test_a_database_deleted_under_the_running_hub_is_written_again_with_everything(tmp_path: Path) -> None:
    """Deleting the database files under a running hub left it writing into the unlinked file, health
    'ok', everything lost at the next start. The hub notices, says so once, and writes the file again from
    the database it still has open: nothing is lost."""
    with wmhub_process(tmp_path) as hub:
        token = (tmp_path / "api-token").read_text().strip()
        assert create(hub, "/api/v1/locations", {"name": "Stage A", "kind": "stage"}, token) == 201
        assert create(hub, "/api/v1/performers", {"name": "Anna"}, token) == 201
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"{DATABASE}{suffix}").unlink(missing_ok=True)
        create(hub, "/api/v1/locations", {"name": "Stage B", "kind": "stage"}, token)
        wait_for(lambda: (tmp_path / DATABASE).exists(), "the database was not written again")
        stderr = hub.stop()
    assert hub.process.returncode == 0, stderr
    said = [line for line in stderr.splitlines() if '"level":"error"' in line]
    assert len(said) == 1 and "was deleted" in said[0] and "nothing lost" in said[0], stderr
    with wmhub_process(tmp_path) as hub:
        assert names(hub, "/api/v1/locations") == ["Stage A", "Stage B"]
        assert names(hub, "/api/v1/performers") == ["Anna"]


def test_a_database_truncated_under_the_running_hub_is_set_aside_and_said(tmp_path: Path) -> None:
    """Truncated to nothing under a running hub, the database started empty at the next start without a word,
    and what was changed meanwhile was lost too. The hub notices, keeps the truncated file beside a fresh
    one, says which rows it could not read back, and stores every change made after.

    (Rows only in the lost pages are gone from the file: see docs/persistence.md.)"""
    with wmhub_process(tmp_path) as hub:
        token = (tmp_path / "api-token").read_text().strip()
        assert create(hub, "/api/v1/locations", {"name": "Stage A", "kind": "stage"}, token) == 201
        hub.stop()
    with wmhub_process(tmp_path) as hub:  # a clean stop moved everything from the WAL into the file
        os.truncate(tmp_path / DATABASE, 0)
        create(hub, "/api/v1/locations", {"name": "Stage B", "kind": "stage"}, token)
        wait_for(lambda: '"status":"ok"' in hub.get("/api/health")[1], "the database did not take writes again")
        assert create(hub, "/api/v1/performers", {"name": "Anna"}, token) == 201
        stderr = hub.stop()
    assert hub.process.returncode == 0, stderr
    said = [line for line in stderr.splitlines() if "under the running hub" in line]
    assert len(said) == 1 and "rows lost in: " in said[0] and "locations" in said[0], stderr
    [kept] = [path.name for path in tmp_path.iterdir() if path.name.startswith(f"{DATABASE}.damaged-")]
    assert kept in said[0]
    with wmhub_process(tmp_path) as hub:
        assert names(hub, "/api/v1/locations") == ["Stage B"]
        assert names(hub, "/api/v1/performers") == ["Anna"]


async def test_a_stalled_disk_answers_promptly_and_says_degraded(tmp_path: Path) -> None:
    """A disk that stops completing writes (fsfreeze, a hung NAS): a commit never returns. REST writes and
    the history and audit reads hung past 30 s behind it while health said 'ok'. Within a few seconds
    health says degraded, a change answers as while the disk fails (held in memory, 202) and reads that
    need the database answer 503 ``storage_unavailable``; once the disk moves again everything is stored."""
    async with running_hub(hub_config(tmp_path, [])) as hub, Api(hub) as api:
        stuck = threading.Event()
        database = hub.persistence.db
        # a statement that does not return: the database's one thread is held as by an fsync that never ends
        await database.connection.create_function("stuck_disk", 0, stuck.wait)
        database.submit("SELECT stuck_disk()")
        try:
            await eventually(lambda: hub.degraded(), STALL_SAID_WITHIN_S, "health never said degraded")
            health = await api.get("/api/health")
            started = time.monotonic()
            created, _ = await api.post("/api/v1/locations", {"name": "Stage Frozen", "kind": "stage"})
            async with api.session.get(api.base + "/api/v1/audit?limit=2") as response:
                audit = response.status, await response.json()
            took = time.monotonic() - started
        finally:
            stuck.set()
        await eventually(lambda: not hub.degraded(), 10, "health stayed degraded after the disk moved again")
        async with api.session.get(api.base + "/api/v1/audit?limit=5") as response:
            after = await response.json()
    assert health["status"] == "degraded" and "stalled" in health["database_problem"], health
    assert created == 202 and audit[0] == 503 and audit[1]["code"] == "storage_unavailable", (created, audit)
    assert took < 2, took
    assert [entry["action"] for entry in after["items"]][:1] == ["location.create"], after


async def test_a_failing_read_answers_503_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A read SQLite fails (here: a table gone from under the hub) answered 500 ``internal`` with a traceback
    per request. It answers 503 ``storage_unavailable`` naming the problem, logged once."""
    async with running_hub(hub_config(tmp_path, [])) as hub, Api(hub) as api:
        await hub.persistence.db.connection.execute("DROP TABLE audit")
        answers = []
        for _ in range(3):
            async with api.session.get(api.base + "/api/v1/audit?limit=2") as response:
                answers.append((response.status, (await response.json())["code"]))
    assert answers == [(503, "storage_unavailable")] * 3, answers
    logged = [r for r in caplog.records if r.name.startswith("hub.")]
    assert not [r for r in logged if r.exc_info], [r.getMessage() for r in logged if r.exc_info]
    assert len([r for r in logged if "database reads failing" in r.getMessage()]) == 1
