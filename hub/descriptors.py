"""The open-file limit and the device connections it leaves room for (docs/deployment.md, "Limits").

Each receiver's connection is a descriptor. Under a low limit (``ulimit -n 64`` in a small container, a NAS
image, an embedded box whose hard limit the hub cannot raise) the receivers once took every descriptor: the
web server could not listen or accept, MQTT could not reconnect, SQLite could not open its files. The device
manager now connects at most :meth:`DescriptorBudget.capacity` devices at once; the others wait, not
connected, until a connection frees its descriptor (a device removed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
from collections.abc import Callable
from typing import Final

log = logging.getLogger("hub.devices")

# Descriptors the hub keeps for everything that is not a device connection: what it holds before its first
# device connects (measured 17-20 on Linux: stdio, the log, the event loop's epoll/eventfd/io_uring, its
# self-pipes, the data dir's lock, SQLite's database and WAL) and room for the edges after (the web server's
# listening socket and its clients' connections, a board and a few API calls; MQTT's connection and its
# reconnect; SQLite's journal and the files read at start). `wmhub run`'s warning counts with it too.
DESCRIPTOR_RESERVE: Final = 32
# room kept above the descriptors measured open when the first device connects, should those be more than
# DESCRIPTOR_RESERVE allows for (descriptors the hub inherited, a plugin's own sockets)
EDGE_HEADROOM: Final = 16
# the warning about devices waiting is written this long after the first one waits: a start or a batch of
# devices added is counted as one, not as "1 waits"
WAITING_SAID_AFTER_S: Final = 1.0


def open_file_limit() -> int | None:
    """The soft RLIMIT_NOFILE, or None when there is none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY or soft < 0 else soft


def descriptors_in_use() -> int | None:
    """How many descriptors this process has open (Linux's /proc/self/fd, the BSDs' and macOS's /dev/fd), or
    None where neither can be listed. The listing itself takes one, which is not counted."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return max(0, len(os.listdir(directory)) - 1)
        except OSError:
            continue
    return None


def device_connection_limit(soft: int, in_use: int | None = None) -> int:
    """How many device connections ``soft`` open files leave room for, never below 0: ``soft`` less the
    reserve, or less what is open now (``in_use``) and EDGE_HEADROOM when that is more."""
    reserve = DESCRIPTOR_RESERVE if in_use is None else max(DESCRIPTOR_RESERVE, in_use + EDGE_HEADROOM)
    return max(0, soft - reserve)


class DescriptorBudget:
    """Hands out one descriptor per device connection, at most :attr:`capacity` at once; a device that finds
    none free waits (FIFO) until one is released.

    It counts the hub's own device connections, not the descriptors the process has open: a count of those
    (/proc/self/fd) changes with every web client and file SQLite opens, so a waiting device would have to poll
    it, and devices connecting at once would all see the same free ones before any opened its socket. A count
    of connections is exact, is released at the moment a connection closes, and wakes exactly one waiting
    device. What it does not count (the hub's own descriptors, a plugin's extra sockets) is what the reserve is
    for: measured once when the first device asks (``in_use``), so the capacity follows what the hub holds
    then, and a fixed DESCRIPTOR_RESERVE where that cannot be measured.
    """

    def __init__(
        self,
        limit: Callable[[], int | None] = open_file_limit,
        in_use: Callable[[], int | None] = descriptors_in_use,
    ) -> None:
        self._limit = limit
        self._in_use = in_use
        self._soft: int | None = None
        self._capacity: int | None = None
        self._measured = False
        self._free: asyncio.Semaphore | None = None
        self.held = 0
        self.waiting = 0
        self._said: asyncio.TimerHandle | None = None
        self._warned = False

    @property
    def capacity(self) -> int | None:
        """Device connections allowed at once; None (no bound) without an open-file limit. Measured at the first
        :meth:`acquire`: ``wmhub run`` raises the limit after the hub is built."""
        if not self._measured:
            self._measured = True
            self._soft = self._limit()
            if self._soft is not None:
                self._capacity = device_connection_limit(self._soft, self._in_use())
        return self._capacity

    def reason(self) -> str:
        """What a waiting device shows as its ``last_error`` (``/api/health``)."""
        if not self._capacity:
            return (
                f"waiting: the hub's open-file limit ({self._soft}) leaves no room for device connections "
                "(raise the limit: docs/deployment.md)"
            )
        return (
            f"waiting: the hub's open-file limit ({self._soft}) leaves room for {self._capacity} device "
            "connections, all in use; it connects when one is free (raise the limit: docs/deployment.md)"
        )

    async def acquire(self, waits: Callable[[str], None]) -> None:
        """Take a descriptor for one connection; ``waits(reason)`` is called first when none is free."""
        capacity = self.capacity
        if capacity is None:
            return
        if self._free is None:
            self._free = asyncio.Semaphore(capacity)
        if self._free.locked() or capacity == 0:
            self.waiting += 1
            waits(self.reason())
            if self._said is None and not self._warned:
                self._said = asyncio.get_running_loop().call_later(WAITING_SAID_AFTER_S, self._say_waiting)
            acquired = False
            try:
                await self._free.acquire()
                acquired = True
            finally:
                self.waiting -= 1
                if self.waiting == 0 and self._warned:
                    self._warned = False  # the next device to wait is said again
                    if acquired:  # not the hub stopping, nor the last waiting device removed
                        log.info("no device waits for a descriptor any more (open-file limit %s)", self._soft)
        else:
            await self._free.acquire()
        self.held += 1

    def release(self) -> None:
        if self._free is None:
            return
        self.held -= 1
        self._free.release()

    def _say_waiting(self) -> None:
        self._said = None
        if self.waiting == 0:
            return
        self._warned = True
        kept = (self._soft or 0) - (self._capacity or 0)
        if not self._capacity:
            log.warning(
                "the hub's open-file limit (%s) leaves no room for device connections: %d device(s) wait, not "
                "connected (%d descriptors are kept for the web server, MQTT and the database; raise the limit "
                "with ulimit -n or systemd's LimitNOFILE=, docs/deployment.md)",
                self._soft,
                self.waiting,
                kept,
            )
            return
        log.warning(
            "the hub's open-file limit (%s) leaves room for %d device connections: %d device(s) wait, not "
            "connected, until one is free (a device removed or down; %d descriptors are kept for the web server, "
            "MQTT and the database; raise the limit with ulimit -n or systemd's LimitNOFILE=, docs/deployment.md)",
            self._soft,
            self._capacity,
            self.waiting,
            kept,
        )
