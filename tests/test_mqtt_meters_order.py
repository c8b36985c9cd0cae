"""A channel's meters topic says nothing before its channel topic does (an outside audit with Node-RED: at
every start the hub published meters of every value null for the demo's G4 and IEM G4 channels, before their
device and channel topics existed)."""

import json
from pathlib import Path

from wmhub_sennheiser.simulator.g4 import G4Simulator
from wmhub_sennheiser.simulator.iem import IemG4Simulator

from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.mosquitto import MqttProbe, TestBroker


async def test_no_meters_before_their_channel_and_none_of_nulls_only(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    config = HubConfig(
        hub_id="order",
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mqtt_broker.url, homeassistant=False),
        http=HttpSettings(enabled=False),
        discovery=DiscoverySettings(enabled=False),
    )
    plugins = PluginHost()
    plugins.load_entry_points(only="sennheiser")
    async with (
        G4Simulator("g4-em300", tick_s=0.2) as g4,
        IemG4Simulator("sr-iem-g4", tick_s=0.2) as iem,
        MqttProbe(mqtt_broker) as probe,
    ):
        await probe.subscribe("wmhub/devices/#")
        async with compose_hub(config, plugins) as hub:
            await hub.add_device(f"sennheiser-g4://127.0.0.1:{g4.port}?local_port=0", source="test")
            await hub.add_device(f"sennheiser-iem-g4://127.0.0.1:{iem.port}?local_port=0", source="test")

            def levels_of_both() -> bool:
                moving = {
                    topic
                    for topic, payload in probe.messages
                    if topic.endswith("/meters") and json.loads(payload)["audio_dbfs"] is not None
                }
                return len(moving) == 2

            await eventually(levels_of_both, 20, "levels of both channels")
    channels_out: set[str] = set()
    for topic, payload in probe.messages:
        if topic.count("/") == 4 and "/channels/" in topic:
            channels_out.add(topic)
        elif topic.endswith("/meters"):
            channel = topic.removesuffix("/meters")
            assert channel in channels_out, f"meters of {channel} before its channel state: {payload!r}"
            assert any(value is not None for value in json.loads(payload).values()), f"{topic}: nulls only"
