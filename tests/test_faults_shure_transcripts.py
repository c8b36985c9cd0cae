"""Faults real Shure receivers show and the simulator never did, replayed from the conformance corpus.

Each case serves a transcript (plugins/shure/tests/transcripts/, sources named per line) from a fake
receiver on loopback: silent on optional queries, ERR to an all-channels request, an unknown model, a reply
split inside a brace field, a reply arriving after its request timed out. A receiver that can be monitored
must be, with every value the transcript reported and its controls working; one that cannot must say why.
Rows go to docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from wmhub_shure.simulator import ShureSimulator
from wmhub_shure.simulator.replay import ReplayDevice, Transcript

from hub.drivers import DriverSettings
from hub.model import Command, CommandKind, Device
from hub.testing import DriverHarness, eventually
from tests.reliability_report import FaultResult

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "plugins" / "shure" / "tests" / "transcripts"
SETTINGS = DriverSettings(meter_rate_ms=1000, io_timeout_s=1.0, offline_after_s=3.0)


@dataclass(frozen=True)
class Case:
    fault: str
    transcript: str
    notes: str
    split_inside_braces: bool = False
    control: Command | None = None  # a command the transcript confirms, sent once the receiver is monitored


CASES = [
    Case(
        "Shure receiver silent on optional queries (GET MODEL, GET FW_VER)",
        "fault_silent_optional",
        "ULX-D detected without waiting out the silence: a later answer settles the unanswered question",
        control=Command(device_id="", channel=1, kind=CommandKind.MUTE, value=True),
    ),
    Case(
        "Shure receiver answers ERR to the all-channels GET 0 ALL",
        "fault_refuses_get_all",
        "the ERR pairs with GET 0 ALL, not the METER_RATE after it; each channel is asked with GET n ALL",
        control=Command(device_id="", channel=1, kind=CommandKind.MUTE, value=True),
    ),
    Case(
        "Shure receiver refuses SET 0 METER_RATE, takes it per channel",
        "fault_refuses_all_channels",
        "meters per channel as micboard sends them (SET n METER_RATE); switched off per channel at close",
    ),
    Case(
        "Shure receiver refuses METER_RATE for all channels and each channel",
        "fault_refuses_metering",
        "monitored without meters; one warning naming the receiver",
    ),
    Case(
        "Shure reply split inside a brace field ({...})",
        "slxd",
        "every reply cut after its first '{' into two TCP segments",
        split_inside_braces=True,
        control=Command(device_id="", channel=1, kind=CommandKind.GAIN, value=22),
    ),
    Case(
        "Shure reply arriving after its request timed out (GET 0 ALL burst 1.5 s late)",
        "fault_late_reply",
        "the late burst pairs with the abandoned GET 0 ALL; its METER_RATE 00000 does not confirm the newer SET",
    ),
]


def unmet(device: Device | None, transcript: Transcript) -> int:
    if device is None:
        return len(transcript.expected)
    return sum(expected.shown(device) != expected.value for expected in transcript.expected)


@pytest.mark.parametrize("case", CASES, ids=[case.transcript + ("-split" * case.split_inside_braces) for case in CASES])
async def test_receiver_fault_from_the_corpus_is_ridden_out(case: Case) -> None:
    transcript = Transcript.load(TRANSCRIPTS / f"{case.transcript}.txt")
    async with (
        ReplayDevice(transcript, split_inside_braces=case.split_inside_braces) as receiver,
        DriverHarness("shure", settings=SETTINGS) as hub,
    ):
        started = time.monotonic()
        managed = hub.add(receiver.url)

        def state() -> Device | None:
            return hub.store.get(managed.handle.device_id) if managed.handle.device_id else None

        # connected, not merely identified: the hub has asked for the state and the meters by then
        await eventually(lambda: managed.supervisor.connected_since, 10.0, "monitored")
        with contextlib.suppress(AssertionError):  # counted below as lost state
            await eventually(lambda: unmet(state(), transcript) == 0, 5.0, "the transcript's state")
        recovery_s = time.monotonic() - started
        lost_state = unmet(state(), transcript)
        lost_control = 0
        if case.control is not None:
            result = await hub.apply(case.control.model_copy(update={"device_id": managed.handle.device_id}))
            lost_control = 0 if result.ok else 1
        reconnects = managed.supervisor.reconnects
    FaultResult(
        case.fault,
        detection_s=None,
        recovery_s=recovery_s,
        lost_state=lost_state,
        lost_control=lost_control,
        notes=f"{case.notes}; requests outside the transcript: {len(receiver.unlisted)}",
    ).record()
    assert lost_state == 0 and lost_control == 0
    assert reconnects == 0
    assert receiver.unlisted == [], receiver.unlisted


async def test_unknown_shure_model_says_why_once() -> None:
    transcript = Transcript.load(TRANSCRIPTS / "unknown_model.txt")
    async with ReplayDevice(transcript) as receiver, DriverHarness("shure", settings=SETTINGS) as hub:
        started = time.monotonic()
        managed = hub.add(receiver.url)
        error = await eventually(lambda: managed.supervisor.last_error, 10.0, "the reason")
        detection_s = time.monotonic() - started
        device = hub.store.get(managed.handle.device_id or "")
        shown = device is not None and device.model == "MXA910" and device.family is None and not device.channels
    FaultResult(
        "Shure device with an unknown model (MODEL {MXA910})",
        detection_s=detection_s,
        recovery_s=None,
        notes="shown offline with its model and no channels; the reason names model and address; not retried in a loop",
    ).record()
    assert shown and "MXA910" in error and f"127.0.0.1:{receiver.port}" in error
    assert managed.supervisor.attempts == 1


async def test_an_unknown_model_string_reaches_the_reason_and_the_log_as_device_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reason quotes the model the device sent: escape sequences in it would clear an operator's terminal
    and forge log lines, and 15,000 characters of it would fill /api/health."""
    hostile = "MXA\x1b[2J\x1b[31mEVIL\x1b[0m\r\n2026-01-01 ERROR hub: FAKE LOG LINE\x07" + "y" * 15_000

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while request := await reader.readuntil(b">"):
                writer.write(f"< REP MODEL {{{hostile}}} >".encode() if b"GET MODEL" in request else b"< REP ERR >")
        writer.close()

    caplog.set_level("WARNING")
    server = await asyncio.start_server(answer, "127.0.0.1", 0, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    async with server, DriverHarness("shure", settings=SETTINGS) as hub:
        managed = hub.add(f"shure://127.0.0.1:{port}")
        error = await eventually(lambda: managed.supervisor.last_error, 10.0, "the reason")
    assert "MXA[2J[31mEVIL" in error and len(error) <= 300
    assert not any(char in error for char in "\x1b\r\n\x07")
    logged = [record.getMessage() for record in caplog.records if "MXA" in record.getMessage()]
    assert logged and not any(char in line for line in logged for char in "\x1b\r\n\x07")


async def test_a_receiver_that_closes_at_once_is_said_to_close_not_to_be_silent() -> None:
    async def close_soon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(close_soon, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, DriverHarness("shure", settings=SETTINGS) as hub:
        managed = hub.add(f"shure://127.0.0.1:{port}")
        error = await eventually(lambda: managed.supervisor.last_error, 10.0, "the reason")
    assert "closed" in error and "no answer" not in error, error


FLOODING_RECEIVER = """
import asyncio

async def answer(reader, writer):
    while True:
        request = await reader.readuntil(b">")
        writer.write(b"< REP MODEL {ULXD4D} >" if b"GET MODEL" in request else b"< REP ERR >")

async def serve(reader, writer):
    answering = asyncio.ensure_future(answer(reader, writer))
    await asyncio.sleep(1.0)  # identified by then
    burst = b"< REP 1 CHAN_NAME {FLOOD} >" * 2000
    while not answering.done():  # as fast as the hub takes it
        writer.write(burst)
        await writer.drain()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


async def test_a_flooding_receiver_is_read_in_slices_and_slowed_while_the_others_carry_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Valid replies at full speed from one receiver (a firmware loop, or an attacker) come in reads of up to
    256 KB, a tenth of a second and more of parsing each: handled whole they held the hub's loop for that
    long, over and over (hub.drivers.PacedReader). The neighbour's renames must keep arriving and the flood
    must be said once, in one line."""
    caplog.set_level("WARNING")
    flood = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOODING_RECEIVER, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert flood.stdout is not None
        port = int(await asyncio.wait_for(flood.stdout.readline(), 10))
        async with ShureSimulator("ulxd4d", seed=2) as sim, DriverHarness("shure", settings=SETTINGS) as hub:
            quiet = hub.add(sim.url)
            await hub.device(quiet)
            hub.add(f"shure://127.0.0.1:{port}")

            def flood_said() -> list[str]:
                return [record.getMessage() for record in caplog.records if "sends more" in record.getMessage()]

            await eventually(flood_said, 30, "the flood slowed down and said so")
            for name in ("DURING1", "DURING2", "DURING3"):
                sim.set_name(1, name)
                await eventually(lambda n=name: hub.store.get(quiet.device_id or "").channels[0].name == n, 5, name)
    finally:
        flood.kill()
        await flood.wait()
    said = f"127.0.0.1:{port} sends more than the hub can read (over 20% of its time): read more slowly from now on"
    assert flood_said() == [said]
