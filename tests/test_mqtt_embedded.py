"""The embedded broker (`--mqtt embedded`) on a port something else already holds: the hub still runs,
without MQTT, and says why and what to change."""

import logging
import socket
from pathlib import Path

import pytest

from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from tests.mosquitto import EmbeddedTestBroker, MqttProbe


async def test_a_taken_port_leaves_mqtt_off_and_the_hub_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = HubConfig(
            data_dir=tmp_path,
            mqtt=MqttSettings(url="embedded", embedded_port=port),
            discovery=DiscoverySettings(enabled=False),
            http=HttpSettings(port=0),
        )
        with caplog.at_level(logging.ERROR, logger="hub.mqtt"):
            async with compose_hub(config, PluginHost()) as hub:
                assert hub.web.port is not None and hub.mqtt is not None and hub.mqtt.client is None
    [record] = [r for r in caplog.records if "embedded MQTT broker cannot listen" in r.getMessage()]
    message = record.getMessage()
    assert f"127.0.0.1:{port}" in message and "mqtt.embedded_port" in message and "MQTT is off" in message


async def test_a_client_of_the_embedded_broker_gets_the_retained_messages_of_its_own_subscriptions_only() -> None:
    """Two outside audits: a client of the demo's broker subscribed to one topic got the hub's retained device
    list and state too (amqtt replayed every subscription's retained messages at each connect): once a
    client had subscribed to ``#`` and left, a later one got the whole retained store, and the README's own
    ``mosquitto_sub … | jq`` pipeline broke on it."""
    broker = EmbeddedTestBroker()
    await broker.start()
    try:
        async with MqttProbe(broker, "hub-like") as hub_like:
            hub_like.publish("wmhub/hubs/x/state", b'{"state":"online"}', retain=True)
            hub_like.publish("wmhub/hubs/x/response/set", b'{"status":"ok"}', retain=True)
            await hub_like.subscribe("#")
            await hub_like.message("wmhub/hubs/x/response/set")
        async with MqttProbe(broker, "one-topic") as one_topic:
            # what the broker sends at connect goes out before it handles this subscription
            await one_topic.subscribe("wmhub/hubs/x/response/set")
            await one_topic.message("wmhub/hubs/x/response/set")
            assert [topic for topic, _ in one_topic.messages] == ["wmhub/hubs/x/response/set"]
    finally:
        await broker.stop()
