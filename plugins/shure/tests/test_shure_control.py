"""Control round trips through the hub's control path, per family, confirmed by the device's REP."""

from __future__ import annotations

from typing import Any

import pytest
from wmhub_shure.simulator import ShureSimulator
from wmhub_shure.simulator.compare import wait_until_agreed

from hub.model import Command, CommandKind
from hub.testing import DriverHarness

ROUND_TRIPS: dict[str, list[tuple[CommandKind, Any, str, Any]]] = {
    # model: (command kind, value, simulator field, value the simulator ends with)
    "ulxd4d": [
        (CommandKind.NAME, "Vox 2", "name", "Vox 2"),
        (CommandKind.MUTE, True, "muted", True),
        (CommandKind.MUTE, "toggle", "muted", False),
        (CommandKind.GAIN, 12, "gain_db", 12),
        (CommandKind.GAIN_STEP, -3, "gain_db", 9),
        (CommandKind.FREQUENCY, 482.125, "frequency_mhz", 482.125),
    ],
    "qlxd4": [
        (CommandKind.NAME, "Lectern", "name", "Lectern"),
        (CommandKind.GAIN, -6, "gain_db", -6),
        (CommandKind.FREQUENCY, 530.0, "frequency_mhz", 530.0),
    ],
    "ad4q": [
        (CommandKind.NAME, "Lead vocal, stage left", "name", "Lead vocal, stage left"),
        (CommandKind.MUTE, True, "muted", True),
        (CommandKind.GAIN, 42, "gain_db", 42),
        (CommandKind.GAIN_STEP, -10, "gain_db", 32),
        (CommandKind.FREQUENCY, 606.025, "frequency_mhz", 606.025),
    ],
    "slxd4d": [
        (CommandKind.NAME, "Choir", "name", "Choir"),
        (CommandKind.GAIN, 0, "gain_db", 0),
        (CommandKind.FREQUENCY, 562.5, "frequency_mhz", 562.5),
    ],
    "slxd4q+": [
        (CommandKind.NAME, "Drums", "name", "Drums"),
        (CommandKind.GAIN_STEP, 2, "gain_db", None),
        (CommandKind.FREQUENCY, 470.2, "frequency_mhz", 470.2),
    ],
    "p10t": [
        (CommandKind.NAME, "IEM Bass", "name", "IEM Bass"),
        (CommandKind.FREQUENCY, 518.2, "frequency_mhz", 518.2),
    ],
}


async def test_in_ear_transmitter_goes_off_air_and_back_and_takes_a_new_name() -> None:
    async with ShureSimulator("p10t", seed=3) as sim, DriverHarness("shure") as hub:
        device = await hub.device(hub.add(sim.url))
        off_air = await hub.apply(Command(device_id=device.id, channel=2, kind=CommandKind.RF_OUTPUT, value=False))
        assert (off_air.ok, off_air.value, sim.channels[2].values["tx_muted"]) == (True, False, True)
        assert hub.store.get(device.id).channel(2).tx_muted is True  # type: ignore[union-attr]
        on_air = await hub.apply(Command(device_id=device.id, channel=2, kind=CommandKind.RF_OUTPUT, value=True))
        assert (on_air.ok, sim.channels[2].values["tx_muted"]) == (True, False)
        renamed = await hub.apply(Command(device_id=device.id, kind=CommandKind.DEVICE_NAME, value="IEM A"))
        assert renamed.ok and sim.device["name"] == "IEM A"
        await wait_until_agreed(hub, device.id, sim, "after the commands")


@pytest.mark.parametrize("model", sorted(ROUND_TRIPS))
async def test_control_round_trip(model: str) -> None:
    async with ShureSimulator(model, seed=3) as sim, DriverHarness("shure") as hub:
        managed = hub.add(sim.url)
        device = await hub.device(managed)
        channel = sim.profile.channels
        for kind, value, field, expected in ROUND_TRIPS[model]:
            before = sim.channels[channel].values[field]
            result = await hub.apply(Command(device_id=device.id, channel=channel, kind=kind, value=value))
            assert result.ok, (kind, result)
            wanted = before + value if expected is None else expected
            assert sim.channels[channel].values[field] == wanted
            assert result.value == wanted
            assert getattr(hub.store.get(device.id).channel(channel), field) == wanted  # type: ignore[union-attr]
        await wait_until_agreed(hub, managed.handle.device_id, sim, "after the commands")


