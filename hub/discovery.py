"""Discovery: one shared zeroconf browser plus the plugins' own loops, turned into candidates.

Anything seen on the network becomes a :class:`DiscoveredService`; each driver spec's ``identify``
decides whether it is one of its devices (probing it if needed). Recognised endpoints become
candidates, which the user approves (or the hub auto-approves) before the hub connects to them.

Announcements are unauthenticated: anyone on the LAN can name any address. The hub only probes with the
plugins' fixed, read-only requests, never an address that cannot be a receiver (unspecified, multicast,
broadcast), at most :data:`PROBE_CONCURRENCY` at a time with at most :data:`PROBE_BACKLOG` waiting (the
excess is dropped and counted), and adds nothing without approval unless ``discovery.auto_approve``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

from hub.backoff import Backoff
from hub.clock import SYSTEM_CLOCK, Clock
from hub.drivers import DriverSettings, unusable_address
from hub.hookspecs import Candidate, DiscoveredService, DiscoveryLoop, NoAnswer
from hub.plugins import PluginHost
from hub.records import CANDIDATE_TTL_S
from hub.text import preview

if TYPE_CHECKING:
    from zeroconf import ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

log = logging.getLogger("hub.discovery")

# probes running at once: each holds a socket for up to io_timeout_s (a flood of announcements naming
# addresses that never answer would otherwise take every file descriptor the hub has)
PROBE_CONCURRENCY: Final = 32
# services waiting for a probe or an mDNS resolve; more are dropped (counted, one warning per burst) and
# considered again when announced again
PROBE_BACKLOG: Final = 1024
# a probe that got no answer is asked again when the service is announced again, no sooner than this
# back-off (per service, doubling, with jitter)
RETRY_BASE_S: Final = 5.0
RETRY_CAP_S: Final = 300.0
# services remembered per run (identified, not ours, or backing off); past this the oldest are forgotten
REMEMBERED: Final = 10_000
# how often mDNS services due for a retry are resolved again and live mDNS candidates looked for
SWEEP_S: Final = 5.0
# how often a candidate still announcing itself has its last_seen refreshed
SEEN_REFRESH_S: Final = 30.0
_SHOWN_NAME: Final = 60  # characters of a service's name in a log line

_K = TypeVar("_K")
_V = TypeVar("_V")
_Key = tuple[str, int, str]
_Name = tuple[str, str]


def describe(service: DiscoveredService) -> str:
    """A service as a log line shows it: host, port, type and a shortened name, never its TXT record."""
    host, service_type, name = (_shown(text) for text in (service.host, service.service_type, service.name))
    return f"{host}:{service.port} {service_type} {name}"


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_NAME and text.isprintable() else preview(text, _SHOWN_NAME)


@dataclass
class _Retry:
    backoff: Backoff
    not_before: float


class Discovery:
    """Runs discovery until stopped; ``candidates`` holds what plugins recognised, by URL."""

    def __init__(
        self,
        plugins: PluginHost,
        settings: DriverSettings,
        interfaces: list[str] | None = None,
        on_candidate: Callable[[Candidate], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_gone: Callable[[str], None] | None = None,
    ) -> None:
        self._plugins = plugins
        self._clock = clock  # a failed discovery loop's back-off, the probes' retries and the sweep run on it
        self._settings = settings
        self._interfaces = interfaces
        self._on_candidate = on_candidate
        self._on_gone = on_gone  # a candidate's URL when its device said goodbye (or went unseen too long)
        self.candidates: dict[str, Candidate] = {}
        self.dropped = 0  # services not probed because the backlog was full
        self._dropping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._zeroconf: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._probes = asyncio.Semaphore(PROBE_CONCURRENCY)
        self._settled: dict[_Key, str | None] = {}  # -> the candidate's URL, or None: not one of ours
        self._retries: dict[_Key, _Retry] = {}
        self._pending: set[_Key] = set()  # waiting for a probe or being probed
        # (plugin, identify, exception type) of each failure of a plugin's identify already named in a warning
        self._identify_bugs: set[tuple[str, str, type[BaseException]]] = set()
        self._resolving: set[_Name] = set()
        self._names: dict[_Name, _Key] = {}  # mDNS (type, instance name) -> where it was last resolved to
        self._refreshed: dict[str, float] = {}  # candidate URL -> when its last_seen was last refreshed
        self._bad_names = 0

    async def start(self) -> None:
        service_types = self._plugins.zeroconf_types()
        if service_types:
            # imported here: zeroconf costs 3.5 MB of memory in a hub that runs with discovery off
            from zeroconf import InterfaceChoice, IPVersion
            from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

            self._zeroconf = AsyncZeroconf(
                interfaces=self._interfaces or InterfaceChoice.All,
                ip_version=IPVersion.V4Only,  # hub.config refuses IPv6 interfaces: mDNS listens on IPv4
            )
            self._browser = AsyncServiceBrowser(
                self._zeroconf.zeroconf, service_types, handlers=[self._on_zeroconf_change]
            )
            self._spawn(self._sweep(self._zeroconf.zeroconf))
        for plugin_name, loop in self._plugins.discovery_loops():
            self._spawn(self._run_loop(plugin_name, loop))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._pending.clear()
        self._resolving.clear()
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        if self._zeroconf is not None:
            await self._zeroconf.async_close()
            self._zeroconf = None

    async def restart(self) -> None:
        await self.stop()
        for table in (self._settled, self._retries, self._names, self._refreshed):
            table.clear()
        await self.start()

    def _spawn(self, coro: asyncio.Future[None] | asyncio.Task[None] | object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_loop(self, plugin_name: str, loop: DiscoveryLoop) -> None:
        backoff = Backoff(base=1.0, cap=60.0)
        while True:
            try:
                await self._plugins.timer.timed(plugin_name, "discovery loop", self._started(loop))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("discovery loop of plugin %s failed: %s", plugin_name, exc)
            await self._clock.sleep(backoff.next_delay())

    def _started(self, loop: DiscoveryLoop) -> Awaitable[None]:
        """``loop(report)``, and ``interfaces=`` the configured addresses (None: all) if the loop takes them:
        a loop written before that keyword existed is called as before."""
        if "interfaces" in inspect.signature(loop).parameters:
            return loop(self.report, interfaces=self._interfaces)  # type: ignore[call-arg]
        return loop(self.report)

    def _on_zeroconf_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        from zeroconf import ServiceStateChange as Change  # loaded already: zeroconf is calling

        if state_change is Change.Removed:
            self._gone((service_type, name))
        else:
            self._start_resolve(zeroconf, (service_type, name))

    def _start_resolve(self, zeroconf: Zeroconf, name: _Name) -> None:
        if name in self._resolving:
            return
        if not self._room(name[1]):
            return
        self._resolving.add(name)
        self._spawn(self._resolve(zeroconf, name))

    async def _resolve(self, zeroconf: Zeroconf, name: _Name) -> None:
        from zeroconf import BadTypeInNameException
        from zeroconf.asyncio import AsyncServiceInfo

        service_type, instance = name
        try:
            info = AsyncServiceInfo(service_type, instance)
            if not await info.async_request(zeroconf, 3000):
                return
        except BadTypeInNameException:
            # a name zeroconf refuses (a control character in it): skipped, said once per run
            self._bad_names += 1
            if self._bad_names == 1:
                log.warning("skipping mDNS services with unusable names, e.g. %s", preview(instance, _SHOWN_NAME))
            return
        finally:
            self._resolving.discard(name)
        addresses = info.parsed_addresses()
        if not addresses or info.port is None:
            return
        properties = {
            key.decode(errors="replace").lower(): (value or b"").decode(errors="replace")
            for key, value in info.properties.items()
        }
        service = DiscoveredService(addresses[0], info.port, service_type, instance, properties)
        key = (service.host, service.port, service.service_type)
        _remember(self._names, name, key)
        self.report(service)

    def _gone(self, name: _Name) -> None:
        """An mDNS goodbye (or its records expired): forget the service, and its candidate if it was one."""
        key = self._names.pop(name, None)
        if key is None:
            return
        self._retries.pop(key, None)
        url = self._settled.pop(key, None)
        if url is not None:
            self._forget_candidate(url)

    def _forget_candidate(self, url: str) -> None:
        self._refreshed.pop(url, None)
        if self.candidates.pop(url, None) is not None:
            log.info("discovery candidate %s is gone", url)
        if self._on_gone is not None:
            self._on_gone(url)

    async def _sweep(self, zeroconf: Zeroconf) -> None:
        """Resolve again the mDNS services due for another probe (the browser says nothing while a service
        stays announced), and the live candidates' services, so their last_seen follows them; drop the
        candidates not seen for CANDIDATE_TTL_S."""
        last_refresh = self._clock.monotonic()
        while True:
            await self._clock.sleep(SWEEP_S)
            now = self._clock.monotonic()
            refresh = now - last_refresh >= SEEN_REFRESH_S
            if refresh:
                last_refresh = now
            for name, key in list(self._names.items()):
                retry = self._retries.get(key)
                due = retry is not None and now >= retry.not_before
                if due or (refresh and self._settled.get(key) is not None):
                    self._start_resolve(zeroconf, name)
            for url, candidate in list(self.candidates.items()):
                if candidate.last_seen is not None and self._clock.now() - candidate.last_seen > CANDIDATE_TTL_S:
                    self._forget_candidate(url)

    def _room(self, what: str) -> bool:
        """Whether another probe (or resolve) may wait; if not it is dropped, with one warning per burst."""
        if len(self._pending) + len(self._resolving) < PROBE_BACKLOG:
            if not self._pending and not self._resolving:
                self._dropping = False  # the burst is over
            return True
        self.dropped += 1
        if not self._dropping:
            self._dropping = True
            log.warning(
                "discovery: more than %d announced services waiting to be probed: dropping the excess "
                "(e.g. %s; it is considered again when announced again)",
                PROBE_BACKLOG,
                preview(what, _SHOWN_NAME),
            )
        return False

    def report(self, service: DiscoveredService) -> None:
        """Called for every sighting. An endpoint identified (or found not to be one of ours) is not probed
        again this run; one that did not answer is, when announced again after its back-off."""
        key = (service.host, service.port, service.service_type)
        if key in self._pending:
            return
        if key in self._settled:
            url = self._settled[key]
            if url is not None:
                self._seen_again(url)
            return
        retry = self._retries.get(key)
        if retry is not None and self._clock.monotonic() < retry.not_before:
            return
        if unusable_address(service.host) is not None:
            log.debug("not probing %s: no device has that address", describe(service))
            _remember(self._settled, key, None)
            return
        if not self._room(describe(service)):
            return
        self._pending.add(key)
        self._spawn(self._identify(key, service))

    def _seen_again(self, url: str) -> None:
        candidate = self.candidates.get(url)
        if candidate is None:
            return
        now = self._clock.monotonic()
        if now - self._refreshed.get(url, now - SEEN_REFRESH_S) < SEEN_REFRESH_S:
            return
        self._refreshed[url] = now
        self._offer(candidate)

    def _offer(self, candidate: Candidate) -> None:
        candidate = dataclasses.replace(candidate, last_seen=self._clock.now())
        if candidate.unique_id is not None:  # the same device at another address or port: the new one holds
            for url, other in list(self.candidates.items()):
                if url != candidate.url and (other.vendor, other.unique_id) == (candidate.vendor, candidate.unique_id):
                    del self.candidates[url]
        self.candidates[candidate.url] = candidate
        self._refreshed[candidate.url] = self._clock.monotonic()
        if self._on_candidate is not None:
            self._on_candidate(candidate)

    async def _identify(self, key: _Key, service: DiscoveredService) -> None:
        try:
            async with self._probes:
                verdict = await self._ask_plugins(service)
        finally:
            self._pending.discard(key)
        if verdict is NoAnswer:
            retry = self._retries.pop(key, None) or _Retry(Backoff(RETRY_BASE_S, RETRY_CAP_S, jitter=0.2), 0.0)
            retry.not_before = self._clock.monotonic() + retry.backoff.next_delay()
            _remember(self._retries, key, retry)
            return
        self._retries.pop(key, None)
        if isinstance(verdict, Candidate):
            _remember(self._settled, key, verdict.url)
            if verdict.url not in self.candidates:
                log.info("discovered %s (%s)", verdict.url, verdict.model or verdict.vendor)
            self._offer(verdict)
        else:
            _remember(self._settled, key, None)

    async def _ask_plugins(self, service: DiscoveredService) -> Candidate | type[NoAnswer] | None:
        """The first candidate a plugin makes of ``service``; else NoAnswer if any plugin could not tell (no
        answer, or it failed), else None: no plugin's."""
        unsure = False
        for plugin_name, what, identify in self._plugins.identifiers():
            try:
                candidate = await self._plugins.identify(plugin_name, what, identify, service, self._settings)
            except (NoAnswer, TimeoutError, OSError) as exc:
                unsure = True
                log.debug("no answer from %s (plugin %s): %s", describe(service), plugin_name, preview(str(exc)))
                continue
            except Exception as exc:
                unsure = True
                self._identify_failed(plugin_name, what, service, exc)
                continue
            if isinstance(candidate, Candidate):
                return candidate
        return NoAnswer if unsure else None

    def _identify_failed(self, plugin_name: str, what: str, service: DiscoveredService, exc: Exception) -> None:
        """A plugin's identify that raised what no silent device causes: a bug its author must see, named in a
        warning with its traceback once per plugin, identify and exception type; each later one is an info
        line (a busy network offers a service many times a second)."""
        kind = (plugin_name, what, type(exc))
        if kind in self._identify_bugs:
            log.info("plugin %s could not identify %s: %s", plugin_name, describe(service), preview(str(exc)))
            return
        self._identify_bugs.add(kind)
        log.warning(
            "plugin %s failed in %s on %s: %s: %s (a bug of the plugin: the service is left to the others; "
            "further such failures are logged as info)",
            plugin_name,
            what,
            describe(service),
            type(exc).__name__,
            preview(str(exc)),
            exc_info=exc,
        )


def _remember(table: dict[_K, _V], key: _K, value: _V) -> None:
    """Put ``key`` last in ``table``, forgetting the oldest entries past REMEMBERED."""
    table.pop(key, None)
    table[key] = value
    while len(table) > REMEMBERED:
        del table[next(iter(table))]
