"""What a consumer working from the docs sees on a real Mosquitto (Node-RED, a Companion-style client, any
script): every message it is handed means what docs/mqtt.md says, from the hub's first second on.

Found by an outside audit that used the hub from Node-RED and a REST client, working only from the docs.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from wmhub_sennheiser.simulator.ssc2 import SimMobile, Ssc2Simulator
from wmhub_shure.simulator import ShureSimulator

from hub.testing import plugin_host
from tests.mosquitto import MqttProbe, TestBroker
from tests.test_mqtt_bridge import listening_to, online_device, running_hub


async def test_a_channel_is_published_only_with_what_the_receiver_reported(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A receiver identifies itself (and so its channel count) before it reports its channels. The hub published
    each channel as it was made from the count, every field null, and the real state a moment later: Node-RED's
    low-battery switch fired, a dashboard blanked every name, and a client connecting in between was handed
    the nulls as the retained state (about 3 of 4 restarts, the first report ~15 ms behind)."""
    async with ShureSimulator("ad4d", seed=3) as receiver, MqttProbe(mqtt_broker) as probe:
        receiver.answer_delay_s = 0.3  # a receiver on a busy network: its answers come after its identity
        await probe.subscribe("wmfirst/devices/+/channels/+")
        async with running_hub(
            mqtt_broker, tmp_path, [receiver.url], plugins=plugin_host("wmhub-shure"), base="wmfirst"
        ) as hub:
            device_id = await online_device(hub)
            topics = [f"wmfirst/devices/{device_id}/channels/{index}" for index in (1, 2)]
            for topic in topics:
                await probe.json(topic, lambda state: state["name"] is not None, 10)
        published = [orjson.loads(payload) for topic, payload in probe.messages if topic in topics and payload]
        assert published and all(state["name"] is not None and state["updated_at"] is not None for state in published)
        assert all(state["tx_present"] is not None for state in published), "no transmitter is not unknown"


async def test_get_takes_any_payload_as_documented(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """docs/mqtt.md: `get` takes any payload. A Node-RED inject node's default payload (a timestamp), true or
    text was answered 'payload must be a JSON object' and nothing was re-published."""
    async with (
        ShureSimulator("ulxd4d", seed=3) as receiver,
        running_hub(mqtt_broker, tmp_path, [receiver.url], plugins=plugin_host("wmhub-shure"), base="wmget") as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        device_id = await online_device(hub)
        await listening_to(hub, device_id)
        channel = f"wmget/devices/{device_id}/channels/1"
        await probe.subscribe(f"{channel}/#")
        await probe.subscribe("wmget/hubs/hub1/response/get")
        for payload in (b"1765000000000", b"true", b"hello", b"[1, 2]", b""):
            probe.clear()
            probe.publish(f"{channel}/get", payload)
            answer = await probe.json("wmget/hubs/hub1/response/get")
            assert answer["status"] == "ok" and answer["data"]["state"]["name"], (payload, answer)
            await probe.message(f"{channel}/meters")
        answer = await probe.request("wmget/hubs/hub1/response/get", f"{channel}/get", {})
        assert answer["status"] == "ok" and answer["transaction"], "an object's transaction still comes back"


async def test_the_walkthrough_s_recipes_hold_for_a_late_subscriber(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """docs/mqtt.md's Node-RED walkthrough: a flow connecting late gets every channel's meters by one get on the
    device (they are not retained and steady levels send nothing), and a receiver reporting battery bars only
    (battery_percent null, which `battery_percent < 20` took for low) is judged by the hub's low_battery alert."""
    async with (
        ShureSimulator("ur4d", seed=3) as receiver,
        running_hub(mqtt_broker, tmp_path, [receiver.url], plugins=plugin_host("wmhub-shure"), base="wmlate") as hub,
    ):
        device_id = await online_device(hub)
        await listening_to(hub, device_id)
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe(f"wmlate/devices/{device_id}/#")
            await probe.subscribe("wmlate/hubs/hub1/alerts/event")
            probe.publish(f"wmlate/devices/{device_id}/get", b"1765000000000")  # an inject node's timestamp
            for index in (1, 2):
                meters = await probe.json(f"wmlate/devices/{device_id}/channels/{index}/meters")
                assert meters["rf_dbm"] is not None
            state = await probe.json(f"wmlate/devices/{device_id}/channels/1")
            assert state["battery_percent"] is None and state["battery_bars"] is not None, "bars only"

            receiver.set_channel(1, battery_bars=1)
            event = await probe.json(
                "wmlate/hubs/hub1/alerts/event", lambda event: event["alert"]["kind"] == "low_battery", 15
            )
            assert event["action"] == "raised" and (event["alert"]["device_id"], event["alert"]["channel"]) == (
                device_id,
                1,
            )


async def test_a_pack_paired_to_a_running_spectera_grows_its_channel_count_on_mqtt(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A re-audit: a pack paired after the hub connected (a fifth on a Spectera with four) got its channel topic
    and Home Assistant entities, but the device topic and the hub's device list kept channel_count 4, which
    docs/mqtt.md tells flows to check what they hold against (and `wmhub fleet` showed four channels)."""
    async with (
        Ssc2Simulator(mobiles=4) as base_station,
        running_hub(
            mqtt_broker, tmp_path, [base_station.url()], plugins=plugin_host("wmhub-sennheiser"), base="wmpair"
        ) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        device_id = await online_device(hub)
        await probe.subscribe(f"wmpair/devices/{device_id}")
        await probe.subscribe("wmpair/hubs/hub1/devices")
        await probe.json(f"wmpair/devices/{device_id}", lambda state: state["channel_count"] == 4, 10)
        base_station.pair(SimMobile(mt_uid=99, name="Fifth"))
        await probe.json(f"wmpair/devices/{device_id}", lambda state: state["channel_count"] == 5, 10)
        await probe.json(
            "wmpair/hubs/hub1/devices",
            lambda entries: [entry["channel_count"] for entry in entries if entry["id"] == device_id] == [5],
            10,
        )
