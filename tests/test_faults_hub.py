"""Hub-side faults: the broker restarts or is missing at start, the data dir turns read-only or fills up,
the hub is stopped with SIGTERM or killed with SIGKILL. Each test records its row for docs/reliability.md."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from wmhub_shure.simulator import ShureSimulator

from hub.app import Hub
from hub.config import HttpSettings
from hub.mqtt.bridge import MqttBridge
from hub.mqtt.client import MqttClient
from hub.persistence import DATABASE_FILE
from hub.testing import eventually
from tests.fault_harness import TOKEN, Api, device_of, hub_config, is_online, running_hub, seconds_until
from tests.mosquitto import MosquittoBroker, MqttProbe, TestBroker, find_mosquitto, free_port
from tests.reliability_report import FaultResult


def mqtt_client(hub: Hub) -> MqttClient:
    bridge = next(edge for edge in hub._edges if isinstance(edge, MqttBridge))
    assert bridge.client is not None
    return bridge.client


async def mqtt_controls_lost(probe: MqttProbe, hub: Hub, device_id: str, sim: ShureSimulator, count: int = 3) -> int:
    base, hub_id = hub.config.mqtt.base_topic, hub.config.hub_id
    # the device's state on the broker says the hub is back, not that the broker has its subscriptions yet
    client = mqtt_client(hub)
    await eventually(lambda: client.subscribed, 15, "the hub's subscriptions in place")
    lost = 0
    for attempt in range(count):
        name = f"MQ{attempt}"
        response = await probe.request(
            f"{base}/hubs/{hub_id}/response/set", f"{base}/devices/{device_id}/channels/1/set", {"name": name}
        )
        if response.get("status") != "ok" or sim.channels[1].values.get("name") != name:
            lost += 1
    return lost


async def test_broker_restart(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """The broker goes away for a second (no persistence: it forgets every retained topic) while a name is
    changed on a receiver; once back, the hub has reconnected and the broker holds the current state."""
    async with ShureSimulator("ulxd4d") as sim:
        config = hub_config(tmp_path, [sim.url], mqtt_broker.url)
        base = config.mqtt.base_topic
        async with running_hub(config) as hub:
            client = mqtt_client(hub)
            await eventually(lambda: is_online(hub, sim.url) and client.connected, 10, "hub connected, device online")
            device_id = device_of(hub, sim.url).id  # type: ignore[union-attr]
            await mqtt_broker.stop()
            detection = await seconds_until(lambda: not client.connected, 10, "hub notices the broker is gone")
            sim.set_name(1, "NOBROKER")
            await eventually(lambda: device_of(hub, sim.url).channel(1).name == "NOBROKER", 5, "name at the hub")  # type: ignore[union-attr]
            restarted = time.monotonic()
            await mqtt_broker.start()
            async with MqttProbe(mqtt_broker) as probe:
                await probe.subscribe(f"{base}/#")
                lost_state = 0
                try:
                    await probe.json(f"{base}/devices/{device_id}/channels/1", lambda v: v["name"] == "NOBROKER", 15)
                    await probe.message(f"{base}/devices/{device_id}/availability", lambda p: p == b"online")
                    await probe.json(f"{base}/hubs/{config.hub_id}/state", lambda v: v["state"] == "online")
                except AssertionError:
                    lost_state = 1
                recovery = round(time.monotonic() - restarted, 3)
                lost_control = await mqtt_controls_lost(probe, hub, device_id, sim)
        FaultResult(
            "MQTT broker restart (retained store lost, name changed while it was down)",
            detection,
            recovery,
            lost_state,
            lost_control,
            notes="recovery = broker back until every retained topic holds the current state again",
        ).record()
        assert lost_state == 0 and lost_control == 0


async def test_broker_unreachable_at_start(tmp_path: Path) -> None:
    """No broker when the hub starts: it starts anyway, serves the board and API and monitors devices, and
    connects when the broker appears."""
    executable = find_mosquitto()
    if executable is None:
        pytest.fail("this fault test needs Mosquitto (scripts/install-system-deps.sh)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="wmhub-late-broker-") as directory:
        broker = MosquittoBroker(executable, Path(directory))
        broker.port = port
        async with ShureSimulator("ulxd4d") as sim:
            config = hub_config(tmp_path, [sim.url], f"mqtt://127.0.0.1:{port}")
            started = time.monotonic()
            async with running_hub(config) as hub, Api(hub) as api:
                start_s = time.monotonic() - started
                health = await api.get("/api/health")
                await eventually(lambda: is_online(hub, sim.url), 10, "device monitored without a broker")
                device_id = device_of(hub, sim.url).id  # type: ignore[union-attr]
                assert (await api.get(f"/api/v1/devices/{device_id}"))["online"] is True
                await broker.start()
                try:
                    appeared = time.monotonic()
                    async with MqttProbe(broker) as probe:
                        await probe.subscribe(f"{config.mqtt.base_topic}/#")
                        await probe.json(f"{config.mqtt.base_topic}/devices/{device_id}/channels/1", timeout=30)
                        connected_after = round(time.monotonic() - appeared, 3)
                        lost_control = await mqtt_controls_lost(probe, hub, device_id, sim)
                finally:
                    await broker.stop()
        FaultResult(
            "MQTT broker unreachable at start (appears later)",
            None,
            connected_after,
            0,
            lost_control,
            notes=(
                f"hub started in {start_s:.2f} s without a broker, /api/health answered "
                f"({health.get('status', 'ok')}), "
                "device monitored; recovery = broker up until the device's retained state is on it"
            ),
        ).record()
        assert lost_control == 0


def write_config(path: Path, urls: list[str], broker: TestBroker, http_port: int, data_dir: Path) -> Path:
    devices = ", ".join(f'"{url}"' for url in urls)
    path.write_text(
        f'hub_id = "procfault"\ndata_dir = "{data_dir}"\ndevices = [{devices}]\noffline_after_s = 1.5\n'
        f'io_timeout_s = 1.0\nmeter_rate_ms = 200\n[mqtt]\nurl = "{broker.url}"\nbase_topic = "wmproc"\n'
        f'homeassistant = false\n[http]\nport = {http_port}\ntoken = "{TOKEN}"\n[discovery]\nenabled = false\n',
        encoding="utf-8",
    )
    return path


class HubProcess:
    """``wmhub run --config ...`` as a child process, with its log kept for the failure message."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        self.env = env or {}  # put back after the caller's WMHUB_* variables are dropped (WMHUB_LOAD_PLUGINS)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            # the config file says everything: a WMHUB_* variable of the caller's must not change it
            environ = {key: value for key, value in os.environ.items() if not key.startswith("WMHUB_")}
            environ.update(self.env)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "run", "--config", str(self.config)],
                stdout=out,
                stderr=out,
                env=environ,
            )

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def exited(self, timeout: float) -> int:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while (code := self.process.poll()) is None:
            assert time.monotonic() < deadline, f"hub still running after {timeout} s; log:\n{self.log.read_text()}"
            await asyncio.sleep(0.02)
        return code

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@contextlib.contextmanager
def hub_process(config: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[HubProcess]:
    process = HubProcess(config, log, env)
    try:
        yield process
    finally:
        process.stop()


async def devices_online(session: aiohttp.ClientSession, base: str, count: int, timeout: float = 20) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(f"{base}/api/v1/devices") as response:
                items = (await response.json())["items"]
                if len(items) >= count and all(item["online"] for item in items):
                    return list(items)
        assert time.monotonic() < deadline, f"{count} devices not online over REST within {timeout} s"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def shure_fleet(*families: str) -> AsyncIterator[list[ShureSimulator]]:
    sims = [await ShureSimulator(family).start() for family in families]
    try:
        yield sims
    finally:
        await asyncio.gather(*(sim.stop() for sim in sims))


def database_files(data_dir: Path) -> list[Path]:
    return sorted(path for path in data_dir.glob("*.sqlite3"))


def database_integrity(data_dir: Path) -> str:
    """SQLite's own verdict on every database in ``data_dir`` ("ok" when it opens and checks clean)."""
    verdicts = []
    for path in database_files(data_dir):
        with contextlib.closing(sqlite3.connect(path)) as connection:
            verdicts.append(str(connection.execute("PRAGMA integrity_check").fetchone()[0]))
    return ", ".join(verdicts) or "no database"


# SIGHUP: the terminal or SSH session of a hub started by hand closed; it stops the hub as SIGTERM does
SIGNAL_CASES = {
    signal.SIGTERM: "SIGTERM (clean shutdown of a hub watching 4 Shure receivers)",
    signal.SIGHUP: "SIGHUP (the terminal of a hub started by hand closed; 4 Shure receivers)",
}


@pytest.mark.parametrize("signum", list(SIGNAL_CASES), ids=lambda signum: signal.Signals(signum).name)
async def test_sigterm_clean_shutdown(mqtt_broker: TestBroker, tmp_path: Path, signum: signal.Signals) -> None:
    """SIGTERM (or SIGHUP): every Shure receiver gets METER_RATE 0 before its connection closes, every device
    and the hub read offline on MQTT, the process exits 0 and leaves a cleanly closed database."""
    async with shure_fleet("ad4q", "ulxd4d", "slxd4", "qlxd4") as sims:
        http_port = free_port()
        data_dir = tmp_path / "data"
        config = write_config(tmp_path / "wmhub.toml", [sim.url for sim in sims], mqtt_broker, http_port, data_dir)
        with hub_process(config, tmp_path / "hub.log") as hub:
            hub.start()
            async with aiohttp.ClientSession() as session, MqttProbe(mqtt_broker) as probe:
                await probe.subscribe("wmproc/#")
                items = await devices_online(session, f"http://127.0.0.1:{http_port}", len(sims))
                await probe.json("wmproc/hubs/procfault/state", lambda v: v["state"] == "online")
                # a receiver reads online at its first answer, before its METER_RATE confirmation
                await eventually(lambda: all(sim.metering_on for sim in sims), 10, "every receiver metering")
                probe.clear()
                # a loaded machine may have dropped and remade a connection by now: the stop's closes are counted
                closed_before = [len(sim.closed_clients) for sim in sims]
                signalled = time.monotonic()
                hub.signal(signum)
                code = await hub.exited(10)
                shutdown_s = round(time.monotonic() - signalled, 3)
                await probe.json("wmproc/hubs/procfault/state", lambda v: v["state"] == "offline")
                await eventually(
                    lambda: all(
                        probe.latest.get(f"wmproc/devices/{item['id']}/availability") == b"offline" for item in items
                    ),
                    3,
                    "every device's availability offline",
                )
                offline = len(items)
        closes = [
            record for sim, before in zip(sims, closed_before, strict=True) for record in sim.closed_clients[before:]
        ]
        metering_left_on = sum(record.metering_left_on or not record.closed_by_client for record in closes)
        databases = database_files(data_dir)
        integrity = database_integrity(data_dir)
        wal_left = [path for path in data_dir.glob("*-wal") if path.stat().st_size > 0]
        FaultResult(
            SIGNAL_CASES[signum],
            None,
            shutdown_s,
            0,
            0,
            notes=(
                f"exit status {code}; receivers left metering on: {metering_left_on} of {len(sims)}; "
                f"hub state offline; device availability topics flipped to offline: {offline} of {len(items)}; "
                + (
                    f"database closed cleanly (no WAL left): {not wal_left}, integrity {integrity}"
                    if databases
                    else "no database file yet"
                )
                + f"; recovery column = time from {signal.Signals(signum).name} to exit"
            ),
        ).record()
        assert code == 0
        assert len(closes) == len(sims) and metering_left_on == 0 and offline == len(items)
        assert not wal_left and integrity in ("ok", "no database")


async def test_sigkill_then_restart(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """SIGKILL: the broker publishes the hub's last will at once; a restarted hub reconnects every receiver
    and republishes current state, including a change made while it was dead."""
    async with shure_fleet("ad4q", "ulxd4d", "slxd4") as sims:
        http_port = free_port()
        data_dir = tmp_path / "data"
        # the third receiver is added over REST, not in the file: only the database brings it back
        config = write_config(tmp_path / "wmhub.toml", [sim.url for sim in sims[:2]], mqtt_broker, http_port, data_dir)
        base = f"http://127.0.0.1:{http_port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with hub_process(config, tmp_path / "hub.log") as hub:
            hub.start()
            async with aiohttp.ClientSession() as session, MqttProbe(mqtt_broker) as probe:
                await probe.subscribe("wmproc/#")
                await devices_online(session, base, 2)
                async with session.post(f"{base}/api/v1/devices", json={"url": sims[2].url}, headers=headers) as added:
                    assert added.status in (200, 201), await added.text()
                items = await devices_online(session, base, len(sims))
                by_port = {item["port"]: item["id"] for item in items}
                ids = [by_port[sim.port] for sim in sims]  # the API lists devices in its own order
                await probe.json("wmproc/hubs/procfault/state", lambda v: v["state"] == "online")
                probe.clear()
                killed = time.monotonic()
                hub.signal(signal.SIGKILL)
                await hub.exited(5)
                await probe.json("wmproc/hubs/procfault/state", lambda v: v["state"] == "offline")
                detection = round(time.monotonic() - killed, 3)
                sims[0].set_name(1, "AFTERKILL")
                probe.clear()
                restarted = time.monotonic()
                integrity = database_integrity(data_dir)
                hub.start()
                await devices_online(session, base, len(sims))
                lost_state = 0
                problems: list[str] = []
                try:
                    await probe.json("wmproc/hubs/procfault/state", lambda v: v["state"] == "online")
                    await probe.json(f"wmproc/devices/{ids[0]}/channels/1", lambda v: v["name"] == "AFTERKILL")
                except AssertionError as exc:
                    problems.append(str(exc))
                    lost_state = 1
                recovery = round(time.monotonic() - restarted, 3)
                lost_control = 0
                for attempt in range(3):
                    body = {"kind": "name", "value": f"K{attempt}"}
                    url = f"{base}/api/v1/channels/{ids[1]}:1/commands"
                    async with session.post(url, json=body, headers=headers) as response:
                        if response.status != 200 or sims[1].channels[1].values.get("name") != f"K{attempt}":
                            problems.append(f"{response.status} {await response.text()}")
                            lost_control += 1
        left_on = sum(record.metering_left_on for sim in sims for record in sim.closed_clients)
        FaultResult(
            "SIGKILL, then restart",
            detection,
            recovery,
            lost_state,
            lost_control,
            notes=(
                "detection = kill until the broker's last will reads offline; recovery = restart until every "
                "device is online over REST and MQTT holds the state changed while the hub was dead; "
                f"database after the kill: {integrity}; the receiver added over REST came back from it; "
                f"a killed hub cannot switch metering off: {left_on} of {len(sims)} receivers were left metering"
            ),
        ).record()
        assert lost_state == 0 and lost_control == 0, (problems, (tmp_path / "hub.log").read_text()[-3000:])


class DataVolume:
    """A filesystem of its own for the data dir, so it can turn read-only or fill up under a running hub.

    As root this is a small tmpfs that is remounted read-only or filled; otherwise only the start-time
    case can be shown, with a directory made read-only by its mode (root ignores modes, hence the tmpfs).
    """

    def __init__(self, path: Path, size: str = "16m") -> None:
        self.path = path
        self.size = size
        self.mounted = False
        path.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> DataVolume:
        if os.geteuid() == 0:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs", str(self.path)],
                capture_output=True,
                check=False,
            )
            self.mounted = done.returncode == 0
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
        else:
            self.path.chmod(0o700)

    def read_only(self, on: bool) -> None:
        if self.mounted:
            option = "remount,ro" if on else "remount,rw"
            subprocess.run(["mount", "-o", option, str(self.path)], capture_output=True, check=True)
        else:
            self.path.chmod(0o500 if on else 0o700)

    def fill(self) -> None:
        """Write a filler file until the filesystem is full (tmpfs only)."""
        assert self.mounted
        with contextlib.suppress(OSError), (self.path / "filler").open("wb") as filler:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()

    def unfill(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)


def audit_rows_on_disk(data_dir: Path, text: str) -> int:
    """Audit rows holding ``text`` in the database file itself (a second reader, as after a restart; the hub
    must have stopped)."""
    with contextlib.closing(sqlite3.connect(data_dir / DATABASE_FILE)) as connection:
        rows = connection.execute("SELECT after FROM audit").fetchall()
    return sum(text in str(row[0]) for row in rows)


async def storage_fault(tmp_path: Path, label: str, fault: str) -> None:
    """The data dir takes no writes (read-only from the start, or full under the running hub): the store says
    so (one logged error, ``failing``), monitoring and control go on, and the writes held in memory meanwhile
    land once the disk takes writes again."""
    async with ShureSimulator("ulxd4d") as sim:
        with DataVolume(tmp_path / "data") as volume:
            # no configured token: the hub has to make one and cannot store it on a read-only disk
            config = hub_config(volume.path, [sim.url], http=HttpSettings(port=0, token=None))
            if fault == "read-only":
                # a filesystem with files open for writing cannot be remounted read-only: this is the
                # start-time case (a volume mounted read-only, a directory the service user cannot write)
                volume.read_only(True)
            started = time.monotonic()
            async with running_hub(config, plugins="shure") as hub, Api(hub) as api:
                assert hub.persistence is not None
                db = hub.persistence.db
                await eventually(lambda: is_online(hub, sim.url), 10, "device online")
                device_id = device_of(hub, sim.url).id  # type: ignore[union-attr]
                if fault == "full":
                    assert await db.sync()
                    started = time.monotonic()
                    volume.fill()
                command = {"kind": "name", "value": "DISK1"}
                status, _ = await api.post(f"/api/v1/channels/{device_id}:1/commands", command, hub.web.token)
                await eventually(lambda: db.failing, 15, "the store reports failing writes")
                detection = round(time.monotonic() - started, 3)
                sim.set_name(2, "DISK2")
                await eventually(
                    lambda: device_of(hub, sim.url).channel(2).name == "DISK2",  # type: ignore[union-attr]
                    5,
                    "monitoring goes on",
                )
                control_ok = status == 200 and sim.channels[1].values.get("name") == "DISK1"
                healed = time.monotonic()
                if fault == "read-only":
                    volume.read_only(False)
                else:
                    volume.unfill()
                await eventually(lambda: not db.failing, 15, "writes resume")
                assert await db.sync()
                recovery = round(time.monotonic() - healed, 3)
                lost_state = db.stats.dropped_kept
            # once the hub is gone: while it runs, it holds the database for itself (docs/adr/0013)
            on_disk = audit_rows_on_disk(volume.path, "DISK1")
            FaultResult(
                label,
                detection,
                recovery,
                lost_state,
                0 if control_ok and on_disk else 1,
                notes=(
                    f"{'tmpfs' if volume.mounted else 'directory mode'}; "
                    + (
                        "the hub started without a stored API token (one for this run, logged); "
                        if fault == "read-only"
                        else ""
                    )
                    + "detection = until the store reported "
                    "failing writes (logged once); monitoring and control went on; recovery = until the held "
                    f"writes were committed; the command's audit row reached the disk: {bool(on_disk)}; "
                    f"held writes lost: {lost_state}"
                ),
            ).record()
            assert control_ok and on_disk and lost_state == 0


async def test_data_dir_read_only(tmp_path: Path) -> None:
    await storage_fault(tmp_path, "Data dir read-only when the hub starts, writable later", "read-only")


async def test_disk_full(tmp_path: Path) -> None:
    await storage_fault(tmp_path, "Disk full under the running hub, then space freed", "full")


async def test_a_configured_receiver_silent_at_a_restart_keeps_the_id_it_had(tmp_path: Path) -> None:
    """An outside audit: restarted while a configured receiver hung, the hub's first health record of it
    (no id yet in this run) overwrote the id of the run before; /api/health said device_id null, and with
    no id the MQTT edge took the receiver for one removed from the configuration and cleared its topics."""
    async with ShureSimulator("ulxd4d") as sim:
        config = hub_config(tmp_path, [sim.url], "off")
        async with running_hub(config) as hub:
            # stopped at once: no periodic health record of it was written while it ran
            device = await eventually(lambda: device_of(hub, sim.url), 10, "the receiver identified")
        sim.silent = True  # hung: takes the connection, answers nothing
        async with running_hub(config) as hub, Api(hub) as api:

            async def connection() -> dict[str, Any]:
                [entry] = (await api.get("/api/health"))["connections"]
                return dict(entry)

            deadline = time.monotonic() + 20
            while (entry := await connection())["last_error"] is None:
                assert time.monotonic() < deadline, "the hung receiver's failed attempt"
                await asyncio.sleep(0.1)
            assert entry["device_id"] == device.id and not entry["connected"]
            assert hub.expected_device_ids() == ({device.id}, True), "known: nothing of it is taken for removed"
