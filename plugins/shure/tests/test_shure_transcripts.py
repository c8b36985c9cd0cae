"""The hub against transcripts it did not write: every Shure family, in both directions.

Each transcript (tests/transcripts/, sources named per line) is replayed by a fake receiver on a real
loopback socket. The hub must show what the transcript says the device reported, and must send nothing the
transcript does not list (the fake answers anything else with ERR and records it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from wmhub_shure.discovery import SLP_SERVICE
from wmhub_shure.families import FAMILIES
from wmhub_shure.simulator.replay import ReplayDevice, Transcript, TranscriptError

from hub.devices import ManagedDevice
from hub.drivers import DriverSettings
from hub.hookspecs import DiscoveredService
from hub.model import Command, CommandKind, Device
from hub.testing import DriverHarness, eventually, identify_with, plugin_host

TRANSCRIPTS = Path(__file__).parent / "transcripts"
FAMILY_TRANSCRIPTS = ("ulxd", "qlxd", "axient", "anx4", "slxd", "slxd_plus", "psm1000", "uhfr", "mxw", "charger")
# meter rate as the transcripts have it (01000); short timeouts so silent questions cost little
SETTINGS = DriverSettings(meter_rate_ms=1000, io_timeout_s=1.0, offline_after_s=3.0)


def load(name: str) -> Transcript:
    return Transcript.load(TRANSCRIPTS / f"{name}.txt")


def unmet(device: Device | None, transcript: Transcript) -> list[str]:
    """The transcript's expectations the hub's view of the device does not meet."""
    if device is None:
        return ["device not known"]
    wrong = []
    for expected in transcript.expected:
        actual = expected.shown(device)
        if actual != expected.value:
            wrong.append(f"{expected.scope}.{expected.name}: {actual!r}, transcript says {expected.value!r}")
    return wrong


def device_of(hub: DriverHarness, device_id: str | None) -> Device | None:
    return hub.store.get(device_id) if device_id else None


async def monitored(hub: DriverHarness, managed: ManagedDevice) -> None:
    """Until the hub has finished connecting (the device shows online as soon as it is identified, before
    the hub has asked for its state and meters)."""
    await hub.device(managed)
    await eventually(lambda: managed.supervisor.connected_since, what=f"{managed.url} connected")


def test_every_family_in_the_readme_has_a_transcript_with_sources() -> None:
    covered = {load(name).family for name in FAMILY_TRANSCRIPTS}
    assert covered == set(FAMILIES), f"families without a transcript: {set(FAMILIES) - covered}"
    for path in sorted(TRANSCRIPTS.glob("*.txt")):
        transcript = Transcript.load(path)  # refuses a line without a declared [SOURCE]
        assert all(tags for _, tags in transcript.lines), path.name


@pytest.mark.parametrize("name", FAMILY_TRANSCRIPTS)
async def test_family_transcript_in_both_directions(name: str) -> None:
    transcript = load(name)
    async with ReplayDevice(transcript) as receiver:
        async with DriverHarness("shure", settings=SETTINGS) as hub:
            managed = hub.add(receiver.url)
            await hub.device(managed)
            await eventually(
                lambda: not unmet(device_of(hub, managed.handle.device_id), transcript),
                5.0,
                f"{name}: the hub shows what the transcript reported "
                f"{unmet(device_of(hub, managed.handle.device_id), transcript)}",
            )
            assert managed.supervisor.reconnects == 0
        await eventually(lambda: not receiver.connections or receiver.udp, what="the hub closed its connection")
    assert receiver.unlisted == [], f"{name}: the hub sent requests the transcript does not have"
    if transcript.family not in ("psm1000", "uhfr"):
        assert receiver.received[-1].endswith("METER_RATE 00000"), "metering was not switched off at close"


@pytest.mark.parametrize(
    ("name", "command", "expected"),
    [
        ("ulxd", Command(device_id="", channel=1, kind=CommandKind.MUTE, value=True), True),
        ("slxd", Command(device_id="", channel=1, kind=CommandKind.GAIN, value=22), 22),
        ("slxd_plus", Command(device_id="", channel=1, kind=CommandKind.NAME, value="Lead Vox"), "Lead Vox"),
        # the P10T's RF mute, as CO's PSM1000 module sets it: RF back on air is RF_MUTE 0
        ("psm1000", Command(device_id="", channel=2, kind=CommandKind.RF_OUTPUT, value=True), True),
        ("psm1000", Command(device_id="", channel=1, kind=CommandKind.TX_POWER, value="100mW"), "100mW"),
        # an ADX transmitter's RF power through its ShowLink slot (CO actions.js "slot_rf_power")
        ("axient", Command(device_id="", channel=2, kind=CommandKind.SLOT_RF_POWER_MODE, value="low", slot=1), "low"),
        ("mxw", Command(device_id="", channel=1, kind=CommandKind.IDENTIFY), True),
        ("charger", Command(device_id="", kind=CommandKind.IDENTIFY), True),  # SET FLASH ON (CO-CHG actions.js)
        # metered per channel since it refused channel 0: a new rate goes to each channel too
        ("fault_refuses_all_channels", Command(device_id="", kind=CommandKind.METER_RATE, value=500), 500),
    ],
)
async def test_control_strings_are_the_transcripts(name: str, command: Command, expected: object) -> None:
    async with ReplayDevice(load(name)) as receiver, DriverHarness("shure", settings=SETTINGS) as hub:
        managed = hub.add(receiver.url)
        await monitored(hub, managed)
        result = await hub.apply(command.model_copy(update={"device_id": managed.handle.device_id}))
        assert result.ok and result.value == expected, result
        assert receiver.unlisted == []


async def test_unknown_model_is_shown_as_unsupported_once(caplog: pytest.LogCaptureFixture) -> None:
    transcript = load("unknown_model")
    caplog.set_level(logging.WARNING)
    async with ReplayDevice(transcript) as receiver, DriverHarness("shure", settings=SETTINGS) as hub:
        managed = hub.add(receiver.url)
        error = await eventually(lambda: managed.supervisor.last_error, what="the reason")
        device = device_of(hub, managed.handle.device_id)
        assert device is not None and not unmet(device, transcript), unmet(device, transcript)
        assert device.channels == [] and not device.online
        assert "MXA910" in error and f"127.0.0.1:{receiver.port}" in error and "not a receiver" in error
        warnings = [record.getMessage() for record in caplog.records if "MXA910" in record.getMessage()]
        assert len(warnings) == 1 and receiver.url in warnings[0], warnings
        assert managed.supervisor.attempts == 1  # not retried in a loop
    assert receiver.unlisted == []


def _tiny_transcript(tmp_path: Path, model: str) -> Transcript:
    path = tmp_path / f"{model}.txt"
    path.write_text(
        f"@include {TRANSCRIPTS / 'sources.txt'}\n"
        ">> < GET MODEL > [ISSUE17]\n"
        f"<< < REP MODEL {{{model}}} > [ISSUE17]\n"
        ">> < GET DEVICE_ID > [CO-API]\n"
        "<< < REP DEVICE_ID {Room 1} > [CO-API]\n",
        encoding="utf-8",
    )
    return Transcript.load(path)


@pytest.mark.parametrize("model", ["MXA910", "P300", "ANI4IN"])
async def test_discovery_does_not_offer_other_shure_devices(tmp_path: Path, model: str) -> None:
    host = plugin_host("shure")
    async with ReplayDevice(_tiny_transcript(tmp_path, model)) as stranger, ReplayDevice(load("ulxd")) as receiver:
        for device, wanted in ((stranger, None), (receiver, "ULX-D, QLX-D or PSM1000")):
            service = DiscoveredService(host="127.0.0.1", port=device.port, service_type=SLP_SERVICE, name="x")
            candidate = await identify_with(host, "shure", service)
            assert (candidate.model if candidate else None) == wanted


async def test_anx4_is_offered_by_discovery_as_axient_digital() -> None:
    async with ReplayDevice(load("anx4")) as receiver:
        service = DiscoveredService(host="127.0.0.1", port=receiver.port, service_type=SLP_SERVICE, name="x")
        candidate = await identify_with(plugin_host("shure"), "shure", service)
        assert candidate is not None and candidate.model == "ANX4"


@pytest.mark.parametrize(
    "name", ["fault_silent_optional", "fault_refuses_all_channels", "fault_refuses_metering", "fault_refuses_get_all"]
)
async def test_receivers_that_refuse_or_ignore_are_still_monitored(name: str, caplog: pytest.LogCaptureFixture) -> None:
    transcript = load(name)
    caplog.set_level(logging.WARNING)
    async with ReplayDevice(transcript) as receiver, DriverHarness("shure", settings=SETTINGS) as hub:
        managed = hub.add(receiver.url)
        await monitored(hub, managed)
        await eventually(lambda: not unmet(device_of(hub, managed.handle.device_id), transcript), 5.0, f"{name} state")
        assert managed.supervisor.reconnects == 0
    assert receiver.unlisted == [], f"{name}: the hub sent requests the transcript does not have"
    warnings = [record.getMessage() for record in caplog.records if "METER_RATE" in record.getMessage()]
    if name == "fault_refuses_metering":
        assert len(warnings) == 1 and "AD4Q-A" in warnings[0] and f"127.0.0.1:{receiver.port}" in warnings[0]
    else:
        assert warnings == []


async def test_must_show_every_receiver_monitored_or_says_why_within_10_s(caplog: pytest.LogCaptureFixture) -> None:
    """Hub defaults (5 s answers, 10 s silence): receivers that ignore optional queries, refuse all-channel
    requests or report an unknown model. Each one that can be monitored is within 10 s; the one that cannot
    says why in one log line naming it."""
    caplog.set_level(logging.WARNING)
    names = ["fault_silent_optional", "fault_refuses_all_channels", "fault_refuses_metering"]
    names += ["fault_refuses_get_all", "slxd_plus", "unknown_model"]
    receivers = [ReplayDevice(load(name)) for name in names]
    for receiver in receivers:
        await receiver.start()
    try:
        async with DriverHarness("shure", settings=DriverSettings()) as hub:
            started = time.monotonic()
            managed = {name: hub.add(receiver.url) for name, receiver in zip(names, receivers, strict=True)}

            def settled() -> bool:
                return all(
                    managed[name].supervisor.last_error
                    if name == "unknown_model"
                    else (device := device_of(hub, managed[name].handle.device_id)) is not None
                    and device.online
                    and managed[name].supervisor.connected_since is not None
                    for name in names
                )

            await eventually(settled, 10.0, "every receiver monitored or explained")
            assert time.monotonic() - started <= 10.0
            unsupported = receivers[names.index("unknown_model")]
            lines = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
            explained = [line for line in lines if unsupported.url in line]
            assert len(explained) == 1 and "MXA910" in explained[0], lines
            assert all(managed[name].supervisor.reconnects == 0 for name in names if name != "unknown_model")
    finally:
        for receiver in receivers:
            await receiver.stop()


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (">> < GET MODEL >\n", r"no \[SOURCE\]"),
        (">> < GET MODEL > [NOBODY]\n", "not declared"),
        ("<< < REP ERR > [CO-SLXP]\n", "before any request"),
        (">> < GET MODEL > [CO-API]\n-- loud [CO-API]\n", "'silent'"),
        ("== 1 name Lead\n", "not JSON"),
        ("@delay 1 < GET MODEL >\n", "does not have"),
        ("REP ERR\n", "unknown line"),
    ],
)
def test_a_malformed_transcript_is_refused_with_its_line(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(f"@include {TRANSCRIPTS / 'sources.txt'}\n{text}", encoding="utf-8")
    with pytest.raises(TranscriptError, match=complaint) as refused:
        Transcript.load(path)
    assert "bad.txt:" in str(refused.value)
