"""The must-show of issue 19, end to end: the hand-worked example of docs/frequency-coordination.md on
simulated Shure receivers (real protocol over loopback), the hub's live plan, a real Mosquitto and REST.

Three carriers 400 kHz apart: 2 x 518.200 - 518.600 = 517.800 MHz lands on the third receiver, and
2 x 518.200 - 517.800 = 518.600 MHz lands back on the second. The hub raises frequency-conflict alerts
(MQTT and REST), suggests a clean frequency for the third receiver, tunes it there through the command path
(token, audit, the receiver's confirmation), and both alerts clear."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator
from wmhub_sennheiser.simulator.ssc2 import Ssc2Simulator
from wmhub_shure.simulator import ShureSimulator

from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, FrequencyConfig, HttpSettings, HubConfig, MqttSettings, TunableBand
from hub.persistence import AlertSettings, Persistence
from hub.persistence.testing import quick_settings
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.mosquitto import MqttProbe, TestBroker

TOKEN = "frequency-token-for-the-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
A_MHZ, B_MHZ, C_MHZ = 518.200, 518.600, 517.800
ALERTS = "wmhub/hubs/rf/alerts"


def rf_hub(tmp_path: Path, plugin: str, mqtt_url: str = "off", **settings: Any) -> Hub:
    """A hub with one vendor plugin, REST on a free port and the frequency plan on."""
    config = HubConfig(
        hub_id="rf",
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mqtt_url),
        http=HttpSettings(port=0, token=TOKEN),
        discovery=DiscoverySettings(enabled=False),
        **settings,
    )
    plugins = PluginHost()
    plugins.load_entry_points(only=plugin)
    return compose_hub(config, plugins)


def device_at(hub: Hub, port: int) -> str | None:
    """The id of the device at ``port`` once it has channels."""
    return next((d.id for d in hub.store.devices.values() if d.port == port and d.channels), None)


def conflict_event(action: str, device_id: str) -> Any:
    def matches(event: dict[str, Any]) -> bool:
        alert = event["alert"]
        return event["action"] == action and alert["kind"] == "frequency_conflict" and alert["device_id"] == device_id

    return matches


@contextlib.asynccontextmanager
async def intermod_triple() -> AsyncIterator[tuple[ShureSimulator, ShureSimulator]]:
    """A ULXD4D at A and B and a ULXD4 at C: 2 A - B, an intermod hit on the third receiver."""
    async with ShureSimulator("ulxd4d", seed=3) as pair, ShureSimulator("ulxd4", seed=4) as third:
        pair.set_channel(1, frequency_mhz=A_MHZ)
        pair.set_channel(2, frequency_mhz=B_MHZ)
        third.set_channel(1, frequency_mhz=C_MHZ)
        yield pair, third


async def with_quick_alerts(hub: Hub, tmp_path: Path) -> Hub:
    """``hub`` with a store whose frequency alerts raise and clear within 0.3 s."""
    alerts = AlertSettings(frequency_for_s=0.3, clear_after_s=0.3)
    hub.persistence = await Persistence.open(tmp_path, hub.store, settings=quick_settings(tick_s=0.1, alerts=alerts))
    return hub


async def test_a_restart_never_says_all_clear_while_the_conflict_stands(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """At every start the retained plan went out as checked and conflict-free ("carriers": 0) about a second
    before the real one: Home Assistant's "Frequency conflicts" sensor and any flow saw a false all-clear. Until the
    devices of the run have reported, the previous run's plan stands."""
    plan_topic = "wmhub/hubs/rf/frequency_plan"
    async with intermod_triple() as (pair, third):
        devices = [pair.url, third.url]
        async with MqttProbe(mqtt_broker) as probe:
            await probe.subscribe(plan_topic)
            async with rf_hub(tmp_path, "shure", mqtt_broker.url, devices=devices):
                await probe.json(plan_topic, lambda plan: plan["conflict"], timeout=15)

            for receiver in (pair, third):
                receiver.answer_delay_s = 0.5  # their reports come well after the hub's first tick
            probe.clear()
            async with rf_hub(tmp_path, "shure", mqtt_broker.url, devices=devices):
                await probe.json(plan_topic, lambda plan: plan["carriers"] == 3, timeout=20)
            said = [orjson.loads(payload) for topic, payload in probe.messages if topic == plan_topic and payload]
            assert [(plan["conflict"], plan["checked"]) for plan in said] == [(True, True)] * len(said), said


