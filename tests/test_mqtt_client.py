"""The asyncio-driven paho client against a real broker: publish, subscribe, retained replay, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import tracemalloc
from collections.abc import AsyncIterator
from typing import cast

import orjson
import pytest

from hub.backoff import Backoff
from hub.clock import SimulatedClock
from hub.mqtt.brokers import BrokerAddress, Will
from hub.mqtt.client import MAX_WRITE_BUFFER, MqttClient
from hub.mqtt.frames import topic_field
from hub.testing import eventually
from tests.mosquitto import MqttProbe, TestBroker


@contextlib.asynccontextmanager
async def connected_client(broker: TestBroker, client_id: str) -> AsyncIterator[MqttClient]:
    client = MqttClient(BrokerAddress(broker.host, broker.port), client_id, on_message=lambda t, p, r: None)
    client.start()
    try:
        assert await client.wait_connected(5)
        yield client
    finally:
        await client.stop()


async def test_publishes_and_receives_over_a_real_broker(mqtt_broker: TestBroker) -> None:
    received: list[tuple[str, bytes]] = []
    client = MqttClient(
        BrokerAddress(mqtt_broker.host, mqtt_broker.port), "c1", on_message=lambda t, p, r: received.append((t, p))
    )
    client.subscribe("in/#", 1)
    assert not client.subscribed
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
            await eventually(lambda: client.subscribed, 5, "the broker's acknowledgement of in/#")
            probe.publish("in/x", b"hello")
            await eventually(lambda: ("in/x", b"hello") in received, 5, "inbound message")
            # a subscription asked for later is unconfirmed until the broker acknowledges it
            client.subscribe("late/#", 1)
            assert not client.subscribed
            await eventually(lambda: client.subscribed, 5, "the broker's acknowledgement of late/#")
            probe.publish("late/y", b"there")
            await eventually(lambda: ("late/y", b"there") in received, 5, "the message on the late subscription")
    finally:
        await client.stop()


async def test_qos0_packets_of_every_length_arrive_whole_and_in_order(mqtt_broker: TestBroker) -> None:
    """QoS 0 publishes bypass paho and share one write buffer: lengths cross each remaining-length byte."""
    sizes = [1, 100, 127, 128, 16_383, 16_384, 200_000, 5]
    async with connected_client(mqtt_broker, "c2") as client, MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("sizes/#")
        for number, size in enumerate(sizes):
            client.publish(f"sizes/{number}", bytes([number]) * size, 0)
            client.publish("sizes/qos1", str(number).encode(), 1)  # interleaved with paho's own packets
        await eventually(lambda: len(probe.messages) == 2 * len(sizes), 5, "every message")
        qos0 = [(topic, payload) for topic, payload in probe.messages if topic != "sizes/qos1"]
        assert qos0 == [(f"sizes/{n}", bytes([n]) * size) for n, size in enumerate(sizes)]
        qos1 = [payload for topic, payload in probe.messages if topic == "sizes/qos1"]
        assert qos1 == [str(n).encode() for n in range(len(sizes))]


async def test_will_is_set_and_a_clean_stop_does_not_trigger_it(mqtt_broker: TestBroker) -> None:
    async with MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("will/#")
        client = MqttClient(
            BrokerAddress(mqtt_broker.host, mqtt_broker.port),
            "c3",
            on_message=lambda t, p, r: None,
            will=Will("will/state", b"gone", 1, True),
        )
        client.start()
        assert await client.wait_connected(5)
        client.publish("will/state", b"here", 1, retain=True)
        await probe.message("will/state", lambda payload: payload == b"here")
        for number in range(100):
            client.publish("will/last", str(number).encode(), 0)
        await client.stop()
        await probe.message("will/last", lambda payload: payload == b"99")
        # a marker round trip after the stop: had the will fired, it would have arrived before this
        await probe.subscribe("will/after")
        assert b"gone" not in [payload for topic, payload in probe.messages if topic == "will/state"]


async def test_flush_writes_the_buffered_messages_before_the_loop_turns(mqtt_broker: TestBroker) -> None:
    """State changes are flushed at once: on a busy loop the end of the iteration may be far away."""
    async with connected_client(mqtt_broker, "c-flush") as client, MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("now/#")
        socket = client._socket
        assert socket is not None
        client.publish("now/a", b"1", 0)
        assert socket.buffered > 0  # without a flush it would wait for the end of this loop iteration
        client.flush()
        assert socket.buffered == 0
        assert await probe.message("now/a") == b"1"


async def test_live_messages_with_an_encoded_topic_arrive_in_order_with_the_others(mqtt_broker: TestBroker) -> None:
    """The meters' path (a topic encoded once) writes the same packets as publish, into the same buffer."""
    async with connected_client(mqtt_broker, "c-live") as client, MqttProbe(mqtt_broker) as probe:
        await probe.subscribe("live/#")
        field = topic_field("live/é/meters")
        for size in (1, 120, 16_384, 3):
            client.publish_live(field, bytes([size % 256]) * size)
            client.publish("live/state", str(size).encode(), 0)
        await eventually(lambda: len(probe.messages) == 8, 5, "every message")
        assert probe.messages == [
            message
            for size in (1, 120, 16_384, 3)
            for message in (("live/é/meters", bytes([size % 256]) * size), ("live/state", str(size).encode()))
        ]


