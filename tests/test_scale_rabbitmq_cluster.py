"""Two hubs on a two-node RabbitMQ cluster, one connected to each node, each given both nodes' URLs.

State a hub publishes through one node reaches a subscriber on the other. When a node dies (SIGKILL, as
in a power cut) the hub that was on it fails over to the surviving node: its state is online there again,
every retained topic it owns is back (RabbitMQ 3.x keeps retained messages per node, so the hub's
re-publish after each connect is what puts them on the new node), live changes flow again, and no last
will fired for a hub that never went away. When that hub then dies, its last will comes from the node
it failed over to. The failover time printed here is the figure in docs/scaling.md.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import orjson
import pytest
from wmhub_shure.simulator import ShureSimulator

from tests.mosquitto import MqttProbe
from tests.rabbitmq import RabbitNode, running_cluster
from tests.test_scale_two_hubs import hub_process, online_devices

# what docs/scaling.md tells a RabbitMQ cluster's users to set: subscriptions at QoS 0 (a QoS 1 subscription
# lives in a durable queue on the node the hub was connected to, and blocks every reconnect once it died)
ON_CLUSTER = {"MQTT__QOS_SUBSCRIPTIONS": "0"}


def _state(payload: bytes) -> Any:
    return orjson.loads(payload)["state"] if payload else None


async def retained_on(node: RabbitNode, topics: set[str]) -> dict[str, bytes]:
    """What a newcomer on ``node`` reads from each topic (exact subscriptions: RabbitMQ 3.x serves retained
    messages to no wildcard subscription)."""
    async with MqttProbe(node, client_id="wmhub-test-newcomer") as newcomer:
        for topic in sorted(topics):
            await newcomer.subscribe(topic)
            await newcomer.message(topic, timeout=5)
        return dict(newcomer.latest)


@pytest.mark.timeout(300)  # two RabbitMQ nodes boot in this test: 20-90 s on the shared 2-core machine
async def test_a_hub_fails_over_to_the_surviving_node_with_its_state_and_its_last_will(tmp_path: Any) -> None:
    async with (
        running_cluster(2) as (node_a, node_b),
        ShureSimulator("ulxd4d") as east_receiver,
        ShureSimulator("ad4d") as west_receiver,
        MqttProbe(node_b, client_id="wmhub-test-watcher") as watcher,
    ):
        await watcher.subscribe("wmhub/#")
        async with (
            # each hub prefers a different node and knows the other
            hub_process(
                f"{node_a.url},{node_b.url}", "east", east_receiver.url, tmp_path / "east", **ON_CLUSTER
            ) as east,
            hub_process(f"{node_b.url},{node_a.url}", "west", west_receiver.url, tmp_path / "west", **ON_CLUSTER),
        ):
            # published through node A, seen on node B: the cluster routes between its nodes
            [east_device] = await online_devices(watcher, "east")
            [west_device] = await online_devices(watcher, "west")
            east_id = east_device["id"]
            east_receiver.set_name(1, "Via A")
            await watcher.json(f"wmhub/devices/{east_id}/channels/1", lambda state: state["name"] == "Via A")

            watcher.clear()
            killed_at = time.monotonic()
            node_a.kill()
            await watcher.message("wmhub/hubs/east/state", lambda payload: _state(payload) == "online", 30)
            failover_s = time.monotonic() - killed_at
            east_receiver.set_name(2, "After")
            await watcher.json(f"wmhub/devices/{east_id}/channels/2", lambda state: state["name"] == "After")
            flowing_s = time.monotonic() - killed_at
            print(f"\nfailover: state online on the surviving node {failover_s:.2f} s after the kill, "
                  f"a new change through it {flowing_s:.2f} s after")  # fmt: skip

            # no lost state: every retained topic of the east hub is on node B now
            owned = {"wmhub/hubs/east/state", "wmhub/hubs/east/info", "wmhub/hubs/east/devices"}
            owned |= {f"wmhub/devices/{east_id}", f"wmhub/devices/{east_id}/availability"}
            owned |= {f"wmhub/devices/{east_id}/channels/{index}" for index in (1, 2)}
            owned.add(f"homeassistant/device/{east_id}/config")
            retained = await retained_on(node_b, owned)
            assert _state(retained["wmhub/hubs/east/state"]) == "online"
            assert retained[f"wmhub/devices/{east_id}/availability"] == b"online"
            assert orjson.loads(retained[f"wmhub/devices/{east_id}/channels/1"])["name"] == "Via A"
            assert orjson.loads(retained[f"wmhub/devices/{east_id}/channels/2"])["name"] == "After"

            # the hub never went away: no last will fired for it, and the west hub was not disturbed
            east_states = [_state(p) for t, p in watcher.messages if t == "wmhub/hubs/east/state"]
            assert "offline" not in east_states, east_states
            assert not any(t == "wmhub/hubs/west/state" and _state(p) == "offline" for t, p in watcher.messages)

            # now the east hub dies: its will was handed to node B with the new connection, and fires there
            east.send_signal(signal.SIGKILL)
            await east.wait()
            await watcher.message("wmhub/hubs/east/state", lambda payload: _state(payload) == "offline", 10)
            west_receiver.set_name(1, "West on")
            await watcher.json(
                f"wmhub/devices/{west_device['id']}/channels/1", lambda state: state["name"] == "West on"
            )
