"""What a SET's result says when the receiver answers it with another value, or with an ERR meant for it.

A fake receiver on a real loopback socket replays the ULX-D transcript with a few exchanges added: a name it
stores cut short, a gain it clamps, a mute it refuses. The P10T (bare names) is the simulator.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from wmhub_shure.families import PSM1000, build_set
from wmhub_shure.simulator import ShureSimulator
from wmhub_shure.simulator.replay import Exchange, ReplayDevice, Transcript

from hub.drivers import DriverSettings
from hub.model import Command, CommandKind, InvalidValueError
from hub.testing import DriverHarness, eventually

TRANSCRIPTS = Path(__file__).parent / "transcripts"
# the transcript's meter rate (01000); a timeout well apart from the driver's one-second grace
SETTINGS = DriverSettings(meter_rate_ms=1000, io_timeout_s=3.0, offline_after_s=6.0)


def ulxd(*exchanges: tuple[str, list[str], float]) -> Transcript:
    """The ULX-D transcript, with (request, replies, delay) exchanges added or replaced."""
    transcript = Transcript.load(TRANSCRIPTS / "ulxd.txt")
    for request, replies, delay_s in exchanges:
        transcript.exchanges[transcript.key(request)] = Exchange(request, replies, delay_s=delay_s)
    return transcript


def channel_one(hub: DriverHarness, device_id: str) -> Any:
    device = hub.store.get(device_id)
    return device.channel(1) if device is not None else None


@pytest.mark.parametrize(
    ("kind", "value", "request_", "reply", "field", "held", "error"),
    [
        (
            CommandKind.NAME,
            "LONGNAME",
            "< SET 1 CHAN_NAME {LONGNAME} >",
            "< REP 1 CHAN_NAME {LONG} >",
            "name",
            "LONG",
            "ULXD4Q 127.0.0.1:{port} channel 1 holds CHAN_NAME 'LONG', not the 'LONGNAME' asked for",
        ),
        (
            CommandKind.GAIN,
            42,
            "< SET 1 AUDIO_GAIN 060 >",
            "< REP 1 AUDIO_GAIN 048 >",
            "gain_db",
            30,
            "ULXD4Q 127.0.0.1:{port} channel 1 holds AUDIO_GAIN 30, not the 42 asked for",
        ),
    ],
)
async def test_set_answered_at_once_with_another_value_is_refused_with_the_value_held(
    kind: CommandKind, value: Any, request_: str, reply: str, field: str, held: Any, error: str
) -> None:
    async with ReplayDevice(ulxd((request_, [reply], 0.0))) as device, DriverHarness("shure", settings=SETTINGS) as hub:
        managed = hub.add(device.url)
        shown = await hub.device(managed)
        await eventually(lambda: managed.supervisor.connected_since, what="connected")
        started = time.monotonic()
        result = await hub.apply(Command(device_id=shown.id, channel=1, kind=kind, value=value))
        # settled by the receiver's answer (after the driver's short grace), not by the timeout
        assert (result.ok, result.code, result.value) == (False, "refused", held), result
        assert result.error == error.format(port=device.port)
        assert time.monotonic() - started < SETTINGS.io_timeout_s
        assert getattr(channel_one(hub, shown.id), field) == held
        assert not device.unlisted


async def test_exact_echo_after_the_old_value_from_get_all_confirms_the_set() -> None:
    """A SET sent while GET 0 ALL's answer is still to come: the old name goes by first, then the echo."""
    transcript = ulxd(("< SET 1 CHAN_NAME {New} >", ["< REP 1 CHAN_NAME {New} >"], 0.3))
    everything = transcript.exchanges[transcript.key("< GET 0 ALL >")]
    everything.delay_s = 1.0
    # the old name last: the burst's first report answers GET 0 ALL itself, the others pass pending requests
    (old_name,) = [reply for reply in everything.replies if "1 CHAN_NAME" in reply]
    everything.replies = [*(reply for reply in everything.replies if reply != old_name), old_name]
    async with ReplayDevice(transcript) as device, DriverHarness("shure", settings=SETTINGS) as hub:
        managed = hub.add(device.url)
        shown = await hub.device(managed)  # identified: GET 0 ALL is out, its answer is not
        result = await hub.apply(Command(device_id=shown.id, channel=1, kind=CommandKind.NAME, value="New"))
        assert (result.ok, result.value) == (True, "New"), result
        # the SET went out before the driver had the burst (it sets the meter rate only after it): the old
        # name reached the driver while the SET waited
        received = device.received
        assert received.index("SET 1 CHAN_NAME {New}") < received.index("SET 0 METER_RATE 01000")
        assert channel_one(hub, shown.id).name == "New"


