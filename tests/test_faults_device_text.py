"""Text a receiver reports that no reader of the hub could take: a name holding a lone UTF-16 surrogate (JSON's
``"\\ud800"``, which any SSCv1/SSCv2 device, or whoever answers on its port, can send) and a name of spaces.

The SSCv1 simulator speaks to a whole hub over loopback UDP; the hub is read the way people and systems read
it: REST over HTTP, a Mosquitto subscriber, a restart on the same data directory, a child process stopped
with SIGTERM. Before the fix, one such name answered 500 to every device listing, stopped MQTT publishing,
ended the database writer (every later change of the run lost, health still "ok") and left the process
hanging on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator

from hub.config import MqttSettings
from hub.mqtt.topics import Topics
from tests.fault_harness import TOKEN, hub_config, running_hub
from tests.mosquitto import MqttProbe, TestBroker, free_port
from tests.test_faults_hub import hub_process

BAD_NAME = "Vocal \ud800"
# what the hub shows for it: the surrogate replaced by U+FFFD, as a UTF-8 decoder shows bytes it cannot read
SHOWN_NAME = "Vocal \ufffd"


@contextlib.asynccontextmanager
async def ssc1_receiver() -> AsyncIterator[Ssc1Simulator]:
    sim = Ssc1Simulator("ewdx-em4", tick_s=0)  # tick_s=0: its state changes only when a test says so
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


class Rest:
    """The hub's REST API over a real socket: every answer with its status, never assumed to be 200."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def __aenter__(self) -> Rest:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.session.close()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.base + path) as response:
            return response.status, await response.json(content_type=None)

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with self.session.post(self.base + path, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def until(self, path: str, check: Any, timeout: float, what: str) -> Any:
        """GET ``path`` until it answers 200 with a body ``check`` accepts; fail at the deadline."""
        deadline = time.monotonic() + timeout
        last: tuple[int, Any] | None = None
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                last = await self.get(path)
                if last[0] == 200 and check(last[1]):
                    return last[1]
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what} (last: {last!r})"
            await asyncio.sleep(0.1)


def channel_one(devices: Any) -> dict[str, Any] | None:
    items = devices.get("items") or []
    return next((channel for channel in items[0]["channels"] if channel["index"] == 1), None) if items else None