async def test_an_intermod_hit_is_alerted_suggested_away_and_cleared(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    hub = await with_quick_alerts(rf_hub(tmp_path, "shure", mqtt_broker.url, meter_rate_ms=500), tmp_path)
    async with intermod_triple() as (pair, third), MqttProbe(mqtt_broker) as probe:
        await probe.subscribe(f"{ALERTS}/#")
        await probe.subscribe("wmhub/hubs/rf/frequency_plan")
        await probe.subscribe("homeassistant/device/wmhub_hub_rf/config")
        async with hub, aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}") as http:
            await hub.add_device(pair.url, source="test")
            await hub.add_device(third.url, source="test")

            pair_id = await eventually(lambda: device_at(hub, pair.port), 10, "the two-channel receiver")
            third_id = await eventually(lambda: device_at(hub, third.port), 10, "the one-channel receiver")

            # MQTT: the alert on the victim, the retained plan summary, Home Assistant's sensor
            raised = await probe.json(f"{ALERTS}/event", conflict_event("raised", third_id), timeout=15)
            assert raised["alert"]["detail"] == "intermod" and raised["alert"]["channel"] == 1
            assert "517.800 MHz" in raised["alert"]["message"] and "2f1-f2" in raised["alert"]["message"]
            await probe.json(f"{ALERTS}/event", conflict_event("raised", pair_id), timeout=15)
            summary = await probe.json("wmhub/hubs/rf/frequency_plan", lambda plan: plan["conflict"], timeout=10)
            [hit] = [f for f in summary["findings"] if f["victim"] == f"{third_id}:1"]
            assert (hit["product"], hit["sources"], hit["product_mhz"], hit["offset_khz"]) == (
                "2f1-f2",
                [f"{pair_id}:1", f"{pair_id}:2"],
                C_MHZ,
                0.0,
            )
            hub_device = await probe.json("homeassistant/device/wmhub_hub_rf/config")
            sensor = hub_device["components"]["frequency_conflicts"]
            assert hub_device["device"]["identifiers"] == ["wmhub_hub_rf"] and sensor["device_class"] == "problem"
            assert sensor["state_topic"] == "wmhub/hubs/rf/frequency_plan" and sensor["platform"] == "binary_sensor"

            # REST: the same findings and the open alerts
            async with http.get("/api/v1/frequency-plan") as response:
                plan = await response.json()
            victims = {(f["victim"], f["product"], f["severity"]) for f in plan["findings"]}
            assert {(f"{third_id}:1", "2f1-f2", "alert"), (f"{pair_id}:2", "2f1-f2", "alert")} <= victims
            async with http.get("/api/v1/alerts") as response:
                open_alerts = (await response.json())["items"]
            assert {(a["device_id"], a["kind"]) for a in open_alerts} >= {
                (third_id, "frequency_conflict"),
                (pair_id, "frequency_conflict"),
            }

            # a suggestion, applied through the command path (token, audit, the receiver's confirmation)
            body = {"channel": f"{third_id}:1", "low_mhz": 510.0, "high_mhz": 530.0, "step_khz": 25, "apply": True}
            async with http.post("/api/v1/frequency-plan/suggest", json=body) as response:
                assert response.status == 401, "tuning a receiver needs the token"
            async with http.post("/api/v1/frequency-plan/suggest", json=body, headers=AUTH) as response:
                suggestion = await response.json()
                assert response.status == 200, suggestion
            best = suggestion["candidates"][0]["frequency_mhz"]
            assert suggestion["applied"]["ok"] and suggestion["current_mhz"] == C_MHZ
            assert third.channels[1].values["frequency_mhz"] == best, "the receiver itself was retuned"

            await probe.json(f"{ALERTS}/event", conflict_event("cleared", third_id), timeout=15)
            await probe.json(f"{ALERTS}/event", conflict_event("cleared", pair_id), timeout=15)
            await probe.json("wmhub/hubs/rf/frequency_plan", lambda plan: not plan["conflict"], timeout=10)
            async with http.get("/api/v1/frequency-plan") as response:
                assert [f for f in (await response.json())["findings"] if f["severity"] == "alert"] == []
            async with http.get("/api/v1/audit", params={"target": third_id}) as response:
                actions = [entry["action"] for entry in (await response.json())["items"]]
            assert "command.frequency" in actions, actions
    await hub.persistence.close()


