"""The MQTT edge: topic API, bridge requests, Home Assistant discovery (see docs/mqtt.md)."""
