"""The plugin API for drivers: what a plugin implements (:class:`Driver`, :class:`PollingDriver`) and what the
hub hands it (:class:`Endpoint`, :class:`DriverSettings`, a :class:`DeviceSink`).

A plugin's driver owns the connection to one device. The hub's supervisor (:mod:`hub.supervisor`, internal)
calls ``connect``, then ``run`` (which streams or polls state into the :class:`DeviceSink` until the
connection is lost), and ``close`` on every way out. Reconnects use capped exponential backoff with jitter.
A device that sends nothing for ``offline_after_s`` is marked offline and reconnected, whatever the driver
believes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from hub.clock import Clock
from hub.model import Capabilities, Command, CommandResult, NotSupportedError
from hub.redact import SECRET_KEYS, redact
from hub.text import URL_PREVIEW_CHARS, has_controls, preview


class EndpointError(ValueError):
    """A device URL that cannot be used: the message says why."""


# The URL option that names a device whose protocol reports no serial or MAC (``shure://10.0.0.5?id=rack1-a``):
# its id then survives a new address. Drivers ignore it; the hub reads it (hub.devices.DeviceHandle.identify).
ID_OPTION: Final = "id"


# One label of a host name as RFC 1123 writes it: letters, digits and inner hyphens, at most 63 of them (an
# internationalised name is written in its xn-- form, as DNS carries it); and underscores, which no RFC 1123
# name has but resolvers take (/etc/hosts, Docker service names, Windows DHCP names): a host the system
# reaches is never refused here.
_HOST_LABEL: Final = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_HOST_NAME_MAX: Final = 253


def _is_host(host: str) -> bool:
    """Whether ``host``, as urlsplit gives it (lower case, an IPv6 address without its brackets), is an IP
    address or a host name: what else is typed there (two addresses, a quote, a space) cannot be reached,
    and the hub would try it for ever."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.removesuffix(".").split(".")
        return (
            len(host) <= _HOST_NAME_MAX
            and all(_HOST_LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit()  # 10.0.0.300 is a mistyped address: no name ends in digits (RFC 3696)
        )
    return True


def unusable_address(host: str) -> str | None:
    """What ``host`` is when it is an address no receiver can have, in words for an error line: the unspecified
    address (``0.0.0.0``, ``::``, which reach this machine), a multicast group, the limited broadcast address. None
    for any other address and for a name. Discovery skips such addresses and Endpoint.parse refuses them."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # without an IPv6 address's zone
    except ValueError:
        return None
    if address.is_unspecified:
        return "the unspecified address (any address of this machine), no receiver's"
    if address.is_multicast:
        return "a multicast group, no receiver's address"
    if address == ipaddress.IPv4Address("255.255.255.255"):
        return "the broadcast address, no receiver's"
    return None


def _canonical_host(host: str) -> str:
    """``host`` (as urlsplit gives it: lower case) written one way however it was typed, so that every spelling
    of one address is one device with one id: an IP address in its short form (``0:0::1`` and ``0::1`` are
    ``::1``; an IPv4-mapped ``::ffff:10.0.0.5`` is ``10.0.0.5``), a name without the root's dot (``rx.lan.`` is
    ``rx.lan``, which /etc/hosts answers too)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.removesuffix(".")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def redact_url(url: str) -> str:
    """``url`` (an :class:`Endpoint`'s, or any text holding one) with its password and every secret option
    (``password=``, ``token=``, ...) replaced by ``***``, as the hub writes URLs in its logs, REST and MQTT:
    for a plugin's own log lines and errors (:func:`hub.redact.redact`, the plugin API's name for it)."""
    return redact(url)


