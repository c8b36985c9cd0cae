"""The store on the real device path: a simulated Shure receiver over loopback TCP, the hub's driver,
device manager and state store, and the store wired the way the hub wires it (real clock, own ticker)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from wmhub_shure.simulator import ShureSimulator

from hub.devices import DeviceHandle
from hub.drivers import DriverSettings
from hub.persistence import (
    AlertEvent,
    AlertKind,
    AlertSettings,
    HistoryPoint,
    HistorySettings,
    NotFoundError,
    Persistence,
    Source,
    Tier,
)
from hub.persistence.testing import quick_settings
from hub.testing import DriverHarness, eventually

FAST_ALERTS = AlertSettings(battery_for_s=0.2, offline_for_s=0.2, clear_after_s=0.2)
ONE_SECOND_BUCKETS = HistorySettings(tiers=(Tier(1, 3600), Tier(60, 24 * 3600)))


async def history_of(store: Persistence, device_id: str, channel: int, timeout: float = 5.0) -> list[HistoryPoint]:
    """Poll history with a deadline until a first bucket of the channel is closed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            points = await store.history.query(device_id, channel, store.clock.now() - 60)
        except NotFoundError:
            points = []
        if points:
            return points
        assert time.monotonic() < deadline, f"no history for {device_id} channel {channel} after {timeout} s"
        await asyncio.sleep(0.05)


async def test_known_device_alert_history_and_health_from_a_live_receiver(tmp_path: Path) -> None:
    settings = DriverSettings(meter_rate_ms=100, io_timeout_s=1.0, offline_after_s=1.0)
    async with ShureSimulator("ulxd4d", seed=5) as sim, DriverHarness("shure", settings=settings) as hub:
        store = await Persistence.open(
            tmp_path,
            hub.store,
            settings=quick_settings(
                tick_s=0.05,
                health_every_s=0.1,
                alerts=FAST_ALERTS,
                history=ONE_SECOND_BUCKETS,
                clear_name_on_device_rename=True,
            ),
            health_source=hub.manager.health,
        )
        try:
            store.devices.url_check = hub.manager.resolve
            events: list[AlertEvent] = []
            store.alerts.add_listener(events.append)
            await store.devices.add(sim.url, source=Source.CLI)

            def bind(handle: DeviceHandle) -> None:
                if handle.device_id is not None:
                    store.devices.bind(handle.endpoint.url, handle.device_id)

            [(url, device_id)] = store.restore()
            managed = hub.manager.add(url, device_id)
            managed.handle.on_identified = bind
            device = await hub.device(managed)
            await eventually(lambda: store.devices.get(sim.url).device_id == device.id, what="the id to be bound")
            await eventually(
                lambda: (health := store.health.find(device.id)) is not None and health.connected,
                what="health to show the connection",
            )

            await store.names.set(device.id, 1, "Lead vocal", source=Source.UI)
            sim.set_channel(1, battery_bars=1, battery_percent=10, battery_runtime_min=20)
            alert = await eventually(
                lambda: next((e.alert for e in events if e.alert.kind is AlertKind.LOW_BATTERY), None),
                what="a low-battery alert",
            )
            assert alert.channel == 1 and alert.message.startswith("Lead vocal")

            sim.set_name(1, "SPARE")
            await eventually(lambda: store.names.get(device.id, 1) is None, what="the front-panel rename to win")

            history = await history_of(store, device.id, 2)
            assert history[-1].rf_dbm_avg is not None, "the receiver's metered RF is in the history"

            await sim.stop()
            await eventually(
                lambda: AlertKind.DEVICE_OFFLINE in {a.kind for a in store.alerts.open_alerts()},
                what="the offline alert",
            )
            assert AlertKind.LOW_BATTERY in {a.kind for a in store.alerts.open_alerts()}, "held while offline"
        finally:
            await store.close()
