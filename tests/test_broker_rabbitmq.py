"""What differs on RabbitMQ's MQTT plugin (3.x), and how the hub copes (docs/scaling.md, "Broker matrix").

The MQTT suites run against RabbitMQ too (tests/conftest.py); these tests pin the differences down:
retained messages reach only exact topic subscriptions (a newcomer reads state topic by topic; Home
Assistant, which reads its discovery prefix through a wildcard, gets every config from the hub's
re-publish on its birth message), a ``.`` in a topic is a level separator, and a hub publishing state at
QoS 2 is served at QoS 1. The node is shared by the session, so a lost connection is made with a fault
proxy between hub and node rather than by restarting the node.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from hub.testing import eventually
from tests.faultproxy import TcpFaultProxy
from tests.mosquitto import MqttProbe
from tests.rabbitmq import RabbitNode
from tests.test_mqtt_bridge import bridge_of, listening_to, online_device, receiver, running_hub
from tests.test_mqtt_failover import Brokers

__all__ = ["receiver"]  # the fixture, imported so pytest finds it here


async def test_retained_messages_reach_exact_subscriptions_only(rabbitmq_node: RabbitNode) -> None:
    topic = "wmtest-retained/devices/rx1/channels/1"
    async with MqttProbe(rabbitmq_node, client_id="wmhub-test-publisher") as publisher:
        publisher.publish(topic, {"index": 1}, retain=True)
        async with (
            MqttProbe(rabbitmq_node, client_id="wmhub-test-wildcard") as wildcard,
            MqttProbe(rabbitmq_node, client_id="wmhub-test-exact") as exact,
        ):
            await wildcard.subscribe("wmtest-retained/devices/#")
            await exact.subscribe(topic)
            assert await exact.json(topic) == {"index": 1}
            # the wildcard subscription was made first, and got nothing of what the exact one was given
            assert topic not in wildcard.latest
        publisher.publish(topic, b"", retain=True)


async def test_a_dot_in_a_topic_is_a_level_separator(rabbitmq_node: RabbitNode) -> None:
    """RabbitMQ routes MQTT topics as AMQP routing keys: why a base topic there must not contain a dot."""
    async with MqttProbe(rabbitmq_node, client_id="wmhub-test-dots") as probe:
        await probe.subscribe("wmtest-dots/#")
        probe.publish("wmtest-dots/site.a/state", b"x")
        assert await probe.message("wmtest-dots/site/a/state") == b"x"


async def test_a_hub_publishing_state_at_qos_2_works_at_qos_1(
    rabbitmq_node: RabbitNode, tmp_path: Path, receiver: str
) -> None:
    async with (
        MqttProbe(rabbitmq_node) as probe,
        running_hub(rabbitmq_node, tmp_path, [receiver], qos_state=2) as hub,
    ):
        device_id = await online_device(hub)
        await listening_to(hub, device_id)
        base = hub.config.mqtt.base_topic
        await probe.subscribe(f"{base}/#")
        response = await probe.request(
            f"{base}/hubs/hub1/response/set", f"{base}/devices/{device_id}/channels/1/set", {"name": "Q2"}
        )
        assert response["status"] == "ok", response
        await probe.json(f"{base}/devices/{device_id}/channels/1", lambda state: state["name"] == "Q2")
        assert hub.mqtt.client.connected and hub.mqtt.client.connects == 1
    assert orjson.loads(probe.latest[f"{base}/hubs/hub1/state"]) == {"state": "offline"}


async def test_home_assistant_finds_every_receiver_through_its_birth_message(
    rabbitmq_node: RabbitNode, tmp_path: Path, receiver: str
) -> None:
    """Home Assistant subscribes to ``homeassistant/#`` when it starts, where RabbitMQ gives it no retained
    config: it announces itself on ``homeassistant/status``, and the hub re-publishes everything."""
    async with running_hub(rabbitmq_node, tmp_path, [receiver]) as hub:
        device_id = await online_device(hub)
        base = hub.config.mqtt.base_topic
        async with MqttProbe(rabbitmq_node, client_id="wmhub-test-homeassistant") as homeassistant:
            await homeassistant.subscribe("homeassistant/#")
            await homeassistant.subscribe(f"{base}/#")
            homeassistant.publish("homeassistant/status", b"online")
            config = await homeassistant.json(f"homeassistant/device/{device_id}/config")
            assert config["availability"][0]["topic"] == f"{base}/hubs/hub1/state"
            assert await homeassistant.json(f"{base}/hubs/hub1/state") == {"state": "online"}
            await homeassistant.json(f"{base}/devices/{device_id}/channels/1")
            await homeassistant.message(f"{base}/devices/{device_id}/availability", lambda p: p == b"online")


async def test_after_a_lost_connection_the_hub_puts_its_retained_state_back(
    rabbitmq_node: RabbitNode, tmp_path: Path, receiver: str
) -> None:
    async with (
        TcpFaultProxy("127.0.0.1", rabbitmq_node.port) as proxy,
        running_hub(Brokers(f"mqtt://127.0.0.1:{proxy.port}"), tmp_path, [receiver]) as hub,
    ):
        device_id = await online_device(hub)
        topic = f"{hub.config.mqtt.base_topic}/devices/{device_id}/channels/1"
        client = bridge_of(hub).client
        assert client is not None
        proxy.refuse = True
        proxy.cut()
        await eventually(lambda: not client.connected, 5, "the hub disconnected")
        # meanwhile the node's retained value goes stale (as after a restart that kept an old one)
        async with MqttProbe(rabbitmq_node, client_id="wmhub-test-staler") as staler:
            staler.publish(topic, {"index": 1, "name": "stale"}, retain=True)
            await staler.subscribe(topic)
            await staler.json(topic, lambda state: state["name"] == "stale")
        proxy.refuse = False
        await eventually(lambda: client.connected, 15, "the hub connected again")
        async with MqttProbe(rabbitmq_node, client_id="wmhub-test-newcomer") as newcomer:
            await newcomer.subscribe(topic)
            state = await newcomer.json(topic, lambda state: state["name"] != "stale")
            assert state["index"] == 1 and client.connects >= 2
