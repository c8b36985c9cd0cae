"""paho-mqtt over a socket asyncio owns: opening it (TCP, then TLS without blocking the loop), and the
socket as paho sees it, which gathers every packet of a loop iteration into one write.

paho's own connect blocks the calling thread, so :func:`open_socket` connects with asyncio and
:class:`HandedSocketClient` takes the connected socket instead (hub.mqtt.client drives both)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from hub import names
from hub.mqtt.brokers import BrokerAddress


class CoalescingSocket:
    """The socket as paho sees it: every send is gathered and written once per loop iteration.

    paho writes each packet with its own ``send()``; a burst of meter messages would cost one system
    call each. Here they are appended to one buffer, flushed by a single ``send`` at the end of the
    loop iteration (and by the writer callback while the socket is full). paho never sees a partial
    write, so packets stay whole and in order, and QoS 0 packets built by
    :func:`~hub.mqtt.frames.qos0_publish` can join the same buffer without paho.
    """

    def __init__(
        self, sock: socket.socket, loop: asyncio.AbstractEventLoop, on_broken: Callable[[OSError], None]
    ) -> None:
        self.sock = sock
        self._loop = loop
        self._on_broken = on_broken
        self._fd = sock.fileno()
        self._out = bytearray()
        self._flush_pending = False
        self._writer = False

    def send(self, data: bytes | bytearray | memoryview) -> int:
        self._out += data
        if not self._flush_pending and not self._writer:
            self._flush_pending = True
            self._loop.call_soon(self._flush)
        return len(data)

    def flush(self) -> None:
        """Send what is buffered now; a flush already scheduled finds nothing left."""
        if not self._writer:
            self._flush()

    def _flush(self) -> None:
        self._flush_pending = False
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                break
            except OSError as exc:
                self._out.clear()
                self._on_broken(exc)
                break
            del self._out[:sent]
        if self._out and not self._writer:
            self._loop.add_writer(self._fd, self._flush)
            self._writer = True
        elif not self._out and self._writer:
            self._loop.remove_writer(self._fd)
            self._writer = False

    @property
    def buffered(self) -> int:
        return len(self._out)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def pending(self) -> int:
        return self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def close(self) -> None:
        # paho closes right after queueing DISCONNECT: send what the socket takes now, without waiting
        self._flush()
        if self._writer:
            self._loop.remove_writer(self._fd)
            self._writer = False
        self._out.clear()
        self.sock.close()


class HandedSocketClient(paho.Client):
    """paho, connecting over a socket that asyncio has already opened (paho's own connect blocks)."""

    handed_socket: CoalescingSocket | None = None

    def _create_socket(self) -> Any:
        sock, self.handed_socket = self.handed_socket, None
        if sock is None:
            raise ConnectionError("no connected socket was handed to the MQTT client")
        return sock


async def open_socket(
    loop: asyncio.AbstractEventLoop, address: BrokerAddress, tls_context: ssl.SSLContext | None, timeout_s: float
) -> socket.socket:
    """A non-blocking socket connected to ``address`` (TLS handshake done when it asks for TLS). The broker's
    name is resolved within ``timeout_s`` on the hub's resolver threads, not in the loop's shared pool, where a
    name whose DNS never answers held a thread and the hub's stop (docs/adr/0015-name-resolution-threads.md)."""
    resolved = (await names.resolve(address.host, address.port, socket.SOCK_STREAM, timeout_s))[0]
    sock = socket.socket(resolved.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, resolved.sockaddr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_context is None or not address.tls:
            return sock
        return await _tls_handshake(
            loop, tls_context.wrap_socket(sock, server_hostname=address.host, do_handshake_on_connect=False)
        )
    except BaseException:
        sock.close()
        raise


async def _tls_handshake(loop: asyncio.AbstractEventLoop, sock: ssl.SSLSocket) -> ssl.SSLSocket:
    """Run the TLS handshake on a non-blocking socket, waiting for the loop to say when to go on."""
    while True:
        try:
            sock.do_handshake()
            return sock
        except ssl.SSLWantReadError:
            await _ready(loop, sock, write=False)
        except ssl.SSLWantWriteError:
            await _ready(loop, sock, write=True)


async def _ready(loop: asyncio.AbstractEventLoop, sock: socket.socket, write: bool) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)
