"""The wmhub benchmark: simulated receivers -> the hub (its own process) -> a real Mosquitto -> a subscriber.

    python -m bench.run --receivers 250 --seconds 60 --warmup 10 --out bench/results/r250.json
    python -m bench.run --channels 1000 --seconds 60 --out bench/results/c1000.json
    python -m bench.run --find-ceiling --out bench/results/ceiling.json --plot docs/performance.png

A run starts Mosquitto, several load-generator processes (:mod:`bench.fleet`, mixed Shure families
metering every 100 ms), then ``wmhub run`` against them. It waits until every device is online on MQTT,
lets the warm-up pass, then measures for ``--seconds``: samples sent (counted by the generators) against
meter readings the hub received (its ``wmhub_meter_readings`` counter: merged, or held and superseded
before a look) and channel updates it merged (``wmhub_state_updates``), hub CPU and RSS from /proc, MQTT
messages the broker received (its $SYS counter), and the latency of state changes: each generator
records the wall time of every change it makes (a name, a battery step, a transmitter off or on) and the
subscriber in this process stamps the arrival of the channel message showing it, on the same clock.

``--find-ceiling`` repeats shorter runs at growing channel counts until one fails (p99 over 100 ms, a
growing backlog, a lost change or devices not all connected) and reports the largest that passed.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from bench.probes import Mosquitto, cpu_seconds, cpu_times, memory_mb, metric_value, percentile, stop_process
from hub.mqtt.brokers import BrokerAddress
from hub.mqtt.client import MqttClient

# A mix of the networked families, weighted towards the quad receivers large sites use.
MIX: Final = ("ulxd4q", "ad4q", "slxd4q+", "ulxd4d", "ad4d", "qlxd4", "slxd4", "ur4d")
CHANNELS: Final = {"ulxd4q": 4, "ad4q": 4, "slxd4q+": 4, "ulxd4d": 2, "ad4d": 2, "qlxd4": 1, "slxd4": 1, "ur4d": 2}
METER_RATE_MS: Final = 100
# what the hub's demand-driven rate comes to in a run: MQTT's default meters interval, no board open
DEMAND_RATE_MS: Final = 500
HUB_ID: Final = "bench"
BASE: Final = "wmhub"
P99_LIMIT_MS: Final = 100.0
# The hub may merge a little less than was sent while bytes are in flight, never a growing share of it.
BACKLOG_TOLERANCE: Final = 0.02
CEILING_STEPS: Final = (1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 12500, 15000)


def plan(receivers: int | None, channels: int | None) -> list[str]:
    """Model keys, one per receiver: ``receivers`` of them, or enough to reach ``channels``."""
    models: list[str] = []
    total = 0
    while (receivers is not None and len(models) < receivers) or (channels is not None and total < channels):
        model = MIX[len(models) % len(MIX)]
        if channels is not None and total + CHANNELS[model] > channels:
            model = "qlxd4"  # fill the last few channels exactly
        models.append(model)
        total += CHANNELS[model]
    return models


@dataclass
class Options:
    receivers: int | None = None
    channels: int | None = None
    seconds: float = 60.0
    warmup: float = 10.0
    workers: int = 2
    changes_per_s: float = 20.0
    connect_timeout: float = 60.0
    scrape_every: float = 10.0
    profile: Path | None = None
    keep: Path | None = None
    meter_rate_ms: int | None = METER_RATE_MS  # None: unset, the hub's demand-driven rate
    hubs: int = 1


@dataclass
class Worker:
    """One load-generator process and what it reported."""

    process: asyncio.subprocess.Process
    receivers: list[tuple[str, str, int]] = field(default_factory=list)
    stats: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, samples, clients, queued)
    changes: list[tuple[str, int, dict[str, Any], float]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            message = orjson.loads(line)
            if "stats" in message:
                stats = message["stats"]
                self.stats.append((stats["t"], stats["samples"], stats["clients"], stats["queued"]))
            elif "change" in message:
                url, channel, expected, at = message["change"]
                self.changes.append((url, channel, expected, at))
            elif "ready" in message:
                self.receivers = [(model, url, count) for model, url, count in message["ready"]]
                self.ready.set()

    def samples_at(self, at: float) -> float:
        """Samples sent by ``at``, interpolated between the once-a-second reports."""
        times = [entry[0] for entry in self.stats]
        position = bisect.bisect_left(times, at)
        if position == 0:
            return float(self.stats[0][1]) if self.stats else 0.0
        if position >= len(self.stats):
            return float(self.stats[-1][1])
        (t0, s0, _, _), (t1, s1, _, _) = self.stats[position - 1], self.stats[position]
        return s0 + (s1 - s0) * (at - t0) / (t1 - t0)


class Observer:
    """The MQTT side: channel messages with their arrival time, availability, the broker's counter."""

    def __init__(self, broker_url: str, expected_devices: int) -> None:
        self.expected_devices = expected_devices
        self.online: set[str] = set()
        self.all_online_at: float | None = None
        self.channel_messages: dict[tuple[str, int], list[tuple[float, bytes]]] = defaultdict(list)
        self.device_lists: dict[str, bytes] = {}  # hub id -> its retained device list
        self.broker_received: list[tuple[float, int]] = []
        self.client = MqttClient(BrokerAddress.parse(broker_url), "wmhub-bench-observer", on_message=self._on_message)
        # QoS 1: the broker queues rather than drops what this observer has not read yet in a burst
        for topic_filter in (
            f"{BASE}/devices/+/availability",
            f"{BASE}/devices/+/channels/+",
            f"{BASE}/hubs/+/devices",
        ):
            self.client.subscribe(topic_filter, 1)
        self.client.subscribe("$SYS/broker/publish/messages/received", 0)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        now = time.time()
        parts = topic.split("/")
        if parts[0] == "$SYS":
            self.broker_received.append((now, int(payload)))
        elif parts[-1] == "availability":
            if payload == b"online":
                self.online.add(parts[2])
                if self.all_online_at is None and len(self.online) >= self.expected_devices:
                    self.all_online_at = now
            else:
                self.online.discard(parts[2])
        elif len(parts) == 5 and parts[3] == "channels":
            self.channel_messages[(parts[2], int(parts[4]))].append((now, payload))
        elif parts[-1] == "devices":
            self.device_lists[parts[-2]] = payload

    def devices(self) -> list[dict[str, Any]]:
        """Every hub's device list entries (each hub publishes its own)."""
        return [entry for payload in self.device_lists.values() for entry in orjson.loads(payload)]

    def missing(self, urls: list[str]) -> list[str]:
        """The device URLs not online on MQTT (by the hub's device list, which maps ids to URLs)."""
        online_urls = {entry.get("url") for entry in self.devices() if entry["id"] in self.online}
        return [url for url in urls if url not in online_urls]

    def broker_count_at(self, at: float) -> int | None:
        """The broker's received-PUBLISH counter at the last report before ``at``."""
        earlier = [count for stamp, count in self.broker_received if stamp <= at]
        return earlier[-1] if earlier else None

    def latencies(self, changes: list[tuple[str, int, dict[str, Any], float]]) -> tuple[dict[str, list[float]], int]:
        """Milliseconds from each change to the first channel message showing it, by the field changed;
        and how many changes never showed."""
        device_of = {entry.get("url"): entry["id"] for entry in self.devices()}
        found: dict[str, list[float]] = defaultdict(list)
        self.slowest: list[tuple[float, str, int, dict[str, Any]]] = []
        self.lost: list[tuple[str, int, dict[str, Any], float]] = []
        lost = 0
        for url, channel, expected, at in changes:
            messages = self.channel_messages.get((device_of.get(url, ""), channel), [])
            start = bisect.bisect_left([stamp for stamp, _ in messages], at)
            for stamp, payload in messages[start:]:
                state = orjson.loads(payload)
                if all(state.get(name) == value for name, value in expected.items()):
                    found[next(iter(expected))].append((stamp - at) * 1000)
                    self.slowest.append(((stamp - at) * 1000, url, channel, expected))
                    break
            else:
                lost += 1
                self.lost.append((url, channel, expected, at))
        self.slowest = sorted(self.slowest, key=lambda entry: entry[0], reverse=True)[:5]
        return found, lost


