"""The one plugin manager. Entry points in the group ``wmhub`` are loaded one by one.

A plugin that fails to import or to register is recorded with its error (``wmhub plugins`` shows it)
and the others load regardless. ``WMHUB_LOAD_PLUGINS=a,b`` loads only the named distributions (or
entry-point names); an empty value loads none. A plugin name, URL scheme or vendor two plugins claim goes
to the one whose distribution is named for it (``wmhub-shure`` for ``shure``), else to neither: never to
whichever loaded first (docs/plugins.md, "Names, schemes and vendors"). Every call into a plugin goes
through :meth:`call`, :meth:`call_async` or :meth:`collect`, which catch that plugin's exceptions and bound its
time, and :class:`HookTimer` measures how long each call after start-up holds the event loop: a plugin that
blocks it (a ``time.sleep``, a blocking socket) stalls every device, the web server and MQTT, and is named in a
warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import inspect
import logging
import operator
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import pluggy

from hub import __version__, hookspecs
from hub.capcheck import checked_capabilities
from hub.drivers import DriverSettings, Endpoint, EndpointError
from hub.hookspecs import Candidate, DiscoveredService, DiscoveryLoop, DriverSpec, Identify
from hub.model import Capabilities
from hub.redact import redact
from hub.service import PluginFaultError
from hub.text import device_text, has_controls, preview

ENTRY_POINT_GROUP = "wmhub"
NO_PLUGINS: Final = "no plugins installed: install wmhub-shure / wmhub-sennheiser (the core drives no device itself)"
log = logging.getLogger("hub.plugins")

# Hooks of an earlier plugin API that now live on the DriverSpec: still called, and named once in the log.
MOVED_TO_DRIVER_SPEC = {"register_zeroconf_types": "zeroconf_types", "identify_service": "identify"}
# Hooks of an earlier plugin API the hub no longer calls: a plugin that still has them loads as before.
RETIRED_HOOKS = frozenset({"apply_command"})
T = TypeVar("T")

# A plugin whose import takes longer than this holds up the hub's start: it is named (an import must not block).
SLOW_LOAD_S = 2.0
# A hook or driver callback holding the event loop longer than this delays every other device's data.
SLOW_CALL_S = 0.1
# The same plugin's same slow hook is named at most this often (it may be slow on every call).
SLOW_WARNING_EVERY_S = 60.0
# How long a cancelled call of a plugin may take to end before the hub leaves it behind (see call_bounded).
CANCEL_GRACE_S = 1.0


class HookTimer:
    """Measures how long each call into a plugin holds the event loop, and names the slow ones.

    A synchronous call is timed as a whole. An awaitable is timed per step (from each resumption to its
    next suspension), so a coroutine waiting for its device costs nothing here and one that blocks inside
    is caught the same as a blocking function.
    """

    def __init__(self) -> None:
        self.slow_calls: dict[tuple[str, str], int] = {}
        self._warned_at: dict[tuple[str, str], float] = {}

    def held(self, plugin: str, hook: str, seconds: float) -> None:
        if seconds <= SLOW_CALL_S:
            return
        key = (plugin, hook)
        self.slow_calls[key] = self.slow_calls.get(key, 0) + 1
        now = time.monotonic()
        if now - self._warned_at.get(key, -SLOW_WARNING_EVERY_S) >= SLOW_WARNING_EVERY_S:
            self._warned_at[key] = now
            log.warning(
                "plugin %s held the event loop for %.0f ms in %s (every device, MQTT and the web server waited; "
                "%d such call(s) so far): a hook must await I/O, never block",
                plugin,
                seconds * 1000,
                hook,
                self.slow_calls[key],
            )

    def call(self, plugin: str, hook: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self.held(plugin, hook, time.perf_counter() - started)

    def timed(self, plugin: str, hook: str, awaitable: Awaitable[T]) -> Awaitable[T]:
        return _TimedSteps(self, plugin, hook, awaitable)


class _TimedSteps(Awaitable[T]):
    def __init__(self, timer: HookTimer, plugin: str, hook: str, awaitable: Awaitable[T]) -> None:
        self._timer = timer
        self._plugin = plugin
        self._hook = hook
        self._awaitable = awaitable

    def __await__(self) -> Generator[Any, Any, T]:
        steps = self._awaitable.__await__()
        value: Any = None
        error: BaseException | None = None
        while True:
            started = time.perf_counter()
            try:
                yielded = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as done:
                result: T = done.value
                return result
            finally:
                self._timer.held(self._plugin, self._hook, time.perf_counter() - started)
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # cancellation included: it goes on into the plugin's awaitable
                value, error = None, exc


@dataclass
class PluginRecord:
    """What ``wmhub plugins`` reports for one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
            "error": self.error,
        }


class PluginError(Exception):
    """A plugin raised, returned garbage or overran its time; the message names the plugin."""