async def test_live_messages_are_dropped_not_queued_while_the_broker_stops_reading(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker that takes nothing more must not make the hub queue meters without bound: past
    MAX_WRITE_BUFFER they are dropped, counted, and said once."""

    # A transport that stops reading is no longer referenced by the loop, and with its protocol it forms a
    # cycle nothing else holds: a garbage collection during the test would close the broker's end (the
    # client then saw the connection drop after its first message, in one run of the suite in sixty).
    accepted: list[StalledBroker] = []

    class StalledBroker(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)
            accepted.append(self)

        def data_received(self, data: bytes) -> None:
            if data[:1] == b"\x10":  # CONNECT: accept it, then read nothing more
                self.transport.write(b"\x20\x02\x00\x00")
                self.transport.pause_reading()

    server = await asyncio.get_running_loop().create_server(StalledBroker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = MqttClient(BrokerAddress("127.0.0.1", port), "c-stalled", on_message=lambda t, p, r: None)
    client.start()
    try:
        assert await client.wait_connected(5)
        payload = bytes(64 * 1024)
        field = topic_field("stalled/meters")
        with caplog.at_level("WARNING", logger="hub.mqtt"):
            for _ in range(400):  # 26 MB: more than the kernel's socket buffers and MAX_WRITE_BUFFER together
                client.publish_live(field, payload)
                await asyncio.sleep(0)  # the writes the loop makes between meter batches
        socket = client._socket
        # said on failure: a reconnect (connects > 1) restarts the count of drops since the last warning
        state = f"connects={client.connects} last_error={client.last_error} published={client.published}"
        assert socket is not None and socket.buffered <= MAX_WRITE_BUFFER + 2 * len(payload), state
        assert client.dropped > 0 and client.dropped == client.dropped_since_warning, (
            f"dropped={client.dropped} since_warning={client.dropped_since_warning} {state}"
        )
        warnings = [record for record in caplog.records if "not keeping up" in record.getMessage()]
        assert len(warnings) == 1 and "stalled/meters" in warnings[0].getMessage(), [
            record.getMessage() for record in caplog.records
        ]
    finally:
        await client.stop()
        server.close()


def test_a_live_message_while_disconnected_is_counted_as_dropped() -> None:
    client = MqttClient(BrokerAddress("127.0.0.1", 9), "c-never", on_message=lambda t, p, r: None)
    client.publish_live(topic_field("a/meters"), b"{}")
    assert (client.dropped, client.published) == (1, 0)


@pytest.mark.mosquitto_only("stops or restarts its broker; the RabbitMQ node is shared by the session")
async def test_a_failed_write_marks_the_connection_lost_even_when_the_reader_stays_silent(
    mqtt_broker: TestBroker,
) -> None:
    """In loaded runs the reader sometimes never reported the broker's close; a write into the dead socket must."""
    async with connected_client(mqtt_broker, "c-dead") as client:
        socket = client._socket
        assert socket is not None
        asyncio.get_running_loop().remove_reader(socket.fileno())  # the reader that never fires
        await mqtt_broker.stop()
        await eventually(
            lambda: client.publish("dead/x", b"1", 0) or not client.connected, 5, "the dead connection noticed"
        )
        await mqtt_broker.start()
        assert await client.wait_connected(10)


@pytest.mark.mosquitto_only("stops and starts its broker; the RabbitMQ node is shared by the session")
async def test_a_refused_connection_is_retried_only_as_the_clock_moves(mqtt_broker: TestBroker) -> None:
    clock = SimulatedClock()
    client = MqttClient(
        BrokerAddress(mqtt_broker.host, mqtt_broker.port),
        "c-backoff",
        on_message=lambda t, p, r: None,
        backoff=Backoff(base=1.0, cap=1.0, jitter=0.0),
        clock=clock,
    )
    await mqtt_broker.stop()
    client.start()
    try:
        await eventually(lambda: clock.sleeping == 1, what="the client backs off on the clock")
        assert client.last_error is not None
        await mqtt_broker.start()
        clock.advance(0.99)
        assert clock.sleeping == 1 and not client.connected, "no attempt before the back-off has passed"
        clock.advance(0.01)
        assert await client.wait_connected(5)
    finally:
        await client.stop()


def test_retained_state_kept_for_reconnects_costs_its_size_not_the_encoder_buffer() -> None:
    """The client keeps every retained payload to send again after a reconnect: 1,000 channel states must cost
    about 1,000 times their length, not 1,000 of orjson's 8 KB output buffers."""
    client = MqttClient(BrokerAddress("127.0.0.1", 9), "memory-check", on_message=lambda topic, payload, retained: None)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        states = [orjson.dumps({"index": n, "name": f"Vocal {n}", "battery_percent": 80}) for n in range(1000)]
        for number, payload in enumerate(states):
            client.publish(f"wmhub/devices/d{number}/channels/1", payload, 1, retain=True)
        del states
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_topic = (kept - before) / 1000
    assert per_topic < 400, f"{per_topic:.0f} bytes kept per 50-byte retained state"
    assert (
        client.retained_topics["wmhub/devices/d7/channels/1"][0] == b'{"index":7,"name":"Vocal 7","battery_percent":80}'
    )


async def test_a_large_retained_config_is_kept_deflated_and_comes_back_whole_after_a_reconnect(
    mqtt_broker: TestBroker,
) -> None:
    config = orjson.dumps(
        {"components": {f"ch{n}_battery": {"platform": "sensor", "name": f"Ch {n}"} for n in range(400)}}
    )
    client = MqttClient(
        BrokerAddress(mqtt_broker.host, mqtt_broker.port), "deflate-check", on_message=lambda t, p, r: None
    )
    client.publish("homeassistant/device/big/config", config, 1, retain=True)
    kept, _ = client.retained_topics["homeassistant/device/big/config"]
    assert len(kept) < len(config) / 5, "a Home Assistant sized config is kept compressed"
    assert client.retains("homeassistant/device/big/config", config, 1)
    assert not client.retains("homeassistant/device/big/config", config + b" ", 1)
    client.start()  # the first connection sends what was kept while disconnected
    try:
        assert await client.wait_connected(5)
        async with MqttProbe(mqtt_broker, client_id="deflate-probe") as probe:
            await probe.subscribe("homeassistant/device/big/config")
            assert await probe.message("homeassistant/device/big/config") == config
    finally:
        await client.stop()


@pytest.mark.mosquitto_only("Mosquitto closes the older of two connections with one client id")
async def test_two_clients_with_one_id_back_off_and_say_why_instead_of_taking_turns_forever(
    mqtt_broker: TestBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: two hubs with one hub_id (the default is wmhub-<hostname>: two machines cloned
    from one image) took the connection from each other five times a second, for as long as both ran,
    each log saying only 'connection lost'. The back-off now starts over only after a connection that
    lasted, so the turns slow down, and the log names the likely cause."""
    caplog.set_level("WARNING", logger="hub.mqtt")
    address = BrokerAddress(mqtt_broker.host, mqtt_broker.port)
    twins = [MqttClient(address, "wmhub-cloned-host", on_message=lambda t, p, r: None) for _ in range(2)]
    for twin in twins:
        twin.start()
    try:
        said = "closed the connection 3 times in a row within 5 s of connecting: another client may be connecting"
        await eventually(lambda: said in caplog.text, 20, "the likely cause said")
        connects = sum(twin.connects for twin in twins)
        await asyncio.sleep(4)  # what the turns cost: counted over a span, not timed
        assert sum(twin.connects for twin in twins) - connects <= 6, "still taking turns every fraction of a second"
    finally:
        for twin in twins:
            await twin.stop()
