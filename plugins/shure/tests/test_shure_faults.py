"""Faults through real sockets: the device goes offline in time, comes back by itself, others carry on."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from wmhub_shure.simulator import ShureSimulator
from wmhub_shure.simulator.compare import wait_until_agreed

from hub.clock import SimulatedClock
from hub.devices import ManagedDevice
from hub.drivers import DriverSettings
from hub.model import Command, CommandKind
from hub.testing import DriverHarness, eventually

FAST = DriverSettings(meter_rate_ms=100, io_timeout_s=0.5, offline_after_s=1.0)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[DriverHarness, ShureSimulator, ShureSimulator, ManagedDevice, ManagedDevice]]:
    """A faulty AD4Q and a healthy QLX-D on one hub; after the test, check every close switched metering off."""
    async with (
        ShureSimulator("ad4q", seed=1) as faulty,
        ShureSimulator("qlxd4", seed=2) as healthy,
    ):
        async with DriverHarness("shure", settings=FAST) as hub:
            bad, good = hub.add(faulty.url), hub.add(healthy.url)
            await hub.device(bad)
            await hub.device(good)
            await wait_until_agreed(hub, bad.handle.device_id, faulty, "faulty device up")
            yield hub, faulty, healthy, bad, good
            assert good.supervisor.reconnects == 0, "the healthy receiver was disturbed"
            await wait_until_agreed(hub, good.handle.device_id, healthy, "healthy device still current")
        await eventually(lambda: not faulty.peers and not healthy.peers, what="hub connections closed")
        for sim in (faulty, healthy):
            left_on = [record for record in sim.closed_clients if record.closed_by_client and record.metering_left_on]
            assert not left_on, f"metering left on by {left_on}"
        assert any(record.closed_by_client for record in faulty.closed_clients)


async def _recovers(hub: DriverHarness, managed: ManagedDevice, sim: ShureSimulator, within_s: float) -> None:
    started = time.monotonic()
    await hub.device(managed, timeout=within_s, online=False)
    assert time.monotonic() - started <= within_s
    await hub.device(managed, timeout=5.0)
    await wait_until_agreed(hub, managed.handle.device_id, sim, "state after recovery")


async def test_dropped_connection_comes_back(pair: tuple) -> None:  # type: ignore[type-arg]
    hub, faulty, _, bad, _ = pair
    faulty.drop_clients()
    await _recovers(hub, bad, faulty, within_s=FAST.offline_after_s)
    assert bad.supervisor.reconnects >= 1


async def test_silent_device_goes_offline_in_time_and_returns(pair: tuple) -> None:  # type: ignore[type-arg]
    hub, faulty, _, bad, _ = pair
    faulty.silent = True
    started = time.monotonic()
    await hub.device(bad, timeout=FAST.offline_after_s + 1.0, online=False)
    assert time.monotonic() - started <= FAST.offline_after_s + 0.5
    faulty.silent = False
    faulty.set_name(2, "Back")
    await hub.device(bad, timeout=10.0)
    await wait_until_agreed(hub, bad.handle.device_id, faulty, "state after the silence")


def keep_alives(sim: ShureSimulator) -> int:
    return sum(request == "GET 1 METER_RATE" for request in sim.received)


async def test_keep_alive_asks_only_a_receiver_that_sends_nothing() -> None:
    async with (
        ShureSimulator("ulxd4d", seed=3) as metering,
        ShureSimulator("ulxd4d", seed=4) as quiet,
        DriverHarness("shure", settings=FAST) as hub,
    ):
        talking, hushed = hub.add(metering.url), hub.add(quiet.url)
        await hub.device(talking)
        await hub.device(hushed)
        # the hub identifies a receiver before it asks for meters: stop them only once they were switched on
        await eventually(lambda: quiet.metering_on, what="the hub switched the quiet one's metering on")
        for channel in quiet.channels.values():
            channel.meter_rate_ms = 0  # its metering stops: from now on only keep-alives keep it online
        asked_before = keep_alives(metering)
        # a beat every third of offline_after_s: the quiet receiver is asked at each one, the metering
        # one (a SAMPLE every 100 ms) at none
        await eventually(lambda: keep_alives(quiet) >= 3, 3 * FAST.offline_after_s, "keep-alives to the quiet one")
        assert keep_alives(metering) == asked_before
        assert hushed.supervisor.reconnects == 0 and talking.supervisor.reconnects == 0
        assert (await hub.device(hushed)).online


async def test_the_keep_alive_asks_only_as_the_hubs_clock_moves() -> None:
    clock = SimulatedClock()
    # no metering and a beat every 10 s (a third of offline_after_s): only the keep-alive asks anything
    unmetered = DriverSettings(meter_rate_ms=0, io_timeout_s=0.5, offline_after_s=30.0)
    async with ShureSimulator("ulxd4d", seed=3) as sim, DriverHarness("shure", settings=unmetered, clock=clock) as hub:
        managed = hub.add(sim.url)
        await hub.device(managed)
        await eventually(lambda: clock.sleeping == 2, what="the keep-alive and the watchdog wait on the clock")
        asked = keep_alives(sim)
        clock.advance(9.9)
        assert clock.sleeping == 2 and keep_alives(sim) == asked, "no keep-alive before its beat"
        clock.advance(0.1)
        await eventually(lambda: keep_alives(sim) == asked + 1, what="the keep-alive once the clock reached its beat")
        assert (await hub.device(managed)).online


async def test_garbage_is_survived(pair: tuple) -> None:  # type: ignore[type-arg]
    hub, faulty, _, bad, _ = pair
    faulty.send_garbage()
    faulty.send_garbage(b"<" + b"{" * 2000)  # an unclosed brace that never ends
    faulty.set_name(1, "AfterJunk")
    faulty.set_tx_present(3, False)
    await wait_until_agreed(hub, bad.handle.device_id, faulty, "state after garbage")
    assert bad.supervisor.reconnects == 0
    assert bad.handle.protocol_errors >= 1  # counted for /metrics, never fatal


async def test_split_frames_and_slow_answers(pair: tuple) -> None:  # type: ignore[type-arg]
    hub, faulty, _, bad, _ = pair
    faulty.split_writes = True
    faulty.answer_delay_s = 0.2
    faulty.set_name(4, "Split up")
    faulty.drain_battery(4, 100)
    result = await hub.apply(Command(device_id=bad.handle.device_id or "", channel=2, kind=CommandKind.GAIN, value=6))
    assert result.ok, result
    await wait_until_agreed(hub, bad.handle.device_id, faulty, "state through split, slow writes")
    assert bad.supervisor.reconnects == 0

    faulty.answer_delay_s = FAST.io_timeout_s * 3  # slower than the hub waits
    result = await hub.apply(Command(device_id=bad.handle.device_id or "", channel=2, kind=CommandKind.GAIN, value=9))
    assert not result.ok and result.code == "timeout", result
    faulty.answer_delay_s = 0.0
    faulty.split_writes = False
    await hub.device(bad, timeout=10.0)
    await wait_until_agreed(hub, bad.handle.device_id, faulty, "state after slow answers")


async def test_uhfr_metering_is_stopped_when_the_hub_leaves() -> None:
    async with ShureSimulator("ur4d") as sim:
        async with DriverHarness("shure", settings=FAST) as hub:
            await hub.device(hub.add(sim.url))
            await eventually(lambda: sim.metering_on, what="UHF-R metering on")
        await eventually(lambda: not sim.metering_on, what="UHF-R metering stopped")


async def test_a_receiver_that_accepts_but_never_answers_says_why() -> None:
    """An SLX-D with Controller Access off takes the TCP connection and answers nothing: the error names the fix."""
    async with ShureSimulator("slxd4", seed=3) as mute_receiver, DriverHarness("shure", settings=FAST) as hub:
        mute_receiver.silent = True
        managed = hub.add(mute_receiver.url)
        error = await eventually(lambda: managed.supervisor.last_error, what="the connect error")
        assert "no answer to GET MODEL" in error
        assert "Controller Access" in error
        mute_receiver.silent = False
        await hub.device(managed, timeout=10.0)


async def test_a_receiver_refusing_every_get_all_is_read_one_parameter_at_a_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ERR to GET 0 ALL and to each GET n ALL (firmware without it): its channels must not stay empty."""
    caplog.set_level("WARNING")
    async with ShureSimulator("ulxd4d", seed=3) as sim, DriverHarness("shure", settings=FAST) as hub:
        sim.refused_params.add("ALL")
        sim.set_name(2, "NOALL")
        device = await hub.device(hub.add(sim.url))
        await eventually(lambda: device.channels[1].name == "NOALL", 5, "channel 2's name, asked by itself")
    assert any("refused GET ALL" in record.getMessage() for record in caplog.records)


