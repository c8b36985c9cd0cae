"""Home Assistant device-based discovery, checked against the documented schema on a real broker."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hub.clock import SimulatedClock
from hub.model import Capabilities, Channel, CommandKind, CommandLimits, Device
from hub.mqtt.homeassistant import DEVICE_READINGS, READINGS, discovery_config
from hub.mqtt.presence import HOMEASSISTANT_METER_DELAY_S
from hub.mqtt.topics import Topics
from hub.testing import eventually
from tests.mosquitto import MqttProbe, TestBroker
from tests.test_mqtt_bridge import online_device, receiver, running_hub, watching_hub

__all__ = ["receiver"]  # the fixture, imported so pytest finds it here

# From Home Assistant's MQTT docs and homeassistant/components/mqtt (see shared conventions, section 1).
DISCOVERY_TOPIC = re.compile(r"(?P<prefix>.+)/device/(?P<node_id>[a-zA-Z0-9_-]+)/config")
OBJECT_ID = re.compile(r"[a-zA-Z0-9_-]+")
COMMON_KEYS = {
    "platform", "unique_id", "object_id", "default_entity_id", "name", "icon", "qos", "encoding", "entity_category",
    "enabled_by_default",
    "availability", "availability_mode", "json_attributes_topic", "json_attributes_template",
}  # fmt: skip
PLATFORM_KEYS = {
    "sensor": (
        {"state_topic"},
        {"value_template", "device_class", "state_class", "unit_of_measurement", "suggested_display_precision",
         "expire_after", "force_update"},
    ),
    "binary_sensor": (
        {"state_topic"},
        {"value_template", "device_class", "payload_on", "payload_off", "expire_after", "off_delay"},
    ),
    "text": (
        {"command_topic"},
        {"command_template", "state_topic", "value_template", "min", "max", "mode", "pattern"},
    ),
    "number": (
        {"command_topic"},
        {"command_template", "state_topic", "value_template", "min", "max", "step", "mode", "unit_of_measurement"},
    ),
    "switch": (
        {"command_topic"},
        {"payload_on", "payload_off", "state_on", "state_off", "state_topic", "value_template", "optimistic"},
    ),
    "button": ({"command_topic"}, {"payload_press", "command_template", "device_class"}),
    "select": ({"command_topic", "options"}, {"command_template", "state_topic", "value_template"}),
}  # fmt: skip
DEVICE_CLASSES = {
    "sensor": {"battery": {"%"}, "duration": {"s", "min", "h", "d"}, "signal_strength": {"dB", "dBm"},
               "frequency": {"Hz", "kHz", "MHz", "GHz"}, "temperature": {"°C", "°F", "K"}},
    "binary_sensor": {"connectivity": None, "problem": None},
    "button": {"identify": None, "restart": None, "update": None},
}  # fmt: skip
# The example receiver reports battery, name and transmitter presence and accepts a rename: nothing else.
EXPECTED_COMPONENTS = {"online", "ch1_battery_percent", "ch1_tx_present", "ch1_name"}


HUB_CONFIG = "homeassistant/device/wmhub_hub_hub1/config"


def check_discovery_payload(topic: str, config: dict[str, Any], hub_state_topic: str) -> None:
    """Assert what Home Assistant requires of a device-based discovery message."""
    match = DISCOVERY_TOPIC.fullmatch(topic)
    assert match, f"{topic} is not a device discovery topic"
    assert config["device"]["identifiers"] and all(isinstance(value, str) for value in config["device"].values()
                                                   if not isinstance(value, list))  # fmt: skip
    assert config["origin"]["name"] == "wmhub" and config["origin"]["sw_version"]
    assert set(config["origin"]) <= {"name", "sw_version", "support_url"}
    assert config["device"]["via_device"] == "wmhub_hub_hub1"
    assert config["availability_mode"] == "all"
    availability = config["availability"]
    assert len(availability) == 2 and availability[0]["topic"] == hub_state_topic
    assert availability[1]["topic"].endswith("/availability")
    entry_keys = {"topic", "value_template", "payload_available", "payload_not_available"}
    assert all(set(entry) <= entry_keys for entry in availability)
    assert "availability_topic" not in config, "availability and availability_topic are mutually exclusive"
    unique_ids = set()
    for object_id, component in config["components"].items():
        assert OBJECT_ID.fullmatch(object_id), object_id
        platform = component["platform"]
        required, optional = PLATFORM_KEYS[platform]
        assert required <= set(component), f"{object_id} lacks {required - set(component)}"
        assert set(component) <= required | optional | COMMON_KEYS, set(component) - required - optional - COMMON_KEYS
        assert component["unique_id"] not in unique_ids
        unique_ids.add(component["unique_id"])
        # the entity id follows the unique id, not the receiver's name (two receivers on one default name got
        # `_2` ids in whatever order Home Assistant saw them); object_id for Home Assistant before 2025.10
        entity = re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", component["unique_id"].lower())).strip("_")
        assert component["default_entity_id"] == f"{platform}.{entity}" and component["object_id"] == entity
        if "device_class" in component:
            units = DEVICE_CLASSES[platform][component["device_class"]]
            assert units is None or component.get("unit_of_measurement") in units, object_id
        if component.get("state_class") is not None:
            # no reading is a running total: battery cycles fall at a pack swap, which Home Assistant's
            # statistics warned of as total_increasing
            assert component["state_class"] in {"measurement", "total"}, object_id


async def test_discovery_config_follows_the_schema_and_points_at_real_topics(
    mqtt_broker: TestBroker, tmp_path: Path, receiver: str
) -> None:
    async with watching_hub(mqtt_broker, tmp_path, receiver) as (hub, probe, base, device_id):
        await probe.subscribe("homeassistant/device/#")
        await probe.subscribe(f"{base}/#")
        topic = f"homeassistant/device/{device_id}/config"
        config = await probe.json(topic, lambda value: value["device"].get("model") == "EX-1")
        check_discovery_payload(topic, config, f"{base}/hubs/hub1/state")
        assert config["device"]["manufacturer"] == "Example" and config["qos"] == 1
        assert set(config["components"]) == EXPECTED_COMPONENTS
        assert {c["unique_id"] for c in config["components"].values()} == {
            f"{device_id}_{object_id}" for object_id in EXPECTED_COMPONENTS
        }
        name = config["components"]["ch1_name"]
        assert (name["min"], name["max"], name["pattern"]) == (0, 16, "^(?:|(?=.{1,}$)(?:^[ -~]+$))$")
        # every template reads a key the state topic it listens to really carries
        hub.store.update_channel(device_id, 1, {"rf_dbm": -55.0})
        for component in config["components"].values():
            if "value_template" not in component:  # the plain-text availability topic, read as it is
                continue
            payload = await probe.json(component["state_topic"])
            for key in re.findall(r"value_json\.(\w+)", component["value_template"]):
                assert key in payload, f"{component['unique_id']} reads {key} missing from {component['state_topic']}"
        # the text command is the hub's own set payload
        assert name["command_topic"] == f"{base}/devices/{device_id}/channels/1/set"
        assert name["command_template"] == '{"name": {{ value | tojson }}}'
        online = config["components"]["online"]
        assert online["state_topic"] == f"{base}/devices/{device_id}/availability"
        assert online["availability"] == [config["availability"][0]], "online shows off, not unavailable, when gone"


@pytest.mark.mosquitto_only(
    "counts the copies of each re-published topic; on RabbitMQ the probe also subscribes to the exact topics it"
    " waits for (retained messages reach only those there), and overlapping subscriptions bring a second copy"
)
async def test_homeassistant_birth_republishes_configs_and_state(
    mqtt_broker: TestBroker, tmp_path: Path, receiver: str
) -> None:
    async with watching_hub(mqtt_broker, tmp_path, receiver) as (_, probe, base, device_id):
        await probe.subscribe("homeassistant/device/#")
        await probe.subscribe(f"{base}/#")
        await probe.json(f"homeassistant/device/{device_id}/config")
        probe.clear()
        probe.publish("homeassistant/status", b"offline")
        probe.publish("homeassistant/status", b"online")
        await probe.json(f"homeassistant/device/{device_id}/config")
        await probe.json(f"{base}/hubs/hub1/state")
        await probe.json(f"{base}/devices/{device_id}/channels/1")
        await probe.message(f"{base}/devices/{device_id}/availability", lambda payload: payload == b"online")
        configs = [topic for topic, _ in probe.messages if topic.startswith("homeassistant/device/")]
        assert sorted(configs) == sorted([f"homeassistant/device/{device_id}/config", HUB_CONFIG]), (
            "one re-publish per device (receiver and hub) for one birth message"
        )


async def test_the_meter_snapshot_after_a_birth_waits_on_the_hubs_clock(
    mqtt_broker: TestBroker, tmp_path: Path, receiver: str
) -> None:
    clock = SimulatedClock()
    async with running_hub(mqtt_broker, tmp_path, [receiver], clock=clock) as hub, MqttProbe(mqtt_broker) as probe:
        base, device_id = hub.config.mqtt.base_topic, await online_device(hub)
        meters = f"{base}/devices/{device_id}/channels/1/meters"
        await probe.subscribe(meters)
        await probe.subscribe(f"{base}/hubs/hub1/response/info")
        probe.publish("homeassistant/status", b"online")
        # requests are answered in order, so once this answer is in, the birth message was seen too
        await probe.request(f"{base}/hubs/hub1/response/info", f"{base}/hubs/hub1/request/info", {})
        # the woken snapshot runs before a request crosses the broker: once answered, it would have come first
        clock.advance(HOMEASSISTANT_METER_DELAY_S - 0.1)
        await probe.request(f"{base}/hubs/hub1/response/info", f"{base}/hubs/hub1/request/info", {})
        assert not [topic for topic, _ in probe.messages if topic == meters], "no snapshot before the delay"
        clock.advance(0.1)
        await probe.request(f"{base}/hubs/hub1/response/info", f"{base}/hubs/hub1/request/info", {})
        assert [topic for topic, _ in probe.messages if topic == meters] == [meters], "one snapshot once it is due"


async def test_discovery_can_be_switched_off_or_moved(mqtt_broker: TestBroker, tmp_path: Path, receiver: str) -> None:
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("#")
        async with running_hub(mqtt_broker, tmp_path, [receiver], homeassistant_prefix="ha_custom") as hub:
            device_id = await online_device(hub)
            await probe.json(f"ha_custom/device/{device_id}/config")
        probe.clear()
        async with running_hub(mqtt_broker, tmp_path, [receiver], hub_id="quiet", homeassistant=False) as hub:
            base = hub.config.mqtt.base_topic
            await probe.json(f"{base}/devices/{device_id}/channels/1")
            probe.publish("homeassistant/status", b"online")
            # requests are answered in order, so once this answer is in, the birth message was seen too
            answer = await probe.request(f"{base}/hubs/quiet/response/info", f"{base}/hubs/quiet/request/info", {})
            assert answer["status"] == "ok"
        assert not [topic for topic, _ in probe.messages if topic.endswith("/config")]


def test_a_family_that_reports_every_detail_gets_an_entity_for_each() -> None:
    """Transmitter details, battery health, presets and the receiver's own facts: each field a family declares
    becomes an entity of the documented shape; per-antenna levels are the RF level's attributes."""
    every_field = frozenset(Channel.model_fields) - {"index", "updated_at"}
    device = Device(
        id="shure-quad",
        vendor="shure",
        model="AD4Q",
        host="127.0.0.1",
        port=2202,
        channels=[Channel(index=1)],
        capabilities=Capabilities(channel_fields=every_field),
        rf_band="G57",
        encryption_mode="AES-256",
        ip_address="192.0.2.10",
        mac_address="00:0E:DD:00:00:01",
        dante_name="AD4Q-rack1",
        front_panel_locked=True,
    )
    topics = Topics("wmhub", "hub1", "homeassistant")
    config = discovery_config(device, topics, 1)
    check_discovery_payload("homeassistant/device/shure-quad/config", config, topics.hub_state)
    components = config["components"]
    assert {f"ch1_{reading.field}" for reading in READINGS} <= set(components)
    assert {reading.field for reading in DEVICE_READINGS} <= set(components)
    assert components["ch1_battery_temp_c"]["unit_of_measurement"] == "°C"
    assert components["ch1_tx_power"]["availability"][-1]["topic"] == topics.channel("shure-quad", 1), (
        "a transmitter's readings are unavailable while none is linked"
    )
    rf = components["ch1_rf_dbm"]
    assert (
        rf["json_attributes_topic"] == topics.meters("shure-quad", 1)
        and "rf_antennas" in rf["json_attributes_template"]
    )
    assert components["rf_band"]["state_topic"] == topics.device("shure-quad")


