"""REST control end to end: HTTP -> Hub.apply -> Shure driver -> the Shure protocol simulator on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from wmhub_shure.simulator import ShureSimulator

from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from hub.testing import FakeDns, eventually
from hub.web.schemas import ChannelView, DeviceView

TOKEN = "shure-board-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Rig:
    hub: Hub
    sim: ShureSimulator
    http: aiohttp.ClientSession
    device_id: str


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    sim = await ShureSimulator("ulxd4d", seed=3).start()
    config = HubConfig(
        data_dir=tmp_path,
        command_timeout_s=1.0,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN),
    )
    plugins = PluginHost()
    plugins.load_entry_points(only="shure")
    try:
        async with (
            compose_hub(config, plugins) as hub,
            aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}") as http,
        ):
            managed = await hub.add_device(sim.url, source="test")
            device = await eventually(
                lambda: managed.handle.device_id and hub.store.get(managed.handle.device_id), what="receiver online"
            )
            yield Rig(hub, sim, http, device.id)
    finally:
        await sim.stop()


async def command(rig: Rig, channel: int, body: dict[str, Any], expect: int) -> Any:
    path = f"/api/v1/channels/{rig.device_id}:{channel}/commands"
    async with rig.http.post(path, json=body, headers=AUTH) as response:
        data = await response.json()
        assert response.status == expect, data
        return data


async def test_rename_over_rest_reaches_the_receiver(rig: Rig) -> None:
    result = await command(rig, 2, {"kind": "name", "value": "PASTOR"}, 200)
    assert result["ok"] is True
    assert rig.sim.state["channels"][2]["name"] == "PASTOR"
    async with rig.http.get(f"/api/v1/channels/{rig.device_id}:2") as response:
        assert (await response.json())["name"] == "PASTOR"


async def test_a_value_the_family_refuses_is_422_and_nothing_changes(rig: Rig) -> None:
    before = rig.sim.state["channels"][1]["name"]
    error = await command(rig, 1, {"kind": "name", "value": "x" * 40}, 422)
    assert error["code"] == "invalid" and error["details"]["ok"] is False
    assert rig.sim.state["channels"][1]["name"] == before


async def test_a_receiver_that_does_not_confirm_is_504(rig: Rig) -> None:
    rig.sim.answer_delay_s = 3.0
    error = await command(rig, 1, {"kind": "name", "value": "SLOW"}, 504)
    assert error["code"] == "timeout"


async def test_a_lost_receiver_is_503(rig: Rig) -> None:
    await rig.sim.stop()
    await eventually(lambda: not rig.hub.store.devices[rig.device_id].online, timeout=10, what="receiver offline")
    error = await command(rig, 1, {"kind": "mute", "value": True}, 503)
    assert error["code"] == "unavailable"


async def test_the_device_shows_its_capabilities_and_the_hub_holds_commands_to_them(rig: Rig) -> None:
    async with rig.http.get(f"/api/v1/devices/{rig.device_id}") as response:
        capabilities = (await response.json())["capabilities"]
    assert capabilities["commands"]["name"]["text"]["max_length"] == 8
    assert capabilities["commands"]["gain"]["number"] == {"min": -18.0, "max": 42.0, "step": 1.0, "unit": "dB"}
    assert "rf_quality_percent" not in capabilities["channel_fields"] and "rf_dbm" in capabilities["channel_fields"]
    assert "rf_output" not in capabilities["commands"]
    sent = dict(rig.sim.raw)
    error = await command(rig, 1, {"kind": "rf_output", "value": False, "slot": 1}, 409)
    assert error["code"] == "not_supported" and "ULXD4D has no rf_output control" in error["error"]
    assert rig.sim.raw == sent, "refused by the hub before the plugin"


async def test_metrics_count_the_meter_readings_the_receiver_sends_merged_or_not(rig: Rig) -> None:
    # held samples are decoded only when the hub looks; /metrics still says how many arrived
    def readings(text: str) -> float:
        line = next(line for line in text.splitlines() if line.startswith("wmhub_meter_readings_total "))
        return float(line.split()[1])

    async def scrape() -> str:
        async with rig.http.get("/metrics", headers=AUTH) as response:
            assert response.status == 200
            return await response.text()

    first = readings(await scrape())
    await eventually(lambda: rig.hub.store.readings_received >= first + 4, 10, "four more meter readings")
    assert readings(await scrape()) >= first + 4


async def test_every_device_and_channel_shown_is_exactly_what_the_published_schema_describes(rig: Rig) -> None:
    # The API writes devices and channels straight from the store's models; the OpenAPI document is built
    # from the view models. Each item must validate as its view and come back unchanged: no field missing or
    # extra, and levels JSON numbers of the model's type (a float field never written as a whole number).
    async def read(path: str) -> Any:
        async with rig.http.get(path, headers=AUTH) as response:
            assert response.status == 200, path
            return await response.json()

    def as_view(model: type[DeviceView | ChannelView], item: dict[str, Any]) -> dict[str, Any]:
        return model.model_validate(item).model_dump(mode="json")

    await eventually(lambda: rig.hub.store.get(rig.device_id).channels[1].rf_dbm is not None, what="levels")
    devices = await read("/api/v1/devices")
    assert devices["total"] == 1 and [item["id"] for item in devices["items"]] == [rig.device_id]
    shown = [*devices["items"], await read(f"/api/v1/devices/{rig.device_id}")]
    assert all(as_view(DeviceView, item) == item for item in shown)
    assert shown[0]["connection"]["connected"] is True and shown[0]["channels"][1]["id"] == f"{rig.device_id}:2"
    channels = await read("/api/v1/channels?limit=1&offset=1")
    assert channels["total"] == 2 and [item["id"] for item in channels["items"]] == [f"{rig.device_id}:2"]
    for item in [*channels["items"], await read(f"/api/v1/channels/{rig.device_id}:1")]:
        assert as_view(ChannelView, item) == item and isinstance(item["rf_dbm"], float)
    async with rig.http.ws_connect("/api/v1/live", headers=AUTH) as ws:
        snapshot = await ws.receive_json(timeout=5)
    assert snapshot["type"] == "snapshot" and all(as_view(DeviceView, d) == d for d in snapshot["devices"])


async def one_receiver_added_by_address_and_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """A Shure receiver added over REST as shure://127.0.0.1:P and shure://NAME:P: waits for the warning that
    says the two are one receiver, and checks it is said once."""
    sim = await ShureSimulator("ulxd4d", seed=3).start()
    config = HubConfig(
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN),
    )
    plugins = PluginHost()
    plugins.load_entry_points(only="shure")
    by_address, by_name = f"shure://127.0.0.1:{sim.port}", f"shure://{name}:{sim.port}"
    said = f"{by_address} and {by_name} are one receiver (both reach 127.0.0.1 port {sim.port})"
    try:
        async with (
            compose_hub(config, plugins) as hub,
            aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}") as http,
        ):
            for url in (by_address, by_name):
                async with http.post("/api/v1/devices", json={"url": url}, headers=AUTH) as response:
                    assert response.status == 201, await response.text()
            await eventually(lambda: said in caplog.text, what="the warning")
    finally:
        await sim.stop()
    assert caplog.text.count(said) == 1, caplog.text


async def test_one_receiver_added_by_address_and_by_name_is_said_to_be_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: shure://127.0.0.1:P and shure://localhost:P (a venue's IT hands out names and addresses
    alike) became two devices of one receiver, and a critical frequency conflict of each channel with itself,
    without a word. The hub now says which two URLs are one receiver."""
    await one_receiver_added_by_address_and_by_name(tmp_path, caplog, "localhost")


async def test_a_receiver_given_by_a_name_is_looked_up_once_for_its_twin_and_its_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look for a twin asked DNS for every device's name a second time, and for names no driver looks up
    (a test plugin's made-up hosts, sent to the machine's resolver): it takes the driver's own answer now."""
    dns = FakeDns({"rack-a.venue.lan": ["127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    try:
        await one_receiver_added_by_address_and_by_name(tmp_path, caplog, "rack-a.venue.lan")
    finally:
        dns.release()
    assert dns.asked == {"rack-a.venue.lan": 1}, "the driver's connect asked; the look for a twin did not"
