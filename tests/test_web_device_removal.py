"""Removing a receiver that has not identified itself this run, over REST, from a ``wmhub run`` process on a real
Mosquitto: a receiver switched off before the hub started, or added while off. It leaves nothing behind (retained
topics, Home Assistant's device, its alerts) and is found by the id it has or will have.

Found by an outside audit churning three hubs on one broker: such a DELETE answered 204 and cleared none of
the receiver's retained topics, left its device_offline alert open, or answered 404 for the id the receiver
gets from its address while the hub went on watching it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from wmhub_shure.simulator import ShureSimulator

from tests.mosquitto import MqttProbe, TestBroker, free_port
from tests.test_mqtt_homeassistant_lifecycle import retained

TOKEN = "device-removal-test-token"
HUB_ID = "hub1"
DEVICE_LIST = f"wmhub/hubs/{HUB_ID}/devices"


class Api:
    """A ``wmhub run`` process's REST API, with the write token."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with self.session.request(method, self.base + path, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None) if response.status != 204 else None

    async def get(self, path: str) -> Any:
        status, body = await self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    async def open_alerts(self, device: str) -> list[dict[str, Any]]:
        return [alert for alert in (await self.get("/api/v1/alerts"))["items"] if alert["device_id"] == device]

    async def watched_urls(self) -> list[str]:
        return [connection["url"] for connection in (await self.get("/api/health"))["connections"]]


