"""Alerts reach MQTT: a retained list of open alerts and an event for every change."""

from pathlib import Path

from wmhub_shure.simulator import ShureSimulator

from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.mosquitto import MqttProbe, TestBroker


def alerting_hub(mqtt_broker: TestBroker, tmp_path: Path, hub_id: str) -> Hub:
    """A hub with the Shure plugin, MQTT to ``mqtt_broker`` and nothing else."""
    config = HubConfig(
        hub_id=hub_id,
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mqtt_broker.url, homeassistant=False),
        http=HttpSettings(enabled=False),
        discovery=DiscoverySettings(enabled=False),
        meter_rate_ms=200,
    )
    plugins = PluginHost()
    plugins.load_entry_points(only="shure")
    return compose_hub(config, plugins)


async def test_a_low_battery_alert_is_published_and_cleared(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    async with ShureSimulator("ulxd4") as receiver, MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("wmhub/hubs/alerting/alerts/#")
        async with alerting_hub(mqtt_broker, tmp_path, "alerting") as hub:
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


async def test_a_burst_of_alerts_sends_every_event_and_the_list_paced(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """The list of open alerts is every open alert: sent again for each event, a crowded plan's hundreds of alerts
    made a 170 KB retained message several times a second (an outside audit's long run). Every event still goes
    out; the list at most every ALERT_LIST_EVERY_S, as it is when it goes."""
    async with (
        ShureSimulator("ad4q", seed=1) as first,
        ShureSimulator("ad4q", seed=2) as second,
        MqttProbe(mqtt_broker) as probe,
        alerting_hub(mqtt_broker, tmp_path, "burst") as hub,
    ):
        for receiver in (first, second):
            await hub.add_device(receiver.url, source="test")
        await eventually(lambda: len(hub.store.devices) == 2, 10, "both receivers")
        await probe.subscribe("wmhub/hubs/burst/alerts/#")
        await probe.json("wmhub/hubs/burst/alerts", lambda alerts: isinstance(alerts, list))
        for receiver in (first, second):
            for index in range(1, 5):
                receiver.set_tx_present(index, True)
                receiver.set_channel(index, battery_bars=1)
        lows = await probe.json("wmhub/hubs/burst/alerts", lambda alerts: len(alerts) >= 8, timeout=15)
        raised = [t for t, p in probe.messages if t.endswith("/alerts/event") and b'"raised"' in p]
        lists = [t for t, _ in probe.messages if t == "wmhub/hubs/burst/alerts"]
        assert len(raised) >= 8, "every event goes out"
        assert len(lists) < len(raised), f"{len(lists)} lists for {len(raised)} events"
        assert {(a["device_id"], a["channel"]) for a in lows} >= {
            (device, index) for device in hub.store.devices for index in range(1, 5)
        }