def hub_config(directory: Path, hub_id: str, broker_url: str, urls: list[str], meter_rate_ms: int | None) -> Path:
    """A TOML file for ``wmhub run --config``: thousands of devices do not fit a command line."""
    devices = ",\n".join(f"  {json.dumps(url)}" for url in urls)
    path = directory / "hub.toml"
    rate = f"meter_rate_ms = {meter_rate_ms}\n" if meter_rate_ms is not None else ""
    path.write_text(
        f'hub_id = "{hub_id}"\n'
        f"data_dir = {json.dumps(str(directory / 'data'))}\n"
        f"{rate}"
        f"devices = [\n{devices}\n]\n"
        f'[mqtt]\nurl = "{broker_url}"\n'
        '[http]\nhost = "127.0.0.1"\nport = 0\n'
        "[discovery]\nenabled = false\n"
        # The fleet's receivers crowd a thousand carriers into 10 MHz, which no venue coordinates: the live
        # check of such a plan takes seconds (python -m bench.frequency measures the check on real plans).
        "[frequency]\nmax_live_carriers = 0\n"
    )
    return path


@dataclass
class HubProcess:
    """One ``wmhub run`` of the benchmark: its own hub id, share of the receivers and scratch directory."""

    process: asyncio.subprocess.Process
    directory: Path
    port: int = 0


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def start_hubs(directory: Path, broker_url: str, urls: list[str], options: Options) -> list[HubProcess]:
    """``options.hubs`` hubs on one broker, sharing the receivers out by port number.

    A simulated UHF-R (UDP) and a TCP receiver can hold the same port number, and a receiver that reports
    no serial gets its id from its address: one hub tells the two apart, two hubs would both publish under
    that id (docs/scaling.md). Port numbers are dealt out in turn (not by parity: Linux gives listening
    sockets odd ports), so each hub gets the same share and about the same mix."""
    ports = sorted({port_of(url) for url in urls})
    hub_of_port = {port: position % options.hubs for position, port in enumerate(ports)}
    hubs = []
    for number in range(options.hubs):
        hub_id = HUB_ID if options.hubs == 1 else f"{HUB_ID}-{number + 1}"
        place = directory if options.hubs == 1 else directory / hub_id
        place.mkdir(exist_ok=True)
        share = [url for url in urls if hub_of_port[port_of(url)] == number]
        config = hub_config(place, hub_id, broker_url, share, options.meter_rate_ms)
        with (place / "hub.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hub.cli", "run", "--config", str(config), stdout=log, stderr=log
            )
        hubs.append(HubProcess(process, place))
    try:
        for hub in hubs:
            hub.port = await http_port(hub.directory / "hub.log", hub.process, options.connect_timeout)
    except BaseException:  # the caller never gets the list: stop the hubs here
        for hub in hubs:
            await stop_process(hub.process, 30)
        raise
    return hubs


