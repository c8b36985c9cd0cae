"""Prometheus metrics at ``/metrics``, in a registry of this hub's own (never the process-global one).

Device and connection figures are read from the hub at scrape time, so nothing on the device path pays
for metrics; only the HTTP request counter is updated as requests happen.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
        bridge = self._hub.mqtt
        client = bridge.client if bridge is not None else None
        if client is not None:
            yield CounterMetricFamily(
                "wmhub_mqtt_published", "MQTT messages sent to the broker", value=client.published
            )
            yield CounterMetricFamily(
                "wmhub_mqtt_dropped",
                "MQTT messages dropped because the broker fell behind or was not connected",
                value=client.dropped,
            )
            yield GaugeMetricFamily(
                "wmhub_mqtt_connected", "1 while the hub is connected to its MQTT broker", value=int(client.connected)
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
        yield CounterMetricFamily(
            "wmhub_discovery_dropped",
            "Announced services not probed because too many were waiting (a flood of announcements)",
            value=self._hub.discovery_dropped,
        )
        yield GaugeMetricFamily("wmhub_live_clients", "Browsers on the live feed", value=len(self._live.clients))
        yield CounterMetricFamily(
            "wmhub_live_clients_dropped", "Browsers dropped for not keeping up", value=self._live.dropped
        )
        yield CounterMetricFamily(
            "wmhub_live_messages", "Live feed messages sent to browsers", value=self._live.messages_sent
        )


# The families with one series per device, written here rather than through prometheus_client's generic
# path, which took 66-91 ms per scrape at 2,400 devices, every millisecond of it with the event loop
# stopped (a Prometheus scraping every 15 s held device input back that long each time). The text is the
# same as the library writes: its value formatting, its escaping of label values.
_DEVICE_FAMILIES: Final[tuple[tuple[str, str, str, Callable[[Mapping[str, Any]], int]], ...]] = (
    # as /api/health shows it: a port that accepted but never answered as a device is not connected
    ("wmhub_device_connected", "gauge", "1 while the driver is connected", lambda h: 1 if h["connected"] else 0),
    ("wmhub_device_connection_attempts_total", "counter", "Connection attempts", itemgetter("attempts")),
    ("wmhub_device_reconnects_total", "counter", "Lost connections retried", itemgetter("reconnects")),
    (
        "wmhub_device_protocol_errors_total",
        "counter",
        "Data from the device that could not be parsed",
        itemgetter("protocol_errors"),
    ),
)


_value_text: Final[Callable[[float], str]] = floatToGoString  # the library's own number format


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def device_series(connections: Sequence[Mapping[str, Any]]) -> str:
    """The per-device families in the Prometheus text format (0.0.4), one series per connection by URL."""
    labels = [f'{{url="{_label_value(health["url"])}"}} ' for health in connections]
    parts: list[str] = []
    for name, kind, help_text, value_of in _DEVICE_FAMILIES:
        parts.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
        series = zip(labels, connections, strict=True)
        parts += [f"{name}{label}{_value_text(value_of(health))}\n" for label, health in series]
    return "".join(parts)


class VenueCollector(Collector):
    """The database and the alerts: only a hub with a venue store has them (the fleet board has neither)."""

    def __init__(self, hub: HubService, venue: VenueService) -> None:
        self._hub = hub
        self._venue = venue

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "wmhub_database_writable",
            "1 while the database takes writes; 0 while changes are held in memory only (health: degraded)",
            value=0 if self._hub.degraded() is not None else 1,
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
        self._hub = hub
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

    def render(self, detail: bool = False) -> bytes:
        """The text a scrape gets; ``detail`` is the token holder's view of devices that have not identified
        themselves yet (their real counters), as on /api/health."""
        return generate_latest(self.registry) + device_series(self._hub.connections(detail)).encode()