class UrlCheckFailedError(EndpointError, PluginFaultError):
    """A plugin's ``DriverSpec.check_url`` raised what is no EndpointError: a bug of the plugin, not of the URL.
    The message names the plugin; the URL is refused (no device is added for it) and the hub goes on."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(message)
        self.plugin = plugin


def _wanted(only: str | None) -> set[str] | None:
    """The plugin names ``only`` (else ``WMHUB_LOAD_PLUGINS``) gives, as pip compares them; None: every plugin."""
    if only is None:
        only = os.environ.get("WMHUB_LOAD_PLUGINS")
    return None if only is None else {_normalized(name) for name in only.split(",") if name.strip()}


def _not_installed(wanted: set[str] | None, installed: list[EntryPoint]) -> list[str]:
    # a name that matches no plugin is a typo or a plugin not installed: loading nothing for it says nothing
    known = {_normalized(name) for ep in installed for name in (ep.name, _dist(ep)) if name}
    return sorted((wanted or set()) - known)


def _not_installed_said(names: list[str], installed: list[EntryPoint]) -> str:
    labels = ", ".join(sorted(Claimant(ep.name, _dist(ep)).label for ep in installed)) or "none"
    return f"no installed plugin is named {', '.join(names)} (the installed ones: {labels})"


def plugins_not_installed(only: str | None = None) -> str | None:
    """What ``only`` (else ``WMHUB_LOAD_PLUGINS``) names that no installed plugin is, said with the installed ones
    (``no installed plugin is named shrue (the installed ones: …)``); None when it names none such. From the
    installed distributions' metadata: nothing is imported, nothing logged."""
    installed = list(entry_points(group=ENTRY_POINT_GROUP))
    names = _not_installed(_wanted(only), installed)
    return _not_installed_said(names, installed) if names else None


