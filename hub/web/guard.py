"""The web edge's defences below the routes: per-connection limits, and which Host and Origin are ours.

* A client must send each request's headers within ``http.header_timeout_s``, or the connection is closed;
  a connection that sends nothing at all between requests is closed after ``IDLE_TIMEOUT_S``. aiohttp alone
  keeps a connection that sent half a request open forever (its keep-alive timer stops at the first byte),
  so a few thousand of them exhaust the hub's file descriptors.
* One client address may hold ``http.max_connections_per_client`` connections; more are closed at once.
* A request aiohttp's parser refuses (a byte beyond ASCII in the path, a header over 8 KiB, a second Host,
  Content-Length with Transfer-Encoding, a body in an encoding it cannot read) is answered with the API's
  JSON error and logged at debug level (:class:`JsonErrorHandler`).
* The Host header must name this hub (its configured host, ``localhost``, this machine's name or one of its
  addresses, or ``http.allowed_hosts``): a page on another site whose name was re-pointed at the hub's
  address (DNS rebinding) is refused. The live WebSocket's Origin, when sent, must be the hub's own: the Host's
  name and port (or one of ``http.cors_origins``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import Counter
from typing import cast
from urllib.parse import urlsplit

import ifaddr
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from hub.config import HttpSettings
from hub.descriptors import open_file_limit
from hub.text import preview
from hub.web.routing import HTTP_ERROR_CODES, error_response

log = logging.getLogger("hub.web")

# a keep-alive connection with nothing half-sent: aiohttp's own default, so browsers reuse theirs as before
IDLE_TIMEOUT_S = 75.0


class ConnectionLimits:
    """How many connections each client address holds, and how many were refused."""

    def __init__(self, per_client: int, header_timeout_s: float) -> None:
        self.per_client = per_client
        self.header_timeout_s = header_timeout_s
        self.open: Counter[str] = Counter()
        self.refused = 0
        self.timed_out = 0

    def admit(self, peer: str) -> bool:
        if self.open[peer] >= self.per_client:
            self.refused += 1
            return False
        self.open[peer] += 1
        return True

    def release(self, peer: str) -> None:
        self.open[peer] -= 1
        if self.open[peer] <= 0:
            del self.open[peer]


class JsonErrorHandler(RequestHandler):
    """aiohttp's handler of one connection (without an access log: the hub logs what it needs itself), whose
    answer to a request its parser refuses is the API's JSON error. aiohttp's own is plain text repeating the
    request's bytes, logged at error level with a traceback each time, so anyone on the LAN could fill the
    hub's log with them; ``handle_error`` is aiohttp's hook for that answer."""

    __slots__ = ()

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if status >= 500:  # not the client's doing (the routes' own failures never reach here: hub.web.server)
            return super().handle_error(request, status, exc, message)
        log.debug("refused a malformed request from %s: %s", request.remote, preview(message or exc))
        response = error_response(status, HTTP_ERROR_CODES.get(status, "http_error"), "the request is not valid HTTP")
        response.force_close()  # what follows on the connection cannot be read as a request either
        return response


class GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the limits: admitted or closed at once, and closed
    when no request's headers arrived within the timeout (nor a request is being answered)."""

    def __init__(self, handler: RequestHandler, limits: ConnectionLimits) -> None:
        self._handler = handler
        self._limits = limits
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._timer: asyncio.TimerHandle | None = None
        self._requests_seen = 0
        self._partial = False  # bytes arrived that did not (yet) make a request
        self._idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if peer else ""
        if not self._limits.admit(self._peer):
            log.debug("refused a connection from %s: it holds %d already", self._peer, self._limits.per_client)
            transport.abort()
            return
        self._transport = transport
        self._handler.connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        # _request_count counts requests whose headers aiohttp has parsed: the one signal it gives of progress
        self._requests_seen = self._handler._request_count
        self._partial = False
        self._idle_since = asyncio.get_running_loop().time()
        self._schedule()

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._limits.header_timeout_s, self._check)

    def _check(self) -> None:
        self._timer = None
        handler = self._handler
        if handler._request_count != self._requests_seen or handler._request_in_progress:
            self._arm()
            return
        idle_for = asyncio.get_running_loop().time() - self._idle_since
        if not self._partial and idle_for < IDLE_TIMEOUT_S:
            self._schedule()
            return
        self._limits.timed_out += 1
        log.debug("closed a connection from %s: no whole request within %g s", self._peer, idle_for)
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        before = self._handler._request_count
        self._handler.data_received(data)
        if self._handler._request_count == before:
            self._partial = True

    def eof_received(self) -> None:
        self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return  # refused: aiohttp never saw it
        if self._timer is not None:
            self._timer.cancel()
        self._limits.release(self._peer)
        self._transport = None
        self._handler.connection_lost(exc)


