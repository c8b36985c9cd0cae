"""A number of thousands of digits from a receiver, through real sockets on loopback: CPython's int() refuses
more than 4,300 digits (ValueError) and a few hundred make a float overflow. Such a value is an unreadable
line or message, counted, and what else the datagram or event carries is still applied."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from wmhub_sennheiser import ssc2
from wmhub_sennheiser.simulator.common import UdpSimulator
from wmhub_sennheiser.simulator.g4 import G4Simulator
from wmhub_sennheiser.simulator.iem import IemG4Simulator
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator
from wmhub_sennheiser.simulator.ssc2_ewdx import EwdxSsc2Simulator
from wmhub_sennheiser.ssc2 import encode_sse

from hub.devices import ManagedDevice
from hub.testing import DriverHarness, eventually

HUGE = b"9" * 4301


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[Any]]:
    """What escapes a protocol's callback reaches the event loop's exception handler: nothing may."""
    seen: list[Any] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: seen.append(context.get("exception") or context["message"]))
    yield seen
    loop.set_exception_handler(None)


async def connected(hub: DriverHarness, sim: UdpSimulator) -> ManagedDevice:
    managed = hub.add(sim.url)
    await hub.device(managed)
    await eventually(lambda: managed.supervisor.connected_since is not None, what="the driver connected")
    return managed


async def configuration_read_again(sim: G4Simulator) -> None:
    """The first Config index a G4 reports makes the driver read Name, Frequency, Mute (and Sensitivity) again:
    wait until it has asked the last, so that the answer to Name cannot overwrite the name a test sends."""
    last = "Sensitivity" if isinstance(sim, IemG4Simulator) else "Mute"
    await eventually(lambda: sim.commands.count(last) >= 2, what="the configuration read again")


def channel_name(hub: DriverHarness, managed: ManagedDevice) -> str | None:
    device = hub.store.get(managed.handle.device_id or "")
    return device.channels[0].name if device and device.channels else None


def send(sim: UdpSimulator, data: bytes) -> None:
    for client in list(sim.clients):
        sim.send(data, client)


async def test_g4_huge_numbers_are_unreadable_lines_and_the_rest_of_the_datagram_applies(
    hub: DriverHarness, loop_errors: list[Any]
) -> None:
    async with G4Simulator(tick_s=0) as sim:
        managed = await connected(hub, sim)
        await configuration_read_again(sim)
        before = managed.handle.protocol_errors
        send(
            sim,
            b"Frequency 1" + b"0" * 400 + b"\r"
            b"RF1 0 1" + b"0" * 400 + b" 1\r"
            + HUGE + b": Invalid command\r"
            b"Name After\r",
        )  # fmt: skip
        await eventually(lambda: channel_name(hub, managed) == "After", what="the name in the same datagram")
        # the Frequency and RF1 lines; an "error code" of thousands of digits is no error, a line not understood
        assert managed.handle.protocol_errors == before + 2
        assert managed.supervisor.reconnects == 0 and not loop_errors


async def test_iem_huge_sensitivity_is_an_unreadable_line(hub: DriverHarness, loop_errors: list[Any]) -> None:
    async with IemG4Simulator(tick_s=0) as sim:
        managed = await connected(hub, sim)
        await configuration_read_again(sim)
        before = managed.handle.protocol_errors
        send(sim, b"Sensitivity 1" + b"0" * 400 + b"\rName After\r")
        await eventually(lambda: channel_name(hub, managed) == "After", what="the name in the same datagram")
        assert managed.handle.protocol_errors == before + 1
        assert managed.supervisor.reconnects == 0 and not loop_errors


async def test_ssc1_huge_number_is_a_counted_bad_datagram_and_a_huge_channel_key_is_ignored(
    hub: DriverHarness, loop_errors: list[Any]
) -> None:
    async with Ssc1Simulator(tick_s=0) as sim:
        managed = await connected(hub, sim)
        before = managed.handle.protocol_errors
        send(sim, b'{"rx1":{"name":"Lost"},"n":' + HUGE + b"}")
        await eventually(lambda: managed.handle.protocol_errors == before + 1, what="the bad datagram counted")
        send(sim, b'{"rx' + HUGE + b'":{"name":"x"},"rx1":{"name":"After"}}')
        await eventually(lambda: channel_name(hub, managed) == "After", what="rx1 beside a leaf of no channel")
        assert managed.handle.protocol_errors == before + 1
        assert managed.supervisor.reconnects == 0 and not loop_errors


@pytest.fixture
async def ewdx() -> AsyncIterator[EwdxSsc2Simulator]:
    async with EwdxSsc2Simulator(tick_s=0) as sim:
        yield sim


async def test_ewdx_event_with_a_huge_channel_number_applies_the_rest(
    hub: DriverHarness, ewdx: EwdxSsc2Simulator
) -> None:
    managed = hub.add(ewdx.url(poll="30"))
    await hub.device(managed)
    session = await eventually(lambda: next(iter(ewdx.sessions), None), what="a subscription session")
    ewdx.push_to_streams(
        encode_sse({"/api/channel/" + "9" * 4301 + "/level": -10, "/api/channel/0": {"name": "After"}})
    )
    await eventually(lambda: channel_name(hub, managed) == "After", what="the channel in the same event")
    assert list(ewdx.sessions) == [session], "the event stream was not given up"
    assert managed.supervisor.reconnects == 0


class _CountingLineEnd:
    """Counts the bytes a line-end search looks at: from where it starts to its match, or to the end."""

    def __init__(self, pattern: Any) -> None:
        self.pattern = pattern
        self.examined = 0

    def search(self, string: Any, pos: int = 0, *args: Any) -> Any:
        found = self.pattern.search(string, pos, *args)
        self.examined += (found.end() if found else len(string)) - pos
        return found


def test_a_long_line_in_small_pieces_is_searched_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 250 KiB line (within the 256 KiB bound) trickling in 64-byte pieces was searched from its start on every
    piece: half a gigabyte of scanning on the event loop for one event. Counted, not timed: whichever way the
    parser searches (the module's re.search or its compiled pattern), the bytes it looks at must be linear."""
    import re

    counter = _CountingLineEnd(re.compile(rb"\r\n|\r|\n"))

    class CountingRe:
        def __getattr__(self, name: str) -> Any:
            return getattr(re, name)

        @staticmethod
        def search(pattern: Any, string: Any, *args: Any) -> Any:
            found = re.search(pattern, string, *args)
            counter.examined += found.end() if found else len(string)
            return found

    monkeypatch.setattr(ssc2, "re", CountingRe())
    monkeypatch.setattr(ssc2, "_LINE_END", counter, raising=False)
    payload = "x" * (250 * 1024)
    stream = f"data: {payload}\n\n".encode()
    parser = ssc2.SseParser()
    events = []
    for start in range(0, len(stream), 64):
        events += parser.feed(stream[start : start + 64])
    assert [event.data for event in events] == [payload]
    assert len(stream) - 2 <= counter.examined <= 2 * len(stream), f"{counter.examined:,} bytes searched"
