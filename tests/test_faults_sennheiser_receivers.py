"""Sennheiser receivers that behave as the public sources allow but the simulators never do (issue 17).

Each device here is a transcript replay (``wmhub_sennheiser.simulator.replay``): it knows nothing but the
literal exchanges of ``plugins/sennheiser/tests/transcripts/``. A whole hub runs in-process against it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from wmhub_sennheiser.g4_driver import G4Driver
from wmhub_sennheiser.simulator.replay import (
    McpReplay,
    Ssc1Replay,
    Ssc2Replay,
    Transcript,
    load,
    load_corpus,
    replay_for,
)

from hub.app import Hub
from hub.model import CommandKind
from hub.redact import redact
from hub.testing import eventually
from tests.fault_harness import device_of, hub_config, is_online, running_hub, seconds_until
from tests.reliability_report import FaultResult

CORPUS = Path(__file__).resolve().parent.parent / "plugins" / "sennheiser" / "tests" / "transcripts"
TRANSCRIPTS = {transcript.path.stem: transcript for transcript in load_corpus(CORPUS)}
# The hub's own defaults: what a user who changed nothing gets.
DEFAULTS = {"io_timeout_s": 5.0, "offline_after_s": 10.0, "meter_rate_ms": 100}
MONITORED_WITHIN_S = 10.0


def last_error(hub: Hub, url: str) -> str | None:
    managed = hub.devices.by_url.get(redact(url))
    return managed.supervisor.last_error if managed is not None else None


def with_delay(transcript: Transcript, request: str, delay_s: float) -> Transcript:
    """The transcript with the reply to ``request`` held back for ``delay_s``."""
    exchanges = tuple(
        dataclasses.replace(exchange, delay_s=delay_s) if exchange.request == request else exchange
        for exchange in transcript.exchanges
    )
    return dataclasses.replace(transcript, exchanges=exchanges)


async def test_receivers_as_the_sources_show_them_are_monitored_within_10_s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's must-show: receivers that stay silent on optional queries or are no known model, on one
    hub at its default timeouts. Every one that can be monitored is, within 10 s; the one that cannot says
    why in one line naming it."""
    caplog.set_level(logging.WARNING, logger="hub.device")
    monitorable = ("ewdx-em2", "em6000", "sldw", "g4-em", "g3-2000", "spectera", "tccm")
    replays = {stem: replay_for(TRANSCRIPTS[stem]) for stem in monitorable}
    unknown = Ssc1Replay(TRANSCRIPTS["tcc2"])
    for replay in (*replays.values(), unknown):
        await replay.__aenter__()
    try:
        urls = {
            stem: replay.url(poll="5") if isinstance(replay, Ssc2Replay) else replay.url
            for stem, replay in replays.items()
        }
        urls = {stem: url + ("&push_timeout=100" if "g4" in url else "") for stem, url in urls.items()}
        async with running_hub(hub_config(tmp_path, [*urls.values(), unknown.url], **DEFAULTS)) as hub:
            refused_s = await seconds_until(lambda: last_error(hub, unknown.url), 10, "the TCC2 refusal")
            online_s = await seconds_until(
                lambda: all(is_online(hub, url) for url in urls.values()), MONITORED_WITHIN_S, "every receiver"
            )
            error = last_error(hub, unknown.url) or ""
            lines = [record.getMessage() for record in caplog.records if "'TCC2'" in record.getMessage()]
            silent_g3 = device_of(hub, urls["g3-2000"])
        FaultResult(
            "Sennheiser receivers as public transcripts show them (7 monitorable incl. a G3/2000 silent on "
            "FirmwareRevision and RfConfig, 1 SSC device that is no receiver), hub defaults",
            detection_s=refused_s,
            recovery_s=online_s,
            notes=(
                f"recovery = until all 7 were online (limit {MONITORED_WITHIN_S:g} s, io_timeout_s 5); "
                f"detection = until the non-receiver's one line: {error!r}; lines logged for it: {len(lines)}"
            ),
        ).record()
        assert silent_g3 is not None and silent_g3.firmware is None
        assert len(lines) == 1 and f"127.0.0.1:{unknown.port}" in lines[0] and "\n" not in lines[0]
    finally:
        for replay in (*replays.values(), unknown):
            await replay.__aexit__(None, None, None)


