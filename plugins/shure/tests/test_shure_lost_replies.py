"""A command the receiver never answers must not take the answer of a later one, nor give it its own.

Shure's ERR names nothing and a REP looks the same whether it answers a GET, a SET or nobody: after a request
goes unanswered, the hub cannot tell which request a later answer is for. These tests run the simulator
on a real loopback socket, made to misbehave: it carries out a SET without confirming it, or holds every
answer back for a while (a receiver stalled on its requests) while its meters and front panel still report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from wmhub_shure.simulator import ShureSimulator

from hub.devices import ManagedDevice
from hub.drivers import DriverSettings
from hub.model import Command, CommandKind, CommandResult
from hub.testing import DriverHarness, eventually

# a timeout long enough that the test's own steps (a few loopback round trips) fit well inside it on a loaded
# machine; metering on, so that samples flow the whole time and the keep-alive asks nothing
SETTINGS = DriverSettings(meter_rate_ms=100, io_timeout_s=2.0, offline_after_s=4.0)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[DriverHarness, ShureSimulator, ManagedDevice, str]]:
    async with ShureSimulator("ulxd4d", seed=11) as sim, DriverHarness("shure", settings=SETTINGS) as hub:
        managed = hub.add(sim.url)
        shown = await hub.device(managed)
        await eventually(lambda: managed.supervisor.connected_since, what="connected")
        yield hub, sim, managed, shown.id


def channel(hub: DriverHarness, device_id: str, index: int) -> Any:
    device = hub.store.get(device_id)
    return device.channel(index) if device is not None else None


def rename(device_id: str, name: str) -> Command:
    return Command(device_id=device_id, channel=1, kind=CommandKind.NAME, value=name)


async def unconfirmed_rename(hub: DriverHarness, sim: ShureSimulator, device_id: str) -> None:
    """Channel 1 renamed "Quiet": the receiver takes the name and says nothing, so the command times out."""
    sim.unconfirmed_once.add("CHAN_NAME")
    result = await hub.apply(rename(device_id, "Quiet"))
    assert (result.ok, result.code) == (False, "timeout"), result
    assert sim.channels[1].values["name"] == "Quiet"


async def test_the_command_after_an_unconfirmed_one_gets_its_own_confirmation(receiver: tuple) -> None:  # type: ignore[type-arg]
    """Before: the answer to the question the hub asks after the timeout went to the unconfirmed SET, and the
    answer to the next rename went to that question: a rename the receiver confirmed was reported unconfirmed."""
    hub, sim, managed, device_id = receiver
    await unconfirmed_rename(hub, sim, device_id)
    result = await hub.apply(rename(device_id, "Loud"))
    assert (result.ok, result.value) == (True, "Loud"), result
    assert sim.channels[1].values["name"] == "Loud"
    assert channel(hub, device_id, 1).name == "Loud"
    assert managed.supervisor.reconnects == 0, "a receiver that answers the check needs no new connection"


async def test_an_err_after_an_unconfirmed_command_refuses_the_command_it_answers(receiver: tuple) -> None:  # type: ignore[type-arg]
    """Before: the receiver's ERR to the mute went to the question asked after the unconfirmed rename, and the
    refused mute was reported as unconfirmed (timeout) instead of refused."""
    hub, sim, managed, device_id = receiver
    await unconfirmed_rename(hub, sim, device_id)
    sim.refused_params.add("AUDIO_MUTE")
    mute = await hub.apply(Command(device_id=device_id, channel=1, kind=CommandKind.MUTE, value=True))
    assert (mute.ok, mute.code) == (False, "refused"), mute
    assert "refused < SET 1 AUDIO_MUTE ON >" in (mute.error or "")
    # and the receiver is still fully usable
    sim.refused_params.clear()
    result = await hub.apply(rename(device_id, "Loud"))
    assert (result.ok, result.value) == (True, "Loud"), result
    assert managed.supervisor.reconnects == 0


async def test_late_answers_go_to_the_requests_they_answer_while_meters_and_front_panel_changes_flow(
    receiver: tuple,  # type: ignore[type-arg]
) -> None:
    """The receiver stalls on a rename past the timeout and then answers everything it was asked, in order.
    The next command waits for the hub's check to be answered, and gets its own answer; meanwhile the samples
    and a name changed at the front panel reach the hub as usual."""
    hub, sim, managed, device_id = receiver
    sim.refused_params.add("AUDIO_MUTE")  # the stalled command is refused in the end: its late ERR is its own
    sim.holding = True
    mute = await hub.apply(Command(device_id=device_id, channel=1, kind=CommandKind.MUTE, value=True))
    assert mute.code == "timeout", mute
    sim.refused_params.clear()
    asked = len(sim.received)
    renamed = asyncio.ensure_future(hub.apply(rename(device_id, "Loud")))
    sim.set_name(2, "Panel")
    sim.set_meters(2, rf_dbm=-71, audio_dbfs=-33)
    await eventually(
        lambda: (channel(hub, device_id, 2).name, channel(hub, device_id, 2).rf_dbm) == ("Panel", -71),
        what="the front panel's name and the meters shown while the hub waits",
    )
    # whatever the hub asked since, the rename waits until the receiver has answered it
    assert "SET 1 CHAN_NAME Loud" not in list(sim.received)[asked:]
    sim.release()
    result = await renamed
    assert (result.ok, result.value) == (True, "Loud"), result
    assert channel(hub, device_id, 1).name == "Loud"
    assert managed.supervisor.reconnects == 0


async def test_a_receiver_that_answers_nothing_after_a_lost_command_gets_a_new_connection(
    receiver: tuple,  # type: ignore[type-arg]
) -> None:
    """Stalled for good: the hub cannot know how many late answers are still to come on that connection, so it
    sends no command there, switches metering off and connects again; the new connection works."""
    hub, sim, managed, device_id = receiver
    sim.holding = True
    renamed = await hub.apply(rename(device_id, "Quiet"))
    assert renamed.code == "timeout", renamed
    held_back: CommandResult = await hub.apply(rename(device_id, "Loud"))
    assert (held_back.ok, held_back.code) == (False, "unavailable"), held_back
    assert "not sent" in (held_back.error or "")
    assert "SET 1 CHAN_NAME Loud" not in sim.received
    record = await eventually(lambda: sim.closed_clients and sim.closed_clients[-1], what="the old connection closed")
    assert record.closed_by_client and not record.metering_left_on, record
    sim.holding = False  # the held answers went with the old connection
    await eventually(lambda: managed.supervisor.reconnects == 1, what="a reconnect")
    await eventually(lambda: managed.supervisor.connected_since, what="connected again")
    await hub.device(managed)
    result = await hub.apply(rename(device_id, "Loud"))
    assert (result.ok, result.value) == (True, "Loud"), result
    assert managed.supervisor.reconnects == 1
