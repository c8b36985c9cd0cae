"""Home Assistant and the broker across hub restarts, on a real Mosquitto: what a previous run published is
kept when it still holds, and removed (entities, retained topics) when the receiver no longer has it, however
late the receiver comes back; a removal leaves Home Assistant nothing to render an empty payload with.

Found by an outside audit running Home Assistant 2025.4.4 against the hub.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar
from unittest.mock import ANY

import orjson
import pytest
from wmhub_shure.simulator.core import ShureSimulator
from wmhub_shure.simulator.replay import ReplayDevice, Transcript

from hub import hookimpl
from hub.app import Hub
from hub.clock import SimulatedClock
from hub.drivers import Driver
from hub.hookspecs import DriverSpec
from hub.model import MAX_CHANNELS
from hub.mqtt import payloads
from hub.mqtt.presence import DEPARTED_GRACE_S
from hub.persistence.db import device_id_now
from hub.persistence.schema import MIGRATIONS
from hub.plugins import PluginHost
from hub.testing import eventually, plugin_host
from tests.fault_harness import until
from tests.mosquitto import MqttProbe, TestBroker, free_port
from tests.test_faults_startup import RunningHub, simulated_receivers
from tests.test_mqtt_bridge import example_receiver, online_device, running_hub
from tests.test_mqtt_homeassistant_lifecycle import (
    QUAD_REPORTED,
    TRANSCRIPTS,
    config_before_cleared_state,
    every_device_online,
    reported_channels,
    retained,
)

NETWORK_READINGS = ("ip_address", "mac_address")
T = TypeVar("T")


@asynccontextmanager
async def quad_then_dual() -> AsyncIterator[tuple[ReplayDevice, ReplayDevice]]:
    """A ULXD4Q answering now, and an SLXD4D to start at its address once it is gone (a swap at the rack)."""
    quad = await ReplayDevice(Transcript.load(TRANSCRIPTS / "ulxd.txt")).start()
    dual = ReplayDevice(Transcript.load(TRANSCRIPTS / "slxd.txt"), port=quad.port)
    try:
        yield quad, dual
    finally:
        await dual.stop()
        await quad.stop()


async def quad_reported(hub: Hub) -> str:
    """The ULXD4Q's id, once it has reported its channels."""
    device_id = await online_device(hub)
    await eventually(lambda: reported_channels(hub, device_id) == QUAD_REPORTED, 10, "its channels reported")
    return device_id


