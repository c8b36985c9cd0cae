"""Home Assistant MQTT discovery: one device-based config per receiver, and one for the hub itself.

Full key names (no abbreviations) and an ``origin`` block. A receiver gets entities only for what its
family reports and accepts (``Device.capabilities``): a field the family never fills would stay *unknown*
for good, and a control it lacks would only ever answer ``not_supported``. Every component reads the hub's
own state topics, so Home Assistant sees exactly what every other MQTT consumer sees.

Availability is the hub's state and the receiver's availability together (``availability_mode: all``): a
hub that dies (last will) makes all its receivers unavailable, and so does a receiver that drops off the
network. Transmitter readings (battery, transmitter model) are also unavailable while no transmitter is
linked, rather than unknown.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from hub import __version__
from hub.model import Capabilities, CommandKind, Device, TextLimits
from hub.mqtt.topics import Topics, homeassistant_hub_identifier, homeassistant_node_id

ORIGIN: Final = {"name": "wmhub", "sw_version": __version__}

# A value template that yields "None" for a JSON null: Home Assistant then shows the entity as unknown.
_ON_OFF = "{{% if value_json.{0} is none %}}None{{% elif value_json.{0} %}}ON{{% else %}}OFF{{% endif %}}"
DIAGNOSTIC: Final = {"entity_category": "diagnostic"}
CONFIG: Final = {"entity_category": "config"}
# Readings of the transmitter (or the battery in a charger's bay): nothing to read while none is there.
TRANSMITTER_FIELDS: Final = frozenset(
    {
        "battery_percent",
        "battery_bars",
        "battery_runtime_min",
        "battery_health_percent",
        "battery_cycles",
        "battery_temp_c",
        "battery_charge_state",
        "battery_time_to_full_min",
        "tx_model",
        "tx_power",
        "tx_locked",
        "tx_offset_db",
        "tx_id",
        "tx_talk_switch",
    }
)
# Fast-moving levels: several state changes a second per channel for Home Assistant's recorder to write.
# Off unless the hub setting homeassistant_meter_entities asks for them (or the user enables one).
METER_ENTITY_FIELDS: Final = frozenset({"rf_dbm", "rf_quality_percent", "audio_dbfs", "audio_peak_dbfs"})
# Per-antenna levels ride on the RF level entity as attributes: how many antennas, and their names, are the
# family's (A-D, RF1/RF2), and an attribute needs no entity of its own.
_ANTENNA_ATTRIBUTES: Final = "{{ (value_json.rf_antennas or {}) | tojson }}"


@dataclass(frozen=True)
class Reading:
    """A read-only channel entity: which field, on which platform, from which topic, with which keys."""

    field: str
    platform: str
    name: str
    source: str  # "channel": the retained channel state; "meters": the throttled meters topic
    keys: dict[str, Any]


READINGS: Final = (
    Reading(
        "battery_percent",
        "sensor",
        "Battery",
        "channel",
        {"device_class": "battery", "unit_of_measurement": "%", "state_class": "measurement"},
    ),
    Reading(
        "battery_bars",
        "sensor",
        "Battery bars",
        "channel",
        {"state_class": "measurement", "icon": "mdi:battery", **DIAGNOSTIC},
    ),
    Reading(
        "battery_runtime_min",
        "sensor",
        "Battery runtime",
        "channel",
        {"device_class": "duration", "unit_of_measurement": "min", "state_class": "measurement"},
    ),
    Reading(
        "rf_dbm",
        "sensor",
        "RF level",
        "meters",
        {"device_class": "signal_strength", "unit_of_measurement": "dBm", "state_class": "measurement"},
    ),
    Reading(
        "rf_quality_percent",
        "sensor",
        "RF quality",
        "meters",
        {"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:signal", **DIAGNOSTIC},
    ),
    Reading(
        "audio_dbfs",
        "sensor",
        "Audio level",
        "meters",
        {"unit_of_measurement": "dBFS", "state_class": "measurement", "icon": "mdi:waveform"},
    ),
    Reading(
        "frequency_mhz",
        "sensor",
        "Frequency",
        "channel",
        {"device_class": "frequency", "unit_of_measurement": "MHz", "suggested_display_precision": 3, **DIAGNOSTIC},
    ),
    Reading(
        "audio_peak_dbfs",
        "sensor",
        "Audio peak",
        "meters",
        {"unit_of_measurement": "dBFS", "state_class": "measurement", "icon": "mdi:waveform"},
    ),
    Reading(
        "frequency2_mhz",
        "sensor",
        "Second frequency",
        "channel",
        # a family that has frequency diversity declares the field, but most channels run without it and would
        # show "unknown" for good: off until the user enables it
        {
            "device_class": "frequency",
            "unit_of_measurement": "MHz",
            "suggested_display_precision": 3,
            "enabled_by_default": False,
            **DIAGNOSTIC,
        },
    ),
    Reading("group_channel", "sensor", "Group and channel", "channel", {"icon": "mdi:format-list-numbered"}),
    Reading("encryption", "sensor", "Encryption", "channel", {"icon": "mdi:shield-lock", **DIAGNOSTIC}),
    Reading("tx_model", "sensor", "Transmitter model", "channel", {"icon": "mdi:microphone", **DIAGNOSTIC}),
    Reading("tx_present", "binary_sensor", "Transmitter present", "channel", {"device_class": "connectivity"}),
    Reading("tx_power", "sensor", "Transmitter power", "channel", {"icon": "mdi:radio-tower", **DIAGNOSTIC}),
    Reading("tx_locked", "sensor", "Transmitter lock", "channel", {"icon": "mdi:lock", **DIAGNOSTIC}),
    Reading(
        "tx_offset_db",
        "sensor",
        "Transmitter offset",
        "channel",
        {"unit_of_measurement": "dB", "icon": "mdi:tune-vertical", **DIAGNOSTIC},
    ),
    Reading("tx_id", "sensor", "Transmitter id", "channel", {"icon": "mdi:identifier", **DIAGNOSTIC}),
    Reading("tx_talk_switch", "binary_sensor", "Talk switch", "channel", {"icon": "mdi:account-voice"}),
    Reading(
        "battery_health_percent",
        "sensor",
        "Battery health",
        "channel",
        {"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:battery-heart-variant", **DIAGNOSTIC},
    ),
    Reading(
        "battery_cycles",
        "sensor",
        "Battery cycles",
        "channel",
        # the pack in the transmitter (or a charger bay) now, not a running total: a swap to a younger pack
        # lowers it, which Home Assistant's statistics warn of (or take as a meter reset) for total_increasing
        {"state_class": "measurement", "icon": "mdi:battery-sync", **DIAGNOSTIC},
    ),
    Reading(
        "battery_temp_c",
        "sensor",
        "Battery temperature",
        "channel",
        {"device_class": "temperature", "unit_of_measurement": "°C", "state_class": "measurement", **DIAGNOSTIC},
    ),
    Reading("battery_charge_state", "sensor", "Charge state", "channel", {"icon": "mdi:battery-charging"}),
    Reading(
        "battery_time_to_full_min",
        "sensor",
        "Time to full",
        "channel",
        {"device_class": "duration", "unit_of_measurement": "min", "state_class": "measurement"},
    ),
    Reading("audio_peak", "binary_sensor", "Audio clip", "meters", {"device_class": "problem"}),
)


SELECT_TX_POWER: Final = Reading("tx_power", "select", "Transmitter power", "channel", {"icon": "mdi:radio-tower"})
# ShowLink / SLX-D+ slots: how many hold a transmitter, each slot's details as attributes
_SLOTS_IN_USE: Final = "{{ (value_json.tx_slots or []) | selectattr('tx_model') | list | count }}"
_SLOT_ATTRIBUTES: Final = '{{ {"slots": value_json.tx_slots or []} | tojson }}'


@dataclass(frozen=True)
class DeviceReading:
    """A read-only entity of the receiver itself, from its device topic, made once the device reports it."""

    field: str
    platform: str
    name: str
    keys: dict[str, Any]


DEVICE_READINGS: Final = (
    DeviceReading("rf_band", "sensor", "RF band", {"icon": "mdi:signal-variant", **DIAGNOSTIC}),
    DeviceReading("encryption_mode", "sensor", "Encryption mode", {"icon": "mdi:shield-lock", **DIAGNOSTIC}),
    DeviceReading("ip_address", "sensor", "IP address", {"icon": "mdi:ip-network", **DIAGNOSTIC}),
    DeviceReading("mac_address", "sensor", "MAC address", {"icon": "mdi:ethernet", **DIAGNOSTIC}),
    DeviceReading("dante_name", "sensor", "Dante name", {"icon": "mdi:audio-input-rca", **DIAGNOSTIC}),
    DeviceReading("front_panel_locked", "binary_sensor", "Front panel locked", {"icon": "mdi:lock", **DIAGNOSTIC}),
)
DEVICE_READING_FIELDS: Final = frozenset(reading.field for reading in DEVICE_READINGS)


@dataclass(frozen=True)
class EntityOptions:
    """Hub settings that shape the entities."""

    meter_entities: bool = False  # RF level, RF quality and audio level enabled by default
    configuration_url: str | None = None  # the status board, shown as "Visit" on the hub device


def _value(field: str, platform: str) -> str:
    return _ON_OFF.format(field) if platform == "binary_sensor" else f"{{{{ value_json.{field} }}}}"


def _name_keys(limits: TextLimits | None) -> dict[str, Any]:
    """A name's text entity: its state and the limits Home Assistant holds every state and input to."""
    # A name longer than max is refused by Home Assistant at every state message (an error, the entity stuck
    # on its last state), and a receiver may report one longer than its family's limit (another firmware,
    # software that ignores the limit): the entity shows the first max characters, the board the whole name.
    most = 255 if limits is None else limits.max_length
    shown = {"value_template": f"{{{{ (value_json.name or '')[:{most}] }}}}", "max": most}
    if limits is None:
        return shown
    # Home Assistant checks every state against min and the pattern (an error per message), and a channel can
    # have no name: the empty state is allowed, and otherwise min_length characters of what the device allows.
    # Clearing a name in Home Assistant is therefore sent, refused by the hub, and the name shown again.
    length = f"(?=.{{{limits.min_length},}}$)" if limits.min_length else ""
    return {**shown, "min": 0, "pattern": f"^(?:|{length}(?:{limits.pattern}))$"}