async def test_an_open_conflict_alert_says_what_the_conflict_is_now(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """A conflict alert kept the text it was raised with: after a source channel was renamed, or the victim was
    retuned within the guard (the conflict stands, its offset moved), REST, MQTT and the board still named the
    old source and offset while the plan showed the new ones. The open alert follows the findings, stays the
    alert it was (id, raise time, one row in the history) and is re-said only when its text changes."""
    hub = await with_quick_alerts(rf_hub(tmp_path, "shure", mqtt_broker.url), tmp_path)
    plan_topic = "wmhub/hubs/rf/frequency_plan"
    async with intermod_triple() as (pair, third), MqttProbe(mqtt_broker) as probe:
        await probe.subscribe(f"{ALERTS}/#")
        await probe.subscribe(plan_topic)
        async with hub, aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", headers=AUTH) as http:
            await hub.add_device(pair.url, source="test")
            await hub.add_device(third.url, source="test")
            pair_id = await eventually(lambda: device_at(hub, pair.port), 10, "the two-channel receiver")
            third_id = await eventually(lambda: device_at(hub, third.port), 10, "the one-channel receiver")
            raised = (await probe.json(f"{ALERTS}/event", conflict_event("raised", third_id), timeout=15))["alert"]
            assert "+0 kHz" in raised["message"] and "Lead vox" not in raised["message"], raised
            async with http.post(f"/api/v1/alerts/{raised['id']}/acknowledge", json={"by": "A2"}) as response:
                assert response.status == 200, await response.text()

            def updated_saying(*words: str) -> Callable[[dict[str, Any]], bool]:
                return lambda event: (
                    conflict_event("updated", third_id)(event)
                    and all(word in event["alert"]["message"] for word in words)
                )

            # a source renamed by its extended name: the same alert names it now
            path = f"/api/v1/channels/{pair_id}:1/extended-name"
            async with http.put(path, json={"name": "Lead vox"}) as response:
                assert response.status == 200, await response.text()
            renamed = (await probe.json(f"{ALERTS}/event", updated_saying("Lead vox"), timeout=10))["alert"]
            assert (renamed["id"], renamed["raised_at"]) == (raised["id"], raised["raised_at"]), renamed

            # the victim renamed on the receiver itself
            command = f"/api/v1/channels/{third_id}:1/commands"
            async with http.post(command, json={"kind": "name", "value": "VOX3"}) as response:
                assert response.status == 200, await response.text()
            await probe.json(f"{ALERTS}/event", updated_saying("VOX3", "Lead vox"), timeout=10)

            # the victim retuned 25 kHz: still within the 100 kHz guard of 2f1-f2, the offset is what changed
            async with http.post(command, json={"kind": "frequency", "value": C_MHZ + 0.025}) as response:
                assert response.status == 200, await response.text()
            retuned = (await probe.json(f"{ALERTS}/event", updated_saying("VOX3", "-25 kHz"), timeout=10))["alert"]
            assert retuned["acknowledged_by"] == "A2", "seen stays seen: the conflict is the one acknowledged"
            assert (retuned["id"], retuned["raised_at"], retuned["cleared_at"]) == (
                raised["id"],
                raised["raised_at"],
                None,
            )

            # the plan and every place the alert is read say the same
            async with http.get("/api/v1/frequency-plan") as response:
                findings = (await response.json())["findings"]
            [hit] = [f for f in findings if f["victim"] == f"{third_id}:1" and f["severity"] == "alert"]
            assert hit["offset_khz"] == -25.0 and hit["source_labels"][0].startswith("Lead vox"), hit
            async with http.get("/api/v1/alerts") as response:
                [listed] = [a for a in (await response.json())["items"] if a["id"] == raised["id"]]
            assert listed == retuned, (listed, retuned)
            await probe.json(ALERTS, lambda items: retuned in items, timeout=5)  # the retained list (Home Assistant)

            # re-checks that change nothing of the alert re-say nothing: a far-away carrier declared, then removed
            async with http.post(
                "/api/v1/frequency-plan/carriers", json={"label": "far", "frequency_mhz": 600.0}
            ) as response:
                assert response.status == 201, await response.text()
                declared = (await response.json())["id"]
            await probe.json(plan_topic, lambda plan: plan["declared"] == 1, timeout=10)
            async with http.delete(f"/api/v1/frequency-plan/carriers/{declared}") as response:
                assert response.status in (200, 204), await response.text()
            await probe.json(plan_topic, lambda plan: plan["declared"] == 0 and plan["carriers"] == 3, timeout=10)
            said = [orjson.loads(payload) for topic, payload in probe.messages if topic == f"{ALERTS}/event"]
            actions = [event["action"] for event in said if event["alert"]["id"] == raised["id"]]
            assert actions == ["raised", "acknowledged", "updated", "updated", "updated"], actions

            # the history holds the alert once, with its current text and its first raise time
            async with http.get("/api/v1/alerts", params={"recent": "true"}) as response:
                rows = [a for a in (await response.json())["items"] if a["id"] == raised["id"]]
            assert [(row["message"], row["raised_at"]) for row in rows] == [(retuned["message"], raised["raised_at"])]
    await hub.persistence.close()


async def test_a_group_is_coordinated_and_tuned_on_the_receivers(tmp_path: Path) -> None:
    async with ShureSimulator("ulxd4q", seed=5) as quad, rf_hub(tmp_path, "shure") as hub:
        for index in range(1, 5):  # all four on one frequency: a spacing problem each
            quad.set_channel(index, frequency_mhz=500.0)
        await hub.add_device(quad.url, source="test")
        device_id = await eventually(lambda: next(iter(hub.store.devices), None), 10, "the receiver")
        await eventually(lambda: len(hub.store.devices[device_id].channels) == 4, 10, "its channels")
        channels = [f"{device_id}:{index}" for index in range(1, 5)]
        body = {"channels": channels, "low_mhz": 490.0, "high_mhz": 510.0, "backups": 1, "apply": True}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", headers=AUTH) as http:
            async with http.post("/api/v1/frequency-plan/coordinate", json=body) as response:
                result = await response.json()
                assert response.status == 200, result
            assert all(tuning["outcome"]["ok"] for tuning in result["plan"]), result["plan"]
            wanted = {index: t["frequency_mhz"] for index, t in enumerate(result["plan"], start=1)}
            assert {i: quad.channels[i].values["frequency_mhz"] for i in range(1, 5)} == wanted
            assert len(set(wanted.values())) == 4 and len(result["backups"]) == 1

            async def findings() -> list[Any]:
                async with http.get("/api/v1/frequency-plan") as answer:
                    return list((await answer.json())["findings"])

            deadline = asyncio.get_running_loop().time() + 10
            while await findings():  # the plan follows the receivers' confirmed frequencies
                assert asyncio.get_running_loop().time() < deadline, await findings()
                await asyncio.sleep(0.1)


async def test_an_in_ear_transmitter_on_a_mic_frequency_is_an_alert_until_rf_muted(tmp_path: Path) -> None:
    """A P10T reports no transmitter of its own (it is one): online and not RF-muted, its carrier is on air, so
    sitting on an active mic's frequency is a conflict alert, not a warning."""
    hub = await with_quick_alerts(rf_hub(tmp_path, "shure"), tmp_path)
    async with (
        ShureSimulator("ulxd4", seed=6) as mic,
        ShureSimulator("p10t", seed=7) as iem,
        hub,
        aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}") as http,
    ):
        mic.set_channel(1, frequency_mhz=C_MHZ)
        iem.set_channel(1, frequency_mhz=C_MHZ, tx_muted=False)
        iem.set_channel(2, frequency_mhz=C_MHZ + 10)
        await hub.add_device(mic.url, source="test")
        await hub.add_device(iem.url, source="test")

        mic_id = await eventually(lambda: device_at(hub, mic.port), 10, "the mic receiver")
        iem_id = await eventually(lambda: device_at(hub, iem.port), 10, "the in-ear transmitter")

        async def plan() -> dict[str, Any]:
            async with http.get("/api/v1/frequency-plan") as response:
                return dict(await response.json())

        async def mic_alerted() -> bool:
            async with http.get("/api/v1/alerts") as response:
                items = (await response.json())["items"]
            return any(a["kind"] == "frequency_conflict" and (a["device_id"], a["detail"]) == (mic_id, "spacing")
                       for a in items)  # fmt: skip

        async def settles(condition: Callable[[], Awaitable[bool]], what: str, wanted: bool = True) -> None:
            deadline = asyncio.get_running_loop().time() + 15
            while await condition() is not wanted:
                assert asyncio.get_running_loop().time() < deadline, what
                await asyncio.sleep(0.1)

        async def iem_on_air() -> bool:
            states = {c["id"]: c["state"] for c in (await plan())["carriers"]}
            return states.get(f"{iem_id}:1") == "active" and states.get(f"{mic_id}:1") == "active"

        await settles(iem_on_air, "the P10T's carrier is on air while it is online")
        await settles(mic_alerted, "the mic gets a spacing alert")
        spacing = [f for f in (await plan())["findings"] if f["product"] == "spacing" and f["victim"] == f"{mic_id}:1"]
        assert [f["severity"] for f in spacing] == ["alert"] and spacing[0]["sources"] == [f"{iem_id}:1"]

        iem.set_channel(1, tx_muted=True)  # RF mute: off the air, so the conflict is only planned
        await settles(mic_alerted, "the alert clears once RF-muted", wanted=False)
        states = {c["id"]: c["state"] for c in (await plan())["carriers"]}
        assert states[f"{iem_id}:1"] == "planned"
    await hub.persistence.close()


