"""Helpers for tests of the hub and of plugins (a third-party plugin's tests can use them too).

``eventually`` waits for a condition with a deadline instead of sleeping and hoping; ``DriverHarness``
runs the real device path (plugin host, device manager, state store) without MQTT or HTTP; ``FakeDns``
answers a test's host names, so that no test asks a real DNS server.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar

from hub import hookimpl
from hub.clock import SYSTEM_CLOCK, Clock
from hub.devices import DeviceManager, ManagedDevice
from hub.drivers import Driver, DriverSettings
from hub.fieldcheck import checked, model_rules
from hub.hookspecs import Candidate, DiscoveredService, DriverSpec
from hub.model import Command, CommandResult, Device
from hub.plugins import PluginHost
from hub.state import StateStore

T = TypeVar("T")

_GETADDRINFO: Final = socket.getaddrinfo  # the real one, for addresses given as text (it asks no server then)


async def eventually(check: Callable[[], T | None], timeout: float = 5.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy (returned) or raise AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {result!r})")
        await asyncio.sleep(0.01)


def as_the_sink_takes(fields: Mapping[str, Any], *, device: bool = False, width: int = 255) -> Mapping[str, Any]:
    """``fields`` as a driver's sink hands them to the store: a value of the wrong type left out, a number
    outside the model's bounds read as unknown, text cut to ``width``. What a plugin decodes must become
    a valid model this way (the hub's checks are the sink's, the same for every plugin)."""
    channel_rules, device_rules = model_rules(width)
    return checked(fields, device_rules if device else channel_rules, lambda name, value, why: None)


# more names whose DNS never answers than asyncio's default pool has threads (min(32, cpus + 4)) or libuv's (4)
HANGING_NAMES: Final = tuple(f"hang{number}.lan" for number in range(12))


def run_on_asyncio_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on asyncio's own loop, not uvloop's: a test of host names replaces ``socket.getaddrinfo``
    (FakeDns), which uvloop's resolver never calls, so under uvloop a lookup outside hub.names would ask the
    machine's real DNS instead of failing the test."""
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        runner.run(main)


class FakeDns:
    """``socket.getaddrinfo`` for a test's host names: ``monkeypatch.setattr(socket, "getaddrinfo", dns)``.

    ``names`` maps a name to its addresses, answered in that order (an address of another family than the one
    asked for left out); a name in ``hanging`` gets no answer until :meth:`release`, as from a DNS server that
    drops queries (libc's lookup then holds its thread); an address given as text is answered as libc answers
    it; every other name does not resolve. No DNS server is ever asked. ``asked`` counts the lookups of each
    name, ``waiting`` the hanging ones not yet released. Call :meth:`release` when the test ends.
    """

    def __init__(self, names: Mapping[str, Sequence[str]] | None = None, hanging: Iterable[str] = ()) -> None:
        self.names = {name.lower(): list(addresses) for name, addresses in (names or {}).items()}
        self.hanging = {name.lower() for name in hanging}
        self.asked: Counter[str] = Counter()
        self.waiting = 0
        self._lock = threading.Lock()
        self._released = threading.Event()

    def __call__(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[tuple[Any, ...]]:
        try:
            return _GETADDRINFO(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            if flags & socket.AI_NUMERICHOST:  # only an address was asked for: libc asks no server either
                raise
        name = (host.decode() if isinstance(host, bytes) else str(host)).lower()
        with self._lock:
            self.asked[name] += 1
        if name in self.hanging:
            with self._lock:
                self.waiting += 1
            self._released.wait()
            with self._lock:
                self.waiting -= 1
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        infos: list[tuple[Any, ...]] = []
        for address in self.names.get(name, []):
            try:
                infos += _GETADDRINFO(address, port, family, type, proto, flags | socket.AI_NUMERICHOST)
            except socket.gaierror:  # an address of another family than asked for
                continue
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return infos

    def release(self) -> None:
        """Let every hanging lookup fail, as libc's does once it gives up."""
        self._released.set()


class QuietDriver(Driver):
    """A driver that talks to no device, for tests and benchmarks of the hub itself: a subclass says in
    ``connect`` what the device is (``self.sink.identify(...)``); it then stays connected and silent, and
    takes no commands."""

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None

    async def apply(self, command: Command) -> CommandResult:
        return CommandResult(ok=False, code="not_supported", error="a quiet test driver takes no commands")


def plugin_of(scheme: str, driver: type[Driver], family: str) -> object:
    """A plugin whose one driver class serves ``scheme://`` URLs, for ``PluginHost.register``."""

    class OneDriverPlugin:
        @hookimpl
        def register_drivers(self, register: Callable[[DriverSpec], None]) -> None:
            register(DriverSpec(scheme=scheme, vendor=scheme, families=(family,), factory=driver, default_port=1))

    return OneDriverPlugin()


class DriverHarness:
    """The hub's device path for one test: ``async with DriverHarness("shure") as hub: ...``."""

    def __init__(self, *plugins: str, settings: DriverSettings | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.plugins = PluginHost()
        self.plugins.load_entry_points(only=",".join(plugins))
        self.store = StateStore(clock)
        self.settings = settings or DriverSettings(meter_rate_ms=100, io_timeout_s=2.0, offline_after_s=3.0)
        self.manager = DeviceManager(self.plugins, self.store, self.settings, clock=clock)

    async def __aenter__(self) -> DriverHarness:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.manager.close()

    def add(self, url: str) -> ManagedDevice:
        return self.manager.add(url)

    async def device(self, managed: ManagedDevice, timeout: float = 5.0, online: bool = True) -> Device:
        """Wait until the device behind ``managed`` is identified and has the wanted online state."""

        def ready() -> Device | None:
            device_id = managed.handle.device_id
            device = self.store.get(device_id) if device_id else None
            return device if device is not None and device.online == online else None

        return await eventually(ready, timeout, f"{managed.url} online={online}")

    async def apply(self, command: Command) -> CommandResult:
        return await self.manager.apply(command)


def plugin_host(*plugins: str) -> PluginHost:
    """A plugin host with only the named plugins (distribution or entry-point names) loaded."""
    host = PluginHost()
    host.load_entry_points(only=",".join(plugins))
    return host


# short probes: a test's candidate answers at once or not at all
PROBE_SETTINGS = DriverSettings(io_timeout_s=1.0)


async def interrupt(process: asyncio.subprocess.Process, timeout: float = 10.0) -> int:
    """Stop a command-line child as Ctrl-C does and return its exit status (killed past ``timeout``)."""
    process.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(timeout):
            return await process.wait()
    finally:
        if process.returncode is None:  # still running past the timeout: the TimeoutError says so
            process.kill()
            await process.wait()


async def identify_with(
    host: PluginHost,
    plugin: str,
    service: DiscoveredService,
    settings: DriverSettings = PROBE_SETTINGS,
    timeout: float = 5.0,
) -> Candidate | None:
    """What ``plugin`` makes of ``service`` (its driver specs' ``identify``, probing as discovery would).

    ``plugin`` is named as :func:`plugin_host` takes it, by entry-point or distribution name; a name that
    is no loaded plugin's raises ValueError, since "not my device" from no plugin at all proves nothing."""
    names = host.loaded_as(plugin)
    if not names:
        loaded = ", ".join(sorted(host.records)) or "none"
        raise ValueError(f"no plugin named {plugin!r} is loaded in this plugin host (loaded: {loaded})")
    async with asyncio.timeout(timeout):
        for owner, what, identify in host.identifiers():
            if owner in names:
                candidate = await host.identify(owner, what, identify, service, settings)
                if candidate is not None:
                    return candidate
    return None
