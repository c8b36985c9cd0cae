"""The MQTT edge when things go wrong: broker restarted without persistence, hub killed with SIGKILL,
and the embedded broker the demo runs without any installation."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import orjson
import pytest
from wmhub_shure.simulator import ShureSimulator

from hub.mqtt.retained import expand
from hub.testing import eventually
from tests.mosquitto import MqttProbe, TestBroker, free_port
from tests.test_mqtt_bridge import bridge_of, listening_to, online_device, receiver, running_hub

__all__ = ["receiver"]  # the fixture, imported so pytest finds it here


async def retained_snapshot(
    broker: TestBroker, topic_filter: str, expected: int, including: AbstractSet[str] = frozenset()
) -> dict[str, bytes]:
    """What a newcomer gets: the broker's retained messages under ``topic_filter`` (at least ``expected``,
    and every topic of ``including``: the broker delivers retained messages in no particular order)."""
    async with MqttProbe(broker, client_id="wmhub-test-snapshot") as probe:
        await probe.subscribe(topic_filter)
        await eventually(
            lambda: len(probe.latest) >= expected and including <= probe.latest.keys(),
            10,
            f"{expected} retained topics",
        )
        return {topic: payload for topic, payload in probe.latest.items() if payload}


@pytest.mark.mosquitto_only("stops or restarts its broker; the RabbitMQ node is shared by the session")
async def test_broker_restart_without_persistence_gets_every_retained_topic_back(
    mqtt_broker: TestBroker, tmp_path: Path, receiver: str
) -> None:
    async with running_hub(mqtt_broker, tmp_path, [receiver]) as hub:
        base = hub.config.mqtt.base_topic
        device_id = await online_device(hub)
        client = bridge_of(hub).client
        assert client is not None
        channel_topic = f"{base}/devices/{device_id}/channels/1"
        await eventually(lambda: b'"Lead"' in client.retained_topics.get(channel_topic, (b"",))[0], 5, "named channel")
        expected = {topic: expand(payload) for topic, (payload, _) in client.retained_topics.items()}
        assert len(expected) >= 7  # hub state, info, devices; device, availability, channel; HA config
        before = await retained_snapshot(mqtt_broker, "#", len(expected))
        assert before == expected

        connects = client.connects
        await mqtt_broker.restart()
        restarted_with = await retained_snapshot(mqtt_broker, "#", 0)
        # the hub may have reconnected (and put its topics back) before the snapshot's probe subscribed
        assert restarted_with == {} or client.connects > connects, "the restarted broker starts empty"
        await eventually(lambda: client.connects > connects, 10, "the hub reconnected")
        # what the hub holds retained now: on a loaded machine its first frequency check can publish the plan
        # after the first snapshot was taken, and a list it republishes can change while a snapshot is read
        deadline = time.monotonic() + 15
        while True:
            held = {topic: expand(payload) for topic, (payload, _) in client.retained_topics.items()}
            after = await retained_snapshot(mqtt_broker, "#", len(held))
            if after == held or time.monotonic() > deadline:
                break
        assert after == held
        assert before.keys() <= after.keys()

        # subscriptions are back too: control works after the reconnect
        await listening_to(hub, device_id)
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe(f"{base}/#")
            response = await probe.request(
                f"{base}/hubs/hub1/response/set", f"{base}/devices/{device_id}/channels/1/set", {"name": "Again"}
            )
            assert response["status"] == "ok"


async def start_hub_process(
    broker: TestBroker, data_dir: Path, devices: Sequence[str] = ("--demo",), hub_id: str = "killed"
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "run", *devices, "--mqtt", broker.url,
        "--http", f"127.0.0.1:{free_port()}", "--data-dir", str(data_dir), "--hub-id", hub_id,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def every_demo_device_online(probe: MqttProbe) -> list[dict[str, Any]]:
    """The hub's device list once it holds every device the hub was configured with, all online."""
    info = await probe.json("wmhub/hubs/killed/info", timeout=30)
    count = info["config"]["devices"]
    assert count >= 4, info
    devices: list[dict[str, Any]] = await probe.json(
        "wmhub/hubs/killed/devices", lambda value: len(value) == count and all(d["online"] for d in value), 30
    )
    return devices