async def test_a_restart_keeps_the_entities_of_readings_the_receiver_has_not_reported_yet(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """Every restart deleted and re-created the entities made once the receiver reports them (IP address, MAC
    address, RF band, ...), so their entity ids and names given in Home Assistant were lost: the receiver had not
    reported them yet when the hub compared its config with the one kept from before. Here the receiver does not
    tell its network settings at all in the second run: still the same receiver, the entities stay."""
    host = plugin_host("wmhub-shure")
    async with ShureSimulator("slxd4d+", seed=7) as receiver:
        async with running_hub(mqtt_broker, tmp_path, [receiver.url], plugins=host, base="wmkeep") as hub:
            (device_id,) = await every_device_online(hub, 1)
            config_topic = f"homeassistant/device/{device_id}/config"
            async with MqttProbe(mqtt_broker) as probe:
                await probe.subscribe(config_topic)
                first = await probe.json(config_topic, lambda config: "mac_address" in config["components"], 10)
        entities = {key: first["components"][key] for key in NETWORK_READINGS}
        assert all(len(entity) > 1 for entity in entities.values())

        receiver.refused_params.add("NET_SETTINGS")
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe(config_topic)
            await probe.subscribe("wmkeep/hubs/hub1/response/#")
            probe.clear()  # the copy kept from the first run
            async with running_hub(mqtt_broker, tmp_path, [receiver.url], plugins=host, base="wmkeep") as hub:
                await every_device_online(hub, 1)
                # once the config kept from before is read, the second run's config names the readings
                await probe.json(config_topic, lambda config: "mac_address" in config["components"], 10)
                await probe.request("wmkeep/hubs/hub1/response/info", "wmkeep/hubs/hub1/request/info", {})
                assert hub.store.devices[device_id].mac_address is None, "the receiver has not told it"
                configs = [orjson.loads(payload) for topic, payload in probe.messages if topic == config_topic]
        # left out of a config for a moment (before the one kept from before is read) is kept by Home Assistant;
        # sent with their platform alone, they are deleted
        named = [{key: config["components"].get(key) for key in NETWORK_READINGS} for config in configs]
        assert all(names == entities for names in named if any(names.values())), named
        assert named[-1] == entities


async def test_a_receiver_swapped_while_the_hub_was_stopped_and_back_late_leaves_no_orphans(
    mqtt_broker: TestBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ULXD4Q replaced by an SLXD4D at its address while the hub was stopped, and powered on after the hub had
    stopped reading the configs kept from before: channels 3 and 4 and the ULX-D-only entities stayed in Home
    Assistant for good, and channels 3 and 4 on the broker."""
    # the retained configs and device list come within milliseconds of subscribing: a second is ample
    monkeypatch.setattr("hub.mqtt.bridge.PREVIOUS_CONFIGS_S", 1.0)
    host = plugin_host("wmhub-shure")
    async with quad_then_dual() as (quad, dual):
        async with running_hub(mqtt_broker, tmp_path, [quad.url], plugins=host, base="wmlate") as hub:
            device_id = await quad_reported(hub)
            config_topic = f"homeassistant/device/{device_id}/config"
            channels_topic = f"wmlate/devices/{device_id}/channels/"
            async with MqttProbe(mqtt_broker) as probe:
                await probe.subscribe(config_topic)
                quad_config = await probe.json(config_topic, lambda config: "ch4_name" in config["components"])
        await quad.stop()

        async with running_hub(mqtt_broker, tmp_path, [quad.url], plugins=host, base="wmlate") as hub:
            assert hub.mqtt is not None and hub.mqtt.client is not None
            every_config = hub.mqtt.topics.every_homeassistant_config
            await eventually(lambda: every_config not in hub.mqtt.client.subscriptions, 5, "the configs let go")  # type: ignore[union-attr]
            async with MqttProbe(mqtt_broker) as probe:
                await probe.subscribe("homeassistant/#")
                await probe.subscribe("wmlate/#")
                probe.clear()
                await dual.start()
                config = await probe.json(config_topic, lambda config: config["device"]["model"] == "SLXD4D", 30)
                entities = {key for key, component in config["components"].items() if len(component) > 1}
                gone = quad_config["components"].keys() - entities
                assert {"ch3_name", "ch4_name", "ch1_mute"} <= gone <= config["components"].keys()
                assert {key: config["components"][key] for key in gone} == {
                    key: {"platform": quad_config["components"][key]["platform"]} for key in gone
                }
                await eventually(lambda: not probe.latest.get(f"{channels_topic}4", b"x"), 10, "channel 4 cleared")
                config_before_cleared_state(probe.messages, config_topic, channels_topic)
            after = await retained(mqtt_broker, f"{channels_topic}+")
            assert sorted(after) == [f"{channels_topic}1", f"{channels_topic}2"]


async def test_channels_a_receiver_lost_between_runs_are_cleared_and_all_of_it_once_removed(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A ULXD4Q swapped for an SLXD4D while the hub was stopped kept channels 3 and 4 retained, and they stayed
    after the receiver was removed from the configuration: ghost channels for every MQTT consumer."""
    host = plugin_host("wmhub-shure")
    async with quad_then_dual() as (quad, dual):
        async with running_hub(mqtt_broker, tmp_path, [quad.url], plugins=host, base="wmswap") as hub:
            device_id = await quad_reported(hub)
        device_topic = f"wmswap/devices/{device_id}"
        assert len(await retained(mqtt_broker, f"{device_topic}/channels/+")) == len(QUAD_REPORTED)
        await quad.stop()
        await dual.start()
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe(f"{device_topic}/channels/+")
            async with running_hub(mqtt_broker, tmp_path, [dual.url], plugins=host, base="wmswap") as hub:
                await eventually(lambda: device_id in hub.store.devices, 10, "the SLXD4D identified")
                gone = (f"{device_topic}/channels/3", f"{device_topic}/channels/4")
                await eventually(
                    lambda: all(probe.latest.get(topic) == b"" for topic in gone), 10, "channels 3, 4 cleared"
                )
                assert sorted(await retained(mqtt_broker, f"{device_topic}/channels/+")) == [
                    f"{device_topic}/channels/1",
                    f"{device_topic}/channels/2",
                ]
        await dual.stop()

        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe("homeassistant/#")
            await probe.subscribe("wmswap/#")
            probe.clear()
            async with running_hub(mqtt_broker, tmp_path, [], base="wmswap"):
                config_topic = f"homeassistant/device/{device_id}/config"
                await eventually(lambda: probe.latest.get(f"{device_topic}/channels/2") == b"", 10, "cleared")
                config_before_cleared_state(probe.messages, config_topic, device_topic)
                assert probe.latest[config_topic] == b""
        assert await retained(mqtt_broker, f"{device_topic}/#") == {}
        assert await retained(mqtt_broker, f"{device_topic}") == {}


async def test_a_removed_receiver_leaves_home_assistant_no_entity_to_render_an_empty_payload(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """Removing a receiver filled Home Assistant's log with template errors ('value_json' is undefined), one per
    entity: its state topics were cleared before its discovery config."""
    server, url = await example_receiver("EXREMOVE")
    try:
        async with (
            running_hub(mqtt_broker, tmp_path, [url], base="wmremove") as hub,
            MqttProbe(mqtt_broker) as probe,
        ):
            device_id = await online_device(hub)
            config_topic = f"homeassistant/device/{device_id}/config"
            await probe.subscribe("homeassistant/#")
            await probe.subscribe("wmremove/#")
            await probe.json(config_topic)
            probe.clear()
            assert await hub.remove_device(device_id, source="test")
            await eventually(lambda: probe.latest.get(f"wmremove/devices/{device_id}/channels/1") == b"", 10, "cleared")
            config_before_cleared_state(probe.messages, config_topic, f"wmremove/devices/{device_id}")
            assert probe.latest[config_topic] == b""
    finally:
        server.close()


async def test_a_receiver_down_for_a_whole_run_stays_listed_and_is_cleared_once_removed(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A receiver down for a whole run was left out of the hub's device list, so a later start, with it removed
    from the configuration, did not know it had been this hub's: its retained topics stayed for good."""
    host = plugin_host("wmhub-shure")
    async with ShureSimulator("ulxd4d", seed=3) as receiver:
        url = receiver.url
        async with running_hub(mqtt_broker, tmp_path, [url], plugins=host, base="wmdown") as hub:
            device_id = await online_device(hub)
    device_topic = f"wmdown/devices/{device_id}"
    assert await retained(mqtt_broker, f"{device_topic}/channels/+")

    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("wmdown/hubs/hub1/devices")
        await probe.json("wmdown/hubs/hub1/devices")  # the first run's, retained
        probe.clear()
        async with running_hub(mqtt_broker, tmp_path, [url], plugins=host, base="wmdown"):
            listed = await probe.json(
                "wmdown/hubs/hub1/devices", lambda entries: any(e["id"] == device_id for e in entries), 10
            )
    (entry,) = [entry for entry in listed if entry["id"] == device_id]
    assert (entry["online"], entry["channel_count"], entry["url"]) == (False, 2, url)

    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("wmdown/#")
        async with running_hub(mqtt_broker, tmp_path, [], base="wmdown"):
            await eventually(lambda: probe.latest.get(f"{device_topic}/channels/2") == b"", 10, "cleared")
    assert await retained(mqtt_broker, f"{device_topic}/#") == {}
    assert await retained(mqtt_broker, device_topic) == {}


async def test_a_receiver_down_since_the_start_is_listed_with_its_channels_and_nothing_made_up_is_published(
    mqtt_broker: TestBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver down when the hub starts is in the hub's state from the start, offline with the channels and
    names it had (hub.devices keeps its identity): on MQTT its device list entry has its channel count, Home
    Assistant's config is the one it had, and its channel topics stay the previous run's, nothing this run made
    up (a channel the receiver has not reported is not published)."""
    monkeypatch.setattr("hub.mqtt.bridge.PREVIOUS_CONFIGS_S", 1.0)
    host = plugin_host("wmhub-shure")
    async with ShureSimulator("ulxd4q", seed=5) as receiver:
        url = receiver.url
        receiver.set_name(2, "Vocal")
        async with running_hub(mqtt_broker, tmp_path, [url], plugins=host, base="wmkept") as hub:
            device_id = await online_device(hub)
            await eventually(lambda: len(reported_channels(hub, device_id)) == 4, 10, "its channels reported")
    device_topic = f"wmkept/devices/{device_id}"
    config_topic = f"homeassistant/device/{device_id}/config"
    channels_before = await retained(mqtt_broker, f"{device_topic}/channels/+")
    (config_before,) = (await retained(mqtt_broker, config_topic)).values()
    assert len(channels_before) == 4

    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("wmkept/#")
        probe.clear()
        async with running_hub(mqtt_broker, tmp_path, [url], plugins=host, base="wmkept") as hub:
            device = hub.store.devices[device_id]
            assert (device.online, [channel.name for channel in device.channels][1]) == (False, "Vocal")
            assert hub.mqtt is not None and hub.mqtt.client is not None
            every_config = hub.mqtt.topics.every_homeassistant_config
            await eventually(lambda: every_config not in hub.mqtt.client.subscriptions, 5, "the configs let go")  # type: ignore[union-attr]
            listed = await probe.json("wmkept/hubs/hub1/devices", lambda entries: len(entries) == 1, 10)
            assert [(entry["id"], entry["online"], entry["channel_count"]) for entry in listed] == [
                (device_id, False, 4)
            ]
        published_channels = [topic for topic, _ in probe.messages if topic.startswith(f"{device_topic}/channels/")]
        assert published_channels == [], "a channel the receiver has not reported this run is not published"
    assert await retained(mqtt_broker, f"{device_topic}/channels/+") == channels_before
    assert orjson.loads((await retained(mqtt_broker, config_topic))[config_topic]) == orjson.loads(config_before)


async def what_a_consumer_sees(broker: TestBroker, base: str, device_id: str) -> dict[str, object]:
    """A receiver as a client connecting now finds it on the broker: its availability, whether its device state
    says online, its channel count there, each retained channel state by number, and its Home Assistant entities."""
    topics = await retained(broker, f"{base}/devices/{device_id}/#")
    device = orjson.loads(topics.get(f"{base}/devices/{device_id}", b"{}"))
    config_topic = f"homeassistant/device/{device_id}/config"
    config = orjson.loads((await retained(broker, config_topic)).get(config_topic, b"{}"))
    prefix = f"{base}/devices/{device_id}/channels/"
    return {
        "availability": topics.get(f"{base}/devices/{device_id}/availability"),
        "online": device.get("online"),
        "channel_count": device.get("channel_count"),
        "channels": {
            int(topic[len(prefix) :]): orjson.loads(payload)
            for topic, payload in topics.items()
            if topic.startswith(prefix) and "/" not in topic[len(prefix) :]
        },
        "entities": sorted(key for key, component in config.get("components", {}).items() if len(component) > 1),
    }


async def test_a_receiver_down_since_the_start_shows_as_one_that_went_down_while_the_hub_ran(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """Two receivers, both offline on the broker: one down since before the hub started, one that went down while it
    ran. A consumer must not be able to tell them apart: each says offline (availability and device state), keeps
    its channel topics with the names and last state the receiver reported, and its Home Assistant entities; and
    so after the broker restarts without persistence (or a cluster fails over to a node that never had them), when
    the hub puts back what it keeps. The receiver down since the start lost every channel topic there: the hub had
    never published them this run, so it did not put them back, and Node-RED and the fleet board lost its channels
    and their names while the one that went down while the hub ran kept them."""
    host = plugin_host("wmhub-shure")
    base = "wmbothdown"
    async with ShureSimulator("ulxd4q", seed=5) as early, ShureSimulator("ulxd4q", seed=6) as late:
        early.set_name(2, "Vocal")
        late.set_name(2, "Guitar")
        urls = [early.url, late.url]
        async with running_hub(mqtt_broker, tmp_path, urls, plugins=host, base=base) as hub:
            await every_device_online(hub, 2)
            ids = {device.port: device.id for device in hub.store.devices.values()}
            early_id, late_id = ids[early.port], ids[late.port]
            for device_id in ids.values():
                await eventually(lambda: len(reported_channels(hub, device_id)) == 4, 10, "its channels reported")  # noqa: B023
        early_last = await what_a_consumer_sees(mqtt_broker, base, early_id)
        assert early_last["channels"][2]["name"] == "Vocal"  # type: ignore[index]
        await early.stop()  # down before the hub starts again

        async with running_hub(mqtt_broker, tmp_path, urls, plugins=host, base=base) as hub:
            await eventually(lambda: hub.store.devices[late_id].online, 20, "the other receiver online again")
            await eventually(lambda: len(reported_channels(hub, late_id)) == 4, 10, "its channels reported")
            await late.stop()  # down while the hub runs
            await eventually(lambda: not hub.store.devices[late_id].online, 20, "that receiver offline")
            late_last = await what_a_consumer_sees(mqtt_broker, base, late_id)
            assert late_last["channels"][2]["name"] == "Guitar"  # type: ignore[index]
            expected = {early_id: early_last, late_id: late_last}
            for last in expected.values():
                last.update({"availability": b"offline", "online": False, "channel_count": 4})
                assert len(last["entities"]) > 4, last["entities"]  # type: ignore[arg-type]
            seen: dict[str, dict[str, object]] = {}

            async def consumer_sees(wanted: dict[str, dict[str, object]]) -> bool:
                for device_id in wanted:
                    seen[device_id] = await what_a_consumer_sees(mqtt_broker, base, device_id)
                return seen == wanted

            assert await consumer_sees(expected), seen

            await mqtt_broker.restart()  # no persistence: every retained message is gone
            with suppress(AssertionError):
                await until(lambda: consumer_sees(expected), 20, "the hub's retained topics put back")
            assert seen[late_id] == expected[late_id], "what the hub keeps of a receiver that went down is put back"
            assert seen[early_id] == expected[early_id], "the receiver down since the start must look the same"

            # the user names a channel of each on the board: the name goes on the state each receiver last reported
            for device_id in expected:
                await hub.rename_channel(device_id, 3, "Lead Vox", "test")
            renamed = {device_id: {**last, "channels": {**last["channels"]}} for device_id, last in expected.items()}  # type: ignore[dict-item]
            stamps: dict[str, object] = {}
            for device_id, last in renamed.items():
                channels = last["channels"]
                assert isinstance(channels, dict)
                before = channels[3]
                channels[3] = {**before, "extended_name": "Lead Vox", "updated_at": ANY}
                stamps[device_id] = before["updated_at"]
            with suppress(AssertionError):
                await until(lambda: consumer_sees(renamed), 10, "the extended names on MQTT")
            assert seen == renamed, "each channel state keeps what its receiver last reported, with the new name"
            for device_id, stamp in stamps.items():
                channel = seen[device_id]["channels"][3]  # type: ignore[index]
                assert channel["updated_at"] > stamp, "a change of any field, the extended name too, is its last change"
            # and the hub makes up no report of the receiver's: the board shows no reading for its channels
            assert hub.store.devices[early_id].channels[2].updated_at is None


@contextmanager
def wmhub_process(config: Path, log: Path) -> Iterator[RunningHub]:
    """``wmhub run --config`` as a child process, its log in ``log``, serving HTTP; stopped (SIGTERM) at the end."""
    port = int(re.search(r"port = (\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "run", "--config", str(config)], stdout=output, stderr=output, text=True
        )
    hub = RunningHub(port, process)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            with suppress(OSError):
                if hub.get("/api/health")[0] in (200, 503):
                    break
            assert time.monotonic() < deadline, "the hub did not answer HTTP in time"
            time.sleep(0.1)
        yield hub
    finally:
        process.terminate()
        process.wait(30)


def hub_toml(tmp_path: Path, broker: TestBroker, name: str, devices: list[str]) -> Path:
    config = tmp_path / name
    config.write_text(
        f'hub_id = "venue"\ndata_dir = "{tmp_path / "data"}"\ndevices = {json.dumps(devices)}\n'
        f'[mqtt]\nurl = "{broker.url}"\nhomeassistant = true\n'
        f'[http]\nhost = "127.0.0.1"\nport = {free_port()}\n[discovery]\nenabled = false\n'
    )
    return config


def online_ids(hub: RunningHub) -> set[str]:
    status, body = hub.get("/api/v1/devices")
    return {device["id"] for device in json.loads(body)["items"] if device["online"]} if status == 200 else set()


async def test_the_first_start_after_an_upgrade_on_a_locked_database_keeps_every_device_in_home_assistant(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """The first start after an upgrade (the file one schema older) on a database another program holds locked
    read an empty stand-in instead of a copy: it watched none of the receivers added over REST and, within a
    second, cleared their retained Home Assistant configs as gone (Home Assistant deleted the devices, with the
    user's entity names and areas). Now the copy is migrated and read; a receiver of the previous run the store
    does not have is left on the broker (the file may still remember it); and one the file remembers that the
    stand-in lacked (written there while it was locked) is watched once the file opens, without a restart."""
    with simulated_receivers(3) as (added_over_rest, from_the_config_file, added_while_locked):
        first_run = hub_toml(tmp_path, mqtt_broker, "first.toml", [from_the_config_file])
        with wmhub_process(first_run, tmp_path / "first.log") as hub:
            token = (tmp_path / "data" / "api-token").read_text().strip()
            assert hub.post("/api/v1/devices", json.dumps({"url": added_over_rest}), token)[0] in (200, 201, 202)
            ids = await eventually(lambda: len(online_ids(hub)) == 2 and online_ids(hub), 20, "both online")
            configs = {f"homeassistant/device/{device_id}/config" for device_id in ids}
            await eventually_async(lambda: retained_configs(mqtt_broker), configs.__le__, "their configs retained")
        # the database as the build before the last migration left it, and another program holding it locked
        # while it writes a receiver the stand-in will not have
        database = sqlite3.connect(tmp_path / "data" / "wmhub.sqlite3", isolation_level=None)
        try:
            undo_the_last_migration(database)
            database.execute("PRAGMA locking_mode = EXCLUSIVE")
            database.execute("BEGIN EXCLUSIVE")
            database.execute(
                "INSERT INTO known_devices (url, added_at, source) VALUES (?, ?, 'api')",
                (added_while_locked, time.time()),
            )
            second_run = hub_toml(tmp_path, mqtt_broker, "second.toml", [])  # the config file's receiver taken out
            with wmhub_process(second_run, tmp_path / "second.log") as hub:
                rest_id = (ids - {device_id_of(from_the_config_file)}).pop()
                await eventually(lambda: rest_id in online_ids(hub), 20, "the receiver added over REST watched")
                assert '"status":"degraded"' in hub.get("/api/health")[1].replace(" ", "")
                decided = ("are left, as they may still be remembered", "previous run is gone: clearing")
                log = (tmp_path / "second.log").read_text
                await eventually(lambda: any(it in log() for it in decided), 30, "the previous run's receivers decided")
                assert await retained_configs(mqtt_broker) >= configs
                database.execute("COMMIT")
                database.close()
                found = await eventually(lambda: online_ids(hub) - {rest_id}, 30, "the receiver the file remembers")
                assert found == {device_id_of(added_while_locked)}
                assert '"status":"ok"' in hub.get("/api/health")[1].replace(" ", "")
        finally:
            database.close()


def device_id_of(url: str) -> str:
    """The id the hub gives a simulator at ``url`` (its host and port)."""
    return "shure-" + url.split("://")[1].replace(".", "_").replace(":", "_")


async def retained_configs(broker: TestBroker) -> set[str]:
    return {topic for topic in await retained(broker, "homeassistant/device/+/config") if "wmhub_hub" not in topic}


async def eventually_async(
    read: Callable[[], Awaitable[T]], good: Callable[[T], bool], what: str, timeout: float = 20.0
) -> T:
    deadline = time.monotonic() + timeout
    while not good(value := await read()):
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what} (last: {value!r})"
        await asyncio.sleep(0.2)
    return value


def undo_the_last_migration(database: sqlite3.Connection) -> None:
    """The file as the build before the last migration left it: the tables that migration creates dropped and
    its version row deleted (a migration of another kind needs its own undoing here)."""
    created = re.findall(r"CREATE TABLE (\w+)", MIGRATIONS[-1])
    # 7 only moves drivers' memories from URL to device id: with none kept, there is nothing to undo
    moves_memories = re.fullmatch(
        r"\s*DELETE FROM device_memory .*UPDATE OR REPLACE device_memory\s.*", MIGRATIONS[-1], re.S
    )
    # 8 only rewrites ids that hold invisible format characters: with none stored, there is nothing to undo
    rewrites_ids = "wmhub_device_id(" in MIGRATIONS[-1] and not re.search(r"CREATE TABLE|ALTER", MIGRATIONS[-1])
    if moves_memories:
        assert database.execute("SELECT count(*) FROM device_memory").fetchone()[0] == 0, "undo this migration by hand"
    elif rewrites_ids:
        ids = database.execute("SELECT device_id FROM known_devices UNION SELECT device_id FROM history_series")
        assert all(device_id_now(device_id) == device_id for (device_id,) in ids), "undo this migration by hand"
    else:
        assert created and not re.search(r"ALTER|INSERT|UPDATE|DELETE", MIGRATIONS[-1]), "undo this migration by hand"
    for table in created:
        database.execute(f"DROP TABLE {table}")
    database.execute("DELETE FROM schema_version WHERE version = ?", (len(MIGRATIONS),))


class SlotsDriver(Driver):
    """A base station identified with one channel whose packs pair in any slot (docs/plugins.md: "an update to a
    higher channel adds it"): it reports the slots its URL names (``slots://127.0.0.1:1?slots=1,5``), and a pack
    paired while it runs in slot ``later`` once the file ``when`` exists (``?slots=1&later=5&when=/tmp/pair``),
    with its name, frequency and battery."""

    async def connect(self) -> None:
        self.sink.identify(unique_id="BASE1", family="slots", model="SLOTS", channel_count=1)
        for slot in self.endpoint.options["slots"].split(","):
            self.sink.update_channel(int(slot), {"name": f"Pack {slot}", "tx_present": True})

    async def run(self) -> None:
        later, when = self.endpoint.options.get("later"), self.endpoint.options.get("when")
        while True:  # its keepalive
            self.sink.heard()
            if later is not None and when is not None and await asyncio.to_thread(Path(when).exists):
                fields = {"name": f"Pack {later}", "tx_present": True, "frequency_mhz": 555.5, "battery_percent": 80}
                self.sink.update_channel(int(later), fields)
                later = None
            await asyncio.sleep(0.1 if later is not None else 1)

    async def close(self) -> None:
        pass


class SlotsPlugin:
    @hookimpl
    def register_drivers(self, register: Callable[[DriverSpec], None]) -> None:
        register(DriverSpec(scheme="slots", vendor="slots", families=("slots",), factory=SlotsDriver, default_port=1))


SLOTS_ID = "slots-BASE1"


def slots_host() -> PluginHost:
    host = PluginHost()
    host.register(SlotsPlugin(), "wmhub-slots", "1.0")
    return host


async def packs_in_slots(broker: TestBroker, tmp_path: Path, base: str, slots: str) -> str:
    """One run of a hub with the base station, until the packs in ``slots`` are on the broker: its device topic."""
    device_topic = f"{base}/devices/{SLOTS_ID}"
    async with running_hub(
        broker, tmp_path, [f"slots://127.0.0.1:1?slots={slots}"], plugins=slots_host(), base=base
    ) as hub:
        wanted = [int(slot) for slot in slots.split(",")]
        await eventually(lambda: reported_channels(hub, SLOTS_ID) == wanted, 10, "the packs reported")
    # the hub's last list is sent before it stops: it names the device as the next run reads it
    assert sorted(await retained(broker, f"{device_topic}/channels/+")) == [
        f"{device_topic}/channels/{slot}" for slot in wanted
    ]
    return device_topic


def entities_of_channel(config: dict[str, Any], index: int) -> list[str]:
    """The components of a channel in a device's Home Assistant config that are entities (a component sent with
    its platform alone is one Home Assistant removes)."""
    return [
        key for key, component in config["components"].items() if key.startswith(f"ch{index}_") and len(component) > 1
    ]


async def test_a_channel_above_the_count_is_cleared_with_a_receiver_removed_between_runs(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A pack paired in slot 5 of a base identified with one channel: once the base was removed from the
    configuration while the hub was stopped, the next start cleared channels 1 and 2 (its channel count in the
    previous run's list) and left channel 5 retained for good, a ghost for every MQTT consumer."""
    device_topic = await packs_in_slots(mqtt_broker, tmp_path, "wmslots", "1,5")
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("wmslots/#")
        async with running_hub(mqtt_broker, tmp_path, [], base="wmslots"):
            await eventually(lambda: probe.latest.get(f"{device_topic}/channels/1") == b"", 20, "channel 1 cleared")
    assert await retained(mqtt_broker, f"{device_topic}/#") == {}
    assert await retained(mqtt_broker, device_topic) == {}
    assert await retained(mqtt_broker, f"homeassistant/device/{SLOTS_ID}/config") == {}


async def test_a_channel_above_the_count_a_receiver_lost_between_runs_is_cleared(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """The pack in slot 5 unpaired while the hub was stopped, on a hub that lost its database (a new machine):
    only the previous run's list on the broker tells what it had, and its channel count (2) left slot 5's topic
    retained, a channel the base no longer has."""
    device_topic = await packs_in_slots(mqtt_broker, tmp_path / "first", "wmunpaired", "1,5")
    config_topic = f"homeassistant/device/{SLOTS_ID}/config"
    url = "slots://127.0.0.1:1?slots=1"
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe(f"{device_topic}/channels/+")
        await probe.subscribe(config_topic)
        async with running_hub(mqtt_broker, tmp_path / "second", [url], plugins=slots_host(), base="wmunpaired"):
            await eventually(lambda: probe.latest.get(f"{device_topic}/channels/5") == b"", 20, "channel 5 cleared")
            # and Home Assistant removes the channel's entities: sent with their platform alone
            await probe.json(config_topic, lambda config: entities_of_channel(config, 5) == [], 20)
            config = orjson.loads(probe.latest[config_topic])
            assert entities_of_channel(config, 1) and "ch5_name" in config["components"]
    assert sorted(await retained(mqtt_broker, f"{device_topic}/channels/+")) == [f"{device_topic}/channels/1"]


async def test_the_channels_a_previous_runs_list_names_are_cleared_and_only_real_channel_numbers(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """The channel numbers in the previous run's list (any client allowed to write the hub's topics can leave one)
    are cleared when the device is gone; what is no channel number is left out; a list an older hub left, with
    the channel count alone, still clears channels 1 to that count."""
    clock = SimulatedClock()
    new, old = "wmnumbers/devices/example-EXNEW", "wmnumbers/devices/example-EXOLD"
    listed = [
        {"id": "example-EXNEW", "channel_count": 2, "channel_indexes": [2, 7, 0, 5000, "3", True, 7]},
        {"id": "example-EXOLD", "channel_count": 2},  # an older hub's
    ]
    left = [f"{new}/channels/{index}" for index in (2, 7)] + [f"{old}/channels/{index}" for index in (1, 2)]
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("wmnumbers/#")
        probe.publish("wmnumbers/hubs/hub1/devices", listed, retain=True)
        for topic in left:
            probe.publish(topic, {"index": int(topic.rpartition("/")[2])}, retain=True)
        async with running_hub(mqtt_broker, tmp_path, [], base="wmnumbers", clock=clock):
            await probe.message(f"{new}/availability", lambda payload: payload == b"offline")
            clock.advance(DEPARTED_GRACE_S)
            for topic in left:
                await probe.message(topic, lambda payload: payload == b"")
            await probe.request("wmnumbers/hubs/hub1/response/info", "wmnumbers/hubs/hub1/request/info", {})
        cleared = {topic for topic, payload in probe.messages if topic.startswith(f"{new}/channels/") and not payload}
    assert cleared == {f"{new}/channels/2", f"{new}/channels/7"}
    assert await retained(mqtt_broker, "wmnumbers/devices/#") == {}


def test_a_device_carried_in_the_list_keeps_its_channel_numbers() -> None:
    """A receiver down for a whole run (listed as the previous run's list had it) keeps the channel numbers that list
    gave, so a later start clears each of its channel topics should it be removed meanwhile."""
    entry = {"id": "slots-BASE1", "vendor": "slots", "host": "127.0.0.1", "port": 1, "channel_count": 2}
    previous = orjson.dumps([{**entry, "channel_indexes": [1, 5], "url": "slots://127.0.0.1:1"}])
    carried = payloads.carried_entries(previous)["slots-BASE1"]
    assert (carried["channel_count"], carried["channel_indexes"]) == (2, [1, 5])
    assert payloads.listed_channels(orjson.dumps([carried])) == {"slots-BASE1": (1, 5)}
    # as an older hub listed it: channels 1 to the count
    older = payloads.carried_entries(orjson.dumps([entry]))["slots-BASE1"]
    assert payloads.listed_channels(orjson.dumps([older])) == {"slots-BASE1": (1, 2)}


async def test_a_channel_above_the_count_is_cleared_with_a_receiver_removed_while_the_hub_runs(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """Removed while the hub runs (REST, the device/remove request), the base leaves no channel topic either."""
    device_topic = "wmslotsnow/devices/" + SLOTS_ID
    url = "slots://127.0.0.1:1?slots=1,5"
    async with running_hub(mqtt_broker, tmp_path, [url], plugins=slots_host(), base="wmslotsnow") as hub:
        await eventually(lambda: reported_channels(hub, SLOTS_ID) == [1, 5], 10, "the packs reported")
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe(f"{device_topic}/channels/5")
            await probe.json(f"{device_topic}/channels/5")
            assert await hub.remove_device(SLOTS_ID, source="test")
            await probe.message(f"{device_topic}/channels/5", lambda payload: payload == b"")
    assert await retained(mqtt_broker, f"{device_topic}/#") == {}
    assert await retained(mqtt_broker, device_topic) == {}


async def test_a_gone_id_of_the_same_home_assistant_form_as_a_device_of_this_run_leaves_its_config(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """The previous run listed ``example-A<U+200E>B`` (an older build kept the invisible character in the id; the
    receiver is ``example-A_B`` now) and ``example-A.B`` (removed while the hub was stopped): both have the Home
    Assistant config topic of ``example-A_B``, a receiver of this run. Clearing what the gone ids left cleared
    that config too, and Home Assistant deleted an online receiver's device with the user's names and areas."""
    clock = SimulatedClock()
    base = "wmsameform"
    server, url = await example_receiver("A_B")
    gone = ["example-A\u200eB", "example-A.B"]
    config_topic = "homeassistant/device/example-A_B/config"
    left = [f"{base}/devices/{device_id}/channels/1" for device_id in gone]
    try:
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe("#")
            listed = [{"id": device_id, "channel_count": 1} for device_id in [*gone, "example-A_B"]]
            probe.publish(f"{base}/hubs/hub1/devices", listed, retain=True)
            for topic in left:
                probe.publish(topic, {"index": 1}, retain=True)
            async with running_hub(mqtt_broker, tmp_path, [url], base=base, clock=clock) as hub:
                assert await online_device(hub) == "example-A_B"
                await probe.json(config_topic, lambda config: "components" in config)
                clock.advance(DEPARTED_GRACE_S)
                for topic in left:  # the gone ids' own topics are cleared
                    await probe.message(topic, lambda payload: payload == b"")
                await probe.request(f"{base}/hubs/hub1/response/info", f"{base}/hubs/hub1/request/info", {})
                cleared = [topic for topic, payload in probe.messages if not payload]
                assert config_topic not in cleared
            after = await retained(mqtt_broker, config_topic)
        assert orjson.loads(after[config_topic])["device"]["identifiers"]
    finally:
        server.close()


async def test_a_removed_base_an_older_hub_listed_by_count_leaves_no_channel_above_it(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A base with packs in slots 1 and 5, listed by a hub before channel_indexes (``channel_count`` 2 alone) and
    removed from the configuration at the upgrade: the new hub cleared channels 1 and 2 and left channel 5
    retained for good. The channel topics retained under a gone device are read and cleared: those numbered 1 to
    MAX_CHANNELS only (anyone allowed to write there may leave others; they are not the hub's, and bound what it
    reads)."""
    base = "wmolderlist"
    device_topic = await packs_in_slots(mqtt_broker, tmp_path, base, "1,5")
    list_topic = f"{base}/hubs/hub1/devices"
    (older,) = [
        {key: value for key, value in entry.items() if key != "channel_indexes"}
        for entry in orjson.loads((await retained(mqtt_broker, list_topic))[list_topic])
    ]
    assert older["channel_count"] == 2
    not_channels = [f"{device_topic}/channels/{level}" for level in ("0", "abc", str(MAX_CHANNELS + 1), "7/x")]
    async with MqttProbe(mqtt_broker) as probe:
        # as the older hub left it; with ids no hub gives, naming no topics (a '+' would read every device's)
        wildcards = [{"id": device_id, "channel_count": 1} for device_id in ("+", "slots-#")]
        probe.publish(list_topic, [older, *wildcards], retain=True)
        for topic in not_channels:
            probe.publish(topic, {"index": 1}, retain=True)
        probe.publish(f"{device_topic}/channels/{MAX_CHANNELS}", {"index": MAX_CHANNELS}, retain=True)
        await probe.subscribe(f"{base}/#")
        async with running_hub(mqtt_broker, tmp_path, [], base=base):
            await eventually(lambda: probe.latest.get(f"{device_topic}/channels/1") == b"", 20, "channel 1 cleared")
            await probe.request(f"{base}/hubs/hub1/response/info", f"{base}/hubs/hub1/request/info", {})
        cleared = {topic for topic, payload in probe.messages if topic.startswith(device_topic) and not payload}
    assert {f"{device_topic}/channels/{index}" for index in (5, MAX_CHANNELS)} <= cleared
    assert not cleared & set(not_channels), "what is no channel number of the hub's is not its to clear"
    assert set(await retained(mqtt_broker, f"{device_topic}/#")) == set(not_channels)
    assert await retained(mqtt_broker, device_topic) == {}
