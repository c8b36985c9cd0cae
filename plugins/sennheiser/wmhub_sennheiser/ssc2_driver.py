"""The SSCv2 driver: per device, one HTTPS session of at most two connections, its Server-Sent Events stream
and one for requests (:data:`CONNECTIONS`).

URL: ``sennheiser-ssc2://host[:443]?password=...`` with the options

* ``user`` (default: ``controlSennheiser`` for a Spectera; ``api``, then ``controlSennheiser`` after a 401,
  for any other product), ``password`` or ``password_env``
  (the name of an environment variable holding it, which keeps the secret out of the URL);
* ``fingerprint=<sha256 hex>`` pins a self-signed device certificate; ``verify=false`` turns TLS
  verification off explicitly. Without either, the certificate must chain to a trusted CA;
* ``sse_timeout`` (s, default 60): no event for that long means the stream is dead;
* ``poll`` (s, default 5, or half the hub's ``offline_after_s`` if that is shorter): how often
  ``/api/device/state`` is read, a sign of life when no resource changes;
* ``auth_retry`` (s, default 60): after a 401, no request is sent to the device for this long.

Flow (reference section 2.2): identity, schema, the mapped resources, DELETE the session a previous
connection left behind, open the stream, read the session id from its ``open`` event, then add the
resource paths on a second connection. The state store gets changes as events arrive. A stream that ends is
replaced by a new one (resources read again) while the device stays online, unless none opens within the
hub's ``offline_after_s``. An EW-DX receiver
(identity product ``EWDX…``) has fixed per-channel resources instead (:mod:`wmhub_sennheiser.ewdx_ssc2`):
the driver reads and subscribes to those, skipping the schema.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import email.utils
import functools
import hashlib
import math
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import aiohttp.abc

from hub.backoff import Backoff
from hub.drivers import DeviceSilentError, DeviceSink, Driver, DriverSettings, Endpoint, EndpointError
from hub.model import (
    Command,
    CommandKind,
    CommandResult,
    CommandTimeoutError,
    DeviceUnavailableError,
    InvalidValueError,
    NotSupportedError,
    RefusedError,
)
from hub.names import resolve
from hub.text import device_text, preview
from wmhub_sennheiser import ewdx_ssc2
from wmhub_sennheiser.ewdx_ssc2 import EwdxResourceMap
from wmhub_sennheiser.ssc2 import (
    DEVICE_NAME_MAX_CHARS,
    IDENTITY_PATH,
    MAPPED_PATHS,
    MOBILE_NAME,
    MOBILES_PATH,
    RF_CHANNELS_PATH,
    SCHEMA_PATH,
    SITE_PATH,
    STATE_PATH,
    SUBSCRIPTIONS_PATH,
    Changes,
    ChannelNumbers,
    ResourceMap,
    SseEvent,
    SseParser,
    frequency_problem,
    name_problem,
    schema_paths,
    subscription_paths,
)
from wmhub_sennheiser.udp import applied_otherwise, toggled
from wmhub_sennheiser.values import DeviceJsonError, device_json, text

SCHEME: Final = "sennheiser-ssc2"
DEFAULT_PORT: Final = 443
DEFAULT_USER: Final = "api"
# Spectera's own client logs in as this user (companion-module-sennheiser-spectera src/api.ts getAuthHeader);
# the EW-DX OpenAPI names it too, as "the normal user of the device" (companion-module-sennheiser-ewdx
# api_docs.json, basicAuthControlSennheiser). Used for a Spectera when the URL names no user, and after
# DEFAULT_USER for a product that does not say what it is (a Spectera's product string is not public).
SPECTERA_USER: Final = "controlSennheiser"
# The connections one device's session holds at most: the event stream and one request at a time (the reads,
# the state poll and a command take their turn; each takes milliseconds). It is what the plugin declares as the
# descriptors of one connection (DriverSpec.descriptors), which the hub's open-file budget counts per device: a
# larger pool, unused in steady state, took up to five at a reconnect, and thirty devices under ulimit -n 64 ran
# the hub out of descriptors. The certificate probe (_presented_fingerprint) is a connection of its own, made
# only while connecting, when no request but the failed one is out: it stays within the two.
CONNECTIONS: Final = 2
# A full subscription's first event carries every mobile device and RF channel at once.
MAX_EVENT_BYTES: Final = 1024 * 1024
# How often a stream that sends nothing is checked for framing aiohttp found malformed.
STREAM_CHECK_S: Final = 0.5
# An event stream that lasted this long was a working one: when it ends, a new one is opened at once. One that
# ended sooner is replaced after a growing delay (a device ending every stream must not be asked in a loop).
STREAM_STAYED_UP_S: Final = 30.0
# How long a PUT the device answered waits, once an event shows the field with the value held before (after
# the answer, or while the PUT was out), for an event with the new value before it is settled as refused (the
# device kept its value). Events carry whole
# (Spectera) or merged (EW-DX) objects, so one about something else (a battery level) repeats the old value;
# the event of the change itself follows within moments. A value that is neither the old one nor the one
# asked for is the device's answer at once (a name cut short, a clamped gain).
OLD_VALUE_GRACE_S: Final = 1.0
# A device that answers 429 or 503 with Retry-After is not asked again before then, but never left alone longer
# than this: a hub that believed "come back tomorrow" would watch nothing through the show.
MAX_RETRY_AFTER_S: Final = 60.0
# A 403 (the user may not do this: EW-DX OpenAPI) does not pass by itself: the device is left alone after each,
# for this long at first, doubling (jittered) up to auth_retry.
FORBIDDEN_WAIT_S: Final = 5.0


@dataclass(frozen=True)
class _HoldOff:
    """No request goes to a device before ``until`` (the hub's monotonic clock): it refused our credentials
    (401), forbade what we asked (403) or asked for a pause (Retry-After). ``error`` makes the error to raise
    meanwhile from its message."""

    until: float
    message: str
    error: Callable[[str], ConnectionError]


# Across driver instances (the supervisor makes a new one per attempt), keyed by device URL: the session a lost
# connection left on the device, until when it is not asked (and why), and the growing wait after each 403.
_stale_sessions: dict[str, str] = {}
_held_off: dict[str, _HoldOff] = {}
_forbidden_waits: dict[str, Backoff] = {}


class CredentialsRefusedError(ConnectionError):
    """The device answered 401: the user or password is wrong. Retrying soon would not help."""


class CertificateRefusedError(ConnectionError):
    """The device's TLS certificate is not trusted and was neither pinned nor explicitly accepted."""


class RequestTimeoutError(ConnectionError):
    """A request the device did not answer within the I/O timeout (it may have got it and acted)."""


class NotConnectedError(ConnectionError):
    """No connection to the device could be made: the request was not sent."""


class StreamEndedError(ConnectionError):
    """The event stream ended (closed, a close event, broken framing): a new one is opened."""


@dataclass(eq=False)
class _Watch:
    """What shows that a PUT was applied: ``field_name`` of hub channel ``channel`` (None: the device) in the changes
    published, with the rule of OLD_VALUE_GRACE_S. ``held`` resolves with the value the device holds."""

    channel: int | None
    field_name: str
    expected: Any
    old: Any  # the value shown before the PUT
    held: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    answered: bool = False  # the PUT has been answered: the old value from now on may be the device keeping it
    old_seen: bool = False  # an event showed the old value while the PUT was out (the device's own, perhaps)
    grace: asyncio.TimerHandle | None = None

    def see(self, changes: Changes) -> None:
        fields = changes.device if self.channel is None else changes.channels.get(self.channel, {})
        if self.held.done() or self.field_name not in fields:
            return
        value = fields[self.field_name]
        if value == self.expected or value != self.old:
            self.settle(value)
        elif self.answered:
            self._start_grace()
        else:
            self.old_seen = True

    def answer_arrived(self) -> None:
        self.answered = True
        if self.old_seen:
            self._start_grace()

    def _start_grace(self) -> None:
        if self.grace is None:
            self.grace = asyncio.get_running_loop().call_later(OLD_VALUE_GRACE_S, self.settle, self.old)

    def settle(self, value: Any) -> None:
        if not self.held.done():
            self.held.set_result(value)

    def cancel(self) -> None:
        if self.grace is not None:
            self.grace.cancel()
        self.held.cancel()


class DeviceHttpError(ConnectionError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _true(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _fingerprint(options: Mapping[str, str]) -> bytes | None:
    """The ``fingerprint`` option's SHA-256, or None without one; EndpointError when it is none."""
    if "fingerprint" not in options:
        return None
    try:
        fingerprint = bytes.fromhex(options["fingerprint"].replace(":", ""))
    except ValueError:
        fingerprint = b""
    if len(fingerprint) != hashlib.sha256().digest_size:
        raise EndpointError("fingerprint must be the certificate's SHA-256 as 64 hex digits")
    return fingerprint


def check_url(endpoint: Endpoint) -> None:
    """What of a URL can be told wrong where it is taken (DriverSpec.check_url): a fingerprint no certificate can
    have. The password is looked for at connect, where a password_env variable set later is found."""
    _fingerprint(endpoint.options)


@dataclass(frozen=True)
class Ssc2Options:
    user: str | None  # None: not in the URL; chosen by product (users_for)
    password: str
    verify: bool
    fingerprint: bytes | None
    sse_timeout_s: float
    poll_s: float | None  # None: derived from the hub's silence limit
    auth_retry_s: float

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> Ssc2Options:
        password = options.get("password")
        if password is None and "password_env" in options:
            password = os.environ.get(options["password_env"])
            if password is None:
                raise EndpointError(f"environment variable {options['password_env']!r} is not set")
        if not password:
            raise EndpointError("an SSCv2 device needs password=... (or password_env=VARIABLE)")
        fingerprint = _fingerprint(options)
        try:
            sse_timeout = float(options.get("sse_timeout", 60.0))
            auth_retry = float(options.get("auth_retry", 60.0))
            poll = float(options["poll"]) if "poll" in options else None
        except ValueError as exc:
            raise EndpointError(f"not a number: {exc}") from None
        if not all(
            math.isfinite(seconds) and seconds > 0
            for seconds in (sse_timeout, auth_retry, 1.0 if poll is None else poll)
        ):
            raise EndpointError("sse_timeout, poll and auth_retry must be positive numbers of seconds")
        return cls(
            user=options.get("user") or None,
            password=password,
            verify=_true(options.get("verify", "true")),
            fingerprint=fingerprint,
            sse_timeout_s=sse_timeout,
            poll_s=poll,
            auth_retry_s=auth_retry,
        )

    def users_for(self, product: str | None) -> tuple[str, ...]:
        """The users to log in as, in turn while the device answers 401: the URL's, Spectera's for a Spectera,
        else DEFAULT_USER and then Spectera's."""
        if self.user is not None:
            return (self.user,)
        return (SPECTERA_USER,) if family_of(product) == "spectera" else (DEFAULT_USER, SPECTERA_USER)

    def authorization(self, user: str) -> str:
        """The Basic credentials header (built here: aiohttp's helpers differ between versions)."""
        return "Basic " + base64.b64encode(f"{user}:{self.password}".encode()).decode("ascii")

    def tls(self) -> ssl.SSLContext | aiohttp.Fingerprint | bool:
        if self.fingerprint is not None:
            return aiohttp.Fingerprint(self.fingerprint)
        return ssl.create_default_context() if self.verify else False


def family_of(product: str | None) -> str:
    lowered = (product or "").lower().replace(" ", "").replace("-", "")
    for needle, family in (("spectera", "spectera"), ("tcc", "tcc-m"), ("ewdx", "ew-dx"), ("em4", "ew-dx")):
        if needle in lowered:
            return family
    return "sscv2"


class _HubResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's lookups of the device's name on the hub's resolver threads (hub/names.py): its own resolver
    asks the event loop's shared pool, which names whose DNS never answers exhaust."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        addresses = await resolve(host, port, socket.SOCK_STREAM, self.timeout_s, family)
        numeric = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV  # what aiohttp's own resolvers answer with
        return [
            aiohttp.abc.ResolveResult(
                hostname=host, host=address.host, port=port, family=address.family, proto=0, flags=numeric
            )
            for address in addresses
        ]

    async def close(self) -> None:
        """Nothing to release: the threads are the hub's."""


async def _bounded_body(response: aiohttp.ClientResponse) -> bytes | None:
    """The answer's body, or None if it is longer than MAX_EVENT_BYTES (not read beyond that)."""
    if (response.content_length or 0) > MAX_EVENT_BYTES:
        return None
    body = bytearray()
    while chunk := await response.content.readany():
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            return None
    return bytes(body)


def retry_after_s(value: str | None, now: float) -> float | None:
    """A Retry-After header's wait in seconds (delay-seconds or an HTTP date, against ``now``, epoch seconds);
    None if there is none or it cannot be read."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def _error_detail(body: Any, status: int) -> str | None:
    """What an error answer's body adds to its status line. SSCv2 error bodies are ``{"path", "error": code}``
    (EW-DX OpenAPI); an ``error`` repeating the status adds nothing, another code is named with its path."""

    def said(value: Any) -> str:
        return value if isinstance(value, str) else preview(value)

    if not isinstance(body, Mapping):
        return said(body) if body not in (None, "") else None
    if body.get("message"):
        return said(body["message"])
    code = body.get("error")
    if code is None or code == status:
        return None
    return f"error {said(code)}" + (f" on {said(body['path'])}" if body.get("path") else "")


async def _first_failure(*jobs: Awaitable[None]) -> None:
    """Run jobs until one ends (returning or raising); cancel the rest and pass its outcome on."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Ssc2Driver(Driver):
    def __init__(self, endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> None:
        super().__init__(endpoint, sink, settings)
        self._options: Ssc2Options | None = None
        self._options_error: EndpointError | None = None
        try:
            self._options = Ssc2Options.parse(endpoint.options)
        except EndpointError as exc:
            self._options_error = exc  # raised from connect(), where the supervisor reports it
        # which pack is on which channel, kept with the hub (sink.remember): a new connection or a restarted hub
        # finds every pack on its channel after packs were unpaired or paired (README "Numbering")
        self.resources = ResourceMap(self._recalled_numbers())
        self._kept_numbers = self.resources.numbers.version
        self.ewdx: EwdxResourceMap | None = None  # set instead of ``resources`` for an EW-DX receiver
        self.session_uuid: str | None = None
        self._http: aiohttp.ClientSession | None = None
        self._connecting = False  # in connect(): its requests are sent one after another
        self._stream: aiohttp.ClientResponse | None = None
        self._identity: dict[str, Any] = {}
        self._user = DEFAULT_USER
        self._refused_users: list[str] = []  # the users the device answered 401 this connection
        self._untried_users: list[str] = []  # the users to try next on a 401, while connecting
        self._parser = SseParser(max_event_bytes=MAX_EVENT_BYTES)
        self._pending: list[SseEvent] = []  # events that came with the open event
        self._watches: list[_Watch] = []

    def _recalled_numbers(self) -> ChannelNumbers:
        try:
            return ChannelNumbers.from_memory(self.sink.recall())
        except ValueError as exc:
            self.sink.log.warning("the kept channel numbers are unusable (%s): the packs are numbered afresh", exc)
            return ChannelNumbers()

    @property
    def options(self) -> Ssc2Options:
        if self._options is None:
            raise self._options_error or EndpointError("no options")
        return self._options

    # --- lifecycle

    async def connect(self) -> None:
        self._connecting = True
        try:
            await self._connect()
        finally:
            self._connecting = False

    async def _connect(self) -> None:
        options = self.options
        self._http = aiohttp.ClientSession(
            base_url=f"https://{self._authority()}",
            timeout=aiohttp.ClientTimeout(total=self.settings.io_timeout_s),
            connector=aiohttp.TCPConnector(
                ssl=options.tls(), limit=CONNECTIONS, resolver=_HubResolver(self.settings.io_timeout_s)
            ),
            raise_for_status=False,
        )
        # /api/device/identity is documented as open, but a device may want credentials for it anyway
        self._try_users(options.users_for(None))
        identity = await self._request("GET", IDENTITY_PATH)
        self._identity = dict(identity) if isinstance(identity, Mapping) else {}
        self._try_users(user for user in options.users_for(self._product()) if user not in self._refused_users)
        changes = await self._subscribe()
        self._untried_users = []  # logged in: a 401 from now on means the credentials changed
        # identified (and so shown online) only now: a device whose stream never opens is not being watched
        self._identify()
        self._publish(changes)
        _held_off.pop(self.endpoint.url, None)
        _forbidden_waits.pop(self.endpoint.url, None)

    def _try_users(self, users: Iterable[str]) -> None:
        """Log in as the first of ``users``, and as the next whenever the device answers 401 while connecting."""
        self._user, *self._untried_users = users

    def _product(self) -> str | None:
        product = self._identity.get("product")
        return str(product) if product else None

    async def _subscribe(self) -> Changes:
        """Read the resources, then open an event stream subscribed to them; the changes the reads brought."""
        if family_of(self._product()) == "ew-dx":
            return await self._subscribe_ewdx()
        schema = await self._request("GET", SCHEMA_PATH, optional=True)
        available = schema_paths(schema) if isinstance(schema, Mapping) else None
        subscribe = subscription_paths(available)
        initial: dict[str, Any] = {IDENTITY_PATH: self._identity}
        for path in MAPPED_PATHS[1:]:
            if path in subscribe and (value := await self._request("GET", path, optional=True)) is not None:
                initial[path] = value
        # a device without a schema may lack some documented resources (a TCC M has no transmitters), and
        # one unknown path makes a device refuse the whole add (EW-DX OpenAPI: 400 {"path", "error": 404})
        subscribe = [path for path in subscribe if path not in MAPPED_PATHS or path in initial]
        changes = self.resources.apply_all(initial)
        await self._open_stream(subscribe)
        return changes

    async def _subscribe_ewdx(self) -> Changes:
        """Read every documented EW-DX resource, then subscribe to those the receiver has.

        A missing channel answers 404 (dropped); a channel without a linked transmitter answers 422 on its
        transmitter resources (EW-DX OpenAPI), which stay subscribed so a transmitter switched on shows up.
        A receiver whose product does not name its channel count is probed on the first subscription.
        """
        count = self.ewdx.channel_count if self.ewdx is not None else ewdx_ssc2.channel_count_of(self._product())
        initial: dict[str, Any] = {IDENTITY_PATH: self._identity}
        subscribe: list[str] = []
        for path in ewdx_ssc2.subscription_paths(count or ewdx_ssc2.MAX_CHANNELS):
            if path != IDENTITY_PATH:
                response = await self._send("GET", path)
                async with response:
                    if response.status == 404:
                        continue
                    if response.status != 422:
                        await self._raise_for(response)
                        initial[path] = await self._json(response, path)
                    else:
                        initial[path] = None
            subscribe.append(path)
        if count is None:  # the product did not name its channel count: the channels that answered are the ones
            present = {int(path.split("/")[3]) for path in initial if path.startswith("/api/channel/")}
            count = max(present, default=-1) + 1
        if self.ewdx is None:
            self.ewdx = EwdxResourceMap(count)
        changes = self.ewdx.apply_all(initial)
        await self._open_stream(subscribe)
        return changes

    async def run(self) -> None:
        await _first_failure(self._follow_stream(), self._poll_state())

    async def close(self) -> None:
        try:
            await self._drop_stream()
        finally:
            for watch in self._watches:
                watch.cancel()
            if self._http is not None:
                await self._http.close()

    # --- the stream

    async def _open_stream(self, paths: list[str]) -> None:
        stale = _stale_sessions.pop(self.endpoint.url, None)
        if stale is not None:
            try:
                await self._end_session(stale)
            except DeviceHttpError as exc:  # a session we cannot end must not keep us from opening a new one
                self.sink.log.warning("could not end the previous SSE session %s: %s", device_text(stale, 80), exc)
        assert self._http is not None
        # the stream itself may stay quiet for sse_timeout; only the wait for its headers is bounded here
        async with asyncio.timeout(self.settings.io_timeout_s):
            response = await self._send(
                "GET",
                SUBSCRIPTIONS_PATH,
                headers={"Accept": "text/event-stream"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.settings.io_timeout_s),
            )
        self._stream = response
        await self._raise_for(response)
        try:
            async with asyncio.timeout(self.settings.io_timeout_s):
                self.session_uuid = await self._read_open(response)
        except TimeoutError:
            raise ConnectionError(
                f"the event stream on {self._authority()} sent its headers but did not open (no event) within "
                f"{self.settings.io_timeout_s:g} s"
            ) from None
        _stale_sessions[self.endpoint.url] = self.session_uuid
        await self._request("PUT", f"{SUBSCRIPTIONS_PATH}/{self.session_uuid}/add", body=paths)
        self.sink.log.info("SSE session %s subscribed to %d resources", device_text(self.session_uuid, 80), len(paths))

    async def _read_open(self, response: aiohttp.ClientResponse) -> str:
        """The session id from the stream's first event (falling back to the Content-Location header)."""
        while True:
            chunk = await response.content.readany()
            if not chunk:
                raise ConnectionError("the device closed the event stream before it opened")
            events = self._parser.feed(chunk)
            if events:
                break
        first = events[0]
        opened: Any = {}
        if first.event == "open":
            self._pending = events[1:]
            try:
                opened = first.json()
            except ValueError as exc:  # not JSON, or nested too deeply: the session id is in the header too
                self.sink.protocol_error(f"an SSE open event that is not JSON ({exc}): {first.data[:80]!r}")
        else:  # no open event (unverified devices): keep every event, take the id from the header
            self._pending = events
        if not isinstance(opened, Mapping):
            opened = {}
        found = opened.get("sessionUUID") or opened.get("path") or response.headers.get("Content-Location", "")
        session = str(found).rstrip("/").rpartition("/")[2]
        if not session:
            raise ConnectionError(f"the event stream opened without a session id (first event {first.event!r})")
        return session

    async def _follow_stream(self) -> None:
        """Read events; a stream the device ends is replaced by a new one, the resources read again for what
        the gap missed, while the device stays online: the hub's offline means silence for offline_after_s,
        and a stream is often cut while the device answers on. Offline only if no new stream opens in time."""
        clock = self.sink.clock
        ends = Backoff(cap=self.settings.offline_after_s / 2)
        while True:
            opened_at = clock.monotonic()
            try:
                await self._read_stream()
            except StreamEndedError as ended:
                self.sink.log.info("%s; opening a new event stream", ended)
                if clock.monotonic() - opened_at < STREAM_STAYED_UP_S:
                    await clock.sleep(ends.next_delay())
                else:
                    ends.reset()
                self._publish(await self._resubscribe(ended))

    async def _resubscribe(self, ended: StreamEndedError) -> Changes:
        """Subscribe again, retrying with backoff; give up (the device goes offline) after offline_after_s."""
        clock = self.sink.clock
        limit = self.settings.offline_after_s
        give_up_at = clock.monotonic() + limit
        retries = Backoff(cap=limit / 2)
        while True:
            await self._drop_stream()
            try:
                return await self._subscribe()
            except (CredentialsRefusedError, CertificateRefusedError):
                raise
            except (ConnectionError, TimeoutError) as exc:
                remaining = give_up_at - clock.monotonic()
                if remaining <= 0:
                    said = str(exc) or f"no answer within {self.settings.io_timeout_s:g} s"  # a bare TimeoutError
                    raise ConnectionError(f"{ended}; no new event stream within {limit:g} s: {said}") from None
                self.sink.log.debug("no new event stream yet: %s", exc)
                # not before the device may be asked again; the last attempt at the limit
                await clock.sleep(min(max(retries.next_delay(), self._held_off_for()), remaining))

    async def _drop_stream(self) -> None:
        """Close the stream and end its session; never raises. A session that could not be ended is deleted
        before the next one opens; the half-read event of the old stream must not run into the new one's."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._parser = SseParser(max_event_bytes=MAX_EVENT_BYTES)
        self._pending = []
        session, self.session_uuid = self.session_uuid, None
        if session is not None and self._http is not None:
            try:
                await self._end_session(session)
            except Exception as exc:  # the stale session stays listed (_stale_sessions) for the next attempt
                self.sink.log.debug("could not end SSE session: %s", exc)

    async def _read_stream(self) -> None:
        assert self._stream is not None
        for event in self._pending:
            self._on_event(event.event, event.data)
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the cancellation
                # that stops this driver when a chunk arrives at the same moment
                async with asyncio.timeout(self.options.sse_timeout_s):
                    chunk = await self._next_chunk(self._stream)
            except TimeoutError:
                raise DeviceSilentError(f"no event on the SSE stream for {self.options.sse_timeout_s:g} s") from None
            if not chunk:
                raise StreamEndedError("the device closed the event stream")
            for event in self._parser.feed(chunk):
                self._on_event(event.event, event.data)

    @staticmethod
    async def _next_chunk(stream: aiohttp.ClientResponse) -> bytes:
        """The stream's next bytes; StreamEndedError as soon as its HTTP framing turns out malformed, or its
        connection breaks.

        aiohttp stops reading a response whose chunk framing it cannot parse, but tells the body's reader
        only once the TLS connection has finished closing, which a device that sent garbage may never do:
        the stream would look merely quiet until ``sse_timeout``. When it does tell, the connection is
        already released: its protocol, which holds the reason, is taken first.
        """
        protocol = stream.connection.protocol if stream.connection is not None else None
        read = asyncio.ensure_future(stream.content.readany())
        try:
            while True:
                done, _ = await asyncio.wait({read}, timeout=STREAM_CHECK_S)
                if done and read.exception() is None:
                    return read.result()
                failure = protocol.exception() if protocol is not None else None
                if failure is not None:
                    said = device_text(" ".join(str(failure).split()), 120)
                    raise StreamEndedError(f"the SSE stream is malformed: {said}")
                if done:
                    broken = read.exception()
                    if not isinstance(broken, aiohttp.ClientError | OSError):
                        return read.result()  # raises it: not a connection's failure
                    said = device_text(str(broken) or type(broken).__name__, 120)
                    raise StreamEndedError(f"the event stream broke: {said}")
        finally:
            read.cancel()

    def _on_event(self, kind: str, data: str) -> None:
        if kind == "close":  # django-micboard stops here too (unverified)
            raise StreamEndedError("the device closed the subscription")
        try:
            resources = device_json(data)
        except ValueError:  # not JSON, or nested too deeply
            self.sink.protocol_error(f"an SSE event that is not JSON: {data[:80]!r}")
            return
        # any other event type whose data is {path: value} is applied too, as Spectera's own client does
        # (src/api.ts handleSSEEvent); only a repeated open event is not state
        if kind == "open" or not isinstance(resources, Mapping):
            self.sink.heard()
            return
        self._publish((self.ewdx or self.resources).apply_all(resources))

    async def _poll_state(self) -> None:
        while True:
            await self.sink.clock.sleep(self.options.poll_s or min(5.0, self.settings.offline_after_s / 2))
            try:
                value = await self._request("GET", STATE_PATH, optional=True)
            except DeviceHttpError as exc:
                if exc.status not in (429, 503):
                    raise
                # busy, not gone: the stream carries on, and the silence watchdog judges whether it is alive
                self.sink.log.debug("state poll skipped: %s", exc)
                continue
            self._publish((self.ewdx or self.resources).apply(STATE_PATH, value) if value is not None else Changes())

    async def _end_session(self, session_uuid: str) -> None:
        assert self._http is not None
        response = await self._send("DELETE", f"{SUBSCRIPTIONS_PATH}/{session_uuid}")
        async with response:
            # 422: the device no longer knows the session (it rebooted, or it timed the session out)
            if response.status >= 300 and response.status != 422:
                await self._raise_for(response)
            if _stale_sessions.get(self.endpoint.url) == session_uuid:
                del _stale_sessions[self.endpoint.url]

    # --- into the sink

    def _identify(self) -> None:
        identity = self._identity
        product = str(identity["product"]) if identity.get("product") else None
        resources = self.ewdx or self.resources
        self.sink.identify(
            unique_id=str(identity["serial"]) if identity.get("serial") else None,
            family=family_of(product),
            model=product,
            channel_count=resources.channel_count,
            firmware=self.ewdx.firmware if self.ewdx is not None else None,
            name=resources.site.get("deviceName") or None,
        )

    def _publish(self, changes: Changes) -> None:
        numbers = self.resources.numbers
        if numbers.version != self._kept_numbers:
            self.sink.remember(numbers.memory())
            self._kept_numbers = numbers.version
        if changes.new_channel_count:
            self._identify()
        if changes.device:
            self.sink.update_device(changes.device)
        for index, fields in changes.channels.items():
            self.sink.update_channel(index, fields)
        if not changes:
            self.sink.heard()
        for watch in list(self._watches):
            watch.see(changes)

    # --- HTTP

    def _authority(self) -> str:
        host = self.endpoint.host
        return f"[{host}]:{self.endpoint.port}" if ":" in host else f"{host}:{self.endpoint.port}"

    def _refused_message(self) -> str:
        users = " and ".join(repr(user) for user in self._refused_users)
        return (
            f"{self._authority()} refused the credentials for user{'s' * (len(self._refused_users) > 1)} {users} "
            "(HTTP 401): check the password, and the user (user=... in the URL)"
        )

    def _check_held_off(self) -> None:
        """Raise, sending nothing, while the device is held off (:class:`_HoldOff`)."""
        wait = self._held_off_for()
        if wait > 0:
            held = _held_off[self.endpoint.url]
            raise held.error(f"{held.message}; not asking the device again for {math.ceil(wait)} s")

    def _hold_off(self, seconds: float, message: str, error: Callable[[str], ConnectionError]) -> None:
        _held_off[self.endpoint.url] = _HoldOff(self.sink.clock.monotonic() + seconds, message, error)

    def _held_off_for(self) -> float:
        """How long the device is still held off (0 if it is not)."""
        held = _held_off.get(self.endpoint.url)
        return max(0.0, held.until - self.sink.clock.monotonic()) if held is not None else 0.0

    async def _send(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        """One request as the current user; while connecting, a 401 is asked again as the next user to try."""
        self._check_held_off()
        response = await self._send_as(self._user, method, path, **kwargs)
        while response.status == 401 and self._untried_users:
            response.release()
            self._refused_users.append(self._user)
            self._user = self._untried_users.pop(0)
            response = await self._send_as(self._user, method, path, **kwargs)
        return response

    async def _send_as(
        self, user: str, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        assert self._http is not None
        headers = {"Authorization": self.options.authorization(user), **(headers or {})}
        try:
            return await self._http.request(method, path, allow_redirects=False, headers=headers, **kwargs)
        except aiohttp.ServerFingerprintMismatch as exc:
            raise CertificateRefusedError(
                f"the certificate of {self._authority()} (SHA-256 {exc.got.hex()}) does not match the pinned "
                "fingerprint"
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            seen = await self._presented_fingerprint()
            # the advice first and the TLS library's reason last and short: the whole must fit the 300
            # characters an error is shown with
            reason = device_text(str(exc.certificate_error), 40)
            raise CertificateRefusedError(
                f"the certificate of {self._authority()} is not trusted: if it is the device's own, pin it with "
                f"fingerprint={seen} or opt out with verify=false ({reason})"
            ) from None
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            raise RequestTimeoutError(
                f"{method} {path} on {self._authority()}: no answer within {self.settings.io_timeout_s:g} s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise NotConnectedError(f"{method} {path} on {self._authority()}: {exc}") from None
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"{method} {path} on {self._authority()}: {str(exc) or type(exc).__name__}") from None

    async def _presented_fingerprint(self) -> str:
        """The SHA-256 of the certificate the device presents, so the error can say what to pin. Asked only while
        connecting (:data:`CONNECTIONS`); a certificate refused later ends the connection, and the next connect
        says it."""
        if not self._connecting:
            return "<sha256 of the device certificate>"
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        host, port, timeout_s = self.endpoint.host, self.endpoint.port, self.settings.io_timeout_s
        try:
            # the name resolved on the hub's resolver threads (hub/names.py), as the session's connections do
            address = (await resolve(host, port, socket.SOCK_STREAM, timeout_s))[0]
            async with asyncio.timeout(timeout_s):
                _, writer = await asyncio.open_connection(address.host, port, ssl=unverified, server_hostname=host)
        except (OSError, TimeoutError):
            return "<sha256 of the device certificate>"
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            return hashlib.sha256(der).hexdigest()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _raise_for(self, response: aiohttp.ClientResponse) -> None:
        if response.status < 300:
            return
        if response.status == 401:
            self._refused_users.append(self._user)
            message = self._refused_message()
            self._hold_off(self.options.auth_retry_s, message, CredentialsRefusedError)
            raise CredentialsRefusedError(message)
        if 300 <= response.status < 400:
            # a receiver's API does not redirect; following one could leave the pinned certificate behind
            target = device_text(response.headers.get("Location", "nowhere"), 100)
            raise DeviceHttpError(
                response.status,
                f"{response.method} {response.url.path} on {self._authority()}: redirected ({response.status}) to "
                f"{target}, not followed",
            )
        try:
            raw = await _bounded_body(response)
            body = device_json(raw) if raw is not None else None
        except (ValueError, aiohttp.ClientError):
            body = None
        said = f"{response.status} {response.reason or 'error'}"
        detail = _error_detail(body, response.status)
        if detail:
            said += f": {device_text(detail, 120)}"
        message = f"{response.method} {response.url.path} on {self._authority()}: {said}"
        wait = self._wait_asked_for(response)
        if wait:
            self._hold_off(wait, message, functools.partial(DeviceHttpError, response.status))
        raise DeviceHttpError(response.status, message)

    def _wait_asked_for(self, response: aiohttp.ClientResponse) -> float | None:
        """How long an error answer says to leave the device alone: a 429's or 503's Retry-After (capped), a
        growing wait after a 403; None for no wait."""
        if response.status == 403:
            waits = _forbidden_waits.setdefault(
                self.endpoint.url, Backoff(base=FORBIDDEN_WAIT_S, cap=self.options.auth_retry_s)
            )
            return waits.next_delay()
        if response.status in (429, 503):
            wait = retry_after_s(response.headers.get("Retry-After"), self.sink.clock.now())
            return None if wait is None else min(wait, MAX_RETRY_AFTER_S)
        return None

    async def _request(self, method: str, path: str, *, body: Any = None, optional: bool = False) -> Any:
        """One request, its JSON answer (None for an empty one); ``optional`` turns 404/422 into None."""
        response = await self._send(method, path, json=body)
        async with response:
            if optional and response.status in (404, 422):
                return None
            await self._raise_for(response)
            return await self._json(response, f"{method} {path}")

    @staticmethod
    async def _json(response: aiohttp.ClientResponse, what: str) -> Any:
        """The answer's JSON, None for an empty one; at most MAX_EVENT_BYTES of it, like an event."""
        try:
            body = await _bounded_body(response)
            if body is None:
                raise ConnectionError(
                    f"{what}: answer larger than {MAX_EVENT_BYTES // 1024} KiB, refused unread"
                ) from None
            text = body.decode(response.charset or "utf-8", errors="replace")
            return device_json(text) if text.strip() else None
        except DeviceJsonError as exc:
            raise ConnectionError(f"{what}: unreadable answer ({exc})") from None
        except (aiohttp.ClientError, ValueError, LookupError) as exc:  # cut off, garbled, bad charset
            raise ConnectionError(f"{what}: unreadable answer ({type(exc).__name__}: not JSON)") from None

    # --- control

    async def apply(self, command: Command) -> CommandResult:
        if self.ewdx is not None:
            return await self._apply_ewdx(self.ewdx, command)
        if command.kind is CommandKind.DEVICE_NAME:
            name = self._valid_name(command.value, DEVICE_NAME_MAX_CHARS)
            old = text(self.resources.site.get("deviceName"))
            return await self._write(SITE_PATH, {"deviceName": name}, _Watch(None, "name", name, old))
        if command.kind is CommandKind.NAME:
            name = MOBILE_NAME.check(command.value)
            mt_path, mobile = self._mobile_path(command)
            old = text(mobile.get("name"))
            body = self._mobile_body(mobile, name=name)
            return await self._write(mt_path, body, _Watch(command.channel, "name", name, old))
        if command.kind is CommandKind.FREQUENCY:
            khz = self._valid_khz(command.value)
            _, mobile = self._mobile_path(command)
            rf_id = mobile.get("rfChannelId")
            if rf_id is None:
                raise NotSupportedError(f"channel {command.channel} is not on an RF channel")
            old_khz = self.resources.rf_channel_khz(rf_id)
            watch = _Watch(command.channel, "frequency_mhz", khz / 1000, None if old_khz is None else old_khz / 1000)
            # rfChannelId in the body as Spectera's own client sends it (src/actions.ts "RF - Frequency"); whether
            # a real base station also takes the bare {"frequency"} is unverified
            return await self._write(f"{RF_CHANNELS_PATH}/{rf_id}", {"rfChannelId": rf_id, "frequency": khz}, watch)
        if command.kind is CommandKind.IDENTIFY:
            mt_path, mobile = self._mobile_path(command)
            # momentary: the 2xx is the confirmation
            return await self._write(mt_path, self._mobile_body(mobile, identify=True), None)
        raise NotSupportedError(f"SSCv2 devices have no {command.kind.value} control in the documented resources")

    async def _apply_ewdx(self, ewdx: EwdxResourceMap, command: Command) -> CommandResult:
        """The hub has already checked the channel; the declared capabilities normally keep other kinds
        away, but a device whose capabilities are unknown gets any kind (a meter-rate retune, say)."""
        if command.channel is None:
            if command.kind is not CommandKind.IDENTIFY:
                # no device name either: the document's /api/device/site has no PUT
                raise NotSupportedError(f"an EW-DX receiver over SSCv2 has no device-level {command.kind.value}")
            write = ewdx_ssc2.DEVICE_IDENTIFY
        else:
            value = toggled(command.kind, command.value, ewdx.channels.get(command.channel, {}).get("muted"))
            write = ewdx_ssc2.channel_write(command.kind, command.channel - 1, value, ewdx.band)
        if write.field is None:  # momentary: the 2xx is the confirmation
            return await self._write(write.path, write.body, None)
        old = ewdx.channels.get(command.channel or 0, {}).get(write.field)
        return await self._write(write.path, write.body, _Watch(command.channel, write.field, write.expected, old))

    @staticmethod
    def _valid_name(value: object, max_chars: int) -> str:
        problem = name_problem(value, max_chars)
        if problem is not None:
            raise InvalidValueError(problem)
        return str(value)

    @staticmethod
    def _valid_khz(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidValueError(f"frequency {value!r} is not a number of MHz")
        try:
            khz = round(float(value) * 1000)
        except (ValueError, OverflowError):  # OverflowError: "inf" or 1e400 cannot be rounded
            raise InvalidValueError(f"frequency {value!r} is not a number of MHz") from None
        problem = frequency_problem(khz)
        if problem is not None:
            raise InvalidValueError(problem)
        return khz

    def _mobile_path(self, command: Command) -> tuple[str, dict[str, Any]]:
        mobile = self.resources.mobile(command.channel) if command.channel is not None else None
        if mobile is None or mobile.get("mtUid") is None:
            raise DeviceUnavailableError(f"no paired transmitter on channel {command.channel}")
        return f"{MOBILES_PATH}/{mobile['mtUid']}", mobile

    @staticmethod
    def _mobile_body(mobile: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
        """A mobile device's PUT body: the changes plus its mtUid and type, as Spectera's own client sends them
        (src/api.ts setMobileDevice); the type only when the device reported one. Whether a real base station
        also takes the changes alone is unverified."""
        identity = {key: mobile[key] for key in ("mtUid", "type") if mobile.get(key) is not None}
        return {**changes, **identity}

    async def _write(self, path: str, body: dict[str, Any], watch: _Watch | None) -> CommandResult:
        """PUT a partial object; settled once the answer or an SSE event shows the value the device holds.

        Without ``watch`` (a momentary action) the 2xx is the confirmation."""
        if watch is not None:
            self._watches.append(watch)
        try:
            try:
                answer = await self._request("PUT", path, body=body)
            except (DeviceHttpError, CredentialsRefusedError) as exc:
                raise RefusedError(str(exc)) from None
            except RequestTimeoutError as exc:
                raise CommandTimeoutError(f"{exc}; it may have been done") from None
            except NotConnectedError as exc:
                raise DeviceUnavailableError(str(exc)) from None
            except ConnectionError as exc:  # lost while the device had the request
                raise DeviceUnavailableError(f"{exc}; it may have been done") from None
            if watch is None:
                return CommandResult(ok=True, value=True)
            watch.answer_arrived()
            if isinstance(answer, Mapping):
                self._publish((self.ewdx or self.resources).apply(path, answer))
            try:
                async with asyncio.timeout(self.settings.io_timeout_s):
                    held = await watch.held
            except TimeoutError:
                raise CommandTimeoutError(
                    f"the device answered PUT {path} but showed no new {watch.field_name} within "
                    f"{self.settings.io_timeout_s:g} s; it may have been done"
                ) from None
        finally:
            if watch is not None:
                self._watches.remove(watch)
                watch.cancel()
        if held != watch.expected:
            return applied_otherwise(f"{path} {watch.field_name}", held, watch.expected)
        return CommandResult(ok=True, value=watch.expected)