async def start_workers(models: list[str], options: Options) -> list[Worker]:
    count = max(1, min(options.workers, len(models)))
    workers = []
    for number in range(count):
        share = models[number::count]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.fleet",
            "--models",
            ",".join(share),
            "--changes-per-s",
            str(options.changes_per_s / count),
            "--seed",
            str(number + 1),
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        workers.append(Worker(process))
    return workers


async def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:g} s")
        await asyncio.sleep(0.05)


async def http_port(log_path: Path, hub: asyncio.subprocess.Process, timeout_s: float) -> int:
    pattern = re.compile(r"status board and API on http://[^:/]+:(\d+)/")
    found: list[int] = []

    def announced() -> bool:
        if hub.returncode is not None:
            raise RuntimeError(f"the hub exited with status {hub.returncode}; see {log_path}")
        match = pattern.search(log_path.read_text(errors="replace"))
        if match:
            found.append(int(match.group(1)))
        return bool(found)

    await wait_for(announced, timeout_s, "the hub's HTTP port announced")
    return found[0]


@dataclass
class Scrape:
    """One read of the hub's /metrics."""

    at: float  # halfway through the request
    updates: float  # channel updates merged so far
    readings: float  # meter readings received so far, merged or superseded
    loop_late: float  # event loop ticks over 100 ms late so far
    loop_lag_s: float  # how late the last tick was


