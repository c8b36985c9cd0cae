"""``wmhub fleet``: one board and read API for three hubs on one broker, from their MQTT topics alone.

Three hub processes with simulated Shure receivers share a Mosquitto; a fleet (in this process, its HTTP
API read from the outside) shows every receiver once, grouped by hub. One hub is stopped (SIGSTOP: it
holds its connection open and says nothing, like a frozen machine) and the fleet marks its receivers
offline once the broker fired its last will (1.5 x keepalive after its last packet, plus the broker's
own check interval). A rename sent to the fleet's REST
API reaches the receiver through the hub that owns it, over MQTT. Hostile messages on the hubs' topics
are ignored, and ``wmhub fleet`` without a broker refuses to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from wmhub_shure.simulator import ShureSimulator

from hub.clock import SystemClock
from hub.compose import FleetHub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.fleet import mirror as mirror_module
from hub.fleet.mirror import START_WITHIN_S
from hub.testing import eventually
from tests.faultproxy import TcpFaultProxy
from tests.mosquitto import MqttProbe, TestBroker, free_port
from tests.test_mqtt_bridge import running_hub
from tests.test_mqtt_control import vendor_plugins
from tests.test_mqtt_homeassistant_restarts import SLOTS_ID, slots_host
from tests.test_scale_two_hubs import hub_process, online_devices

TOKEN = "fleet-test-token"
KEEPALIVE_S = 5
# The broker fires a silent client's will 1.5 x keepalive after its last packet, checked on Mosquitto's own
# timer: measured 8.3-12.8 s here for a keep-alive of 5 s on the loaded test machine.
WILL_SLACK_S = 8.0


@contextlib.asynccontextmanager
async def running_fleet(mqtt_url: str, data_dir: Path) -> AsyncIterator[tuple[FleetHub, str]]:
    """A fleet board on a free port: (the fleet, its base URL)."""
    config = HubConfig(
        hub_id="fleet",
        data_dir=data_dir,
        mqtt=MqttSettings(url=mqtt_url),
        http=HttpSettings(port=0, token=TOKEN),
        discovery=DiscoverySettings(enabled=False),
    )
    async with FleetHub(config) as fleet:
        yield fleet, f"http://127.0.0.1:{fleet.web.port}"


async def get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def fleet_hubs(http: aiohttp.ClientSession, base: str) -> dict[str, dict[str, Any]]:
    return {hub["hub_id"]: hub for hub in (await get(http, f"{base}/api/v1/fleet/hubs"))["items"]}


async def wait_for(check: Any, timeout: float, what: str) -> Any:
    """``eventually`` for an async check."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.1)


