"""The open-file limit and the device connections it leaves room for (docs/deployment.md, "Limits").

Each receiver's connection holds descriptors: one socket for most, several for a driver that keeps an event
stream beside its requests (what its ``DriverSpec.descriptors`` declares). Under a low limit (``ulimit -n 64``
in a small container, a NAS image, an embedded box whose hard limit the hub cannot raise) the receivers once
took every descriptor: the web server could not listen or accept, MQTT could not reconnect, SQLite could not
open its files. The device manager now lets connections hold at most :meth:`DescriptorBudget.capacity`
descriptors at once; the other devices wait, not connected, until a connection frees its descriptors (a device
removed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
from collections import deque
from collections.abc import Callable, Sequence
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
    """How many descriptors ``soft`` open files leave for device connections, never below 0: ``soft`` less the
    reserve, or less what is open now (``in_use``) and EDGE_HEADROOM when that is more."""
    reserve = DESCRIPTOR_RESERVE if in_use is None else max(DESCRIPTOR_RESERVE, in_use + EDGE_HEADROOM)
    return max(0, soft - reserve)


def taken_per_connection(descriptors: int, room: int) -> int:
    """What one connection that may hold ``descriptors`` takes of ``room``: all of it when it may hold more (it
    then connects alone, rather than wait for descriptors that can never be free). A room of 0 fits none."""
    return min(descriptors, room) if room else descriptors


def connections_fitting(room: int, descriptors: Sequence[int]) -> int:
    """How many connections, holding ``descriptors`` each and taking their turn in that order, fit in ``room``
    at once: the budget lets none pass the first one that does not fit."""
    if not room:
        return 0
    free = room
    for count, wanted in enumerate(descriptors):
        taken = taken_per_connection(wanted, room)
        if taken > free:
            return count
        free -= taken
    return len(descriptors)


class DescriptorBudget:
    """Hands out descriptors to device connections, as many to each as its driver spec declares it may hold
    (``DriverSpec.descriptors``), at most :attr:`capacity` at once; a device that finds too few free waits, in
    turn (FIFO: one that needs several is not passed by others that need fewer), until enough are released. A
    connection declaring more than the whole capacity takes all of it: it connects when no other device holds
    any, alone, rather than wait for descriptors that can never be free (said once in the log).

    It counts what the hub's device connections may hold, not the descriptors the process has open: a count of
    those (/proc/self/fd) changes with every web client and file SQLite opens, so a waiting device would have to
    poll it, and devices connecting at once would all see the same free ones before any opened its socket. A
    count per connection is exact, is released at the moment a connection closes, and wakes the devices waiting
    in turn. What it does not count (the hub's own descriptors, a plugin's sockets beyond its declaration) is
    what the reserve is for: measured once when the first device asks (``in_use``), so the capacity follows
    what the hub holds then, and a fixed DESCRIPTOR_RESERVE where that cannot be measured.
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
        self._free = 0
        # the devices waiting, in turn: how many descriptors each takes, and the future that gives it them
        self._turns: deque[tuple[int, asyncio.Future[None]]] = deque()
        self.held = 0  # descriptors held by connections
        self.holders = 0  # connections holding them
        self.waiting = 0
        self._said: asyncio.TimerHandle | None = None
        self._warned = False
        self._said_whole: set[int] = set()  # declarations larger than the capacity, said in the log

    @property
    def capacity(self) -> int | None:
        """Descriptors device connections may hold at once; None (no bound) without an open-file limit. Measured at
        the first :meth:`acquire`: ``wmhub run`` raises the limit after the hub is built."""
        if not self._measured:
            self._measured = True
            self._soft = self._limit()
            if self._soft is not None:
                self._capacity = device_connection_limit(self._soft, self._in_use())
                self._free = self._capacity
        return self._capacity

    def reason(self, taken: int = 1) -> str:
        """What a waiting device whose connection takes ``taken`` descriptors shows as its ``last_error``
        (``/api/health``)."""
        if not self._capacity:
            return (
                f"waiting: the hub's open-file limit ({self._soft}) leaves no room for device connections "
                "(raise the limit: docs/deployment.md)"
            )
        needs = "one is free" if taken == 1 else f"{taken} are free"
        return (
            f"waiting: the hub's open-file limit ({self._soft}) leaves room for {self._capacity} descriptors of "
            f"device connections, in use; it connects in turn when {needs} (raise the limit: docs/deployment.md)"
        )

    async def acquire(self, waits: Callable[[str], None], descriptors: int = 1) -> int:
        """Take what one connection that may hold ``descriptors`` needs (:func:`taken_per_connection`);
        ``waits(reason)`` is called first when too few are free. Returns the count taken, for :meth:`release`
        (0 without a bound)."""
        capacity = self.capacity
        if capacity is None:
            return 0
        taken = taken_per_connection(descriptors, capacity)
        if capacity and descriptors > capacity and descriptors not in self._said_whole:
            self._said_whole.add(descriptors)
            log.warning(
                "the hub's open-file limit (%s) leaves room for %d descriptors of device connections, fewer than "
                "the %d one connection may hold: such a device connects only when no other device holds any, "
                "alone (raise the limit with ulimit -n or systemd's LimitNOFILE=, docs/deployment.md)",
                self._soft,
                capacity,
                descriptors,
            )
        if capacity and not self._turns and self._free >= taken:
            self._take(taken)
            return taken
        await self._wait_turn(taken, waits)
        return taken

    async def _wait_turn(self, taken: int, waits: Callable[[str], None]) -> None:
        self.waiting += 1
        waits(self.reason(taken))
        if self._said is None and not self._warned:
            self._said = asyncio.get_running_loop().call_later(WAITING_SAID_AFTER_S, self._say_waiting)
        turn = asyncio.get_running_loop().create_future()
        entry = (taken, turn)
        self._turns.append(entry)
        acquired = False
        try:
            await turn
            acquired = True
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # given its descriptors just as it was cancelled
                self.release(taken)
            elif entry in self._turns:  # else a release in the cancelling turn already dropped it
                self._turns.remove(entry)
                self._give_turns()  # the device first in turn went: those after it may fit now
            raise
        finally:
            self.waiting -= 1
            if self.waiting == 0 and self._warned:
                self._warned = False  # the next device to wait is said again
                if acquired:  # not the hub stopping, nor the last waiting device removed
                    log.info("no device waits for a descriptor any more (open-file limit %s)", self._soft)

    def _take(self, taken: int) -> None:
        self._free -= taken
        self.held += taken
        self.holders += 1

    def _give_turns(self) -> None:
        """Give the devices waiting their descriptors, in turn, while the first of them fits; a device cancelled
        (removed, or the hub stopping) whose task has not run since is passed over."""
        while self._turns and self._capacity:
            taken, turn = self._turns[0]
            if turn.cancelled():
                self._turns.popleft()
                continue
            if taken > self._free:
                return
            self._turns.popleft()
            self._take(taken)
            turn.set_result(None)

    def release(self, taken: int) -> None:
        """Give back what :meth:`acquire` returned."""
        if self._capacity is None:
            return
        self._free += taken
        self.held -= taken
        self.holders -= 1
        self._give_turns()

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
            "the hub's open-file limit (%s) leaves room for %d descriptors of device connections, which %d "
            "connection(s) hold: %d device(s) wait, not connected, until enough are free (a device removed or "
            "down; %d descriptors are kept for the web server, MQTT and the database; raise the limit with "
            "ulimit -n or systemd's LimitNOFILE=, docs/deployment.md)",
            self._soft,
            self._capacity,
            self.holders,
            self.waiting,
            kept,
        )
