"""A loop the hub runs beside its work for as long as it runs (the loop monitor, the heap trimmer)."""

from __future__ import annotations

import asyncio
import contextlib


class BackgroundLoop:
    """``start()`` from inside the event loop, ``await stop()``; subclasses write ``_run`` and may refuse to
    start (``_should_run``)."""

    name = "background loop"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def _should_run(self) -> bool:
        return True

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None and self._should_run():
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