async def test_one_fleet_board_shows_three_hubs_and_controls_through_the_owner(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    async with (
        ShureSimulator("ulxd4d") as north_receiver,
        ShureSimulator("ad4d") as south_receiver,
        ShureSimulator("ulxd4q") as east_receiver,
        MqttProbe(mqtt_broker, client_id="wmhub-test-consumer") as consumer,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        await consumer.subscribe("wmhub/hubs/+/devices")
        async with (
            hub_process(mqtt_broker.url, "north", north_receiver.url, tmp_path / "north"),
            hub_process(mqtt_broker.url, "south", south_receiver.url, tmp_path / "south"),
            hub_process(
                mqtt_broker.url, "east", east_receiver.url, tmp_path / "east", MQTT__KEEPALIVE=str(KEEPALIVE_S)
            ) as east,
        ):
            owned = {hub_id: (await online_devices(consumer, hub_id))[0] for hub_id in ("north", "south", "east")}
            async with running_fleet(mqtt_broker.url, tmp_path / "fleet") as (_, base):

                async def all_online() -> dict[str, dict[str, Any]] | None:
                    hubs = await fleet_hubs(http, base)
                    ready = len(hubs) == 3 and all(
                        hub["online"] and hub["devices_online"] == 1 for hub in hubs.values()
                    )
                    return hubs if ready else None

                hubs = await wait_for(all_online, 20, "three hubs online on the fleet board")
                assert {hub_id: hub["devices"] for hub_id, hub in hubs.items()} == {
                    hub_id: [device["id"]] for hub_id, device in owned.items()
                }

                # every receiver once, every channel once, and one board group per hub
                channels = (await get(http, f"{base}/api/v1/channels?limit=1000"))["items"]
                ids = [channel["id"] for channel in channels]
                expected = {f"{d['id']}:{i}" for d in owned.values() for i in range(1, d["channel_count"] + 1)}
                assert sorted(ids) == sorted(expected)
                devices = (await get(http, f"{base}/api/v1/devices"))["items"]
                assert sorted(d["id"] for d in devices) == sorted(d["id"] for d in owned.values())
                groups = {g["title"]: g["slots"] for g in (await get(http, f"{base}/api/v1/groups"))["items"]}
                slot_list = (await get(http, f"{base}/api/v1/slots"))["items"]
                slots = {slot["number"]: f"{slot['device_id']}:{slot['channel']}" for slot in slot_list}
                assert set(groups) == {"east", "north", "south"}
                for hub_id, device in owned.items():
                    assert {slots[n] for n in groups[hub_id]} == {
                        f"{device['id']}:{i}" for i in range(1, device["channel_count"] + 1)
                    }

                # meters are not retained: the fleet, started after the hubs, asked each receiver's hub for them

                async def every_level_shown() -> bool:
                    channels = (await get(http, f"{base}/api/v1/channels?limit=1000"))["items"]
                    return all(channel["rf_dbm"] is not None for channel in channels)

                await wait_for(every_level_shown, 10, "the RF level of every channel on the fleet board")

                # a rename from the fleet's API reaches the south receiver through the south hub
                south_id = owned["south"]["id"]
                async with http.post(
                    f"{base}/api/v1/channels/{south_id}:1/commands", json={"kind": "name", "value": "FLEET1"}
                ) as response:
                    assert response.status == 200, await response.text()
                    assert (await response.json())["ok"] is True
                assert south_receiver.channels[1].values["name"] == "FLEET1"
                assert north_receiver.channels[1].values["name"] != "FLEET1"

                async def renamed() -> bool:
                    channel = await get(http, f"{base}/api/v1/channels/{south_id}:1")
                    return bool(channel["name"] == "FLEET1")

                await wait_for(renamed, 5, "the new name back on the fleet board")
                # the extended name is kept by the owning hub; the fleet asks it over MQTT
                async with http.put(
                    f"{base}/api/v1/channels/{south_id}:2/extended-name", json={"name": "Lead vocal, stage left"}
                ) as response:
                    assert response.status == 200, await response.text()

                async def extended() -> bool:
                    channel = await get(http, f"{base}/api/v1/channels/{south_id}:2")
                    return bool(channel["extended_name"] == "Lead vocal, stage left")

                await wait_for(extended, 5, "the extended name back on the fleet board")

                # the east hub freezes: the broker fires its will after 1.5 x keepalive of silence
                east.send_signal(signal.SIGSTOP)
                try:
                    east_id = owned["east"]["id"]

                    async def east_offline() -> bool:
                        device = await get(http, f"{base}/api/v1/devices/{east_id}")
                        return device["online"] is False

                    stopped_at = time.monotonic()
                    await wait_for(east_offline, 1.5 * KEEPALIVE_S + WILL_SLACK_S, "the stopped hub's receiver offline")
                    print(
                        f"\nthe stopped hub's receiver offline on the fleet {time.monotonic() - stopped_at:.2f} s after"
                    )
                    hubs = await fleet_hubs(http, base)
                    assert hubs["east"]["online"] is False and hubs["east"]["devices_online"] == 0
                    assert hubs["north"]["online"] and hubs["south"]["online"]
                    groups = {g["number"]: g["title"] for g in (await get(http, f"{base}/api/v1/groups"))["items"]}
                    assert "east (offline)" in groups.values()
                    # a command for a receiver whose hub is gone is refused at once, not sent into the void
                    async with http.post(
                        f"{base}/api/v1/channels/{east_id}:1/commands", json={"kind": "mute", "value": True}
                    ) as response:
                        assert response.status == 503
                finally:
                    east.send_signal(signal.SIGKILL)
                    await east.wait()


async def test_cut_off_from_the_broker_the_fleet_shows_no_receiver_online(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    async with (
        ShureSimulator("ulxd4d") as receiver,
        hub_process(mqtt_broker.url, "solo", receiver.url, tmp_path / "solo"),
        running_fleet(mqtt_broker.url, tmp_path / "fleet") as (_, base),
        aiohttp.ClientSession() as http,
    ):

        async def receiver_online(online: bool) -> bool:
            devices = (await get(http, f"{base}/api/v1/devices"))["items"]
            return len(devices) == 1 and devices[0]["online"] is online

        await wait_for(lambda: receiver_online(True), 20, "the receiver online on the fleet board")
        # an outside audit: the fleet's health said "mqtt": null (MQTT off, docs/api.md) while it was connected
        health = (await get(http, f"{base}/api/health"))["mqtt"]
        assert health == {"connected": True, "broker": mqtt_broker.url, "last_error": None}
        await mqtt_broker.stop()
        await wait_for(lambda: receiver_online(False), 10, "the receiver offline while the broker is away")
        assert (await get(http, f"{base}/api/v1/hub"))["config"]["broker_connected"] is False
        assert (await get(http, f"{base}/api/health"))["mqtt"]["connected"] is False
        await mqtt_broker.start()
        # the broker kept nothing: the hub re-publishes its state, and the fleet hears it
        await wait_for(lambda: receiver_online(True), 30, "the receiver online again")


async def test_hostile_messages_on_the_hubs_topics_are_ignored(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    async with (
        MqttProbe(mqtt_broker, client_id="wmhub-test-hostile") as hostile,
        running_fleet(mqtt_broker.url, tmp_path) as (fleet, base),
        aiohttp.ClientSession() as http,
    ):
        good = {"id": "shure-GOOD1", "vendor": "shure", "host": "127.0.0.1", "port": 2202, "channel_count": 1}
        hostile.publish("wmhub/hubs/h1/state", {"state": "online"})
        hostile.publish("wmhub/hubs/h1/devices", [{**good, "online": True}])
        for topic, payload in [
            ("wmhub/hubs/h1/devices", b"{not json"),
            ("wmhub/hubs/h1/devices", [{"id": 5}]),
            ("wmhub/hubs/h1/devices", [{**good, "online": True, "channel_count": 5000}]),  # beyond any receiver
            ("wmhub/devices/shure-GOOD1", {**good, "channel_count": 5000}),
            ("wmhub/devices/shure-GOOD1", {**good, "channel_count": "2"}),
            ("wmhub/hubs/h1/alerts", [{"id": "x"}]),
            ("wmhub/devices/shure-GOOD1", {**good, "id": "shure-OTHER"}),
            ("wmhub/devices/shure-GOOD1/channels/1", {"battery_percent": 250}),
            ("wmhub/devices/shure-GOOD1/channels/1", {"name": ["not", "a", "name"]}),
            ("wmhub/devices/shure-GOOD1/channels/1/meters", b"\xff\xfe"),
            ("wmhub/devices/shure-GOOD1/availability", b"maybe"),
            ("wmhub/hubs/h1/response/set", b"[]"),
            # an outside audit's: a stray [] took a hub and its receivers offline, a channel topic beyond the
            # device's count made a channel, an emptied device topic hid a device its hub still lists, a
            # device no hub lists showed online, and a retained {} made up a hub
            ("wmhub/hubs/h1/state", b"[]"),
            ("wmhub/devices/shure-GOOD1/channels/9", {"index": 9, "name": "Ghost"}),
            ("wmhub/devices/shure-GOOD1", b""),
            ("wmhub/devices/shure-STRANGER", {**good, "id": "shure-STRANGER"}),
            ("wmhub/devices/shure-STRANGER/availability", b"online"),
            ("wmhub/hubs/ghost/info", {}),
        ]:
            hostile.publish(topic, payload)
        hostile.publish("wmhub/devices/shure-GOOD1/channels/1", {"index": 1, "name": "Still good"})
        await eventually(lambda: fleet.mirror.rejected >= 9, 5, "the hostile messages rejected")

        async def good_one_shown() -> bool:
            channels = (await get(http, f"{base}/api/v1/channels"))["items"]
            return [(c["id"], c["name"], c["battery_percent"]) for c in channels] == [
                ("shure-GOOD1:1", "Still good", None)
            ]

        await wait_for(good_one_shown, 5, "the valid receiver, and only it")
        devices = (await get(http, f"{base}/api/v1/devices"))["items"]
        assert [(d["id"], d["online"]) for d in devices] == [("shure-GOOD1", True)]
        assert list(await fleet_hubs(http, base)) == ["h1"]


async def test_wmhub_fleet_command_serves_the_hubs_it_hears(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    async with (
        ShureSimulator("ulxd4d") as receiver,
        hub_process(mqtt_broker.url, "solo", receiver.url, tmp_path / "solo"),
        aiohttp.ClientSession() as http,
    ):
        fleet = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "fleet", "--mqtt", mqtt_broker.url, "--http", base.removeprefix("http://"),
            "--data-dir", str(tmp_path / "fleet"), stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:

            async def solo_listed() -> bool:
                try:
                    hubs = await fleet_hubs(http, base)
                except aiohttp.ClientError:
                    return False  # still starting
                return hubs.get("solo", {}).get("devices_online") == 1

            await wait_for(solo_listed, 20, "the hub and its receiver on the fleet's API")
            info = await get(http, f"{base}/api/v1/hub")
            assert info["config"]["fleet"] is True and info["config"]["hubs"] == 1
        finally:
            fleet.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await fleet.wait()
        assert fleet.returncode == 0


def test_fleet_without_a_broker_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "fleet", "--mqtt", "embedded", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "needs the hubs' broker" in result.stderr


async def test_the_fleet_board_has_no_venue_store_of_its_own(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """Locations, the frequency plan, the show and the database are each hub's: the fleet serves none of
    them (404 like any unknown path, no database or alert metrics), and the board's own reads still answer."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with running_fleet(mqtt_broker.url, tmp_path) as (_, base), aiohttp.ClientSession(headers=headers) as http:
        for path in ("/api/v1/locations", "/api/v1/frequency-plan", "/api/v1/show", "/api/v1/audit"):
            async with http.get(f"{base}{path}") as response:
                assert response.status == 404, path
                assert (await response.json())["code"] == "not_found"
        assert (await get(http, f"{base}/api/v1/devices?location=1"))["items"] == []
        assert (await get(http, f"{base}/api/v1/alerts"))["items"] == []
        assert "/api/v1/locations" not in (await get(http, f"{base}/api/openapi.json"))["paths"]
        async with http.get(f"{base}/metrics") as response:
            metrics = await response.text()
        assert "wmhub_devices" in metrics
        assert "wmhub_database_writable" not in metrics and "wmhub_alerts_open" not in metrics


SHARED = {"id": "shure-SHARED", "vendor": "shure", "host": "127.0.0.1", "port": 2202, "channel_count": 2}


def publish_hub(probe: MqttProbe, hub_id: str, devices: list[dict[str, Any]], online: bool = True) -> None:
    """What a hub keeps retained on the broker, published by the probe in its place."""
    probe.publish(f"wmhub/hubs/{hub_id}/state", {"state": "online" if online else "offline"}, retain=True)
    probe.publish(f"wmhub/hubs/{hub_id}/info", {"hub_id": hub_id, "version": "test"}, retain=True)
    probe.publish(f"wmhub/hubs/{hub_id}/alerts", [], retain=True)
    probe.publish(f"wmhub/hubs/{hub_id}/devices", devices, retain=True)


async def fleet_shows_online(http: aiohttp.ClientSession, base: str, device_id: str) -> bool:
    """Whether the fleet board at ``base`` shows the receiver ``device_id`` online."""
    async with http.get(f"{base}/api/v1/devices/{device_id}") as response:
        return response.status == 200 and (await response.json())["online"] is True


@contextlib.asynccontextmanager
async def fleet_beside_fake_hubs(
    mqtt_broker: TestBroker, tmp_path: Path, hub_ids: tuple[str, ...]
) -> AsyncIterator[tuple[MqttProbe, str, aiohttp.ClientSession, Callable[[], Awaitable[bool]]]]:
    """A fleet board, and a probe playing the hubs ``hub_ids`` (their lists published in that order), each listing
    the receiver shure-SHARED online; yielded once the fleet shows it online: the probe (subscribed to the
    receiver's channel 1 set topic and the hubs' info requests), the fleet's base URL, a session with the token,
    and the check that the fleet shows the receiver online."""
    async with (
        MqttProbe(mqtt_broker, client_id="wmhub-test-hubs") as hubs,
        running_fleet(mqtt_broker.url, tmp_path) as (_, base),
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        await hubs.subscribe("wmhub/devices/shure-SHARED/channels/1/set")
        await hubs.subscribe("wmhub/hubs/+/request/info")
        hubs.publish("wmhub/devices/shure-SHARED", SHARED, retain=True)
        hubs.publish("wmhub/devices/shure-SHARED/availability", b"online", retain=True)
        for hub_id in hub_ids:
            publish_hub(hubs, hub_id, [{**SHARED, "online": True}])

        def shown_online() -> Awaitable[bool]:
            return fleet_shows_online(http, base, "shure-SHARED")

        await wait_for(shown_online, 10, "the receiver online on the fleet")
        yield hubs, base, http, shown_online


async def test_a_receiver_two_hubs_list_is_shown_once_while_either_lists_and_watches_it(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """An outside audit: the fleet kept one owner per receiver (the hub whose list came last). A receiver
    two hubs list got its tiles twice, vanished when that hub let it go, and showed offline (commands
    refused with 503) when that hub died while the other watched it."""
    async with fleet_beside_fake_hubs(mqtt_broker, tmp_path, ("west", "east")) as (hubs, base, http, shown_online):
        slots = (await get(http, f"{base}/api/v1/slots"))["items"]
        assert [(slot["device_id"], slot["channel"]) for slot in slots] == [("shure-SHARED", 1), ("shure-SHARED", 2)]
        assert [group["slots"] for group in (await get(http, f"{base}/api/v1/groups"))["items"]] == [[1, 2], []]

        hubs.publish("wmhub/hubs/east/devices", [], retain=True)  # east lets it go; west still lists it
        await wait_for(lambda: fleet_hubs_list(http, base, "east", []), 10, "east's empty list on the fleet")
        assert await shown_online(), "west still lists and watches it"

        hubs.publish("wmhub/hubs/east/devices", [{**SHARED, "online": True}], retain=True)
        await wait_for(lambda: fleet_hubs_list(http, base, "east", ["shure-SHARED"]), 10, "east listing it again")
        hubs.publish("wmhub/hubs/east/state", {"state": "offline"}, retain=True)  # east's last will
        await wait_for(lambda: hub_offline(http, base, "east"), 10, "east offline on the fleet")
        assert await shown_online(), "west still watches it"
        groups = (await get(http, f"{base}/api/v1/groups"))["items"]
        assert [(group["title"], group["slots"]) for group in groups] == [("east (offline)", []), ("west", [1, 2])]

        url = f"{base}/api/v1/channels/shure-SHARED:1/commands"
        sent = asyncio.create_task(http.post(url, json={"kind": "mute", "value": True}))
        await tell_the_hub_clock(hubs, "west")
        asked = await hubs.json("wmhub/devices/shure-SHARED/channels/1/set")
        hubs.publish(
            "wmhub/hubs/west/response/set",
            muted_answer(asked["transaction"]),
        )
        async with await sent as response:
            assert response.status == 200, await response.text()


async def tell_the_hub_clock(probe: MqttProbe, hub_id: str, skew_s: float = 0.0) -> float:
    """Answer, in the hub's place, the fleet's request for its info, which a fleet that has heard no answer of
    the hub yet sends before its first command to learn the hub's clock; the hub_time it was told."""
    asked = await probe.json(f"wmhub/hubs/{hub_id}/request/info")
    hub_time = time.time() + skew_s
    answer = {"status": "ok", "data": {"hub_id": hub_id}, "error": None, "transaction": asked["transaction"]}
    probe.publish(f"wmhub/hubs/{hub_id}/response/info", {**answer, "hub_time": hub_time})
    return hub_time


def muted_answer(transaction: Any, device_id: str = "shure-SHARED", channel: int | None = 1) -> dict[str, Any]:
    """A hub's answer to a mute it carried out on ``device_id``'s ``channel``, as it publishes it."""
    results = {"muted": {"ok": True, "value": True, "error": None, "code": None}}
    data = {"device_id": device_id, "channel": channel, "results": results}
    return {"status": "ok", "data": data, "error": None, "transaction": transaction}


async def fleet_hubs_list(http: aiohttp.ClientSession, base: str, hub_id: str, devices: list[str]) -> bool:
    hub = (await fleet_hubs(http, base)).get(hub_id)
    return hub is not None and hub["devices"] == devices


async def hub_offline(http: aiohttp.ClientSession, base: str, hub_id: str) -> bool:
    hub = (await fleet_hubs(http, base)).get(hub_id)
    return hub is not None and hub["online"] is False


async def test_hubs_retired_or_made_up_by_junk_lists_are_not_on_the_fleet(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """An outside audit: a hub retired as docs/mqtt.md says (its retained topics cleared) stayed on the fleet
    until it restarted; device lists that are no lists made up hubs; a list with a valid entry then a bad one
    added the valid receiver and never took it away."""
    async with (
        MqttProbe(mqtt_broker, client_id="wmhub-test-hubs") as hubs,
        running_fleet(mqtt_broker.url, tmp_path) as (fleet, base),
        aiohttp.ClientSession() as http,
    ):
        publish_hub(hubs, "retired", [{**SHARED, "online": True}])
        await wait_for(lambda: fleet_hubs_list(http, base, "retired", ["shure-SHARED"]), 10, "the hub on the fleet")
        for kind in ("state", "info", "alerts", "devices"):
            hubs.publish(f"wmhub/hubs/retired/{kind}", b"", retain=True)
        for junk in ({}, "text", [1, 2], {"a": 1}, [{**SHARED, "id": "shure-HALF", "online": True}, {"id": 5}]):
            hubs.publish("wmhub/hubs/junk/devices", junk, retain=True)
        hubs.publish("wmhub/hubs/junk/alerts", {"a": 1}, retain=True)
        await eventually(lambda: fleet.mirror.rejected >= 6, 5, "the junk lists rejected")
        hubs.publish("wmhub/hubs/junk/devices", [], retain=True)
        publish_hub(hubs, "marker", [])  # after everything above, in order
        await wait_for(lambda: fleet_hubs_list(http, base, "marker", []), 10, "the last hub on the fleet")
        assert list(await fleet_hubs(http, base)) == ["marker"]
        assert (await get(http, f"{base}/api/v1/devices"))["items"] == []
        assert [group["title"] for group in (await get(http, f"{base}/api/v1/groups"))["items"]] == ["marker"]


async def test_a_command_the_fleet_reported_failed_is_not_carried_out_when_the_stalled_hub_resumes(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A three-hub churn audit: with the owning hub frozen (SIGSTOP, its connection still open), a mute on the
    fleet answered 504, and the hub muted the channel when it resumed 14 s later. The fleet's request carries
    a deadline: the hub, resumed past it, answers that it expired and leaves the channel as it was."""
    async with (
        ShureSimulator("ulxd4d") as receiver,
        MqttProbe(mqtt_broker, client_id="wmhub-test-answers") as answers,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        await answers.subscribe("wmhub/hubs/stalls/#")
        async with (
            hub_process(mqtt_broker.url, "stalls", receiver.url, tmp_path / "stalls") as stalls,
            running_fleet(mqtt_broker.url, tmp_path / "fleet") as (_, base),
        ):
            [device] = await online_devices(answers, "stalls")

            def shown_online() -> Awaitable[bool]:
                return fleet_shows_online(http, base, device["id"])

            await wait_for(shown_online, 20, "the receiver online on the fleet board")
            # a command that goes through: the fleet has heard the hub's clock from its answer (until then it asks
            # the hub's info first, and a stalled hub would not be sent the mute at all)
            async with http.post(
                f"{base}/api/v1/channels/{device['id']}:1/commands", json={"kind": "name", "value": "BEFORE"}
            ) as response:
                assert response.status == 200, await response.text()
            await answers.json("wmhub/hubs/stalls/response/set")
            answers.clear()
            stalls.send_signal(signal.SIGSTOP)
            try:
                async with http.post(
                    f"{base}/api/v1/channels/{device['id']}:1/commands", json={"kind": "mute", "value": True}
                ) as response:
                    assert response.status == 504, await response.text()
            finally:
                stalls.send_signal(signal.SIGCONT)
            answer = await answers.json("wmhub/hubs/stalls/response/set", timeout=10)
            assert answer["status"] == "error" and answer["error"].startswith("expired: not carried out"), answer
            assert receiver.channels[1].values["muted"] is False


async def test_a_fleet_command_whose_deadline_passes_behind_a_rest_command_on_the_hub_is_not_carried_out(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A known gap of the tenth session: a mute from the fleet that reached its hub in time but queued behind
    a slow rename from the hub's own REST API was sent to the receiver once the rename finished, after its
    deadline (and so after the fleet may have answered 504). The hub does not send it: it answers that the
    mute expired, and the fleet answers 504 `timeout`, "not sent"."""
    hub_token = "busy-hub-api-token"
    async with (
        ShureSimulator("ulxd4d") as receiver,
        MqttProbe(mqtt_broker, client_id="wmhub-test-answers") as answers,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        await answers.subscribe("wmhub/hubs/busy/#")
        async with (
            hub_process(mqtt_broker.url, "busy", receiver.url, tmp_path / "busy", HTTP__TOKEN=hub_token),
            running_fleet(mqtt_broker.url, tmp_path / "fleet") as (_, base),
        ):
            [device] = await online_devices(answers, "busy")
            hub_api = f"http://{(await answers.json('wmhub/hubs/busy/info'))['config']['http']}"
            channel = f"{device['id']}:1"

            def shown_online() -> Awaitable[bool]:
                return fleet_shows_online(http, base, device["id"])

            async def fleet_command(body: dict[str, Any]) -> tuple[int, Any]:
                async with http.post(f"{base}/api/v1/channels/{channel}/commands", json=body) as response:
                    return response.status, await response.json()

            async def hub_rename(name: str) -> int:
                async with http.post(
                    f"{hub_api}/api/v1/channels/{channel}/commands",
                    json={"kind": "name", "value": name},
                    headers={"Authorization": f"Bearer {hub_token}"},
                ) as response:
                    return response.status

            await wait_for(shown_online, 20, "the receiver online on the fleet board")
            # a command that goes through first: the fleet then knows the hub's clock and asks nothing before
            # the mute
            assert (await fleet_command({"kind": "name", "value": "BEFORE"}))[0] == 200
            receiver.holding = True  # the receiver takes the rename and keeps its answer back
            slow = asyncio.ensure_future(hub_rename("SLOW"))
            await eventually(lambda: any("SLOW" in line for line in receiver.received), 10, "the rename on the wire")
            sent_at = time.monotonic()
            mute = asyncio.ensure_future(fleet_command({"kind": "mute", "value": True}))
            # the rename ends once the mute's deadline has passed (or the mute was answered): a mute still
            # queued on the hub then would reach the receiver now
            await eventually(
                lambda: mute.done() or time.monotonic() > sent_at + START_WITHIN_S + 1, 15, "the mute's deadline"
            )
            receiver.release()
            status, body = await mute
            assert await slow == 200
            # a later command waits on the hub for everything queued before it: had the mute been sent, it
            # went before this
            assert (await fleet_command({"kind": "name", "value": "AFTER"}))[0] == 200
    assert status == 504 and body["code"] == "timeout", body
    assert body["error"].startswith("not sent: hub busy did not begin it") and "expired" in body["error"], body
    assert not [line for line in receiver.received if "AUDIO_MUTE" in line and line.startswith("SET")]
    assert receiver.channels[1].values["muted"] is False and receiver.channels[1].values["name"] == "AFTER"


async def fleet_shows(http: aiohttp.ClientSession, base: str, hubs: list[str], devices: list[tuple[str, bool]]) -> bool:
    """The fleet lists exactly these hubs, and these receivers (id, online)."""
    listed = (await get(http, f"{base}/api/v1/devices"))["items"]
    shown_devices = sorted((device["id"], device["online"]) for device in listed)
    return sorted(await fleet_hubs(http, base)) == hubs and shown_devices == sorted(devices)


async def test_after_a_broker_restart_without_its_store_the_fleet_drops_the_hubs_it_no_longer_holds(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A three-hub churn audit: after a broker restart without persistence the fleet kept listing a stopped hub
    and its receiver, though the broker held nothing of them any more. After each reconnect the fleet drops
    what the broker does not hand over again; a running hub, which publishes its topics again, stays."""
    async with (
        ShureSimulator("ulxd4d") as receiver,
        MqttProbe(mqtt_broker, client_id="wmhub-test-consumer") as consumer,
        aiohttp.ClientSession() as http,
    ):
        await consumer.subscribe("wmhub/hubs/+/devices")
        async with (
            hub_process(mqtt_broker.url, "running", receiver.url, tmp_path / "running"),
            running_fleet(mqtt_broker.url, tmp_path / "fleet") as (_, base),
        ):
            [device] = await online_devices(consumer, "running")
            async with MqttProbe(mqtt_broker, client_id="wmhub-test-stopped") as stopped:
                publish_hub(stopped, "stopped", [{**SHARED, "online": False}], online=False)
            running = (device["id"], True)
            await wait_for(
                lambda: fleet_shows(http, base, ["running", "stopped"], [running, ("shure-SHARED", False)]),
                20,
                "both hubs and their receivers on the fleet",
            )
            await mqtt_broker.stop()
            await mqtt_broker.start()
            await wait_for(
                lambda: fleet_shows(http, base, ["running"], [running]), 30, "only the running hub and its receiver"
            )


async def test_a_hub_retired_while_the_fleet_was_cut_off_leaves_it_when_the_fleet_reconnects(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A three-hub churn audit: a hub retired (its receiver removed, its topics cleared as docs/mqtt.md says)
    while the fleet was cut off from the broker stayed on the fleet board, its receiver shown online, until
    the fleet restarted. Reconnected, the fleet shows what the broker holds now: the hub that is still there
    stays (its receiver online again), the retired one leaves."""
    other = {**SHARED, "id": "shure-OTHER", "port": 2203}
    async with (
        TcpFaultProxy(mqtt_broker.host, mqtt_broker.port) as link,
        MqttProbe(mqtt_broker, client_id="wmhub-test-hubs") as hubs,
        running_fleet(f"mqtt://127.0.0.1:{link.port}", tmp_path) as (_, base),
        aiohttp.ClientSession() as http,
    ):
        for device, hub_id in ((SHARED, "kept"), (other, "retired")):
            hubs.publish(f"wmhub/devices/{device['id']}", device, retain=True)
            hubs.publish(f"wmhub/devices/{device['id']}/availability", b"online", retain=True)
            publish_hub(hubs, hub_id, [{**device, "online": True}])
        both = [("shure-OTHER", True), ("shure-SHARED", True)]
        await wait_for(lambda: fleet_shows(http, base, ["kept", "retired"], both), 10, "both hubs on the fleet")
        link.refuse = True
        link.cut()

        async def cut_off() -> bool:
            return (await get(http, f"{base}/api/v1/hub"))["config"]["broker_connected"] is False

        await wait_for(cut_off, 10, "the fleet cut off from the broker")
        for topic in ("", "/availability", "/channels/1", "/channels/2"):
            hubs.publish(f"wmhub/devices/shure-OTHER{topic}", b"", retain=True)
        hubs.publish("wmhub/hubs/retired/devices", [], retain=True)  # its receiver removed, then the hub retired
        for kind in ("state", "info", "alerts", "devices"):
            hubs.publish(f"wmhub/hubs/retired/{kind}", b"", retain=True)
        await hubs.subscribe("wmhub/hubs/#")  # in order after the clears: the broker has taken them
        link.refuse = False
        await wait_for(
            lambda: fleet_shows(http, base, ["kept"], [("shure-SHARED", True)]), 30, "only the hub still on the broker"
        )


class SkewedClock(SystemClock):
    """The clock of a hub's machine set ``skew_s`` off (a show network without NTP): its wall time only, its
    timers run true."""

    def __init__(self, skew_s: float) -> None:
        self.skew_s = skew_s

    def now(self) -> float:
        return super().now() + self.skew_s


@pytest.mark.parametrize("skew_s", [30.0, -30.0], ids=["ahead", "behind"])
async def test_a_hub_whose_clock_is_half_a_minute_off_carries_out_fleet_commands_within_the_deadline(
    mqtt_broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture, skew_s: float
) -> None:
    """A hub whose clock was more than 2 s ahead of the fleet's machine refused every fleet command as expired,
    and one behind would begin a command that much after the fleet gave up on it. The fleet reads each hub's
    clock from the hub_time of its answers and writes the deadline in it: the mute is carried out, its
    deadline is START_WITHIN_S after it was sent by the hub's clock, and the log names the skew once."""
    clock = SkewedClock(skew_s)
    async with (
        ShureSimulator("ulxd4d") as receiver,
        MqttProbe(mqtt_broker, client_id="wmhub-test-wire") as wire,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        await wire.subscribe("wmhub/#")
        async with (
            running_hub(mqtt_broker, tmp_path, [receiver.url], "skewed", "wmhub", vendor_plugins(), clock=clock),
            running_fleet(mqtt_broker.url, tmp_path / "fleet") as (_, base),
        ):
            [device] = await online_devices(wire, "skewed")

            def shown_online() -> Awaitable[bool]:
                return fleet_shows_online(http, base, device["id"])

            await wait_for(shown_online, 20, "the receiver online on the fleet board")
            for muted in (True, False):
                wire.clear()
                async with http.post(
                    f"{base}/api/v1/channels/{device['id']}:1/commands", json={"kind": "mute", "value": muted}
                ) as response:
                    assert response.status == 200, await response.text()
                    assert (await response.json())["ok"] is True
                assert receiver.channels[1].values["muted"] is muted
                answered_at = clock.now()
                sent = orjson.loads(await wire.message(f"wmhub/devices/{device['id']}/channels/1/set"))
                assert answered_at - 3 < sent["deadline"] - START_WITHIN_S <= answered_at, (sent, answered_at)
    told = [record.message for record in caplog.records if "clock is" in record.message]
    assert told == [f"hub skewed's clock is 30 s {'ahead of' if skew_s > 0 else 'behind'} this machine's; the fleet's "
                    "commands allow for it, but keep the clocks in step with NTP"]  # fmt: skip


async def test_the_fleet_learns_a_hubs_clock_before_its_first_command_and_sends_none_to_a_hub_that_does_not_answer(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """Until the fleet has heard an answer of a hub (it started after the hub's last one), it cannot write a
    deadline in the hub's clock: it asks for the hub's info first. A hub that answers that (here, with its
    clock 30 s ahead) gets the command with its deadline in its own clock; one that does not is sent nothing,
    so a stalled hub cannot carry out later a command the fleet answered 504 for."""
    async with fleet_beside_fake_hubs(mqtt_broker, tmp_path, ("ahead",)) as (hubs, base, http, _shown_online):
        url = f"{base}/api/v1/channels/shure-SHARED:1/commands"
        async with http.post(url, json={"kind": "mute", "value": True}) as response:
            assert response.status == 504, await response.text()
            assert "asked for its clock" in (await response.json())["error"]
        assert [topic for topic, _ in hubs.messages if topic.endswith("/set")] == []

        hubs.clear()
        sent = asyncio.create_task(http.post(url, json={"kind": "mute", "value": True}))
        hub_time = await tell_the_hub_clock(hubs, "ahead", skew_s=30)
        asked = await hubs.json("wmhub/devices/shure-SHARED/channels/1/set")
        assert hub_time < asked["deadline"] - START_WITHIN_S < hub_time + 1, (asked, hub_time)
        hubs.publish(
            "wmhub/hubs/ahead/response/set",
            muted_answer(asked["transaction"]),
        )
        async with await sent as response:
            assert response.status == 200, await response.text()


async def test_a_hub_whose_answers_carry_no_clock_gets_commands_without_a_deadline(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A re-audit: a fleet upgraded before its hubs sent every command a deadline, which a hub from before
    deadlines refuses as an unknown key: every command through the fleet failed. Such a hub's answers carry no
    hub_time; it is sent commands as before."""
    async with fleet_beside_fake_hubs(mqtt_broker, tmp_path, ("older",)) as (hubs, base, http, _shown_online):
        sent = asyncio.create_task(
            http.post(f"{base}/api/v1/channels/shure-SHARED:1/commands", json={"kind": "mute", "value": True})
        )
        asked_info = await hubs.json("wmhub/hubs/older/request/info")
        hubs.publish(
            "wmhub/hubs/older/response/info",
            {"status": "ok", "data": {"hub_id": "older"}, "error": None, "transaction": asked_info["transaction"]},
        )
        asked = await hubs.json("wmhub/devices/shure-SHARED/channels/1/set")
        assert "deadline" not in asked, asked
        hubs.publish(
            "wmhub/hubs/older/response/set",
            muted_answer(asked["transaction"]),
        )
        async with await sent as response:
            assert response.status == 200, await response.text()


async def test_answers_forged_through_another_receivers_set_do_not_answer_the_fleets_command(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A security audit: a login allowed to publish only sets (Home Assistant's) answered the fleet's commands.
    The fleet's transactions were <hub id>-fleet-1, -2, …, and an answer was matched by its transaction alone:
    an invalid set carrying the fleet's next ones, published to another receiver, made the hub answer at once
    with them, and the fleet reported a mute the hub then carried out as refused (502). Here the mute is held
    by its receiver while the hub answers forty such guesses: the fleet waits for the real answer."""
    async with (
        ShureSimulator("ulxd4d") as target,
        ShureSimulator("ad4d") as other,
        MqttProbe(mqtt_broker, client_id="wmhub-test-set-only") as attacker,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        await attacker.subscribe("wmhub/#")
        async with (
            running_hub(mqtt_broker, tmp_path, [target.url, other.url], "venue", "wmhub", vendor_plugins()),
            running_fleet(mqtt_broker.url, tmp_path / "fleet") as (_, base),
        ):
            listed = await attacker.json(
                "wmhub/hubs/venue/devices", lambda value: len(value) == 2 and all(d["online"] for d in value), 20
            )
            ids = {device["port"]: device["id"] for device in listed}
            target_id, other_id = ids[target.port], ids[other.port]
            await wait_for(lambda: fleet_shows_online(http, base, target_id), 20, "the receiver online on the fleet")

            target.holding = True  # the mute reaches the receiver, which keeps its confirmation back
            mute = asyncio.ensure_future(
                http.post(f"{base}/api/v1/channels/{target_id}:1/commands", json={"kind": "mute", "value": True})
            )
            await eventually(lambda: any("AUDIO_MUTE" in line for line in target.received), 10, "the mute on the wire")
            guesses = [f"fleet-fleet-{n}" for n in range(1, 41)]
            for guess in guesses:
                attacker.publish(f"wmhub/devices/{other_id}/channels/1/set", {"zz": 1, "transaction": guess})
            await eventually(
                lambda: {orjson.loads(payload).get("transaction") for topic, payload in attacker.messages
                         if topic == "wmhub/hubs/venue/response/set"} >= set(guesses),
                10,
                "the hub's answers to the guesses",
            )  # fmt: skip
            target.release()
            async with await mute as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["ok"] is True
            assert target.channels[1].values["muted"] is True


async def test_the_fleet_takes_a_commands_answer_only_from_the_owning_hubs_response_set_for_that_channel(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """The same audit: an answer echoing the fleet's transaction was taken from any hub, on any response topic,
    for any receiver. Answers to the mute on shure-SHARED:1, refusing it, come from the other hub, on the
    owner's response/info, for the receiver's other channel, for another receiver and with no receiver named:
    the fleet takes none of them, and the owner's own answer says the mute was carried out."""
    async with fleet_beside_fake_hubs(mqtt_broker, tmp_path, ("east", "west")) as (hubs, base, http, _shown_online):
        sent = asyncio.create_task(
            http.post(f"{base}/api/v1/channels/shure-SHARED:1/commands", json={"kind": "mute", "value": True})
        )
        await tell_the_hub_clock(hubs, "east")
        transaction = (await hubs.json("wmhub/devices/shure-SHARED/channels/1/set"))["transaction"]
        refused = {"status": "error", "error": "forged", "transaction": transaction}
        where = {"device_id": "shure-SHARED", "channel": 1}
        for topic, data in [
            ("wmhub/hubs/west/response/set", where),
            ("wmhub/hubs/east/response/info", where),
            ("wmhub/hubs/east/response/set", {**where, "channel": 2}),
            ("wmhub/hubs/east/response/set", {**where, "device_id": "shure-OTHER"}),
            ("wmhub/hubs/east/response/set", {}),
        ]:
            hubs.publish(topic, {**refused, "data": data})
        hubs.publish("wmhub/hubs/east/response/set", muted_answer(transaction))
        async with await sent as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["ok"] is True


async def test_the_fleet_shows_a_base_with_packs_in_slots_1_and_5_as_those_two_channels(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A base identified with one channel whose packs pair in slots 1 and 5 (docs/plugins.md: "an update to a
    higher channel adds it") showed on the fleet board as channels 1 and 2: the fleet made a device's channels
    1..channel_count and refused the topic of channel 5."""
    async with (
        running_hub(mqtt_broker, tmp_path, ["slots://127.0.0.1:1?slots=1,5"], plugins=slots_host(), base="wmhub"),
        running_fleet(mqtt_broker.url, tmp_path / "fleet") as (_, base),
        aiohttp.ClientSession() as http,
    ):

        async def both_packs_shown() -> list[tuple[int, str | None]] | None:
            async with http.get(f"{base}/api/v1/devices/{SLOTS_ID}") as response:
                if response.status != 200:
                    return None
                shown = [(channel["index"], channel["name"]) for channel in (await response.json())["channels"]]
            return shown if shown == [(1, "Pack 1"), (5, "Pack 5")] else None

        await wait_for(both_packs_shown, 10, f"{SLOTS_ID} with the packs in slots 1 and 5 on the fleet")


async def test_a_pack_paired_while_the_fleet_watches_shows_its_state_on_the_board(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """An outside review: a pack paired into slot 5 of a running one-channel base showed on the fleet board with
    name, frequency and battery null until that channel's state changed again. The hub published channel 5's
    state before the device state that first listed it, and the fleet refused the channel it did not have yet."""
    pair = tmp_path / "pair"
    url = f"slots://127.0.0.1:1?slots=1&later=5&when={pair}"
    async with (
        MqttProbe(mqtt_broker, client_id="wmhub-test-order") as probe,
        running_hub(mqtt_broker, tmp_path, [url], plugins=slots_host(), base="wmhub"),
        running_fleet(mqtt_broker.url, tmp_path / "fleet") as (fleet, base),
        aiohttp.ClientSession() as http,
    ):
        device_topic = f"wmhub/devices/{SLOTS_ID}"
        await probe.subscribe(device_topic)
        await probe.subscribe(f"{device_topic}/channels/+")

        async def channels_shown() -> dict[int, tuple[Any, ...]] | None:
            async with http.get(f"{base}/api/v1/devices/{SLOTS_ID}") as response:
                if response.status != 200:
                    return None
                return {
                    channel["index"]: (channel["name"], channel["frequency_mhz"], channel["battery_percent"])
                    for channel in (await response.json())["channels"]
                }

        async def pack_1_alone() -> bool:
            return await channels_shown() == {1: ("Pack 1", None, None)}

        await wait_for(pack_1_alone, 20, "the base with its pack in slot 1 on the fleet")
        probe.clear()
        pair.touch()

        async def pack_5_shown() -> bool:
            return (await channels_shown() or {}).get(5) == ("Pack 5", 555.5, 80)

        await wait_for(pack_5_shown, 20, "the pack paired in slot 5 with its state on the fleet")
        # the hub sent the device state naming channel 5 before channel 5's state, once
        channel_5 = f"{device_topic}/channels/5"
        first = next(number for number, (topic, _) in enumerate(probe.messages) if topic == channel_5)
        naming = [
            topic
            for topic, payload in probe.messages[:first]
            if topic == device_topic and 5 in orjson.loads(payload)["channel_indexes"]
        ]
        assert naming == [device_topic], probe.messages[: first + 1]
        assert fleet.mirror.rejected == 0


async def test_a_channels_state_before_the_device_state_naming_it_is_shown_once_it_is_named(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A hub of an earlier release (or a broker handing over the retained topics in another order) sends a new
    channel's state before the device state that names it: the fleet keeps it until the device state comes, the
    last one of each channel, and no more than a bounded number of them, however many channel numbers a
    publisher makes up."""
    async with (
        MqttProbe(mqtt_broker, client_id="wmhub-test-hubs") as hubs,
        running_fleet(mqtt_broker.url, tmp_path) as (fleet, base),
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        device_topic = "wmhub/devices/shure-SHARED"
        hubs.publish(device_topic, SHARED, retain=True)
        hubs.publish(f"{device_topic}/availability", b"online", retain=True)
        publish_hub(hubs, "west", [{**SHARED, "online": True}])
        await wait_for(lambda: fleet_shows_online(http, base, "shure-SHARED"), 10, "the receiver on the fleet")

        # made-up channels, never named: more than the fleet keeps (fewer than the broker queues for a client)
        for index in range(100, 100 + mirror_module.HELD_CHANNELS + 300):
            hubs.publish(f"{device_topic}/channels/{index}", {"index": index, "name": f"Ghost {index}"})
        hubs.publish(f"{device_topic}/channels/3", {"index": 3, "name": "Old"})
        hubs.publish(f"{device_topic}/channels/3", {"index": 3, "name": "Pack 3", "battery_percent": 70})
        hubs.publish(f"{device_topic}/channels/4", {"index": 4, "name": "Pack 4"})
        hubs.publish(f"{device_topic}/channels/4", b"")  # unpaired again before the device state named it
        hubs.publish(device_topic, {**SHARED, "channel_count": 4, "channel_indexes": [1, 2, 3, 4]}, retain=True)

        async def channel(index: int) -> Any:
            async with http.get(f"{base}/api/v1/channels/shure-SHARED:{index}") as response:
                return await response.json() if response.status == 200 else {}

        async def pack_3_shown() -> bool:
            shown = await channel(3)
            return (shown.get("name"), shown.get("battery_percent")) == ("Pack 3", 70)

        await wait_for(pack_3_shown, 20, "channel 3's state, sent before the device state naming it")
        assert (await channel(4))["name"] is None
        slots = (await get(http, f"{base}/api/v1/slots"))["items"]
        assert [slot["channel"] for slot in slots] == [1, 2, 3, 4]
        assert fleet.mirror.held_channels() <= mirror_module.HELD_CHANNELS
