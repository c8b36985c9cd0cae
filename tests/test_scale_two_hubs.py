"""Scale-out: two hubs (one per site, each with its own hub id and receivers) share one Mosquitto.

A consumer sees every device of both, nothing one hub publishes lands on the other's topics, a control
command reaches the hub that owns the device (and only that one answers), and a hub killed with SIGKILL
leaves a last will that takes only its own devices off line in Home Assistant's availability terms.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from wmhub_shure.simulator import ShureSimulator

from tests.mosquitto import MqttProbe, TestBroker, free_port


@contextlib.asynccontextmanager
async def hub_process(
    mqtt_url: str, hub_id: str, device_url: str, data_dir: Path, **settings: str
) -> AsyncIterator[Any]:
    """``wmhub run`` in its own process, so it can die the hard way (``mqtt_url``: one broker or several).
    ``settings`` become ``WMHUB_*`` variables (``MQTT__KEEPALIVE="10"``). Its log is ``<data_dir>.log``, for
    reading after a failure."""
    log = data_dir.with_suffix(".log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "run", "--device", device_url, "--mqtt", mqtt_url,
        "--http", f"127.0.0.1:{free_port()}", "--data-dir", str(data_dir), "--hub-id", hub_id,
        env={**os.environ, "WMHUB_DISCOVERY__ENABLED": "false", **{f"WMHUB_{k}": v for k, v in settings.items()}},
        stdout=asyncio.subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    log.close()
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


async def online_devices(probe: MqttProbe, hub_id: str) -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = await probe.json(
        f"wmhub/hubs/{hub_id}/devices", lambda value: len(value) == 1 and value[0]["online"], 20
    )
    return devices


async def test_two_hubs_share_one_broker_without_stepping_on_each_other(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    async with (
        ShureSimulator("ulxd4d") as north_receiver,
        ShureSimulator("ad4d") as south_receiver,
        MqttProbe(mqtt_broker, client_id="wmhub-test-consumer") as consumer,
    ):
        await consumer.subscribe("wmhub/#")
        await consumer.subscribe("homeassistant/#")
        async with (
            hub_process(mqtt_broker.url, "north", north_receiver.url, tmp_path / "north") as north,
            hub_process(mqtt_broker.url, "south", south_receiver.url, tmp_path / "south"),
        ):
            # one consumer sees every device of both hubs, each listed by the hub that owns it
            [north_device] = await online_devices(consumer, "north")
            [south_device] = await online_devices(consumer, "south")
            assert north_device["url"] == north_receiver.url and south_device["url"] == south_receiver.url
            assert north_device["id"] != south_device["id"]
            for device in (north_device, south_device):
                await consumer.message(f"wmhub/devices/{device['id']}/availability", lambda p: p == b"online")
                for index in (1, 2):
                    await consumer.json(f"wmhub/devices/{device['id']}/channels/{index}")

            configs = {
                device["id"]: await consumer.json(f"homeassistant/device/{device['id']}/config")
                for device in (north_device, south_device)
            }

            # no collisions: every device topic on the broker belongs to exactly one hub's device
            owners = {north_device["id"], south_device["id"]}
            device_topics = [topic for topic, _ in consumer.messages if topic.startswith("wmhub/devices/")]
            assert {topic.split("/")[2] for topic in device_topics} == owners

            # a command for the south receiver is carried out by the south hub, and only it answers
            consumer.clear()
            response = await consumer.request(
                "wmhub/hubs/south/response/set",
                f"wmhub/devices/{south_device['id']}/channels/2/set",
                {"name": "South 2"},
            )
            assert response["status"] == "ok", response
            assert south_receiver.channels[2].values["name"] == "South 2"
            await consumer.json(
                f"wmhub/devices/{south_device['id']}/channels/2", lambda state: state["name"] == "South 2"
            )
            assert not any(topic.startswith("wmhub/hubs/north/response") for topic, _ in consumer.messages)
            assert north_receiver.channels[2].values["name"] != "South 2"

            # the north hub dies without a goodbye: its will says offline, the south hub is untouched
            consumer.clear()
            north.send_signal(signal.SIGKILL)
            await north.wait()
            assert await consumer.json("wmhub/hubs/north/state", lambda value: value["state"] == "offline", 10)
            assert not any(topic == "wmhub/hubs/south/state" for topic, _ in consumer.messages)

            # Home Assistant counts a device available only while its own hub is online and it is online
            retained = await retained_states(mqtt_broker)
            for device in (north_device, south_device):
                config = configs[device["id"]]
                assert config["availability_mode"] == "all"
                shown = all(_available(retained.get(entry["topic"], b""), entry) for entry in config["availability"])
                assert shown is (device is south_device), f"{device['id']} availability after the north hub died"

            # and the south hub keeps publishing its receiver's changes
            south_receiver.set_name(1, "Still on")
            await consumer.json(
                f"wmhub/devices/{south_device['id']}/channels/1", lambda state: state["name"] == "Still on"
            )


async def retained_states(broker: TestBroker) -> dict[str, bytes]:
    """What a newly started Home Assistant would read: the retained hub and availability topics."""
    async with MqttProbe(broker, client_id="wmhub-test-newcomer") as newcomer:
        await newcomer.subscribe("wmhub/hubs/+/state")
        await newcomer.subscribe("wmhub/devices/+/availability")
        return dict(newcomer.latest)


def _available(payload: bytes, entry: dict[str, Any]) -> bool:
    # the hub's topic carries JSON read through a value template; the device's topic is plain online/offline
    value = orjson.loads(payload)["state"] if "value_template" in entry else payload.decode()
    return bool(value == entry.get("payload_available", "online"))