class _Components:
    """The components of one discovery config, keyed by object id; unique ids are ``<node>_<object id>``.

    Each entity's id is asked for as its unique id (``sensor.shure_a_ch1_battery_percent``): left to Home
    Assistant, it is made of the receiver's name, and two receivers on their default name (two ULX-Ds called
    RX964) got ``_2`` ids in whatever order Home Assistant saw them. ``object_id`` for Home Assistant before
    2025.10, ``default_entity_id`` for those after (which drop ``object_id`` in 2026.4); each ignores the other.
    """

    def __init__(self, node: str) -> None:
        self.node = node
        self.items: dict[str, dict[str, Any]] = {}

    def add(self, object_id: str, platform: str, name: str, keys: dict[str, Any]) -> None:
        unique_id = f"{self.node}_{object_id}"
        entity = entity_object_id(unique_id)
        self.items[object_id] = {
            "platform": platform,
            "unique_id": unique_id,
            "object_id": entity,
            "default_entity_id": f"{platform}.{entity}",
            "name": name,
            **keys,
        }


def entity_object_id(unique_id: str) -> str:
    """The entity id's part after the platform, as Home Assistant writes one (lower case, ``[a-z0-9_]``)."""
    return "_".join(part for part in re.split(r"[^a-z0-9]+", unique_id.lower()) if part)


