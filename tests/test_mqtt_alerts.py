"""Alerts reach MQTT: a retained list of open alerts and an event for every change."""

from pathlib import Path

from wmhub_shure.simulator import ShureSimulator

from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.mosquitto import MqttProbe, TestBroker


async def test_a_low_battery_alert_is_published_and_cleared(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    config = HubConfig(
        hub_id="alerting",
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mqtt_broker.url, homeassistant=False),
        http=HttpSettings(enabled=False),
        discovery=DiscoverySettings(enabled=False),
        meter_rate_ms=200,
    )
    plugins = PluginHost()
    plugins.load_entry_points(only="shure")
    async with ShureSimulator("ulxd4") as receiver, MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("wmhub/hubs/alerting/alerts/#")
        async with compose_hub(config, plugins) as hub:
            await hub.add_device(receiver.url, source="test")
            device_id = await eventually(lambda: next(iter(hub.store.devices), None), what="the receiver")
            receiver.set_channel(1, battery_bars=1)
            event = await probe.json("wmhub/hubs/alerting/alerts/event", lambda e: e["action"] == "raised", timeout=10)
            assert event["alert"]["device_id"] == device_id and event["alert"]["channel"] == 1
            listed = await probe.json("wmhub/hubs/alerting/alerts", lambda alerts: len(alerts) == 1)
            assert listed[0]["kind"] == event["alert"]["kind"]
            receiver.set_channel(1, battery_bars=5)
            await probe.json("wmhub/hubs/alerting/alerts/event", lambda e: e["action"] == "cleared", timeout=15)
            assert await probe.json("wmhub/hubs/alerting/alerts", lambda alerts: alerts == []) == []
