"""The one plugin manager. Entry points in the group ``wmhub`` are loaded one by one.

A plugin that fails to import or to register is recorded with its error (``wmhub plugins`` shows it)
and the others load regardless. ``WMHUB_LOAD_PLUGINS=a,b`` loads only the named distributions (or
entry-point names); an empty value loads none. Every call into a plugin goes through :meth:`call`,
:meth:`call_async` or :meth:`collect`, which catch that plugin's exceptions and bound its time, and
:class:`HookTimer` measures how long each call after start-up holds the event loop: a plugin that blocks it (a
``time.sleep``, a blocking socket) stalls every device, the web server and MQTT, and is named in a warning.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Final, TypeVar

import pluggy

from hub import __version__, hookspecs
from hub.capcheck import checked_capabilities
from hub.drivers import DriverSettings
from hub.hookspecs import Candidate, DiscoveredService, DiscoveryLoop, DriverSpec, Identify
from hub.model import Capabilities
from hub.text import device_text, has_controls, preview

ENTRY_POINT_GROUP = "wmhub"
NO_PLUGINS: Final = "no plugins installed: install wmhub-shure / wmhub-sennheiser (the core drives no device itself)"
log = logging.getLogger("hub.plugins")

# Hooks of an earlier plugin API that now live on the DriverSpec: still called, and named once in the log.
MOVED_TO_DRIVER_SPEC = {"register_zeroconf_types": "zeroconf_types", "identify_service": "identify"}
# Hooks of an earlier plugin API the hub no longer calls: a plugin that still has them loads as before.
RETIRED_HOOKS = frozenset({"apply_command"})
T = TypeVar("T")

# A hook or driver callback holding the event loop longer than this delays every other device's data.
SLOW_CALL_S = 0.1
# The same plugin's same slow hook is named at most this often (it may be slow on every call).
SLOW_WARNING_EVERY_S = 60.0


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


class PluginHost:
    """Owns the pluggy manager and the per-plugin records; every hook call goes through here."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("wmhub")
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.timer = HookTimer()
        self._drivers: dict[str, tuple[DriverSpec, str]] | None = None
        # plugin calls given up on at their deadline and cancelled, but not yet ended (see call_bounded)
        self.strays: set[asyncio.Future[Any]] = set()
        self._refusals: set[tuple[str, str]] = set()  # (plugin, what was wrong), each logged once

    def load_entry_points(self, only: str | None = None) -> None:
        if only is None:
            only = os.environ.get("WMHUB_LOAD_PLUGINS")
        wanted = None if only is None else {name.strip() for name in only.split(",") if name.strip()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else None
            if wanted is not None and ep.name not in wanted and dist not in wanted:
                continue
            self._load_one(ep, dist)
        if wanted is None and not self.records:  # `pip install wmhub` alone: a hub with no device it can drive
            log.warning(NO_PLUGINS)

    def _load_one(self, ep: EntryPoint, dist: str | None) -> None:
        record = PluginRecord(
            name=ep.name,
            distribution=dist,
            version=ep.dist.version if ep.dist is not None else None,
        )
        self.records[ep.name] = record
        try:
            module = ep.load()
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
        plugin, so the others load. A hook that must be a plain function and is ``async def`` is named too."""
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
        under ``what``, an awaitable result awaited within ``timeout``; raise PluginError when it overran."""
        result = self.timer.call(plugin_name, what, function, *args, **kwargs)
        if not inspect.isawaitable(result):
            return result
        # Awaited as a task of its own and left behind at the deadline: awaiting its cancellation (as
        # asyncio.timeout does) would wait for ever on plugin code that catches CancelledError and goes on.
        task = asyncio.ensure_future(self.timer.timed(plugin_name, what, result))
        try:
            await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            if task.cancelled():  # the plugin raised CancelledError itself: its caller was not cancelled
                raise PluginError(f"plugin {plugin_name} cancelled {what} itself")
            return task.result()
        task.cancel()
        self.strays.add(task)
        task.add_done_callback(self.strays.discard)
        raise PluginError(f"plugin {plugin_name} did not answer {what} within {timeout:g} s")

    def plugins_with(self, hook: str) -> list[str]:
        return [name for name, _ in self._impls(hook)]

    def collect(self, hook: str) -> list[tuple[str, Any]]:
        """Call a ``register_*`` hook; return every (plugin, registered object) pair."""
        registered: list[tuple[str, Any]] = []
        for plugin_name, function in self._impls(hook):
            found: list[Any] = []
            try:
                # not timed: registration runs while the hub starts (or discovery restarts), before or apart
                # from device traffic, and importing what a plugin registers may well take a while
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
        """Driver specs by URL scheme, with the name of the plugin that owns each."""
        if self._drivers is None:
            drivers: dict[str, tuple[DriverSpec, str]] = {}
            for plugin_name, registered in self.collect("register_drivers"):
                try:
                    spec = checked_spec(registered)
                except (TypeError, ValueError) as exc:
                    self._fail(plugin_name, "register_drivers", exc)
                    continue
                if spec.scheme in drivers:
                    other = drivers[spec.scheme][1]
                    self._fail(plugin_name, "register_drivers", ValueError(f"scheme {spec.scheme} taken by {other}"))
                else:
                    drivers[spec.scheme] = (spec, plugin_name)
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
            return None
        return _shown_candidate(plugin, result)

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

    def listing(self) -> list[dict[str, Any]]:
        return [record.as_dict() for record in self.records.values()]


def _described(exc: BaseException) -> str:
    """A plugin's exception in one line, however many its message has: ``wmhub plugins`` shows one a plugin."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


_CORE_REQUIREMENT = re.compile(r"wmhub\s*(?P<versions>[(<>=!~][^;]*)?(;.*)?", re.IGNORECASE)


def _core_wanted(ep: EntryPoint) -> str:
    """What the plugin's distribution says about the core versions it works with, beside this core's version:
    a plugin newer than the core fails to import a name the core does not have yet, and pip installs them
    together whenever the plugin's range allows it (an older plugin declared none)."""
    for requirement in (ep.dist.requires if ep.dist is not None else None) or ():
        match = _CORE_REQUIREMENT.fullmatch(requirement.strip())
        if match:
            versions = (match["versions"] or "").strip(" ()") or "any version"
            return f" (it works with wmhub {versions}; this is wmhub {__version__})"
    return ""


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
            ("text_width", _int_within(spec.text_width, 1, 1_000_000), "a whole number of at least 1"),
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
