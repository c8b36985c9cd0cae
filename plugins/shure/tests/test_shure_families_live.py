"""Every family through real sockets: the hub's state equals the simulator's, before and after changes."""

from __future__ import annotations

import pytest
from wmhub_shure.simulator import ShureSimulator
from wmhub_shure.simulator.compare import wait_until_agreed

from hub.model import Command, CommandKind
from hub.testing import DriverHarness

ALL_MODELS = [
    "ulxd4",
    "ulxd4d",
    "ulxd4q",
    "qlxd4",
    "ad4d",
    "ad4q",
    "slxd4",
    "slxd4d",
    "slxd4q+",
    "slxd4qdan+",
    "ur4s",
    "ur4d",
    "p10t",
    "mxwapt4",
    "mxwani8",
]


@pytest.mark.parametrize("model", ALL_MODELS)
async def test_hub_state_matches_the_simulator(model: str) -> None:
    async with ShureSimulator(model, seed=7) as sim, DriverHarness("shure") as hub:
        managed = hub.add(sim.url)
        device = await hub.device(managed)
        assert device.family == sim.family.key
        assert len(device.channels) == sim.profile.channels
        await wait_until_agreed(hub, managed.handle.device_id, sim, "initial state")

        last = sim.profile.channels
        if "name" in sim.family.fields:
            sim.set_name(last, "Pastor" if sim.family.name_max >= 6 and not sim.family.udp else "Bob")
        if "tx_present" in sim.family.fields:
            sim.set_tx_present(1, False)
        if "battery_runtime_min" in sim.family.fields and last != 1:
            sim.drain_battery(last, 90)
        if "warnings" in sim.family.fields:
            sim.set_channel(last, warnings={sorted(rule.warning for rule in sim.family.warnings)[-1]})
        if "rf_dbm" in sim.family.fields:
            sim.set_meters(last, rf_dbm=-75, audio_dbfs=-12)
        await wait_until_agreed(hub, managed.handle.device_id, sim, "pushed changes")
        if "tx_present" in sim.family.fields:
            assert hub.store.get(device.id).channel(1).tx_present is False  # type: ignore[union-attr]
            sim.set_tx_present(1, True)
            await wait_until_agreed(hub, managed.handle.device_id, sim, "TX back on")


async def test_slxd_plus_spellings_and_quadversity_are_understood() -> None:
    spellings = {"GROUP_CHANNEL": "GROUP_CHAN", "TX_MODEL": "TX_TYPE"}
    async with (
        ShureSimulator("slxd4qdan+", spellings=spellings) as slx,
        ShureSimulator("ad4q", quadversity=True) as quad,
        DriverHarness("shure") as hub,
    ):
        slx_device, quad_device = hub.add(slx.url), hub.add(quad.url)
        await hub.device(slx_device)
        await hub.device(quad_device)
        quad.set_meters(2, rf_dbm=-44, antenna="AD")
        await wait_until_agreed(hub, slx_device.handle.device_id, slx, "SLX-D+ state")
        await wait_until_agreed(hub, quad_device.handle.device_id, quad, "Quadversity state")
        slx_channel = hub.store.get(slx_device.handle.device_id).channel(1)  # type: ignore[union-attr]
        assert slx_channel is not None and slx_channel.group_channel == "1,1"  # read from the GROUP_CHAN spelling
        assert slx_channel.tx_slots is not None
        assert [(slot.slot, slot.status, slot.tx_model) for slot in slx_channel.tx_slots] == [
            (1, "online", slx_channel.tx_model),
            (2, "offline", None),
        ]
        quad_channel = hub.store.get(quad_device.handle.device_id).channel(2)  # type: ignore[union-attr]
        assert quad_channel is not None and quad_channel.rf_antennas == {"A": -44, "B": -46, "C": -48, "D": -50}


@pytest.mark.parametrize("model", ["ulxd4d", "ad4d", "slxd4d+"])
async def test_receiver_settings_and_key_mismatch_reach_the_hub(model: str) -> None:
    async with ShureSimulator(model, seed=5) as sim, DriverHarness("shure") as hub:
        managed = hub.add(sim.url)
        device = await hub.device(managed)
        await wait_until_agreed(hub, device.id, sim, "encryption off")
        assert {channel.encryption for channel in hub.store.get(device.id).channels} == {"off"}  # type: ignore[union-attr]
        sim.set_device(encryption_mode="auto" if model.startswith("ulxd") else "on", front_panel_locked=True)
        sim.set_channel(2, warnings={"encryption"})
        await wait_until_agreed(hub, device.id, sim, "encryption on, channel 2 keys mismatched")
        channels = hub.store.get(device.id).channels  # type: ignore[union-attr]
        assert [channel.encryption for channel in channels] == ["on", "mismatch"]


async def test_charger_bays_follow_the_batteries_in_them() -> None:
    async with ShureSimulator("sbc220", seed=2) as sim, DriverHarness("shure") as hub:
        device = await hub.device(hub.add(sim.url))
        assert (device.family, device.model, len(device.channels)) == ("charger", "SBC220", 8)
        await wait_until_agreed(hub, device.id, sim, "the bays at connect")
        charging = hub.store.get(device.id).channel(1)  # type: ignore[union-attr]
        assert charging is not None and charging.battery_charge_state == "normal"
        assert charging.battery_time_to_full_min == 39 and charging.rf_dbm is None
        sim.set_channel(1, battery_percent=100, battery_charge_state="full", battery_time_to_full_min=None)
        await wait_until_agreed(hub, device.id, sim, "bay 1 full")
        full = hub.store.get(device.id).channel(1)  # type: ignore[union-attr]
        assert full is not None
        assert (full.battery_percent, full.battery_charge_state, full.battery_time_to_full_min) == (100, "full", None)
        flashed = await hub.apply(Command(device_id=device.id, kind=CommandKind.IDENTIFY))
        assert flashed.ok


async def test_an_axient_receiver_s_slot_values_reach_the_hub_as_one_list_per_read() -> None:
    # An AD4Q answers GET ALL with every value of every slot apart (7 values x 8 slots per channel). The
    # driver hands the hub each channel's whole slot list once per read it arrived in, not once per value:
    # at a site of Axient receivers a list per value was a quarter of a starting hub's time.
    async with ShureSimulator("ad4q", seed=4) as sim, DriverHarness("shure") as hub:
        managed = hub.add(sim.url)
        handed: list[int] = []
        update_channel = managed.handle.update_channel

        def counting(index: int, fields: dict[str, object]) -> None:
            if "tx_slots" in fields:
                handed.append(index)
            update_channel(index, fields)

        managed.handle.update_channel = counting  # type: ignore[method-assign]
        device = await hub.device(managed)
        await wait_until_agreed(hub, device.id, sim, "every slot of every channel")
        slot_values = sum(1 for (_, name, slot) in sim.raw if name.startswith("SLOT_") and slot is not None)
        assert slot_values >= 4 * 8 * 7
        assert 4 <= len(handed) <= slot_values // 8
        slots = hub.store.get(device.id).channel(1).tx_slots  # type: ignore[union-attr]
        assert slots is not None and [slot.slot for slot in slots] == list(range(1, 9))
