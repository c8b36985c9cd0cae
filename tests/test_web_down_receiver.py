"""A receiver down when the hub starts (configured, or added over REST, and not answering since the start) is
listed over REST offline with every channel it had and their names, from what the hub kept of it the last time
it identified itself: its channels hold no reading (``updated_at`` null, nothing made up).

Found by an outside audit of the board: such a receiver was missing from ``/api/v1/devices``,
``/api/v1/channels`` and the live feed, so the board showed one "receiver offline" tile for it, not one per
channel, and an engineer looking for "Lead Vocal" found no tile of that name.

Whole hubs in this process on a data dir in tmp_path, a Shure simulator as the receiver, REST as a client sees it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from wmhub_shure.simulator import ShureSimulator

from hub import hookimpl
from hub.app import Hub
from hub.compose import compose_hub
from hub.config import HubConfig
from hub.drivers import Driver
from hub.hookspecs import DriverSpec
from hub.persistence import DATABASE_FILE
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.fault_harness import Api, hub_config, running_hub, until
from tests.mosquitto import MqttProbe, TestBroker

# every channel field a receiver reports (a reading); the hub's own (the channel's number, its extended name)
# and the receiver's name for it are not
_NOT_READINGS = {
    "id",
    "device_id",
    "device_online",
    "index",
    "name",
    "extended_name",
    "updated_at",
    "warnings",
    "performer",
}


async def channel_names(api: Api, device_id: str) -> list[str | None]:
    device = await api.get(f"/api/v1/devices/{device_id}")
    return [channel["name"] for channel in device.get("channels", [])]


async def identified(api: Api, names: list[str]) -> str:
    """The id of the one receiver, once it is online over REST with these channel names."""
    found: list[str] = []

    async def online_with_names() -> bool:
        items = (await api.get("/api/v1/devices"))["items"]
        found[:] = [item["id"] for item in items if item["online"]]
        return len(found) == 1 and await channel_names(api, found[0]) == names

    await until(online_with_names, 20, f"the receiver online with channels {names}")
    return found[0]


@pytest.mark.parametrize("added", ["config", "rest"])
async def test_a_receiver_down_since_the_start_is_listed_offline_with_its_channels_and_names(
    tmp_path: Path, added: str
) -> None:
    data_dir = tmp_path / "data"
    async with ShureSimulator("ulxd4q") as receiver:
        names = ["Host", "Lead Vocal", "Guitar", "Spare"]
        for index, name in enumerate(names, start=1):
            receiver.set_name(index, name)
        configured = [receiver.url] if added == "config" else []
        async with running_hub(hub_config(data_dir, configured), plugins="shure") as hub, Api(hub) as api:
            if added == "rest":
                assert (await api.post("/api/v1/devices", {"url": receiver.url}))[0] == 201
            device_id = await identified(api, names)
            receiver.set_name(3, "Keys")  # renamed at the front panel while the hub runs: the new name is kept
            names[2] = "Keys"
            await until(lambda: _has_names(api, device_id, names), 10, "the new name over REST")

    # the receiver stays off: the restarted hub has not heard from it
    async with running_hub(hub_config(data_dir, configured), plugins="shure") as hub, Api(hub) as api:
        device = await api.get(f"/api/v1/devices/{device_id}")
        assert (device["online"], device["model"]) == (False, "ULXD4Q"), device
        assert [channel["name"] for channel in device["channels"]] == names
        for channel in device["channels"]:
            assert channel["updated_at"] is None, channel  # not reported this run
            readings = {key: value for key, value in channel.items() if key not in _NOT_READINGS}
            assert {key: value for key, value in readings.items() if value not in (None, [], {})} == {}
        assert [item["id"] for item in (await api.get("/api/v1/devices"))["items"]] == [device_id]
        channels = (await api.get("/api/v1/channels"))["items"]
        assert [(channel["id"], channel["name"]) for channel in channels] == [
            (f"{device_id}:{index}", name) for index, name in enumerate(names, start=1)
        ]
        if added == "rest":  # removed while down: gone at once, and not brought back by the next start
            assert await api.delete(f"/api/v1/devices/{device_id}") == 204
            assert (await api.get("/api/v1/devices"))["items"] == []
            assert (await api.get("/api/v1/channels"))["items"] == []
    if added == "rest":
        async with running_hub(hub_config(data_dir, []), plugins="shure") as hub, Api(hub) as api:
            assert (await api.get("/api/v1/devices"))["items"] == []


async def _has_names(api: Api, device_id: str, names: list[str]) -> bool:
    return await channel_names(api, device_id) == names


_KEPT = '{"id": "shure-x", "family": "ulxd", "model": "ULXD4D", "firmware": null, "name": "x", "channels": ["A", "B"]'
# channel numbers that are not those of its names: above them, out of order, twice, not whole numbers
_BAD_INDEXES = ("[1, 3]", "[2, 1]", "[1, 1]", "[0]", "[true]", "[1.0]", '"1,2"', "{}")


@pytest.mark.parametrize(
    "kept",
    ['{"id": "shure-x", "channels": [', '{"id": 5}', '{"channels": "x"}', "[]"]
    + [f'{_KEPT}, "channel_indexes": {indexes}}}' for indexes in _BAD_INDEXES],
)
async def test_a_damaged_identity_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kept: str
) -> None:
    """A row the hub cannot read (edited by hand, damaged) keeps no device from being watched: the receiver is
    listed once it answers, as before the hub kept identities."""
    data_dir = tmp_path / "data"
    receiver = ShureSimulator("ulxd4d")
    async with receiver, running_hub(hub_config(data_dir, [receiver.url]), plugins="shure") as hub, Api(hub) as api:
        for index, name in ((1, "Host"), (2, "Guest")):
            receiver.set_name(index, name)
        await identified(api, ["Host", "Guest"])
    with closing(sqlite3.connect(data_dir / DATABASE_FILE)) as connection, connection:
        assert connection.execute("UPDATE device_identity SET value = ?", (kept,)).rowcount == 1
    async with running_hub(hub_config(data_dir, [receiver.url]), plugins="shure") as hub, Api(hub) as api:
        assert (await api.get("/api/v1/devices"))["items"] == []
        assert [connection["url"] for connection in (await api.get("/api/health"))["connections"]] == [receiver.url]
    assert "the identity kept of" in caplog.text and "is damaged: ignored" in caplog.text


class BaseStation:
    """A base station on a real socket whose packs are paired in any of its slots (``slots``: slot -> the pack's
    name): it tells a client that connects, as one JSON line, and stays connected until stopped."""

    def __init__(self, slots: dict[int, str], port: int = 0) -> None:
        self.slots = slots
        self.port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"slotbase://127.0.0.1:{self.port}"

    async def __aenter__(self) -> BaseStation:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for client in self._clients:
            client.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        writer.write(json.dumps({str(slot): name for slot, name in self.slots.items()}).encode() + b"\n")
        await writer.drain()
        await reader.read()  # until the client or the base station goes
        self._clients.discard(writer)
        writer.close()


class BaseStationDriver(Driver):
    """The hub's driver for :class:`BaseStation`: identified with one channel (its model's), a pack in a higher
    slot adds that channel (docs/plugins.md, "an update to a higher channel adds it")."""

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.endpoint.host, self.endpoint.port)
        slots = json.loads(await self._reader.readline())
        self.sink.identify(unique_id="BASE15", family="slotbase", model="SLOTBASE", channel_count=1, name="Rack B")
        for slot, name in slots.items():
            self.sink.update_channel(int(slot), {"name": name, "tx_present": True})

    async def run(self) -> None:
        await self._reader.read()
        raise ConnectionError("the base station closed the connection")

    async def close(self) -> None:
        self._writer.close()


class BaseStationPlugin:
    @hookimpl
    def register_drivers(self, register: Callable[[DriverSpec], None]) -> None:
        spec = DriverSpec(scheme="slotbase", vendor="slotbase", families=("slotbase",), factory=BaseStationDriver)
        register(spec)


@asynccontextmanager
async def base_station_hub(config: HubConfig) -> AsyncIterator[Hub]:
    host = PluginHost()
    host.register(BaseStationPlugin(), "wmhub-slotbase", "1.0")
    hub = compose_hub(config, host)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def base_seen_once(data_dir: Path, mqtt_url: str = "off") -> HubConfig:
    """One run of a hub on ``data_dir`` with a base station whose packs are in slots 1 and 5, until it shows
    both; the base station is gone after it: the configuration of the next run."""
    async with BaseStation({1: "Lead Vocal", 5: "Spare Pack"}) as base:
        config = hub_config(data_dir, [base.url], mqtt_url)
        async with base_station_hub(config) as hub, Api(hub) as api:

            async def both_packs() -> bool:
                items = (await api.get("/api/v1/devices"))["items"]
                return [item["online"] for item in items] == [True] and await channel_names(api, BASE_ID) == [
                    "Lead Vocal",
                    "Spare Pack",
                ]

            await until(both_packs, 10, "the base station online with its two packs")
    return config


BASE_ID = "slotbase-BASE15"


async def shown_offline(api: Api) -> list[tuple[int, str | None, object]]:
    """The base station's channels over REST (number, name, when reported), once it is offline and named."""
    device = await api.get(f"/api/v1/devices/{BASE_ID}")
    assert (device["online"], device["name"]) == (False, "Rack B"), device
    return [(channel["index"], channel["name"], channel["updated_at"]) for channel in device["channels"]]


