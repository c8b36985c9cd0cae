"""The MQTT wire the hub owns itself (ADR 0005): the QoS 0 PUBLISH encoder, and the two places it relies on
paho's private API (``Client._create_socket`` overridden, ``Client._sock_close`` called), pinned to paho 2."""

from __future__ import annotations

import asyncio
import socket
from importlib.metadata import version

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.mqtt.frames import qos0_publish, topic_field
from hub.mqtt.transport import CoalescingSocket, HandedSocketClient


def test_a_short_publish_frame_byte_by_byte() -> None:
    # type 3 (PUBLISH), no flags; remaining length 7 = 2 (topic length) + 3 ("a/b") + 2 ("hi")
    assert qos0_publish(topic_field("a/b"), b"hi", retain=False) == b"\x30\x07\x00\x03a/bhi"
    assert qos0_publish(topic_field("a/b"), b"hi", retain=True)[:1] == b"\x31", "the retain flag is bit 0"
    assert qos0_publish(topic_field("é"), b"", retain=False) == b"\x30\x04\x00\x02\xc3\xa9", "the topic is UTF-8"


# MQTT 3.1.1, section 2.2.3, table 2.4: the remaining length's encoding at the edges of each size
@pytest.mark.parametrize(
    ("remaining", "encoded"),
    [
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
    ],
)
def test_the_remaining_length_is_encoded_as_the_spec_says(remaining: int, encoded: bytes) -> None:
    payload = b"x" * (remaining - 3)  # topic "t": 2 bytes of length and 1 of name
    frame = qos0_publish(topic_field("t"), payload, retain=False)
    assert frame == b"\x30" + encoded + b"\x00\x01t" + payload


def test_paho_is_the_major_version_whose_private_api_the_client_uses() -> None:
    assert version("paho-mqtt").split(".")[0] == "2", "pyproject.toml pins paho-mqtt<3: check ADR 0005 first"
    assert callable(paho.Client._create_socket) and callable(paho.Client._sock_close)


async def test_paho_connects_over_the_socket_the_hub_hands_it() -> None:
    """paho's connect calls the overridden _create_socket: its CONNECT goes out on the handed socket."""
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client = HandedSocketClient(CallbackAPIVersion.VERSION2, client_id="wire-test")
    handed = client.handed_socket = CoalescingSocket(ours, asyncio.get_running_loop(), lambda exc: None)
    try:
        client.connect_async("127.0.0.1", 1883, 30)
        client.reconnect()
        handed.flush()  # it would write at the end of this loop iteration
        connect = broker.recv(1024)
        assert connect[:1] == b"\x10" and b"MQTT" in connect and b"wire-test" in connect
        client._sock_close()
        assert broker.recv(1024) == b"", "_sock_close closed the handed socket"
    finally:
        broker.close()


def test_without_a_handed_socket_paho_cannot_connect_by_itself() -> None:
    client = HandedSocketClient(CallbackAPIVersion.VERSION2, client_id="wire-test")
    client.connect_async("127.0.0.1", 1883, 30)
    with pytest.raises(ConnectionError, match="no connected socket"):
        client.reconnect()