async def test_a_suggestion_without_a_band_is_one_the_receiver_accepts(tmp_path: Path) -> None:
    """The Sennheiser plugin accepts 470-1075 MHz for EW-DX, the receiver at hand only its band variant. With
    the largest margin first, the default suggestion was the far edge (1075 MHz) and the receiver answered
    '406 not acceptable' (an outside audit). In such a range enough room counts alike and the smallest retune
    wins: a frequency near where the receiver tunes now, inside its band."""
    async with (
        Ssc1Simulator("ewdx-em4", tick_s=0.2) as receiver,
        rf_hub(tmp_path, "sennheiser") as hub,
        aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", headers=AUTH) as http,
    ):
        await hub.add_device(receiver.url, source="test")
        device_id = await eventually(
            lambda: next((d.id for d in hub.store.devices.values() if len(d.channels) == 4), None), 10, "the EM 4"
        )
        low, high = (khz / 1000 for khz in receiver.device.band_khz)
        before = receiver.channels[1].frequency_khz / 1000
        body = {"channel": f"{device_id}:2", "count": 3, "apply": True}
        async with http.post("/api/v1/frequency-plan/suggest", json=body) as response:
            suggestion = await response.json()
            assert response.status == 200, suggestion
        best = suggestion["candidates"][0]
        assert suggestion["applied"]["ok"], "the receiver took it"
        assert suggestion["band"]["whole_range"] is True, "the plugin's range, not the receiver's band: said so"
        assert low <= best["frequency_mhz"] <= high and receiver.channels[1].frequency_khz == round(
            best["frequency_mhz"] * 1000
        )
        assert abs(best["frequency_mhz"] - before) < 10 and best["margin_khz"] > 0, "near, with room past the guards"