class GuardedSite(web.TCPSite):
    """A TCP site whose every connection goes through :class:`GuardedConnection`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: ConnectionLimits) -> None:
        super().__init__(runner, host, port, reuse_address=True)
        self.limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would bind without the guard
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def connection() -> GuardedConnection:
            # None is aiohttp's documented "no access log", which its annotation (Logger) leaves out
            handler = JsonErrorHandler(server, loop=loop, access_log=None)  # type: ignore[arg-type]
            return GuardedConnection(handler, self.limits)

        where = f"[{self._host}]:{self._port}" if ":" in str(self._host) else f"{self._host}:{self._port}"
        try:
            listening = await loop.create_server(
                connection,
                self._host,
                self._port,
                backlog=self._backlog,
                reuse_address=True,
            )
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise WebListenError(f"cannot listen on {where}: {_out_of_descriptors(exc)}") from exc
            if exc.errno is None:  # Python 3.13+: no address got a socket ("could not bind on any address")
                raise WebListenError(f"cannot listen on {where}: {_why_no_socket()}") from exc
            raise
        if not listening.sockets:
            # asyncio before 3.13 skips an address whose socket it cannot create (no descriptor left: the
            # receivers' sockets took them all) and starts a server that listens nowhere; the hub then read its
            # port from nothing
            listening.close()
            raise WebListenError(f"cannot listen on {where}: {_why_no_socket()}")
        self._server = listening


class WebListenError(OSError):
    """The web server could not listen: the address and the cause, in one line (``the hub stopped: …``)."""


def _out_of_descriptors(exc: OSError) -> str:
    if exc.errno == errno.ENFILE:
        return "the system's open-file table is full (fs.file-max)"
    limit = open_file_limit()
    return (
        f"the open-file limit ({limit if limit is not None else 'unlimited'}) is reached; raise it with ulimit -n "
        "or systemd's LimitNOFILE= (docs/deployment.md)"
    )


def _why_no_socket() -> str:
    try:
        socket.socket().close()
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return _out_of_descriptors(exc)
        return f"no socket could be opened ({exc.strerror or exc})"
    return "no socket could be opened for it"


def our_host_names(settings: HttpSettings) -> frozenset[str]:
    """Every name and address a legitimate request may carry in its Host header."""
    hostname = socket.gethostname()
    names = {settings.host, "localhost", "127.0.0.1", "::1", hostname, f"{hostname}.local", *settings.allowed_hosts}
    for adapter in ifaddr.get_adapters():
        for address in adapter.ips:
            names.add(address.ip if isinstance(address.ip, str) else address.ip[0])
    return frozenset(name.lower().rstrip(".") for name in names)


def host_of(header: str) -> str:
    """``example.org`` from ``example.org:8058``, ``::1`` from ``[::1]:8058``; lower case."""
    return _split_host(header)[0]


def _split_host(header: str) -> tuple[str, int | None]:
    if header.startswith("["):
        name, _, rest = header[1:].partition("]")
        port = rest.removeprefix(":")
        return name.lower(), int(port) if port.isdigit() else None
    name, colon, port = header.rpartition(":")
    if colon and port.isdigit():
        return name.lower().rstrip("."), int(port)
    return header.lower().rstrip("."), None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def same_origin(origin: str, host: str) -> bool:
    """Whether a page from ``origin`` is one of this hub's own, reached by the ``Host`` header's name: the
    same name and port. A Host without a port (a reverse proxy on 80 or 443) matches either default port;
    a page of another service on this machine (the same name on another port) is another site."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    name, port = _split_host(host)
    if parts.hostname is None or parts.hostname.rstrip(".") != name:
        return False
    return origin_port == port if port is not None else origin_port in _DEFAULT_PORTS.values()
