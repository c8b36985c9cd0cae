"""Fixtures shared by the core tests (each lives in its own module; this file only registers them).

The MQTT suites named in :data:`BROKER_MATRIX_MODULES` run every test that takes ``mqtt_broker`` twice:
against Mosquitto and against a RabbitMQ node with its MQTT plugin (docs/scaling.md, "Broker matrix").
A test marked ``mosquitto_only("why")`` runs against Mosquitto alone: one that stops or restarts its broker
(the RabbitMQ node is shared by the session, because it takes far longer to start than Mosquitto), or one
that must see every retained topic under a wildcard without naming them (RabbitMQ 3.x serves a retained
message only to a subscription naming its exact topic, so on RabbitMQ ``MqttProbe`` also subscribes to each
topic it waits for; tests/test_broker_rabbitmq.py covers what that means for the hub).
"""

from __future__ import annotations

import os

import pytest

from tests.mosquitto import mqtt_broker
from tests.rabbitmq import rabbitmq_node, start_session_node, stop_session_node

__all__ = ["mqtt_broker", "rabbitmq_node"]

BROKER_MATRIX_MODULES = frozenset(
    {
        "test_mqtt_alerts",
        "test_mqtt_bridge",
        "test_mqtt_client",
        "test_mqtt_control",
        "test_mqtt_homeassistant",
        "test_mqtt_resilience",
    }
)
BROKERS = ("mosquitto", "rabbitmq")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mosquitto_only(reason): the test runs against Mosquitto only (see tests/conftest.py)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    if (
        "mqtt_broker" in metafunc.fixturenames
        and module in BROKER_MATRIX_MODULES
        and metafunc.definition.get_closest_marker("mosquitto_only") is None
    ):
        metafunc.parametrize("mqtt_broker", BROKERS, indirect=True)


def _uses_rabbitmq_node(item: pytest.Item) -> bool:
    params = getattr(item, "callspec", None)
    uses_node = "rabbitmq_node" in getattr(item, "fixturenames", ())
    return uses_node or (params is not None and params.params.get("mqtt_broker") == "rabbitmq")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of the shared RabbitMQ node run on one pytest-xdist worker: one node boots, not one per worker."""
    for item in items:
        if _uses_rabbitmq_node(item):
            item.add_marker(pytest.mark.xdist_group("rabbitmq"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start booting the session's RabbitMQ node now when any selected test will use it.

    Not on a pytest-xdist worker: every worker collects every test, and only the one that is handed the
    ``rabbitmq`` group needs the node; it boots there at the first test that asks for it."""
    if session.config.option.collectonly or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if any(_uses_rabbitmq_node(item) for item in session.items):
        start_session_node()


def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_session_node()  # booted for tests that were then not run (a failure with -x, an interrupt)
