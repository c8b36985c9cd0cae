"""Fixtures shared by the core tests (each lives in its own module; this file only registers them)."""

from tests.mosquitto import mqtt_broker

__all__ = ["mqtt_broker"]
