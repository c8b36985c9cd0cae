"""The G4 (Media Control Protocol) driver against the G4 simulator, over real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from wmhub_sennheiser import g4_driver
from wmhub_sennheiser.simulator import g4 as g4_simulator
from wmhub_sennheiser.simulator.g4 import G4Simulator
from wmhub_sennheiser.testing import UdpPeer, online, shows

from hub.clock import SimulatedClock
from hub.drivers import DriverSettings
from hub.model import Command, CommandKind, Device
from hub.testing import DriverHarness, eventually


@pytest.fixture
async def simulator() -> AsyncIterator[G4Simulator]:
    async with G4Simulator(tick_s=0) as simulator:
        yield simulator


async def test_state_follows_the_receiver_including_a_transmitter_switched_off(
    hub: DriverHarness, simulator: G4Simulator
) -> None:
    device = await online(hub, simulator)
    assert device.id == f"sennheiser-127_0_0_1_{simulator.port}"  # no serial: the id is the address
    assert {"name": device.name, "model": device.model, "firmware": device.firmware} == simulator.expected_device()
    await shows(hub, device.id, simulator)

    channel = simulator.channel
    channel.battery_percent, channel.af_dbfs, channel.tx_muted, channel.antenna = 25, -0.5, True, 2
    simulator.publish()
    await shows(hub, device.id, simulator)
    shown = hub.store.get(device.id).channel(1)  # type: ignore[union-attr]
    assert shown is not None
    assert shown.warnings == ["AF_Peak", "Low_Battery", "TX_Mute"]

    simulator.set_transmitter(1, False)
    await shows(hub, device.id, simulator)
    shown = hub.store.get(device.id).channel(1)  # type: ignore[union-attr]
    assert shown is not None
    assert (shown.tx_present, shown.battery_percent, shown.tx_muted) == (False, None, None)

    simulator.set_transmitter(1, True)
    await shows(hub, device.id, simulator)


async def test_a_config_change_makes_the_driver_read_name_and_frequency_again(
    hub: DriverHarness, simulator: G4Simulator
) -> None:
    device = await online(hub, simulator)
    simulator.config_lines_lost = True  # only the Config index in the cyclic report tells of the change
    simulator.channel.name, simulator.channel.frequency_khz = "Choir", 503_000
    simulator.publish()
    await shows(hub, device.id, simulator)
    assert hub.store.get(device.id).name == "Choir"  # type: ignore[union-attr]


async def test_push_is_renewed_before_it_expires_and_resumes_after_a_reboot(
    hub: DriverHarness, simulator: G4Simulator
) -> None:
    device = await online(hub, simulator, "&push_timeout=2")

    def pushes() -> list[str]:
        return [line for line in simulator.commands if line.startswith("Push ")]

    # renewed every second for a two-second timeout: four Push span more than the timeout
    await eventually(lambda: len(pushes()) >= 4, 5.0, "Push renewals")
    assert all(line.split()[1] == "2" for line in pushes())
    simulator.channel.rf_quality = 41  # still reported: without renewal the reports would have stopped
    await shows(hub, device.id, simulator, timeout=1.5)

    simulator.reboot(down_s=0.3)
    assert simulator.push_clients == {}
    simulator.channel.rf_quality = 67
    await eventually(lambda: len(simulator.push_clients) == 1, 3.0, "the Push to be sent again")
    await shows(hub, device.id, simulator)


async def test_push_is_renewed_only_as_the_hubs_clock_moves(simulator: G4Simulator) -> None:
    clock = SimulatedClock()
    async with DriverHarness("sennheiser", settings=DriverSettings(offline_after_s=120.0), clock=clock) as hub:
        await online(hub, simulator, "&push_timeout=60")  # renewed 5 s before the device would let it lapse

        def pushes() -> int:
            return sum(line.startswith("Push ") for line in simulator.commands)

        await eventually(lambda: clock.sleeping == 2, what="the renewal and the watchdog wait on the clock")
        pushed = pushes()
        clock.advance(54.9)  # past the 5 s of quiet: the driver asks the receiver whether it is there, no Push
        await eventually(lambda: clock.sleeping == 2, what="the renewal waits on the clock again")
        assert pushes() == pushed, "no renewal before it is due"
        clock.advance(0.1)
        await eventually(lambda: pushes() == pushed + 1, what="the renewal once the clock reached it")


def refusal(code: int, line: str) -> bytes:
    return f"{code}: {g4_simulator.ERROR_TEXT[code]} [ {line} ]\r".encode()


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (b"Frequency #2\r", b"Frequency 498100 0 0\r"),  # two 25 kHz steps up from 498.050 MHz
        (b"Frequency 498100 0 0\r", b"Frequency 498100 0 0\r"),  # with the two optional arguments
        (b"Frequency\r", b"Frequency 498050 1 3\r"),  # a read: bank 1, channel 3 until set by value
        (b"Volume 3\r", refusal(1000, "Volume 3")),
        (b"Mute on\r", refusal(1010, "Mute on")),
        (b"Mute 2\r", refusal(1020, "Mute 2")),
        (b"Push #1 100 0\r", refusal(1030, "Push #1 100 0")),
        (b"Push 10 100\r", refusal(1040, "Push 10 100")),
        (b"Frequency 498100 0\r", refusal(1040, "Frequency 498100 0")),
        (b"Mute 1", refusal(1050, "Mute 1")),
    ],
)
async def test_the_simulator_answers_like_the_reference_says(
    simulator: G4Simulator, sent: bytes, answer: bytes
) -> None:
    """Against the simulator directly: the replies and error codes of the MCP reference, which the driver's
    handling of refusals is tested against."""
    simulator.channel.frequency_khz = 498_050
    async with UdpPeer(simulator.port) as peer:
        peer.send(sent)
        assert await peer.receive() == answer


async def test_push_reports_stop_when_the_timeout_expires(simulator: G4Simulator) -> None:
    """Against the simulator directly: the device side of the keep-alive rule the driver relies on."""
    async with UdpPeer(simulator.port) as peer:
        peer.send(b"Push 1 100 0\r")
        assert await peer.receive() == b"Push 1 100 0\r"
        assert (await peer.receive()).startswith(b"RF1 ")
        await eventually(lambda: simulator.push_clients == {}, 2.0, "the Push timeout to expire")
        await discard_until_answered(peer, b"Name\r")  # whatever the simulator sent before the expiry
        simulator.tick(time.monotonic() + 60.0)  # long past the next cycle: a live Push would report now
        peer.send(b"Name\r")
        assert await peer.receive() == b"Name Vocal 1\r", "nothing between the expiry and the answer"


async def discard_until_answered(peer: UdpPeer, request: bytes) -> None:
    """Send ``request`` and receive until its answer: the simulator answers in order, so whatever it sent
    before the request has then been received and discarded."""
    peer.send(request)
    answer_starts = request.rstrip(b"\r") + b" "
    while not (await peer.receive()).startswith(answer_starts):
        continue


async def test_one_shared_socket_serves_every_receiver(hub: DriverHarness) -> None:
    async with G4Simulator(tick_s=0, seed=2) as first, G4Simulator(tick_s=0, seed=3) as second:
        second.channel.name = "Second"
        devices = [await online(hub, first), await online(hub, second)]
        sockets = [s for s in g4_driver._SOCKETS.values() if s.key[0] is asyncio.get_running_loop()]
        assert len(sockets) == 1
        assert set(sockets[0].routes) == {("127.0.0.1", first.port), ("127.0.0.1", second.port)}
        # both receivers answer to the same local port
        assert len({client for sim in (first, second) for client in sim.clients}) == 1
        for device, simulator in zip(devices, (first, second), strict=True):
            await shows(hub, device.id, simulator)


async def command(hub: DriverHarness, device: Device, kind: CommandKind, value: Any) -> Any:
    return await hub.apply(Command(device_id=device.id, channel=1, kind=kind, value=value))


async def test_control_round_trips(hub: DriverHarness, simulator: G4Simulator) -> None:
    device = await online(hub, simulator)
    for kind, value in [
        (CommandKind.NAME, "Lead 2"),
        (CommandKind.FREQUENCY, 512.35),
        (CommandKind.MUTE, True),
        (CommandKind.MUTE, "toggle"),
        (CommandKind.MUTE, "toggle"),
    ]:
        result = await command(hub, device, kind, value)
        assert result.ok, (kind, result)
    assert (simulator.channel.name, simulator.channel.frequency_khz, simulator.channel.muted) == (
        "Lead 2",
        512_350,
        True,
    )
    await shows(hub, device.id, simulator)


async def test_out_of_range_values_are_refused_before_sending(hub: DriverHarness, simulator: G4Simulator) -> None:
    device = await online(hub, simulator)
    sent = len(simulator.commands)
    for kind, value, code, words in [
        (CommandKind.FREQUENCY, 600.0, "invalid", "outside 470.2..515.8 MHz"),  # its RfConfig, not all bands
        (CommandKind.FREQUENCY, 500.01, "invalid", "0.025 MHz grid"),
        (CommandKind.NAME, "Far too long", "invalid", "longer than 8"),
        (CommandKind.GAIN, 3, "not_supported", "no gain"),
        (CommandKind.FREQUENCY, "five hundred", "invalid", "number of MHz"),
        (CommandKind.FREQUENCY, True, "invalid", "number of MHz"),
        (CommandKind.MUTE, "maybe", "invalid", "mute takes true, false or 'toggle'"),
    ]:
        result = await command(hub, device, kind, value)
        assert (result.ok, result.code) == (False, code)
        assert words in (result.error or "")
    second = await hub.apply(Command(device_id=device.id, channel=2, kind=CommandKind.NAME, value="Vox"))
    assert (second.ok, second.code) == (False, "not_found") and "has no channel 2" in (second.error or "")
    assert not [line for line in simulator.commands[sent:] if not line.startswith(("Push", "Mute"))]


async def test_a_receiver_with_several_sub_ranges_advertises_their_span_and_refuses_the_gaps(
    hub: DriverHarness, simulator: G4Simulator
) -> None:
    simulator.rf_config = ((470_200, 490_000, 25), (495_000, 515_800, 50))  # its 499.2 MHz in the second
    device = await online(hub, simulator)
    limits = hub.store.get(device.id).capabilities.commands[CommandKind.FREQUENCY].number  # type: ignore[union-attr]
    # the span, on the 25 kHz grid both sub-ranges lie on
    assert (limits.min, limits.max, limits.step) == (470.2, 515.8, 0.025)  # type: ignore[union-attr]
    gap = await command(hub, device, CommandKind.FREQUENCY, 492.0)
    assert (gap.ok, gap.code) == (False, "invalid")
    assert "outside this receiver's range (470.2-490, 495-515.8 MHz)" in (gap.error or "")
    off_grid = await command(hub, device, CommandKind.FREQUENCY, 500.025)  # on 25 kHz, not on this sub-range's 50
    assert (off_grid.ok, off_grid.code) == (False, "invalid")
    assert "50 kHz grid" in (off_grid.error or "")
    assert (await command(hub, device, CommandKind.FREQUENCY, 500.05)).ok
    assert simulator.channel.frequency_khz == 500_050


async def test_control_is_confirmed_despite_30_percent_packet_loss(hub: DriverHarness, simulator: G4Simulator) -> None:
    # a request and its reply both arrive one time in two: re-sent every 100 ms, 2 s leave ~20 chances
    device = await online(hub, simulator, "&retry_ms=100")
    simulator.loss_percent = 30
    for n in range(10):
        result = await command(hub, device, CommandKind.NAME, f"Loss {n}")
        assert result.ok, result
        assert simulator.channel.name == f"Loss {n}"


async def test_another_client_gets_its_own_reports(hub: DriverHarness, simulator: G4Simulator) -> None:
    device = await online(hub, simulator)
    async with UdpPeer(simulator.port) as peer:
        peer.send(b"Push 5 100 1\r")
        await eventually(lambda: len(simulator.push_clients) == 2, 2.0, "a second Push client")
        simulator.channel.name = "Both"
        simulator.publish()
        await shows(hub, device.id, simulator)
        lines: list[bytes] = []
        while b"Name Both" not in b"".join(lines):
            lines.append(await peer.receive())


async def test_the_meter_rate_command_changes_the_push_cycle(hub: DriverHarness, simulator: G4Simulator) -> None:
    device = await online(hub, simulator)
    result = await command(hub, device, CommandKind.METER_RATE, 500)
    assert (result.ok, result.value) == (True, 500)
    await eventually(
        lambda: [push.cycle_ms for push in simulator.push_clients.values()] == [500], what="Push every 500 ms"
    )


async def test_an_unanswered_command_times_out_with_a_clear_error(hub: DriverHarness, simulator: G4Simulator) -> None:
    device = await online(hub, simulator)
    simulator.silent = True
    result = await command(hub, device, CommandKind.MUTE, True)
    assert (result.ok, result.code) == (False, "timeout")
    assert "Mute 1 was not confirmed" in (result.error or "")
    assert (result.error or "").endswith("it may have been done")


async def test_a_receiver_that_never_answers_says_what_was_asked_of_whom(
    hub: DriverHarness, simulator: G4Simulator
) -> None:
    simulator.silent = True
    managed = hub.add(simulator.url)
    error = await eventually(lambda: managed.supervisor.last_error, 10.0, "the connection error")
    assert error == f"no answer to Name within 2 s from 127.0.0.1:{simulator.port}"


class StoresNamesItsOwnWay(G4Simulator):
    """A receiver that stores a name its own way (``store``), and whose answer may come after a report of the
    old name that crossed the SET (``stale_first``) and ``echo_delay_s`` late."""

    def __init__(self, store: Callable[[str], str], *, stale_first: bool = False, echo_delay_s: float = 0.0) -> None:
        super().__init__(tick_s=0)
        self.store, self.stale_first, self.echo_delay_s = store, stale_first, echo_delay_s

    def _name(self, args: list[str], rest: str, client: Any) -> list[str]:
        if not rest:
            return super()._name(args, rest, client)
        if self.stale_first:
            self.stale_first = False
            self.send(f"{self.config_line('Name')}\r".encode(), client)
        self.channel.name = self.store(rest)
        echo = f"{self.config_line('Name')}\r".encode()
        asyncio.get_running_loop().call_later(self.echo_delay_s, self.send, echo, client)
        return []


async def test_a_name_the_receiver_stores_otherwise_is_refused_at_once_with_the_name_it_holds(
    hub: DriverHarness,
) -> None:
    async with StoresNamesItsOwnWay(str.upper) as simulator:
        device = await online(hub, simulator)
        sent = len(simulator.commands)
        started = time.monotonic()
        result = await command(hub, device, CommandKind.NAME, "vox")
        assert (result.ok, result.code, result.value) == (False, "refused", "VOX"), result
        assert result.error == f"Name on 127.0.0.1:{simulator.port}: the device applied 'VOX', not 'vox'"
        assert time.monotonic() - started < 1.0  # the receiver's answer, not the 2 s timeout
        sets = [line for line in simulator.commands[sent:] if line.startswith("Name ")]  # not a poll's bare "Name"
        assert sets == ["Name vox"]
        await eventually(lambda: hub.store.get(device.id).channel(1).name == "VOX", what="the name held")  # type: ignore[union-attr]


async def test_a_receiver_keeping_its_old_value_is_refused_after_a_short_grace(hub: DriverHarness) -> None:
    async with StoresNamesItsOwnWay(lambda name: "Vocal 1") as simulator:
        device = await online(hub, simulator)
        started = time.monotonic()
        result = await command(hub, device, CommandKind.NAME, "Lead")
        elapsed = time.monotonic() - started
        assert (result.ok, result.code, result.value) == (False, "refused", "Vocal 1"), result
        assert "the device applied 'Vocal 1', not 'Lead'" in (result.error or "")
        assert g4_driver.OLD_VALUE_GRACE_S <= elapsed < hub.settings.io_timeout_s


async def test_a_report_of_the_old_name_crossing_the_set_is_not_its_answer(hub: DriverHarness) -> None:
    # retry_ms=1000: the answer 0.3 s later comes from the first SET, not from a re-send
    async with StoresNamesItsOwnWay(str.upper, stale_first=True, echo_delay_s=0.3) as simulator:
        device = await online(hub, simulator, "&retry_ms=1000")
        result = await command(hub, device, CommandKind.NAME, "vox")
        assert (result.ok, result.code, result.value) == (False, "refused", "VOX"), result
        simulator.store, simulator.stale_first = str, True
        result = await command(hub, device, CommandKind.NAME, "Lead")
        assert (result.ok, result.value) == (True, "Lead"), result


@pytest.mark.parametrize("name", ["Vox ", " Ld", " ", ""])
async def test_a_name_with_a_space_at_either_end_is_refused_before_sending(
    hub: DriverHarness, simulator: G4Simulator, name: str
) -> None:
    # the receiver would store it, but its echo is trimmed like every line: it could never be confirmed
    device = await online(hub, simulator)
    sent = len(simulator.commands)
    result = await command(hub, device, CommandKind.NAME, name)
    assert (result.ok, result.code) == (False, "invalid"), result
    assert not [line for line in simulator.commands[sent:] if line.startswith("Name")]
    limits = hub.store.get(device.id).capabilities.commands[CommandKind.NAME].text  # type: ignore[union-attr]
    assert limits is not None and "no space at either end" in limits.allowed
    assert all(re.fullmatch(limits.pattern, ok) for ok in ("Vox", "A B", "~!x"))


class AppliesNamesLate(G4Simulator):
    """A receiver on a lossy link, as the hub sees it: a report of the old name crosses the SET, and the
    new name (its echo, and what a query reads) comes ``apply_after_s`` later."""

    def __init__(self, apply_after_s: float) -> None:
        super().__init__(tick_s=0)
        self.apply_after_s = apply_after_s

    def _name(self, args: list[str], rest: str, client: Any) -> list[str]:
        if not rest or rest == self.channel.name:
            return super()._name(args, rest, client)
        self.send(f"{self.config_line('Name')}\r".encode(), client)
        asyncio.get_running_loop().call_later(self.apply_after_s, self._apply_name, rest, client)
        return []

    def _apply_name(self, name: str, client: Any) -> None:
        self.channel.name = name
        self.send(f"{self.config_line('Name')}\r".encode(), client)


async def test_a_report_of_the_old_name_alone_is_no_refusal_when_the_echo_comes_after_the_grace(
    hub: DriverHarness,
) -> None:
    """On a lossy link the echo of the new value can take longer than the grace; reports of the old value
    that crossed the SET (a matrix run under load: the answer to the previous SET's re-send) are no refusal."""
    # the echo after the grace and before the first re-send: a re-send answered with the old value is the
    # receiver keeping it (a refusal), and with a re-send a second after the SET, as this test had, a loaded
    # machine let that answer in before the grace ran out
    async with AppliesNamesLate(apply_after_s=g4_driver.OLD_VALUE_GRACE_S + 0.5) as simulator:
        device = await online(hub, simulator, "&retry_ms=2500")
        result = await command(hub, device, CommandKind.NAME, "Lead")
        assert (result.ok, result.value) == (True, "Lead"), result