async def test_a_name_with_a_lone_surrogate_is_shown_replaced_and_the_hub_keeps_working(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """REST lists the device (200) with the name readable, MQTT carries the channel's new state, health stays
    ok, and a change made over REST afterwards is still there after a restart."""
    data_dir = tmp_path / "data"
    async with ssc1_receiver() as sim:
        config = hub_config(data_dir, [sim.url], mqtt_broker.url, hub_id="texthub")
        base = config.mqtt.base_topic
        async with running_hub(config) as hub, Rest(hub.web.port) as rest, MqttProbe(mqtt_broker) as probe:
            await probe.subscribe(f"{base}/devices/#")
            devices = await rest.until(
                "/api/v1/devices", lambda body: (channel_one(body) or {}).get("name") == "Vocal 1", 20, "the device"
            )
            device_id = devices["items"][0]["id"]

            sim.channels[0].name = BAD_NAME
            sim.publish()

            state = await probe.json(
                f"{base}/devices/{device_id}/channels/1", lambda value: value.get("name") == SHOWN_NAME
            )
            assert state["name"] == SHOWN_NAME
            devices = await rest.until(
                "/api/v1/devices",
                lambda body: (channel_one(body) or {}).get("name") == SHOWN_NAME,
                10,
                "the new name over REST",
            )
            assert devices["total"] == 1
            status, channels = await rest.get("/api/v1/channels")
            assert status == 200, channels
            assert SHOWN_NAME in [channel["name"] for channel in channels["items"]]

            status, performer = await rest.post("/api/v1/performers", {"name": "Kept"})
            assert status == 201, performer
            # past the writer's flush (and the device identity's row, which held the name before the fix)
            await hub.persistence.db.sync()
            status, health = await rest.get("/api/health")
            assert (status, health["status"], health["database_problem"]) == (200, "ok", None), health

        async with running_hub(hub_config(data_dir, [], hub_id="texthub")) as hub, Rest(hub.web.port) as rest:
            status, performers = await rest.get("/api/v1/performers")
            assert status == 200
            assert [item["name"] for item in performers["items"]] == ["Kept"]


async def test_a_hub_holding_a_lone_surrogate_name_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    """``wmhub run`` as a child process: after the bad name and a change over REST, SIGTERM ends it promptly and
    cleanly (before the fix it hung until SIGKILL), and the next run still has the change."""
    http_port = free_port()
    data_dir = tmp_path / "data"
    async with ssc1_receiver() as sim:
        config = tmp_path / "wmhub.toml"
        config.write_text(
            f'hub_id = "textproc"\ndata_dir = "{data_dir}"\ndevices = ["{sim.url}"]\n[mqtt]\nurl = "off"\n'
            f'[http]\nhost = "127.0.0.1"\nport = {http_port}\ntoken = "{TOKEN}"\n[discovery]\nenabled = false\n',
            encoding="utf-8",
        )
        with hub_process(config, tmp_path / "hub.log") as hub:
            hub.start()
            async with Rest(http_port) as rest:
                await rest.until(
                    "/api/v1/devices", lambda body: (channel_one(body) or {}).get("name") == "Vocal 1", 30, "the device"
                )
                sim.channels[0].name = BAD_NAME
                sim.publish()
                await rest.until(
                    "/api/v1/devices",
                    lambda body: (channel_one(body) or {}).get("name") == SHOWN_NAME,
                    10,
                    "the new name over REST",
                )
                status, performer = await rest.post("/api/v1/performers", {"name": "Kept"})
                assert status == 201, performer
            hub.signal(signal.SIGTERM)
            assert await hub.exited(15) == 0, (tmp_path / "hub.log").read_text()
            log = (tmp_path / "hub.log").read_text(encoding="utf-8", errors="replace")
            assert "codec can't encode" not in log, log

        config.write_text(config.read_text().replace(f'devices = ["{sim.url}"]', "devices = []"), encoding="utf-8")
        with hub_process(config, tmp_path / "hub2.log") as hub:
            hub.start()
            async with Rest(http_port) as rest:
                performers = await rest.until("/api/v1/performers", lambda body: True, 30, "the restarted hub")
                assert [item["name"] for item in performers["items"]] == ["Kept"]
            hub.signal(signal.SIGTERM)
            assert await hub.exited(15) == 0


async def test_a_name_of_spaces_is_no_name_for_home_assistant_rest_and_mqtt(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A receiver named "   " was a device named " " in Home Assistant (and a blank tile on the board, whose
    fallback is for no name); padded names kept their spaces, unlike the Shure plugin's."""
    async with ssc1_receiver() as sim:
        sim.device.device_name = "   "
        sim.channels[0].name = "  Vox  "
        mqtt = MqttSettings(url=mqtt_broker.url, base_topic="wmblank", homeassistant=True)
        config = hub_config(tmp_path / "data", [sim.url], hub_id="blankhub", mqtt=mqtt)
        async with running_hub(config) as hub, Rest(hub.web.port) as rest, MqttProbe(mqtt_broker) as probe:
            devices = await rest.until(
                "/api/v1/devices", lambda body: (channel_one(body) or {}).get("name") == "Vox", 20, "the device"
            )
            device = devices["items"][0]
            assert device["name"] is None
            topics = Topics("wmblank", "blankhub", "homeassistant")
            await probe.subscribe(topics.every_homeassistant_config)
            await probe.subscribe(topics.channel(device["id"], 1))
            discovery = await probe.json(topics.homeassistant_config(device["id"]), lambda value: "device" in value)
            assert discovery["device"]["name"] == f"Sennheiser {device['model']} {device['id']}"
            state = await probe.json(topics.channel(device["id"], 1))
            assert state["name"] == "Vox"
