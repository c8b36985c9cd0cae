"""The Hub: wires plugins, the state store, drivers, discovery and the publishers together.

    drivers (plugins) -> DeviceHandle -> StateStore -> publishers (MQTT, web, history/alerts)
    MQTT / REST / CLI -> Hub.apply -> DeviceManager -> the device's Driver.apply

The Hub is the one implementation of :class:`hub.service.HubService`, the protocol the edges (hub.mqtt,
hub.web, hub.fleet) are given. It never imports an edge: the composition root (:mod:`hub.compose`) hands it
a factory that builds them, and the hub starts and stops what the factory built.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from hub import __version__
from hub.auth import load_or_create_token, store_token_again
from hub.clock import Clock, SystemClock
from hub.config import HubConfig
from hub.descriptors import DescriptorBudget
from hub.devices import DeviceHandle, DeviceManager, ManagedDevice
from hub.discovery import Discovery
from hub.drivers import DriverSettings
from hub.frequency import Band, PlanSettings, Profile
from hub.hookspecs import Candidate, DemoFleet
from hub.lag import LoopMonitor
from hub.memory import HeapTrimmer
from hub.metering import MeterDemand, fitted_rate
from hub.model import (
    Capabilities,
    Command,
    CommandKind,
    CommandResult,
    Device,
    NumberLimits,
    command_field,
    command_place,
)
from hub.persistence import (
    Alert,
    ConflictError,
    KnownDevice,
    NotFoundError,
    Persistence,
    Source,
    StoreSettings,
)
from hub.persistence.frequency import FrequencySettings
from hub.persistence.known_devices import TRANSIENT_SOURCES
from hub.plugins import PluginHost, UrlCheckFailedError
from hub.redact import redact
from hub.service import DiscoveryOffError, UnknownCandidateError
from hub.state import StateStore
from hub.text import device_text, preview

log = logging.getLogger("hub")

# receivers told of a new meter rate at once: each is one command round trip
RETUNE_CONCURRENCY = 32
RETUNE_REFUSALS_SHOWN = 5  # a thousand receivers refusing would otherwise be a thousand lines
# A demo fleet starts (or stops) simulators on loopback: one still at it after this long is left out.
DEMO_FLEET_TIMEOUT_S = 10.0
DEVICES_STEP = "the devices' drivers"  # a step of Hub.stop that names the devices still in it
# Where a signalled stop is before Hub.stop's own steps: the start it interrupted ending. Said apart from the
# stop being done, which a stop held here (the event loop too busy to get to it) was taken for.
BEGINNING_STEP = "its beginning: the hub's start ending"
STOP_URLS_SHOWN = 3


def frequency_settings(config: HubConfig) -> FrequencySettings:
    """The frequency plan's settings from the ``[frequency]`` section of the configuration."""
    section = config.frequency
    return FrequencySettings(
        plan=PlanSettings(profile=Profile(section.profile), seventh_order=section.seventh_order),
        max_live_carriers=section.max_live_carriers,
        bands={family: Band(band.low_mhz, band.high_mhz, band.step_khz) for family, band in section.bands.items()},
    )


