"""No device password leaves the hub: devices added at run time over REST and over MQTT ``device/add``, with
a password in every form a URL can carry it (``user:pw@``, ``password=``, ``PASSWORD=``, a repeated key, a
percent-encoded key), and then every output searched for them: REST answers, alerts, the audit log, the
retained MQTT topics, the board, the live feed, the hub's log and the bytes of every database file."""

from __future__ import annotations

import json
import re
import signal
import stat
from pathlib import Path
from typing import Any

import aiohttp
from wmhub_sennheiser.simulator.ssc2 import Ssc2Simulator

from hub.persistence import Persistence
from hub.persistence.schema import MIGRATIONS
from hub.persistence.testing import quick_settings
from hub.state import StateStore
from hub.testing import eventually
from tests.fault_harness import TOKEN, Api, is_online, running_hub, until
from tests.fault_harness import hub_config as fault_hub_config
from tests.mosquitto import MqttProbe, TestBroker, free_port
from tests.reliability_report import record_check
from tests.test_faults_hub import hub_process

DEVICE_PASSWORD = "Dev1ce-Pa55-REST"  # the one the simulated SSCv2 receiver really checks
SECRETS = {
    "password= (SSCv2, over REST)": DEVICE_PASSWORD,
    "PASSWORD= beside password= (over REST)": "Upper-Pa55-REST",
    "user:pw@ (over REST, never answers)": "Userinfo-Pa55-REST",
    "password= repeated (over MQTT, never answers)": "Repeat1-Pa55-MQTT",
    "the repeat (over MQTT)": "Repeat2-Pa55-MQTT",
    "pass%77ord= (over MQTT)": "Encoded-Pa55-MQTT",
    "user:pw@ (over MQTT, never answers)": "Userinfo-Pa55-MQTT",
}
HUB_ID = "secrethub"
BASE = "wmsecret"
# sanctioned on purpose: the one file that holds device passwords so the hub can reconnect after a restart
CREDENTIALS_FILE = "device-credentials.json"


def hub_config(path: Path, data_dir: Path, broker: TestBroker, http_port: int) -> Path:
    """MQTT admin requests on (``mqtt.admin``, off by default): device/add over MQTT is one of the paths."""
    path.write_text(
        f'hub_id = "{HUB_ID}"\ndata_dir = "{data_dir}"\noffline_after_s = 1.5\nio_timeout_s = 1.0\n'
        f'log_level = "debug"\n[mqtt]\nurl = "{broker.url}"\nbase_topic = "{BASE}"\nadmin = true\n'
        f'[http]\nport = {http_port}\ntoken = "{TOKEN}"\n[discovery]\nenabled = false\n',
        encoding="utf-8",
    )
    return path


def offline_alerts(alerts: list[dict[str, Any]]) -> int:
    """The receivers that never answer each get one (the simulated one may raise others, clipping say)."""
    return sum(1 for alert in alerts if alert["kind"] == "device_offline")


async def read_everything(session: aiohttp.ClientSession, base: str) -> dict[str, str]:
    """Every read a client without the token can make, the board's page and a live-feed snapshot."""
    answers: dict[str, str] = {}
    for path in ("/", "/api/health", "/api/v1/hub", "/api/v1/devices", "/api/v1/channels", "/api/v1/alerts",
                 "/api/v1/alerts?state=all", "/api/v1/audit", "/api/v1/candidates", "/metrics"):  # fmt: skip
        async with session.get(base + path) as response:
            answers[path] = await response.text()
    async with session.ws_connect(base + "/api/v1/live") as live:
        answers["live"] = str(await live.receive_json(timeout=5))
    return answers


