"""The asyncio-driven paho client against a real broker: publish, subscribe, retained replay, reconnect."""

from __future__ import annotations

from hub.mqtt.client import BrokerAddress, MqttClient
from hub.testing import eventually
from tests.mosquitto import MqttProbe, TestBroker


async def test_publishes_and_receives_over_a_real_broker(mqtt_broker: TestBroker) -> None:
    received: list[tuple[str, bytes]] = []
    client = MqttClient(
        BrokerAddress(mqtt_broker.host, mqtt_broker.port), "c1", on_message=lambda t, p: received.append((t, p))
    )
    client.subscribe("in/#", 1)
    client.start()
    try:
        assert await client.wait_connected(5)
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe("out/#")
            for number in range(1000):
                client.publish(f"out/{number % 10}", str(number).encode(), 0)
            await eventually(
                lambda: len([m for m in probe.messages if m[0].startswith("out/")]) == 1000, 5, "1000 messages"
            )
            probe.publish("in/x", b"hello")
            await eventually(lambda: ("in/x", b"hello") in received, 5, "inbound message")
    finally:
        await client.stop()
