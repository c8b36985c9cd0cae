"""The hub's side of a driver's life: connect, run, close, reconnect with backoff and jitter, and mark the
device offline when it falls silent. Internal to the hub; plugins write drivers against :mod:`hub.drivers`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeVar

from hub.backoff import Backoff
from hub.clock import SYSTEM_CLOCK, Clock
from hub.descriptors import DescriptorBudget
from hub.drivers import ConnectAgainError, DeviceSilentError, Driver, DriverSettings, UnsupportedDeviceError
from hub.model import CommandTimeoutError, DeviceUnavailableError, RefusedError
from hub.text import device_text

T = TypeVar("T")


class CallTimer(Protocol):
    """Awaits an awaitable from a plugin's driver, timed against the plugin under ``what``; cancelled, it leaves
    behind driver code that ignores the cancellation (PluginHost.awaited), so the supervisor always stops."""

    def __call__(self, what: str, awaitable: Awaitable[T]) -> Awaitable[T]: ...


def _untimed(what: str, awaitable: Awaitable[T]) -> Awaitable[T]:
    return awaitable


# What a device (or its address) does to a driver: unreachable, refusing, silent, talking nonsense (a value it
# cannot parse), or no device this plugin monitors. Anything else a driver raises is a bug of its plugin.
# What a device's failure looks like from connect and run: besides the socket's and the parser's errors, a
# command's own errors, raised when connect sends one (a link that dropped under Shure's meter-rate SET
# raised DeviceUnavailableError, logged as a plugin bug with its traceback).
DEVICE_FAILURES: Final = (
    OSError,
    EOFError,
    ValueError,
    UnsupportedDeviceError,
    DeviceUnavailableError,
    CommandTimeoutError,
    RefusedError,
)

UNSUPPORTED_RETRY_S = 600.0
MAX_ERROR_CHARS = 300
# A connection that lasted this long was a working one: the next failure starts the backoff over. One that
# failed sooner (a device that accepts, identifies and then fails every time) keeps backing off.
STAYED_UP_S = 30.0


def describe_failure(exc: BaseException, doing: str, timeout_s: float | None = None) -> str:
    """A sentence for the log and the API: the exception's own message, or, for one that has none (a bare
    TimeoutError), what the hub was doing when it happened. Never just the class name.

    The message may quote the device (an unknown model string): it is device text, so it loses its control
    characters and is cut, as everything a device says is before it reaches a terminal or the API."""
    text = device_text(str(exc).strip(), MAX_ERROR_CHARS)
    if text:
        return text
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s while {doing}" if timeout_s else f"no answer while {doing}"
    return f"{doing} failed ({type(exc).__name__})"


class LinkState(Protocol):
    """The supervisor's view of the sink: when the device was last heard, and online/offline marks."""

    def last_heard(self) -> float: ...

    def set_connecting(self, connecting: bool) -> None:
        """Driver.connect is under way: what it identifies comes online only with ``set_online(True)``."""

    def set_online(self, online: bool, error: str | None = None) -> None: ...

    def set_unsupported(self) -> None:
        """The device answered as none the plugin monitors (UnsupportedDeviceError): it takes no command."""


