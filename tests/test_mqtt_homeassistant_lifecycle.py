"""Home Assistant as its users see it, on a real Mosquitto: entities from capabilities, the hub device,
stable ids across restarts, clean removal, and the truth re-published after a refused command.

The receivers are the vendor plugins' own simulators (over real sockets on loopback) or the documented
example plugin's receiver.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import orjson
import pytest
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator
from wmhub_shure.simulator.core import ShureSimulator
from wmhub_shure.simulator.replay import ReplayDevice, Transcript

from hub.app import Hub
from hub.clock import SimulatedClock
from hub.devices import MAX_ID_CHARS, id_text
from hub.model import Command, CommandKind
from hub.mqtt import payloads
from hub.mqtt.presence import DEPARTED_GRACE_S
from hub.testing import eventually, plugin_host
from hub.text import device_text
from tests.mosquitto import MqttProbe, TestBroker
from tests.test_mqtt_bridge import example_receiver, listening_to, online_device, running_hub
from tests.test_mqtt_homeassistant import check_discovery_payload

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "plugins" / "shure" / "tests" / "transcripts"
QUAD_REPORTED = [1, 2, 4]  # the channels the ULXD4Q of ulxd.txt reports (it has four)

# the plugins' demo fleets: six Shure (one a P10T in-ear transmitter); Sennheiser three SSCv1 (two receivers, a
# charger), two MCP (a G4 receiver, an in-ear transmitter), one SSCv2
DEMO_RECEIVERS = 12


async def retained(broker: TestBroker, topic_filter: str) -> dict[str, bytes]:
    """Every retained message under ``topic_filter`` as a newcomer gets it: the broker sends them before
    the probe's subscription marker, so this is the whole set, not a sample."""
    async with MqttProbe(broker, client_id="wmhub-test-retained") as probe:
        await probe.subscribe(topic_filter)
        return {topic: payload for topic, payload in probe.latest.items() if payload}


def reported_channels(hub: Hub, device_id: str) -> list[int]:
    """The channels of the device its receiver has reported: only those are published."""
    return [channel.index for channel in hub.store.devices[device_id].channels if channel.reported]


async def every_device_online(hub: Hub, count: int, timeout: float = 30.0) -> list[str]:
    def ready() -> list[str] | None:
        devices = list(hub.store.devices.values())
        if len(devices) == count and all(d.online and d.capabilities is not None for d in devices):
            return sorted(d.id for d in devices)
        return None

    return await eventually(ready, timeout, f"{count} devices online")


@asynccontextmanager
async def shure_receivers(*models: str) -> AsyncIterator[list[ShureSimulator]]:
    simulators = [await ShureSimulator(model, seed=number).start() for number, model in enumerate(models)]
    try:
        yield simulators
    finally:
        for simulator in simulators:
            await simulator.stop()


def config_before_cleared_state(messages: list[tuple[str, bytes]], config_topic: str, state_prefix: str) -> None:
    """Home Assistant's config went out (cleared, or without the entities) before any state topic under
    ``state_prefix`` was cleared: an entity still there renders its template against the empty payload, an
    error in Home Assistant's log per entity."""
    topics = [topic for topic, payload in messages if topic == config_topic or not payload]
    first_state = next(index for index, topic in enumerate(topics) if topic.startswith(state_prefix))
    assert config_topic in topics[:first_state], topics


