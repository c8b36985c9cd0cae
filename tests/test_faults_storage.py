"""The database's files damaged, deleted or stalled under a running hub (docs/persistence.md, "When the disk
fails"): the hub keeps monitoring, says so, answers every request promptly and loses nothing it can still
read. The hub runs as ``wmhub run`` on a real data dir where the damage is done to files; a stalled disk
(fsfreeze, a hung NAS) needs root, so there the hub runs in-process and a statement that does not return
holds the database's one thread as a stuck commit does."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from hub.testing import eventually
from tests.fault_harness import Api, hub_config, running_hub
from tests.mosquitto import free_port
from tests.reliability_report import record_check
from tests.test_faults_startup import RunningHub, simulated_receivers, wmhub_run
from tests.test_faults_startup import running_hub as wmhub_process
from tests.test_web_venue import wait_until_online

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


def history_times(hub: RunningHub, channel: str) -> list[int]:
    """The start of every history bucket of ``channel`` the hub shows (none while it has none)."""
    status, body = hub.get(f"/api/v1/channels/{channel}/history?since=0&step=10")
    return [point["t"] for point in json.loads(body)["items"]] if status == 200 else []


def created_performers(hub: RunningHub) -> list[str]:
    """The performers the audit log says were created (read from the database, not from a service's memory)."""
    status, body = hub.get("/api/v1/audit")
    assert status == 200, body
    items = json.loads(body)["items"]
    return sorted(entry["after"]["name"] for entry in items if entry["action"] == "performer.create")


def uptime(hub: RunningHub) -> float:
    return float(json.loads(hub.get("/api/health")[1])["uptime_s"])


def test_a_data_dir_deleted_under_the_running_hub_is_created_again_with_everything(tmp_path: Path) -> None:
    """``rm -rf`` of the data dir under a running hub (a tmp cleaner, an admin's slip): the copy of the
    database meant for the missing directory failed, the one connection that still held every committed page
    was closed for an empty stand-in, the directory never came back, a permission warning was logged every
    2 s, and after a restart the venue, the audit log and the history were gone. The hub creates the directory
    again (with the mode it had) and writes the database into it from the open connection: what was stored
    before the deletion and what changed after it are both there after a restart."""
    data_dir = tmp_path / "lib" / "wmhub"
    with simulated_receivers(1) as (url,), wmhub_process(data_dir, "--device", url) as hub:
        token = (data_dir / "api-token").read_text().strip()
        mode = data_dir.stat().st_mode & 0o777
        channel = f"{wait_until_online(hub)}:1"
        assert create(hub, "/api/v1/performers", {"name": "Anna"}, token) == 201
        wait_for(lambda: bool(history_times(hub, channel)), "no history recorded", timeout=30)
        shutil.rmtree(tmp_path / "lib")  # the data dir and its parent
        deleted_at = time.time()
        wait_for(lambda: (data_dir / DATABASE).exists(), "the data dir and its database were not written again")
        wait_for(lambda: '"status":"ok"' in hub.get("/api/health")[1], "the database did not take writes again")
        assert create(hub, "/api/v1/performers", {"name": "Ben"}, token) == 201  # stored, not only held (202)
        wait_for(lambda: max(history_times(hub, channel)) >= deleted_at, "no history after the deletion", timeout=30)
        recreated = data_dir.stat().st_mode & 0o777
        stderr = hub.stop()
    assert hub.process.returncode == 0, stderr
    said = [line for line in stderr.splitlines() if '"level":"error"' in line or '"level":"warning"' in line]
    assert len([line for line in said if "deleted with its directory" in line and "nothing lost" in line]) == 1, stderr
    assert not [line for line in said if "cannot restrict permissions" in line or "not stored" in line], stderr
    assert recreated == mode, (oct(recreated), oct(mode))
    assert oct((data_dir / DATABASE).stat().st_mode & 0o777) == "0o600"
    with wmhub_process(data_dir, "--device", url) as hub:
        performers = names(hub, "/api/v1/performers")
        created = created_performers(hub)
        times = history_times(hub, channel)
    record_check(
        "Storage",
        "data dir deleted (rm -rf) under the running hub with a receiver recording history, a performer added "
        "before and one after, then a restart",
        f"performers {performers}; audit of their creation {created}; history buckets before the deletion "
        f"{sum(t < deleted_at for t in times)}, after it {sum(t >= deleted_at for t in times)}",
    )
    assert performers == ["Anna", "Ben"]
    assert created == ["Anna", "Ben"]
    assert min(times) < deleted_at <= max(times), (times, deleted_at)


def test_a_data_dir_deleted_under_the_running_hub_gets_its_token_device_passwords_and_lock_back(
    tmp_path: Path,
) -> None:
    """Only the database came back into a data dir deleted under the running hub: the next start generated a new
    API token (every board and script holding the old one refused), forgot a device's password (it had to be
    added again), and meanwhile a second hub could start on the same data dir and write the same database. The
    token file, the device passwords and the lock come back with the database."""
    data_dir = tmp_path / "lib" / "wmhub"
    password = "Stage-Pa55-2026"
    with wmhub_process(data_dir) as hub:
        token = (data_dir / "api-token").read_text().strip()
        device = {"url": f"shure://admin:{password}@127.0.99.99"}
        assert send(hub, "POST", "/api/v1/devices", device, token)[0] == 201
        shutil.rmtree(tmp_path / "lib")
        wait_for(lambda: (data_dir / DATABASE).exists(), "the data dir and its database were not written again")
        wait_for(lambda: '"status":"ok"' in hub.get("/api/health")[1], "the database did not take writes again")
        second, said, _ = wmhub_run(data_dir)
        stderr = hub.stop()
    assert (second, said.strip()) == (
        2,
        f"wmhub: configuration error: command line: data_dir: {data_dir} is in use by another running hub "
        f"(pid {hub.process.pid}); each hub needs its own data_dir",
    )
    assert hub.process.returncode == 0, stderr
    rewritten = [line for line in stderr.splitlines() if "deleted with its directory" in line]
    assert len(rewritten) == 1 and "beside it: device-credentials.json, api-token, wmhub.lock" in rewritten[0], stderr
    for name in ("api-token", "device-credentials.json"):
        assert oct((data_dir / name).stat().st_mode & 0o777) == "0o600", name
    assert password in (data_dir / "device-credentials.json").read_text(encoding="utf-8")
    with wmhub_process(data_dir) as hub:
        assert create(hub, "/api/v1/performers", {"name": "Anna"}, token) == 201  # the token of before


def test_a_data_dir_that_cannot_be_created_again_keeps_the_open_database_until_it_can(tmp_path: Path) -> None:
    """The data dir deleted and its parent replaced by a file (gone for good, as a read-only parent would be
    to a non-root hub): the directory cannot be made again. The hub keeps the open database (reads answer from
    it: the audit log), holds changes in memory, says so once rather than every retry, and writes everything
    into the directory once it can be made."""
    data_dir = tmp_path / "lib" / "wmhub"
    with wmhub_process(data_dir) as hub:
        token = (data_dir / "api-token").read_text().strip()
        assert create(hub, "/api/v1/performers", {"name": "Anna"}, token) == 201
        shutil.rmtree(tmp_path / "lib")
        (tmp_path / "lib").write_text("not a directory\n")
        wait_for(lambda: '"status":"degraded"' in hub.get("/api/health")[1], "health did not say degraded")
        assert create(hub, "/api/v1/performers", {"name": "Ben"}, token) == 202  # held in memory
        failing_since = uptime(hub)
        # an observation window of three retries (every 2 s): the failure is said once, not at each of them
        wait_for(lambda: uptime(hub) > failing_since + 6.5, "the hub's uptime did not advance")
        held = names(hub, "/api/v1/performers"), created_performers(hub)
        (tmp_path / "lib").unlink()
        wait_for(lambda: (data_dir / DATABASE).exists(), "the data dir and its database were not written again")
        wait_for(lambda: '"status":"ok"' in hub.get("/api/health")[1], "the database did not take writes again")
        stderr = hub.stop()
    assert hub.process.returncode == 0, stderr
    assert held == (["Anna", "Ben"], ["Anna"]), held  # the audit read from the kept database, Ben's entry queued
    said = [line for line in stderr.splitlines() if '"level":"error"' in line or '"level":"warning"' in line]
    assert len([line for line in said if "cannot be written again yet" in line]) == 1, stderr
    assert len([line for line in said if "cannot restrict permissions" in line]) <= 1, stderr
    assert len([line for line in said if "deleted with its directory" in line and "nothing lost" in line]) == 1
    with wmhub_process(data_dir) as hub:
        assert names(hub, "/api/v1/performers") == ["Anna", "Ben"]
        assert created_performers(hub) == ["Anna", "Ben"]


def send(hub: RunningHub, method: str, path: str, body: object, token: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url = f"http://127.0.0.1:{hub.port}{path}"
    return hub.request(urllib.request.Request(url, json.dumps(body).encode(), headers, method=method))


# what a user set up over REST, as the hub shows it back: each of these is held by a service in memory
SHOWN = ("/api/v1/locations", "/api/v1/performers", "/api/v1/slots", "/api/v1/groups", "/api/v1/show")


def set_up_a_venue(hub: RunningHub, token: str) -> str:
    """A known device placed in a location, a performer, a slot, a group, the show and a declared carrier;
    the device's URL (nothing answers there: it stays a known device without an id)."""
    device = f"shure://127.0.0.1:{free_port()}"
    assert send(hub, "POST", "/api/v1/devices", {"url": device}, token)[0] == 201
    assert create(hub, "/api/v1/locations", {"name": "Stage A", "kind": "stage"}, token) == 201
    placed = send(hub, "PUT", f"/api/v1/devices/{quote(device, safe='')}/location", {"location_id": 1}, token)
    assert placed[0] == 200, placed
    assert create(hub, "/api/v1/performers", {"name": "Anna"}, token) == 201
    assert send(hub, "PUT", "/api/v1/slots/1", {"device_id": "rack-1", "channel": 1}, token)[0] == 200
    assert send(hub, "PUT", "/api/v1/groups/1", {"title": "Band", "slots": [1]}, token)[0] == 201
    show = {"end_at": "2026-12-07T23:00:00+00:00", "margin_min": 20}
    assert send(hub, "PUT", "/api/v1/show", show, token)[0] == 200
    carrier = {"label": "IEM 1", "frequency_mhz": 606.5}
    assert send(hub, "POST", "/api/v1/frequency-plan/carriers", carrier, token)[0] == 201
    return device


def what_the_hub_shows(hub: RunningHub) -> dict[str, object]:
    shown: dict[str, object] = {path: json.loads(hub.get(path)[1]) for path in SHOWN}
    shown["declared carriers"] = json.loads(hub.get("/api/v1/frequency-plan")[1])["declared"]
    shown["devices watched"] = json.loads(hub.get("/api/v1/hub")[1])["config"]["devices"]
    return shown


def inode(path: Path) -> int | None:
    """Which file is at ``path`` now (None: none; it is renamed aside and back while it is replaced)."""
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def delete(database: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)


def truncate(database: Path) -> None:
    os.truncate(database, 0)


@pytest.mark.parametrize("damage", [truncate, delete])
def test_a_database_replaced_under_the_running_hub_keeps_everything_the_hub_showed(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    """Truncated under a running hub, the database was set aside and salvaged, but every row only in its lost
    pages (here: all of them) was gone at the next start, though the running hub showed the devices, the
    venue, the show and the frequency plan all along. Every service writes what it holds into the new file
    (the log says so), so the next start shows what the running hub showed; the truncated file is kept."""
    database = tmp_path / DATABASE
    with wmhub_process(tmp_path) as hub:
        token = (tmp_path / "api-token").read_text().strip()
        device = set_up_a_venue(hub, token)
        hub.stop()
    with wmhub_process(tmp_path) as hub:  # a clean stop moved everything from the WAL into the file
        before = what_the_hub_shows(hub)
        replaced = inode(database)
        damage(database)
        wait_for(lambda: inode(database) not in (replaced, None), "the database was not replaced")
        # a commit that met the truncated file failed (health degraded) until the file was written again
        wait_for(lambda: '"status":"ok"' in hub.get("/api/health")[1], "the database did not take writes again")
        # the new file and its WAL are the hub user's alone, as at a start (they were readable by every user)
        modes = {path.name: oct(path.stat().st_mode & 0o777) for path in tmp_path.glob(f"{DATABASE}*")}
        # stored (201), not only held (202): changes after the damage are kept too
        assert create(hub, "/api/v1/performers", {"name": "Ben"}, token) == 201
        shown = what_the_hub_shows(hub)
        stderr = hub.stop()
    assert hub.process.returncode == 0, stderr
    assert shown == {**before, "/api/v1/performers": {"items": [{"id": 1, "name": "Anna", "notes": ""},
                                                                {"id": 2, "name": "Ben", "notes": ""}]}}  # fmt: skip
    with wmhub_process(tmp_path) as hub:
        after_restart = what_the_hub_shows(hub)
        # the device is remembered, and placed: its location cannot be deleted
        remembered = send(hub, "POST", "/api/v1/devices", {"url": device}, token)[0] == 200
        status, body = send(hub, "DELETE", "/api/v1/locations/1", None, token)
        placed = status == 409 and device in body
    record_check(
        "Storage",
        f"database file {damage.__name__}d under the running hub (a known device, venue, show and frequency plan "
        "set over REST), then a restart",
        f"the restart shows what the running hub showed: {after_restart == shown}; the device remembered: "
        f"{remembered}, placed: {placed}",
    )
    assert after_restart == shown
    assert remembered and placed, body
    assert modes[DATABASE] == "0o600" and modes.get(f"{DATABASE}-wal", "0o600") == "0o600", modes
    said = [line for line in stderr.splitlines() if "under the running hub" in line]
    assert len(said) == 1 and "records the services hold written into it" in said[0], stderr
    if damage is truncate:
        assert "rows lost in: " in said[0] and "locations" in said[0], said[0]
        [kept] = [path.name for path in tmp_path.iterdir() if path.name.startswith(f"{DATABASE}.damaged-")]
        assert kept in said[0]


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
