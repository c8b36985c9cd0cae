"""The hub's one clock: the silence watchdog, reconnect back-off, rate limits and subscription windows all
move only when a simulated clock does, so a test proves "not yet" by not moving it, never by waiting."""

import asyncio

from hub.clock import SimulatedClock
from hub.devices import TokenBucket
from hub.drivers import DriverSettings
from hub.model import Channel, Device
from hub.state import Batch, StateStore, Subscription
from hub.testing import DriverHarness, eventually
from tests.test_core_supervisor import DEVICES, ScriptedDevice, ScriptedPlugin


def test_a_rate_limit_refills_only_as_the_clock_moves() -> None:
    clock = SimulatedClock()
    bucket = TokenBucket(rate=4.0, burst=2.0, clock=clock)
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.advance(0.125)
    assert bucket.take() is False, "half a token is not a command"
    clock.advance(0.125)
    assert bucket.take() is True
    clock.advance(60.0)
    assert [bucket.take() for _ in range(3)] == [True, True, False], "never more than the burst"


async def test_a_subscription_window_closes_on_the_clock() -> None:
    clock = SimulatedClock()
    store = StateStore(clock)
    store.add_device(Device(id="rx", vendor="test", host="127.0.0.1", port=1, channels=[Channel(index=1)]))
    window = store.subscribe(fields={"battery_percent"}, min_interval=1.0)
    store.update_channel("rx", 1, {"battery_percent": 50})
    assert await anext(window) == {("rx", 1): frozenset({"battery_percent"})}

    store.update_channel("rx", 1, {"battery_percent": 40})
    waiting = eventually_batch(window)
    await eventually(lambda: clock.sleeping == 1, what="the subscription waits for its window on the clock")
    clock.advance(1.0)
    assert await waiting == {("rx", 1): frozenset({"battery_percent"})}
    window.close()


def eventually_batch(window: Subscription) -> asyncio.Task[Batch]:
    return asyncio.ensure_future(anext(window))


async def test_silence_and_back_off_are_judged_on_the_hubs_clock() -> None:
    DEVICES["clocked"] = device = ScriptedDevice()
    clock = SimulatedClock()
    async with DriverHarness(settings=DriverSettings(io_timeout_s=0.3, offline_after_s=0.4), clock=clock) as hub:
        hub.plugins.register(ScriptedPlugin(), name="scripted")
        managed = hub.add("scripted://clocked")
        await hub.device(managed)
        supervisor = managed.supervisor
        assert supervisor.connected_since == clock.now()

        for _ in range(3):  # the device talks in every step, each step shorter than offline_after_s
            clock.advance(0.2)
            await eventually(lambda: managed.handle.last_heard() == clock.monotonic(), what="heard since")
        await eventually(lambda: supervisor.judged_alive_at is not None, what="the watchdog looked")
        assert (await hub.device(managed)).online, "a device that keeps talking is never silent"

        device.silent = True
        await eventually(lambda: clock.sleeping == 1, what="the watchdog waits on the clock again")
        clock.advance(0.4)
        await hub.device(managed, online=False)
        device.silent = False
        await eventually(lambda: clock.sleeping >= 1, what="the supervisor backs off on the clock")
        assert device.connects == 1, "no reconnect before the back-off has passed on the clock"
        clock.advance(60.0)
        await hub.device(managed)
        assert device.connects == 2
