"""The one MQTT frame the hub writes itself: a QoS 0 PUBLISH (MQTT 3.1.1, section 3.3).

paho builds every other packet. A QoS 0 PUBLISH needs no session state (no packet id, no acknowledgement),
so :class:`hub.mqtt.client.MqttClient` encodes meter messages here and writes them into the same buffer as
paho's packets, skipping paho's per-message bookkeeping on the hottest path (ADR 0005).
"""

from __future__ import annotations

import struct
from typing import Final

# The fixed header and topic length of a PUBLISH whose remaining length fits in one or two bytes (below 16 KiB:
# every meter message), packed in one call; a longer one writes its remaining length byte by byte.
_SHORT_HEADER: Final = struct.Struct(">BBH")
_MEDIUM_HEADER: Final = struct.Struct(">BBBH")


def encode_qos0_publish(topic: str, payload: bytes, retain: bool) -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH packet: fixed header (type 3, the retain flag), the remaining length in
    the spec's variable-length encoding (section 2.2.3), the topic as a length-prefixed UTF-8 string, the
    payload."""
    topic_bytes = topic.encode()
    first = 0x31 if retain else 0x30
    remaining = 2 + len(topic_bytes) + len(payload)
    if remaining < 0x80:
        header = _SHORT_HEADER.pack(first, remaining, len(topic_bytes))
    elif remaining < 0x4000:
        header = _MEDIUM_HEADER.pack(first, remaining & 0x7F | 0x80, remaining >> 7, len(topic_bytes))
    else:
        length = bytearray()
        while remaining:
            remaining, digit = divmod(remaining, 128)
            length.append(digit | 0x80 if remaining else digit)
        header = bytes((first, *length)) + len(topic_bytes).to_bytes(2, "big")
    return header + topic_bytes + payload