def with_options(url: str, **options: str) -> str:
    """``url`` with query options added, e.g. ``with_options(url, id="demo-ulxd4q")``."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *options.items()])
    return urlunsplit(parts._replace(query=query))


def _check_query(query: str, fragment: str, where: str) -> None:
    """Refuse a query a driver would read differently from what its writer meant, which is mostly a password
    holding a character a URL gives a meaning to: the driver would send the wrong password, and no redaction
    can tell where such a password ends in a log line (the part after the '#', the '&' or the space would be
    shown). Nothing of the query is repeated in the message."""
    advice = "write '#' as %23, '&' as %26, '+' as %2B and a space as %20 inside a value"
    if fragment or "#" in query:
        raise EndpointError(f"{where}: a device URL has no '#' part ({advice})")
    for item in query.split("&") if query else ():
        key, equals, value = item.partition("=")
        if not equals:
            raise EndpointError(f"{where}: an option without '=' in the URL ({advice})")
        if unquote_plus(key).strip().lower() in SECRET_KEYS and (" " in value or "+" in value):
            raise EndpointError(f"{where}: the {unquote_plus(key)} option holds a '+' or a space ({advice})")


@dataclass(frozen=True)
class Endpoint:
    """Where a device is reached: ``scheme://host[:port][?option=value&...]``; ``url`` as given, ``host`` in one
    spelling however it was written (an IP address in its short form, a name in lower case without a final dot)."""

    url: str
    scheme: str
    host: str
    port: int
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str, default_port: int | None = None) -> Endpoint:
        """Read ``url``; raise :class:`EndpointError` saying why it cannot be used.

        Every device URL the hub takes (REST, MQTT, the configuration, discovery, the database) passes here:
        one with a character no name holds either (hub.text.has_controls: C0, DEL, C1, line separators,
        direction overrides) is refused whole, before it could reach a log line, /metrics
        or a terminal, and the message repeats none of it (urlsplit silently drops a tab or a line break)."""
        if has_controls(url):  # what no device URL holds, each of which would reach a terminal or a log raw
            raise EndpointError(
                "a device URL must not contain control characters (escape sequences, line breaks, tabs, NUL); "
                "percent-encode them inside an option's value"
            )
        parts = urlsplit(url)
        shown = preview(
            redact(url), URL_PREVIEW_CHARS
        )  # a URL of 100 KB (a pasted file) is no reason for an error line of 100 KB
        if not parts.scheme or not parts.hostname:
            raise EndpointError(f"{shown} is not a device URL (expected scheme://host[:port])")
        if not _is_host(parts.hostname):
            raise EndpointError(
                f"{shown}: the host is neither an IP address nor a host name (letters, digits and '-' between "
                "dots; an internationalised name in its xn-- form); one device per URL"
            )
        host = _canonical_host(parts.hostname)
        if (unusable := unusable_address(host)) is not None:
            raise EndpointError(f"{shown}: {host} is {unusable}")
        try:
            port = parts.port
        except ValueError:  # urllib's message repeats the port as written: all 100 KB of it
            raise EndpointError(f"{shown}: its port is not a number from 1 to 65535") from None
        if port == 0:  # a listening socket's "any port"; no device is reached there
            raise EndpointError(f"{shown}: port 0 is no device's port")
        if port is None:
            if default_port is None:
                raise EndpointError(f"{shown} needs a port")
            port = default_port
        _check_query(parts.query, parts.fragment, f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}")
        return cls(
            url=url,
            scheme=parts.scheme.lower(),
            host=host,
            port=port,
            options=dict(parse_qsl(parts.query)),
        )

    def respelled(self, other: str) -> str:
        """``other``, another spelling of this endpoint's URL (the same :attr:`identity`), written as this one is:
        with ``other``'s user, password and options (a corrected password replaces the old, in the user part or
        an option), the scheme, host, port and path as the hub holds them, so that the stored device, its
        credentials and its health keep one URL."""
        given = urlsplit(other)
        held = urlsplit(self.url)
        user = given.netloc.rpartition("@")[0]
        place = held.netloc.rpartition("@")[2]
        # each option in the held order, as written in ``other`` (its value may be a corrected password)
        written = {_option_name(segment): segment for segment in given.query.split("&") if segment}
        query = "&".join(written.get(_option_name(segment), segment) for segment in held.query.split("&") if segment)
        return urlunsplit(held._replace(netloc=f"{user}@{place}" if user else place, query=query))

    @property
    def identity(self) -> str:
        """What two URLs of one receiver share, however spelled: its scheme, host, port (the plugin's default
        where none is written) and options, any password masked (a changed password is the same device)."""
        parts = urlsplit(self.url)
        host = f"[{self.host}]" if ":" in self.host else self.host  # one spelling of it, as parse gives it
        userinfo, at, _ = parts.netloc.rpartition("@")
        path = "" if parts.path == "/" else parts.path
        options = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))  # in any order
        return redact(urlunsplit((self.scheme, f"{userinfo}{at}{host}:{self.port}", path, options, "")))

    @property
    def host_port_id(self) -> str:
        """A device-id suffix for devices that report no serial."""
        return f"{self.host.replace('.', '_').replace(':', '_')}_{self.port}"


def _option_name(segment: str) -> str:
    return unquote_plus(segment.partition("=")[0])


# The most a driver's memory of its device (DeviceSink.remember) holds, as JSON text in UTF-8: a few packs' channel
# numbers, not a cache of the device's state.
MAX_MEMORY_BYTES: Final = 16 * 1024


@dataclass(frozen=True)
class DriverSettings:
    """Hub-wide settings every driver honours; plugin-specific ones come from ``Endpoint.options``."""

    meter_rate_ms: int = 1000
    io_timeout_s: float = 5.0
    offline_after_s: float = 10.0


class DeviceSink(Protocol):
    """What a driver writes to. Field names are the model's (hub.model.Channel / Device).

    ``clock`` is the hub's clock: a driver's own waits (a poll interval, a renewal) run on it, so a test with a
    simulated clock moves them without waiting."""

    log: logging.LoggerAdapter[logging.Logger]
    clock: Clock

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

    def update_capabilities(self, capabilities: Capabilities) -> None:
        """Optional: replace what this device reports and accepts by what it told of itself once connected
        (its own tuning range, say), where its plugin's ``device_capabilities`` answer for the family is wider.
        Checked like that answer (hub.capcheck); a device whose capabilities are not Capabilities keeps the
        family's. Call it after :meth:`identify`, which starts again from the family's on every connection."""

    def update_channel(self, index: int, fields: Mapping[str, Any]) -> None:
        """Merge channel fields. Only the fields given change; None means 'reported unknown'."""

    def heard(self, readings: int = 0) -> None:
        """Traffic arrived: the device is still alive. ``readings``: how many meter readings came with it,
        held or merged at once, counted on /metrics (``wmhub_meter_readings_total``) so an operator sees what
        the receivers send."""

    def defer_meters(self, merge: Callable[[], None]) -> None:
        """Hold meter readings until somebody wants them: the hub calls ``merge`` once, when its consumers
        next look at levels (at most every ``StateStore.meter_look_interval()``), and ``merge`` then calls
        :meth:`update_channel` with the newest readings, which may only be meter fields
        (``hub.model.METER_FIELDS``). A receiver metering ten times a second then costs the hub one
        decode per look, not ten. Call it again after each merge for the readings that arrive next."""

    def protocol_error(self, detail: str) -> None:
        """Something arrived that could not be parsed (counted on /metrics; the driver carries on)."""

    def recall(self) -> Any:
        """What this device's driver last kept with :meth:`remember`, as JSON decodes it (a dict's keys are
        text), or None when nothing is kept. It survives a new connection and a hub restart (the hub's
        database holds it, by the device's URL) and is gone once the device is removed. A kept value the hub
        cannot read back (damaged, larger than ``MAX_MEMORY_BYTES``) is logged once and answered as None: check
        the shape of what comes back, the device must work without it."""

    def remember(self, value: Any) -> None:
        """Keep ``value`` for this device, replacing what was kept: what the driver must not lose when the hub
        restarts, such as numbering it made up itself (SSCv2: which transmitter is on which channel). JSON
        only (dicts with text keys, lists, text, finite numbers, true, false, null), at most
        ``MAX_MEMORY_BYTES`` encoded; anything else is refused like a wrong field (a protocol error, logged
        once) and the kept value stays. Written to the database behind the driver's back: call it when the
        value changes, not on every report."""


# The deadline of the command the hub is applying, seen by the driver's apply: a context variable, so that a
# driver written before deadlines (its apply takes the command alone) is called as ever.
_command_deadline: ContextVar[float | None] = ContextVar("wmhub_command_deadline", default=None)


def command_deadline() -> float | None:
    """Inside :meth:`Driver.apply`: when the command's sender stops waiting for it (an MQTT ``deadline``, the
    hub clock's ``now()``: compare it with ``sink.clock.now()``), or None for a command without one (REST, the
    board, Home Assistant). The hub calls ``apply`` only before it. A driver that waits before it sends (for
    the device to answer earlier requests, for a new connection) raises
    :class:`hub.model.CommandExpiredError` instead of sending once it has passed: a command carried out after
    its sender reported a failure is worse than none. A driver that sends at once need not look."""
    return _command_deadline.get()


@contextmanager
def applying_by(deadline: float | None) -> Iterator[None]:
    """For the hub: :func:`command_deadline` answers ``deadline`` to the driver code called inside (and to
    the tasks it starts)."""
    token = _command_deadline.set(deadline)
    try:
        yield
    finally:
        _command_deadline.reset(token)


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
        """Carry out a command; return only once the device confirmed it. Raise a CommandError. A command with
        a deadline (:func:`command_deadline`) is not sent after it."""
        raise NotSupportedError(f"{type(self).__name__} has no controls")


class PollingDriver(Driver):
    """A driver for pull protocols: ``poll`` is called every ``poll_interval_s`` (on the hub's clock) while
    connected."""

    poll_interval_s: float = 1.0

    @abstractmethod
    async def poll(self) -> None:
        """Query the device once and write what it answered into the sink. Raise when it fails."""

    async def run(self) -> None:
        while True:
            await self.poll()
            await self.sink.clock.sleep(self.poll_interval_s)


class DeviceSilentError(ConnectionError):
    """Nothing was heard from the device for longer than ``offline_after_s``."""


class ConnectAgainError(ConnectionError):
    """The hub breaks a connection off as soon as it is made, to make it again at once: the device turned out
    to be one whose driver memory (``DeviceSink.recall``) is kept under its id, moved here from another
    address, and the driver had recalled before it said which device it is (so, nothing)."""


class UnsupportedDeviceError(Exception):
    """The device answered, but it is nothing the plugin can monitor (e.g. an unknown model).

    Raise it from ``connect``, after ``identify`` with ``channel_count=0`` so the device is shown with the
    model it reported. The supervisor says why once and asks again only every ``UNSUPPORTED_RETRY_S``
    (the address may later hold a supported receiver)."""


class PacedReader:
    """A stream connection's reads, handed to the driver without letting one device hold the hub.

    Every device, the MQTT client and the web server share one event loop. A device that sends faster
    than the hub parses (a flood, a firmware loop replying to itself) fills every read to the socket's
    buffer, up to 256 KB that take a tenth of a second and more to parse; handled whole, each such read
    stalls everything else. Use one as the protocol's ``data_received`` and :meth:`attach` the transport:

    - a read smaller than ``slice_bytes`` (every read of a receiver at a normal rate) goes to ``handle`` at
      once, untimed;
    - a larger one is handed over in slices of at most ``slice_bytes``, cut after ``boundary`` (the end of a
      message) where there is one, for at most ``slice_s`` per turn of the loop, with reading paused until
      the last slice is handled: the other connections run in between, and TCP slows the device down;
    - once the large reads of a connection have used ``share`` of the current ``window_s``, the rest waits
      for the next window; ``on_throttled`` is called the first time (a warning worth saying once).

    ``handle`` must take a stream cut anywhere, as a stream reader must anyway.
    """

    def __init__(
        self,
        handle: Callable[[bytes], None],
        *,
        boundary: bytes = b"",
        on_throttled: Callable[[], None] | None = None,
        share: float = 0.2,
        window_s: float = 1.0,
        slice_bytes: int = 4096,
        slice_s: float = 0.005,
    ) -> None:
        self._handle = handle
        self._boundary = boundary
        self._on_throttled = on_throttled
        self.share = share
        self.window_s = window_s
        self.slice_bytes = slice_bytes
        self.slice_s = slice_s
        self.throttled = 0  # windows whose share was used up
        self._transport: asyncio.ReadTransport | None = None
        self._unread = b""
        self._window_start = 0.0
        self._used = 0.0
        self._next_step: asyncio.Handle | None = None

    @property
    def unread(self) -> int:
        """Bytes read from the socket and not handed over yet."""
        return len(self._unread)

    def attach(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's stream transports have pause_reading and the rest without being asyncio.Transport
        # subclasses: an isinstance check here left a flood unpaced on the loop the hub runs on
        pausable = hasattr(transport, "pause_reading") and hasattr(transport, "resume_reading")
        self._transport = cast(asyncio.ReadTransport, transport) if pausable else None

    def close(self) -> None:
        """The connection is gone: what was not handed over never will be."""
        if self._next_step is not None:
            self._next_step.cancel()
            self._next_step = None
        self._unread = b""

    def __call__(self, data: bytes) -> None:
        if self._unread or self._next_step is not None:  # came before reading paused: waits its turn
            self._unread += data
        elif len(data) < self.slice_bytes:
            self._handle(data)
        else:
            self._unread = data
            self._step()

    def _step(self) -> None:
        self._next_step = None
        transport = self._transport
        if transport is not None and transport.is_closing():
            self.close()
            return
        started = now = time.perf_counter()
        if started - self._window_start >= self.window_s:
            self._window_start, self._used = started, 0.0
        boundary, most = self._boundary, self.slice_bytes
        while self._unread:
            unread = self._unread
            cut = unread.rfind(boundary, 0, most) + len(boundary) if boundary else 0
            if cut <= 0:
                cut = most
            self._unread = unread[cut:]  # before handling: the handler may close the connection
            self._handle(unread[:cut])
            now = time.perf_counter()
            if now - started >= self.slice_s:
                break
        self._used += now - started
        over = self._used >= self.share * self.window_s
        if over:
            self.throttled += 1
            if self.throttled == 1 and self._on_throttled is not None:
                self._on_throttled()
        if not self._unread and not over:
            self._resume_reading()
            return
        if transport is not None and transport.is_reading():
            transport.pause_reading()
        loop = asyncio.get_running_loop()
        if over:  # the rest of this window is the other connections'
            self._next_step = loop.call_later(self._window_start + self.window_s - now, self._next_window)
        else:
            self._next_step = loop.call_soon(self._step)

    def _next_window(self) -> None:
        self._window_start, self._used = time.perf_counter(), 0.0
        if self._unread:
            self._step()
        else:
            self._next_step = None
            self._resume_reading()

    def _resume_reading(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing() and not transport.is_reading():
            transport.resume_reading()