def test_receiver_facts_appear_only_once_the_receiver_reports_them() -> None:
    device = Device(id="shure-plain", vendor="shure", host="127.0.0.1", port=2202, channels=[Channel(index=1)])
    components = discovery_config(device, Topics("wmhub", "hub1", "homeassistant"), 1)["components"]
    assert not {reading.field for reading in DEVICE_READINGS} & set(components)


def test_a_settable_transmitter_power_is_a_select_of_the_family_levels() -> None:
    capabilities = Capabilities(
        channel_fields=frozenset({"tx_present", "tx_power", "tx_slots"}),
        commands={CommandKind.TX_POWER: CommandLimits(channel=True, choices=("10mW", "50mW", "100mW"))},
    )
    device = Device(
        id="shure-p10t",
        vendor="shure",
        host="127.0.0.1",
        port=2202,
        channels=[Channel(index=1)],
        capabilities=capabilities,
    )
    topics = Topics("wmhub", "hub1", "homeassistant")
    config = discovery_config(device, topics, 1)
    check_discovery_payload("homeassistant/device/shure-p10t/config", config, topics.hub_state)
    power = config["components"]["ch1_tx_power"]
    assert power["platform"] == "select" and power["options"] == ["10mW", "50mW", "100mW"]
    assert power["command_topic"] == topics.channel("shure-p10t", 1) + "/set"
    assert power["command_template"] == '{"tx_power": {{ value | tojson }}}'
    slots = config["components"]["ch1_tx_slots"]
    assert slots["platform"] == "sensor" and "tx_slots" in slots["json_attributes_template"]


async def test_a_burst_of_births_is_answered_at_once_and_once_more_at_its_end(
    mqtt_broker: TestBroker, tmp_path: Path, receiver: str
) -> None:
    """Each answer is every config and state again: 200 births must not mean 200 times all of it."""
    async with running_hub(mqtt_broker, tmp_path, [receiver]) as hub, MqttProbe(mqtt_broker) as probe:
        base, device_id = hub.config.mqtt.base_topic, await online_device(hub)
        config = f"homeassistant/device/{device_id}/config"
        await probe.subscribe(config)
        await probe.subscribe(f"{base}/hubs/hub1/response/info")
        probe.clear()
        for _ in range(200):
            probe.publish("homeassistant/status", b"online")

        def answers() -> int:
            return len([topic for topic, _ in probe.messages if topic == config])

        await eventually(lambda: answers() == 2, 10, "the first answer and the burst's last")
        await probe.request(f"{base}/hubs/hub1/response/info", f"{base}/hubs/hub1/request/info", {})
        assert answers() == 2