def components_of(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    components: dict[str, dict[str, Any]] = config["components"]
    return components


async def test_entities_follow_what_each_family_reports_and_accepts(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    async with (
        shure_receivers("ulxd4d", "qlxd4") as (ulxd, qlxd),
        running_hub(mqtt_broker, tmp_path, [ulxd.url, qlxd.url], plugins=plugin_host("wmhub-shure")) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        ids = await every_device_online(hub, 2)
        ulxd_id = next(i for i in ids if hub.store.devices[i].family == "ulxd")
        qlxd_id = next(i for i in ids if hub.store.devices[i].family == "qlxd")
        base = hub.config.mqtt.base_topic
        await probe.subscribe("homeassistant/#")
        await probe.subscribe(f"{base}/#")
        ulxd_config = await probe.json(f"homeassistant/device/{ulxd_id}/config")
        qlxd_config = await probe.json(f"homeassistant/device/{qlxd_id}/config")
        for device_id, config in ((ulxd_id, ulxd_config), (qlxd_id, qlxd_config)):
            check_discovery_payload(f"homeassistant/device/{device_id}/config", config, f"{base}/hubs/hub1/state")

        ulxd_components = components_of(ulxd_config)
        # ULX-D reports no RF quality and no clip: no entity that would stay unknown for good
        assert "ch1_rf_quality_percent" not in ulxd_components and "ch1_audio_peak" not in ulxd_components
        assert {"ch1_mute", "ch1_identify", "ch2_gain", "receiver_name", "identify", "online"} <= set(ulxd_components)
        name = ulxd_components["ch1_name"]
        # min 0: an unnamed channel shows empty (Home Assistant checks states against the limits too)
        assert (name["platform"], name["min"], name["max"]) == ("text", 0, 8)
        assert re.match(name["pattern"], "Vox 1") and re.match(name["pattern"], "")
        assert not re.match(name["pattern"], "a{b}") and not re.match(name["pattern"], " Vox")
        gain = ulxd_components["ch1_gain"]
        assert (gain["platform"], gain["min"], gain["max"], gain["step"]) == ("number", -18, 42, 1)
        assert gain["entity_category"] == "config" and ulxd_components["ch1_identify"]["entity_category"] == "config"
        for diagnostic in ("ch1_frequency_mhz", "ch1_tx_model", "ch1_battery_bars", "online"):
            assert ulxd_components[diagnostic]["entity_category"] == "diagnostic", diagnostic
        # the recorder is spared the fast meters until the user (or the hub setting) enables them
        assert ulxd_components["ch1_rf_dbm"]["enabled_by_default"] is False
        assert ulxd_components["ch1_audio_dbfs"]["enabled_by_default"] is False
        assert "enabled_by_default" not in ulxd_components["ch1_battery_percent"]

        # QLX-D has no mute and no identify: no switch or button that could only ever answer not_supported
        qlxd_components = components_of(qlxd_config)
        assert not {"ch1_mute", "ch1_identify", "identify"} & set(qlxd_components)
        assert {"ch1_name", "ch1_gain"} <= set(qlxd_components)
        # its name cannot be set from outside: shown, not editable
        assert qlxd_components["receiver_name"]["platform"] == "sensor"

        # the capabilities are on the device topic for every MQTT consumer
        state = await probe.json(f"{base}/devices/{qlxd_id}", lambda value: value.get("capabilities") is not None)
        assert "mute" not in state["capabilities"]["commands"]
        assert state["capabilities"]["commands"]["name"]["text"]["max_length"] == 8
        assert "rf_dbm" in state["capabilities"]["channel_fields"]


async def test_meter_entities_can_be_enabled_by_default_with_a_hub_setting(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    async with (
        shure_receivers("ad4d") as (axient,),
        running_hub(
            mqtt_broker, tmp_path, [axient.url], plugins=plugin_host("wmhub-shure"), homeassistant_meter_entities=True
        ) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        (device_id,) = await every_device_online(hub, 1)
        await probe.subscribe("homeassistant/#")
        components = components_of(await probe.json(f"homeassistant/device/{device_id}/config"))
        assert {"ch1_rf_dbm", "ch1_rf_quality_percent", "ch1_audio_dbfs", "ch1_audio_peak"} <= set(components)
        disabled = [key for key, component in components.items() if component.get("enabled_by_default") is False]
        # every meter entity is on; the second frequency stays off (frequency diversity is the exception)
        assert disabled == ["ch1_frequency2_mhz", "ch2_frequency2_mhz"]


async def test_the_hub_is_a_device_every_receiver_routes_through(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    server, url = await example_receiver("EX0042")
    async with (
        server,
        running_hub(mqtt_broker, tmp_path, [url], hub_id="foh-1") as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        device_id = await online_device(hub)
        base = hub.config.mqtt.base_topic
        await probe.subscribe("homeassistant/#")
        await probe.subscribe(f"{base}/#")
        hub_config = await probe.json("homeassistant/device/wmhub_hub_foh-1/config")
        assert hub_config["device"]["identifiers"] == ["wmhub_hub_foh-1"]
        assert hub_config["device"]["sw_version"] and hub_config["origin"]["name"] == "wmhub"
        components = components_of(hub_config)
        assert components["connectivity"]["device_class"] == "connectivity"
        assert components["connectivity"]["state_topic"] == f"{base}/hubs/foh-1/state"
        assert "availability" not in components["connectivity"], "a dead hub shows disconnected, not unavailable"
        assert components["version"]["entity_category"] == "diagnostic"
        # every template reads what its topic carries: the device list, the alerts, the info
        devices = await probe.json(components["devices"]["state_topic"], lambda value: len(value) == 1)
        assert devices[0]["id"] == device_id and "capabilities" not in devices[0]
        assert components["active_alerts"]["state_topic"] == f"{base}/hubs/foh-1/alerts"
        assert (await probe.json(f"{base}/hubs/foh-1/info"))["version"]
        receiver_config = await probe.json(f"homeassistant/device/{device_id}/config")
        assert receiver_config["device"]["via_device"] == "wmhub_hub_foh-1"


async def test_a_refused_rename_puts_the_true_name_back_at_once(
    mqtt_broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = await example_receiver("EX0043", name="Lead")
    async with server, running_hub(mqtt_broker, tmp_path, [url]) as hub, MqttProbe(mqtt_broker) as probe:
        device_id = await online_device(hub)
        await listening_to(hub, device_id)
        base = hub.config.mqtt.base_topic
        channel_topic = f"{base}/devices/{device_id}/channels/1"
        await probe.subscribe(f"{base}/#")
        await probe.json(channel_topic, lambda value: value["name"] == "Lead")
        for refused in ({"name": "x" * 17}, {"name": "Lead", "muted": True}, {"volume": 3}):
            probe.clear()
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="hub.mqtt"):
                answer = await probe.request(f"{base}/hubs/hub1/response/set", f"{channel_topic}/set", refused)
                assert answer["status"] == "error"
                # Home Assistant's text field showed what the user typed: the channel state says the truth again
                # (unasked: the receiver's polls repeat the name unchanged, which publishes nothing)
                state = await probe.json(channel_topic, timeout=10)
            assert state["name"] == "Lead"
            assert any(
                record.levelno == logging.WARNING and device_id in record.getMessage() for record in caplog.records
            )
        # a refusal before any I/O never reached the receiver
        assert hub.store.devices[device_id].channels[0].name == "Lead"


async def test_commands_are_checked_against_capabilities_before_the_plugin(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    async with (
        shure_receivers("qlxd4") as (qlxd,),
        running_hub(mqtt_broker, tmp_path, [qlxd.url], plugins=plugin_host("wmhub-shure")) as hub,
    ):
        (device_id,) = await every_device_online(hub, 1)
        sent_before = dict(qlxd.raw)
        for kind, value, code in (
            (CommandKind.MUTE, True, "not_supported"),
            (CommandKind.NAME, "NINE CHRS", "invalid"),
            (CommandKind.NAME, "a*b", "invalid"),
            (CommandKind.GAIN, 42.5, "invalid"),
            (CommandKind.GAIN_STEP, 100, "invalid"),
            (CommandKind.FREQUENCY, float("nan"), "invalid"),
        ):
            result = await hub.apply(Command(device_id=device_id, channel=1, kind=kind, value=value), "test")
            assert (result.ok, result.code) == (False, code), (kind, value, result)
        assert qlxd.raw == sent_before, "nothing reached the receiver"
        assert (await hub.apply(Command(device_id=device_id, channel=1, kind=CommandKind.GAIN, value=6), "test")).ok


async def test_a_device_gone_from_the_config_between_runs_leaves_nothing_retained(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    kept_server, kept = await example_receiver("EXKEEP")
    gone_server, gone = await example_receiver("EXGONE")
    gone_config = "homeassistant/device/example-EXGONE/config"
    async with kept_server, gone_server:
        async with running_hub(mqtt_broker, tmp_path, [kept, gone], base="wmgone") as hub:
            await eventually(lambda: len([d for d in hub.store.devices.values() if d.online]) == 2, 5, "both online")
            await eventually(lambda: gone_config in bridge_retained(hub), 5, "the config published")
            # a channel goes out with the receiver's first report of it (a matrix run under load stopped first)
            gone_channel = "wmgone/devices/example-EXGONE/channels/1"
            await eventually(lambda: gone_channel in bridge_retained(hub), 5, "the channel published")
        before = await retained(mqtt_broker, "#")
        assert gone_config in before and "wmgone/devices/example-EXGONE/channels/1" in before
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe("#")
            async with running_hub(mqtt_broker, tmp_path, [kept], base="wmgone") as hub:
                await online_device(hub)
                await probe.message(gone_config, lambda payload: payload == b"", timeout=20)
                after = await retained(mqtt_broker, "#")
                assert not [topic for topic in after if "EXGONE" in topic], "no ghost left on the broker"
                assert "homeassistant/device/example-EXKEEP/config" in after
                assert hub.persistence is not None
                assert gone not in [health.url for health in hub.persistence.health.all()], "the store forgot it"


async def test_a_previous_runs_device_is_cleared_only_after_the_grace_on_the_hubs_clock(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A device of this run that never identifies (nothing answers at its address) leaves the hub unable to tell
    which of the previous run's devices are gone: it clears them once the grace has passed on its clock."""
    clock = SimulatedClock()
    gone = "wmgrace/devices/example-EXGONE"
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("wmgrace/#")
        probe.publish("wmgrace/hubs/hub1/devices", [{"id": "example-EXGONE", "channel_count": 1}], retain=True)
        probe.publish(gone, {"id": "example-EXGONE"}, retain=True)
        async with running_hub(mqtt_broker, tmp_path, ["example://127.0.0.1:9"], base="wmgrace", clock=clock):
            await probe.message(f"{gone}/availability", lambda payload: payload == b"offline")  # the grace begins
            clock.advance(DEPARTED_GRACE_S - 0.5)
            # the woken check runs before a request crosses the broker: had it cleared, that came first
            await probe.request("wmgrace/hubs/hub1/response/info", "wmgrace/hubs/hub1/request/info", {})
            assert [payload for topic, payload in probe.messages if topic == gone] == [b'{"id":"example-EXGONE"}']
            clock.advance(0.5)
            await probe.message(gone, lambda payload: payload == b"")


async def test_a_tampered_device_list_of_a_previous_run_is_read_entry_by_entry_and_bounded(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """Anyone allowed to write the hub's topics can leave it a device list: a stray entry must not hide the
    real ones, and a channel count no receiver has must not make the hub clear thousands of topics."""
    clock = SimulatedClock()
    old, huge = "wmtamper/devices/example-EXOLD", "wmtamper/devices/example-EXHUGE"
    listed = [7, {"id": "example-EXHUGE", "channel_count": 5000}, {"id": "example-EXOLD", "channel_count": 2}]
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("wmtamper/#")
        probe.publish("wmtamper/hubs/hub1/devices", listed, retain=True)
        for topic in (old, f"{old}/channels/1", f"{old}/channels/2", huge):
            probe.publish(topic, {"index": 1}, retain=True)
        async with running_hub(mqtt_broker, tmp_path, [], base="wmtamper", clock=clock):
            await probe.message(f"{old}/availability", lambda payload: payload == b"offline")
            clock.advance(DEPARTED_GRACE_S)
            for topic in (old, f"{old}/channels/1", f"{old}/channels/2", huge):
                await probe.message(topic, lambda payload: payload == b"")
            await probe.request("wmtamper/hubs/hub1/response/info", "wmtamper/hubs/hub1/request/info", {})
        assert not [topic for topic, _ in probe.messages if topic.startswith(f"{huge}/channels/")]


async def test_a_receiver_moved_to_another_hub_keeps_its_topics_when_its_old_hub_starts_again(
    mqtt_broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hub B's previous run owned the receiver; hub A owns it now. B starting again must neither mark it
    offline nor clear its topics: Home Assistant would delete the device that A is publishing."""
    clock = SimulatedClock()
    moved = "wmmove/devices/example-EXMOVED"
    config = "homeassistant/device/example-EXMOVED/config"
    listed = [{"id": "example-EXMOVED", "channel_count": 1}]
    caplog.set_level(logging.INFO, logger="hub.mqtt")
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("#")
        probe.publish("wmmove/hubs/hubb/devices", listed, retain=True)  # B's previous run
        probe.publish("wmmove/hubs/huba/devices", listed, retain=True)  # A, running
        for topic, payload in ((moved, b'{"id":"example-EXMOVED"}'), (f"{moved}/availability", b"online")):
            probe.publish(topic, payload, retain=True)
        probe.publish(config, {"device": {"name": "moved"}}, retain=True)
        async with running_hub(mqtt_broker, tmp_path, [], hub_id="hubb", base="wmmove", clock=clock):
            clock.advance(DEPARTED_GRACE_S)
            await eventually(lambda: "is another hub's now" in caplog.text, 10, "B deciding about the receiver")
            await probe.request("wmmove/hubs/hubb/response/info", "wmmove/hubs/hubb/request/info", {})
        after = await retained(mqtt_broker, "#")
    assert after[moved] == b'{"id":"example-EXMOVED"}' and after[f"{moved}/availability"] == b"online"
    assert config in after


async def test_removal_over_mqtt_clears_every_retained_topic(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    server, url = await example_receiver("EXREMOVE")
    requests = "wmremove/hubs/hub1/request"
    responses = "wmremove/hubs/hub1/response"
    async with (
        server,
        running_hub(mqtt_broker, tmp_path, [], base="wmremove", admin=True) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        await probe.subscribe("#")
        answer = await probe.request(f"{responses}/device/add", f"{requests}/device/add", {"url": url})
        assert answer["status"] == "ok"
        device_id = await online_device(hub)
        config = f"homeassistant/device/{device_id}/config"
        await probe.json(config)
        answer = await probe.request(f"{responses}/device/remove", f"{requests}/device/remove", {"id": device_id})
        assert answer["status"] == "ok"
        await probe.message(config, lambda payload: payload == b"")
        after = await retained(mqtt_broker, "#")
        assert not [topic for topic in after if device_id in topic], "config, state, channels and availability cleared"
        assert device_id not in hub.store.devices


async def test_receivers_added_and_removed_over_and_over_leave_the_bridge_holding_only_the_present_ones(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """An outside soak audit (receivers at fresh ports added and removed over MQTT for hours): each removed device
    left its Home Assistant config topic behind in the bridge, one entry per device id the hub ever had, for as long
    as it ran. After receivers come and go, the bridge holds something only of the one still there."""
    requests = "wmchurn/hubs/hub1/request"
    responses = "wmchurn/hubs/hub1/response"
    stays_server, stays_url = await example_receiver("EXSTAYS")
    async with (
        stays_server,
        running_hub(mqtt_broker, tmp_path, [stays_url], base="wmchurn", admin=True) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        await probe.subscribe("homeassistant/#")
        await probe.subscribe(f"{responses}/#")
        stays = await online_device(hub)
        bridge = hub.mqtt
        assert bridge is not None
        for number in range(6):
            server, url = await example_receiver(f"EXCHURN{number}")
            async with server:
                answer = await probe.request(f"{responses}/device/add", f"{requests}/device/add", {"url": url})
                assert answer["status"] == "ok"
                device_id = await eventually(
                    lambda: next((d.id for d in hub.store.devices.values() if d.online and d.id != stays), None),
                    5,
                    "the new receiver online",
                )
                config = f"homeassistant/device/{device_id}/config"
                await probe.json(config)
                answer = await probe.request(
                    f"{responses}/device/remove", f"{requests}/device/remove", {"id": device_id}
                )
                assert answer["status"] == "ok"
                await probe.message(config, lambda payload: payload == b"")
        assert set(hub.store.devices) == {stays}
        assert bridge.devices_held() == {stays}


def bridge_retained(hub: Hub) -> set[str]:
    bridge = hub.mqtt
    assert bridge is not None and bridge.client is not None
    return {topic for topic, (payload, _) in bridge.client.retained_topics.items() if payload}


def enabled_readings(config: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    """unique id -> (state topic, JSON key, needs a transmitter) of every enabled entity reading a JSON key."""
    readings = {}
    for component in components_of(config).values():
        found = re.fullmatch(
            r"\{\{ value_json\.(\w+) \}\}|.*value_json\.(\w+) is none.*", component.get("value_template", "")
        )
        if found is None or component.get("enabled_by_default") is False:
            continue
        needs_transmitter = any(
            "tx_present" in entry.get("value_template", "") for entry in component.get("availability", [])
        )
        readings[component["unique_id"]] = (component["state_topic"], found[1] or found[2], needs_transmitter)
    return readings


async def test_every_enabled_demo_entity_gets_a_value(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """What Home Assistant would show as *unknown* for good: an enabled entity whose key stays null."""
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("#")
        plugins = plugin_host("wmhub-shure", "wmhub-sennheiser")
        async with running_hub(
            mqtt_broker, tmp_path, [], hub_id="demo", base="wmvalues", plugins=plugins, demo=True
        ) as hub:
            ids = await every_device_online(hub, DEMO_RECEIVERS)
            configs = [await probe.json(f"homeassistant/device/{device_id}/config") for device_id in ids]
            readings = {key: value for config in configs for key, value in enabled_readings(config).items()}
            assert len(readings) > 100

            def valued(topic: str, key: str) -> bool:
                for seen_topic, payload in probe.messages:
                    if seen_topic == topic and payload and orjson.loads(payload).get(key) is not None:
                        return True
                return False

            def transmitter_linked(topic: str) -> bool:
                return valued(topic.removesuffix("/meters"), "tx_present") and any(
                    seen == topic.removesuffix("/meters") and orjson.loads(payload).get("tx_present") is True
                    for seen, payload in probe.messages
                    if payload
                )

            def still_unknown() -> list[str]:
                return [
                    unique_id
                    for unique_id, (topic, key, needs_transmitter) in readings.items()
                    if not valued(topic, key) and not (needs_transmitter and not transmitter_linked(topic))
                ]

            await eventually(lambda: not still_unknown(), 15, f"a value for every enabled entity ({still_unknown()})")


async def test_demo_restarted_twice_keeps_one_device_per_receiver(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    plugins = "wmhub-shure,wmhub-sennheiser"
    snapshots = []
    for _ in range(3):
        async with running_hub(
            mqtt_broker, tmp_path, [], hub_id="demo", base="wmdemo", plugins=plugin_host(*plugins.split(",")), demo=True
        ) as hub:
            ids = await every_device_online(hub, DEMO_RECEIVERS)
            configs = {f"homeassistant/device/{device_id}/config" for device_id in ids}
            await eventually(lambda: configs <= bridge_retained(hub), 10, "every config")  # noqa: B023 (awaited here)
            snapshots.append((ids, await retained(mqtt_broker, "homeassistant/#")))
    first_ids, first_topics = snapshots[0]
    assert len(first_ids) == DEMO_RECEIVERS
    assert not [i for i in first_ids if re.search(r"127_0_0_1_\d+", i)], "no demo id is built from a random port"
    assert set(first_topics) == {f"homeassistant/device/{i}/config" for i in first_ids} | {
        "homeassistant/device/wmhub_hub_demo/config"
    }
    for ids, topics in snapshots[1:]:
        assert ids == first_ids
        assert set(topics) == set(first_topics), "a restart leaves exactly the same retained discovery topics"
        identifiers = {orjson.loads(payload)["device"]["identifiers"][0] for payload in topics.values()}
        assert len(identifiers) == DEMO_RECEIVERS + 1


async def test_the_url_id_option_names_a_device_wherever_it_listens(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    server, url = await example_receiver("EXSERIAL")
    async with server, running_hub(mqtt_broker, tmp_path, [f"{url}?id=rack%201/a%2Bb%23"]) as hub:
        # the given name wins over the serial; characters MQTT topics cannot carry become _
        assert await online_device(hub) == "example-rack_1_a_b_"


async def test_invisible_characters_in_an_id_option_or_a_serial_are_taken_as_spaces(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """An outside audit: a zero-width space pasted into the URL's ``id`` (or sent in a serial) stayed in the id,
    so the receiver was published under ``…/devices/example-rack1<U+200B>``, which every MQTT tool shows as
    ``example-rack1`` and no hand-typed topic matches. Invisible format characters (Unicode category Cf: U+200B,
    U+FEFF, U+200E, U+2060, the soft hyphen …) are taken as spaces are: dropped at either end, ``_`` inside; an
    id without them is unchanged, letters of any script included."""
    servers_and_urls = [await example_receiver(serial) for serial in ("EXA", "EXB", "EX\ufeff0002\u2060", "EXC")]
    servers = [server for server, _ in servers_and_urls]
    urls = [url for _, url in servers_and_urls]
    urls[0] += "?id=rack1%E2%80%8B"  # U+200B, percent-encoded as a browser copies it
    urls[1] += "?id=\u200eleft\u00adside"  # a left-to-right mark and a soft hyphen, as typed
    urls[3] += "?id=b%C3%BChne.1"  # "bühne.1": a letter, kept
    async with servers[0], servers[1], servers[2], servers[3], running_hub(mqtt_broker, tmp_path, urls) as hub:
        base = hub.config.mqtt.base_topic
        expected = {"example-rack1", "example-left_side", "example-EX_0002", "example-bühne.1"}
        await eventually(
            lambda: sum(device.online for device in hub.store.devices.values()) == 4, 10, "the four devices online"
        )
        assert {ascii(device_id) for device_id in hub.store.devices} == {ascii(device_id) for device_id in expected}
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe(f"{base}/devices/+/channels/1")
            await eventually(
                lambda: {topic.split("/")[2] for topic, payload in probe.latest.items() if payload} == expected,
                10,
                "each device's channel retained under its id",
            )
        topics = await retained(mqtt_broker, "#")
        invisible = [ascii(topic) for topic in topics if any(unicodedata.category(char) == "Cf" for char in topic)]
        assert invisible == []


@pytest.mark.parametrize(
    "given",
    [
        "rack1-a",
        "rack 1/a+b#",
        "  rack\t1  ",
        "bühne.1",
        "舞台\u3000左",  # an ideographic space
        "\x1b[2J\nforged",
        "\u202erack",  # a direction override: a control, removed before, removed now
        "\x1b rack",
        "x" * 100,
        "EX\ufffd0001",
    ],
)
def test_an_id_without_invisible_characters_is_the_id_it_always_was(given: str) -> None:
    """Existing users' topics and Home Assistant entities are named by their devices' ids: the invisible-character
    rule changes only ids that held one (the rule before it: strip, remove controls, cut, then _ for unsafe)."""
    before = re.sub(r"[\s/+#]", "_", device_text(given.strip(), MAX_ID_CHARS))
    assert id_text(given) == before


async def test_a_receiver_with_fewer_channels_at_the_same_address_leaves_no_ghost_channels(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A ULXD4Q swapped for an SLXD4D at one address keeps its id (made from the address): channels 3 and 4
    must go from the store, their retained topics and Home Assistant's device, not linger as dead entities."""
    quad = await ReplayDevice(Transcript.load(TRANSCRIPTS / "ulxd.txt")).start()
    dual = ReplayDevice(Transcript.load(TRANSCRIPTS / "slxd.txt"), port=quad.port)
    try:
        async with running_hub(mqtt_broker, tmp_path, [quad.url], plugins=plugin_host("wmhub-shure")) as hub:
            device_id = await online_device(hub)
            base = hub.config.mqtt.base_topic
            channels_topic = f"{base}/devices/{device_id}/channels/"
            await eventually(lambda: reported_channels(hub, device_id) == QUAD_REPORTED, 10, "its channels reported")
            async with MqttProbe(mqtt_broker) as probe:  # published a moment after the store has them
                await probe.subscribe(f"{channels_topic}+")
                await eventually(
                    lambda: (
                        sorted(topic for topic, payload in probe.latest.items() if payload)
                        == [f"{channels_topic}{index}" for index in QUAD_REPORTED]
                    ),
                    10,
                    "the reported channels retained",
                )
            config_topic = f"homeassistant/device/{device_id}/config"
            quad_config = orjson.loads((await retained(mqtt_broker, config_topic))[config_topic])
            quad_only = {key for key in quad_config["components"] if key.startswith(("ch3_", "ch4_"))}
            assert "ch4_name" in quad_only

            async with MqttProbe(mqtt_broker) as probe:
                await probe.subscribe(f"{base}/#")
                await probe.subscribe("homeassistant/#")
                probe.clear()
                await quad.stop()
                await dual.start()
                await eventually(
                    lambda: hub.store.devices[device_id].family == "slxd" and hub.store.devices[device_id].online,
                    20,
                    "the SLXD4D identified at the quad's address",
                )
                assert [channel.index for channel in hub.store.devices[device_id].channels] == [1, 2]
                config = await probe.json(config_topic, lambda config: config["device"]["model"] == "SLXD4D")
                components = config["components"]
                # how Home Assistant is told to remove a component of a device: its platform alone
                assert {key: components[key] for key in quad_only} == {
                    key: {"platform": quad_config["components"][key]["platform"]} for key in quad_only
                }
                kept = {key for key, component in components.items() if len(component) > 1}
                assert {int(key[2]) for key in kept if re.match(r"ch[0-9]_", key)} == {1, 2}
                await eventually(lambda: probe.latest.get(f"{channels_topic}4") == b"", 10, "channel 4 cleared")
                config_before_cleared_state(probe.messages, config_topic, channels_topic)
                await probe.json(f"{base}/devices/{device_id}", lambda state: state["channel_count"] == 2)
                await probe.json(
                    f"{base}/hubs/hub1/devices",
                    lambda listed: [entry["channel_count"] for entry in listed if entry["id"] == device_id] == [2],
                )

            after = await retained(mqtt_broker, f"{channels_topic}+")
            assert sorted(after) == [f"{channels_topic}1", f"{channels_topic}2"]
    finally:
        await dual.stop()
        await quad.stop()


async def test_a_name_longer_than_the_familys_limit_still_gives_the_text_entity_a_valid_state(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """Home Assistant refuses a text entity's state longer than its max (an error at every message, the
    entity stuck): a receiver reporting a longer name than its family allows (here a ULX-D, limit 8, named
    'Main Rack' with a channel 'Jane Smith') must still get a state Home Assistant takes, rendered from the
    discovery config's own template the way Home Assistant renders it."""
    async with (
        ReplayDevice(Transcript.load(TRANSCRIPTS / "ulxd.txt")) as quad,
        running_hub(mqtt_broker, tmp_path, [quad.url], plugins=plugin_host("wmhub-shure")) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        device_id = await online_device(hub)
        base = hub.config.mqtt.base_topic
        await probe.subscribe(f"{base}/#")
        await probe.subscribe("homeassistant/#")
        config = await probe.json(f"homeassistant/device/{device_id}/config")
        states = {
            "receiver_name": await probe.json(f"{base}/devices/{device_id}", lambda state: state["name"]),
            "ch1_name": await probe.json(f"{base}/devices/{device_id}/channels/1", lambda state: state["name"]),
        }
        assert (states["receiver_name"]["name"], states["ch1_name"]["name"]) == ("Main Rack", "Jane Smith")
        for object_id, state in states.items():
            entity = config["components"][object_id]
            assert entity["platform"] == "text" and entity["max"] == 8
            shown = jinja2.Template(entity["value_template"]).render(value_json=state)
            assert shown == state["name"][:8]
            assert entity["min"] <= len(shown) <= entity["max"] and re.compile(entity["pattern"]).match(shown)


async def shared_then_let_go(hub_a: Hub, hub_b: Hub, device_id: str, caplog: pytest.LogCaptureFixture) -> None:
    """Both hubs watch one receiver and say so; then hub A lets it go, leaving its topics to B."""
    await online_device(hub_a)
    await online_device(hub_b)
    said = f"device {device_id} is also watched by hub"
    await eventually(lambda: caplog.text.count(said) >= 2, 10, "each hub seeing the other's list")
    assert await hub_a.remove_device(device_id, source="test")
    await eventually(lambda: "is another hub's now: its topics are left" in caplog.text, 10, "A letting go")


async def test_a_receiver_moved_to_another_running_hub_keeps_its_topics_when_the_first_lets_it_go(
    mqtt_broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: a receiver added to hub B, then removed from hub A (both running), lost its device
    topic and Home Assistant config to A's clean-up: Home Assistant deleted the device B was publishing.
    While both watch it, each hub says so once; A stopping leaves B's availability alone."""
    server, url = await example_receiver("EXSHARED")
    device = "wmshare/devices/example-EXSHARED"
    config = "homeassistant/device/example-EXSHARED/config"
    caplog.set_level(logging.INFO, logger="hub.mqtt")
    async with (
        running_hub(mqtt_broker, tmp_path, [url], hub_id="huba", base="wmshare") as hub_a,
        running_hub(mqtt_broker, tmp_path, [url], hub_id="hubb", base="wmshare") as hub_b,
    ):
        await shared_then_let_go(hub_a, hub_b, "example-EXSHARED", caplog)
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe("#")  # after A's clean-up: anything it cleared would be gone by now
            await probe.request("wmshare/hubs/huba/response/info", "wmshare/hubs/huba/request/info", {})
            kept = {topic: payload for topic, payload in probe.latest.items() if payload}
        assert device in kept and config in kept and kept[f"{device}/availability"] == b"online"
    server.close()
    assert caplog.text.count("device example-EXSHARED is also watched by hub") == 2, "once per hub"


async def test_a_set_to_a_receiver_two_hubs_watch_is_carried_out_once(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """A receiver given to two hubs by mistake: both carried out every MQTT set, so a mute toggle from a
    Companion button did nothing. The running hub whose id sorts first carries sets out and answers; when it
    stops, the other does."""
    server, url = await example_receiver("EXTWICE")
    channel = "wmtwice/devices/example-EXTWICE/channels/1"
    try:
        async with (
            running_hub(mqtt_broker, tmp_path, [url], hub_id="huba", base="wmtwice") as hub_a,
            running_hub(mqtt_broker, tmp_path, [url], hub_id="hubb", base="wmtwice") as hub_b,
        ):
            await listening_to(hub_a, await online_device(hub_a))
            await listening_to(hub_b, await online_device(hub_b))
            async with MqttProbe(mqtt_broker) as probe:
                await probe.subscribe("wmtwice/hubs/+/response/#")
                await eventually(
                    lambda: hub_b.mqtt is not None and hub_b.mqtt._commanded_elsewhere("example-EXTWICE") == "huba",
                    10,
                    "hub B seeing hub A's list and state",
                )
                probe.publish(f"{channel}/set", {"name": "Solo", "transaction": "set-1"})
                # each hub serves a device's messages in order: B's answer to this get comes after its answer
                # to the set, had it carried the set out
                probe.publish(f"{channel}/get", {"transaction": "get-1"})
                answer = await probe.json("wmtwice/hubs/huba/response/set", lambda got: got["transaction"] == "set-1")
                assert answer["status"] == "ok"
                await probe.json("wmtwice/hubs/hubb/response/get", lambda answer: answer["transaction"] == "get-1")
                assert not [topic for topic, _ in probe.messages if topic == "wmtwice/hubs/hubb/response/set"]

                await hub_a.stop()
                await eventually(
                    lambda: hub_b.mqtt is not None and hub_b.mqtt._commanded_elsewhere("example-EXTWICE") is None,
                    10,
                    "hub B seeing hub A offline",
                )
                answer = await probe.request("wmtwice/hubs/hubb/response/set", f"{channel}/set", {"name": "Taken"})
                assert answer["status"] == "ok"
                assert hub_b.store.devices["example-EXTWICE"].channels[0].name == "Taken"
    finally:
        server.close()


async def test_an_entity_an_earlier_version_made_is_removed_from_home_assistant(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """An outside audit upgrading from 2026-11-26: entities that version made (battery bars and audio peak of
    receivers that report neither) were left out of the new configs, and Home Assistant keeps a component
    merely left out, so they stayed as orphans. The config the broker kept from before names them: each is
    sent with its platform alone, which removes it."""
    server, url = await example_receiver("EXOLD")
    config_topic = "homeassistant/device/example-EXOLD/config"
    old_component = {"platform": "sensor", "unique_id": "example-EXOLD_ch1_battery_bars", "state_topic": "x"}
    try:
        async with MqttProbe(mqtt_broker) as earlier:
            earlier.publish(config_topic, {"components": {"ch1_battery_bars": old_component}}, retain=True)
            await earlier.subscribe(config_topic)
            await earlier.message(config_topic)
        async with (
            running_hub(mqtt_broker, tmp_path, [url], base="wmupgrade") as hub,
            MqttProbe(mqtt_broker) as probe,
        ):
            await online_device(hub)
            await probe.subscribe(config_topic)
            # the first config may go out before the broker's old copy is read: the one after it removes
            config = await probe.json(
                config_topic, lambda config: "ch1_battery_bars" in config["components"], timeout=10
            )
            assert config["components"]["ch1_battery_bars"] == {"platform": "sensor"}
            assert len(config["components"]["ch1_name"]) > 1, "this version's entities are whole"
    finally:
        server.close()


async def test_the_configs_kept_from_before_are_read_for_a_while_only(
    mqtt_broker: TestBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading every device config on the broker costs the hub its 11 KB per receiver, its own included:
    once its devices have identified themselves it stops."""
    monkeypatch.setattr("hub.mqtt.bridge.PREVIOUS_CONFIGS_S", 0.2)
    server, url = await example_receiver("EXSTOP")
    try:
        async with running_hub(mqtt_broker, tmp_path, [url], base="wmstop") as hub:
            await online_device(hub)
            every_config = hub.mqtt.topics.every_homeassistant_config
            await eventually(lambda: every_config not in hub.mqtt.client.subscriptions, 5, "the configs let go")
    finally:
        server.close()


@pytest.mark.parametrize("payload", [b"", b"{not json", b"[]", b'{"components": []}', b'{"components": {"a": 1}}'])
def test_a_retained_config_that_is_no_config_names_no_entity(payload: bytes) -> None:
    assert payloads.retained_config(payload) == payloads.RetainedConfig()


@pytest.mark.mosquitto_only("restarts its broker; the RabbitMQ node is shared by the session")
async def test_a_hub_that_let_a_receiver_go_to_another_hub_never_publishes_it_again(
    mqtt_broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: hub A left the topics of a receiver hub B had taken over, but kept its own copy and
    published it again after every reconnect: after a broker restart B's names and Home Assistant device were
    overwritten with A's stale ones."""
    server, url = await example_receiver("EXGONE")
    device = "wmgone/devices/example-EXGONE"
    caplog.set_level(logging.INFO, logger="hub.mqtt")
    try:
        async with running_hub(mqtt_broker, tmp_path, [url], hub_id="huba", base="wmgone") as hub_a:
            async with running_hub(mqtt_broker, tmp_path, [url], hub_id="hubb", base="wmgone") as hub_b:
                await shared_then_let_go(hub_a, hub_b, "example-EXGONE", caplog)
            # B stopped: nothing watches the receiver now, so after the restart nothing may say it is there
            assert hub_a.mqtt is not None and hub_a.mqtt.client is not None
            connects = hub_a.mqtt.client.connects
            await mqtt_broker.restart()
            await eventually(lambda: hub_a.mqtt.client.connects > connects, 10, "A reconnected")  # type: ignore[union-attr]
            async with MqttProbe(mqtt_broker) as probe:
                await probe.subscribe("#")
                # A's answer comes after everything it re-published on connecting
                await probe.request("wmgone/hubs/huba/response/info", "wmgone/hubs/huba/request/info", {})
                kept = sorted(topic for topic, payload in probe.latest.items() if payload)
            assert [topic for topic in kept if topic.startswith(device) or "EXGONE" in topic] == []
    finally:
        server.close()


@dataclass
class MovedReceiver:
    """A receiver (one serial) that left hub A's address for one hub B watches, and the probe on both hubs."""

    old_address: Ssc1Simulator
    new_address: Ssc1Simulator
    hub_a: Hub
    hub_b: Hub
    probe: MqttProbe
    base: str
    device_id: str

    def shown_at(self, port: int) -> bool:
        """The broker shows the receiver online at ``port``."""
        topic = f"{self.base}/devices/{self.device_id}"
        state = orjson.loads(self.probe.latest.get(topic) or b"{}")
        shown = (state.get("port"), state.get("online"), self.probe.latest.get(f"{topic}/availability"))
        return shown == (port, True, b"online")

    async def settled(self) -> None:
        """Each hub's answer comes after what it published before it."""
        for hub_id in ("huba", "hubb"):
            await self.probe.request(
                f"{self.base}/hubs/{hub_id}/response/info", f"{self.base}/hubs/{hub_id}/request/info", {}
            )


@asynccontextmanager
async def moved_receiver(
    mqtt_broker: TestBroker, tmp_path: Path, serial: str, base: str
) -> AsyncIterator[MovedReceiver]:
    host = plugin_host("wmhub-sennheiser")
    async with Ssc1Simulator("ewdx-em2", tick_s=0.2) as new_address:
        new_address.device.serial = serial
        old_address = Ssc1Simulator("ewdx-em2", tick_s=0.2)
        old_address.device.serial = serial
        await old_address.start()
        async with (
            running_hub(mqtt_broker, tmp_path, [old_address.url], hub_id="huba", base=base, plugins=host) as hub_a,
            running_hub(mqtt_broker, tmp_path, [new_address.url], hub_id="hubb", base=base, plugins=host) as hub_b,
            MqttProbe(mqtt_broker) as probe,
        ):
            await online_device(hub_a)
            await online_device(hub_b)
            await probe.subscribe(f"{base}/#")
            await old_address.stop()  # the receiver left its old address
            device_id = f"sennheiser-{serial}"
            await eventually(lambda: not hub_a.store.devices[device_id].online, 20, "A losing it")
            yield MovedReceiver(old_address, new_address, hub_a, hub_b, probe, base, device_id)


async def test_a_receiver_at_a_new_address_on_another_hub_shows_as_that_hub_sees_it(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """An outside audit: a receiver (same serial) moved to an address hub B watches; hub A, which had the
    old one, published it offline (and the old address) over B's state, and removing it from A corrected
    nothing: Home Assistant and the fleet showed offline a receiver B had online."""
    async with moved_receiver(mqtt_broker, tmp_path, "3000000007", "wmmoved") as moved:
        await eventually(lambda: moved.shown_at(moved.new_address.port), 10, "B's view while A has it offline")
        await moved.settled()
        assert moved.shown_at(moved.new_address.port), "A's offline view published over B's"
        assert await moved.hub_a.remove_device(moved.device_id, source="test")
        await moved.settled()
        assert moved.shown_at(moved.new_address.port), "A's view after it let the receiver go"


async def test_a_receiver_back_at_its_old_address_is_shown_as_the_hub_there_sees_it(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """The move undone: hub A, which left the receiver's topics to hub B while it had it offline, takes them back
    when the receiver answers at A's address again and B loses it."""
    async with moved_receiver(mqtt_broker, tmp_path, "3000000008", "wmback") as moved:
        await eventually(lambda: moved.shown_at(moved.new_address.port), 10, "B's view while A has it offline")
        await moved.new_address.stop()
        back = Ssc1Simulator("ewdx-em2", port=moved.old_address.port, tick_s=0.2)
        back.device.serial = moved.old_address.device.serial
        await back.start()
        try:
            await eventually(lambda: not moved.hub_b.store.devices[moved.device_id].online, 30, "B losing it")
            await eventually(lambda: moved.shown_at(back.port), 30, "A's view of the receiver back at its address")
            await moved.settled()
            assert moved.shown_at(back.port), "B's offline view published over A's"
        finally:
            await back.stop()