async def test_device_level_controls_and_refusals() -> None:
    async with ShureSimulator("ad4d") as ad, ShureSimulator("qlxd4") as qlx, DriverHarness("shure") as hub:
        ad_id = (await hub.device(hub.add(ad.url))).id
        qlx_id = (await hub.device(hub.add(qlx.url))).id

        async def run(device_id: str, kind: CommandKind, value: Any, channel: int | None = 1, **extra: Any) -> Any:
            return await hub.apply(Command(device_id=device_id, channel=channel, kind=kind, value=value, **extra))

        assert (await run(ad_id, CommandKind.IDENTIFY, None)).ok
        assert (await run(ad_id, CommandKind.METER_RATE, 250, channel=None)).ok
        assert all(channel.meter_rate_ms == 250 for channel in ad.channels.values())
        result = await run(ad_id, CommandKind.RF_OUTPUT, False, slot=3)
        assert result.ok and ad.raw[(1, "SLOT_RF_OUTPUT", 3)] == "RF_MUTE"
        assert (await run(ad_id, CommandKind.DEVICE_NAME, "Rack A", channel=None)).ok
        await wait_until_agreed(hub, ad_id, ad, "device name")

        too_high = await run(ad_id, CommandKind.GAIN, 60)
        assert (too_high.ok, too_high.code) == (False, "invalid")
        assert "outside -18..42 dB" in (too_high.error or "")
        long_name = await run(qlx_id, CommandKind.NAME, "Far too long")
        assert (long_name.code, "longer than 8" in (long_name.error or "")) == ("invalid", True)
        assert qlx.channels[1].values["name"] != "Far too long"
        no_mute = await run(qlx_id, CommandKind.MUTE, True)
        assert no_mute.code == "not_supported" and "QLXD4" in (no_mute.error or "")

        ad.refused_params.add("AUDIO_GAIN")
        refused = await run(ad_id, CommandKind.GAIN, 3)
        assert (refused.ok, refused.code) == (False, "refused")
        # the refusal was matched to the request: the connection and later commands are unaffected
        assert (await run(ad_id, CommandKind.NAME, "Still fine")).ok


async def test_showlink_slot_power_mode_is_set_and_shown_in_the_slot() -> None:
    async with ShureSimulator("ad4q", seed=3) as sim, DriverHarness("shure") as hub:
        device = await hub.device(hub.add(sim.url))
        slot_one = Command(device_id=device.id, channel=1, kind=CommandKind.SLOT_RF_POWER_MODE, slot=1)
        result = await hub.apply(slot_one.model_copy(update={"value": "high"}))
        assert (result.ok, result.value, sim.raw[(1, "SLOT_RF_POWER_MODE", 1)]) == (True, "high", "HIGH")
        slots = hub.store.get(device.id).channel(1).tx_slots  # type: ignore[union-attr]
        assert slots is not None and (slots[0].slot, slots[0].rf_power_mode, slots[0].status) == (
            1,
            "high",
            "linked.active",
        )
        assert [slot.status for slot in slots[1:]] == ["empty"] * 7


@pytest.mark.parametrize(
    ("model", "command", "code"),
    [
        ("ad4q", Command(device_id="", channel=1, kind=CommandKind.SLOT_RF_POWER_MODE, value="max", slot=1), "invalid"),
        ("ad4q", Command(device_id="", channel=1, kind=CommandKind.SLOT_RF_POWER_MODE, value="low", slot=9), "invalid"),
        ("ad4q", Command(device_id="", channel=1, kind=CommandKind.SLOT_RF_POWER_MODE, value="low"), "invalid"),
        ("p10t", Command(device_id="", channel=1, kind=CommandKind.TX_POWER, value="20mW"), "invalid"),
        ("ulxd4d", Command(device_id="", channel=1, kind=CommandKind.TX_POWER, value="high"), "not_supported"),
        (
            "slxd4q+",
            Command(device_id="", channel=1, kind=CommandKind.SLOT_RF_POWER_MODE, value="low", slot=1),
            "not_supported",
        ),
    ],
)
async def test_transmitter_power_outside_the_family_limits_is_refused_before_sending(
    model: str, command: Command, code: str
) -> None:
    async with ShureSimulator(model, seed=3) as sim, DriverHarness("shure") as hub:
        device = await hub.device(hub.add(sim.url))
        before = dict(sim.raw)
        result = await hub.apply(command.model_copy(update={"device_id": device.id}))
        assert (result.ok, result.code) == (False, code), result
        assert sim.raw == before


async def test_in_ear_transmitter_power_level_round_trip() -> None:
    async with ShureSimulator("p10t", seed=3) as sim, DriverHarness("shure") as hub:
        device = await hub.device(hub.add(sim.url))
        capabilities = hub.store.get(device.id).capabilities  # type: ignore[union-attr]
        assert capabilities is not None
        assert capabilities.commands[CommandKind.TX_POWER].choices == ("10mW", "50mW", "100mW")
        result = await hub.apply(Command(device_id=device.id, channel=2, kind=CommandKind.TX_POWER, value="10mW"))
        assert (result.ok, result.value, sim.channels[2].values["tx_power"]) == (True, "10mW", "10mW")
        assert hub.store.get(device.id).channel(2).tx_power == "10mW"  # type: ignore[union-attr]
        await wait_until_agreed(hub, device.id, sim, "after the power change")
