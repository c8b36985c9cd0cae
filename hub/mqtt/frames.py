"""The one MQTT frame the hub writes itself: a QoS 0 PUBLISH (MQTT 3.1.1, section 3.3).

paho builds every other packet. A QoS 0 PUBLISH needs no session state (no packet id, no acknowledgement),
so :class:`hub.mqtt.client.MqttClient` encodes meter messages here and writes them into the same buffer as
paho's packets, skipping paho's per-message bookkeeping on the hottest path (ADR 0005).
"""

from __future__ import annotations

import struct
from typing import Final

# The fixed header of a PUBLISH whose remaining length fits in one or two bytes (below 16 KiB: every meter
# message), packed in one call; a longer one writes its remaining length byte by byte.
_SHORT_HEADER: Final = struct.Struct(">BB")
_MEDIUM_HEADER: Final = struct.Struct(">BBB")


def topic_field(topic: str) -> bytes:
    """A topic as a PUBLISH carries it: a length-prefixed UTF-8 string (section 1.5.3). A topic published to
    again and again (a channel's meters) is encoded once."""
    encoded = topic.encode()
    return len(encoded).to_bytes(2, "big") + encoded


def qos0_publish(field: bytes, payload: bytes, retain: bool) -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH packet: fixed header (type 3, the retain flag), the remaining length in
    the spec's variable-length encoding (section 2.2.3), the topic field (:func:`topic_field`), the payload."""
    first = 0x31 if retain else 0x30
    remaining = len(field) + len(payload)
    if remaining < 0x80:
        header = _SHORT_HEADER.pack(first, remaining)
    elif remaining < 0x4000:
        header = _MEDIUM_HEADER.pack(first, remaining & 0x7F | 0x80, remaining >> 7)
    else:
        length = bytearray()
        while remaining:
            remaining, digit = divmod(remaining, 128)
            length.append(digit | 0x80 if remaining else digit)
        header = bytes((first, *length))
    return header + field + payload
