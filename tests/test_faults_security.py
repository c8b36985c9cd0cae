"""Secrets stay secret: device passwords and the MQTT password appear in no log line, MQTT topic or REST
answer, and the files holding secrets are readable by their owner only."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import aiohttp
import pytest
from paho.mqtt.client import topic_matches_sub
from wmhub_sennheiser.simulator.ssc2 import Ssc2Simulator
from wmhub_shure.simulator import ShureSimulator

from hub.auth import TOKEN_FILE
from hub.compose import compose_hub
from hub.config import HttpSettings, MqttSettings
from hub.redact import redact
from hub.testing import eventually
from tests.fault_harness import Api, hub_config, is_online, running_hub
from tests.mosquitto import MqttProbe, TestBroker
from tests.reliability_report import record_check

DEVICE_SECRET = "Dev1ce-S3cret-Pa55"
MQTT_SECRET = "Br0ker-S3cret"


async def test_no_secret_in_logs_mqtt_or_rest(
    mqtt_broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with Ssc2Simulator(password=DEVICE_SECRET) as sim:
        url = sim.url()
        assert DEVICE_SECRET in url  # the secret really travels in the device URL
        broker_url = f"mqtt://wmuser:{MQTT_SECRET}@{mqtt_broker.host}:{mqtt_broker.port}"
        config = hub_config(tmp_path, [url], broker_url)
        async with running_hub(config, plugins="sennheiser") as hub, MqttProbe(mqtt_broker) as probe:
            await probe.subscribe(f"{config.mqtt.base_topic}/#")
            await eventually(lambda: is_online(hub, url), 15, "SSCv2 device online")
            device = next(iter(hub.store.devices))
            async with aiohttp.ClientSession() as session:
                answers = []
                for path in ("/api/v1/devices", f"/api/v1/devices/{device}", "/api/health", "/metrics"):
                    async with session.get(f"http://127.0.0.1:{hub.web.port}{path}") as response:
                        answers.append(await response.text())
            await probe.json(f"{config.mqtt.base_topic}/hubs/{config.hub_id}/devices", lambda items: len(items) == 1)
            mqtt_text = "\n".join(payload.decode("utf-8", "replace") for _, payload in probe.messages)
        logs = "\n".join(record.getMessage() + str(getattr(record, "device", "")) for record in caplog.records)
    leaks = {
        where: any(secret in text for secret in (DEVICE_SECRET, MQTT_SECRET))
        for where, text in (("logs", logs), ("MQTT", mqtt_text), ("REST", "\n".join(answers)))
    }
    record_check(
        "Secrets",
        "an SSCv2 device password (in its URL) and the MQTT password in logs, MQTT topics, REST answers",
        "nowhere"
        if not any(leaks.values())
        else "LEAKED in " + ", ".join(where for where, bad in leaks.items() if bad),
    )
    assert not any(leaks.values()), leaks


def test_info_masks_the_mqtt_password(tmp_path: Path) -> None:
    for url in (f"mqtt://user:{MQTT_SECRET}@127.0.0.1:1883", f"mqtts://user:{MQTT_SECRET}@with@127.0.0.1:8883"):
        hub = compose_hub(hub_config(tmp_path, [], url))
        shown = str(hub.info())
        assert MQTT_SECRET not in shown and "with" not in shown, shown
    record_check("Secrets", "MQTT password (also one containing '@') in the hub's info topic", "masked")


async def test_generated_api_token_is_owner_only(tmp_path: Path) -> None:
    config = hub_config(tmp_path / "data", [], http=HttpSettings(port=0, token=None))
    async with running_hub(config, plugins="shure"):
        token_file = config.data_dir / TOKEN_FILE
        mode = stat.S_IMODE(token_file.stat().st_mode)
    record_check("Secrets", "generated API token file mode", oct(mode))
    assert mode == 0o600


async def test_stored_device_password_is_owner_only(tmp_path: Path) -> None:
    """A device added at run time is remembered with its URL, password included, in the credentials file
    only; it and the database files are readable by their owner only."""
    async with Ssc2Simulator(password=DEVICE_SECRET) as sim:
        config = hub_config(tmp_path / "data", [])
        async with running_hub(config, plugins="sennheiser") as hub, Api(hub) as api:
            status, _ = await api.post("/api/v1/devices", {"url": sim.url()})
            assert status in (200, 201)
            await eventually(lambda: is_online(hub, sim.url()), 15, "SSCv2 device online")
            assert hub.persistence is not None and await hub.persistence.db.sync()
            holders = {
                path.name: oct(stat.S_IMODE(path.stat().st_mode))
                for path in config.data_dir.iterdir()
                if path.is_file() and DEVICE_SECRET.encode() in path.read_bytes()
            }
            modes = {
                path.name: oct(stat.S_IMODE(path.stat().st_mode))
                for path in [*config.data_dir.glob("wmhub*"), *config.data_dir.glob("device-credentials*")]
            }
    record_check(
        "Secrets",
        "an SSCv2 password remembered with its device (data dir files, while running)",
        f"held in {sorted(holders) or 'no file'}; modes {modes}",
    )
    assert all(mode == "0o600" for mode in modes.values()), modes
    assert sorted(holders) == ["device-credentials.json"], holders


async def test_unpinned_self_signed_device_is_refused(tmp_path: Path) -> None:
    """TLS verification is on by default: an SSCv2 device with a self-signed certificate, neither pinned nor
    explicitly trusted, never comes online, and the reason is shown; pinning it lets it in."""
    async with Ssc2Simulator(password=DEVICE_SECRET) as sim:
        unpinned, pinned = sim.url(pin=False), sim.url()
        async with running_hub(hub_config(tmp_path, [unpinned, pinned]), plugins="sennheiser") as hub:
            await eventually(lambda: is_online(hub, pinned), 15, "the pinned device online")
            managed = hub.devices.find(redact(unpinned))
            assert managed is not None
            await eventually(lambda: managed.supervisor.last_error, 10, "a reason for the unpinned device")
            error = str(managed.supervisor.last_error)
            unpinned_online = is_online(hub, unpinned)
    record_check(
        "TLS",
        "SSCv2 device with a self-signed certificate, not pinned, verify not turned off",
        f"refused: {error.split(' (')[0]}; the same device pinned by fingerprint connects"
        if not unpinned_online
        else "ACCEPTED",
    )
    assert not unpinned_online and "certif" in error.lower()


def test_mqtt_tls_verification_is_on_by_default() -> None:
    settings = MqttSettings()
    record_check(
        "TLS", "MQTT broker certificate verification by default (mqtts://)", f"tls_insecure={settings.tls_insecure}"
    )
    assert settings.tls_insecure is False


async def test_mqtt_control_can_be_switched_off(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """With ``mqtt.control = false`` no set, get or request reaches the hub: it subscribes to none of their
    topics, and a broker sends a client only what it subscribed to (so there is nothing to wait for). With
    control on, the same hub does subscribe to them."""
    heard: dict[bool, list[str]] = {}
    async with ShureSimulator("ulxd4d") as sim:
        for control in (True, False):
            config = hub_config(tmp_path / str(control), [sim.url], mqtt_broker.url)
            config.mqtt.control = control
            async with running_hub(config, plugins="shure") as hub:
                base = config.mqtt.base_topic
                await eventually(lambda: is_online(hub, sim.url), 10, "device online")
                device_id = next(iter(hub.store.devices))
                published = f"{base}/devices/{device_id}"  # in the same call that subscribes its control topics
                await eventually(
                    lambda topic=published, hub=hub: topic in hub.mqtt.client.retained_topics,
                    10,
                    "the device published",
                )
                topics = [
                    f"{base}/devices/{device_id}/set",
                    f"{base}/devices/{device_id}/channels/1/set",
                    f"{base}/devices/{device_id}/channels/1/get",
                    f"{base}/hubs/{config.hub_id}/request/devices",
                ]
                listened = hub.mqtt.client.subscriptions
                heard[control] = [topic for topic in topics if any(topic_matches_sub(f, topic) for f in listened)]
    record_check(
        "MQTT",
        "control switched off (mqtt.control = false): set and bridge requests",
        "ignored (not subscribed)" if not heard[False] else "ACTED ON",
    )
    assert len(heard[True]) == 4, "with control on, the hub listens to every one of them"
    assert heard[False] == []
