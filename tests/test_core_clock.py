"""The hub's one clock: the silence watchdog, reconnect back-off, a polling driver's interval, rate limits,
subscription windows, the metering release grace and discovery's back-off all move only when a simulated
clock does, so a test proves "not yet" by not moving it, never by waiting."""

import asyncio
from collections.abc import Callable

from hub import hookimpl
from hub.clock import SimulatedClock
from hub.devices import TokenBucket
from hub.discovery import Discovery
from hub.drivers import DriverSettings, PollingDriver
from hub.hookspecs import DiscoveryLoop, DriverSpec, ReportService
from hub.metering import IDLE_RATE_MS, MeterDemand
from hub.model import Channel, Device
from hub.plugins import PluginHost
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


class CountingPoller(PollingDriver):
    poll_interval_s = 2.0
    polls = 0

    async def connect(self) -> None:
        self.sink.identify(unique_id=self.endpoint.host, family="test", model="P1", channel_count=1)

    async def poll(self) -> None:
        CountingPoller.polls += 1
        self.sink.update_channel(1, {"battery_percent": CountingPoller.polls})

    async def close(self) -> None:
        pass


class PollingPlugin:
    @hookimpl
    def register_drivers(self, register: Callable[[DriverSpec], None]) -> None:
        register(DriverSpec(scheme="polled", vendor="test", families=("test",), factory=CountingPoller, default_port=1))


async def test_a_polling_driver_polls_only_as_the_clock_moves() -> None:
    clock = SimulatedClock()
    CountingPoller.polls = 0
    async with DriverHarness(settings=DriverSettings(offline_after_s=60.0), clock=clock) as hub:
        hub.plugins.register(PollingPlugin(), name="polled")
        managed = hub.add("polled://rack")
        device_id = (await hub.device(managed)).id
        # the poller and the silence watchdog both wait on the clock
        await eventually(lambda: clock.sleeping == 2, what="the poller waits for its interval")
        assert CountingPoller.polls == 1
        clock.advance(1.9)
        assert clock.sleeping == 2 and CountingPoller.polls == 1, "no poll before the interval has passed"
        clock.advance(0.1)
        await eventually(lambda: CountingPoller.polls == 2, what="the second poll")
        polled = hub.store.get(device_id)
        assert polled is not None and polled.channels[0].battery_percent == 2, "the second poll's answer is shown"


async def test_a_released_meter_need_lets_go_only_after_the_grace_on_the_clock() -> None:
    clock = SimulatedClock()
    changes: list[int] = []
    demand = MeterDemand(None, changes.append, release_grace_s=10.0, clock=clock)
    release = demand.need(250)
    assert demand.rate_ms == 250
    release()
    await eventually(lambda: clock.sleeping == 1, what="the release waits out its grace on the clock")
    clock.advance(9.9)
    assert clock.sleeping == 1 and demand.rate_ms == 250, "a board reloaded within the grace keeps its rate"
    clock.advance(0.1)
    await eventually(lambda: demand.rate_ms == IDLE_RATE_MS, what="idle once the grace has passed")
    assert changes == [250, IDLE_RATE_MS]
    demand.close()


class FailingAnnouncer:
    def __init__(self) -> None:
        self.attempts = 0

    @hookimpl
    def register_discovery_loops(self, register: Callable[[DiscoveryLoop], None]) -> None:
        async def listen(report: ReportService) -> None:
            self.attempts += 1
            raise OSError("no such device")

        register(listen)


async def test_a_failed_discovery_loop_is_retried_only_as_the_clock_moves() -> None:
    clock = SimulatedClock()
    announcer = FailingAnnouncer()
    host = PluginHost()
    host.register(announcer, name="announcer")
    discovery = Discovery(host, DriverSettings(), clock=clock)
    await discovery.start()
    try:
        await eventually(lambda: clock.sleeping == 1, what="the loop backs off on the clock")
        clock.advance(0.49)  # the first delay is 1 s less up to half of it as jitter
        assert clock.sleeping == 1 and announcer.attempts == 1, "no retry before the back-off has passed"
        clock.advance(0.51)
        await eventually(lambda: announcer.attempts == 2, what="the retry once the back-off passed")
    finally:
        await discovery.stop()