async def test_no_device_password_in_any_output(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    silent = free_port()  # nothing listens here: these devices never answer and raise offline alerts
    async with Ssc2Simulator(password=DEVICE_PASSWORD) as sim, MqttProbe(mqtt_broker) as probe:
        s = list(SECRETS.values())
        over_rest = [
            f"{sim.url()}&PASSWORD={s[1]}",
            f"shure://admin:{s[2]}@127.0.0.1:{silent}",
        ]
        over_mqtt = [
            f"sennheiser-ssc2://127.0.0.1:{silent}?password={s[3]}&user=api&password={s[4]}&pass%77ord={s[5]}",
            f"shure-uhfr://admin:{s[6]}@127.0.0.1:{silent}",
        ]
        http_port = free_port()
        base = f"http://127.0.0.1:{http_port}"
        config = hub_config(tmp_path / "wmhub.toml", tmp_path / "data", mqtt_broker, http_port)
        await probe.subscribe(f"{BASE}/#")
        with hub_process(config, tmp_path / "hub.log") as hub:
            hub.start()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

                async def answering() -> bool:
                    async with session.get(base + "/api/health") as response:
                        return response.status == 200

                await until(answering, 60, "the hub's HTTP API")
                # its HTTP API answering says nothing of its MQTT client: a request sent before it subscribed is lost
                hub_topics = f"{BASE}/hubs/{HUB_ID}"
                await probe.request_until_answered(f"{hub_topics}/response/info", f"{hub_topics}/request/info", {})
                for url in over_rest:
                    headers = {"Authorization": f"Bearer {TOKEN}"}
                    async with session.post(base + "/api/v1/devices", json={"url": url}, headers=headers) as added:
                        assert added.status == 201, await added.text()
                for url in over_mqtt:
                    answer = await probe.request(
                        f"{BASE}/hubs/{HUB_ID}/response/device/add",
                        f"{BASE}/hubs/{HUB_ID}/request/device/add",
                        {"url": url},
                    )
                    assert answer["status"] == "ok", answer

                async def settled() -> bool:
                    async with session.get(base + "/api/v1/alerts") as response:
                        alerts = (await response.json())["items"]
                    async with session.get(base + "/api/v1/devices") as response:
                        online = [device for device in (await response.json())["items"] if device["online"]]
                    return offline_alerts(alerts) >= 3 and len(online) == 1

                # the SSCv2 receiver online, an offline alert for each of the three that never answer
                await until(settled, 30, "the SSCv2 device online and three offline alerts")
                await probe.json(f"{BASE}/hubs/{HUB_ID}/alerts", lambda alerts: offline_alerts(alerts) >= 3)
                answers = await read_everything(session, base)
            hub.signal(signal.SIGTERM)
            assert await hub.exited(20) == 0
        log = (tmp_path / "hub.log").read_text(encoding="utf-8", errors="replace")
    # the requests are the test's own messages: what anyone reading the broker sees the hub publish
    mqtt_text = "\n".join(
        f"{topic} {payload.decode('utf-8', 'replace')}" for topic, payload in probe.messages if "/request/" not in topic
    )
    files = {path.name: path for path in (tmp_path / "data").iterdir() if path.is_file()}
    outputs: dict[str, Any] = {
        **{f"REST {path}": text for path, text in answers.items()},
        "MQTT (every message, retained ones included)": mqtt_text,
        "the hub's log": log,
        **{f"file {name}": path.read_bytes().decode("latin-1") for name, path in files.items()},
    }
    leaks = sorted(
        f"{form} in {where}"
        for where, text in outputs.items()
        for form, secret in SECRETS.items()
        if secret in text and where != f"file {CREDENTIALS_FILE}"
    )
    mode = oct(stat.S_IMODE(files[CREDENTIALS_FILE].stat().st_mode))
    record_check(
        "Secrets",
        "device passwords in every URL form (user:pw@, password=, PASSWORD=, repeated, pass%77ord=), devices added "
        "over REST and MQTT device/add, searched in REST (alerts, audit, devices, health), MQTT (alerts and all "
        "retained topics), board, live feed, log, database files",
        "nowhere; kept only in device-credentials.json, mode " + mode if not leaks else "LEAKED: " + "; ".join(leaks),
    )
    assert not leaks, leaks
    assert "***" in answers["/api/v1/alerts"] and "***" in answers["/api/v1/audit"]  # masked, not dropped
    assert mode == "0o600"


async def test_password_survives_a_restart_outside_the_database(tmp_path: Path) -> None:
    """The hub reconnects after a restart with the password, which the database never held; a database of an
    earlier version, with the password in it, has it moved out at the next start."""
    url = f"sennheiser-ssc2://127.0.0.1:9?password={DEVICE_PASSWORD}"
    older = f"shure://admin:{SECRETS['user:pw@ (over REST, never answers)']}@127.0.0.1:9"
    store = await Persistence.open(tmp_path, StateStore(), settings=quick_settings())
    await store.devices.add(url, source="rest")
    store.db.submit(
        "INSERT INTO known_devices (url, device_id, added_at, source, location_id) VALUES (?, NULL, 0, 'rest', NULL)",
        (older,),
    )
    assert await store.db.sync()
    await store.close()
    reopened = await Persistence.open(tmp_path, StateStore(), settings=quick_settings())
    restored = sorted(found for found, _device_id in reopened.restore())
    assert await reopened.db.sync()
    await reopened.close()
    in_database = [
        path.name
        for path in tmp_path.glob("wmhub.sqlite3*")  # noqa: ASYNC240 (the store is closed: nothing to wait for)
        if any(secret.encode() in path.read_bytes() for secret in SECRETS.values())
    ]
    record_check(
        "Secrets",
        "a device password across a restart (and one an earlier version stored in the database)",
        f"reconnects with it: {restored == sorted([url, older])}; database files holding one after the restart: "
        f"{in_database or 'none'}",
    )
    assert restored == sorted([url, older])
    assert in_database == [], in_database


async def test_adding_a_device_again_with_a_corrected_password_uses_it(tmp_path: Path) -> None:
    """An admin who mistyped a device's password adds it again with the right one: the hub answers 200 with
    the entry, connects with the new password, keeps only that one, and audits the change without it."""
    wrong, right = "Wrong-Pa55-Typo", "Right-Pa55-2026"
    async with Ssc2Simulator(password=right) as sim:
        config = fault_hub_config(tmp_path, [], "off")
        async with running_hub(config, plugins="sennheiser") as hub, Api(hub) as api:
            status, first = await api.post("/api/v1/devices", {"url": sim.url(password=wrong)})
            assert status == 201 and wrong not in str(first)
            await eventually(lambda: hub.connections(detail=True)[0]["last_error"] is not None, 15, "refused login")
            assert not is_online(hub, sim.url())
            status, again = await api.post("/api/v1/devices", {"url": sim.url()})
            assert (status, again["url"]) == (200, first["url"]), again
            await eventually(lambda: is_online(hub, sim.url()), 15, "online with the corrected password")
            audit = await api.get("/api/v1/audit")
            assert [entry["action"] for entry in audit["items"]][:2] == ["device.credentials", "device.add"]
            assert audit["items"][0]["target"] == first["url"]
            assert wrong not in str(audit) and right not in str(audit)
            assert len(hub.devices.by_url) == 1
        stored = (tmp_path / CREDENTIALS_FILE).read_text(encoding="utf-8")
        assert right in stored and wrong not in stored
        # the next start connects with the corrected password at once
        async with running_hub(config, plugins="sennheiser") as hub:
            await eventually(lambda: is_online(hub, sim.url()), 15, "online after a restart")


async def test_a_corrected_password_in_another_spelling_of_the_url_replaces_the_stored_one(tmp_path: Path) -> None:
    """An outside re-audit: the corrected URL with the default port written out (or left off where the first
    had it) answered 200 with the entry but kept the old password, and audited nothing. Nothing listens at
    the address: only what the hub stores is looked at."""
    config = fault_hub_config(tmp_path, [], "off")
    async with running_hub(config, plugins="shure") as hub, Api(hub) as api:
        for old, new in (("OLD-Pa55-1", "NEW-Pa55-1"), ("NEW-Pa55-1", "NEW-Pa55-2")):
            spelled = ("shure://admin:{}@127.0.99.99", "shure://admin:{}@127.0.99.99:2202")
            first, again = spelled if old.startswith("OLD") else spelled[::-1]
            status, _ = await api.post("/api/v1/devices", {"url": first.format(old)})
            assert status in (200, 201)
            status, entry = await api.post("/api/v1/devices", {"url": again.format(new)})
            assert status == 200 and "2202" not in entry["url"], entry
            stored = (tmp_path / CREDENTIALS_FILE).read_text(encoding="utf-8")
            assert new in stored and old not in stored, "the corrected password replaces the old"
            audit = await api.get("/api/v1/audit")
            assert audit["items"][0]["action"] == "device.credentials"
        assert len(hub.devices.by_url) == 1


async def test_an_audit_log_written_before_passwords_moved_out_is_redacted_at_the_next_start(tmp_path: Path) -> None:
    """A version that kept device passwords in known_devices audited ``device.add`` with them in clear (the
    target, ``after``, the audit_by_target index), and GET /api/v1/audit served them to anyone. The next
    start rewrites those entries redacted and overwrites the old text in the file; the API redacts too."""
    secret, later = "OldSecretPw-2024", "Restored-Pa55-Bak"
    url = f"sennheiser-ssc2://127.0.0.1:23422?password={secret}"
    store = await Persistence.open(tmp_path, StateStore(), settings=quick_settings())
    insert = "INSERT INTO audit (id, at, source, action, target, before, after, result) VALUES (?, 0, ?, ?, ?, ?, ?, ?)"
    after = json.dumps({"url": url, "device_id": None, "added_at": 0.0, "source": "rest", "location_id": None})
    store.db.submit(insert, (1, "rest", "device.add", url, None, after, "ok"))
    store.db.submit(insert, (2, "rest", "location.create", "location/1", None, '{"name": "Stage"}', "ok"))
    # as the earlier version left it: schema 3, without the tables of later migrations
    store.db.submit("DELETE FROM schema_version WHERE version > 3")
    for migration in MIGRATIONS[3:]:
        for table in re.findall(r"CREATE TABLE (\w+)", migration):
            store.db.submit(f"DROP TABLE {table}")
    assert await store.db.sync()
    await store.close()
    assert any(secret.encode() in path.read_bytes() for path in tmp_path.glob("wmhub.sqlite3*"))  # noqa: ASYNC240

    config = fault_hub_config(tmp_path, [], "off")
    async with running_hub(config, plugins="sennheiser") as hub, Api(hub) as api:
        hub.persistence.db.submit(insert, (3, "rest", "device.add", url.replace(secret, later), None, None, "ok"))
        entries = (await api.get("/api/v1/audit?limit=50"))["items"]  # no token: open_reads
    assert secret not in str(entries) and later not in str(entries), entries
    masked = "sennheiser-ssc2://127.0.0.1:23422?password=***"
    assert [entry["target"] for entry in entries] == [masked, "location/1", masked]
    assert entries[2]["after"]["url"] == masked and entries[1]["after"] == {"name": "Stage"}
    holding = [path.name for path in tmp_path.glob("wmhub.sqlite3*") if secret.encode() in path.read_bytes()]  # noqa: ASYNC240
    assert holding == [], holding
