"""The driver lifecycle every plugin implements, and the supervisor that keeps one driver connected.

A plugin's driver owns the connection to one device. The hub's supervisor calls ``connect``, then
``run`` (which streams or polls state into the :class:`DeviceSink` until the connection is lost), and
``close`` on every way out. Reconnects use capped exponential backoff with jitter. A device that sends
nothing for ``offline_after_s`` is marked offline and reconnected, whatever the driver believes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hub.backoff import Backoff
from hub.model import Command, CommandResult, NotSupportedError
from hub.redact import redact


class EndpointError(ValueError):
    """A device URL that cannot be used: the message says why."""


# The URL option that names a device whose protocol reports no serial or MAC (``shure://10.0.0.5?id=rack1-a``):
# its id then survives a new address. Drivers ignore it; the hub reads it (hub.devices.DeviceHandle.identify).
ID_OPTION: Final = "id"


def with_options(url: str, **options: str) -> str:
    """``url`` with query options added, e.g. ``with_options(url, id="demo-ulxd4q")``."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *options.items()])
    return urlunsplit(parts._replace(query=query))


@dataclass(frozen=True)
class Endpoint:
    """Where a device is reached: ``scheme://host[:port][?option=value&...]``."""

    url: str
    scheme: str
    host: str
    port: int
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str, default_port: int | None = None) -> Endpoint:
        parts = urlsplit(url)
        shown = redact(url)
        if not parts.scheme or not parts.hostname:
            raise EndpointError(f"{shown!r} is not a device URL (expected scheme://host[:port])")
        try:
            port = parts.port
        except ValueError as exc:
            raise EndpointError(f"{shown!r}: {exc}") from None
        if port is None:
            if default_port is None:
                raise EndpointError(f"{shown!r} needs a port")
            port = default_port
        return cls(
            url=url,
            scheme=parts.scheme.lower(),
            host=parts.hostname,
            port=port,
            options=dict(parse_qsl(parts.query)),
        )

    @property
    def host_port_id(self) -> str:
        """A device-id suffix for devices that report no serial."""
        return f"{self.host.replace('.', '_').replace(':', '_')}_{self.port}"


@dataclass(frozen=True)
class DriverSettings:
    """Hub-wide settings every driver honours; plugin-specific ones come from ``Endpoint.options``."""

    meter_rate_ms: int = 1000
    io_timeout_s: float = 5.0
    offline_after_s: float = 10.0


class DeviceSink(Protocol):
    """What a driver writes to. Field names are the model's (hub.model.Channel / Device)."""

    log: logging.LoggerAdapter[logging.Logger]

    def identify(
        self,
        *,
        unique_id: str | None,
        family: str | None,
        model: str | None,
        channel_count: int,
        firmware: str | None = None,
        name: str | None = None,
    ) -> None:
        """Say what the device is, once connected. ``unique_id`` is a serial or MAC, None if it has none."""

    def update_device(self, fields: Mapping[str, Any]) -> None:
        """Merge receiver-level fields (name, firmware, model, family)."""

    def update_channel(self, index: int, fields: Mapping[str, Any]) -> None:
        """Merge channel fields. Only the fields given change; None means 'reported unknown'."""

    def heard(self) -> None:
        """Traffic arrived that changed nothing: the device is still alive."""

    def protocol_error(self, detail: str) -> None:
        """Something arrived that could not be parsed (counted on /metrics; the driver carries on)."""


