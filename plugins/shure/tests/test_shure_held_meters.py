"""Meter samples held until the hub looks, through real sockets: a receiver metering every 100 ms costs a
read per write and a decode per look, and the levels the hub shows are still the newest."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from wmhub_shure.driver import MAX_HELD_READS, ShureDriver
from wmhub_shure.simulator import ShureSimulator

from hub.devices import ManagedDevice
from hub.drivers import DriverSettings
from hub.testing import DriverHarness, eventually

FAST = DriverSettings(meter_rate_ms=100, io_timeout_s=1.0, offline_after_s=3.0)


@pytest.fixture
async def quad() -> AsyncIterator[tuple[DriverHarness, ShureSimulator, ManagedDevice]]:
    async with ShureSimulator("ulxd4q", seed=7) as sim, DriverHarness("shure", settings=FAST) as hub:
        hub.store.meter_look_interval = lambda: 3600.0  # the test says when the hub looks
        managed = hub.add(sim.url)
        await hub.device(managed)
        await eventually(lambda: sim.metering_on, what="metering switched on")
        hub.store.merge_held_meters()
        yield hub, sim, managed


def driver_of(managed: ManagedDevice) -> ShureDriver:
    driver = managed.driver
    assert isinstance(driver, ShureDriver)
    return driver


def rf_dbm(hub: DriverHarness, managed: ManagedDevice, channel: int) -> float | None:
    device = hub.store.get(managed.handle.device_id or "")
    found = device.channel(channel) if device is not None else None
    return found.rf_dbm if found is not None else None


async def reads_after(managed: ManagedDevice, count: int) -> None:
    driver = driver_of(managed)
    target = driver.reads + count
    await eventually(lambda: driver.reads >= target, 5, f"{count} more reads from the receiver")


async def test_many_samples_read_one_decode_per_channel_when_the_hub_looks(quad: tuple) -> None:  # type: ignore[type-arg]
    hub, sim, managed = quad
    sim.set_meters(1, rf_dbm=-61)
    sim.set_meters(4, rf_dbm=-77)
    readings = hub.store.readings_received
    await reads_after(managed, 5)
    applied = hub.store.updates_applied
    hub.store.merge_held_meters()
    assert rf_dbm(hub, managed, 1) == -61 and rf_dbm(hub, managed, 4) == -77
    assert hub.store.updates_applied - applied == 4, "one merge per channel, however many samples were read"
    # every sample counts as received (wmhub_meter_readings_total on /metrics): five reads of four channels
    assert hub.store.readings_received - readings >= 5 * 4


async def test_a_hub_that_does_not_look_still_gets_levels_once_enough_reads_wait(quad: tuple) -> None:  # type: ignore[type-arg]
    hub, sim, managed = quad
    sim.set_meters(2, rf_dbm=-55)
    await eventually(
        lambda: rf_dbm(hub, managed, 2) == -55, MAX_HELD_READS / 10 + 5, "levels merged by the receiver's own bound"
    )


async def test_a_malformed_newest_sample_is_a_protocol_error_and_the_last_good_level_stays(quad: tuple) -> None:  # type: ignore[type-arg]
    hub, sim, managed = quad
    sim.set_meters(3, rf_dbm=-66)
    await reads_after(managed, 2)
    for channel in sim.channels.values():
        channel.meter_rate_ms = 0  # no newer sample to supersede the bad one
    errors = managed.handle.protocol_errors
    sim.send_garbage(b"< SAMPLE 3 ALL AX 1x3 020 >")
    await reads_after(managed, 1)
    hub.store.merge_held_meters()
    assert managed.handle.protocol_errors == errors + 1
    assert rf_dbm(hub, managed, 3) == -66


async def test_held_samples_never_overwrite_the_newer_ones_of_a_read_merged_at_once(quad: tuple) -> None:  # type: ignore[type-arg]
    hub, sim, managed = quad
    sim.set_meters(1, rf_dbm=-61)
    await reads_after(managed, 2)
    for channel in sim.channels.values():
        channel.meter_rate_ms = 0
    # a report in the same read: not held, so its sample is merged at once (ULX-D: 050 - 128 = -78 dBm)
    sim.send_garbage(b"< REP 1 AUDIO_MUTE OFF >< SAMPLE 1 ALL AX 050 060 >")
    await eventually(lambda: rf_dbm(hub, managed, 1) == -78, 5, "the newer level merged at once")
    hub.store.merge_held_meters()
    assert rf_dbm(hub, managed, 1) == -78, "the older held sample came first, not last"


async def test_a_held_read_is_heard_when_it_arrives_not_when_the_hub_looks(quad: tuple) -> None:  # type: ignore[type-arg]
    """The silence watchdog (offline_after_s) may be shorter than the time between looks: a receiver
    that sends nothing but samples is alive at every read, not at the next merge."""
    hub, _sim, managed = quad
    before = managed.handle.last_heard()
    await reads_after(managed, 3)
    assert managed.handle.last_heard() > before
    assert hub.store.readings_received > 0