def _accepts(capabilities: Capabilities | None, kind: CommandKind, *, channel: bool) -> bool:
    return capabilities is None or capabilities.accepts(kind, channel=channel)


def _choices(capabilities: Capabilities | None, kind: CommandKind) -> tuple[str, ...] | None:
    """The values a channel command takes, when the family lists them (tx_power: "10mW", "50mW", ...)."""
    limits = capabilities.commands.get(kind) if capabilities is not None else None
    return limits.choices if limits is not None and limits.channel else None


def _text_limits(capabilities: Capabilities | None, kind: CommandKind) -> TextLimits | None:
    limits = capabilities.commands.get(kind) if capabilities is not None else None
    return limits.text if limits is not None else None


def discovery_config(
    device: Device,
    topics: Topics,
    qos: int,
    options: EntityOptions | None = None,
    kept_readings: Collection[str] = (),
) -> dict[str, Any]:
    """The device-based discovery payload for one receiver and all its channels. A device reading gets its
    entity once the receiver reports it, and keeps it while its field is in ``kept_readings`` (Home Assistant
    has the entity already: unknown for now is not gone)."""
    options = options or EntityOptions()
    capabilities = device.capabilities
    node = homeassistant_node_id(device.id)
    components = _Components(node)
    hub_available = {"topic": topics.hub_state, "value_template": "{{ value_json.state }}"}
    availability = [hub_available, {"topic": topics.availability(device.id)}]
    device_topic = topics.device(device.id)

    # the receiver itself
    components.add(
        "online",
        "binary_sensor",
        "Online",
        {
            "state_topic": topics.availability(device.id),
            "payload_on": "online",
            "payload_off": "offline",
            "device_class": "connectivity",
            # available while the hub is: "off" is the answer when the receiver is gone, not "unavailable"
            "availability": [hub_available],
            **DIAGNOSTIC,
        },
    )
    if _accepts(capabilities, CommandKind.DEVICE_NAME, channel=False):
        components.add(
            "receiver_name",
            "text",
            "Receiver name",
            {
                "command_topic": f"{device_topic}/set",
                "command_template": '{"name": {{ value | tojson }}}',
                "state_topic": device_topic,
                "icon": "mdi:rename",
                **_name_keys(_text_limits(capabilities, CommandKind.DEVICE_NAME)),
                **CONFIG,
            },
        )
    elif device.name is not None:
        components.add(
            "receiver_name",
            "sensor",
            "Receiver name",
            {"state_topic": device_topic, "value_template": "{{ value_json.name }}", "icon": "mdi:rename"},
        )
    if _accepts(capabilities, CommandKind.IDENTIFY, channel=False):
        components.add(
            "identify",
            "button",
            "Identify",
            {
                "command_topic": f"{device_topic}/set",
                "payload_press": '{"identify": true}',
                "device_class": "identify",
                **CONFIG,
            },
        )

    for device_reading in DEVICE_READINGS:
        if getattr(device, device_reading.field) is not None or device_reading.field in kept_readings:
            components.add(
                device_reading.field,
                device_reading.platform,
                device_reading.name,
                {
                    "state_topic": device_topic,
                    "value_template": _value(device_reading.field, device_reading.platform),
                    **device_reading.keys,
                },
            )

    for channel in device.channels:
        index = channel.index
        channel_topic = topics.channel(device.id, index)
        sources = {"channel": channel_topic, "meters": topics.meters(device.id, index)}
        set_topic = f"{channel_topic}/set"

        def reports(field: str) -> bool:
            return capabilities is None or field in capabilities.channel_fields

        with_transmitter = reports("tx_present")
        power_levels = _choices(capabilities, CommandKind.TX_POWER)
        for reading in READINGS:
            if not reports(reading.field):
                continue
            keys: dict[str, Any] = {
                "state_topic": sources[reading.source],
                "value_template": _value(reading.field, reading.platform),
                **reading.keys,
            }
            if reading.field in TRANSMITTER_FIELDS and with_transmitter:
                keys["availability"] = [
                    *availability,
                    {
                        "topic": channel_topic,
                        "value_template": "{{ 'online' if value_json.tx_present else 'offline' }}",
                    },
                ]
            if reading.field == "tx_power" and power_levels:
                # a family whose transmitter power can be set gets a select in place of the sensor
                reading = SELECT_TX_POWER
                keys |= {
                    "command_topic": set_topic,
                    "command_template": '{"tx_power": {{ value | tojson }}}',
                    "options": list(power_levels),
                    **CONFIG,
                }
            if reading.field == "rf_dbm" and reports("rf_antennas"):
                keys["json_attributes_topic"] = sources["meters"]
                keys["json_attributes_template"] = _ANTENNA_ATTRIBUTES
            if reading.field in METER_ENTITY_FIELDS and not options.meter_entities:
                keys["enabled_by_default"] = False
            components.add(f"ch{index}_{reading.field}", reading.platform, f"Ch {index} {reading.name}", keys)

        if capabilities is not None and "tx_slots" in capabilities.channel_fields:
            components.add(
                f"ch{index}_tx_slots",
                "sensor",
                f"Ch {index} Transmitters in slots",
                {
                    "state_topic": channel_topic,
                    "value_template": _SLOTS_IN_USE,
                    "json_attributes_topic": channel_topic,
                    "json_attributes_template": _SLOT_ATTRIBUTES,
                    "state_class": "measurement",
                    "icon": "mdi:view-grid",
                },
            )
        if _accepts(capabilities, CommandKind.NAME, channel=True):
            components.add(
                f"ch{index}_name",
                "text",
                f"Ch {index} Name",
                {
                    "command_topic": set_topic,
                    "command_template": '{"name": {{ value | tojson }}}',
                    "state_topic": channel_topic,
                    "icon": "mdi:rename",
                    **_name_keys(_text_limits(capabilities, CommandKind.NAME)),
                },
            )
        elif reports("name"):
            components.add(
                f"ch{index}_name",
                "sensor",
                f"Ch {index} Name",
                {"state_topic": channel_topic, "value_template": "{{ value_json.name }}", "icon": "mdi:rename"},
            )
        if _accepts(capabilities, CommandKind.MUTE, channel=True):
            components.add(
                f"ch{index}_mute",
                "switch",
                f"Ch {index} Mute",
                {
                    "command_topic": set_topic,
                    "payload_on": '{"muted": true}',
                    "payload_off": '{"muted": false}',
                    "state_topic": channel_topic,
                    "value_template": _ON_OFF.format("muted"),
                    "state_on": "ON",
                    "state_off": "OFF",
                    "icon": "mdi:microphone-off",
                },
            )
        gain = capabilities.commands.get(CommandKind.GAIN) if capabilities is not None else None
        if gain is not None and gain.channel and gain.number is not None and reports("gain_db"):
            components.add(
                f"ch{index}_gain",
                "number",
                f"Ch {index} Gain",
                {
                    "command_topic": set_topic,
                    "command_template": '{"gain_db": {{ value }}}',
                    "state_topic": channel_topic,
                    "value_template": "{{ value_json.gain_db }}",
                    "min": gain.number.min,
                    "max": gain.number.max,
                    "step": gain.number.step,
                    "unit_of_measurement": gain.number.unit,
                    "mode": "box",
                    "icon": "mdi:knob",
                    **CONFIG,
                },
            )
        if _accepts(capabilities, CommandKind.IDENTIFY, channel=True):
            components.add(
                f"ch{index}_identify",
                "button",
                f"Ch {index} Identify",
                {
                    "command_topic": set_topic,
                    "payload_press": '{"identify": true}',
                    "device_class": "identify",
                    **CONFIG,
                },
            )

    device_block: dict[str, Any] = {
        "identifiers": [f"wmhub_{node}"],
        "name": device.name
        or " ".join(filter(None, [device.vendor.title(), device.model or device.family, device.id])),
        "manufacturer": device.vendor.title(),
        "model": device.model or device.family,
        "sw_version": device.firmware,
        "via_device": homeassistant_hub_identifier(topics.hub_id),
    }
    return {
        # Home Assistant rejects null where it expects a string, so unknown details are left out
        "device": {key: value for key, value in device_block.items() if value is not None},
        "origin": ORIGIN,
        "availability": availability,
        "availability_mode": "all",
        "qos": qos,
        "components": components.items,
    }


