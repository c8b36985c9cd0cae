"""A retained summary (the device list, the open alerts) sent at once after a quiet spell and, during a burst of
changes, at most once per spacing, always as it is when it goes out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Paced:
    """Calls ``send`` for each change, but no sooner than ``spacing()`` seconds after the last call: a change
    within that time makes one call when it has passed, which reads the newest state then."""

    def __init__(self, send: Callable[[], None], spacing: Callable[[], float]) -> None:
        self._send = send
        self._spacing = spacing
        self._sent_at: float | None = None
        self._due: asyncio.TimerHandle | None = None

    @property
    def due(self) -> bool:
        """A call is waiting for its spacing to pass."""
        return self._due is not None

    def changed(self) -> None:
        if self._due is not None:
            return  # the call already due reads the newest state when it runs
        loop = asyncio.get_running_loop()
        wait = 0.0 if self._sent_at is None else self._sent_at + self._spacing() - loop.time()
        if wait <= 0:
            self.send_now()
        else:
            self._due = loop.call_later(wait, self.send_now)

    def send_now(self) -> None:
        """Call ``send`` at once (a start, a stop that must not leave a change unsent), ending any wait."""
        if self._due is not None:
            self._due.cancel()
            self._due = None
        self._sent_at = asyncio.get_running_loop().time()
        self._send()

    def flush(self) -> None:
        """Send the change that is waiting, if one is."""
        if self._due is not None:
            self.send_now()

    def cancel(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None