async def test_a_receiver_reporting_another_model_is_detected_again() -> None:
    """An unsolicited REP MODEL of another family (a swap behind a switch, or a liar): its fields would not fit
    the family detected, so the hub reconnects and detects what answers now."""
    async with ShureSimulator("ad4d", seed=3) as sim, DriverHarness("shure", settings=FAST) as hub:
        managed = hub.add(sim.url)
        device = await hub.device(managed)
        assert device.family == "axient"
        sim.broadcast(["REP MODEL {ULXD4Q}"])
        await eventually(lambda: managed.supervisor.reconnects >= 1, 5, "a reconnect")
        device = await hub.device(managed)
    assert device.family == "axient" and device.model != "ULXD4Q"  # the simulator is still an AD4D


async def test_an_in_ear_transmitter_that_acts_only_on_whole_lines_is_detected_and_controlled() -> None:
    """Shure's PSM1000 command strings end every message with CRLF. A P10T that waits for it never answered the
    detection's questions (sent without, as every other family is asked): they are asked again with it."""
    async with ShureSimulator("p10t", seed=3) as p10t, DriverHarness("shure", settings=FAST) as hub:
        p10t.lines_only = True
        device = await hub.device(hub.add(p10t.url), timeout=10.0)
        assert (device.family, device.model, len(device.channels)) == ("psm1000", "P10T", 2)
        renamed = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.NAME, value="IEM Keys"))
        assert renamed.ok and p10t.channels[1].values["name"] == "IEM Keys"
        await wait_until_agreed(hub, device.id, p10t, "the P10T's state")


async def test_a_microflex_transmitter_that_comes_back_is_asked_what_changed_while_it_was_away() -> None:
    """Shure's MXW command strings: a transmitter's settings may change while TX_AVAILABLE is NO (docked, charged,
    another pack), unreported; the client asks for them when it turns YES."""
    async with ShureSimulator("mxwapt4", seed=3) as apt, DriverHarness("shure", settings=FAST) as hub:
        device = await hub.device(hub.add(apt.url))

        def shown() -> tuple[object, ...]:
            stored = hub.store.get(device.id)
            channel = stored.channel(1) if stored is not None else None
            assert channel is not None
            return (channel.tx_present, channel.battery_percent, channel.tx_model, channel.battery_health_percent)

        apt.set_channel(1, tx_present=False)
        await eventually(lambda: shown()[0] is False, what="the mic away")
        apt.set_channel(1, echo=False, battery_percent=31, tx_model="MXW1", battery_health_percent=88)
        apt.set_channel(1, tx_present=True)  # the only report: TX_AVAILABLE YES
        await eventually(lambda: shown() == (True, 31, "MXW1", 88), what="the new pack's charge, health and model")
