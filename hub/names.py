"""Resolving device host names, on threads of the hub's own (docs/adr/0015-name-resolution-threads.md).

A plugin resolves a device's host name with :func:`resolve` and connects to the addresses it returns, never
with ``loop.create_connection(host, ...)``, ``loop.getaddrinfo`` or an HTTP client's own resolver. Those
resolve in a pool the event loop shares (asyncio's default executor, which ``asyncio.to_thread`` and so the
frequency checks use too; libuv's four threads under uvloop): a name whose DNS never answers holds a thread
of it for as long as libc keeps asking (timeout 5 s x attempts 2 by default), a cancelled await does not
free it, and a few such names stopped every other lookup and every search, and made the hub's stop wait
for them. Here:

* lookups run on daemon threads of their own, at most :data:`THREADS` at once; a name asked for again
  while its lookup is still running (a reconnect after a timed-out one) joins that lookup, so a hanging
  name holds one thread, whatever the number of retries, and delays no other name's lookup until
  :data:`THREADS` names hang at once;
* the caller waits at most its ``timeout``; the lookup it leaves carries on, and the next attempt of the
  caller (after the supervisor's backoff) takes its answer if it has come;
* nothing waits for these threads at the stop: a lookup stuck in libc ends with the process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, NamedTuple, TypeVar

Answer = TypeVar("Answer")

# How many lookups may run at once. One per distinct name: lookups beyond it wait for a thread, which a
# hanging name gives back when libc gives up on it (about 10 s by default).
THREADS: Final = 32


class Address(NamedTuple):
    """One address a name resolved to, as ``socket.getaddrinfo`` gives it."""

    family: socket.AddressFamily
    sockaddr: tuple[Any, ...]  # (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6

    @property
    def host(self) -> str:
        """The address as text: for messages, and for ``loop.create_connection(host=...)``, which then looks
        nothing up."""
        return str(self.sockaddr[0])


_Key = tuple[str, int, int, int]  # host, port, family, socket type


# the names whose last answer is kept for answered(): one per device host, bounded against a flood of made-up
# names (REST adds, discovery), the oldest forgotten first
KEPT_ANSWERS: Final = 4096


class _Resolver:
    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._answers: dict[str, frozenset[str]] = {}  # host: the addresses its last lookup gave
        self._lock = threading.Lock()
        self._running: dict[_Key, concurrent.futures.Future[list[Address]]] = {}
        self._waiting: deque[_Key] = deque()  # looked up in turn by the threads that are running
        self._workers = 0

    def lookup(self, key: _Key) -> concurrent.futures.Future[list[Address]]:
        with self._lock:
            found = self._running.get(key)
            if found is not None:
                return found
            # marked running at once: a waiter's cancellation (asyncio.wrap_future passes it on) cannot cancel
            # a lookup other waiters share
            found = concurrent.futures.Future()
            found.set_running_or_notify_cancel()
            self._running[key] = found
            self._waiting.append(key)
            if self._workers < self._threads:
                self._workers += 1
                # a daemon thread: the interpreter's exit does not wait for a lookup stuck in libc
                threading.Thread(target=self._work, name="wmhub resolver", daemon=True).start()
            return found

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._workers -= 1
                    return
                key = self._waiting.popleft()
                found = self._running[key]
            host, port, family, kind = key
            try:
                infos = socket.getaddrinfo(host, port, family, kind)
            except Exception as exc:  # handed to the waiters, whose error it is
                with self._lock:
                    del self._running[key]  # before the answer: a retry after a failure asks again
                found.set_exception(exc)
                continue
            addresses = _addresses(infos)
            with self._lock:
                del self._running[key]
                self._answers.pop(host, None)  # the newest last: forgotten last
                self._answers[host] = frozenset(address.host for address in addresses)
                if len(self._answers) > KEPT_ANSWERS:
                    del self._answers[next(iter(self._answers))]
            found.set_result(addresses)

    def answered(self, host: str) -> frozenset[str]:
        with self._lock:
            return self._answers.get(host, frozenset())


_RESOLVER: Final = _Resolver(THREADS)


def _addresses(infos: list[tuple[Any, ...]]) -> list[Address]:
    addresses: list[Address] = []
    for family, _, _, _, sockaddr in infos:
        address = Address(family, tuple(sockaddr))
        if address not in addresses:  # one entry per protocol where a type allows several
            addresses.append(address)
    return addresses


def answered(host: str) -> frozenset[str]:
    """The addresses (as text) the last lookup of ``host`` gave, by any driver, for any port; none when it was
    never looked up here or did not resolve. Asks nothing."""
    return _RESOLVER.answered(host.lower())


async def resolve(
    host: str,
    port: int,
    kind: socket.SocketKind,
    timeout: float,
    family: socket.AddressFamily = socket.AF_UNSPEC,
) -> list[Address]:
    """The addresses ``host`` resolves to, in the order ``getaddrinfo`` gives them (RFC 6724's: IPv6 first
    where the machine has it), for sockets of ``kind`` (``socket.SOCK_STREAM`` or ``socket.SOCK_DGRAM``).

    Connect to each in turn until one works. Raises ``socket.gaierror`` (an ``OSError``) for a name that does
    not resolve, and ``TimeoutError`` naming the host when no answer came within ``timeout`` seconds.
    An address given as text (``192.0.2.7``, ``::1``) is returned without a thread.
    """
    try:  # a literal address: nothing to ask, and no thread to wait for
        infos = socket.getaddrinfo(host, port, family, kind, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    else:
        return _addresses(infos)
    found = _RESOLVER.lookup((host.lower(), port, family, kind))
    try:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the cancellation that stops a driver
        async with asyncio.timeout(timeout):
            return await asyncio.wrap_future(found)
    except TimeoutError:
        raise TimeoutError(f"no answer from DNS for {host} within {timeout:g} s") from None


async def first_answering(
    addresses: Sequence[Address],
    timeout: float,
    attempt: Callable[[Address, float], Awaitable[Answer]],
    give_up: Callable[[], Awaitable[None]],
    silence: type[OSError],
) -> Answer:
    """What ``attempt(address, share)`` returns at the first of ``addresses`` (from :func:`resolve`) that
    answers, each address given its ``share`` of ``timeout``. For UDP, whose connect cannot fail, so only
    silence tells that an address is not the device's (a name with an IPv6 and an IPv4 address, the device on
    the second): an address whose attempt raises an ``OSError`` (``silence``, or no route to it) is left for
    the next once ``give_up`` has closed what the attempt opened. When the last is silent too, its ``silence``
    names every address tried."""
    share = timeout / len(addresses)
    for address in addresses[:-1]:
        try:
            return await attempt(address, share)
        except OSError:
            await give_up()
    try:
        return await attempt(addresses[-1], share)
    except silence as silent:
        if len(addresses) == 1:
            raise
        tried = ", ".join(address.host for address in addresses)
        raise silence(f"{silent} (nor at its other addresses: {tried}, {share:g} s each)") from None