class Driver(ABC):
    """One connection to one device. Subclass it, or :class:`PollingDriver` for pull protocols."""

    def __init__(self, endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.settings = settings

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection and ask for the full state. Raise on failure."""

    @abstractmethod
    async def run(self) -> None:
        """Stream state into the sink until the connection is lost (return or raise)."""

    @abstractmethod
    async def close(self) -> None:
        """Leave the device as we found it (metering off) and release the connection. Never raises."""

    async def apply(self, command: Command) -> CommandResult:
        """Carry out a command; return only once the device confirmed it. Raise a CommandError."""
        raise NotSupportedError(f"{type(self).__name__} has no controls")


class PollingDriver(Driver):
    """A driver for pull protocols: ``poll`` is called every ``poll_interval_s`` while connected."""

    poll_interval_s: float = 1.0

    @abstractmethod
    async def poll(self) -> None:
        """Query the device once and write what it answered into the sink. Raise when it fails."""

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.poll_interval_s)


T = TypeVar("T")


class CallTimer(Protocol):
    """Times an awaitable from a plugin's driver, naming ``what`` the driver was doing when it ran slow."""

    def __call__(self, what: str, awaitable: Awaitable[T]) -> Awaitable[T]: ...


def _untimed(what: str, awaitable: Awaitable[T]) -> Awaitable[T]:
    return awaitable


class DeviceSilentError(ConnectionError):
    """Nothing was heard from the device for longer than ``offline_after_s``."""


class UnsupportedDeviceError(Exception):
    """The device answered, but it is nothing the plugin can monitor (e.g. an unknown model).

    Raise it from ``connect``, after ``identify`` with ``channel_count=0`` so the device is shown with the
    model it reported. The supervisor says why once and asks again only every ``UNSUPPORTED_RETRY_S``
    (the address may later hold a supported receiver)."""


UNSUPPORTED_RETRY_S = 600.0


def describe_failure(exc: BaseException, doing: str, timeout_s: float | None = None) -> str:
    """A sentence for the log and the API: the exception's own message, or, for one that has none (a bare
    TimeoutError), what the hub was doing when it happened. Never just the class name."""
    text = str(exc).strip()
    if text:
        return text
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s while {doing}" if timeout_s else f"no answer while {doing}"
    return f"{doing} failed ({type(exc).__name__})"


class LinkState(Protocol):
    """The supervisor's view of the sink: when the device was last heard, and online/offline marks."""

    def last_heard(self) -> float: ...

    def set_online(self, online: bool, error: str | None = None) -> None: ...


class DriverSupervisor:
    """Keeps one driver connected: connect, run, watch for silence, close, back off, again."""

    def __init__(
        self,
        make_driver: Callable[[], Driver],
        link: LinkState,
        settings: DriverSettings,
        log: logging.LoggerAdapter[logging.Logger],
        backoff: Backoff | None = None,
        timed: CallTimer = _untimed,
    ) -> None:
        self._make_driver = make_driver
        self._timed = timed
        self._link = link
        self._settings = settings
        self._log = log
        self._backoff = backoff or Backoff()
        self.driver: Driver | None = None
        self.attempts = 0
        self.reconnects = 0
        self.last_error: str | None = None
        # the last error came from building the driver (a bad URL option): no network was involved
        self.last_error_local = False
        self.connected_since: float | None = None

    async def run_forever(self) -> None:
        was_up = True  # log the first failure too
        while True:
            self.attempts += 1
            unsupported = False
            building = True
            try:
                # inside the try: a plugin whose driver cannot even be built gets an error and a retry
                self.driver = self._make_driver()
                building = False
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that arrives
                # as the awaited call finishes, and the supervisor would then never stop
                async with asyncio.timeout(self._settings.io_timeout_s * 2):
                    await self._timed("Driver.connect", self.driver.connect())
                self._backoff.reset()
                self.connected_since = time.time()
                self._link.set_online(True)
                if not was_up:
                    self._log.info("connection recovered")
                was_up = True
                await self._run_watched(self.driver)
                raise ConnectionError("connection closed by the device")
            except asyncio.CancelledError:
                await self._close()
                self._link.set_online(False, "stopped")
                raise
            except Exception as exc:
                if self.connected_since is None:
                    doing, limit = f"connecting to {self._where()}", self._settings.io_timeout_s * 2
                else:
                    doing, limit = f"receiving from {self._where()}", None
                self.last_error = describe_failure(exc, doing, limit)
                self.last_error_local = building
                if was_up:
                    self._log.warning("device unavailable: %s: %s", self._where(), self.last_error)
                was_up = False
                self._link.set_online(False, self.last_error)
                unsupported = isinstance(exc, UnsupportedDeviceError)
            await self._close()
            self.connected_since = None
            self.reconnects += 1
            await asyncio.sleep(UNSUPPORTED_RETRY_S if unsupported else self._backoff.next_delay())

    def _where(self) -> str:
        """The device's URL (password redacted), so every message names the device it is about."""
        driver = self.driver
        return redact(driver.endpoint.url) if driver is not None else "the device"

    async def _run_watched(self, driver: Driver) -> None:
        runner = asyncio.ensure_future(self._timed("Driver.run", driver.run()))
        limit = self._settings.offline_after_s
        try:
            while True:
                silent_for = time.monotonic() - self._link.last_heard()
                wait = max(0.05, limit - silent_for)
                done, _ = await asyncio.wait({runner}, timeout=wait)
                if done:
                    runner.result()
                    return
                if time.monotonic() - self._link.last_heard() >= limit:
                    raise DeviceSilentError(f"nothing heard for {limit:g} s")
        finally:
            if not runner.done():
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)

    async def _close(self) -> None:
        driver, self.driver = self.driver, None
        if driver is None:
            return
        try:
            async with asyncio.timeout(self._settings.io_timeout_s):
                await self._timed("Driver.close", driver.close())
        except Exception as exc:  # close must never keep a device from reconnecting
            self._log.debug("close failed: %s", exc)
