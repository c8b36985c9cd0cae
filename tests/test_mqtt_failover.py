"""A hub given several brokers (the nodes of a cluster): how the list is written, and failing over.

Two Mosquittos stand in for two cluster nodes here (they share no retained store, which is the hard
case: every retained topic must be re-published on the node failed over to). The RabbitMQ cluster
itself is in tests/test_scale_rabbitmq_cluster.py.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import NamedTuple

import aiohttp
import pytest

from hub.compose import compose_hub
from hub.config import ConfigError, HubConfig, MqttSettings, load_config
from hub.mqtt.brokers import BrokerUrlError, parse_broker_urls
from tests import fault_harness
from tests.mosquitto import MqttProbe, free_port, running_broker
from tests.test_mqtt_bridge import bridge_of, listening_to, online_device, receiver, running_hub

__all__ = ["receiver"]  # the fixture, imported so pytest finds it here


class Brokers(NamedTuple):
    """What running_hub reads of a broker: its URL, here a list of two."""

    url: str


def test_brokers_are_listed_in_the_file_the_environment_or_the_url(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[mqtt]\nurl = ["mqtt://node1:1883", "mqtts://u:p@node2"]\n')
    from_file = load_config(path, environ={}).mqtt.url
    from_env = load_config(environ={"WMHUB_MQTT__URL": "mqtt://node1:1883, mqtts://u:p@node2"}).mqtt.url
    assert from_file == from_env == "mqtt://node1:1883,mqtts://u:p@node2"
    assert [str(address) for address in parse_broker_urls(from_file)] == ["mqtt://node1:1883", "mqtts://node2:8883"]


@pytest.mark.parametrize("url", ["mqtt://a,ftp://b", "mqtt://a,", "embedded,mqtt://a", ""])
def test_a_list_with_anything_but_broker_urls_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.url"):
        load_config(environ={"WMHUB_MQTT__URL": url})


def test_an_empty_list_names_no_broker() -> None:
    with pytest.raises(BrokerUrlError, match="no MQTT broker"):
        parse_broker_urls(" , ")


def test_the_hub_info_shows_every_broker_without_its_password(tmp_path: Path) -> None:
    config = HubConfig(data_dir=tmp_path, mqtt=MqttSettings(url="mqtt://u:secret@node1,mqtt://u:s@cr@t@node2:1884"))
    assert compose_hub(config).info()["config"]["mqtt"] == "mqtt://***@node1,mqtt://***@node2:1884"


async def test_an_ipv6_broker_is_shown_as_a_url_that_pastes_back(tmp_path: Path) -> None:
    """An outside audit: a hub given mqtt://[::1]:PORT named its broker mqtt://::1:PORT in /api/health and every
    log line, which is no URL: pasted back into --mqtt, --check refused it."""
    url = f"mqtt://[::1]:{free_port()}"  # nothing listens there: the health shows the broker it keeps trying
    config = fault_harness.hub_config(tmp_path / "hub", [], mqtt_url=url)
    async with (
        fault_harness.running_hub(config) as hub,
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{hub.web.port}/api/health") as response,
    ):
        shown = (await response.json())["mqtt"]["broker"]
    assert shown == url
    command = [sys.executable, "-m", "hub.cli", "run", "--check", "--data-dir", str(tmp_path / "check")]
    checked = await asyncio.create_subprocess_exec(
        *command, "--mqtt", shown, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(checked.communicate(), 60)
    assert checked.returncode == 0, stderr.decode()


async def test_the_hub_fails_over_to_the_next_broker_and_puts_its_state_there(tmp_path: Path, receiver: str) -> None:
    async with (
        running_broker() as first,
        running_broker() as second,
        running_hub(Brokers(f"{first.url},{second.url}"), tmp_path, [receiver]) as hub,
    ):
        device_id = await online_device(hub)
        base = hub.config.mqtt.base_topic
        client = bridge_of(hub).client
        assert client is not None and client.address.port == first.port
        await first.stop()
        # the second broker never saw this hub: everything it holds now, the hub re-published there
        async with MqttProbe(second, client_id="wmhub-test-newcomer") as newcomer:
            await newcomer.subscribe(f"{base}/#")
            assert await newcomer.json(f"{base}/hubs/hub1/state", timeout=10) == {"state": "online"}
            assert await newcomer.message(f"{base}/devices/{device_id}/availability") == b"online"
            assert (await newcomer.json(f"{base}/devices/{device_id}/channels/1"))["index"] == 1
            assert client.address.port == second.port and client.failovers >= 1
            # and it answers commands arriving through the new broker, once subscribed there
            await listening_to(hub, device_id)
            response = await newcomer.request(
                f"{base}/hubs/hub1/response/set", f"{base}/devices/{device_id}/channels/1/set", {"name": "Moved"}
            )
            assert response["status"] == "ok", response