def hub_discovery_config(topics: Topics, qos: int, options: EntityOptions | None = None) -> dict[str, Any]:
    """The hub as a device: is it connected, how many receivers, how many open alerts, which version."""
    options = options or EntityOptions()
    identifier = homeassistant_hub_identifier(topics.hub_id)
    components = _Components(identifier)
    components.add(
        "connectivity",
        "binary_sensor",
        "Connected",
        {
            "state_topic": topics.hub_state,
            "value_template": "{{ value_json.state }}",
            "payload_on": "online",
            "payload_off": "offline",
            "device_class": "connectivity",
        },
    )
    # the others are unavailable while the hub is gone: their last values would be stale
    hub_available = [{"topic": topics.hub_state, "value_template": "{{ value_json.state }}"}]
    components.add(
        "devices",
        "sensor",
        "Receivers",
        {
            "state_topic": topics.hub_devices,
            "value_template": "{{ value_json | length }}",
            "state_class": "measurement",
            "icon": "mdi:access-point-network",
            "availability": hub_available,
        },
    )
    components.add(
        "online_devices",
        "sensor",
        "Receivers online",
        {
            "state_topic": topics.hub_devices,
            "value_template": "{{ value_json | selectattr('online') | list | length }}",
            "state_class": "measurement",
            "icon": "mdi:access-point-check",
            "availability": hub_available,
        },
    )
    components.add(
        "active_alerts",
        "sensor",
        "Active alerts",
        {
            "state_topic": topics.hub_alerts,
            "value_template": "{{ value_json | length }}",
            "state_class": "measurement",
            "icon": "mdi:alert",
            "availability": hub_available,
        },
    )
    components.add(
        "frequency_conflicts",
        "binary_sensor",
        "Frequency conflicts",
        {
            # on while the live frequency plan has a problem among carriers on air (docs/frequency-coordination.md)
            "state_topic": topics.hub_frequency_plan,
            # unknown (Home Assistant's "None") while the plan is too large to check, not an all-clear
            "value_template": "{% if value_json.conflict is none %}None{% elif value_json.conflict %}ON"
            "{% else %}OFF{% endif %}",
            "json_attributes_topic": topics.hub_frequency_plan,
            "json_attributes_template": "{{ {'alerts': value_json.alerts, 'warnings': value_json.warnings,"
            " 'carriers': value_json.carriers} | tojson }}",
            "device_class": "problem",
            "availability": hub_available,
        },
    )
    components.add(
        "version",
        "sensor",
        "Software version",
        {
            "state_topic": topics.hub_info,
            "value_template": "{{ value_json.version }}",
            "icon": "mdi:information-outline",
            "availability": hub_available,
            **DIAGNOSTIC,
        },
    )
    device_block: dict[str, Any] = {
        "identifiers": [identifier],
        "name": f"wmhub {topics.hub_id}",
        "manufacturer": "wmhub",
        "model": "wmhub",
        "sw_version": __version__,
        "configuration_url": options.configuration_url,
    }
    return {
        "device": {key: value for key, value in device_block.items() if value is not None},
        "origin": ORIGIN,
        "qos": qos,
        "components": components.items,
    }