async def test_a_band_configured_for_the_receivers_band_code_keeps_the_suggestion_inside_it(tmp_path: Path) -> None:
    """Two receivers of one family can be different band variants: `[frequency.bands.<family>-<code>]` names
    the variant by the band code the receiver reports (EW-DX `Q1-9`) and wins over the family's band."""
    bands = {
        "ew-dx": TunableBand(low_mhz=600.0, high_mhz=607.0),
        "ew-dx-q1-9": TunableBand(low_mhz=520.0, high_mhz=530.0),
    }
    async with (
        Ssc1Simulator("ewdx-em4", tick_s=0.2) as receiver,
        rf_hub(tmp_path, "sennheiser", frequency=FrequencyConfig(bands=bands)) as hub,
        aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", headers=AUTH) as http,
    ):
        await hub.add_device(receiver.url, source="test")
        device_id = await eventually(
            lambda: next((d.id for d in hub.store.devices.values() if d.rf_band and d.channels), None), 10, "the EM 4"
        )
        body = {"channel": f"{device_id}:1", "count": 3, "apply": True}
        async with http.post("/api/v1/frequency-plan/suggest", json=body) as response:
            suggestion = await response.json()
            assert response.status == 200, suggestion
        assert suggestion["band"]["low_mhz"] == 520.0 and suggestion["band"]["high_mhz"] == 530.0
        assert suggestion["band"]["whole_range"] is False
        assert all(520.0 <= candidate["frequency_mhz"] <= 530.0 for candidate in suggestion["candidates"])
        assert suggestion["applied"]["ok"] and 520_000 <= receiver.channels[0].frequency_khz <= 530_000


async def test_a_shure_receiver_without_a_configured_band_gets_a_suggestion_it_takes(tmp_path: Path) -> None:
    """The Shure plugin declares the protocol's 100-999.999 MHz at 1 kHz: a suggestion without a band was
    refused ("900000 candidates"); it is searched near where the receiver tunes, on a 25 kHz grid."""
    async with (
        ShureSimulator("ulxd4d", seed=3) as receiver,
        rf_hub(tmp_path, "shure") as hub,
        aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", headers=AUTH) as http,
    ):
        await hub.add_device(receiver.url, source="test")
        device_id = await eventually(lambda: device_at(hub, receiver.port), 10, "the ULX-D")
        before = receiver.channels[1].values["frequency_mhz"]
        body = {"channel": f"{device_id}:1", "apply": True}
        async with http.post("/api/v1/frequency-plan/suggest", json=body) as response:
            suggestion = await response.json()
            assert response.status == 200, suggestion
        best = suggestion["candidates"][0]["frequency_mhz"]
        assert suggestion["band"]["whole_range"] is True and abs(best - before) <= 5
        assert suggestion["applied"]["ok"] and receiver.channels[1].values["frequency_mhz"] == best