async def test_err_after_a_set_answered_with_another_value_goes_to_the_command_it_refuses() -> None:
    transcript = ulxd(
        ("< SET 1 CHAN_NAME {LONGNAME} >", ["< REP 1 CHAN_NAME {LONG} >"], 0.0),
        ("< SET 1 AUDIO_MUTE ON >", ["< REP ERR >"], 0.0),
    )
    async with ReplayDevice(transcript) as device, DriverHarness("shure", settings=SETTINGS) as hub:
        managed = hub.add(device.url)
        shown = await hub.device(managed)
        await eventually(lambda: managed.supervisor.connected_since, what="connected")
        name = asyncio.ensure_future(
            hub.apply(Command(device_id=shown.id, channel=1, kind=CommandKind.NAME, value="LONGNAME"))
        )
        await eventually(lambda: "SET 1 CHAN_NAME {LONGNAME}" in device.received, what="name SET sent")
        mute = await hub.apply(Command(device_id=shown.id, channel=1, kind=CommandKind.MUTE, value=True))
        assert (mute.ok, mute.code) == (False, "refused"), mute
        assert "refused < SET 1 AUDIO_MUTE ON >" in (mute.error or "")
        renamed = await name
        assert (renamed.ok, renamed.code, renamed.value) == (False, "refused", "LONG"), renamed
        assert "holds CHAN_NAME 'LONG'" in (renamed.error or "")


@pytest.mark.parametrize(("kind", "channel"), [(CommandKind.NAME, 1), (CommandKind.DEVICE_NAME, None)])
async def test_bare_name_with_two_spaces_in_a_row_is_refused_before_sending(
    kind: CommandKind, channel: int | None
) -> None:
    async with ShureSimulator("p10t", seed=3) as sim, DriverHarness("shure") as hub:
        device = await hub.device(hub.add(sim.url))
        result = await hub.apply(Command(device_id=device.id, channel=channel, kind=kind, value="A  B"))
        assert (result.ok, result.code) == (False, "invalid"), result
        assert not [request for request in sim.received if "NAME" in request and request.startswith("SET")]
        limits = hub.store.get(device.id).capabilities.commands[kind].text  # type: ignore[union-attr]
        assert limits is not None and "no two spaces in a row" in limits.allowed
        limits.check("A B", "name")
        with pytest.raises(InvalidValueError):
            limits.check("A  B", "name")
        # the plugin refuses it too, for callers that bypass the hub's check
        with pytest.raises(InvalidValueError, match="two spaces in a row"):
            build_set(PSM1000, Command(device_id=device.id, channel=channel, kind=kind, value="A  B"))
        assert (await hub.apply(Command(device_id=device.id, channel=channel, kind=kind, value="A B"))).ok


async def test_a_set_never_confirmed_is_followed_by_a_question_so_the_hub_shows_what_the_receiver_holds() -> None:
    """An outside audit: after a 504 the hub never asked again, so a receiver that took a rename without
    confirming it showed the old name until the next reconnect."""
    settings = DriverSettings(meter_rate_ms=1000, io_timeout_s=1.0, offline_after_s=6.0)
    silent_rename = ("< SET 1 CHAN_NAME {QUIET} >", [], 0.0)
    asked_again = ("< GET 1 CHAN_NAME >", ["< REP 1 CHAN_NAME {QUIET} >"], 0.0)
    async with (
        ReplayDevice(ulxd(silent_rename, asked_again)) as device,
        DriverHarness("shure", settings=settings) as hub,
    ):
        managed = hub.add(device.url)
        shown = await hub.device(managed)
        await eventually(lambda: managed.supervisor.connected_since, what="connected")
        result = await hub.apply(Command(device_id=shown.id, channel=1, kind=CommandKind.NAME, value="QUIET"))
        assert (result.ok, result.code) == (False, "timeout"), result
        await eventually(lambda: channel_one(hub, shown.id).name == "QUIET", 5, "the name the receiver holds")