async def scrape(session: aiohttp.ClientSession, hubs: list[HubProcess]) -> Scrape:
    """Every hub's /metrics, added up (the lag is the worst hub's)."""
    before = time.time()
    updates = readings = late = lag = 0.0
    for hub in hubs:
        url = f"http://127.0.0.1:{hub.port}/metrics"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as reply:
            text = await reply.text()
        hub_updates = metric_value(text, "wmhub_state_updates_total")
        if hub_updates is None:
            raise RuntimeError("the hub's /metrics has no wmhub_state_updates_total")
        updates += hub_updates
        readings += metric_value(text, "wmhub_meter_readings_total") or 0.0
        late += metric_value(text, "wmhub_loop_late_total") or 0.0
        lag = max(lag, metric_value(text, "wmhub_loop_lag_seconds") or 0.0)
    return Scrape((before + time.time()) / 2, updates, readings, late, lag)


async def run_once(options: Options, directory: Path) -> dict[str, Any]:
    """One measured run; returns the result document (see README, "Benchmark")."""
    models = plan(options.receivers, options.channels)
    channels = sum(CHANNELS[model] for model in models)
    broker = Mosquitto(directory)
    workers: list[Worker] = []
    readers: list[asyncio.Task[None]] = []
    hubs: list[HubProcess] = []
    profiler: asyncio.subprocess.Process | None = None
    observer: Observer | None = None
    await broker.start()
    try:
        workers = await start_workers(models, options)
        readers = [asyncio.create_task(worker.read()) for worker in workers]
        await asyncio.wait_for(asyncio.gather(*(worker.ready.wait() for worker in workers)), 120)
        urls = [url for worker in workers for _, url, _ in worker.receivers]
        observer = Observer(broker.url, len(urls))
        observer.client.start()
        if not await observer.client.wait_connected(10):
            raise RuntimeError("the observer could not connect to Mosquitto")
        spawned_at = time.time()
        hubs = await start_hubs(directory, broker.url, urls, options)
        connected = True
        try:
            await wait_for(lambda: observer.all_online_at is not None, options.connect_timeout, "all devices online")
        except TimeoutError:
            connected = False
        connect_s = observer.all_online_at - spawned_at if observer.all_online_at is not None else None
        not_online = observer.missing(urls)
        await asyncio.sleep(options.warmup)
        if options.profile is not None:
            profiler = await start_profiler(hubs[0].process.pid, options.profile, options.seconds)
        result = await measure(options, hubs, workers, observer, broker)
        if profiler is not None:
            await asyncio.wait_for(profiler.wait(), options.seconds + 30)
    finally:
        await stop_process(profiler)
        for hub in hubs:
            await stop_process(hub.process, 30)
        for worker in workers:
            await stop_process(worker.process)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        if observer is not None:
            await observer.client.stop()
        await broker.stop()
    result.update(
        hubs=options.hubs,
        receivers=len(models),
        channels=channels,
        families=sorted(set(models)),
        meter_rate_ms=options.meter_rate_ms,
        all_connected=connected,
        not_online=not_online[:20],
        connect_s=connect_s,
        offered_samples_per_s=channels * 1000 / (options.meter_rate_ms or DEMAND_RATE_MS),
    )
    result["passed"] = verdict(result)
    return result


