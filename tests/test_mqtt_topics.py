"""Topic parsing and the meter threshold rule (pure functions, no broker)."""

from __future__ import annotations

import pytest

from hub.mqtt.brokers import BrokerAddress, BrokerUrlError
from hub.mqtt.payloads import meters_moved
from hub.mqtt.topics import ControlTarget, Topics

TOPICS = Topics("wmhub", "foh", "homeassistant")


@pytest.mark.parametrize(
    ("topic", "target"),
    [
        ("wmhub/devices/shure-A1/set", ControlTarget("shure-A1", None, "set")),
        ("wmhub/devices/shure-A1/get", ControlTarget("shure-A1", None, "get")),
        ("wmhub/devices/shure-A1/channels/4/set", ControlTarget("shure-A1", 4, "set")),
        ("wmhub/devices/shure-A1/channels/0/set", ControlTarget("shure-A1", None, "set", not_a_channel="0")),
        ("wmhub/devices/shure-A1/channels/x/get", ControlTarget("shure-A1", None, "get", not_a_channel="x")),
        ("wmhub/devices/shure-A1/channels/1", None),
        ("wmhub/devices/shure-A1/availability", None),
        ("other/devices/shure-A1/set", None),
    ],
)
def test_control_targets(topic: str, target: ControlTarget | None) -> None:
    assert TOPICS.control_target(topic) == target


def test_requests_are_this_hubs_only() -> None:
    assert TOPICS.request_command("wmhub/hubs/foh/request/device/add") == "device/add"
    assert TOPICS.request_command("wmhub/hubs/monitors/request/devices") is None
    # a request naming no command is still a request, answered as an unknown one
    assert TOPICS.request_command("wmhub/hubs/foh/request/") == ""
    assert TOPICS.request_command("wmhub/hubs/foh/requests") is None


def test_meters_move_beyond_the_threshold_or_on_any_other_change() -> None:
    before = (-60.0, 90, "A", -20.0, False)
    assert not meters_moved(before, (-60.4, 90, "A", -19.6, False), 0.5)
    assert meters_moved(before, (-60.6, 90, "A", -20.0, False), 0.5)
    assert meters_moved(before, (-60.0, 90, "B", -20.0, False), 0.5)
    assert meters_moved(before, (-60.0, 90, "A", -20.0, True), 0.5)
    assert meters_moved(before, (None, 90, "A", -20.0, False), 0.5)


def test_broker_urls() -> None:
    assert BrokerAddress.parse("mqtt://broker.lan") == BrokerAddress("broker.lan", 1883)
    assert BrokerAddress.parse("mqtts://u:p%40ss@broker.lan") == BrokerAddress("broker.lan", 8883, True, "u", "p@ss")
    address = BrokerAddress.parse("mqtts://u:p%40ss@broker.lan:8884")
    assert "p@ss" not in str(address) and "p@ss" not in repr(address)
    for bad in ("http://x", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(BrokerUrlError):
            BrokerAddress.parse(bad)
