"""What the two UDP drivers (SSCv1, G4) share: resend-until-answered, renewal, liveness, background tasks.

UDP loses datagrams, so every request is re-sent every ``retry_ms`` (URL option, default 250) until its
answer arrives or the deadline passes. Subscriptions (SSCv1) and Push (G4) expire on the device, so
:meth:`UdpDriver.run` renews them on time and probes a device that went quiet.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from hub.drivers import DeviceSink, Driver, DriverSettings, Endpoint, EndpointError
from hub.model import Command, CommandKind, CommandResult, InvalidValueError

T = TypeVar("T")
N = TypeVar("N", int, float)
MISSES_BEFORE_OFFLINE = 2


def int_option(endpoint: Endpoint, name: str, default: int, low: int, high: int) -> int:
    return _number_option(endpoint, name, default, low, high, int, "a whole number")


def float_option(endpoint: Endpoint, name: str, default: float, low: float, high: float) -> float:
    return _number_option(endpoint, name, default, low, high, float, "a number")


def _number_option(
    endpoint: Endpoint, name: str, default: N, low: N, high: N, parse: Callable[[str], N], kind: str
) -> N:
    """A numeric URL option within ``low..high``; ``default`` when the URL does not name it."""
    text = endpoint.options.get(name)
    if text is None:
        return default
    try:
        value = parse(text)
    except ValueError:
        raise EndpointError(f"{endpoint.url}: {name}={text!r} is not {kind}") from None
    if not low <= value <= high:
        raise EndpointError(f"{endpoint.url}: {name} must be within {low:g}..{high:g}")
    return value


def meter_rate(value: Any) -> int:
    """A METER_RATE command value: 0 (off) or 100..60000 ms."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value == 0 or 100 <= value <= 60_000):
        raise InvalidValueError(f"meter rate must be 0 (off) or 100..60000 ms, not {value!r}")
    return int(value)


def toggled(kind: CommandKind, value: Any, current: Any) -> Any:
    """Resolve ``mute: "toggle"`` against the state last reported by the device."""
    if kind is not CommandKind.MUTE or value != "toggle":
        return value
    if not isinstance(current, bool):
        raise InvalidValueError("cannot toggle: the current mute state is not known yet")
    return not current


def applied_otherwise(where: str, held: Any, asked: Any) -> CommandResult:
    """The answer to a set the device took but keeps another value for (a name cut short, a gain clamped,
    a frequency snapped to its grid): refused, with what it holds. The same on every protocol."""
    return CommandResult(
        ok=False, code="refused", value=held, error=f"{where}: the device applied {held!r}, not {asked!r}"
    )


async def resend_until(send: Callable[[], None], answer: asyncio.Future[T], retry_s: float, timeout: float) -> T:
    """Send, and send again every ``retry_s``, until ``answer`` resolves; TimeoutError at ``timeout``.

    ``asyncio.wait`` rather than ``wait_for``: on Python 3.11 ``wait_for`` can swallow a cancellation
    that arrives together with the answer, and a driver must always stop when the hub stops it.
    """
    deadline = time.monotonic() + timeout
    try:
        while not answer.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            send()
            await asyncio.wait({answer}, timeout=min(retry_s, remaining))
        return answer.result()
    finally:
        if not answer.done():
            answer.cancel()


class UdpDriver(Driver):
    """A driver whose device must be renewed (subscriptions, Push) and probed when it goes quiet."""

    def __init__(self, endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> None:
        super().__init__(endpoint, sink, settings)
        self._unusable_option: EndpointError | None = None
        # retry_ms: how long to wait for an answer before sending the request again
        self.retry_s = self.url_option(int_option, "retry_ms", 250, 20, 5000) / 1000
        self.meter_ms = settings.meter_rate_ms
        self._tasks: set[asyncio.Task[Any]] = set()
        self._renew_now: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._last_heard = sink.clock.monotonic()

    def url_option(self, read: Callable[[Endpoint, str, N, N, N], N], name: str, default: N, low: N, high: N) -> N:
        """A URL option read with ``read`` (:func:`int_option`, :func:`float_option`), or ``default`` if unusable.

        The error is kept for :meth:`check_options`: raised from the constructor, it would end the hub's
        supervision of the device for good instead of showing as the device's error.
        """
        try:
            return read(self.endpoint, name, default, low, high)
        except EndpointError as exc:
            self._unusable_option = self._unusable_option or exc
            return default

    def check_options(self) -> None:
        """Raise the first unusable URL option; every driver's ``connect`` calls this before anything else."""
        if self._unusable_option is not None:
            raise self._unusable_option

    def heard(self) -> None:
        self._last_heard = self.sink.clock.monotonic()
        self.sink.heard()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.sink.log.debug("background request failed: %s", task.exception())

    async def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @abstractmethod
    def prepare(self, command: Command) -> Any:
        """Check a command against the family's limits and the known state; raise before anything is sent."""

    @abstractmethod
    async def execute(self, prepared: Any) -> CommandResult:
        """Send a prepared command; return once the device confirmed the value."""

    async def apply(self, command: Command) -> CommandResult:
        return await self.execute(self.prepare(command))

    def renew_soon(self) -> None:
        if not self._renew_now.done():
            self._renew_now.set_result(None)

    @abstractmethod
    def renew_interval_s(self) -> float:
        """How long the device keeps what :meth:`renew` asked for, less a safety margin."""

    @abstractmethod
    async def renew(self) -> None:
        """Ask the device (again) to keep reporting. Raises TimeoutError if it did not confirm."""

    @abstractmethod
    async def probe(self) -> None:
        """One request that the device must answer. Raises TimeoutError if it did not."""

    async def run(self) -> None:
        # renewal and probing are the driver's own timers, on the hub's clock; each request's own
        # deadline (resend_until) bounds the real device, on the loop's time
        clock = self.sink.clock
        misses = 0
        quiet_s = max(0.5, min(5.0, self.settings.offline_after_s / 2))
        next_renewal = clock.monotonic() + self.renew_interval_s()
        while True:
            await self._wait_unless_renewal_asked(min(next_renewal, self._last_heard + quiet_s) - clock.monotonic())
            renew_now = self._renew_now.done()
            if renew_now:
                self._renew_now = asyncio.get_running_loop().create_future()
            try:
                if clock.monotonic() - self._last_heard > quiet_s:
                    await self.probe()
                if renew_now or clock.monotonic() >= next_renewal:
                    next_renewal = clock.monotonic() + self.renew_interval_s()
                    await self.renew()
                misses = 0
            except TimeoutError as exc:
                misses += 1
                if misses >= MISSES_BEFORE_OFFLINE:
                    raise ConnectionError(f"device not responding: {exc}") from None

    async def _wait_unless_renewal_asked(self, seconds: float) -> None:
        """Wait ``seconds`` on the hub's clock, or less if :meth:`renew_soon` asks for a renewal first."""
        if seconds <= 0:  # overdue: a simulated clock would otherwise hold it until the clock next moves
            return
        timer = asyncio.ensure_future(self.sink.clock.sleep(seconds))
        try:
            await asyncio.wait({timer, self._renew_now}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
