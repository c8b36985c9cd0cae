"""The embedded broker (`--mqtt embedded`) on a port something else already holds: the hub still runs,
without MQTT, and says why and what to change."""

import logging
import socket
from pathlib import Path

import pytest

from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost


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