async def test_a_receiver_near_its_band_edge_is_offered_a_frequency_inside_it(tmp_path: Path) -> None:
    """An EW-DX at 606.9 MHz, 0.9 MHz below its band's top (607.8), known to the hub only as the plugin's
    470-1075 MHz: past the edge there are no carriers, so the most room was there, and 611.55 MHz was
    suggested; the receiver answered "406 not acceptable" (an outside audit). Modest room near it wins now."""
    async with (
        Ssc1Simulator("ewdx-em4", tick_s=0.2) as receiver,
        rf_hub(tmp_path, "sennheiser") as hub,
        aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", headers=AUTH) as http,
    ):
        top = receiver.device.band_khz[1]
        for channel, khz in zip(receiver.channels, (600_000, 601_000, 603_500, top - 900), strict=True):
            channel.frequency_khz = khz
        await hub.add_device(receiver.url, source="test")
        device_id = await eventually(
            lambda: next((d.id for d in hub.store.devices.values() if len(d.channels) == 4), None), 10, "the EM 4"
        )
        body = {"channel": f"{device_id}:4", "apply": True}
        async with http.post("/api/v1/frequency-plan/suggest", json=body) as response:
            suggestion = await response.json()
            assert response.status == 200, suggestion
        best = suggestion["candidates"][0]["frequency_mhz"]
        assert best * 1000 <= top and receiver.channels[3].frequency_khz == round(best * 1000), suggestion


async def test_a_wideband_carrier_moves_whole_when_one_of_its_channels_is_retuned(tmp_path: Path) -> None:
    """The demo's Spectera has both RF channels on 686 MHz: the plan takes them as one carrier, yet "suggest +
    apply" for one channel moved only its RF channel, and the hub then alerted on the two halves of its own
    base station (an outside audit). Every channel of the carrier is tuned now."""
    async with (
        Ssc2Simulator(tick_s=0.2) as base,
        rf_hub(tmp_path, "sennheiser") as hub,
        aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", headers=AUTH) as http,
    ):
        base.rf_khz = {0: 686_000, 1: 686_000}
        await hub.add_device(base.url(), source="test")
        device_id = await eventually(
            lambda: next((d.id for d in hub.store.devices.values() if len(d.channels) == 4), None), 15, "Spectera"
        )
        body = {"channel": f"{device_id}:1", "range_low_mhz": 660.0, "range_high_mhz": 670.0, "apply": True}
        async with http.post("/api/v1/frequency-plan/suggest", json=body) as response:
            suggestion = await response.json()
            assert response.status == 200, suggestion
        best = round(suggestion["candidates"][0]["frequency_mhz"] * 1000)
        assert 660_000 <= best <= 670_000 and base.rf_khz == {0: best, 1: best}, (best, base.rf_khz)
        tuned = [(t["channel"], t["outcome"]["ok"]) for t in suggestion["tuned"]]
        assert tuned == [(f"{device_id}:{index}", True) for index in range(1, 5)], "each channel's outcome"
        async with http.get("/api/v1/frequency-plan") as response:
            plan = await response.json()
        assert [c["channels"] for c in plan["carriers"]] == [[1, 2, 3, 4]] and plan["findings"] == [], plan


async def test_a_spectera_carrier_is_as_wide_as_its_bandwidth_mode_and_suggested_on_its_grid(tmp_path: Path) -> None:
    """Spectera reports each RF channel's width (src/types.ts RfChannel.bandwidthMode 6000/8000/10000 kHz) and
    tunes in whole MHz ("Step: 1000" kHz): the plan took every carrier as 8 MHz wide, missed a carrier inside a
    10 MHz one, and suggested frequencies off the grid."""
    async with (
        Ssc2Simulator(tick_s=0.2) as base,
        rf_hub(tmp_path, "sennheiser") as hub,
        aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", headers=AUTH) as http,
    ):
        base.rf_khz, base.rf_bandwidth_khz = {0: 474_000, 1: 530_000}, {0: 6000, 1: 10000}
        await hub.add_device(base.url(), source="test")
        device_id = await eventually(
            lambda: next((d.id for d in hub.store.devices.values() if len(d.channels) == 4), None), 15, "Spectera"
        )
        # 4.4 MHz below the 10 MHz carrier's centre: inside it (525..535), outside an 8 MHz one (526..534)
        carrier = {"label": "IEM", "frequency_mhz": 525.6}
        async with http.post("/api/v1/frequency-plan/carriers", json=carrier) as response:
            assert response.status in (200, 201), await response.text()

        async def plan() -> dict[str, Any]:
            async with http.get("/api/v1/frequency-plan") as response:
                answer: dict[str, Any] = await response.json()
                return answer

        deadline = asyncio.get_running_loop().time() + 10  # the plan is checked again on the persistence tick
        found = await plan()
        while not any("IEM" in str(finding) for finding in found["findings"]):
            assert asyncio.get_running_loop().time() < deadline, f"the IEM inside the 10 MHz carrier: {found}"
            await asyncio.sleep(0.1)
            found = await plan()
        widths = {c["frequency_mhz"]: c["bandwidth_khz"] for c in found["carriers"] if c.get("device_id")}
        assert widths == {474.0: 6000, 530.0: 10000}, found["carriers"]
        body = {"channel": f"{device_id}:1", "count": 5}
        async with http.post("/api/v1/frequency-plan/suggest", json=body) as response:
            suggestion = await response.json()
            assert response.status == 200, suggestion
        assert [c["frequency_mhz"] for c in suggestion["candidates"]] == [
            round(c["frequency_mhz"]) for c in suggestion["candidates"]
        ], "whole MHz only"