async def test_a_base_with_packs_in_slots_1_and_5_comes_back_offline_with_those_two_channels(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """The identity the hub kept held the channels' names by position: a base station with packs paired in slots
    1 and 5 came back from the database, while it did not answer, as channels 1 to 5 (three channels it never
    had, on the board, over REST and on MQTT)."""
    config = await base_seen_once(tmp_path / "data", mqtt_broker.url)
    device_topic = f"{config.mqtt.base_topic}/devices/{BASE_ID}"
    # the base station is gone: the restarted hub has not heard from it
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe(device_topic)
        kept = len(probe.messages)  # the state the first run left retained: this run's come after it
        async with base_station_hub(config) as hub, Api(hub) as api:
            assert await shown_offline(api) == [(1, "Lead Vocal", None), (5, "Spare Pack", None)]
            channels = (await api.get("/api/v1/channels"))["items"]
            assert [channel["id"] for channel in channels] == [f"{BASE_ID}:1", f"{BASE_ID}:5"]
            items = (await api.get("/api/v1/devices"))["items"]
            assert [(item["id"], [channel["index"] for channel in item["channels"]]) for item in items] == [
                (BASE_ID, [1, 5])
            ]

            # the device state this run publishes of it, offline: the same two channels
            def published() -> list[dict[str, Any]]:
                return [orjson.loads(payload) for topic, payload in probe.messages[kept:] if topic == device_topic]

            await eventually(published, 15, "the device state published by this run")
            assert {
                (state["online"], state["channel_count"], tuple(state["channel_indexes"])) for state in published()
            } == {(False, 2, (1, 5))}


async def test_an_identity_kept_by_an_earlier_release_has_its_names_by_position(tmp_path: Path) -> None:
    """A row an earlier release wrote (no migration rewrites them) holds the names alone, by position, and
    neither ``channel_indexes`` nor ``unsupported``: it is read as channels 1 to the length of that list, and
    written anew, with the numbers, once the base station answers."""
    data_dir = tmp_path / "data"
    config = await base_seen_once(data_dir)
    with closing(sqlite3.connect(data_dir / DATABASE_FILE)) as connection, connection:
        (kept,) = connection.execute("SELECT value FROM device_identity").fetchone()
        identity = json.loads(kept)
        assert (identity["channels"], identity["channel_indexes"]) == (
            ["Lead Vocal", None, None, None, "Spare Pack"],
            [1, 5],
        )
        earlier = {key: value for key, value in identity.items() if key not in ("channel_indexes", "unsupported")}
        assert connection.execute("UPDATE device_identity SET value = ?", (json.dumps(earlier),)).rowcount == 1
    async with base_station_hub(config) as hub, Api(hub) as api:
        assert await shown_offline(api) == [
            (1, "Lead Vocal", None),
            (2, None, None),
            (3, None, None),
            (4, None, None),
            (5, "Spare Pack", None),
        ]
        async with BaseStation({1: "Lead Vocal", 5: "Spare Pack"}, port=int(config.devices[0].rpartition(":")[2])):

            async def answered() -> bool:
                device = await api.get(f"/api/v1/devices/{BASE_ID}")
                return device["online"] and [channel["index"] for channel in device["channels"]] == [1, 5]

            await until(answered, 15, "the base station back with its two packs")
    with closing(sqlite3.connect(data_dir / DATABASE_FILE)) as connection:
        (kept,) = connection.execute("SELECT value FROM device_identity").fetchone()
    assert json.loads(kept)["channel_indexes"] == [1, 5]