@pytest.mark.mosquitto_only(
    "counts every retained topic through a wildcard subscription; RabbitMQ 3.x serves retained messages only to"
    " subscriptions naming the exact topic"
)
async def test_hub_killed_leaves_its_last_will_and_comes_back_complete(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    state_topic = "wmhub/hubs/killed/state"
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("wmhub/#")
        hub = await start_hub_process(mqtt_broker, tmp_path)
        try:
            devices = await every_demo_device_online(probe)
            first_devices = devices
            channels = {
                f"wmhub/devices/{d['id']}/channels/{i}" for d in devices for i in range(1, d["channel_count"] + 1)
            }
            await eventually(lambda: channels <= set(probe.latest), 10, "every demo channel published")
            retained = await retained_snapshot(mqtt_broker, "wmhub/#", len(channels) + 3, including=channels)
            assert channels <= set(retained) and orjson.loads(retained[state_topic]) == {"state": "online"}
        finally:
            hub.send_signal(signal.SIGKILL)
            await hub.wait()
        offline = await probe.json(state_topic, lambda value: value["state"] == "offline", 10)
        assert offline == {"state": "offline"}
        assert (await retained_snapshot(mqtt_broker, state_topic, 1))[state_topic] == b'{"state":"offline"}'

        probe.clear()
        hub = await start_hub_process(mqtt_broker, tmp_path)
        try:
            await probe.json(state_topic, lambda value: value["state"] == "online", 30)
            # the demo's simulators listen on new ports; every receiver keeps its id all the same
            devices = await every_demo_device_online(probe)
            wanted = {"wmhub/hubs/killed/state", "wmhub/hubs/killed/info", "wmhub/hubs/killed/devices"}
            for device in devices:
                topic = f"wmhub/devices/{device['id']}"
                wanted |= {topic, f"{topic}/availability"}
                wanted |= {f"{topic}/channels/{index}" for index in range(1, device["channel_count"] + 1)}
            await eventually(lambda: wanted <= set(probe.latest), 20, "every retained topic back")
            after = await retained_snapshot(mqtt_broker, "wmhub/#", len(wanted), including=wanted)
            assert wanted <= set(after)
            assert sorted(device["id"] for device in devices) == sorted(device["id"] for device in first_devices)
            assert orjson.loads(after[state_topic]) == {"state": "online"}
        finally:
            hub.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await hub.wait()
        assert hub.returncode == 0


@pytest.mark.mosquitto_only("kills its hub: the last will and the retained state as Mosquitto keeps them")
async def test_a_receiver_down_when_a_crashed_hub_comes_back_is_offline_on_its_device_topic_too(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """After a crash (the last will covers only the hub's own topic) a receiver that was down when the hub came
    back kept its retained device state saying "online": true for good; only its availability said offline."""
    async with ShureSimulator("ulxd4d", seed=1) as up, ShureSimulator("ad4d", seed=2) as down:
        devices = ["--device", up.url, "--device", down.url]
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe("wmhub/#")
            hub = await start_hub_process(mqtt_broker, tmp_path, devices, hub_id="crashed")
            try:
                listed = await probe.json(
                    "wmhub/hubs/crashed/devices", lambda value: len(value) == 2 and all(d["online"] for d in value), 30
                )
            finally:
                hub.send_signal(signal.SIGKILL)
                await hub.wait()
        await down.stop()
        (down_id,) = [device["id"] for device in listed if device["url"] == down.url]
        device_topic = f"wmhub/devices/{down_id}"
        assert orjson.loads((await retained_snapshot(mqtt_broker, device_topic, 1))[device_topic])["online"] is True

        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe("wmhub/#")
            hub = await start_hub_process(mqtt_broker, tmp_path, devices, hub_id="crashed")
            try:
                await probe.message(f"{device_topic}/availability", lambda payload: payload == b"offline", 30)
                await probe.json(device_topic, lambda state: state["online"] is False, 10)
                # what a consumer connecting now is handed
                retained = await retained_snapshot(mqtt_broker, f"{device_topic}/#", 2)
                assert retained[f"{device_topic}/availability"] == b"offline"
                assert orjson.loads(retained[device_topic])["online"] is False
            finally:
                hub.send_signal(signal.SIGTERM)
                async with asyncio.timeout(30):
                    await hub.wait()


async def test_embedded_broker_serves_the_hub_without_installation(tmp_path: Path, receiver: str) -> None:
    class Embedded:
        host = "127.0.0.1"
        port = 0
        url = "embedded"

    async with running_hub(Embedded(), tmp_path, [receiver], embedded_port=0) as hub:  # type: ignore[arg-type]
        device_id = await online_device(hub)
        embedded = bridge_of(hub).embedded
        assert embedded is not None and embedded.port > 0
        Embedded.port = embedded.port
        async with MqttProbe(Embedded()) as probe:  # type: ignore[arg-type]
            base = hub.config.mqtt.base_topic
            await probe.subscribe(f"{base}/#")
            assert await probe.json(f"{base}/hubs/hub1/state") == {"state": "online"}
            await probe.json(f"{base}/devices/{device_id}/channels/1", lambda value: value["name"] == "Lead")
            await listening_to(hub, device_id)
            response = await probe.request(
                f"{base}/hubs/hub1/response/set", f"{base}/devices/{device_id}/channels/1/set", {"name": "Embedded"}
            )
            assert response["status"] == "ok"
