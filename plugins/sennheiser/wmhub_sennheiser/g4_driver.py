"""The ew G3/G4/2000 driver (Media Control Protocol): one shared UDP socket, Push keep-alive, control.

URL: ``sennheiser-g4://host[:port][?local_port=53212&push_timeout=60&retry_ms=250]``. The devices answer
to the port they were sent from, and the protocol uses 53212 both ways, so one socket per local port
serves every receiver and datagrams are routed by source address. ``local_port=0`` takes any free port
(tests, or a second process on the same host). These devices have no serial: the id comes from the URL.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from hub.drivers import DeviceSink, DriverSettings, Endpoint, EndpointError
from hub.model import (
    Command,
    CommandKind,
    CommandResult,
    CommandTimeoutError,
    InvalidValueError,
    NotSupportedError,
    RefusedError,
)
from hub.names import resolve
from wmhub_sennheiser import mcp
from wmhub_sennheiser.capabilities import tuned_capabilities
from wmhub_sennheiser.families import MCP_NAME
from wmhub_sennheiser.mcp import ErrorLine, Line
from wmhub_sennheiser.udp import UdpDriver, applied_otherwise, int_option, meter_rate, resend_until, toggled

SCHEME: Final = "sennheiser-g4"
VENDOR: Final = "sennheiser"
FAMILY: Final = mcp.EM_FAMILY
MODEL: Final = "EM 300-500 G4"
PUSH_MODE: Final = mcp.PUSH_CONFIG | mcp.PUSH_ON_WARNING | mcp.PUSH_ON_PILOT_OR_BATTERY
# How long a SET whose keyword came back with the value held before it waits for its exact echo before it is
# settled as refused (the receiver kept its value, and said so again after a re-send). The receiver reports
# the old value unasked too: in the answer to a Push renewal (the configuration dump) and to the re-read after
# a new Config index. Such a report may cross the SET; the receiver's echo of the new value then follows
# within a re-send or two. A value that is neither the old one nor the one asked for is the receiver's answer
# at once (a name stored in capitals).
OLD_VALUE_GRACE_S: Final = 1.0
# The hub field each settable keyword reports, to compare the receiver's answer with what was asked.
SET_FIELDS: Final = {"Name": "name", "Frequency": "frequency_mhz", "Mute": "muted"}
# a real receiver's replies may arrive on any interface
ALL_INTERFACES: Final = "0.0.0.0"  # nosec B104 # binding every interface is the point, for real receivers only

Source = tuple[str, int]


class SharedSocket(asyncio.DatagramProtocol):
    """One bound UDP socket, shared by every G4 driver using the same local port; routes by source."""

    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key
        self.routes: dict[Source, Callable[[bytes], None]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source = (str(addr[0]), int(addr[1]))
        route = self.routes.get(source)
        if route is None:
            # real receivers answer from 53212 whatever port we addressed; fall back to the address alone
            same_host = [r for (host, _), r in self.routes.items() if host == source[0]]
            route = same_host[0] if len(same_host) == 1 else None
        if route is not None:
            route(data)

    def error_received(self, exc: Exception) -> None:
        pass  # e.g. ICMP port unreachable; the liveness probe decides whether a device is gone

    def sendto(self, data: bytes, target: Source) -> None:
        if self.transport is not None:
            self.transport.sendto(data, target)


_SOCKETS: dict[tuple[Any, ...], SharedSocket] = {}
_SOCKETS_LOCK: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


async def attach(bind_host: str, local_port: int, source: Source, route: Callable[[bytes], None]) -> SharedSocket:
    """Join (or open) the shared socket for ``local_port`` and receive what ``source`` sends."""
    loop = asyncio.get_running_loop()
    key = (loop, bind_host, local_port)
    async with _SOCKETS_LOCK.setdefault(loop, asyncio.Lock()):
        shared = _SOCKETS.get(key)
        if shared is None:
            shared = SharedSocket(key)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: shared, local_addr=(bind_host, local_port), family=socket.AF_INET
            )
            shared.transport = transport
            _SOCKETS[key] = shared
    if source in shared.routes:
        raise ConnectionError(f"{source[0]}:{source[1]} is already watched through local port {local_port}")
    shared.routes[source] = route
    return shared


def check_url(endpoint: Endpoint) -> None:
    """Refuse an IPv6 address where the URL is taken (DriverSpec.check_url, sennheiser-g4 and sennheiser-iem-g4):
    the Media Control Protocol devices speak IPv4 only, and the shared socket is an IPv4 one, so every attempt
    would fail for ever. An IPv4-mapped address has been written as its IPv4 address by Endpoint.parse."""
    if ":" in endpoint.host:
        raise EndpointError(
            f"{endpoint.scheme}: ew G3/G4/2000 and IEM G4 devices speak IPv4 only; give the IPv4 address "
            f"instead of {endpoint.host}"
        )


def detach(shared: SharedSocket, source: Source) -> None:
    shared.routes.pop(source, None)
    if not shared.routes and _SOCKETS.get(shared.key) is shared:
        del _SOCKETS[shared.key]
        if shared.transport is not None:
            shared.transport.close()


@dataclass
class _Waiter:
    keyword: str
    accept: Callable[[Line], bool]
    answer: asyncio.Future[Line] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # sees the keyword's lines that ``accept`` does not take (a SET answered with another value)
    other: Callable[[Line], None] | None = None


@dataclass(frozen=True)
class PreparedCommand:
    command: Command
    keyword: str
    args: tuple[Any, ...]
    hub_value: Any


class G4Driver(UdpDriver):
    """One ew G4 receiver (EM): one channel."""

    family: ClassVar[str] = FAMILY
    model: ClassVar[str] = MODEL
    push_mode: ClassVar[int] = PUSH_MODE
    # what a Config change may have changed, re-read (TI 1254's client rule)
    config_keywords: ClassVar[tuple[str, ...]] = ("Name", "Frequency", "Mute")

    def __init__(self, endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> None:
        super().__init__(endpoint, sink, settings)
        self.local_port = self.url_option(int_option, "local_port", mcp.PORT, 0, 65535)
        self.push_timeout_s = self.url_option(int_option, "push_timeout", 60, 2, 300)
        self.rf_config: mcp.RfConfig = mcp.FALLBACK_RF_CONFIG
        self.state: dict[str, Any] = {}
        self.config_index: int | None = None
        self._source: Source | None = None
        self._socket: SharedSocket | None = None
        self._waiters: list[_Waiter] = []

    # --- lifecycle

    async def connect(self) -> None:
        self.check_options()
        # resolved on the hub's resolver threads, not in the loop's shared pool (hub/names.py)
        addresses = await resolve(
            self.endpoint.host, self.endpoint.port, socket.SOCK_DGRAM, self.settings.io_timeout_s, socket.AF_INET
        )
        self._source = (addresses[0].host, self.endpoint.port)
        # a loopback device (a simulator) is reached from loopback; a real one from every interface
        bind_host = "127.0.0.1" if self._source[0].startswith("127.") else ALL_INTERFACES
        self._socket = await attach(bind_host, self.local_port, self._source, self._received)
        # asked together: a receiver silent on both (G3/2000 command sets are unverified) costs one timeout
        firmware, rf_config = await asyncio.gather(
            self.optional_attribute("FirmwareRevision"), self.optional_attribute("RfConfig")
        )
        await self.refresh_config()
        self.sink.identify(
            unique_id=None,
            family=self.family,
            model=self.model,
            channel_count=1,
            firmware=firmware,
            name=self.state.get("name"),
        )
        self._take_rf_config(rf_config)
        self.sink.update_channel(1, dict(self.state))
        await self.renew()

    async def close(self) -> None:
        await self.cancel_tasks()
        if self._socket is not None and self._source is not None:
            self._send(mcp.encode("Push", 0, 0, 0))  # stop our reports; single commands keep working
            detach(self._socket, self._source)
            self._socket = None

    # --- requests

    def _send(self, data: bytes) -> None:
        if self._socket is not None and self._source is not None:
            self._socket.sendto(data, self._source)

    async def exchange(
        self,
        data: bytes,
        keyword: str,
        accept: Callable[[Line], bool] = lambda line: True,
        timeout: float | None = None,
        other: Callable[[_Waiter, Line], None] | None = None,
    ) -> Line:
        """Send ``data`` until a ``keyword`` line that ``accept`` takes arrives; RefusedError on an error line.

        ``other`` sees every other ``keyword`` line meanwhile and may settle the waiter with it."""
        waiter = _Waiter(keyword.lower(), accept)
        if other is not None:
            waiter.other = lambda line: other(waiter, line)
        self._waiters.append(waiter)
        timeout = timeout or self.settings.io_timeout_s
        try:
            return await resend_until(lambda: self._send(data), waiter.answer, self.retry_s, timeout)
        except TimeoutError:
            raise TimeoutError(f"no answer to {keyword} within {timeout:g} s from {self.address}") from None
        finally:
            self._waiters.remove(waiter)

    @property
    def address(self) -> str:
        host, port = self._source or (self.endpoint.host, self.endpoint.port)
        return f"{host}:{port}"

    async def query(self, keyword: str, timeout: float | None = None) -> Line:
        return await self.exchange(mcp.encode(keyword), keyword, timeout=timeout)

    async def optional_attribute(self, keyword: str) -> Any:
        """An attribute older models may lack: None if refused, unreadable or not answered at all.

        G3 and 2000-series command sets are unverified, so silence is read as "not supported" rather than
        as a dead receiver; the mandatory queries that follow still prove the receiver answers. Half a
        request's wait: a silent receiver is then monitored sooner, and a dead one fails with the name of a
        mandatory query before the hub's limit for the whole connect. An answer arriving after the timeout
        is still taken (see :meth:`_late_optional`).
        """
        try:
            return mcp.decode_attribute(await self.query(keyword, self.settings.io_timeout_s / 2))
        except (RefusedError, mcp.McpFieldError, TimeoutError) as exc:
            self.sink.log.info("carrying on without %s: %s", keyword, exc)
            return None

    async def refresh_config(self) -> None:
        """Read what a Config change may have changed."""
        for keyword in self.config_keywords:
            await self.query(keyword)

    def renew_interval_s(self) -> float:
        # renewing at the timeout itself leaves gaps; five seconds early, or halfway for short timeouts
        return max(self.push_timeout_s - 5.0, self.push_timeout_s / 2)

    async def renew(self) -> None:
        # the cycle has a 100 ms resolution; 0 means reports on change only
        cycle = min(60_000, max(100, round(self.meter_ms / 100) * 100)) if self.meter_ms else 0
        await self.exchange(mcp.encode("Push", self.push_timeout_s, cycle, self.push_mode), "Push")

    async def probe(self) -> None:
        await self.query("Mute")

    # --- what the device sends

    def _received(self, data: bytes) -> None:
        fields: dict[str, Any] = {}
        for line in mcp.parse(data):
            if isinstance(line, ErrorLine):
                self._refuse(line)
                continue
            try:
                mcp.merge_fields(fields, self.channel_fields(line), self.state)
                config_index = mcp.decode_attribute(line) if line.key == "config" else None
                self._late_optional(line)
            except mcp.McpFieldError as exc:
                self.sink.protocol_error(f"unreadable line {line.keyword} {line.text!r}: {exc}")
                continue
            if config_index is not None:
                self._config_seen(config_index)
            for waiter in list(self._waiters):
                if waiter.keyword != line.key or waiter.answer.done():
                    continue
                if waiter.accept(line):
                    waiter.answer.set_result(line)
                elif waiter.other is not None:
                    waiter.other(line)
        self.heard()
        if not fields:
            return
        self.state.update(fields)
        if self.state.get("tx_present") is False:
            fields["tx_muted"] = None  # the mute bits of an absent transmitter mean nothing
        self.sink.update_channel(1, fields)
        if "name" in fields:
            self.sink.update_device({"name": fields["name"]})

    def channel_fields(self, line: Line) -> Mapping[str, Any]:
        return mcp.em_channel_fields(line)

    def _late_optional(self, line: Line) -> None:
        """An optional attribute that arrives with no query waiting (after its timeout): still take it."""
        if any(waiter.keyword == line.key for waiter in self._waiters):
            return  # the query takes it
        if line.key == "rfconfig":
            self._take_rf_config(mcp.decode_attribute(line))
        elif line.key == "firmwarerevision":
            self.sink.update_device({"firmware": mcp.decode_attribute(line)})

    def _take_rf_config(self, rf_config: mcp.RfConfig | None) -> None:
        """The receiver's own tuning range: commands are checked against it, and the hub advertises it."""
        if not rf_config:
            return
        self.rf_config = rf_config
        self.sink.update_capabilities(tuned_capabilities(self.family, rf_config))

    def _refuse(self, error: ErrorLine) -> None:
        keyword = (error.keyword or "").lower()
        pending = [w for w in self._waiters if not w.answer.done() and (w.keyword == keyword or not keyword)]
        if pending:
            pending[0].answer.set_exception(RefusedError(str(error)))

    def _config_seen(self, index: int) -> None:
        # the first index seen may already count a change made between our reads and the first report
        if index != self.config_index:
            self.spawn(self.refresh_config())
            self.config_index = index

    # --- control

    def _frequency_khz(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidValueError(f"{value!r} is not a frequency in MHz")
        khz = round(value * 1000)
        for low, high, step in self.rf_config:
            if low <= khz <= high:
                if (khz - low) % step:
                    raise InvalidValueError(f"{value:g} MHz is not on this receiver's {step} kHz grid")
                return khz
        ranges = ", ".join(f"{low / 1000:g}-{high / 1000:g}" for low, high, _ in self.rf_config)
        raise InvalidValueError(f"{value:g} MHz is outside this receiver's range ({ranges} MHz)")

    def prepare(self, command: Command) -> PreparedCommand:
        # the hub routes a channel command only to a channel the device has: here, channel 1
        kind = command.kind
        if kind in (CommandKind.NAME, CommandKind.DEVICE_NAME):
            # names up to 8 printable ASCII characters (the display; unverified beyond the charset), no space at
            # either end: the receiver keeps it, but its echo cannot carry it (lines are trimmed), so such a name
            # could never be confirmed
            name = MCP_NAME.check(command.value)
            return PreparedCommand(command, "Name", (name,), name)
        if kind is CommandKind.FREQUENCY:
            khz = self._frequency_khz(command.value)
            return PreparedCommand(command, "Frequency", (khz,), khz / 1000)
        if kind is CommandKind.MUTE:
            muted = toggled(kind, command.value, self.state.get("muted"))
            if not isinstance(muted, bool):
                raise InvalidValueError(f"mute takes true, false or 'toggle', not {command.value!r}")
            return PreparedCommand(command, "Mute", (int(muted),), muted)
        if kind is CommandKind.METER_RATE:
            rate = meter_rate(command.value)
            return PreparedCommand(command, "Push", (rate,), rate)
        raise NotSupportedError(f"{self.family} devices have no {kind.value} control")

    async def execute(self, prepared: PreparedCommand) -> CommandResult:
        if prepared.keyword == "Push":
            self.meter_ms = prepared.hub_value
            self.renew_soon()
            return CommandResult(ok=True, value=self.meter_ms)
        wanted = " ".join(str(arg) for arg in prepared.args)
        field_name = SET_FIELDS[prepared.keyword]
        old = self.state.get(field_name)  # held before the SET: a report of it is no answer yet
        grace: list[asyncio.TimerHandle] = []
        old_reported_at: list[float] = []
        loop = asyncio.get_running_loop()

        def confirms(line: Line) -> bool:
            return line.text == wanted or (bool(line.args) and " ".join(line.args[: len(prepared.args)]) == wanted)

        def settle_if_kept(waiter: _Waiter, line: Line) -> None:
            # A receiver keeping its value answers every re-send with it; reports that crossed the SET (a
            # renewal's dump, answers to the previous SET's re-sends still on their way) come together at its
            # start. Only the first is taken for a refusal: on a lossy link the echo of the new value may take
            # longer than the grace, and the SET was then done.
            if old_reported_at[-1] - old_reported_at[0] >= self.retry_s:
                _settle(waiter, line)
            else:
                grace[0] = loop.call_later(OLD_VALUE_GRACE_S, settle_if_kept, waiter, line)

        def other(waiter: _Waiter, line: Line) -> None:
            if self.channel_fields(line).get(field_name) != old:
                waiter.answer.set_result(line)  # neither the old value nor the one asked: the receiver's answer
                return
            old_reported_at.append(loop.time())  # a report that crossed the SET, or the receiver keeping it
            if not grace:
                grace.append(loop.call_later(OLD_VALUE_GRACE_S, settle_if_kept, waiter, line))

        try:
            line = await self.exchange(
                mcp.encode(prepared.keyword, *prepared.args), prepared.keyword, confirms, other=other
            )
        except TimeoutError:
            raise CommandTimeoutError(
                f"{prepared.keyword} {wanted} was not confirmed within {self.settings.io_timeout_s:g} s "
                f"by {self.address}; it may have been done"
            ) from None
        finally:
            for timer in grace:
                timer.cancel()
        if not confirms(line):
            held = self.channel_fields(line).get(field_name)
            return applied_otherwise(f"{prepared.keyword} on {self.address}", held, prepared.hub_value)
        return CommandResult(ok=True, value=prepared.hub_value)


def _settle(waiter: _Waiter, line: Line) -> None:
    if not waiter.answer.done():
        waiter.answer.set_result(line)