def _retrieve_outcome(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


class DriverSupervisor:
    """Keeps one driver connected: connect, run, watch for silence, close, back off, again."""

    def __init__(
        self,
        make_driver: Callable[[], Driver],
        link: LinkState,
        settings: DriverSettings,
        log: logging.LoggerAdapter[logging.Logger],
        *,
        plugin: str,
        url: str,
        backoff: Backoff | None = None,
        timed: CallTimer = _untimed,
        clock: Clock = SYSTEM_CLOCK,
        gate: asyncio.Semaphore | None = None,
        descriptors: DescriptorBudget | None = None,
        descriptors_per_connection: int = 1,
    ) -> None:
        self._make_driver = make_driver
        self._gate = gate if gate is not None else asyncio.Semaphore(1)
        # the descriptors of the open-file limit's a connection may hold (its DriverSpec.descriptors), taken from
        # before the driver connects until it has closed
        self._descriptors = descriptors
        self._descriptors_per_connection = descriptors_per_connection
        self._holding = 0  # how many it holds (what the budget gave)
        self._waited: str | None = None  # what the device showed while it waited for a descriptor
        self._clock = clock
        self._timed = timed
        self._link = link
        self._settings = settings
        self._log = log
        self._plugin = plugin
        self._url = url  # as shown to people: any password redacted
        # (call, exception type) of each bug of the plugin already logged with its traceback
        self._bugs_logged: set[tuple[str, type[BaseException]]] = set()
        self._backoff = backoff or Backoff()
        self.driver: Driver | None = None
        self.attempts = 0
        self.reconnects = 0
        self.last_error: str | None = None
        # the last error came from building the driver (a bad URL option): no network was involved
        self.last_error_local = False
        self.connected_since: float | None = None
        # when the silence watchdog last looked and found the device still talking (on the hub's clock)
        self.judged_alive_at: float | None = None

    async def run_forever(self) -> None:
        was_up = True  # log the first failure too
        up_at = 0.0  # when the last connection was made (on the monotonic clock)
        while True:
            self.attempts += 1
            unsupported = False
            building = True
            try:
                # inside the try: a plugin whose driver cannot even be built gets an error and a retry
                self.driver = self._make_driver()
                building = False
                await self._take_descriptor()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that arrives
                # as the awaited call finishes, and the supervisor would then never stop
                async with self._gate, asyncio.timeout(self._settings.io_timeout_s * 2):
                    self._link.set_connecting(True)
                    try:
                        await self._timed("Driver.connect", self.driver.connect())
                    finally:
                        self._link.set_connecting(False)
                up_at = self._clock.monotonic()
                self.connected_since = self._clock.now()
                if self._waited is not None and self.last_error == self._waited:  # no failure of its connection
                    self.last_error, self.last_error_local = None, False
                self._waited = None
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
            except ConnectAgainError as exc:
                self._log.info("%s: connecting again at once", exc)
                await self._close()
                self.connected_since = None
                continue
            except Exception as exc:
                if self.connected_since is None:
                    doing, limit = f"connecting to {self._url}", self._settings.io_timeout_s * 2
                else:
                    doing, limit = f"receiving from {self._url}", None
                self.last_error = describe_failure(exc, doing, limit)
                self.last_error_local = building
                if not isinstance(exc, DEVICE_FAILURES):
                    self._plugin_bug(exc, building)
                elif was_up:
                    self._log.warning("device unavailable: %s: %s", self._url, self.last_error)
                was_up = False
                self._link.set_online(False, self.last_error)
                unsupported = isinstance(exc, UnsupportedDeviceError)
                if unsupported:
                    self._link.set_unsupported()
            await self._close()
            if self.connected_since is not None and self._clock.monotonic() - up_at >= STAYED_UP_S:
                self._backoff.reset()
            self.connected_since = None
            self.reconnects += 1
            await self._clock.sleep(UNSUPPORTED_RETRY_S if unsupported else self._backoff.next_delay())

    def _plugin_bug(self, exc: Exception, building: bool) -> None:
        """A failure that is no device's doing: said as the plugin's, with its type, and logged with its
        traceback the first time (per call and type; a retry fails the same way)."""
        call = "DriverSpec.factory" if building else "Driver.connect" if self.connected_since is None else "Driver.run"
        self.last_error = f"plugin {self._plugin} failed in {call}: {type(exc).__name__}: {self.last_error}"
        if (call, type(exc)) in self._bugs_logged:
            return
        self._bugs_logged.add((call, type(exc)))
        self._log.error(
            "device unavailable: %s: %s (a bug of the plugin: retried with backoff, logged once)",
            self._url,
            self.last_error,
            exc_info=exc,
        )

    async def _run_watched(self, driver: Driver) -> None:
        runner = asyncio.ensure_future(self._timed("Driver.run", driver.run()))
        # a driver that fails just as the hub stops ends after nobody awaits it any more: its error is the
        # reason for a reconnect that will not come, not a "Task exception was never retrieved" at exit
        runner.add_done_callback(_retrieve_outcome)
        limit = self._settings.offline_after_s
        clock = self._clock
        try:
            while True:
                silent_for = clock.monotonic() - self._link.last_heard()
                waiting = asyncio.ensure_future(clock.sleep(max(0.05, limit - silent_for)))
                try:
                    await asyncio.wait({runner, waiting}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiting.cancel()
                if runner.done():
                    runner.result()
                    return
                if clock.monotonic() - self._link.last_heard() >= limit:
                    raise DeviceSilentError(f"nothing heard for {limit:g} s")
                self.judged_alive_at = clock.monotonic()
        finally:
            if not runner.done():
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)

    async def _take_descriptor(self) -> None:
        if self._descriptors is None or self._holding:
            return
        self._holding = await self._descriptors.acquire(self._waits, self._descriptors_per_connection)

    def _waits(self, reason: str) -> None:
        """Too few descriptors are free: the device shows why it is not connected (a limit of the hub's, said as the
        hub's own, like a driver that cannot be built: no network was involved)."""
        self._waited = self.last_error = reason
        self.last_error_local = True
        self._link.set_online(False, reason)

    async def _close(self) -> None:
        driver, self.driver = self.driver, None
        try:
            if driver is None:
                return
            try:
                async with asyncio.timeout(self._settings.io_timeout_s):
                    await self._timed("Driver.close", driver.close())
            except Exception as exc:  # close must never keep a device from reconnecting
                self._log.debug("close failed: %s", exc)
        finally:
            if self._holding:  # closed (or given up on): its descriptors are free for the devices waiting
                holding, self._holding = self._holding, 0
                assert self._descriptors is not None  # nosec B101: held only with a budget
                self._descriptors.release(holding)