def installed_plugin_names() -> set[str]:
    """The entry-point names of the installed plugins, loaded or not: a ``plugin_log_levels`` key naming one
    not loaded is no typo, and sets nothing."""
    return {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


class PluginHost:
    """Owns the pluggy manager and the per-plugin records; every hook call goes through here."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("wmhub")
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}  # the plugins loaded (or that failed to), by name
        self.unloaded: list[PluginRecord] = []  # entry points not loaded: their name is another plugin's
        self.not_installed: list[str] = []  # names WMHUB_LOAD_PLUGINS (or ``only``) gave that no plugin has
        self.timer = HookTimer()
        self._drivers: dict[str, tuple[DriverSpec, str]] | None = None
        # plugin calls given up on at their deadline and cancelled, but not yet ended (see call_bounded)
        self.strays: set[asyncio.Future[Any]] = set()
        self._refusals: set[tuple[str, str]] = set()  # (plugin, what was wrong), each logged once

    def load_entry_points(self, only: str | None = None) -> None:
        wanted = _wanted(only)
        installed = list(entry_points(group=ENTRY_POINT_GROUP))
        chosen = [ep for ep in installed if wanted is None or wanted & {_normalized(ep.name), _normalized(_dist(ep))}]
        self.not_installed = _not_installed(wanted, installed)
        if self.not_installed:
            log.error("%s", _not_installed_said(self.not_installed, installed))
        names: dict[str, list[Claimant]] = {}
        for ep in chosen:
            names.setdefault(ep.name, []).append(Claimant(ep.name, _dist(ep)))
        refused = unclaimed("entry-point name", names)
        for ep in chosen:
            why = refused.get((Claimant(ep.name, _dist(ep)), ep.name))
            if why is None:
                self._load_one(ep)
            else:  # listed as itself: the plugin of that name that did load keeps its own row
                self.unloaded.append(PluginRecord(ep.name, _dist(ep), _version(ep), error=f"not loaded: {why}"))
                log.error("plugin %s of %s not loaded: %s", ep.name, _dist(ep), why)
        if wanted is None and not installed:  # `pip install wmhub` alone: a hub with no device it can drive
            log.warning(NO_PLUGINS)

    def _load_one(self, ep: EntryPoint) -> None:
        record = self.records[ep.name] = PluginRecord(ep.name, _dist(ep), _version(ep))
        try:
            module = _imported(ep)
            already = self.pm.get_name(module)
            if already is not None:  # pluggy's own error lists every plugin module the hub has
                raise ValueError(
                    f"its module {ep.value} is loaded already, as plugin {already}: a module is one plugin only"
                )
            self.pm.register(module, name=ep.name)
        except Exception as exc:
            record.error = f"{_described(exc)}{_core_wanted(ep)}"
            log.error("plugin %s failed to load: %s", ep.name, record.error)
            return
        record.hooks = self._hook_names(ep.name)
        _note_moved_hooks(ep.name, record.hooks)
        self._check_hooks(ep.name)

    def register(self, plugin: object, name: str, version: str | None = None) -> None:
        """Register an in-process plugin object (tests, built-ins)."""
        self.pm.register(plugin, name=name)
        self.records[name] = PluginRecord(name=name, version=version, hooks=self._hook_names(name))
        _note_moved_hooks(name, self.records[name].hooks)
        self._check_hooks(name)
        self._drivers = None

    def _check_hooks(self, name: str) -> None:
        """Name every implementation that matches no hook of the wmhub project (a misspelt
        ``register_driver`` registers nothing, silently): what pluggy's ``check_pending`` raises for, but per
        plugin, so the others load. A hook that must be a plain function and is ``async def`` is named too, and
        a function named as a hook but not marked ``@hookimpl``."""
        plugin = self.pm.get_plugin(name)
        problems: list[str] = []
        for caller in self.pm.get_hookcallers(plugin) or []:
            impls = [impl for impl in caller.get_hookimpls() if impl.plugin_name == name]
            if not caller.has_spec():
                if caller.name in RETIRED_HOOKS or all(impl.optionalhook for impl in impls):
                    continue
                close = difflib.get_close_matches(caller.name, _HOOK_NAMES, n=1)
                hint = f" (did you mean {close[0]}?)" if close else f" (the hooks are {', '.join(_HOOK_NAMES)})"
                problems.append(f"unknown hook {caller.name!r}: wmhub has no such hook, it is never called{hint}")
            elif caller.name in _PLAIN_HOOKS and any(inspect.iscoroutinefunction(impl.function) for impl in impls):
                problems.append(f"{caller.name} is async def: it must be a plain function, its answer is not awaited")
        # pluggy registers only what is marked: a hook function left unmarked is as silent as a misspelt one. The
        # hooks an older API had are left out: their names fit the DriverSpec callables that replaced them
        # (wmhub-shure's identify_service is its spec's identify, deliberately no hook)
        for hook in sorted(set(_HOOK_NAMES) - set(MOVED_TO_DRIVER_SPEC)):
            if callable(getattr(plugin, hook, None)) and self.pm.parse_hookimpl_opts(plugin, hook) is None:
                problems.append(f"{hook} is not marked @hookimpl (from hub import hookimpl): wmhub never calls it")
        if problems:
            message = "; ".join(problems)
            log.error("plugin %s: %s", name, message)
            record = self.records.get(name)
            if record is not None and record.error is None:
                record.error = message

    def _hook_names(self, name: str) -> list[str]:
        plugin = self.pm.get_plugin(name)
        callers = self.pm.get_hookcallers(plugin) or []
        return sorted(caller.name for caller in callers)

    def _fail(self, plugin_name: str, hook: str, exc: BaseException) -> None:
        message = _described(exc)
        log.error("plugin %s failed in %s: %s", plugin_name, hook, message)
        record = self.records.get(plugin_name)
        if record is not None and record.error is None:
            record.error = f"{hook}: {message}"

    def _impls(self, hook: str) -> Iterator[tuple[str, Callable[..., Any]]]:
        """(plugin name, a callable taking the hook's keyword arguments) in registration order."""
        caller = getattr(self.pm.hook, hook)
        for impl in caller.get_hookimpls():  # registration order (pluggy calls them last-first)
            # pluggy lets an implementation accept a subset of the spec's arguments
            def call(_impl: Any = impl, **kwargs: Any) -> Any:
                return _impl.function(**{name: kwargs[name] for name in _impl.argnames})

            yield impl.plugin_name, call

    def call_one(self, plugin_name: str, hook: str, **kwargs: Any) -> Any:
        """Call one plugin's synchronous hook; None when it lacks the hook or fails (the failure is logged)."""
        for name, function in self._impls(hook):
            if name == plugin_name:
                try:
                    return self.timer.call(plugin_name, hook, function, **kwargs)
                except Exception as exc:
                    self._fail(plugin_name, hook, exc)
        return None

    async def call_async(self, plugin_name: str, hook: str, timeout: float, **kwargs: Any) -> Any:
        """Call one plugin's hook, awaiting an awaitable result within ``timeout``; raise PluginError."""
        for name, function in self._impls(hook):
            if name == plugin_name:
                return await self.call_bounded(plugin_name, hook, timeout, function, **kwargs)
        return None

    async def call_bounded(
        self, plugin_name: str, what: str, timeout: float, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Call a plugin's code (a hook, or a method of its driver such as ``apply``): timed against the plugin
        under ``what``, an awaitable result awaited within ``timeout``; raise PluginError when it overran. A call
        past its deadline is cancelled and not waited for; one whose caller is cancelled (the hub stops) is given
        ``CANCEL_GRACE_S`` to end. Either is then left behind in ``strays`` if it goes on: ``wmhub run`` exits
        without it."""
        result = self.timer.call(plugin_name, what, function, *args, **kwargs)
        if not inspect.isawaitable(result):
            return result
        return await self._awaited(plugin_name, what, result, timeout)

    async def awaited(self, plugin_name: str, what: str, awaitable: Awaitable[T]) -> T:
        """Await a plugin's awaitable (a driver's ``connect``, ``run``, ``close``), timed against the plugin under
        ``what``, for as long as it takes; cancelled, it is cancelled in turn and given ``CANCEL_GRACE_S`` to end
        before it is left behind (see :meth:`call_bounded`)."""
        result: T = await self._awaited(plugin_name, what, awaitable, None)
        return result

    async def _awaited(self, plugin_name: str, what: str, awaitable: Awaitable[Any], timeout: float | None) -> Any:
        # Awaited as a task of its own and left behind at the deadline, or once it outlives its cancellation by
        # CANCEL_GRACE_S: awaiting its cancellation (as asyncio.timeout does) would wait for ever on plugin code
        # that catches CancelledError and goes on, and the hub could not stop.
        task = asyncio.ensure_future(self.timer.timed(plugin_name, what, awaitable))
        try:
            await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            try:
                await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
            finally:
                if not task.done():
                    self._leave_behind(task)
                    self._refuse_once(
                        plugin_name,
                        f"{what} went on after being cancelled (it catches CancelledError): left running, "
                        "and wmhub run exits without it",
                    )
            raise
        if task.done():
            if task.cancelled():  # the plugin raised CancelledError itself: its caller was not cancelled
                raise PluginError(f"plugin {plugin_name} cancelled {what} itself")
            return task.result()
        task.cancel()
        self._leave_behind(task)
        raise PluginError(f"plugin {plugin_name} did not answer {what} within {timeout:g} s")

    def _leave_behind(self, task: asyncio.Future[Any]) -> None:
        self.strays.add(task)
        task.add_done_callback(self.strays.discard)

    def check_url(self, plugin_name: str, spec: DriverSpec, endpoint: Endpoint) -> None:
        """Ask the plugin whether its driver could use ``endpoint`` (``DriverSpec.check_url``): its EndpointError
        goes on as it is, any other exception is its bug, raised as :class:`UrlCheckFailedError` naming it and
        logged against it (with the traceback, once per URL and error)."""
        if spec.check_url is None:
            return
        try:
            self.timer.call(plugin_name, "DriverSpec.check_url", spec.check_url, endpoint)
        except EndpointError:
            raise
        except Exception as exc:
            shown = redact(endpoint.url)
            message = f"plugin {plugin_name} failed in DriverSpec.check_url on {shown}: {redact(_described(exc))}"
            if (plugin_name, message) not in self._refusals:  # the configuration's URLs are checked twice by run
                self._refusals.add((plugin_name, message))
                log.error("%s (a bug of the plugin: this URL is refused)", message, exc_info=exc)
                record = self.records.get(plugin_name)
                if record is not None and record.error is None:
                    record.error = f"DriverSpec.check_url: {redact(_described(exc))}"
            raise UrlCheckFailedError(plugin_name, message) from None

    def plugins_with(self, hook: str) -> list[str]:
        return [name for name, _ in self._impls(hook)]

    def collect(self, hook: str) -> list[tuple[str, Any]]:
        """Call a ``register_*`` hook; return every (plugin, registered object) pair."""
        registered: list[tuple[str, Any]] = []
        for plugin_name, function in self._impls(hook):
            found: list[Any] = []
            try:
                # not timed: registration runs while the hub starts (or discovery restarts), before or apart
                # from device traffic, and importing what a plugin registers may well take a while; its output
                # on stderr, as at import
                with contextlib.redirect_stdout(sys.stderr):
                    returned = function(register=found.append)
                if inspect.isawaitable(returned):
                    _discard(returned)
                    raise TypeError(f"{hook} returned {type(returned).__name__}: it must be a plain function")
            except Exception as exc:
                self._fail(plugin_name, hook, exc)
                continue
            registered.extend((plugin_name, item) for item in found)
        return registered

    def drivers(self) -> dict[str, tuple[DriverSpec, str]]:
        """Driver specs by URL scheme, with the name of the plugin that owns each. A scheme, and a vendor (the
        first part of its devices' ids, MQTT topics and REST paths), belongs to one plugin: one that two claim
        goes to the plugin whose distribution is named for it, else to neither (:func:`unclaimed`)."""
        if self._drivers is None:
            offered: list[tuple[Claimant, DriverSpec]] = []
            for plugin_name, registered in self.collect("register_drivers"):
                try:
                    spec = checked_spec(registered)
                except (TypeError, ValueError) as exc:
                    self._fail(plugin_name, "register_drivers", exc)
                    continue
                record = self.records.get(plugin_name)
                claimant = Claimant(plugin_name, record.distribution if record is not None else None)
                if any(other == claimant and spec.scheme == taken.scheme for other, taken in offered):
                    self._fail(plugin_name, "register_drivers", ValueError(f"scheme {spec.scheme} registered twice"))
                    continue
                offered.append((claimant, spec))
            refused: dict[str, dict[tuple[Claimant, str], str]] = {}
            for what in ("scheme", "vendor"):
                claims: dict[str, list[Claimant]] = {}
                for claimant, spec in offered:
                    claimed = claims.setdefault(getattr(spec, what), [])
                    if claimant not in claimed:
                        claimed.append(claimant)
                refused[what] = unclaimed(what, claims)
            drivers: dict[str, tuple[DriverSpec, str]] = {}
            for claimant, spec in offered:
                why = refused["scheme"].get((claimant, spec.scheme)) or refused["vendor"].get((claimant, spec.vendor))
                if why is None:
                    drivers[spec.scheme] = (spec, claimant.plugin)
                else:
                    self._fail(
                        claimant.plugin,
                        "register_drivers",
                        ValueError(f"DriverSpec for {spec.scheme}:// refused: {why}"),
                    )
            self._drivers = drivers
        return self._drivers

    def zeroconf_types(self) -> list[str]:
        """Every DNS-SD service type the hub's shared browser watches: those on the driver specs, and those
        of plugins that name them through the older ``register_zeroconf_types`` hook."""
        found = {service_type for spec, _ in self.drivers().values() for service_type in spec.zeroconf_types}
        for plugin_name, service_type in self.collect("register_zeroconf_types"):
            if is_service_type(service_type):
                found.add(service_type)
            else:  # one plugin's typo must not stop the shared browser, and so every plugin's discovery
                refused = ValueError(_SERVICE_TYPE_RULE % preview(service_type))
                self._fail(plugin_name, "register_zeroconf_types", refused)
        return sorted(found)

    def loggers_named(self, key: str) -> list[str]:
        """The loggers a ``plugin_log_levels`` key sets. A vendor a loaded plugin registers: its devices'
        ``hub.device.<vendor>`` and the plugin's own package (``wmhub_shure``). A loaded plugin's entry-point
        or distribution name: the same for every vendor it registers. Empty when the key names neither."""
        specs = list(self.drivers().values())
        by_vendor = {owner for spec, owner in specs if spec.vendor == key}
        by_name = set(self.loaded_as(key))
        found: list[str] = []
        for owner in sorted(by_vendor | by_name):
            vendors = [spec.vendor for spec, plugin in specs if plugin == owner] if owner in by_name else [key]
            found += [f"hub.device.{vendor}" for vendor in vendors]
            plugin = self.pm.get_plugin(owner)
            if plugin is not None:  # None: it failed to load, and logs nothing more
                module = plugin.__name__ if inspect.ismodule(plugin) else type(plugin).__module__
                found.append(module.partition(".")[0])
        return list(dict.fromkeys(found))

    def vendors(self) -> list[str]:
        """The vendors the loaded plugins' drivers register."""
        return sorted({spec.vendor for spec, _ in self.drivers().values()})

    def loaded_as(self, name: str) -> list[str]:
        """The loaded plugins ``name`` means, as ``WMHUB_LOAD_PLUGINS`` reads it: an entry-point name, or a
        distribution name (``wmhub-acme``) for every plugin that distribution brought; empty if none."""
        wanted = _normalized(name)
        return [
            plugin
            for plugin, record in self.records.items()
            if wanted in (_normalized(plugin), _normalized(record.distribution))
        ]

    def identifiers(self, plugin: str | None = None) -> list[tuple[str, str, Identify]]:
        """(plugin, what, identify) for every way a plugin recognises its devices among discovered services:
        each driver spec's ``identify``, then the older ``identify_service`` hook; only ``plugin``'s if given."""
        found: list[tuple[str, str, Identify]] = [
            (owner, f"DriverSpec.identify ({spec.scheme})", spec.identify)
            for spec, owner in self.drivers().values()
            if spec.identify is not None
        ]
        for owner, function in self._impls("identify_service"):

            def identify(service: DiscoveredService, settings: DriverSettings, _hook: Any = function) -> Any:
                return _hook(service=service, settings=settings)

            found.append((owner, "identify_service", identify))
        return [entry for entry in found if plugin is None or entry[0] == plugin]

    async def identify(
        self, plugin: str, what: str, identify: Identify, service: DiscoveredService, settings: DriverSettings
    ) -> Candidate | None:
        """One plugin's verdict on ``service``, bounded by the I/O timeout; raise PluginError on overrun."""
        result = await self.call_bounded(plugin, what, settings.io_timeout_s, identify, service, settings)
        if not isinstance(result, Candidate):
            if result is not None:  # a plugin's mistake, said once: taken as "not mine"
                self._refuse_once(
                    plugin,
                    f"{what} returned {type(result).__name__}, not a Candidate or None: read as not its device",
                    error=False,
                )
            return None
        return self._own_candidate(plugin, _shown_candidate(plugin, result))

    def _own_candidate(self, plugin: str, candidate: Candidate | None) -> Candidate | None:
        """``candidate`` unless its URL's scheme or its vendor is another plugin's: it would be offered for
        approval as that plugin's device, found by this one."""
        if candidate is None:
            return None
        scheme = urlsplit(candidate.url).scheme
        specs = self.drivers()
        scheme_owner = specs[scheme][1] if scheme in specs else None
        vendor_owner = next((owner for spec, owner in specs.values() if spec.vendor == candidate.vendor), None)
        for what, value, owner in (("scheme", scheme, scheme_owner), ("vendor", candidate.vendor, vendor_owner)):
            if owner not in (None, plugin):
                log.warning(
                    "plugin %s offered a candidate whose %s %s is plugin %s's, not its own: dropped (%s)",
                    plugin,
                    what,
                    value,
                    owner,
                    preview(candidate.url),
                )
                return None
        return candidate

    def discovery_loops(self) -> list[tuple[str, DiscoveryLoop]]:
        """(plugin, loop) for every discovery loop a plugin registered; anything not callable is its error."""
        loops: list[tuple[str, DiscoveryLoop]] = []
        for plugin_name, loop in self.collect("register_discovery_loops"):
            if callable(loop):
                loops.append((plugin_name, loop))
            else:
                self._fail(plugin_name, "register_discovery_loops", TypeError(f"not a function: {preview(loop)}"))
        return loops

    def device_capabilities(self, plugin_name: str, family: str | None, model: str | None) -> Capabilities | None:
        """What ``plugin_name`` declares for a device of ``family`` and ``model``, as the hub can use it: None
        when it declares nothing usable; a command whose limits are unusable left out (hub.capcheck). Each
        problem is logged once per plugin and kept on its record (``wmhub plugins``)."""
        declared = self.call_one(plugin_name, "device_capabilities", family=family, model=model)
        if inspect.isawaitable(declared):
            _discard(declared)
            self._refuse_once(plugin_name, "device_capabilities returned an awaitable: it must be a plain function")
            return None
        if declared is None:
            return None
        return self.usable_capabilities(
            plugin_name, declared, "device_capabilities", f"device_capabilities({family!r})"
        )

    def usable_capabilities(self, plugin_name: str, declared: object, source: str, where: str) -> Capabilities | None:
        """``declared`` as the hub can use it: None unless it is Capabilities; a command whose limits are unusable
        left out (hub.capcheck). ``source`` names what gave it, ``where`` which declaration, in the problems
        logged once per plugin and kept on its record."""
        if not isinstance(declared, Capabilities):
            self._refuse_once(plugin_name, f"{source} returned {preview(declared)}, not Capabilities")
            return None
        kept, refused, warned = checked_capabilities(declared)
        for problem in refused:
            self._refuse_once(plugin_name, f"{where}: {problem}")
        for problem in warned:
            self._refuse_once(plugin_name, f"{where}: {problem}", error=False)
        return kept

    def _refuse_once(self, plugin_name: str, message: str, error: bool = True) -> None:
        if (plugin_name, message) in self._refusals:
            return
        self._refusals.add((plugin_name, message))
        log.log(logging.ERROR if error else logging.WARNING, "plugin %s: %s", plugin_name, message)
        record = self.records.get(plugin_name)
        if error and record is not None and record.error is None:
            record.error = message

    def check_registrations(self) -> None:
        """Call every registration hook once, so errors in them are on the records (``wmhub plugins``), and
        ask each plugin for the capabilities of every family its driver specs name."""
        for spec, owner in self.drivers().values():
            for family in spec.families:
                self.device_capabilities(owner, family, None)
        self.discovery_loops()
        self.zeroconf_types()
        self.collect("register_simulators")

    def rows(self) -> list[PluginRecord]:
        """What ``wmhub plugins`` lists: every plugin, and every entry point not loaded (as itself)."""
        return [*self.records.values(), *self.unloaded]

    def listing(self) -> list[dict[str, Any]]:
        return [record.as_dict() for record in self.rows()]


def _described(exc: BaseException) -> str:
    """A plugin's exception in one line, however many its message has: ``wmhub plugins`` shows one a plugin."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _dist(ep: EntryPoint) -> str | None:
    return ep.dist.name if ep.dist is not None else None


def _version(ep: EntryPoint) -> str | None:
    return ep.dist.version if ep.dist is not None else None


def _normalized(name: str | None) -> str:
    """A distribution or entry-point name as pip compares them: ``wmhub_Shure`` is ``wmhub-shure``."""
    return re.sub(r"[-_.]+", "-", (name or "").strip()).lower()


def _imported(ep: EntryPoint) -> Any:
    """The plugin's module, imported with its output on stderr (a ``print`` there would corrupt ``wmhub plugins
    --json``), and named while it holds up the hub: an import that blocks (a network call, a large load) keeps
    every plugin loaded after it, and the hub, from starting, and Python cannot break it off."""
    started = time.monotonic()
    waiting = threading.Timer(
        SLOW_LOAD_S,
        log.warning,
        (
            "plugin %s (%s) is still importing after %g s: the hub waits for it to start",
            ep.name,
            _dist(ep),
            SLOW_LOAD_S,
        ),
    )
    waiting.daemon = True  # never keeps a process that is done from exiting
    waiting.start()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return ep.load()
    finally:
        waiting.cancel()
        took = time.monotonic() - started
        if took > SLOW_LOAD_S:
            log.warning(
                "plugin %s (%s) took %.1f s to import: a plugin must not block at import", ep.name, _dist(ep), took
            )


@dataclass(frozen=True)
class Claimant:
    """A plugin claiming a name, scheme or vendor, and the distribution it came in (None: registered in-process)."""

    plugin: str
    distribution: str | None

    @property
    def label(self) -> str:
        return f"{self.plugin} ({self.distribution})" if self.distribution else self.plugin

    def named_for(self, claimed: str) -> bool:
        """True if the distribution is named for ``claimed``: wmhub-shure for shure and shure-uhfr, wmhub-example
        for example (a plugin registered in-process, by its own name)."""
        if self.distribution is None:
            stem: str | None = self.plugin
        else:
            stem = _normalized(self.distribution).removeprefix("wmhub-")
            stem = None if stem == _normalized(self.distribution) else stem
        return stem is not None and re.fullmatch(rf"{re.escape(stem)}([-+._].*)?", claimed) is not None


def unclaimed(what: str, claims: dict[str, list[Claimant]]) -> dict[tuple[Claimant, str], str]:
    """Why each (claimant, value) that another plugin claims too must do without it: the value goes to the one
    claimant whose distribution is named for it, else to none of them. Whichever plugin happened to load first
    had it before: another distribution's plugin could take ``shure://`` from wmhub-shure, and wmhub-shure was
    the one reported broken."""
    refused: dict[tuple[Claimant, str], str] = {}
    for value, claimants in claims.items():
        if len(claimants) < 2:
            continue
        rightful = [claimant for claimant in claimants if claimant.named_for(value)]
        for claimant in claimants:
            if rightful == [claimant]:
                continue
            if len(rightful) == 1:
                why = f"{what} {value} belongs to plugin {rightful[0].label}, whose distribution is named for it"
            else:
                others = ", ".join(other.label for other in claimants if other != claimant)
                why = (
                    f"{what} {value} is claimed by plugin {others} too, and no one distribution is named for it "
                    f"(wmhub-{value}): none of them has it"
                )
            refused[(claimant, value)] = why
    return refused


_CORE_REQUIREMENT = re.compile(r"wmhub\s*(?P<versions>[(<>=!~][^;]*)?(;.*)?", re.IGNORECASE)


def _core_wanted(ep: EntryPoint) -> str:
    """What the plugin's distribution says about the core versions it works with, beside this core's version:
    a plugin newer than the core fails to import a name the core does not have yet, and pip installs them
    together whenever the plugin's range allows it (an older plugin declared none)."""
    for requirement in (ep.dist.requires if ep.dist is not None else None) or ():
        match = _CORE_REQUIREMENT.fullmatch(requirement.strip())
        if match:
            versions = (match["versions"] or "").strip(" ()")
            if _version_allows(versions, __version__):  # its own mistake: a hint of a mismatch would mislead
                return ""
            return f" (it works with wmhub {versions}; this is wmhub {__version__})"
    return ""


_CLAUSE = re.compile(r"(?P<op>~=|==|!=|<=|>=|<|>)\s*(?P<release>\d+(?:\.\d+)*)(?P<wildcard>\.\*)?")
_COMPARE: Final = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _release(version: str, length: int) -> tuple[int, ...]:
    """The first ``length`` numbers of a version's release, padded with zeros (26.11 is 26.11.0)."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    numbers = [int(part) for part in match[0].split(".")] if match else []
    return tuple((numbers + [0] * length)[:length])


def _version_allows(versions: str, version: str) -> bool:
    """True if ``version`` (the core's, a plain release) meets every clause of a requirement's ``versions``
    (``>=26.11.0,<26.12``: PEP 440's operators on release numbers); False for a clause it cannot read, so the
    hint is shown rather than hidden."""
    for clause in filter(None, (part.strip() for part in versions.split(","))):
        match = _CLAUSE.fullmatch(clause)
        if match is None or (match["wildcard"] and match["op"] not in ("==", "!=")):
            return False
        op, given = match["op"], match["release"]
        if match["wildcard"] or op == "~=":  # ==26.11.*, and ~=26.11.0 (26.11.0 or later within 26.11)
            length = given.count(".") + (1 if match["wildcard"] else 0)
            within = _release(version, length) == _release(given, length)
            fine = (within != (op == "!=")) and (op != "~=" or _release(version, 9) >= _release(given, 9))
        else:
            fine = _COMPARE[op](_release(version, 9), _release(given, 9))
        if not fine:
            return False
    return True


# RFC 3986's scheme, compared lowercased (urlsplit lowercases the scheme of every URL it reads)
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,39}")
# A vendor starts every device id: a topic level on MQTT, a path segment in REST, a Home Assistant id.
_VENDOR = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def _int_within(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _texts(value: object, rule: Callable[[object], bool]) -> bool:
    """A tuple (or list) whose every item passes ``rule``; a bare string (a 1-tuple without its comma) is not."""
    return isinstance(value, tuple | list) and all(rule(item) for item in value)


def _is_family(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 100 and not has_controls(value)


# What python-zeroconf's browser takes (and RFC 6763): ``[<sub>._sub.]_<service>._tcp|_udp.local.``, the
# service 1 to 15 letters, digits and hyphens, with a letter, no hyphen at either end nor two in a row. A type
# the browser refuses stopped the whole hub when discovery was on.
_SERVICE: Final = re.compile(r"_(?!-)(?!.*--)(?=[a-z0-9-]*[a-z])[a-z0-9-]{1,15}(?<!-)", re.IGNORECASE)
_SERVICE_TYPE: Final = re.compile(
    rf"(?:[^.\x00-\x1f\x7f]{{1,63}}\._sub\.)?{_SERVICE.pattern}\._(?:tcp|udp)\.local\.", re.IGNORECASE
)
_SERVICE_TYPE_RULE: Final = "%s is not a DNS-SD service type such as '_x._tcp.local.': not watched"


def is_service_type(value: object) -> bool:
    """True if ``value`` is a DNS-SD service type the shared mDNS browser can watch (``_ssc._udp.local.``)."""
    return isinstance(value, str) and _SERVICE_TYPE.fullmatch(value) is not None


def checked_spec(spec: object) -> DriverSpec:
    """``spec`` if it is a DriverSpec the hub can use (its scheme lowercased); else TypeError or ValueError
    saying what is wrong, for ``wmhub plugins`` and the log."""
    if not isinstance(spec, DriverSpec):
        raise TypeError(f"not a DriverSpec: {preview(spec)}")
    scheme = spec.scheme.lower() if isinstance(spec.scheme, str) else ""
    wrong = [
        f"{name} {preview(getattr(spec, name))} must be {rule}"
        for name, fine, rule in (
            ("scheme", _SCHEME.fullmatch(scheme), "a URL scheme: a letter, then letters, digits, +, - or ."),
            (
                "vendor",
                isinstance(spec.vendor, str) and _VENDOR.fullmatch(spec.vendor),
                "lowercase letters, digits, _ and -, at most 40: it starts every device id",
            ),
            ("factory", callable(spec.factory), "callable"),
            ("identify", spec.identify is None or callable(spec.identify), "callable or None"),
            ("check_url", spec.check_url is None or callable(spec.check_url), "callable or None"),
            ("text_width", _int_within(spec.text_width, 1, 1_000_000), "a whole number of at least 1"),
            ("descriptors", _int_within(spec.descriptors, 1, 1_000_000), "a whole number of at least 1"),
            ("default_port", spec.default_port is None or _int_within(spec.default_port, 1, 65535), "a port or None"),
            ("families", _texts(spec.families, _is_family), "a tuple of family names: ('x',), with its comma"),
            (
                "zeroconf_types",
                _texts(spec.zeroconf_types, is_service_type),
                "a tuple of DNS-SD service types such as ('_x._tcp.local.',), with its comma",
            ),
            ("description", isinstance(spec.description, str), "text"),
        )
        if not fine
    ]
    if wrong:
        raise ValueError(f"DriverSpec refused: {'; '.join(wrong)}")
    return spec if scheme == spec.scheme else replace(spec, scheme=scheme)


# Longer than any device URL a person would type or approve.
MAX_CANDIDATE_URL = 2048


def _shown_candidate(plugin: str, candidate: Candidate) -> Candidate | None:
    """A plugin's candidate as the hub keeps and shows it: texts as a device's (no controls, a name's width),
    and none at all when its URL or vendor is not text a person could approve."""
    url, vendor = candidate.url, candidate.vendor
    if not (isinstance(url, str) and 0 < len(url) <= MAX_CANDIDATE_URL and not has_controls(url)) or not (
        isinstance(vendor, str) and _VENDOR.fullmatch(vendor)
    ):
        log.warning("plugin %s offered a candidate with an unusable URL or vendor: %s", plugin, preview(candidate))
        return None

    def text(value: str | None) -> str | None:
        return device_text(value) if isinstance(value, str) else None

    return replace(
        candidate,
        model=text(candidate.model),
        unique_id=text(candidate.unique_id),
        name=text(candidate.name),
        source=text(candidate.source) or "",
    )


# the hooks of the wmhub project, for "did you mean" and the list of them
_HOOK_NAMES: Final = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "wmhub_spec"))
# hooks whose answer the hub uses as it is (never awaits)
_PLAIN_HOOKS: Final = frozenset({"device_capabilities"})


def _note_moved_hooks(plugin: str, hooks: list[str]) -> None:
    for hook in sorted(set(hooks) & set(MOVED_TO_DRIVER_SPEC)):
        log.info(
            "plugin %s implements %s, which still works; docs/plugins.md now declares it on the DriverSpec (%s=)",
            plugin,
            hook,
            MOVED_TO_DRIVER_SPEC[hook],
        )


def _discard(awaitable: Awaitable[Any]) -> None:
    """Close a coroutine a plugin returned where none belongs (no 'never awaited' warning at exit)."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