async def start_profiler(pid: int, path: Path, seconds: float) -> asyncio.subprocess.Process:
    """py-spy on the hub: ``.txt`` writes collapsed stacks (greppable), anything else a flame graph SVG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    output_format = "raw" if path.suffix == ".txt" else "flamegraph"
    return await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "1000",
        "--nonblocking",
        "--format",
        output_format,
        "--output",
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
    )


async def measure(
    options: Options,
    hubs: list[HubProcess],
    workers: list[Worker],
    observer: Observer,
    broker: Mosquitto,
) -> dict[str, Any]:
    generators = [worker.process.pid for worker in workers]
    assert broker.process is not None
    others = {"generators": generators, "mosquitto": [broker.process.pid]}
    async with aiohttp.ClientSession() as session:
        hub_pids = [hub.process.pid for hub in hubs]
        start_user, start_system = hub_cpu_times(hub_pids)
        start_other = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in others.items()}
        snapshots = [await scrape(session, hubs)]
        started = snapshots[0].at
        peak_rss = 0.0
        next_scrape = started + options.scrape_every
        while time.time() < started + options.seconds:
            await asyncio.sleep(min(1.0, max(0.0, started + options.seconds - time.time())))
            peak_rss = max(peak_rss, *(memory_mb(pid)[0] for pid in hub_pids))
            if time.time() >= next_scrape or time.time() >= started + options.seconds:
                snapshots.append(await scrape(session, hubs))
                next_scrape += options.scrape_every
        ended = snapshots[-1].at
        end_user, end_system = hub_cpu_times(hub_pids)
        hub_cpu = end_user - start_user + end_system - start_system
        other_cpu = {name: sum(cpu_seconds(pid) for pid in pids) - start_other[name] for name, pids in others.items()}
        peak_hwm = max(memory_mb(pid)[1] for pid in hub_pids)
    await asyncio.sleep(2.0)  # let the last changes of the window reach the subscriber
    elapsed = ended - started
    channels_window = [c for worker in workers for c in worker.changes if started <= c[3] <= ended]
    by_field, lost = observer.latencies(channels_window)
    model_of = {url: model for worker in workers for model, url, _ in worker.receivers}
    latencies = [value for values in by_field.values() for value in values]
    backlog = [round(sum(w.samples_at(snap.at) for w in workers) - snap.readings) for snap in snapshots]
    sent = sum(w.samples_at(ended) - w.samples_at(started) for w in workers)
    received = snapshots[-1].readings - snapshots[0].readings
    merged = snapshots[-1].updates - snapshots[0].updates
    broker_start, broker_end = observer.broker_count_at(started), observer.broker_count_at(ended)
    mqtt_rate = (broker_end - broker_start) / elapsed if broker_start is not None and broker_end is not None else None
    channels = sum(n for worker in workers for _, _, n in worker.receivers)
    cpu_percent = 100 * hub_cpu / elapsed
    queued = sum(worker.stats[-1][3] for worker in workers if worker.stats)
    connections = sum(worker.stats[-1][2] for worker in workers if worker.stats)
    return {
        "seconds": round(elapsed, 1),
        "samples_sent_per_s": round(sent / elapsed),
        "samples_received_per_s": round(received / elapsed),
        "updates_merged_per_s": round(merged / elapsed),
        "backlog_samples": backlog,
        "backlog_growth": backlog[-1] - backlog[0],
        "generator_queued_bytes": queued,
        "receiver_connections": connections,
        "hub_loop_late_ticks": round(snapshots[-1].loop_late - snapshots[0].loop_late),
        "hub_loop_lag_ms_at_scrapes": round(1000 * max(snap.loop_lag_s for snap in snapshots), 1),
        "hub_cpu_percent": round(cpu_percent, 1),
        "hub_cpu_system_percent": round(100 * (end_system - start_system) / elapsed, 1),
        "hub_cpu_percent_per_1000_channels": round(cpu_percent * 1000 / channels, 2),
        "hub_cpu_us_per_sample": round(hub_cpu * 1e6 / received, 2) if received else None,
        "hub_rss_mb": round(peak_rss, 1),
        "hub_peak_rss_mb": round(peak_hwm, 1),
        "generator_cpu_percent": round(100 * other_cpu["generators"] / elapsed, 1),
        "mosquitto_cpu_percent": round(100 * other_cpu["mosquitto"] / elapsed, 1),
        "mqtt_messages_per_s": round(mqtt_rate) if mqtt_rate is not None else None,
        "changes": len(channels_window),
        "changes_lost": lost,
        "latency_ms_p50": _round(percentile(latencies, 0.50)),
        "latency_ms_p99": _round(percentile(latencies, 0.99)),
        "latency_ms_max": _round(max(latencies, default=None)),
        "slowest_changes": [
            {"ms": round(ms, 1), "model": model_of.get(url), "url": url, "channel": channel, "expected": expected}
            for ms, url, channel, expected in observer.slowest
        ],
        "lost_changes": [
            {"model": model_of.get(url), "url": url, "channel": channel, "expected": expected, "at": at}
            for url, channel, expected, at in observer.lost[:5]
        ],
        "latency_ms_p99_by_field": {name: _round(percentile(values, 0.99)) for name, values in by_field.items()},
    }


def hub_cpu_times(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of all the hubs together."""
    times = [cpu_times(pid) for pid in pids]
    return sum(user for user, _ in times), sum(system for _, system in times)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def verdict(result: dict[str, Any]) -> bool:
    p99 = result["latency_ms_p99"]
    sent = result["samples_sent_per_s"] * result["seconds"]
    return bool(
        result["all_connected"]
        and p99 is not None
        and p99 <= P99_LIMIT_MS
        and result["changes_lost"] == 0
        and result["backlog_growth"] <= BACKLOG_TOLERANCE * sent
    )


