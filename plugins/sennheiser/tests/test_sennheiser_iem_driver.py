"""The ew IEM G4 transmitter driver against the SR IEM G4 simulator, over real UDP sockets on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from wmhub_sennheiser.capabilities import tuned_capabilities
from wmhub_sennheiser.simulator.g4 import ERROR_TEXT, RF_CONFIG, G4Simulator
from wmhub_sennheiser.simulator.iem import IemG4Simulator
from wmhub_sennheiser.testing import UdpPeer, online, shows

from hub.model import Command, CommandKind
from hub.testing import DriverHarness


@pytest.fixture
async def simulator() -> AsyncIterator[IemG4Simulator]:
    async with IemG4Simulator(tick_s=0) as simulator:
        yield simulator


async def test_the_transmitter_shows_its_name_frequency_preset_audio_and_rf_mute(
    hub: DriverHarness, simulator: IemG4Simulator
) -> None:
    device = await online(hub, simulator)
    assert (device.family, device.model) == ("ew IEM G4", "SR IEM G4")
    assert {"name": device.name, "model": device.model, "firmware": device.firmware} == simulator.expected_device()
    await shows(hub, device.id, simulator)
    # the family's, with the transmitter's own RfConfig as its tuning range
    assert device.capabilities == tuned_capabilities("ew IEM G4", RF_CONFIG)

    simulator.channel.af_dbfs, simulator.sensitivity_db = -0.5, -30  # a peak, and the input turned down
    simulator.publish()
    await shows(hub, device.id, simulator)
    shown = hub.store.get(device.id).channel(1)  # type: ignore[union-attr]
    assert shown is not None and shown.audio_peak and shown.tx_offset_db == -30.0

    result = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.MUTE, value="toggle"))
    assert result.ok and result.value is True and simulator.channel.muted  # the RF is off
    await shows(hub, device.id, simulator)
    assert "RF_Mute" in hub.store.get(device.id).channel(1).warnings  # type: ignore[union-attr]


async def test_a_frequency_set_by_value_leaves_the_preset_and_the_board_says_so(
    hub: DriverHarness, simulator: IemG4Simulator
) -> None:
    device = await online(hub, simulator)
    assert hub.store.get(device.id).channel(1).group_channel == "1.3"  # type: ignore[union-attr]
    result = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.FREQUENCY, value=500.0))
    assert result.ok and simulator.channel.frequency_khz == 500_000
    await shows(hub, device.id, simulator)
    assert hub.store.get(device.id).channel(1).group_channel is None  # type: ignore[union-attr]


async def test_a_receiver_and_an_in_ear_transmitter_share_the_hubs_port(hub: DriverHarness) -> None:
    async with IemG4Simulator(tick_s=0) as iem, G4Simulator(tick_s=0) as receiver:
        transmitter_device, receiver_device = await online(hub, iem), await online(hub, receiver)
        await shows(hub, transmitter_device.id, iem)
        await shows(hub, receiver_device.id, receiver)
        assert {transmitter_device.family, receiver_device.family} == {"ew IEM G4", "ew G4"}


def refusal(code: int, line: str) -> bytes:
    return f"{code}: {ERROR_TEXT[code]} [ {line} ]\r".encode()


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (b"Sensitivity -21\r", b"Sensitivity -21\r"),  # TI 1254's example
        (b"Sensitivity -20\r", refusal(1020, "Sensitivity -20")),  # off the 3 dB grid: TI 1254's refusal
        (b"Sensitivity loud\r", refusal(1010, "Sensitivity loud")),
        (b"Sensitivity\r", b"Sensitivity -18\r"),  # a read
        (b"Mode 0\r", b"Mode 0\r"),  # mono
        (b"Mode 2\r", refusal(1020, "Mode 2")),
        (b"Equalizer\r", refusal(1000, "Equalizer")),  # reported in the configuration, not writable here
        (b"Squelch\r", refusal(1000, "Squelch")),  # the receiver's, not the transmitter's
    ],
)
async def test_the_transmitter_simulator_answers_its_own_commands_like_ti_1254(
    simulator: IemG4Simulator, sent: bytes, answer: bytes
) -> None:
    async with UdpPeer(simulator.port) as peer:
        peer.send(sent)
        assert await peer.receive() == answer
