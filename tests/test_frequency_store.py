"""The live frequency plan in the store and on REST: carriers from the state store and the venue database,
alerts through the alert lifecycle, declared carriers and exclusions (stored, audited), hostile requests."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
import pytest
from wmhub_sennheiser.capabilities import device_capabilities

from hub.app import Hub, frequency_settings
from hub.compose import compose_hub
from hub.config import ConfigError, DiscoverySettings, HttpSettings, HubConfig, MqttSettings, load_config
from hub.frequency import Band, Carrier, CarrierState, PlanSettings, Profile
from hub.frequency import search as frequency_search
from hub.frequency.engine import to_hz
from hub.model import Capabilities, Channel, CommandKind, CommandLimits, Device, NumberLimits
from hub.mqtt.homeassistant import EntityOptions, hub_discovery_config
from hub.mqtt.topics import Topics
from hub.persistence import IN_MEMORY, AlertEvent, AlertKind, Persistence, SimulatedClock
from hub.persistence.frequency import (
    CHECK_SHARE,
    INLINE_CHECK_CARRIERS,
    SLOW_CHECK_S,
    FrequencySettings,
    device_carriers,
)
from hub.persistence.testing import open_simulated, put_receiver
from hub.plugins import PluginHost
from hub.records import Alert
from hub.state import StateStore
from hub.testing import eventually
from tests.frequency_reference import brute_clean

TOKEN = "plan-token-for-the-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PLAN = "/api/v1/frequency-plan"


@dataclass
class Rig:
    hub: Hub
    store: Persistence
    clock: SimulatedClock
    http: aiohttp.ClientSession

    def tick(self, seconds: float = 3.0, steps: int = 3) -> None:
        for _ in range(steps):
            self.clock.advance(seconds / steps)
            self.store.step()

    def tune(self, device_id: str, index: int, mhz: float, **fields: Any) -> None:
        self.hub.store.update_channel(device_id, index, {"frequency_mhz": mhz, **fields})

    def conflicts(self) -> set[tuple[str, int | None, str]]:
        return {
            (alert.device_id, alert.channel, alert.detail)
            for alert in self.store.alerts.open_alerts()
            if alert.kind is AlertKind.FREQUENCY_CONFLICT
        }

    async def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        async with self.http.request(method, path, headers=AUTH, **kwargs) as response:
            body = await response.json() if response.status != 204 else None
            assert response.status == expect, body
            return body


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config = HubConfig(
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN),
    )
    clock = SimulatedClock(start=time.time())
    hub = compose_hub(config, PluginHost())
    store = await open_simulated(IN_MEMORY, hub.store, clock)
    hub.persistence = store
    put_receiver(hub.store, "shure-rx", channels=3, frequency_mhz=600.0)
    for index, mhz in ((2, 560.0), (3, 540.0)):  # narrowband channels on one frequency would collide
        hub.store.update_channel("shure-rx", index, {"frequency_mhz": mhz})
    try:
        async with hub, aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}") as session:
            yield Rig(hub, store, clock, session)
    finally:
        await store.close()


async def test_a_conflict_is_raised_after_its_debounce_and_cleared_when_retuned(rig: Rig) -> None:
    rig.tune("shure-rx", 1, 518.2)
    rig.tune("shure-rx", 2, 518.6)
    rig.tune("shure-rx", 3, 517.8)
    rig.store.step()
    assert rig.conflicts() == set(), "not before the conflict held for frequency_for_s"
    rig.tick()
    assert rig.conflicts() == {("shure-rx", 3, "intermod"), ("shure-rx", 2, "intermod")}
    [alert] = [a for a in rig.store.alerts.open_alerts() if a.channel == 3]
    assert "2f1-f2" in alert.message and "shure-rx ch 1" in alert.message and "517.800 MHz" in alert.message
    rig.tune("shure-rx", 3, 521.0)
    rig.tick(10, 4)
    assert rig.conflicts() == set()


async def test_a_planned_carrier_makes_a_warning_not_an_alert(rig: Rig) -> None:
    rig.tune("shure-rx", 1, 518.2)
    rig.tune("shure-rx", 2, 518.6)
    rig.tune("shure-rx", 3, 517.8, tx_present=False)
    rig.tick()
    assert rig.conflicts() == set()
    plan = await rig.call("GET", PLAN, 200)
    assert {f["severity"] for f in plan["findings"]} == {"warning"}
    assert {c["state"] for c in plan["carriers"] if c["id"] == "shure-rx:3"} == {"planned"}
    rig.hub.store.update_channel("shure-rx", 3, {"tx_present": True})  # switched on: now it is on air
    rig.tick()
    assert ("shure-rx", 3, "intermod") in rig.conflicts()


async def test_an_ew_iem_g4_transmitter_is_on_air_while_online_and_not_rf_muted(rig: Rig) -> None:
    rig.tune("shure-rx", 1, 518.2)
    iem = Device(id="sennheiser-iem", vendor="sennheiser", family="ew IEM G4", host="127.0.0.1", port=53212,
                 online=True, capabilities=device_capabilities("ew IEM G4"),
                 channels=[Channel(index=1, frequency_mhz=518.2, muted=False)])  # fmt: skip
    rig.hub.store.add_device(iem)
    rig.tick()
    assert ("shure-rx", 1, "spacing") in rig.conflicts(), "an in-ear transmitter on a mic's frequency is on air"

    async def iem_state() -> str:
        plan = await rig.call("GET", PLAN, 200)
        return str(next(c["state"] for c in plan["carriers"] if c["id"] == "sennheiser-iem:1"))

    assert await iem_state() == "active"
    rig.hub.store.update_channel("sennheiser-iem", 1, {"muted": True})  # its "muted" is the RF mute
    rig.tick(10, 4)
    assert await iem_state() == "planned" and rig.conflicts() == set()
    rig.hub.store.update_channel("sennheiser-iem", 1, {"muted": False})
    rig.hub.store.set_online("sennheiser-iem", False)  # an offline transmitter is not known to be on air
    rig.tick()
    assert await iem_state() == "planned"


async def test_an_offline_victim_keeps_its_alert_until_it_reports_again(rig: Rig) -> None:
    rig.tune("shure-rx", 1, 518.2)
    rig.tune("shure-rx", 2, 518.6)
    rig.tune("shure-rx", 3, 517.8)
    rig.tick()
    rig.hub.store.set_online("shure-rx", False)
    rig.tick(30, 6)
    assert ("shure-rx", 3, "intermod") in rig.conflicts(), "no news is not good news"


async def test_declared_carriers_count_and_are_stored(rig: Rig) -> None:
    rig.tune("shure-rx", 1, 518.2)
    rig.tune("shure-rx", 2, 530.0)
    rig.tune("shure-rx", 3, 540.0)
    iem = await rig.call("POST", f"{PLAN}/carriers", 201, json={"label": "IEM 1", "frequency_mhz": 518.6})
    assert iem["id"] == 1 and iem["active"] is True
    # 2 x 518.2 - 518.6 = 517.8: a second declared carrier, planned, there
    spare = {"label": "Spare", "frequency_mhz": 517.8, "active": False, "family": "ew-g4"}
    await rig.call("POST", f"{PLAN}/carriers", 201, json=spare)
    rig.tick()
    plan = await rig.call("GET", PLAN, 200)
    [hit] = [f for f in plan["findings"] if f["victim"] == "declared:2" and f["product"] == "2f1-f2"]
    assert hit["severity"] == "warning" and hit["sources"] == ["shure-rx:1", "declared:1"]
    assert hit["guard_khz"] == 150.0, "the declared family's guard (ew-g4: 1.5 x the profile's 100 kHz)"
    assert hit["source_labels"] == ["shure-rx ch 1", "IEM 1"]
    moved = {"label": "IEM 1", "frequency_mhz": 519.0}
    assert (await rig.call("PUT", f"{PLAN}/carriers/1", 200, json=moved))["frequency_mhz"] == 519.0
    assert (await rig.call("GET", f"{PLAN}/carriers/1", 200))["label"] == "IEM 1"
    await rig.call("DELETE", f"{PLAN}/carriers/2", 204)
    await rig.call("GET", f"{PLAN}/carriers/2", 404)
    await rig.call("DELETE", f"{PLAN}/carriers/2", 404)
    await rig.call("PUT", f"{PLAN}/carriers/2", 404, json=moved)
    assert [c["id"] for c in (await rig.call("GET", f"{PLAN}/carriers", 200))["items"]] == [1]
    audit = await rig.call("GET", "/api/v1/audit", 200, params={"target": "frequency/carrier/1"})
    assert [entry["action"] for entry in audit["items"]] == ["frequency.carrier.update", "frequency.carrier.create"]
    await rig.store.db.sync()
    rows = await rig.store.db.fetchall("SELECT id, label, frequency_mhz, active FROM declared_carriers")
    assert [tuple(row) for row in rows] == [(1, "IEM 1", 519.0, 1)], "in the venue database"


async def test_exclusions_tv_channels_and_ranges(rig: Rig) -> None:
    rig.tune("shure-rx", 1, 474.0)  # EU channel 21
    rig.tune("shure-rx", 2, 600.2)
    rig.tune("shure-rx", 3, 650.0)
    tv = await rig.call("POST", f"{PLAN}/exclusions", 201, json={"tv_grid": "eu", "tv_channel": 21})
    assert (tv["low_mhz"], tv["high_mhz"], tv["label"]) == (470.0, 478.0, "TV EU ch 21")
    talkback = {"label": "talkback", "low_mhz": 600.0, "high_mhz": 600.5}
    await rig.call("POST", f"{PLAN}/exclusions", 201, json=talkback)
    rig.tick()
    assert rig.conflicts() == {("shure-rx", 1, "exclusion"), ("shure-rx", 2, "exclusion")}
    await rig.call("PUT", f"{PLAN}/exclusions/2", 200, json={"label": "talkback", "low_mhz": 610.0, "high_mhz": 611.0})
    await rig.call("DELETE", f"{PLAN}/exclusions/1", 204)
    rig.tick(10, 4)
    assert rig.conflicts() == set()
    assert [e["label"] for e in (await rig.call("GET", f"{PLAN}/exclusions", 200))["items"]] == ["talkback"]


BAD_BODIES = [
    ("exclusions", {"tv_grid": "us", "tv_channel": 13}),  # below the US UHF grid
    ("exclusions", {"tv_grid": "us", "tv_channel": 38}),  # 38-51: mobile broadband since the 600 MHz repack
    ("exclusions", {"tv_grid": "us", "tv_channel": 51}),
    ("exclusions", {"tv_grid": "eu"}),
    ("exclusions", {"tv_grid": "eu", "tv_channel": 21, "low_mhz": 470.0, "high_mhz": 478.0}),
    ("exclusions", {"low_mhz": 480.0}),
    ("exclusions", {"low_mhz": 490.0, "high_mhz": 480.0}),
    ("exclusions", {"low_mhz": 0.5, "high_mhz": 480.0}),
    ("exclusions", {"tv_grid": "jp", "tv_channel": 21}),
    ("exclusions", {"label": "x" * 101, "low_mhz": 480.0, "high_mhz": 481.0}),
    ("exclusions", {"label": "bell\u0007", "low_mhz": 480.0, "high_mhz": 481.0}),
    ("carriers", {"label": "", "frequency_mhz": 500.0}),
    ("carriers", {"label": "x", "frequency_mhz": 0}),
    ("carriers", {"label": "x", "frequency_mhz": "500"}),
    ("carriers", {"label": "x", "frequency_mhz": 1e12}),
    ("carriers", {"label": "x", "frequency_mhz": 500.0, "bandwidth_khz": -1}),
    ("carriers", {"label": "x", "frequency_mhz": 500.0, "surprise": 1}),
]


@pytest.mark.parametrize(("collection", "body"), BAD_BODIES)
async def test_a_bad_exclusion_or_carrier_is_refused_and_nothing_stored(
    rig: Rig, collection: str, body: dict[str, Any]
) -> None:
    await rig.call("POST", f"{PLAN}/{collection}", 422, json=body)
    assert rig.store.frequency.exclusions() == [] and rig.store.frequency.declared() == []


async def test_suggest_and_coordinate(rig: Rig) -> None:
    rig.tune("shure-rx", 1, 518.2)
    rig.tune("shure-rx", 2, 518.6)
    rig.tune("shure-rx", 3, 517.8)
    rig.tick()
    refused = await rig.call("POST", f"{PLAN}/suggest", 422, json={"channel": "shure-rx:3"})
    assert "low_mhz and high_mhz" in refused["error"], "no band known: the request must give one"
    body = {"channel": "shure-rx:3", "low_mhz": 516.0, "high_mhz": 520.0, "range_low_mhz": 519.0,
            "range_high_mhz": 520.0, "count": 3}  # fmt: skip
    found = await rig.call("POST", f"{PLAN}/suggest", 200, json=body)
    assert found["current_mhz"] == 517.8 and len(found["candidates"]) == 3 and found["applied"] is None
    assert all(519.0 <= c["frequency_mhz"] <= 520.0 and c["margin_khz"] >= 0 for c in found["candidates"])
    await rig.call("POST", f"{PLAN}/suggest", 404, json={"channel": "nobody:1", "low_mhz": 510.0, "high_mhz": 520.0})
    await rig.call("POST", f"{PLAN}/suggest", 422, json={"channel": "shure-rx:3", "low_mhz": 510.0})
    tiny = {"channel": "shure-rx:3", "low_mhz": 518.1, "high_mhz": 518.7, "apply": True}
    nothing = await rig.call("POST", f"{PLAN}/suggest", 409, json=tiny)
    assert nothing["code"] == "no_clean_frequency"
    applied = {"channel": "shure-rx:3", "low_mhz": 516.0, "high_mhz": 520.0, "apply": True}
    failed = await rig.call("POST", f"{PLAN}/suggest", 503, json=applied)
    assert failed["details"]["applied"]["ok"] is False, "no driver runs this receiver: the command says so"
    group = await rig.call(
        "POST", f"{PLAN}/coordinate", 200, json={"count": 4, "backups": 1, "low_mhz": 510.0, "high_mhz": 526.0}
    )
    assert len(group["frequencies"]) == 4 and len(group["backups"]) == 1 and group["fixed_carriers"] == 3
    await rig.call("POST", f"{PLAN}/coordinate", 422, json={"count": 40, "low_mhz": 470.0, "high_mhz": 9000.0})
    band = {"low_mhz": 510.0, "high_mhz": 526.0}
    regroup = {"channels": ["shure-rx:2", "shure-rx:3"], "apply": True, **band}
    refused = await rig.call("POST", f"{PLAN}/coordinate", 503, json=regroup)
    tuned = refused["details"]
    assert tuned["fixed_carriers"] == 1, "the two channels being retuned are not fixed"
    assert [t["channel"] for t in tuned["plan"]] == ["shure-rx:2", "shure-rx:3"]
    assert [t["outcome"]["code"] for t in tuned["plan"]] == ["unavailable", "unavailable"], "no driver: said so"
    for wrong in (
        {"channels": ["shure-rx:2", "shure-rx:2"], **band},
        {"channels": ["shure-rx:2"], "count": 2, **band},
        {"count": 2, "apply": True, **band},
        band,
    ):
        await rig.call("POST", f"{PLAN}/coordinate", 422, json=wrong)
    await rig.call("POST", f"{PLAN}/coordinate", 404, json={"channels": ["nobody:1"], **band})
    await rig.call("POST", f"{PLAN}/coordinate", 422, json={"count": 1, "low_mhz": 520.0, "high_mhz": 510.0})


async def test_a_wideband_carrier_is_never_suggested_where_its_width_would_leave_the_band(rig: Rig) -> None:
    """An 8 MHz Spectera carrier centred 4 MHz or less from the band's edge is out of band: the hub
    proposed 694.0 in 470-694, tuned to it, and then alerted 'out of band' (an outside audit)."""
    spectera = Device(id="sennheiser-sp1", vendor="sennheiser", family="spectera", host="127.0.0.1", port=443)
    spectera.channels = [Channel(index=1, frequency_mhz=600.0)]
    rig.hub.store.add_device(spectera)
    rig.tick()
    for low, high in ((680.0, 694.0), (470.0, 480.0)):
        body = {"channel": "sennheiser-sp1:1", "low_mhz": 470.0, "high_mhz": 694.0, "count": 5}
        found = await rig.call(
            "POST", f"{PLAN}/suggest", 200, json={**body, "range_low_mhz": low, "range_high_mhz": high}
        )
        offered = [candidate["frequency_mhz"] for candidate in found["candidates"]]
        assert offered and all(474.0 <= mhz <= 690.0 for mhz in offered), offered


async def test_a_group_never_splits_a_wideband_carrier(rig: Rig) -> None:
    """Two channels of one Spectera carrier in a group would get two frequencies and split it in two."""
    spectera = Device(id="sennheiser-sp1", vendor="sennheiser", family="spectera", host="127.0.0.1", port=443)
    spectera.channels = [Channel(index=1, frequency_mhz=600.0), Channel(index=2, frequency_mhz=600.0)]
    rig.hub.store.add_device(spectera)
    group = {"channels": ["sennheiser-sp1:1", "sennheiser-sp1:2"], "low_mhz": 470.0, "high_mhz": 694.0}
    refused = await rig.call("POST", f"{PLAN}/coordinate", 422, json=group)
    assert "share one carrier" in refused["error"], refused


async def test_one_declared_wideband_carrier_leaves_clean_frequencies_to_suggest(rig: Rig) -> None:
    """One 8 MHz WMAS block declared at 650 MHz made suggest answer 'no clean frequency' for every narrowband
    channel: each candidate was widened by the widest carrier (an outside audit found 284 clean frequencies by
    brute force, none by the hub). Each carrier keeps its own width now."""
    rig.tune("shure-rx", 1, 600.0)
    rig.tune("shure-rx", 2, 600.5)
    rig.tune("shure-rx", 3, 602.0)
    wmas = {"label": "WMAS block", "frequency_mhz": 650.0, "bandwidth_khz": 8000, "family": "spectera"}
    await rig.call("POST", f"{PLAN}/carriers", 201, json=wmas)
    rig.tick()
    body = {"channel": "shure-rx:3", "low_mhz": 590.0, "high_mhz": 700.0, "step_khz": 250, "count": 50}
    found = await rig.call("POST", f"{PLAN}/suggest", 200, json=body)
    offered = [to_hz(candidate["frequency_mhz"]) for candidate in found["candidates"]]
    plan = await rig.call("GET", PLAN, 200)
    others = [Carrier(c["id"], c["frequency_mhz"], bandwidth_khz=c["bandwidth_khz"], family=c["family"])
              for c in plan["carriers"] if c["id"] != "shure-rx:3"]  # fmt: skip
    clean = [x for x in range(to_hz(590.0), to_hz(700.0) + 1, 250_000) if brute_clean(x, others, PlanSettings())]
    assert len(clean) > 50, "the brute force of the full check finds plenty"
    assert len(offered) == 50 and set(offered) <= set(clean), "as many as asked, each clean by the full check"


async def test_an_analog_receiver_gets_the_wider_guards_under_the_family_name_its_plugin_reports(rig: Rig) -> None:
    """The Sennheiser plugin reports "ew G4"; the guard table says "ew-g4": the 1.5x never applied, so a
    carrier 400 kHz from an analog receiver passed a 525 kHz spacing (an outside audit)."""
    g4 = Device(id="sennheiser-g4", vendor="sennheiser", family="ew G4", host="127.0.0.1", port=53212)
    g4.channels = [Channel(index=1, frequency_mhz=600.0, tx_present=True)]
    rig.hub.store.add_device(g4)
    rig.tune("shure-rx", 1, 600.4, tx_present=True)
    rig.tune("shure-rx", 2, 560.0)
    rig.tune("shure-rx", 3, 540.0)
    rig.tick()
    plan = await rig.call("GET", PLAN, 200)
    spacing = [
        f for f in plan["findings"] if f["product"] == "spacing" and "sennheiser-g4:1" in (f["victim"], *f["sources"])
    ]
    assert spacing and {f["guard_khz"] for f in spacing} == {525.0}, plan["findings"]


def test_carriers_merge_wideband_channels_and_take_a_second_frequency() -> None:
    class DiversityChannel(Channel):
        frequency2_mhz: float | None = None

    spectera = Device(
        id="sennheiser-sp1",
        vendor="sennheiser",
        family="spectera",
        host="127.0.0.1",
        port=443,
        channels=[Channel(index=n, frequency_mhz=474.0 if n <= 2 else 482.0, tx_present=n == 3) for n in (1, 2, 3)],
    )
    axient = Device(
        id="shure-ad",
        vendor="shure",
        family="axient",
        host="127.0.0.1",
        port=2202,
        channels=[DiversityChannel(index=1, frequency_mhz=600.0, frequency2_mhz=610.0, tx_present=True)],
    )
    settings = FrequencySettings(bands={"axient": Band(470.0, 636.0, 25.0)})
    carriers = [c for device in (spectera, axient) for c in device_carriers(device, settings)]
    found = {(c.id, c.frequency_mhz, c.bandwidth_khz, c.state, c.band) for c in carriers}
    assert found == {
        ("sennheiser-sp1:1+2", 474.0, 8000.0, CarrierState.PLANNED, None),
        ("sennheiser-sp1:3", 482.0, 8000.0, CarrierState.ACTIVE, None),
        ("shure-ad:1", 600.0, 0.0, CarrierState.ACTIVE, Band(470.0, 636.0, 25.0)),
        ("shure-ad:1/2", 610.0, 0.0, CarrierState.ACTIVE, Band(470.0, 636.0, 25.0)),
    }


async def test_declared_carriers_and_exclusions_survive_a_restart(tmp_path: Path) -> None:
    store = await open_simulated(tmp_path)
    await store.frequency.declare("IEM 2", 606.5, source="cli", active=False, bandwidth_khz=200)
    await store.frequency.exclude(source="cli", tv_grid="us", tv_channel=14)
    await store.close()
    store = await open_simulated(tmp_path)
    try:
        [iem] = store.frequency.declared()
        [tv] = store.frequency.exclusions()
        assert (iem.label, iem.frequency_mhz, iem.active, iem.bandwidth_khz) == ("IEM 2", 606.5, False, 200.0)
        assert (tv.low_mhz, tv.high_mhz, tv.tv_grid, tv.tv_channel) == (470.0, 476.0, "us", 14)
    finally:
        await store.close()


def test_the_configuration_sets_the_profile_and_the_bands(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        "[frequency]\nprofile = 'dense'\nseventh_order = true\nmax_live_carriers = 250\n"
        "[frequency.bands.ulxd]\nlow_mhz = 470.0\nhigh_mhz = 534.0\nstep_khz = 25\n"
    )
    settings = frequency_settings(load_config(path, environ={}))
    assert settings.max_live_carriers == 250
    for bad in ("-1", "'many'", "1e9"):
        path.write_text(f"[frequency]\nmax_live_carriers = {bad}\n")
        with pytest.raises(ConfigError, match=r"frequency\.max_live_carriers"):
            load_config(path, environ={})
    path.write_text(
        "[frequency]\nprofile = 'dense'\nseventh_order = true\n"
        "[frequency.bands.ulxd]\nlow_mhz = 470.0\nhigh_mhz = 534.0\nstep_khz = 25\n"
    )
    settings = frequency_settings(load_config(path, environ={}))
    assert settings.plan.profile is Profile.DENSE and settings.plan.guards(None).im7_2tx_khz > 0
    assert settings.bands == {"ulxd": Band(470.0, 534.0, 25.0)}
    receiver = Device(id="shure-1", vendor="shure", family="ulxd", host="127.0.0.1", port=2202,
                      channels=[Channel(index=1, frequency_mhz=500.0)])  # fmt: skip
    [carrier] = device_carriers(receiver, settings)
    assert carrier.band == Band(470.0, 534.0, 25.0), "the band a suggestion searches and the band check uses"
    declared = Capabilities(
        channel_fields=frozenset({"frequency_mhz"}),
        commands={
            CommandKind.FREQUENCY: CommandLimits(number=NumberLimits(min=470.1, max=713.9, step=0.025, unit="MHz"))
        },
    )
    other = receiver.model_copy(update={"family": "ew-dx", "capabilities": declared})
    [carrier] = device_carriers(other, settings)
    assert carrier.band == Band(470.1, 713.9, 25.0, whole_range=True), "without a configured band: the plugin's limits"


async def test_a_failing_plan_check_leaves_the_other_alerts_working(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> bool:
        raise RuntimeError("a bug in the plan check")

    monkeypatch.setattr(rig.store.frequency, "refresh", broken)
    rig.hub.store.update_channel("shure-rx", 1, {"battery_bars": 1})
    rig.tick()
    assert [a.kind for a in rig.store.alerts.open_alerts()] == [AlertKind.LOW_BATTERY]


def make_checks_slow(rig: Rig, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every plan check takes ``seconds`` longer (blocking, as the numpy work of a crowded plan does)."""
    checker = rig.store.frequency._checker

    def slowly(check: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            time.sleep(seconds)
            return check(*args)

        return run

    monkeypatch.setattr(checker, "check", slowly(checker.check))
    monkeypatch.setattr(checker, "update", slowly(checker.update))


async def test_a_slow_plan_check_waits_nine_times_its_length_before_the_next(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan of a thousand carriers crowded into a few megahertz takes seconds per check; a transmitter that
    comes or goes would re-run it every tick and starve device input. The check keeps to a tenth of the time."""
    plan = rig.store.frequency
    slow_s = SLOW_CHECK_S * 2
    make_checks_slow(rig, monkeypatch, slow_s)
    rig.tune("shure-rx", 1, 518.2)
    rig.store.step()
    first = plan.checked_at
    assert first is not None
    rig.tune("shure-rx", 2, 518.6)
    rig.tune("shure-rx", 3, 517.8)
    rig.store.step()
    assert plan.checked_at == first, "held back right after a slow check"
    rig.clock.advance(slow_s * (1 / CHECK_SHARE - 1) + 0.5)
    rig.store.step()
    assert plan.checked_at is not None and plan.checked_at > first
    assert plan.findings, "the held-back change was checked: three carriers in intermodulation"


async def test_slow_plan_checks_are_told_at_most_every_few_minutes_with_their_count(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit under load: "the frequency check took N s" came dozens of times each half hour."""
    make_checks_slow(rig, monkeypatch, SLOW_CHECK_S * 2)
    lines = []
    with caplog.at_level(logging.INFO, logger="hub.persistence"):
        for move in range(17):  # a slow check every 20 s for 340 s
            rig.tune("shure-rx", 1, 518.2 + move * 0.025)
            rig.store.step()
            rig.clock.advance(20.0)
    lines = [record.getMessage() for record in caplog.records if "the frequency check took" in record.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].endswith("s (1 slow check(s) since the last such line; at most one every 5 min)"), lines
    assert "(15 slow check(s) since the last such line" in lines[1], lines


@dataclass
class HeldCheck:
    """The plan's checks wait at a gate in their worker thread (as a crowded plan's numpy work keeps them
    running), so a test sees the plan while a check runs; ``fail_next`` makes the next check raise."""

    started: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)
    fail_next: bool = False

    def install(self, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
        checker = rig.store.frequency._checker

        def held(check: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any) -> Any:
                self.started.set()
                assert self.gate.wait(10), "the test never let the check end"
                if self.fail_next:
                    self.fail_next = False
                    raise RuntimeError("a bug in the plan check")
                return check(*args)

            return run

        monkeypatch.setattr(checker, "check", held(checker.check))
        monkeypatch.setattr(checker, "update", held(checker.update))

    async def running(self) -> None:
        assert await asyncio.to_thread(self.started.wait, 10), "no check started"
        self.started.clear()


async def declare_spread(rig: Rig, count: int) -> None:
    """``count`` declared carriers 1.7 MHz apart from 1,700 MHz (enough to be checked in the worker thread): they
    hit one another, but none of their products comes near the receiver's channels at 500-600 MHz."""
    for number in range(count):
        await rig.store.frequency.declare(f"spread {number}", 1700.0 + number * 1.7, source="cli")


def receiver_findings(rig: Rig) -> set[str]:
    return {
        finding.victim
        for finding in rig.store.frequency.findings
        if {finding.victim, *finding.sources} & {"shure-rx:1", "shure-rx:2", "shure-rx:3"}
    }


async def check_ended(rig: Rig) -> None:
    await eventually(lambda: not rig.store.frequency.checking, what="the check to end")


async def test_a_large_plan_is_checked_in_a_thread_and_a_change_meanwhile_is_checked_after_it(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = rig.store.frequency
    held = HeldCheck()
    held.install(rig, monkeypatch)
    rig.tune("shure-rx", 1, 518.2)  # with 2 and 3 at 560 and 540: no conflict among the receiver's channels
    await declare_spread(rig, INLINE_CHECK_CARRIERS)
    rig.store.step()
    await held.running()
    assert plan.checking and plan.checked_at is None and plan.carriers == [], "nothing taken before it ends"
    body = await rig.call("GET", PLAN, 200)  # answers at once, with the last result
    assert body["checking"] is True and body["checked"] is False and body["carriers"] == []
    rig.tune("shure-rx", 2, 518.6)  # a change meanwhile: with channel 3 tuned next, an intermodulation triple
    rig.tune("shure-rx", 3, 517.8)
    rig.store.step()
    assert not held.started.is_set(), "one check at a time"
    await asyncio.sleep(SLOW_CHECK_S)  # the check has run that long: a slow one, which holds the next back
    held.gate.set()
    await check_ended(rig)
    carriers = {carrier.id: carrier for carrier in plan.carriers}
    assert len(carriers) == INLINE_CHECK_CARRIERS + 3 and carriers["shure-rx:2"].frequency_mhz == 560.0
    assert plan.checked and receiver_findings(rig) == set(), "the findings are of the carriers the check was given"
    first = plan.checked_at
    rig.store.step()
    assert not plan.checking and plan.checked_at == first, "held back after a slow check"
    rig.clock.advance(1000.0)
    rig.store.step()
    assert plan.checking
    await check_ended(rig)
    assert {c.id: c.frequency_mhz for c in plan.carriers}["shure-rx:2"] == 518.6
    assert receiver_findings(rig) == {"shure-rx:2", "shure-rx:3"}, "2f1-f2 of channel 1 with each of the others"
    body = await rig.call("GET", PLAN, 200)
    assert body["checking"] is False and body["checked"] is True and body["alerts"] > 0


async def test_a_check_that_fails_in_its_thread_is_logged_and_the_next_change_checks_again(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plan = rig.store.frequency
    held = HeldCheck(fail_next=True)
    held.gate.set()
    held.install(rig, monkeypatch)
    await declare_spread(rig, INLINE_CHECK_CARRIERS)
    with caplog.at_level(logging.ERROR, logger="hub.persistence"):
        rig.store.step()
        await held.running()
        await check_ended(rig)
    assert any("the frequency check of 67 carriers failed" in record.getMessage() for record in caplog.records)
    assert plan.checked_at is None and plan.carriers == [], "the plan keeps its last result"
    rig.store.step()
    assert not plan.checking, "no change since: nothing to check"
    rig.tune("shure-rx", 1, 518.2)
    rig.store.step()
    await held.running()
    await check_ended(rig)
    assert plan.checked and len(plan.carriers) == INLINE_CHECK_CARRIERS + 3


async def test_a_plan_larger_than_the_live_check_takes_says_so_instead_of_stalling_the_hub(rig: Rig) -> None:
    plan = rig.store.frequency
    plan.settings = dataclasses.replace(plan.settings, max_live_carriers=2)
    rig.tune("shure-rx", 1, 518.2)
    rig.tune("shure-rx", 2, 518.6)
    rig.tune("shure-rx", 3, 517.8)
    rig.tick()
    body = await rig.call("GET", PLAN, 200)
    assert body["checked"] is False and body["findings"] == [] and len(body["carriers"]) == 3
    assert plan.summary()["checked"] is False and rig.conflicts() == set()
    plan.settings = dataclasses.replace(plan.settings, max_live_carriers=1000)
    rig.hub.store.set_online("shure-rx", False)  # any change the plan depends on brings the check back
    rig.hub.store.set_online("shure-rx", True)
    rig.tick()
    body = await rig.call("GET", PLAN, 200)
    assert body["checked"] is True and body["findings"]


async def test_a_plan_grown_past_the_live_check_keeps_its_conflicts_open_and_says_unknown(rig: Rig) -> None:
    """An outside audit: one carrier past max_live_carriers cleared every standing conflict alert and turned
    Home Assistant's 'Frequency conflicts' sensor off, an all-clear nobody checked."""
    rig.tune("shure-rx", 1, 518.2)
    rig.tune("shure-rx", 2, 518.6)
    rig.tune("shure-rx", 3, 517.8)
    rig.tick()
    standing = rig.conflicts()
    assert standing
    plan = rig.store.frequency
    plan.settings = dataclasses.replace(plan.settings, max_live_carriers=2)
    await rig.call("POST", f"{PLAN}/carriers", 201, json={"label": "IEM 1", "frequency_mhz": 700.0})
    rig.tick(30, 10)
    assert rig.conflicts() == standing, "held, not cleared"
    summary = plan.summary()
    assert (summary["checked"], summary["conflict"]) == (False, None)
    sensor = frequency_conflicts_sensor()
    assert jinja2.Template(sensor["value_template"]).render(value_json=summary) == "None", "unknown"
    assert jinja2.Template(sensor["value_template"]).render(value_json={**summary, "conflict": True}) == "ON"


@dataclass
class HeldSearch:
    """The plan's searches wait at a gate where they would score candidates (as a large plan's numpy work keeps
    them running), so a test sees the hub while a search runs."""

    started: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        scoring = frequency_search.margins

        def held(*args: Any, **kwargs: Any) -> Any:
            self.started.set()
            assert self.gate.wait(10), "the test never let the search go on"
            return scoring(*args, **kwargs)

        monkeypatch.setattr(frequency_search, "margins", held)

    async def running(self) -> None:
        assert await asyncio.to_thread(self.started.wait, 10), "no search started"
        self.started.clear()


async def test_a_search_among_many_carriers_runs_in_a_thread_one_at_a_time(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Among 1,000 carriers one suggestion took 3.4 s, a group of 16 over 10 s, all of it on the event loop:
    the hub's health, metrics, device data and MQTT waited (the fifteenth session's known gap)."""
    await declare_spread(rig, INLINE_CHECK_CARRIERS)
    held = HeldSearch()
    held.install(monkeypatch)
    body = {"channel": "shure-rx:3", "low_mhz": 516.0, "high_mhz": 520.0, "count": 3}
    first = asyncio.create_task(rig.call("POST", f"{PLAN}/suggest", 200, json=body))
    await held.running()
    health = await rig.call("GET", "/api/health", 200)  # answered while the search is held in its thread
    assert health["status"] in {"ok", "degraded"}, health
    group = {"count": 2, "low_mhz": 510.0, "high_mhz": 526.0}
    second = asyncio.create_task(rig.call("POST", f"{PLAN}/coordinate", 200, json=group))
    await rig.call("GET", PLAN, 200)  # the second request has reached its turn by now
    assert not held.started.is_set() and not second.done(), "one search at a time"
    held.gate.set()
    found = await first
    assert len(found["candidates"]) == 3 and all(516.0 <= c["frequency_mhz"] <= 520.0 for c in found["candidates"])
    assert len((await second)["frequencies"]) == 2


async def test_a_group_search_stops_with_the_hub(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group's search among a thousand carriers takes seconds per frequency: a stopping hub waited for all
    of them."""
    await declare_spread(rig, INLINE_CHECK_CARRIERS)
    held = HeldSearch()
    held.install(monkeypatch)
    group = {"count": 8, "low_mhz": 510.0, "high_mhz": 526.0}
    request = asyncio.create_task(rig.call("POST", f"{PLAN}/coordinate", 503, json=group))
    await held.running()
    await rig.store.frequency.close()
    held.gate.set()
    refused = await request
    assert refused["error"] == "the hub is stopping: the search was not finished", refused
    assert not held.started.is_set(), "no frequency searched after the stop"


async def test_a_search_among_more_carriers_than_the_plan_takes_on_is_refused(rig: Rig) -> None:
    """A suggestion among 2,000 carriers took 16 s and 1.2 GB; among 4,000, a minute and gigabytes more."""
    plan = rig.store.frequency
    rig.tick()
    band = {"low_mhz": 510.0, "high_mhz": 526.0}
    plan.settings = dataclasses.replace(plan.settings, max_live_carriers=2)
    for path, body in (("suggest", {"channel": "shure-rx:3", **band}), ("coordinate", {"count": 1, **band})):
        refused = await rig.call("POST", f"{PLAN}/{path}", 409, json=body)
        assert refused["error"].startswith("the plan has 3 carriers, more than frequency.max_live_carriers (2)")
        assert refused["details"] == {"carriers": 3, "limit": 2}
    plan.settings = dataclasses.replace(plan.settings, max_live_carriers=0)  # the live check off: searches go on
    found = await rig.call("POST", f"{PLAN}/suggest", 200, json={"channel": "shure-rx:3", **band})
    assert found["candidates"]


async def test_a_second_frequency_retuned_into_a_conflict_is_checked(rig: Rig) -> None:
    rig.tune("shure-rx", 1, 518.2)
    rig.tune("shure-rx", 2, 518.6)
    rig.tune("shure-rx", 3, 530.0)
    rig.tick()
    assert rig.conflicts() == set()
    rig.hub.store.update_channel("shure-rx", 3, {"frequency2_mhz": 517.8})  # frequency diversity's second carrier
    rig.tick()
    body = await rig.call("GET", PLAN, 200)
    assert any(f["victim"] == "shure-rx:3/2" and f["severity"] == "alert" for f in body["findings"]), body["findings"]


async def test_a_frequency_diversity_channel_is_suggested_clear_of_its_own_second_frequency(rig: Rig) -> None:
    """A retune sets the first frequency only, yet the search left the channel's FREQUENCY2 out: the hub
    suggested and applied 550.7 MHz, 300 kHz from the channel's own 551.0 (an outside audit)."""
    rig.tune("shure-rx", 3, 550.5)
    rig.hub.store.update_channel("shure-rx", 3, {"frequency2_mhz": 551.0})
    rig.tick()
    band = {"low_mhz": 549.0, "high_mhz": 553.0}
    found = await rig.call("POST", f"{PLAN}/suggest", 200, json={"channel": "shure-rx:3", "count": 20, **band})
    offered = [candidate["frequency_mhz"] for candidate in found["candidates"]]
    assert offered and all(abs(mhz - 551.0) >= 0.35 for mhz in offered), offered
    group = await rig.call("POST", f"{PLAN}/coordinate", 200, json={"channels": ["shure-rx:3"], **band})
    assert group["fixed_carriers"] == 3, "the other two channels and the second frequency stay"
    assert abs(group["plan"][0]["frequency_mhz"] - 551.0) >= 0.35, group["plan"]


async def test_a_requested_band_wins_and_a_step_off_its_grid_is_refused(rig: Rig) -> None:
    """A configured band was applied on top of the requested one (nothing clean in 534-598 MHz for a band of
    470-534), and a 30 kHz step in a 25 kHz band gave frequencies the receiver refuses (outside audits)."""
    plan = rig.store.frequency
    plan.settings = dataclasses.replace(plan.settings, bands={"ulxd": Band(470.0, 534.0, 25.0)})
    ulxd = Device(id="shure-ulxd", vendor="shure", family="ulxd", host="127.0.0.1", port=2202)
    ulxd.channels = [Channel(index=1, frequency_mhz=500.0)]
    rig.hub.store.add_device(ulxd)
    rig.tick()
    body = {"channel": "shure-ulxd:1", "low_mhz": 534.0, "high_mhz": 598.0, "count": 3}
    found = await rig.call("POST", f"{PLAN}/suggest", 200, json=body)
    assert len(found["candidates"]) == 3 and all(534.0 < c["frequency_mhz"] <= 598.0 for c in found["candidates"])
    refused = await rig.call("POST", f"{PLAN}/suggest", 422, json={"channel": "shure-ulxd:1", "step_khz": 30})
    assert "not a multiple of the band's 25 kHz tuning step" in refused["error"], refused


async def test_two_channels_of_one_narrowband_receiver_on_one_frequency_are_a_conflict(rig: Rig) -> None:
    """They were merged into one carrier, as a wideband device's channels are: the collision never showed."""
    rig.tune("shure-rx", 1, 518.0)
    rig.tune("shure-rx", 2, 518.0)
    rig.tick()
    assert rig.conflicts() == {("shure-rx", 1, "spacing"), ("shure-rx", 2, "spacing")}


async def test_a_renamed_channel_is_named_in_the_plan_and_the_other_receivers_keep_theirs(rig: Rig) -> None:
    put_receiver(rig.hub.store, "shure-other", channels=1, frequency_mhz=640.0, name="Keys")
    rig.tune("shure-rx", 1, 518.2, name="Vocal 1")
    rig.tick()
    labels = rig.store.frequency.labels()
    assert labels["shure-rx:1"] == "Vocal 1 (shure-rx ch 1)" and labels["shure-other:1"] == "Keys (shure-other ch 1)"
    rig.hub.store.update_channel("shure-rx", 1, {"name": "Lead vox"})
    rig.hub.store.update_channel("shure-rx", 2, {"tx_present": False})  # a change that checks the plan again
    rig.tick()
    labels = rig.store.frequency.labels()
    assert labels["shure-rx:1"] == "Lead vox (shure-rx ch 1)" and labels["shure-other:1"] == "Keys (shure-other ch 1)"
    body = await rig.call("GET", PLAN, 200)
    assert {c["label"] for c in body["carriers"] if c["id"] == "shure-rx:1"} == {"Lead vox (shure-rx ch 1)"}


async def test_an_open_conflict_alert_follows_its_findings_and_says_each_change_once(rig: Rig) -> None:
    """A conflict alert kept the text it was raised with while the plan showed the conflict changing: more
    transmitters joining the product, one of them leaving again, a source renamed (a rename alone re-checked
    nothing, so not even the plan's labels followed until some other change)."""
    events: list[AlertEvent] = []
    rig.store.alerts.add_listener(events.append)
    rig.tune("shure-rx", 1, 518.2)
    rig.tune("shure-rx", 2, 518.6)
    rig.tune("shure-rx", 3, 517.8)
    rig.tick()

    def victim() -> Alert:
        [alert] = [a for a in rig.store.alerts.open_alerts() if (a.channel, a.detail) == (3, "intermod")]
        return alert

    first = victim()
    assert "shure-pair" not in first.message

    # two more transmitters: 2 x 517.0 - 516.2 lands on the victim as well
    put_receiver(rig.hub.store, "shure-pair", channels=2, frequency_mhz=517.0)
    rig.tune("shure-pair", 2, 516.2)
    rig.tick()
    joined = victim()
    assert joined.message != first.message and "more" in joined.message, joined.message
    # one of them leaves, the other stays: the conflict is the first pair's alone again
    rig.tune("shure-pair", 1, 530.0)
    rig.tick()
    assert victim().message == first.message
    # a source renamed: no re-check, the same tick's text names it
    rig.hub.store.update_channel("shure-rx", 1, {"name": "Lead vox"})
    rig.store.step()
    renamed = victim()
    assert "Lead vox (shure-rx ch 1)" in renamed.message and rig.store.frequency.labels()["shure-rx:1"].startswith(
        "Lead vox"
    )
    rig.tick(20, 20)  # checks that change nothing say nothing
    rig.hub.store.update_channel("shure-rx", 2, {"tx_present": True, "rf_dbm": -50.0})
    rig.tick()

    said = [(e.action, e.alert.message, e.alert.raised_at) for e in events if e.alert.id == first.id]
    assert said == [
        ("raised", first.message, first.raised_at),
        ("updated", joined.message, first.raised_at),
        ("updated", first.message, first.raised_at),
        ("updated", renamed.message, first.raised_at),
    ], said
    [stored] = [a for a in await rig.store.alerts.recent() if a.id == first.id]
    assert (stored.message, stored.raised_at, stored.cleared_at) == (renamed.message, first.raised_at, None)


async def test_a_conflict_alert_left_open_by_the_last_run_says_what_the_conflict_is_now(tmp_path: Path) -> None:
    """Open alerts are loaded at start with their text of then; the channel was renamed meanwhile."""
    state, clock = StateStore(), SimulatedClock(start=time.time())
    put_receiver(state, "shure-rx", channels=3, frequency_mhz=518.2)
    for index, mhz in ((2, 518.6), (3, 517.8)):
        state.update_channel("shure-rx", index, {"frequency_mhz": mhz})
    store = await open_simulated(tmp_path, state, clock)
    for _ in range(3):
        clock.advance(1)
        store.step()
    [before] = [a for a in store.alerts.open_alerts() if a.channel == 3]
    await store.close()

    state.update_channel("shure-rx", 1, {"name": "Lead vox"})
    store = await open_simulated(tmp_path, state, clock)
    try:
        events: list[AlertEvent] = []
        store.alerts.add_listener(events.append)
        clock.advance(1)
        store.step()
        [after] = [a for a in store.alerts.open_alerts() if a.channel == 3]
        assert (after.id, after.raised_at) == (before.id, before.raised_at)
        assert "Lead vox" in after.message and "Lead vox" not in before.message, after.message
        assert [(e.action, e.alert.id) for e in events if e.alert.channel == 3] == [("updated", before.id)]
    finally:
        await store.close()


def frequency_conflicts_sensor() -> dict[str, Any]:
    config = hub_discovery_config(Topics("wm", "hub1", "homeassistant"), 1, EntityOptions())
    sensor: dict[str, Any] = config["components"]["frequency_conflicts"]
    return sensor