class Edge(Protocol):
    """A publisher or command source the hub starts after its devices and stops after them."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


EdgeFactory = Callable[["Hub"], list[Edge]]


class HubFailed(RuntimeError):
    """A task the hub cannot run without ended while it ran (the hub has stopped cleanly)."""


class Hub:
    """One running hub. ``async with Hub(config, plugins, edges) as hub`` starts devices, persistence and
    discovery, then the edges ``edges(hub)`` builds, and stops it all cleanly; :func:`hub.compose.compose_hub`
    hands it the MQTT and web edges."""

    def __init__(
        self,
        config: HubConfig,
        plugins: PluginHost | None = None,
        edges: EdgeFactory | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self._edge_factory = edges
        if plugins is None:
            plugins = PluginHost()
            plugins.load_entry_points()
        self.plugins = plugins
        # the one clock of every timed part: supervisors, drivers' polls, rate limits, subscriptions, the metering
        # grace, discovery's back-off, the persistence ticker
        self.clock = clock = clock or SystemClock()  # its own: a test that breaks one hub's clock breaks no other
        self.store = StateStore(clock)
        self.metering = MeterDemand(config.meter_rate_ms, self._meter_rate_changed, clock=clock)
        self.store.meter_look_interval = lambda: self.metering.look_interval_s
        self._retuning: asyncio.Task[None] | None = None
        self.settings = DriverSettings(
            meter_rate_ms=self.metering.rate_ms,
            io_timeout_s=config.io_timeout_s,
            offline_after_s=config.offline_after_s,
        )
        self.devices = DeviceManager(
            plugins,
            self.store,
            self.settings,
            config.command_timeout_s,
            config.control_rate_per_s,
            clock,
            max_connecting=config.max_connecting,
            descriptors=DescriptorBudget(),
        )
        self.devices.on_moved = self._forget_moved
        interfaces = ["127.0.0.1"] if config.demo and config.discovery.interfaces is None else None
        self.discovery = Discovery(
            plugins,
            self.settings,
            interfaces=config.discovery.interfaces or interfaces,
            on_candidate=self._on_candidate,
            clock=clock,
            on_gone=self._on_candidate_gone,
        )
        self.started_at = time.time()  # shown (info); how long the hub has run is measured on the monotonic clock
        self._started_monotonic = clock.monotonic()
        # Opened at start unless a caller (tests with a simulated clock) set an open store it closes itself.
        self._persistence: Persistence | None = None
        self._owns_persistence = False
        self._api_token: str | None = None
        # the data dir's other files the hub's runner keeps (its lock), written again as the token is when the
        # database is written again into a data dir deleted under the hub (Database.keep_beside)
        self.files_beside_database: list[Callable[[], str | None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._fleets: list[tuple[str, DemoFleet]] = []
        # URL as shown -> the source of each device from the config file or the demo (not remembered)
        self._transient: dict[str, str] = {}
        self._edges: list[Edge] = []
        self._devices_added = False  # the devices the run starts with (remembered, configured, demo) are managed
        self.stopped = asyncio.Event()
        self.loop_monitor = LoopMonitor()
        self.heap_trimmer = HeapTrimmer()
        # set when a task the hub cannot run without ended by itself (see watch)
        self._failure: str | None = None
        self._failed = asyncio.Event()
        self._stopping = False
        # what the database's close could not store (the disk full at the stop): the stop failed (exit status 1)
        self.lost_at_stop: str | None = None
        self._stop_step: str | None = None  # what the stop is at, for one that hangs to name (still_stopping)

    async def __aenter__(self) -> Hub:
        try:
            await self.start()
        except BaseException:
            # `async with` calls no __aexit__ for a failed enter: what start opened (the database, whose worker
            # thread keeps the process alive) would stay open (run_until_signalled stops a failed start itself)
            try:
                await self.stop()
            except Exception:  # the start's own error is the one to raise
                log.exception("stopping the hub after its failed start failed too")
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.heap_trimmer.start()
        if self._persistence is None:
            self._owns_persistence = True
            self._persistence = await Persistence.open(
                self.config.data_dir,
                self.store,
                clock=self.clock,
                settings=StoreSettings(
                    auto_approve=self.config.discovery.auto_approve, frequency=frequency_settings(self.config)
                ),
                health_source=self.devices.health,
            )
            if self.persistence.ticker is not None:
                self.watch(self.persistence.ticker, "the store's ticker (history and alerts)")
            for write_again in (self._store_token_again, *self.files_beside_database):
                self.persistence.db.keep_beside(write_again)
        self.persistence.devices.url_check = self.devices.resolve
        self.devices.memories = self.persistence.device_memory  # before the first device: its driver recalls
        self.devices.identities = self.persistence.device_identity  # the first device may be down: listed offline
        self.persistence.frequency.devices_read = self.devices_read
        self.persistence.devices.unremembered = self._unremembered
        self.persistence.devices_found = self._connect_remembered
        self._connect_remembered(self.persistence.restore())
        for url in self.config.devices:
            try:
                await self.add_device(url, source="config")
            except UrlCheckFailedError as exc:  # the plugin's bug, not the configuration's: the others start
                log.error("configured device %s left out: %s", preview(redact(url)), exc)
        if self.config.demo:
            await self._start_demo()
        self._devices_added = True
        self._forget_departed_urls()
        if self.config.discovery.enabled:
            await self.discovery.start()
        await self._start_edges()
        # measured from here on: start-up work runs on the loop in one go (opening the database, the web edge
        # building its OpenAPI document: about half a second), which the monitor took for the hub falling
        # behind, with a "not keeping up" warning at nearly every start
        self.loop_monitor.start()
        log.info("hub %s started with %d device(s)", self.config.hub_id, len(self.devices.by_url))

    def _connect_remembered(self, devices: list[tuple[str, str | None]]) -> None:
        """Watch the devices the store remembers ((url, device_id) each): at start, and those the database file
        holds that the stand-in the store started on lacked, once the file opens."""
        for url, device_id in devices:
            try:
                self._supervise(url, device_id)
            except ValueError as exc:  # stored by an earlier version that took it (a control character in it)
                log.warning("remembered device %s is not connected: %s", preview(redact(url)), redact(str(exc)))

    def _forget_departed_urls(self) -> None:
        """Connection health, drivers' memories and identities of URLs this run does not manage (gone from the
        configuration, or a demo port of an earlier run) are dropped: the store keeps only devices the hub has."""
        for health in self.persistence.health.all():
            if health.url not in self.devices.by_url:
                self.persistence.health.forget(health.url)
        for memories in (self.persistence.device_memory, self.persistence.device_identity):
            for url in memories.urls():
                # a driver's memory under a device id stays: the device may turn up at another address
                if "://" in url and url not in self.devices.by_url:
                    memories.forget(url)

    def expected_device_ids(self) -> tuple[set[str], bool]:
        """The ids of the devices this run has or will have: each managed device's id, or the id its URL had
        when last connected; and whether every managed device's id is known that way."""
        ids, complete = set(self.store.devices), True
        for managed in self.devices.by_url.values():
            device_id = managed.handle.device_id
            if device_id is None:
                health = self.persistence.health.find(managed.url)
                device_id = health.device_id if health is not None else None
            if device_id is None:
                complete = False
            else:
                ids.add(device_id)
        return ids, complete

    def knows_remembered_devices(self) -> bool:
        return not self.persistence.db.reading_stand_in

    def devices_read(self) -> bool:
        """Whether every device this run starts with has identified itself and reported its channels: until
        then a view of the whole site (the live frequency plan) lacks what they will say."""
        if not self._devices_added:
            return False
        devices = self.store.devices
        for managed in self.devices.by_url.values():
            device = devices.get(managed.handle.device_id or "")
            if device is None or not device.online or not all(channel.reported for channel in device.channels):
                return False
        return True

    def board_url(self) -> str | None:
        """The status board's address as others on the network reach it; None without the web server."""
        http = self.config.http
        web = self.web
        port = web.port if web is not None and web.port else http.port
        if not http.enabled or not port:
            return None
        # bandit B104 waived: this compares with the wildcard addresses, it binds nothing
        host = socket.gethostname() if http.host in ("", "0.0.0.0", "::") else http.host  # nosec B104
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    async def _start_demo(self) -> None:
        """Start each plugin's demo fleet in turn and add the devices it returns. A fleet that fails, overruns
        DEMO_FLEET_TIMEOUT_S or returns what is no device URL is logged naming its plugin; the others start."""
        fleets = self.plugins.collect("register_simulators")
        if not fleets:
            log.warning("demo: no plugin offers simulated devices, the demo has none ('wmhub plugins' says why)")
        for plugin_name, fleet in fleets:
            try:
                urls = await self.plugins.call_bounded(
                    plugin_name, "DemoFleet.start", DEMO_FLEET_TIMEOUT_S, fleet.start
                )
            except Exception as exc:  # the fleet's own error, or PluginError: it overran
                log.error("demo simulators of plugin %s failed to start: %s", plugin_name, _said(exc))
                continue
            self._fleets.append((plugin_name, fleet))
            if not isinstance(urls, list | tuple):
                log.error(
                    "demo simulators of plugin %s returned %s, not a list of device URLs", plugin_name, preview(urls)
                )
                continue
            for url in urls:
                try:
                    if not isinstance(url, str):
                        raise TypeError("not text")
                    await self.add_device(url, source="demo")
                except (TypeError, ValueError) as exc:
                    log.error("demo device %s of plugin %s left out: %s", preview(url), plugin_name, _said(exc))

    def _supervise(self, url: str, device_id: str | None = None) -> ManagedDevice:
        managed = self.devices.add(url, device_id)
        managed.handle.on_identified = self._remember_identity
        return managed

    def _unremembered(self, device_id_or_url: str) -> tuple[str, str | None, str] | None:
        managed = self.devices.find(device_id_or_url)
        source = self._transient.get(managed.url) if managed is not None else None
        if managed is None or source is None:
            return None
        return managed.url, managed.device_id, source

    def _forget_moved(self, url: str, device_id: str) -> None:
        """The device ``url`` named answers elsewhere now under the same id (see DeviceHandle._claim): the
        old address would stay an offline device for good."""
        log.info("device %s is at another address now: %s is forgotten", device_id, redact(url))
        self._spawn(self.remove_device(url, source=Source.MOVED))

    def _remember_identity(self, handle: DeviceHandle) -> None:
        if handle.device_id is not None:
            self.persistence.devices.bind(handle.endpoint.url, handle.device_id)
        self.devices.look_for_twin(handle)

    def watch(self, task: asyncio.Task[Any], what: str) -> None:
        """Mark ``task`` as one the hub cannot run without: should it end by itself while the hub runs, the
        hub stops cleanly and ``run_until_signalled`` raises, so the process exits non-zero and a service
        manager restarts it, instead of a hub that looks alive with half its work gone."""

        def ended(done: asyncio.Task[Any]) -> None:
            if self._stopping or done.cancelled():
                return
            error = done.exception()
            self._failure = f"{what} ended" + (f": {redact(str(error)) or type(error).__name__}" if error else "")
            log.error("%s; the hub stops", self._failure)
            self._failed.set()

        task.add_done_callback(ended)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _start_edges(self) -> None:
        if self._edge_factory is not None:
            self._edges.extend(self._edge_factory(self))
        for edge in self._edges:
            await edge.start()

    def _edge(self, name: str) -> Any:
        return next((edge for edge in self._edges if edge.name == name), None)

    @property
    def uptime_s(self) -> float:
        """Seconds since the hub was made, on the monotonic clock: a step of the wall clock (NTP's first sync
        on a machine without a real-time clock, a date set by hand) does not move it."""
        return self.clock.monotonic() - self._started_monotonic

    @property
    def api_token(self) -> str:
        """The token writes and control need (configured, or stored in the data dir at first use)."""
        if self._api_token is None:
            self._api_token = self.config.http.token or load_or_create_token(self.config.data_dir)
        return self._api_token

    def _store_token_again(self) -> str | None:
        if self.config.http.token or self._api_token is None:  # configured, or none generated yet
            return None
        return store_token_again(self.config.data_dir, self._api_token)

    @property
    def mqtt(self) -> Any:
        """The running MQTT bridge (for its client's counters), or None."""
        return self._edge("mqtt")

    @property
    def web(self) -> Any:
        """The running web server (for its bound port), or None."""
        return self._edge("web")

    async def stop(self) -> None:
        """Close devices first (metering off), then say offline on MQTT, then close the rest."""
        self._stopping = True
        self._stop_step = "the meter rate's retuning"
        if self._retuning is not None:
            self._retuning.cancel()
            await asyncio.gather(self._retuning, return_exceptions=True)
        self._stop_step = "discovery"
        await self.discovery.stop()
        self._stop_step = "the hub's background tasks"
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._stop_step = DEVICES_STEP
        if self._persistence is not None:
            # the ids of devices that identified since the last periodic record (every few seconds): one that is
            # off at the next start is still known by its id, and its topics and Home Assistant device are kept
            self._persistence.health.update(self.devices.health())
            self._persistence.alerts.stop_judging()  # the devices the hub closes are not offline in the venue
        await self.devices.close()
        self.store.close()
        for edge in reversed(self._edges):
            self._stop_step = f"the {edge.name} edge"
            try:
                await edge.stop()
            except Exception as exc:
                log.error("stopping %s failed: %s", type(edge).__name__, exc)
        self._edges.clear()
        for plugin_name, fleet in self._fleets:
            self._stop_step = f"the demo simulators of plugin {plugin_name}"
            try:
                await self.plugins.call_bounded(plugin_name, "DemoFleet.stop", DEMO_FLEET_TIMEOUT_S, fleet.stop)
            except Exception as exc:
                log.error("demo simulators of plugin %s failed to stop: %s", plugin_name, _said(exc))
        self._fleets.clear()
        self._stop_step = "the database"
        if self._persistence is not None and self._owns_persistence:
            await self._persistence.close()
            self.lost_at_stop = self._persistence.db.lost_at_close
            self._persistence = None
        self._stop_step = "the loop monitor and the heap trimmer"
        await self.loop_monitor.stop()
        await self.heap_trimmer.stop()
        self.metering.close()
        self._stop_step = None
        self.stopped.set()

    def still_stopping(self) -> str | None:
        """What the stop is at (for the devices, the URLs of those whose drivers are still closing), or None
        before the hub is asked to stop and once the stop is done. Read from another thread too: a stop blocked by
        plugin code holds the event loop."""
        step = self._stop_step
        if step != DEVICES_STEP:
            return step
        closing = [managed.url for managed in list(self.devices.by_url.values()) if not managed.task.done()]
        if not closing:
            return step
        shown = ", ".join(redact(url) for url in closing[:STOP_URLS_SHOWN])
        more = f" and {len(closing) - STOP_URLS_SHOWN} more" if len(closing) > STOP_URLS_SHOWN else ""
        return f"{step}: {shown}{more}"

    async def run_until_signalled(
        self,
        stopping: Callable[[], None] | None = None,
        heard: Callable[[int, FrameType | None], None] | None = None,
    ) -> None:
        """Run until SIGINT, SIGTERM or SIGHUP, then stop cleanly; ``stopping`` is called as the stop begins
        (the signal handlers are still the hub's: it may take them over). ``heard`` is called with each of
        those signals in the signal handler itself, which runs even while plugin code holds the event loop
        and the stop cannot begin, and with the frame it interrupted (the loop's thread's place)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        # SIGHUP: the terminal or SSH session of a hub started by hand closed. Its default action ends the
        # process on the spot, leaving the receivers metering and their retained availability "online"; it
        # stops the hub as SIGTERM does (no reload is offered: a changed configuration takes a restart). A hub
        # started with SIGHUP ignored (nohup) was asked to outlive its terminal: it still ignores it.
        stop_signals = [signal.SIGINT, signal.SIGTERM]
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            stop_signals.append(signal.SIGHUP)
        for signum in stop_signals:
            loop.add_signal_handler(signum, stop.set)
            if heard is not None:
                _hear_first(signum, heard)
        # a signal while starting (a slow broker, a slow disk) stops the hub too; a failed start stops what
        # was started (an open database keeps a thread that would otherwise keep the process alive)
        starting = asyncio.ensure_future(self.start())
        signalled = asyncio.ensure_future(stop.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()
                await asyncio.wait({signalled, failed}, return_when=asyncio.FIRST_COMPLETED)
                if not signalled.done():
                    raise HubFailed(self._failure or "a task the hub needs ended")
        finally:
            self._stop_step = BEGINNING_STEP
            if stopping is not None:
                stopping()
            log.info("shutting down")
            for task in (starting, signalled, failed):
                task.cancel()
            await asyncio.gather(starting, signalled, failed, return_exceptions=True)
            await self.stop()

    # Service methods used by every edge (MQTT, REST, CLI, UI): hub.service.HubService

    @property
    def state(self) -> StateStore:
        return self.store

    @property
    def persistence(self) -> Persistence:
        """The database and the venue's services, open from start to stop."""
        if self._persistence is None:
            raise RuntimeError("the hub's persistence is open only while the hub runs")
        return self._persistence

    @persistence.setter
    def persistence(self, opened: Persistence) -> None:
        """Use a store the caller opened (and closes): tests with a simulated clock."""
        self._persistence = opened

    def device_list(self) -> list[Device]:
        return list(self.store.devices.values())

    def connections(self, detail: bool = False) -> list[dict[str, Any]]:
        return [managed.health(detail) for managed in self.devices.by_url.values()]

    def connection(self, device_id_or_url: str, detail: bool = False) -> dict[str, Any] | None:
        managed = self.devices.find(device_id_or_url)
        return managed.health(detail) if managed is not None else None

    def manages(self, url: str) -> bool:
        return "://" in url and self.devices.find(url) is not None

    def degraded(self) -> str | None:
        return self.persistence.db.problem

    def open_alerts(self) -> list[Alert]:
        return self.persistence.alerts.open_alerts()

    def devices_at(self, location_id: int) -> set[str]:
        places = self.persistence.locations.within(location_id)
        return {
            known.device_id
            for known in self.persistence.devices.all()
            if known.device_id is not None and known.location_id in places
        }

    async def add_device(self, url: str, source: str) -> ManagedDevice:
        """Start supervising a device and, unless it comes from the config or the demo, remember it.

        Another spelling of a device it has (``SHURE://…/``, the default port written out or left off) is that
        device. Raises hub.drivers.EndpointError for an unusable URL.
        """
        self.devices.resolve(url)
        current = self.devices.find(url)
        if current is not None:  # another spelling of it is that device, written as the hub holds it
            url = current.handle.endpoint.respelled(url)
        if source in TRANSIENT_SOURCES:
            self._transient.setdefault(redact(url), source)
        else:
            try:
                await self.persistence.devices.add(url, source=source)
            except ConflictError:  # already known: adding again is harmless, and may correct its password
                await self.persistence.devices.change_credentials(url, source=source)
        if current is not None and current.handle.endpoint.url != url:
            # the same device with another password (a typo corrected): the new one is used from now on
            managed = await self.devices.reconnect(url)
            managed.handle.on_identified = self._remember_identity
            log.info("device %s: new credentials, reconnecting (%s)", managed.url, source)
            return managed
        # the id it had when last connected (a device of the config file or the demo is not remembered
        # otherwise): until it answers, its topics, history and health are that device's
        last = self.persistence.health.find(redact(url))
        managed = self._supervise(url, last.device_id if last is not None else None)
        log.info("device %s added (%s)", managed.url, source)
        return managed

    async def remove_device(self, device_id_or_url: str, source: str) -> bool:
        managed = self.devices.find(device_id_or_url)
        removed = await self.devices.remove(device_id_or_url)
        # asked by the URL the hub holds too: the caller may have spelled it otherwise (hub.drivers.Endpoint.identity)
        known = self.persistence.devices.find(device_id_or_url) or (
            self.persistence.devices.find(managed.url) if managed is not None else None
        )
        if known is not None:  # none for a device from the config file or the demo: nothing remembered
            await self.persistence.devices.remove(known.url, source=source)  # audited there
            removed = True
        came_from = self._transient.pop(managed.url, None) if managed is not None else None
        if managed is not None and known is None and removed:
            # no row of its own to audit the removal with, yet someone stopped the hub watching a receiver:
            # audited under the same action and URL as a remembered device's, so ?target= finds it either way
            before = {"url": managed.url, "device_id": managed.device_id, "source": came_from}
            self.persistence.audit.record(source, "device.remove", managed.url, before=before)
        if managed is not None:
            self.persistence.health.forget(managed.url)
        if removed:
            self.persistence.alerts.clear_removed(self._names_left(managed, known))
            log.info("device %s removed (%s)", redact(device_id_or_url), source)
        return removed

    def _names_left(self, managed: ManagedDevice | None, known: KnownDevice | None) -> set[str]:
        """What a removed device was known by, its URL as shown and its id, but not an id another device has now
        (the receiver moved to a new address that took it over)."""
        names = [managed.url, managed.device_id] if managed is not None else []
        if known is not None:
            names += [redact(known.url), known.device_id]
        return {name for name in names if name is not None and ("://" in name or self.devices.find(name) is None)}

    def refusal(self, command: Command, source: str) -> CommandResult | None:
        """Why ``command`` would be refused before sending (``DeviceManager.refusal``), or None. An edge that
        checks every part of a request first sends none once one is refused: the refusal is audited here, as
        one of :meth:`apply` is, so a command refused by any edge is in the log."""
        result = self.devices.refusal(command)
        if result is not None:
            self.record_unsent(command, source, result)
        return result

    def record_unsent(self, command: Command, source: str, result: CommandResult) -> None:
        """Audit a command that was not sent: refused before sending, or a part of a request left out because
        another part was refused or failed (someone still asked for it)."""
        self.persistence.audit.record_command(source, command, self._current_value(command), result)

    async def apply(self, command: Command, source: str, deadline: float | None = None) -> CommandResult:
        before = self._current_value(command)
        result = await self.devices.apply(command, deadline)
        self.persistence.audit.record_command(source, command, before, result)
        log.info(
            "command %s %s %s=%s from %s: %s",
            command.kind.value,
            command.device_id,
            command_place(command),
            preview(command.value),
            source,
            "ok" if result.ok else f"{result.code}: {result.error}",
        )
        return result

    def _current_value(self, command: Command) -> Any:
        """What the command changes, as it is now: the audit log's "before"."""
        device = self.store.get(command.device_id)
        index = None if command.kind is CommandKind.DEVICE_NAME else command.channel
        target = device.channel(index) if device is not None and index is not None else device
        row = command_field(command.kind, index is not None)
        return getattr(target, row.state_field) if target is not None and row and row.state_field else None

    def need_meters(self, interval_s: float) -> Callable[[], None]:
        """A consumer that uses levels every ``interval_s`` is there; call what this returns when it goes."""
        return self.metering.need(round(interval_s * 1000))

    def _meter_rate_changed(self, rate_ms: int) -> None:
        # a driver made from now on (a reconnect too) starts at the new rate; connected ones are told
        self.devices.settings = dataclasses.replace(self.devices.settings, meter_rate_ms=rate_ms)
        if self._retuning is not None:
            self._retuning.cancel()
        self._retuning = asyncio.create_task(self._retune_meters(rate_ms), name="meter rate change")

    async def _retune_meters(self, rate_ms: int) -> None:
        """Every connected receiver that takes METER_RATE gets the new rate, fitted to what its family
        declares it takes, a bounded number at a time. Not audited: the hub changed its own setting, no
        user asked."""
        limit = asyncio.Semaphore(RETUNE_CONCURRENCY)

        async def retune(device: Device, rate: int | float) -> CommandResult:
            async with limit:
                return await self.devices.apply(Command(device_id=device.id, kind=CommandKind.METER_RATE, value=rate))

        plan = [
            (device, fitted_rate(meter_rate_limits(device.capabilities), rate_ms))
            for device in self.device_list()
            if device.online
            and (device.capabilities is None or device.capabilities.accepts(CommandKind.METER_RATE, channel=False))
        ]
        results = await asyncio.gather(*(retune(device, rate) for device, rate in plan))
        fitted = {(device.vendor, device.family, rate) for device, rate in plan if rate != rate_ms}
        for vendor, family, rate in sorted(fitted, key=str):
            log.info(
                "%s receivers (family %s) meter every %g ms: their METER_RATE limits take no %d ms",
                vendor,
                family,
                rate,
                rate_ms,
            )
        # a refusal of the hub's own rate is a receiver left metering at its old rate, unseen on the board
        refused = [
            (device, rate, result) for (device, rate), result in zip(plan, results, strict=True) if not result.ok
        ]
        for device, rate, result in refused[:RETUNE_REFUSALS_SHOWN]:
            level = logging.WARNING if result.code in ("invalid", "not_supported") else logging.INFO
            log.log(level, "meter rate %g ms not taken by %s: %s: %s", rate, device.id, result.code, result.error)
        if len(refused) > RETUNE_REFUSALS_SHOWN:
            log.warning("meter rate not taken by %d more receivers", len(refused) - RETUNE_REFUSALS_SHOWN)

    async def set_meter_rate(
        self, rate_ms: int, device_id: str | None, source: str, deadline: float | None = None
    ) -> dict[str, CommandResult]:
        """The result for each device asked: the one named, or every online one."""
        targets = [device_id] if device_id is not None else [d.id for d in self.device_list() if d.online]
        return {
            target: await self.apply(
                Command(device_id=target, kind=CommandKind.METER_RATE, value=rate_ms), source, deadline
            )
            for target in targets
        }

    async def rename_channel(self, device_id: str, channel: int, name: str | None, source: str) -> None:
        """Set (or with None, clear) the extended name: the user's name for a channel, kept by the hub."""
        device = self.store.get(device_id)
        if device is None or device.channel(channel) is None:
            raise LookupError(f"no channel {channel} on device {device_id!r}")
        if name is not None:
            await self.persistence.names.set(device_id, channel, name, source=source)
        elif self.persistence.names.get(device_id, channel) is not None:
            await self.persistence.names.clear(device_id, channel, source=source)
        log.info("channel %s/%s extended name %r (%s)", device_id, channel, name, source)

    def candidates(self) -> list[Candidate]:
        """Candidates waiting for approval, seen in the last CANDIDATE_TTL_S (kept across restarts by the store)."""
        fields = {"url", "vendor", "model", "unique_id", "name", "source", "last_seen"}
        return [Candidate(**candidate.model_dump(include=fields)) for candidate in self.persistence.candidates.all()]

    @property
    def discovery_dropped(self) -> int:
        return self.discovery.dropped

    def _on_candidate(self, candidate: Candidate) -> None:
        self._spawn(self.offer_candidate(candidate))

    def _on_candidate_gone(self, url: str) -> None:
        if self._persistence is not None:
            self.persistence.candidates.gone(url)

    async def offer_candidate(self, candidate: Candidate) -> None:
        """Keep a discovered device for approval, or add it at once when auto-approve is on."""
        if self.manages(candidate.url):
            return
        known = await self.persistence.candidates.offer(candidate)
        if known is not None:  # auto-approved
            self._supervise(self.persistence.devices.connect_url(known))

    async def approve_candidate(self, url: str, source: str) -> ManagedDevice:
        try:
            known = await self.persistence.candidates.approve(url, source=source)
        except NotFoundError:
            raise UnknownCandidateError(f"no discovery candidate {url!r}") from None
        log.info("candidate %s approved (%s)", redact(url), source)
        return self._supervise(self.persistence.devices.connect_url(known))

    async def restart_discovery(self) -> None:
        # a request must not open the mDNS and SLP sockets the configuration keeps closed
        if not self.config.discovery.enabled:
            raise DiscoveryOffError("discovery is off ([discovery] enabled = false)")
        await self.discovery.restart()

    def info(self) -> dict[str, Any]:
        """Version, plugins and a configuration summary with no secrets in it."""
        mqtt_url = ",".join(_without_login(url) for url in self.config.mqtt.url.split(","))
        return {
            "hub_id": self.config.hub_id,
            "version": __version__,
            "started_at": self.started_at,
            "plugins": self.plugins.listing(),
            "config": {
                "mqtt": mqtt_url,
                "base_topic": self.config.mqtt.base_topic,
                "http": f"{self.config.http.host}:{self.config.http.port}",
                "meter_rate_ms": self.metering.rate_ms,
                "meter_rate": self.metering.describe(),
                "offline_after_s": self.config.offline_after_s,
                "demo": self.config.demo,
                "discovery": self.config.discovery.enabled,
                "devices": len(self.devices.by_url),
            },
        }


def _without_login(url: str) -> str:
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"  # a password may hold an '@' of its own


def _said(exc: Exception) -> str:
    """A plugin's exception as a log line shows it: its message without control characters, cut; or its type."""
    return device_text(str(exc), 300) or type(exc).__name__


def meter_rate_limits(capabilities: Capabilities | None) -> NumberLimits | None:
    """The whole-device METER_RATE values a family declares it takes, if it says."""
    limits = capabilities.commands.get(CommandKind.METER_RATE) if capabilities is not None else None
    return limits.number if limits is not None else None


def _hear_first(signum: int, heard: Callable[[int, FrameType | None], None]) -> None:
    """Call ``heard`` from Python's handler of ``signum``, then the event loop's: the loop hears the signal
    through its wakeup descriptor only when it next turns, this handler as soon as the loop's thread runs
    Python again (a plugin's ``time.sleep`` is interrupted for it)."""
    loops_own = signal.getsignal(signum)

    def handler(number: int, frame: FrameType | None) -> None:
        heard(number, frame)
        if callable(loops_own):
            loops_own(number, frame)

    signal.signal(signum, handler)
