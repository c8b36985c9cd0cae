"""The embedded broker (`--mqtt embedded`) on a port something else already holds: the hub still runs,
without MQTT, and says why and what to change."""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.mosquitto import EmbeddedTestBroker, MqttProbe, free_port


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


def _mqtt_packet(kind: int, body: bytes) -> bytes:
    length, encoded = len(body), b""
    while True:
        length, digit = divmod(length, 128)
        encoded += bytes([digit | (0x80 if length else 0)])
        if not length:
            return bytes([kind]) + encoded + body


async def _subscribe_everything_then_vanish(port: int, name: str) -> int:
    """An MQTT 3.1.1 client that subscribes to ``#``, takes some traffic and drops its connection unannounced
    (a laptop closed, ``mosquitto_sub`` killed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client_id = name.encode()
    writer.write(_mqtt_packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id))
    writer.write(_mqtt_packet(0x82, b"\x00\x01\x00\x01#\x00"))
    received = 0
    while received < 4096:
        received += len(await asyncio.wait_for(reader.read(4096), 10))
    writer.transport.abort()
    return received


@contextlib.asynccontextmanager
async def _demo_hub_with_its_broker(
    tmp_path: Path,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, int, Path]]:
    """A ``wmhub run --demo`` child whose embedded broker listens: the process, its web port, the broker's
    port, its log. Killed on the way out if it has not exited."""
    http_port, mqtt_port = free_port(), free_port()
    log = tmp_path / "hub.log"
    environ = {key: value for key, value in os.environ.items() if not key.startswith("WMHUB_")}
    environ |= {"WMHUB_DISCOVERY__ENABLED": "false", "WMHUB_MQTT__EMBEDDED_PORT": str(mqtt_port)}
    command = [sys.executable, "-m", "hub.cli", "run", "--demo", "--http", f"127.0.0.1:{http_port}"]
    with log.open("wb") as out:
        hub = await asyncio.create_subprocess_exec(
            *command, "--data-dir", str(tmp_path / "data"), stdout=out, stderr=out, env=environ
        )
    try:
        await eventually(lambda: "embedded MQTT broker listening" in log.read_text(), 30, "the demo's broker")
        yield hub, http_port, mqtt_port, log
    finally:
        if hub.returncode is None:
            hub.kill()
            await hub.wait()


def _error_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if '"level":"error"' in line]


async def test_subscribers_leaving_the_demo_broker_leave_no_errors_in_the_hub_log(tmp_path: Path) -> None:
    """An outside audit following the README: each ``mosquitto_sub`` watching the demo and stopped left
    "Task exception was never retrieved" errors with tracebacks in the hub's log (amqtt's tasks sending to a
    client that had gone)."""
    async with _demo_hub_with_its_broker(tmp_path) as (hub, _, mqtt_port, log):
        for number in range(5):
            assert await _subscribe_everything_then_vanish(mqtt_port, f"watcher-{number}") >= 4096
        hub.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(hub.wait(), 30) == 0
    assert _error_lines(log) == []


# Node-RED 4's MQTT 5 broker node connecting (mqtt.js, "request response/problem information" set): amqtt reads
# it as MQTT 3.1.1, takes the properties for a client id 1049 bytes long and waits for them for good
NODE_RED_V5_CONNECT = bytes.fromhex("101f00044d5154540502000f0419011701000e6e6f64657265645f616263313233")


async def _keep_pinging(port: int, name: str, connected: asyncio.Event, go: asyncio.Event, stop: asyncio.Event) -> None:
    """An MQTT 3.1.1 client that keeps sending, from ``go`` on (as Node-RED acknowledging and pinging while the
    hub stops)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client_id = name.encode()
    writer.write(_mqtt_packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id))
    assert (await asyncio.wait_for(reader.readexactly(4), 10))[:2] == b"\x20\x02"  # CONNACK
    connected.set()
    # the others connect first: a broker flooded by the clients already in answers the last ones late
    await go.wait()

    async def discard() -> None:
        while await reader.read(65536):
            pass

    draining = asyncio.ensure_future(discard())
    try:
        while not stop.is_set() and not writer.is_closing():
            writer.write(b"\xc0\x00" * 64)  # PINGREQ
            await writer.drain()
    except ConnectionError:
        pass  # the hub cut it: what the test waits for
    finally:
        draining.cancel()
        writer.transport.abort()


@contextlib.asynccontextmanager
async def _clients_sending_without_pause(port: int, count: int) -> AsyncIterator[None]:
    """``count`` MQTT 3.1.1 clients of the broker on ``port``, all connected, then sending without pause until
    the block ends or the broker cuts them."""
    go, stop = asyncio.Event(), asyncio.Event()
    connected = [asyncio.Event() for _ in range(count)]
    pingers = [
        asyncio.ensure_future(_keep_pinging(port, f"node-red-{n}", up, go, stop)) for n, up in enumerate(connected)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(up.wait() for up in connected)), 30)
        go.set()  # each sends without pause from its next turn until the hub cuts it
        yield
    finally:
        stop.set()
        for pinger in pingers:
            pinger.cancel()
        await asyncio.gather(*pingers, return_exceptions=True)


async def test_clients_sending_without_pause_to_the_demo_broker_leave_the_hub_answering(tmp_path: Path) -> None:
    """On Python 3.12 a client of the demo's broker that kept sending held the whole hub: amqtt read its packets
    one after the other without letting anything else run as long as some had arrived (``asyncio.wait_for``
    no longer runs the read as a task of its own), so the web UI, the receivers and the MQTT edge stood
    still, and a SIGTERM was never acted on."""
    async with _demo_hub_with_its_broker(tmp_path) as (_, http_port, mqtt_port, log):
        await eventually(lambda: "status board and API on" in log.read_text(), 30, "the hub's web UI")
        async with _clients_sending_without_pause(mqtt_port, 6), aiohttp.ClientSession() as session:
            for _ in range(5):
                async with asyncio.timeout(5):  # it answers at once when idle
                    async with session.get(f"http://127.0.0.1:{http_port}/") as response:
                        assert response.status == 200
                await asyncio.sleep(0.2)


async def test_the_demo_hub_stops_on_sigterm_while_clients_keep_sending_and_node_red_s_mqtt5_node_waits(
    tmp_path: Path,
) -> None:
    """An outside audit with Node-RED on the demo's broker: after SIGTERM the hub logged "shutting down" and
    never exited (a second SIGTERM did nothing either; only kill -9). amqtt's shutdown waits without a limit
    for each client's reader to end, and Python 3.11 loses a cancellation that arrives as a packet has just
    been read: a client sending at that moment (Node-RED's acknowledgements and pings) kept it running.
    Clients that keep sending make that certain; Node-RED's MQTT 5 connection, which amqtt neither
    accepts nor refuses, stays open beside them."""
    node_red_v5: asyncio.StreamWriter | None = None
    try:
        async with _demo_hub_with_its_broker(tmp_path) as (hub, _, mqtt_port, log):
            _, node_red_v5 = await asyncio.open_connection("127.0.0.1", mqtt_port)
            node_red_v5.write(NODE_RED_V5_CONNECT)
            async with _clients_sending_without_pause(mqtt_port, 6):
                hub.send_signal(signal.SIGTERM)
                # before the fix it never exited (this deadline failed the test): now it ends cleanly
                assert await asyncio.wait_for(hub.wait(), 30) == 0
    finally:
        if node_red_v5 is not None:
            node_red_v5.transport.abort()
    # the connections it cut leave no error in its log
    assert _error_lines(log) == []