ROWS: Final = (
    ("hubs", "hub processes"),
    ("receivers", "receivers"),
    ("channels", "channels"),
    ("all_connected", "all connected"),
    ("connect_s", "time until all online on MQTT (s)"),
    ("receiver_connections", "hub connections the receivers see"),
    ("meter_rate_ms", "meter rate (ms)"),
    ("offered_samples_per_s", "samples offered /s"),
    ("samples_sent_per_s", "samples sent /s"),
    ("samples_received_per_s", "samples received by the hub /s"),
    ("updates_merged_per_s", "channel updates merged /s (newest samples per look, state)"),
    ("backlog_growth", "backlog growth over the window (samples)"),
    ("hub_loop_late_ticks", "hub event loop >100 ms late (ticks)"),
    ("hub_cpu_percent", "hub CPU (% of one core)"),
    ("hub_cpu_percent_per_1000_channels", "hub CPU per 1,000 channels (%)"),
    ("hub_cpu_us_per_sample", "hub CPU per received sample (us)"),
    ("hub_peak_rss_mb", "hub peak RSS (MB; the largest hub)"),
    ("mqtt_messages_per_s", "MQTT messages /s out"),
    ("changes", "state changes measured"),
    ("changes_lost", "state changes never seen on MQTT"),
    ("latency_ms_p50", "change -> MQTT p50 (ms)"),
    ("latency_ms_p99", "change -> MQTT p99 (ms)"),
    ("generator_cpu_percent", "load generators CPU (%)"),
    ("mosquitto_cpu_percent", "Mosquitto CPU (%)"),
    ("passed", "passed (p99 <= 100 ms, no backlog, none lost)"),
)


