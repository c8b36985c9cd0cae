"""Prometheus metrics at ``/metrics``, in a registry of this hub's own (never the process-global one).

Device and connection figures are read from the hub at scrape time, so nothing on the device path pays
for metrics; only the HTTP request counter is updated as requests happen.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.service import HubService, VenueService
from hub.web.live import LiveFeed

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubCollector(Collector):
    def __init__(self, hub: HubService, live: LiveFeed) -> None:
        self._hub = hub
        self._live = live

    def collect(self) -> Iterator[Metric]:
        devices = list(self._hub.state.devices.values())
        online = GaugeMetricFamily("wmhub_devices", "Known devices by online state", labels=["state"])
        online.add_metric(["online"], sum(1 for d in devices if d.online))
        online.add_metric(["offline"], sum(1 for d in devices if not d.online))
        yield online
        yield GaugeMetricFamily(
            "wmhub_channels", "Receiver channels of every known device", value=sum(len(d.channels) for d in devices)
        )
        connected = GaugeMetricFamily("wmhub_device_connected", "1 while the driver is connected", labels=["url"])
        attempts = CounterMetricFamily("wmhub_device_connection_attempts", "Connection attempts", labels=["url"])
        reconnects = CounterMetricFamily("wmhub_device_reconnects", "Lost connections retried", labels=["url"])
        connections = self._hub.connections()
        for health in connections:
            # as /api/health shows it: a port that accepted but never answered as a device is not connected
            connected.add_metric([health["url"]], 1 if health["connected"] else 0)
            attempts.add_metric([health["url"]], health["attempts"])
            reconnects.add_metric([health["url"]], health["reconnects"])
        yield connected
        yield attempts
        yield reconnects
        errors = CounterMetricFamily(
            "wmhub_device_protocol_errors", "Data from the device that could not be parsed", labels=["url"]
        )
        for health in connections:
            errors.add_metric([health["url"]], health["protocol_errors"])
        yield errors
        bridge = self._hub.mqtt
        client = bridge.client if bridge is not None else None
        if client is not None:
            yield CounterMetricFamily(
                "wmhub_mqtt_published", "MQTT messages sent to the broker", value=client.published
            )
            yield CounterMetricFamily(
                "wmhub_mqtt_dropped", "MQTT messages dropped because the broker fell behind", value=client.dropped
            )
        yield CounterMetricFamily(
            "wmhub_state_updates", "Channel updates merged into the state store", value=self._hub.state.updates_applied
        )
        yield CounterMetricFamily(
            "wmhub_meter_readings",
            "Meter readings the drivers received, merged into the state store or superseded before a look",
            value=self._hub.state.readings_received,
        )
        monitor = self._hub.loop_monitor
        yield GaugeMetricFamily(
            "wmhub_loop_lag_seconds",
            "How late the event loop ran its last timer (device data is this old)",
            value=monitor.lag_s,
        )
        yield GaugeMetricFamily(
            "wmhub_loop_lag_max_seconds",
            "The largest event loop lateness since the hub started",
            value=monitor.max_lag_s,
        )
        yield CounterMetricFamily(
            "wmhub_loop_late",
            "Times the event loop ran over 100 ms late: the hub was not keeping up",
            value=monitor.late,
        )
        yield GaugeMetricFamily(
            "wmhub_discovery_candidates", "Discovered devices waiting for approval", value=len(self._hub.candidates())
        )
        yield GaugeMetricFamily("wmhub_live_clients", "Browsers on the live feed", value=len(self._live.clients))
        yield CounterMetricFamily(
            "wmhub_live_clients_dropped", "Browsers dropped for not keeping up", value=self._live.dropped
        )
        yield CounterMetricFamily(
            "wmhub_live_messages", "Live feed messages sent to browsers", value=self._live.messages_sent
        )


class VenueCollector(Collector):
    """The database and the alerts: only a hub with a venue store has them (the fleet board has neither)."""

    def __init__(self, hub: HubService, venue: VenueService) -> None:
        self._hub = hub
        self._venue = venue

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "wmhub_database_writable",
            "1 while the database takes writes; 0 while changes are held in memory only (health: degraded)",
            value=0 if self._hub.degraded() else 1,
        )
        alerts = GaugeMetricFamily(
            "wmhub_alerts_open", "Raised, not yet cleared alerts", labels=["kind", "severity", "acknowledged"]
        )
        counts = Tally(
            (a.kind.value, a.severity, str(a.acknowledged_at is not None).lower())
            for a in self._venue.alerts.open_alerts()
        )
        for labels, count in sorted(counts.items()):
            alerts.add_metric(list(labels), count)
        yield alerts


class Metrics:
    def __init__(self, hub: HubService, live: LiveFeed, venue: VenueService | None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(HubCollector(hub, live))
        if venue is not None:
            self.registry.register(VenueCollector(hub, venue))
        self.http_requests = Counter(
            "wmhub_http_requests",
            "HTTP requests answered, by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
