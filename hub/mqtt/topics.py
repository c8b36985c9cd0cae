"""The MQTT topic layout (documented in docs/mqtt.md): topic names only; what goes in them is
:mod:`hub.mqtt.payloads`. Pure functions: no I/O.

Everything a hub publishes lives under its own hub id or its own device ids, so several hubs share
one broker without collisions::

    <base>/hubs/<hub_id>/state | info | devices | alerts | frequency_plan | request/<command> | response/<command>
    <base>/devices/<device_id>                      device state (retained)
    <base>/devices/<device_id>/availability         online | offline (retained)
    <base>/devices/<device_id>/channels/<index>     channel state (retained)
    <base>/devices/<device_id>/channels/<index>/meters   RF and audio levels (not retained)
    <base>/devices/<device_id>[/channels/<index>]/set | get
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.text import id_safe, small_number


@dataclass(frozen=True)
class ControlTarget:
    """Where a set/get message was addressed."""

    device_id: str
    channel: int | None
    action: str  # "set" or "get"
    not_a_channel: str | None = None  # what stood where a channel number belongs, when it is none (0, "x")


class Topics:
    """Topic names for one hub."""

    def __init__(self, base: str, hub_id: str, homeassistant_prefix: str) -> None:
        self.base = base
        self.hub_id = hub_id
        self.hub = f"{base}/hubs/{hub_id}"
        self.homeassistant_prefix = homeassistant_prefix
        self.hub_state = f"{self.hub}/state"
        self.hub_info = f"{self.hub}/info"
        self.hub_devices = f"{self.hub}/devices"
        self.every_hub_devices = f"{base}/hubs/+/devices"  # each hub's list says which devices it owns
        self.every_hub_state = f"{base}/hubs/+/state"  # which of them are running
        self.hub_alerts = f"{self.hub}/alerts"
        self.hub_alert_events = f"{self.hub}/alerts/event"
        self.hub_swap_list = f"{self.hub}/swap_list"
        self.hub_frequency_plan = f"{self.hub}/frequency_plan"
        self.requests = f"{self.hub}/request/#"
        self.homeassistant_status = f"{homeassistant_prefix}/status"
        self.every_homeassistant_config = f"{homeassistant_prefix}/device/+/config"
        self._homeassistant_device_prefix = f"{homeassistant_prefix}/device/"
        self._request_prefix = f"{self.hub}/request/"
        self._devices_prefix = f"{base}/devices/"
        # the hub's own device in Home Assistant; receivers point at it with via_device
        self.homeassistant_hub_config = f"{homeassistant_prefix}/device/{homeassistant_hub_identifier(hub_id)}/config"

    def device_list_hub(self, topic: str) -> str | None:
        """The hub whose device list ``topic`` is (``<base>/hubs/<hub>/devices``), else None."""
        return self._hub_of(topic, "/devices")

    def state_hub(self, topic: str) -> str | None:
        """The hub whose state ``topic`` is (``<base>/hubs/<hub>/state``), else None."""
        return self._hub_of(topic, "/state")

    def _hub_of(self, topic: str, leaf: str) -> str | None:
        prefix = f"{self.base}/hubs/"
        if topic.startswith(prefix) and topic.endswith(leaf):
            hub_id = topic[len(prefix) : -len(leaf)]
            return hub_id if hub_id and "/" not in hub_id else None
        return None

    def response(self, command: str) -> str:
        return f"{self.hub}/response/{command}"

    def device(self, device_id: str) -> str:
        return f"{self._devices_prefix}{device_id}"

    def availability(self, device_id: str) -> str:
        return f"{self._devices_prefix}{device_id}/availability"

    def channel(self, device_id: str, index: int) -> str:
        return f"{self._devices_prefix}{device_id}/channels/{index}"

    def meters(self, device_id: str, index: int) -> str:
        return f"{self._devices_prefix}{device_id}/channels/{index}/meters"

    def channel_of(self, topic: str) -> tuple[str, int] | None:
        """The device and channel number of a channel state topic (``<base>/devices/<id>/channels/<n>``), else
        None."""
        if not topic.startswith(self._devices_prefix):
            return None
        parts = topic[len(self._devices_prefix) :].split("/")
        if len(parts) != 3 or parts[1] != "channels":
            return None
        index = small_number(parts[2])
        return (parts[0], index) if index is not None and index >= 1 else None

    def control_filters(self, device_id: str) -> list[str]:
        """The set/get topics of one device and its channels: a hub listens to its own devices only."""
        device = self.device(device_id)
        return [f"{device}/{action}" for action in ("set", "get")] + [
            f"{device}/channels/+/{action}" for action in ("set", "get")
        ]

    def homeassistant_config(self, device_id: str) -> str:
        return f"{self.homeassistant_prefix}/device/{homeassistant_node_id(device_id)}/config"

    def is_homeassistant_config(self, topic: str) -> bool:
        """``<prefix>/device/<node>/config``: a device's Home Assistant discovery config, any hub's."""
        return (
            topic.startswith(self._homeassistant_device_prefix)
            and topic.endswith("/config")
            and topic.count("/") == self._homeassistant_device_prefix.count("/") + 1
        )

    def request_command(self, topic: str) -> str | None:
        """``set`` for ``<hub>/request/set``-style topics; None if the topic is not a request. ``<hub>/request/``
        is a request naming no command (``""``), answered as an unknown one on ``<hub>/response/``."""
        if topic.startswith(self._request_prefix):
            return topic[len(self._request_prefix) :]
        return None

    def control_target(self, topic: str) -> ControlTarget | None:
        """Parse ``<base>/devices/<id>/set`` or ``<base>/devices/<id>/channels/<n>/get``; None otherwise. A
        channel that is no number from 1 is kept as given, so the message is answered, not dropped."""
        if not topic.startswith(self._devices_prefix):
            return None
        parts = topic[len(self._devices_prefix) :].split("/")
        if len(parts) == 2 and parts[1] in ("set", "get"):
            return ControlTarget(parts[0], None, parts[1])
        if len(parts) == 4 and parts[1] == "channels" and parts[3] in ("set", "get"):
            index = small_number(parts[2])
            if index is not None and index >= 1:
                return ControlTarget(parts[0], index, parts[3])
            return ControlTarget(parts[0], None, parts[3], not_a_channel=parts[2])
        return None


def homeassistant_node_id(device_id: str) -> str:
    """Home Assistant accepts only ``[a-zA-Z0-9_-]`` in discovery topic ids."""
    return id_safe(device_id)


def homeassistant_hub_identifier(hub_id: str) -> str:
    """The hub's own device in Home Assistant (its identifier and discovery id); receivers name it in
    ``via_device``. Device ids start with a vendor, so they never take this form."""
    return f"wmhub_hub_{homeassistant_node_id(hub_id)}"
