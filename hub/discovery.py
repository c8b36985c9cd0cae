"""Discovery: one shared zeroconf browser plus the plugins' own loops, turned into candidates.

Anything seen on the network becomes a :class:`DiscoveredService`; each driver spec's ``identify``
decides whether it is one of its devices (probing it if needed). Recognised endpoints become
candidates, which the user approves (or the hub auto-approves) before the hub connects to them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hub.backoff import Backoff
from hub.clock import SYSTEM_CLOCK, Clock
from hub.drivers import DriverSettings
from hub.hookspecs import Candidate, DiscoveredService, DiscoveryLoop
from hub.plugins import PluginHost
from hub.text import preview

if TYPE_CHECKING:
    from zeroconf import ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

log = logging.getLogger("hub.discovery")


class Discovery:
    """Runs discovery until stopped; ``candidates`` holds what plugins recognised, by URL."""

    def __init__(
        self,
        plugins: PluginHost,
        settings: DriverSettings,
        interfaces: list[str] | None = None,
        on_candidate: Callable[[Candidate], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._plugins = plugins
        self._clock = clock  # a failed discovery loop's back-off runs on it
        self._settings = settings
        self._interfaces = interfaces
        self._on_candidate = on_candidate
        self.candidates: dict[str, Candidate] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._zeroconf: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._seen: set[tuple[str, int, str]] = set()

    async def start(self) -> None:
        service_types = self._plugins.zeroconf_types()
        if service_types:
            # imported here: zeroconf costs 3.5 MB of memory in a hub that runs with discovery off
            from zeroconf import InterfaceChoice, IPVersion
            from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

            self._zeroconf = AsyncZeroconf(
                interfaces=self._interfaces or InterfaceChoice.All,
                ip_version=IPVersion.V4Only,
            )
            self._browser = AsyncServiceBrowser(
                self._zeroconf.zeroconf, service_types, handlers=[self._on_zeroconf_change]
            )
        for plugin_name, loop in self._plugins.discovery_loops():
            self._spawn(self._run_loop(plugin_name, loop))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        if self._zeroconf is not None:
            await self._zeroconf.async_close()
            self._zeroconf = None

    async def restart(self) -> None:
        await self.stop()
        self._seen.clear()
        await self.start()

    def _spawn(self, coro: asyncio.Future[None] | asyncio.Task[None] | object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_loop(self, plugin_name: str, loop: DiscoveryLoop) -> None:
        backoff = Backoff(base=1.0, cap=60.0)
        while True:
            try:
                await self._plugins.timer.timed(plugin_name, "discovery loop", loop(self.report))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("discovery loop of plugin %s failed: %s", plugin_name, exc)
            await self._clock.sleep(backoff.next_delay())

    def _on_zeroconf_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        from zeroconf import ServiceStateChange as Change  # loaded already: zeroconf is calling

        if state_change is not Change.Removed:
            self._spawn(self._resolve(zeroconf, service_type, name))

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zeroconf, 3000):
            return
        addresses = info.parsed_addresses()
        if not addresses or info.port is None:
            return
        properties = {
            key.decode(errors="replace").lower(): (value or b"").decode(errors="replace")
            for key, value in info.properties.items()
        }
        self.report(DiscoveredService(addresses[0], info.port, service_type, name, properties))

    def report(self, service: DiscoveredService) -> None:
        """Called for every sighting; each endpoint is probed once per discovery run, so a device that
        announces itself every few seconds is not probed every few seconds."""
        key = (service.host, service.port, service.service_type)
        if key in self._seen:
            return
        self._seen.add(key)
        self._spawn(self._identify(service))

    async def _identify(self, service: DiscoveredService) -> None:
        for plugin_name, what, identify in self._plugins.identifiers():
            try:
                candidate = await self._plugins.identify(plugin_name, what, identify, service, self._settings)
            except Exception as exc:
                # info, not debug: a plugin's identify that fails on every service is a bug its author must see
                log.info("plugin %s could not identify %s: %s", plugin_name, service, preview(str(exc)))
                continue
            if isinstance(candidate, Candidate):
                if candidate.url not in self.candidates:
                    log.info("discovered %s (%s)", candidate.url, candidate.model or candidate.vendor)
                self.candidates[candidate.url] = candidate
                if self._on_candidate is not None:
                    self._on_candidate(candidate)
                return