SHURE_BANDS: Final = FrequencyConfig(
    bands={family: TunableBand(low_mhz=470.0, high_mhz=534.0, step_khz=25) for family in ("ulxd", "qlxd")}
)
COORDINATE: Final = "/api/v1/frequency-plan/coordinate"


def tuned_to(receivers: list[tuple[ShureSimulator, int]]) -> list[float]:
    """What the simulated receivers' channels are tuned to, as the receivers themselves hold it."""
    return [receiver.channels[index].values["frequency_mhz"] for receiver, index in receivers]


async def test_a_group_is_tuned_only_where_each_of_its_channels_tunes(tmp_path: Path) -> None:
    """ULX-D and QLX-D configured for 470-534 MHz on 25 kHz: "coordinate + apply" in 200-240 MHz on 5 kHz
    answered 200 and tuned all three to 221.335, 214.37 and 228.58 MHz, and the hub then alerted them out of
    band (an outside audit): it searched only the request's range, never each channel's band and step."""
    async with (
        ShureSimulator("ulxd4q", seed=5) as quad,
        ShureSimulator("qlxd4", seed=6) as single,
        rf_hub(tmp_path, "shure", frequency=SHURE_BANDS) as hub,
        aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", headers=AUTH) as http,
    ):
        for index in range(1, 5):
            quad.set_channel(index, frequency_mhz=480.0 + index)
        single.set_channel(1, frequency_mhz=490.0)
        await hub.add_device(quad.url, source="test")
        await hub.add_device(single.url, source="test")
        quad_id = await eventually(lambda: device_at(hub, quad.port), 10, "the ULX-D")
        single_id = await eventually(lambda: device_at(hub, single.port), 10, "the QLX-D")
        receivers = [(quad, 1), (quad, 3), (single, 1)]
        channels = [f"{quad_id}:1", f"{quad_id}:3", f"{single_id}:1"]
        before = tuned_to(receivers)

        for wrong, why in (
            ({"low_mhz": 200.0, "high_mhz": 240.0}, "200-240 MHz holds no tunable frequency of the band 470-534"),
            ({"low_mhz": 470.0, "high_mhz": 534.0, "step_khz": 5}, "not a multiple of the band's 25 kHz"),
        ):
            async with http.post(COORDINATE, json={"channels": channels, "apply": True, **wrong}) as response:
                refused = await response.json()
                assert response.status == 422, refused
            assert why in refused["error"] and f"{quad_id} ch 1" in refused["error"], refused
            assert tuned_to(receivers) == before, "nothing was tuned"

        # a range reaching below the band: only its part inside the band, on the band's 25 kHz grid
        body = {"channels": channels, "apply": True, "low_mhz": 460.0, "high_mhz": 476.0}
        async with http.post(COORDINATE, json=body) as response:
            result = await response.json()
            assert response.status == 200, result
        now = tuned_to(receivers)
        assert now == [tuning["frequency_mhz"] for tuning in result["plan"]], (now, result["plan"])
        assert all(470.0 <= mhz <= 476.0 and round(mhz * 1000) % 25 == 0 for mhz in now), now


