"""Control under faults: a flood beyond a device's rate is refused before it; a link lost under a command is
an event of the network, answered as one."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from wmhub_shure.simulator import ShureSimulator

from hub.clock import SimulatedClock
from hub.model import Command, CommandKind, CommandResult
from hub.testing import DriverHarness, QuietDriver, eventually, plugin_of
from tests.fault_harness import TOKEN, Api, device_of, hub_config, is_online, running_hub
from tests.faultproxy import TcpFaultProxy
from tests.reliability_report import FaultResult, record_check

RATE_PER_S = 5.0
FLOOD = 60


def names_set(sim: ShureSimulator) -> int:
    return sum(line.startswith("SET 1 CHAN_NAME") for line in sim.received)


async def test_control_flood_is_refused_before_the_device(tmp_path: Path) -> None:
    async with ShureSimulator("ulxd4d") as sim:
        config = hub_config(tmp_path, [sim.url], control_rate_per_s=RATE_PER_S)
        clock = SimulatedClock()  # the rate limit refills only when the test moves it
        async with running_hub(config, plugins="shure", clock=clock) as hub, Api(hub) as api:
            await eventually(lambda: is_online(hub, sim.url), 10, "device online")
            device_id = device_of(hub, sim.url).id  # type: ignore[union-attr]
            before = names_set(sim)
            started = time.monotonic()
            results = await asyncio.gather(
                *(
                    hub.apply(Command(device_id=device_id, channel=1, kind=CommandKind.NAME, value=f"F{n}"), "test")
                    for n in range(FLOOD)
                )
            )
            flood_s = time.monotonic() - started
            accepted = [result for result in results if result.ok]
            refused = [result for result in results if not result.ok]
            reached = names_set(sim) - before
            status, body = await api.post(
                f"/api/v1/channels/{device_id}:1/commands", {"kind": "name", "value": "REST"}, TOKEN
            )
            # a second later the device takes commands again
            clock.advance(1.0)
            later = await hub.apply(Command(device_id=device_id, channel=1, kind=CommandKind.NAME, value="CALM"), "t")
        FaultResult(
            f"Control flood ({FLOOD} commands at once to one receiver, limit {RATE_PER_S:g}/s)",
            None,
            None,
            0,
            0,
            notes=(
                f"accepted {len(accepted)}, refused {len(refused)} with code rate_limited in {flood_s:.2f} s; "
                f"SETs that reached the receiver: {reached} (= accepted); REST answers {status} while flooded; "
                f"a command 1 s later: {'ok' if later.ok else later.code}"
            ),
        ).record()
        record_check(
            "Control",
            f"per-device rate limit ({RATE_PER_S:g}/s, burst {RATE_PER_S:g}): a flood of {FLOOD} commands",
            f"{len(refused)} refused before the device (HTTP {status} for one more over REST), {reached} sent",
        )
        assert refused and all(result.code == "rate_limited" and result.error for result in refused)
        assert len(accepted) == RATE_PER_S and reached == len(accepted), "no refill while the clock stood still"
        assert status == 429 and body["code"] == "rate_limited"
        assert later.ok


async def test_a_link_lost_under_a_command_is_answered_unavailable_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: a receiver's connection dropping while a rename waited for its confirmation was
    answered 502 "plugin shure raised ConnectionError" and logged as a plugin bug, traceback and all (on a
    clean SIGTERM too). A lost link is the network's doing: 503, saying the rename may have been done."""
    caplog.set_level(logging.WARNING)
    async with ShureSimulator("ulxd4d") as sim, TcpFaultProxy("127.0.0.1", sim.port) as proxy:
        url = f"shure://127.0.0.1:{proxy.port}"
        async with running_hub(hub_config(tmp_path, [url]), plugins="shure") as hub, Api(hub) as api:
            await eventually(lambda: is_online(hub, url), 10, "device online")
            device_id = device_of(hub, url).id  # type: ignore[union-attr]
            proxy.delay_s = 30.0  # the rename waits in the link until the link goes
            rename = asyncio.ensure_future(
                api.post(f"/api/v1/channels/{device_id}:1/commands", {"kind": "name", "value": "LOST"}, TOKEN)
            )
            # the rename itself, not a keep-alive that went up first
            await eventually(lambda: b"{LOST}" in proxy.counters.upstream_bytes, 10, "the rename on its way")
            proxy.cut()
            status, body = await rename
    assert status == 503 and body["code"] == "unavailable"
    assert "may have been done" in body["error"]
    assert "connection lost during" in caplog.text
    assert not [record for record in caplog.records if record.exc_info], "no traceback for a lost link"


class CountsOverlap(QuietDriver):
    """A receiver whose driver takes a while per command and notes how many of them ran at once."""

    running = 0
    most_at_once = 0

    async def connect(self) -> None:
        self.sink.identify(unique_id="OV1", family="rx", model="OV-1", channel_count=1)

    async def apply(self, command: Command) -> CommandResult:
        counts = type(self)
        counts.running += 1
        counts.most_at_once = max(counts.most_at_once, counts.running)
        try:
            await asyncio.sleep(0.2)  # a receiver's round trip: long enough for another command to arrive
        finally:
            counts.running -= 1
        return CommandResult(ok=True, value=command.value)


async def test_commands_from_several_clients_reach_a_device_one_at_a_time() -> None:
    """An outside audit: two REST clients (or REST and MQTT) commanding one receiver at once had their
    commands interleaved on the wire; an SSCv1 driver re-sending an unanswered mute then undid a later,
    confirmed one. The hub carries out one command at a time per device, whichever edge sent it."""
    async with DriverHarness() as hub:
        hub.plugins.register(plugin_of("overlap", CountsOverlap, "rx"), "overlap")
        shown = await hub.device(hub.add("overlap://127.0.0.1:1"))
        results = await asyncio.gather(
            *(hub.apply(Command(device_id=shown.id, channel=1, kind=CommandKind.NAME, value=f"N{n}")) for n in range(3))
        )
    assert [result.value for result in results] == ["N0", "N1", "N2"] and all(result.ok for result in results)
    assert CountsOverlap.most_at_once == 1


class StopsAnswering(QuietDriver):
    """A receiver that keeps its link up but stops answering: its driver's apply never returns."""

    reached: list[str] = []

    async def connect(self) -> None:
        self.sink.identify(unique_id="SA1", family="rx", model="SA-1", channel_count=1)

    async def apply(self, command: Command) -> CommandResult:
        type(self).reached.append(str(command.value))
        await asyncio.Event().wait()
        raise AssertionError("never answered")


async def test_a_command_behind_one_a_silent_receiver_holds_is_answered_unsent_within_the_timeout() -> None:
    """An outside audit: behind a receiver that stopped answering, a fader's moves queued without end (each
    waiting for all before it) and the operator's mute went out 50 s later, long after the client gave up.
    A command waits at most command_timeout_s for the one before it, then is answered without being sent."""
    async with DriverHarness() as hub:
        hub.manager.command_timeout_s = 0.3
        hub.plugins.register(plugin_of("silent", StopsAnswering, "rx"), "silent")
        shown = await hub.device(hub.add("silent://127.0.0.1:1"))
        fader, mute = await asyncio.gather(
            hub.apply(Command(device_id=shown.id, channel=1, kind=CommandKind.NAME, value="FADER")),
            hub.apply(Command(device_id=shown.id, channel=1, kind=CommandKind.NAME, value="MUTE")),
        )
    assert (fader.code, mute.code) == ("timeout", "timeout")
    assert mute.error == f"not sent: {shown.id} did not finish the commands before it within 0.3 s"
    assert StopsAnswering.reached == ["FADER"]
