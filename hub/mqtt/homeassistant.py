"""Home Assistant MQTT discovery: one device-based config per receiver (``<prefix>/device/<id>/config``).

Full key names (no abbreviations), an ``origin`` block, and per channel the sensors, binary sensors,
text, switch and button a sound engineer wants on a dashboard. Every component reads the hub's own
state topics, so Home Assistant sees exactly what every other MQTT consumer sees. Availability is the
hub's state and the device's availability together (``availability_mode: all``): a hub that dies
(last will) makes all its receivers unavailable, and so does a receiver that drops off the network.
"""

from __future__ import annotations

from typing import Any, Final

from hub import __version__
from hub.model import Device
from hub.mqtt.topics import Topics, homeassistant_node_id

ORIGIN: Final = {"name": "wmhub", "sw_version": __version__}

# A value template that yields "None" for a JSON null: Home Assistant then shows the entity as unknown.
_ON_OFF = "{{% if value_json.{0} is none %}}None{{% elif value_json.{0} %}}ON{{% else %}}OFF{{% endif %}}"

# (metric, platform, name, state source, extra keys). "channel" reads the retained channel state,
# "meters" the throttled meters topic.
_READINGS: Final[list[tuple[str, str, str, str, dict[str, Any]]]] = [
    (
        "battery_percent",
        "sensor",
        "Battery",
        "channel",
        {"device_class": "battery", "unit_of_measurement": "%", "state_class": "measurement"},
    ),
    ("battery_bars", "sensor", "Battery bars", "channel", {"state_class": "measurement", "icon": "mdi:battery"}),
    (
        "battery_runtime_min",
        "sensor",
        "Battery runtime",
        "channel",
        {"device_class": "duration", "unit_of_measurement": "min", "state_class": "measurement"},
    ),
    (
        "rf_dbm",
        "sensor",
        "RF level",
        "meters",
        {"device_class": "signal_strength", "unit_of_measurement": "dBm", "state_class": "measurement"},
    ),
    (
        "rf_quality_percent",
        "sensor",
        "RF quality",
        "meters",
        {"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:signal"},
    ),
    (
        "audio_dbfs",
        "sensor",
        "Audio level",
        "meters",
        {"unit_of_measurement": "dBFS", "state_class": "measurement", "icon": "mdi:waveform"},
    ),
    (
        "frequency_mhz",
        "sensor",
        "Frequency",
        "channel",
        {"device_class": "frequency", "unit_of_measurement": "MHz", "suggested_display_precision": 3},
    ),
    ("tx_model", "sensor", "Transmitter model", "channel", {"icon": "mdi:microphone"}),
    ("tx_present", "binary_sensor", "Transmitter present", "channel", {"device_class": "connectivity"}),
    ("audio_peak", "binary_sensor", "Audio clip", "meters", {"device_class": "problem"}),
]


def discovery_config(device: Device, topics: Topics, qos: int) -> dict[str, Any]:
    """The device-based discovery payload for one receiver and all its channels."""
    node = homeassistant_node_id(device.id)
    components: dict[str, dict[str, Any]] = {}
    for channel in device.channels:
        index = channel.index
        state_topics = {"channel": topics.channel(device.id, index), "meters": topics.meters(device.id, index)}
        set_topic = f"{state_topics['channel']}/set"

        def add(metric: str, platform: str, name: str, keys: dict[str, Any], *, index: int = index) -> None:
            object_id = f"ch{index}_{metric}"
            components[object_id] = {
                "platform": platform,
                "unique_id": f"{node}_{object_id}",
                "name": f"Ch {index} {name}",
                **keys,
            }

        for metric, platform, name, source, extra in _READINGS:
            template = _ON_OFF.format(metric) if platform == "binary_sensor" else f"{{{{ value_json.{metric} }}}}"
            add(metric, platform, name, {"state_topic": state_topics[source], "value_template": template, **extra})
        add(
            "name",
            "text",
            "Name",
            {
                "command_topic": set_topic,
                "command_template": '{"name": {{ value | tojson }}}',
                "state_topic": state_topics["channel"],
                "value_template": "{{ value_json.name or '' }}",
                "icon": "mdi:rename",
            },
        )
        add(
            "mute",
            "switch",
            "Mute",
            {
                "command_topic": set_topic,
                "payload_on": '{"muted": true}',
                "payload_off": '{"muted": false}',
                "state_topic": state_topics["channel"],
                "value_template": _ON_OFF.format("muted"),
                "state_on": "ON",
                "state_off": "OFF",
                "icon": "mdi:microphone-off",
            },
        )
        add(
            "identify",
            "button",
            "Identify",
            {"command_topic": set_topic, "payload_press": '{"identify": true}', "device_class": "identify"},
        )
    device_block = {
        "identifiers": [f"wmhub_{node}"],
        "name": device.name
        or " ".join(filter(None, [device.vendor.title(), device.model or device.family, device.id])),
        "manufacturer": device.vendor.title(),
        "model": device.model or device.family,
        "sw_version": device.firmware,
    }
    return {
        # Home Assistant rejects null where it expects a string, so unknown details are left out
        "device": {key: value for key, value in device_block.items() if value is not None},
        "origin": ORIGIN,
        "availability": [
            {"topic": topics.hub_state, "value_template": "{{ value_json.state }}"},
            {"topic": topics.availability(device.id)},
        ],
        "availability_mode": "all",
        "qos": qos,
        "components": components,
    }