async def test_g4_reply_arriving_after_its_request_timed_out(tmp_path: Path) -> None:
    """RfConfig answered 1.5 s late (the request timeout is 1 s): the receiver is monitored without it at
    once, and the late answer is taken when it comes instead of being charged to another request: the
    commands are checked against it and the device advertises it."""
    transcript = with_delay(TRANSCRIPTS["g4-em"], "RfConfig", 1.5)
    async with McpReplay(transcript) as replay:
        url = replay.url + "&push_timeout=100"
        async with running_hub(hub_config(tmp_path, [url], meter_rate_ms=100)) as hub:
            online_s = await seconds_until(lambda: is_online(hub, url), 5, "online without RfConfig")

            def late_range_taken() -> bool:
                driver = hub.devices.by_url[redact(url)].driver
                state = device_of(hub, url)
                limits = (
                    state.capabilities.commands.get(CommandKind.FREQUENCY) if state and state.capabilities else None
                )
                advertised = (limits.number.min, limits.number.max) if limits and limits.number else None
                return (
                    isinstance(driver, G4Driver)
                    and driver.rf_config == ((566_000, 608_000, 25),)
                    and advertised == (566.0, 608.0)
                )

            taken_s = await seconds_until(late_range_taken, 5, "the late RfConfig taken")
            state = device_of(hub, url)
        FaultResult(
            "Sennheiser G4 (MCP): RfConfig answered 1.5 s after its 1 s timeout",
            None,
            online_s,
            notes=(
                f"recovery = until online without it; the late range was taken {taken_s:.2f} s after that; "
                f"unexpected requests: {len(replay.unexpected)}"
            ),
        ).record()
        assert state is not None and state.channel(1) is not None and replay.unexpected == []


async def test_g4_reply_split_into_one_datagram_per_line(tmp_path: Path) -> None:
    async with McpReplay(TRANSCRIPTS["g4-em"], split_lines=True) as replay:
        url = replay.url + "&push_timeout=100"
        async with running_hub(hub_config(tmp_path, [url], meter_rate_ms=100)) as hub:

            def shows_the_report() -> bool:
                device = device_of(hub, url)
                channel = device.channel(1) if device is not None else None
                return channel is not None and (channel.battery_percent, channel.audio_dbfs) == (70, -30.0)

            shown_s = await seconds_until(shows_the_report, 5, "the cyclic report, line by line")
        FaultResult(
            "Sennheiser G4 (MCP): every reply line in its own datagram",
            None,
            shown_s,
            notes="recovery = until the cyclic report (8 datagrams) showed; TI 1254 sends it in one",
        ).record()
        assert replay.unexpected == []


async def test_sscv2_events_split_across_tcp_segments(tmp_path: Path) -> None:
    async with Ssc2Replay(TRANSCRIPTS["spectera"], split_events_at=5) as replay:
        url = replay.url(poll="5")
        async with running_hub(hub_config(tmp_path, [url])) as hub:

            def metered() -> bool:
                device = device_of(hub, url)
                channel = device.channel(1) if device is not None else None
                return channel is not None and (channel.audio_dbfs, channel.audio_peak) == (-9.5, True)

            shown_s = await seconds_until(metered, 10, "the metering event, five bytes at a time")
            await eventually(lambda: is_online(hub, url), 1, "still online")
        FaultResult(
            "Sennheiser SSCv2 Spectera: SSE events split into 5-byte TCP segments",
            None,
            shown_s,
            notes="recovery = until the last event's meter value showed; no event lost or merged",
        ).record()
        assert replay.unexpected == []


async def test_a_reading_no_receiver_could_give_is_shown_as_unknown_and_counted(tmp_path: Path) -> None:
    """An outside audit: a G4 answering 'Frequency 99999999999999' put 99999999999.999 MHz on REST and MQTT
    (and into frequency coordination). The hub model's bounds (hub.model.Channel), checked at the sink for
    every plugin, read it as unknown and count a protocol error."""
    text = (CORPUS / "g4-em.txt").read_text(encoding="utf-8").replace("Frequency 822000", "Frequency 99999999999999")
    garbled = tmp_path / "g4-em.txt"
    garbled.write_text(text, encoding="utf-8")
    async with McpReplay(load(garbled)) as replay:
        url = replay.url + "&push_timeout=100"
        async with running_hub(hub_config(tmp_path, [url], meter_rate_ms=100)) as hub:

            def protocol_errors() -> int:
                return hub.devices.by_url[redact(url)].handle.protocol_errors

            def battery_read() -> bool:  # what the datagram says after the refused reading
                device = device_of(hub, url)
                channel = device.channel(1) if device is not None else None
                return channel is not None and channel.battery_percent == 70

            await eventually(lambda: is_online(hub, url) and protocol_errors() > 0, 10, "the reading refused")
            await eventually(battery_read, 10, "the rest of the datagram read")
            channel = device_of(hub, url).channel(1)  # type: ignore[union-attr]
            assert channel is not None and channel.frequency_mhz is None