def table(results: list[dict[str, Any]]) -> str:
    width = max(len(label) for _, label in ROWS)
    lines = []
    for key, label in ROWS:
        cells = "".join(f"{_cell(result.get(key)):>12}" for result in results)
        lines.append(f"{label:<{width}}{cells}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


async def find_ceiling(
    options: Options, steps: list[int], budget_s: float, save: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Runs at each channel count in turn until one fails; ``save`` gets the document after every run."""
    document: dict[str, Any] = {"ceiling_channels": None, "runs": [], "failed_at": None}
    deadline = time.monotonic() + budget_s
    for channels in steps:
        if time.monotonic() > deadline:
            print(f"time budget spent before {channels} channels", file=sys.stderr)
            break
        step = Options(**{**vars(options), "channels": channels, "receivers": None})
        try:
            result = await measured_run(step)
        except Exception as exc:  # a hub too busy to answer /metrics, or one that died: that count fails
            document["failed_at"] = {"channels": channels, "error": str(exc).splitlines()[0]}
            print(f"{channels} channels: FAILED ({exc})", file=sys.stderr, flush=True)
            save(document)
            break
        document["runs"].append(result)
        if result["passed"]:
            document["ceiling_channels"] = channels
        else:
            document["failed_at"] = {"channels": channels, "error": None}
        save(document)
        print(f"{channels} channels: {'passed' if result['passed'] else 'FAILED'}", file=sys.stderr, flush=True)
        if not result["passed"]:
            break
    return document


async def measured_run(options: Options) -> dict[str, Any]:
    """One run in a scratch directory (the hub's log, config and data; kept with ``--keep``)."""
    with tempfile.TemporaryDirectory(prefix="wmhub-bench-") as scratch:
        directory = Path(scratch)
        if options.keep is not None:
            directory = options.keep / f"{options.channels or options.receivers}"
            directory.mkdir(parents=True, exist_ok=True)
        try:
            return await run_once(options, directory)
        except Exception as exc:
            tail = "".join(log.read_text(errors="replace")[-2000:] for log in sorted(directory.rglob("hub.log")))
            raise RuntimeError(f"benchmark run failed: {exc!r}\n{tail}") from exc


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "?",
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "at": time.strftime("%F %T"),
        "commit": commit.stdout.strip() or None,
    }


def write(path: Path | None, document: dict[str, Any]) -> None:
    if path is not None:
        document["machine"] = machine()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--receivers", type=int, help="number of simulated receivers (mixed families)")
    size.add_argument("--channels", type=int, help="simulate enough receivers for this many channels")
    size.add_argument("--find-ceiling", action="store_true", help="grow the channel count until a run fails")
    parser.add_argument("--seconds", type=float, help="measured time (default 60; 20 per ceiling step)")
    parser.add_argument("--warmup", type=float, default=10.0, help="time after all devices are online")
    parser.add_argument(
        "--meter-rate-ms",
        type=lambda text: None if text == "auto" else int(text),
        default=METER_RATE_MS,
        help="the hub's meter_rate_ms, or auto: unset, so the hub meters as its consumers need (MQTT: 500 ms)",
    )
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--hubs", type=int, default=1, help="hub processes on one broker, each with its own hub_id and receivers"
    )
    parser.add_argument("--changes-per-s", type=float, default=20.0, help="timed state changes per second")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--steps", help="ceiling: comma-separated channel counts to try, in order")
    parser.add_argument("--budget", type=float, default=900.0, help="ceiling: stop starting runs after this (s)")
    parser.add_argument("--profile", type=Path, help="py-spy the (first) hub during the window (.txt stacks or .svg)")
    parser.add_argument("--plot", type=Path, help="ceiling: write the CPU and p99 plot (PNG) here")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    parser.add_argument("--keep", type=Path, help="keep each run's hub log, config and broker log under here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.hubs < 1:
        raise SystemExit("python -m bench.run: --hubs must be 1 or more")
    options = Options(
        receivers=args.receivers,
        channels=args.channels,
        seconds=args.seconds or (20.0 if args.find_ceiling else 60.0),
        warmup=args.warmup,
        workers=args.workers,
        changes_per_s=args.changes_per_s,
        connect_timeout=args.connect_timeout,
        profile=args.profile,
        keep=args.keep,
        meter_rate_ms=args.meter_rate_ms,
        hubs=args.hubs,
    )
    if not args.find_ceiling and options.receivers is None and options.channels is None:
        options.receivers = 250
    if args.find_ceiling:
        steps = [int(step) for step in args.steps.split(",")] if args.steps else list(CEILING_STEPS)
        document = asyncio.run(find_ceiling(options, steps, args.budget, lambda partial: write(args.out, partial)))
        runs = document["runs"]
        print(table(runs))
        print(f"ceiling: {document['ceiling_channels']} channels")
        if args.plot is not None:
            from bench.plot import label, plot_ceiling

            plot_ceiling([(label(runs), runs)], args.plot)
    else:
        document = asyncio.run(measured_run(options))
        print(table([document]))
    write(args.out, document)
    return 0 if document.get("passed", document.get("ceiling_channels") is not None) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
