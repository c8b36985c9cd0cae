"""Helpers for tests of the store and of its consumers (REST, MQTT, board): a store on a simulated clock
that runs only when stepped, and a one-call way to put a receiver with channels into a state store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.clock import SimulatedClock
from hub.model import Channel, Device
from hub.persistence.db import WriterSettings
from hub.persistence.services import Persistence, StoreSettings
from hub.state import StateStore


def quick_settings(**overrides: Any) -> StoreSettings:
    """Default settings with a writer that flushes and retries fast (tests wait on it, not on time)."""
    writer = WriterSettings(flush_interval_s=0.01, retry_interval_s=0.05)
    return StoreSettings(**{"writer": writer, **overrides})


async def open_simulated(
    data_dir: Path | str, state: StateStore | None = None, clock: SimulatedClock | None = None, **settings: Any
) -> Persistence:
    """A store whose history and alerts move only on ``clock.advance(...)`` followed by ``store.step()``;
    ``data_dir`` :data:`~hub.persistence.db.IN_MEMORY` keeps it in memory (a test that never reopens it)."""
    return await Persistence.open(
        data_dir,
        state if state is not None else StateStore(),
        clock=clock or SimulatedClock(),
        settings=quick_settings(**settings),
        start_ticker=False,
    )


def put_receiver(state: StateStore, device_id: str, channels: int = 2, **channel_fields: Any) -> Device:
    """Add an online receiver whose channels all carry ``channel_fields`` (a transmitter is on by default)."""
    fields = {"tx_present": True, **channel_fields}
    device = Device(
        id=device_id,
        vendor=device_id.split("-", 1)[0],
        host="127.0.0.1",
        port=2202,
        online=True,
        channels=[Channel(index=index, **fields) for index in range(1, channels + 1)],
    )
    state.add_device(device)
    return device