@contextlib.asynccontextmanager
async def hub_process(broker: TestBroker, data_dir: Path, devices: Sequence[str] = ()) -> AsyncIterator[Api]:
    """``wmhub run`` with ``devices`` given by ``--device`` (else none: they are added over REST and remembered),
    once its REST API answers. Its log is ``<data_dir>.log``, for reading after a failure."""
    port = free_port()
    log = data_dir.with_suffix(".log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "run", "--mqtt", broker.url, "--http", f"127.0.0.1:{port}",
        "--data-dir", str(data_dir), "--hub-id", HUB_ID, *(arg for url in devices for arg in ("--device", url)),
        env={**os.environ, "WMHUB_DISCOVERY__ENABLED": "false", "WMHUB_HTTP__TOKEN": TOKEN},
        stdout=asyncio.subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    log.close()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            api = Api(f"http://127.0.0.1:{port}", session)
            async with asyncio.timeout(30):
                while True:
                    assert process.returncode is None, f"the hub exited; see {data_dir.with_suffix('.log')}"
                    with contextlib.suppress(aiohttp.ClientError):
                        await api.get("/api/health")
                        break
                    await asyncio.sleep(0.1)
            yield api
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


def listed(device_id: str, online: bool) -> Any:
    """A check of the hub's device list: it lists the device, online or not."""
    return lambda entries: any(entry["id"] == device_id and entry["online"] is online for entry in entries)


async def online_device(api: Api, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not (online := [device for device in (await api.get("/api/v1/devices"))["items"] if device["online"]]):
        assert time.monotonic() < deadline, f"no device online over REST within {timeout} s"
        await asyncio.sleep(0.1)
    (device,) = online
    return device


async def test_removing_a_receiver_off_since_the_start_clears_what_the_previous_run_published(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A receiver off since before the hub started has not identified itself this run: this run never published
    it, but the previous run's topics of it stand and its list carries it. Removing it cleared none of them."""
    data_dir = tmp_path / "hub"
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("wmhub/#")
        await probe.subscribe("homeassistant/#")
        async with ShureSimulator("ulxd4q") as receiver, hub_process(mqtt_broker, data_dir) as api:
            assert (await api.call("POST", "/api/v1/devices", {"url": receiver.url}))[0] == 201
            (entry,) = await probe.json(DEVICE_LIST, lambda entries: len(entries) == 1 and entries[0]["online"], 20)
            device_id = entry["id"]
            await probe.json(f"wmhub/devices/{device_id}/channels/4", timeout=10)
        config = f"homeassistant/device/{device_id}/config"
        device = f"wmhub/devices/{device_id}"
        states = [device, f"{device}/availability", *(f"{device}/channels/{index}" for index in range(1, 5))]
        assert set(await retained(mqtt_broker, f"{device}/#")) == set(states)
        assert await retained(mqtt_broker, config)

        probe.clear()
        async with hub_process(mqtt_broker, data_dir) as api:  # the receiver stays off
            await probe.json(DEVICE_LIST, listed(device_id, online=False), 20)
            assert (await api.call("DELETE", f"/api/v1/devices/{device_id}"))[0] == 204
            await probe.json(DEVICE_LIST, lambda entries: entries == [], 5)
            cleared = [topic for topic, payload in probe.messages if payload == b"" and topic in {config, *states}]
            assert cleared[:1] == [config], "Home Assistant's config goes first: no entity left to render the rest"
            assert set(cleared) == {config, *states}
    assert await retained(mqtt_broker, f"{device}/#") == {}
    assert await retained(mqtt_broker, config) == {}


async def test_removing_a_receiver_that_never_answered_clears_its_offline_alert_at_once(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """Added while off, the receiver raised a critical device_offline alert under its URL; removed, the alert
    stayed open on REST and MQTT until the clear debounce for a value that flickers had passed, and open across
    a restart in between."""
    data_dir = tmp_path / "hub"
    url = f"shure://127.0.0.1:{free_port()}"  # nothing listens: the receiver is off
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe(f"wmhub/hubs/{HUB_ID}/alerts")
        async with hub_process(mqtt_broker, data_dir) as api:
            assert (await api.call("POST", "/api/v1/devices", {"url": url}))[0] == 201
            await probe.json(f"wmhub/hubs/{HUB_ID}/alerts", lambda alerts: len(alerts) == 1, 20)
            (alert,) = await api.open_alerts(url)
            assert (alert["kind"], alert["severity"]) == ("device_offline", "critical")

            assert (await api.call("DELETE", f"/api/v1/devices/{quote(url, safe='')}"))[0] == 204
            assert await api.open_alerts(url) == []
            await probe.json(f"wmhub/hubs/{HUB_ID}/alerts", lambda alerts: alerts == [], 2)
        async with hub_process(mqtt_broker, data_dir) as api:
            assert await api.open_alerts(url) == []
            recent = (await api.get("/api/v1/alerts?recent=true"))["items"]
            assert [(item["device_id"], item["cleared_at"] is not None) for item in recent] == [(url, True)]


async def test_a_receiver_that_has_not_answered_is_removed_by_the_id_its_url_gives_it(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """docs/model.md: a Shure receiver's id is its host and port, or the URL's ``id`` option. Added while off, it
    was not found by that id (404) while the hub went on watching it, and published it once switched on."""
    port = free_port()
    by_address = f"shure://127.0.0.1:{port}"
    by_option = f"shure://127.0.0.1:{free_port()}?id=rack1-a"
    async with hub_process(mqtt_broker, tmp_path / "hub") as api:
        for url in (by_address, by_option):
            status, added = await api.call("POST", "/api/v1/devices", {"url": url})
            assert (status, added["device_id"]) == (201, None)
        assert (await api.call("DELETE", f"/api/v1/devices/shure-127_0_0_1_{port}"))[0] == 204
        assert (await api.call("DELETE", "/api/v1/devices/shure-rack1-a"))[0] == 204
        assert await api.watched_urls() == []

        # an id the hub cannot know before the receiver answers (a serial): the answer says what to use instead
        assert (await api.call("POST", "/api/v1/devices", {"url": by_address}))[0] == 201
        status, refused = await api.call("DELETE", "/api/v1/devices/sennheiser-1234567890")
        assert (status, refused["code"]) == (404, "not_found")
        assert "by its URL" in refused["error"], refused
        assert await api.watched_urls() == [by_address]

        async with ShureSimulator("ulxd4d", port=port):  # switched on: found by that id once it identified too
            await online_device(api)
        assert (await api.call("DELETE", f"/api/v1/devices/shure-127_0_0_1_{port}"))[0] == 204
        assert await api.watched_urls() == []


async def test_removing_a_receiver_of_the_configuration_is_audited(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """An outside audit: DELETE of a receiver given by ``--device`` (or the config file, or the environment)
    answered 204 and the hub stopped watching it, but the audit log had no ``device.remove``, as it has for one
    added over REST: nothing remembered it, and the audit was written only with the remembered row."""
    async with ShureSimulator("ulxd4d") as receiver, hub_process(mqtt_broker, tmp_path / "hub", [receiver.url]) as api:
        device_id = (await online_device(api))["id"]
        assert (await api.call("DELETE", f"/api/v1/devices/{device_id}"))[0] == 204
        assert await api.watched_urls() == []
        # under its URL, as a remembered device's removal is
        entries = (await api.get(f"/api/v1/audit?target={quote(receiver.url, safe='')}"))["items"]
    removals = [(entry["action"], entry["source"], entry["before"]["device_id"]) for entry in entries]
    assert removals == [("device.remove", "rest", device_id)], entries