async def test_a_group_is_tuned_whole_or_the_answer_says_what_moved(tmp_path: Path) -> None:
    """A UHF-R has no frequency control (the hub knows it from its capabilities): "coordinate + apply" with one
    retuned the other channels, left it, and answered 200 with the failure only inside plan[i].outcome (an
    outside audit). A channel that would be refused now refuses the whole request, nothing sent; a receiver
    that fails once the commands go out stops the rest, and the answer is an error saying which moved. A band
    too narrow for the group said so without apply, but with apply answered 409 with no details."""
    async with (
        ShureSimulator("ulxd4q", seed=5) as quad,
        ShureSimulator("ur4d", seed=6) as uhfr,
        ShureSimulator("qlxd4", seed=7) as single,
        rf_hub(tmp_path, "shure", frequency=SHURE_BANDS) as hub,
        aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", headers=AUTH) as http,
    ):
        for index in range(1, 5):
            quad.set_channel(index, frequency_mhz=480.0 + index)
        uhfr.set_channel(1, frequency_mhz=490.0)
        uhfr.set_channel(2, frequency_mhz=491.0)
        single.set_channel(1, frequency_mhz=500.0)
        for receiver in (quad, uhfr, single):
            await hub.add_device(receiver.url, source="test")
        quad_id, uhfr_id, single_id = [
            await eventually(lambda port=receiver.port: device_at(hub, port), 10, receiver.family.key)
            for receiver in (quad, uhfr, single)
        ]
        receivers = [(quad, 1), (uhfr, 1), (single, 1)]
        before = tuned_to(receivers)
        body = {"channels": [f"{quad_id}:1", f"{uhfr_id}:1", f"{single_id}:1"], "apply": True}
        async with http.post(COORDINATE, json={**body, "low_mhz": 470.0, "high_mhz": 534.0}) as response:
            refused = await response.json()
            assert response.status == 409 and refused["code"] == "not_supported", refused
        assert refused["error"].startswith(f"{uhfr_id}:1: "), refused["error"]
        outcomes = [tuning["outcome"]["code"] for tuning in refused["details"]["plan"]]
        assert outcomes == ["not_sent", "not_supported", "not_sent"], refused["details"]["plan"]
        assert tuned_to(receivers) == before, "nothing was tuned"

        receivers = [(quad, 1), (single, 1), (quad, 3)]
        before = tuned_to(receivers)
        body = {"channels": [f"{quad_id}:1", f"{single_id}:1", f"{quad_id}:3"], "apply": True}
        async with http.post(COORDINATE, json={**body, "low_mhz": 470.0, "high_mhz": 470.3}) as response:
            crowded = await response.json()
            assert response.status == 409 and crowded["code"] == "no_clean_frequency", crowded
        assert "1 of the 3 channels" in crowded["error"], "how many fit, as without apply"
        assert crowded["details"]["notes"] == ["only 1 of 3 frequencies fit the band with these guards"], crowded
        assert tuned_to(receivers) == before

        single.refused_params.add("FREQUENCY")  # it answers ERR: only sending the command can tell
        async with http.post(COORDINATE, json={**body, "low_mhz": 500.0, "high_mhz": 534.0}) as response:
            failed = await response.json()
            assert response.status == 502 and failed["code"] == "refused", failed
        assert failed["error"].startswith(f"{single_id}:1: ") and "1 of 3 channels retuned" in failed["error"]
        plan = failed["details"]["plan"]
        assert [(tuning["outcome"]["ok"], tuning["outcome"]["code"]) for tuning in plan] == [
            (True, None),
            (False, "refused"),
            (False, "not_sent"),
        ], plan
        assert tuned_to(receivers) == [plan[0]["frequency_mhz"], before[1], before[2]]


async def test_a_search_before_the_first_check_sees_every_carrier(tmp_path: Path) -> None:
    """Suggest and coordinate searched the live check's carrier list, which lags: before the first check of a
    run (up to 15 s while a receiver is down) it is empty, so a coordination proposed 600.4 MHz beside a
    declared 600.5 MHz carrier and a suggestion found no receiver; after a slow check the list is held back
    (an outside audit). A search takes the carriers as they are now."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    down = f"shure://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # a receiver that is down: the first check waits for it
    async with ShureSimulator("ulxd4", seed=8) as receiver:
        receiver.set_channel(1, frequency_mhz=600.0)
        async with (
            rf_hub(tmp_path, "shure", devices=[receiver.url, down]) as hub,
            aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}", headers=AUTH) as http,
        ):
            declared = {"label": "IEM rack", "frequency_mhz": 600.5}
            async with http.post("/api/v1/frequency-plan/carriers", json=declared) as response:
                assert response.status == 201, await response.text()
            receiver_id = await eventually(lambda: device_at(hub, receiver.port), 10, "the ULX-D")
            async with http.get("/api/v1/frequency-plan") as response:
                assert (await response.json())["checked"] is False, "the first check still waits"

            body = {"channel": f"{receiver_id}:1", "low_mhz": 599.0, "high_mhz": 602.0, "count": 50}
            async with http.post("/api/v1/frequency-plan/suggest", json=body) as response:
                suggestion = await response.json()
                assert response.status == 200, suggestion
            offered = [candidate["frequency_mhz"] for candidate in suggestion["candidates"]]
            assert offered and all(abs(mhz - 600.5) >= 0.35 for mhz in offered), offered

            async with http.post(COORDINATE, json={"count": 1, "low_mhz": 600.4, "high_mhz": 600.6}) as response:
                group = await response.json()
                assert response.status == 200, group
            assert group["frequencies"] == [] and group["fixed_carriers"] == 2, group
