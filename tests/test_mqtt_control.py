"""Control round trips: MQTT set -> plugin -> simulated receiver -> changed channel state back on MQTT,
for a Shure and a Sennheiser receiver speaking their real protocols on loopback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator
from wmhub_shure.simulator import ShureSimulator
from wmhub_shure.simulator.replay import Exchange, ReplayDevice, Transcript

from hub import hookimpl
from hub.app import Hub
from hub.clock import SimulatedClock
from hub.drivers import command_deadline
from hub.hookspecs import Candidate, DriverSpec
from hub.model import Capabilities, Command, CommandExpiredError, CommandKind, CommandLimits, CommandResult, TextLimits
from hub.plugins import PluginHost
from hub.testing import QuietDriver, eventually
from tests.mosquitto import MqttProbe, TestBroker
from tests.test_faults_shure_transcripts import TRANSCRIPTS as SHURE_TRANSCRIPTS
from tests.test_mqtt_bridge import listening_to, running_hub


def vendor_plugins() -> PluginHost:
    plugins = PluginHost()
    plugins.load_entry_points(only="shure,sennheiser")
    return plugins


async def set_and_confirm(
    probe: MqttProbe, base: str, device_id: str, channel: int, change: dict[str, Any]
) -> dict[str, Any]:
    """Send ``change`` on the channel's set topic; return the channel state once it shows the change."""
    response = await probe.request(
        f"{base}/hubs/hub1/response/set", f"{base}/devices/{device_id}/channels/{channel}/set", change, timeout=10
    )
    assert response["status"] == "ok", response
    assert all(result["ok"] for result in response["data"]["results"].values())
    state: dict[str, Any] = await probe.json(
        f"{base}/devices/{device_id}/channels/{channel}",
        lambda value: all(value[key] == wanted for key, wanted in change.items()),
    )
    return state


async def hub_device_id(hub: Hub, vendor: str) -> str:
    """The id of the hub's receiver of ``vendor`` once it is online and the hub takes sets for it."""

    def found() -> str | None:
        return next((d.id for d in hub.store.devices.values() if d.vendor == vendor and d.online), None)

    device_id = await eventually(found, 10, f"the {vendor} receiver online")
    await listening_to(hub, device_id)
    return device_id


@asynccontextmanager
async def ulxd_on_mqtt(
    mqtt_broker: TestBroker, tmp_path: Path
) -> AsyncIterator[tuple[ShureSimulator, Hub, MqttProbe, str, str]]:
    """A ULXD4D watched by a hub, and a probe subscribed to everything under the hub's base topic: the
    simulator, the hub, the probe, the base topic and the receiver's id."""
    async with (
        ShureSimulator("ulxd4d", seed=5) as sim,
        running_hub(mqtt_broker, tmp_path, [sim.url], plugins=vendor_plugins()) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        base = hub.config.mqtt.base_topic
        device_id = await hub_device_id(hub, "shure")
        await probe.subscribe(f"{base}/#")
        yield sim, hub, probe, base, device_id


@pytest.mark.parametrize("model", ["ulxd4d", "ad4q"])
async def test_shure_set_over_mqtt_changes_the_receiver(mqtt_broker: TestBroker, tmp_path: Path, model: str) -> None:
    async with (
        ShureSimulator(model, seed=5) as sim,
        running_hub(mqtt_broker, tmp_path, [sim.url], plugins=vendor_plugins()) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        base = hub.config.mqtt.base_topic
        device_id = await hub_device_id(hub, "shure")
        await probe.subscribe(f"{base}/#")
        state = await set_and_confirm(probe, base, device_id, 1, {"name": "Vox 2", "muted": True, "gain_db": 12})
        assert state["name"] == "Vox 2"
        assert sim.channels[1].values["name"] == "Vox 2"
        assert sim.channels[1].values["muted"] is True
        assert sim.channels[1].values["gain_db"] == 12
        await set_and_confirm(probe, base, device_id, 1, {"muted": False})
        assert sim.channels[1].values["muted"] is False


async def test_transmitter_power_over_mqtt_in_ear_level_and_showlink_slot_mode(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    async with (
        ShureSimulator("p10t", seed=5) as iem,
        ShureSimulator("ad4q", seed=5) as axient,
        running_hub(mqtt_broker, tmp_path, [iem.url, axient.url], plugins=vendor_plugins()) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        base = hub.config.mqtt.base_topic

        def device_of(family: str) -> str | None:
            return next((d.id for d in hub.store.devices.values() if d.family == family and d.online), None)

        iem_id = await eventually(lambda: device_of("psm1000"), 10, "the P10T online")
        axient_id = await eventually(lambda: device_of("axient"), 10, "the AD4Q online")
        await listening_to(hub, iem_id)
        await listening_to(hub, axient_id)
        await probe.subscribe(f"{base}/#")
        await set_and_confirm(probe, base, iem_id, 1, {"tx_power": "100mW"})
        assert iem.channels[1].values["tx_power"] == "100mW"
        response = await probe.request(
            f"{base}/hubs/hub1/response/set",
            f"{base}/devices/{axient_id}/channels/2/set",
            {"slot": 1, "slot_rf_power_mode": "low"},
            timeout=10,
        )
        assert response["status"] == "ok", response
        state = await probe.json(
            f"{base}/devices/{axient_id}/channels/2",
            lambda value: bool(value["tx_slots"]) and value["tx_slots"][0]["rf_power_mode"] == "low",
        )
        assert state["tx_slots"][0]["slot"] == 1 and axient.raw[(2, "SLOT_RF_POWER_MODE", 1)] == "LOW"
        refused = await probe.request(
            f"{base}/hubs/hub1/response/set",
            f"{base}/devices/{axient_id}/channels/2/set",
            {"slot_rf_power_mode": "low"},
            timeout=10,
        )
        assert refused["status"] == "error" and "needs a slot" in refused["error"], refused


async def test_sennheiser_set_over_mqtt_changes_the_receiver(mqtt_broker: TestBroker, tmp_path: Path) -> None:
    sim = Ssc1Simulator("ewdx-em4", seed=7)
    await sim.start()
    try:
        async with (
            running_hub(mqtt_broker, tmp_path, [sim.url], plugins=vendor_plugins()) as hub,
            MqttProbe(mqtt_broker) as probe,
        ):
            base = hub.config.mqtt.base_topic
            device_id = await hub_device_id(hub, "sennheiser")
            await probe.subscribe(f"{base}/#")
            await set_and_confirm(probe, base, device_id, 2, {"name": "LEAD VOX", "muted": True})
            await set_and_confirm(probe, base, device_id, 3, {"gain_db": 21, "frequency_mhz": 540.525})
            channels = sim.channels
            assert (channels[1].name, channels[1].muted, channels[2].gain_db) == ("LEAD VOX", True, 21)
            assert channels[2].frequency_khz == 540_525
            # a value the family refuses comes back as an error naming the reason, and nothing changes
            response = await probe.request(
                f"{base}/hubs/hub1/response/set", f"{base}/devices/{device_id}/channels/3/set", {"gain_db": 45}
            )
            assert response["status"] == "error" and "gain_db" in response["error"]
            assert response["data"]["results"]["gain_db"]["code"] == "invalid"
            assert channels[2].gain_db == 21
    finally:
        await sim.stop()


async def test_the_meter_rate_request_sets_every_receiver_and_approve_adds_a_candidate(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    async with (
        ShureSimulator("ulxd4d", seed=6) as sim,
        ShureSimulator("p10t", seed=7) as in_ear,  # a transmitter: it meters at a rate of its own
        ShureSimulator("slxd4d", seed=8) as found,
        # approving a candidate adds a device: an admin request, off unless mqtt.admin
        running_hub(mqtt_broker, tmp_path, [sim.url, in_ear.url], plugins=vendor_plugins(), admin=True) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        base = hub.config.mqtt.base_topic
        await eventually(lambda: len([d for d in hub.store.devices.values() if d.online]) == 2, 10, "both online")
        await probe.subscribe(f"{base}/hubs/hub1/response/#")

        async def request(command: str, payload: dict[str, Any]) -> Any:
            return await probe.request(
                f"{base}/hubs/hub1/response/{command}", f"{base}/hubs/hub1/request/{command}", payload, timeout=10
            )

        rate = await request("meter_rate", {"ms": 500})
        without = [device.id for device in hub.store.devices.values() if device.family == "psm1000"]
        assert (rate["status"], rate["data"]) == ("ok", {"ms": 500, "devices": 1, "without_meter_rate": without}), rate
        assert len(without) == 1
        await eventually(lambda: all(c.meter_rate_ms == 500 for c in sim.channels.values()), what="metering at 500 ms")

        # a discovered receiver waits in the store until approved
        await hub.offer_candidate(Candidate(url=found.url, vendor="shure", model="SLXD4D"))
        approved = await request("candidate/approve", {"url": found.url})
        assert approved["status"] == "ok" and approved["data"]["url"] == found.url
        await eventually(lambda: len([d for d in hub.store.devices.values() if d.online]) == 3, 10, "all online")


@pytest.mark.mosquitto_only("RabbitMQ 3.x replays no retained message to the hub's wildcard subscriptions")
async def test_a_retained_command_is_not_carried_out_when_the_broker_replays_it(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """Someone publishes a mute with the retain flag: the broker would hand it to the hub at every start and
    reconnect, muting the channel again in the middle of the show."""
    base = "wmretained"
    async with ShureSimulator("ulxd4d", seed=5) as sim, MqttProbe(mqtt_broker) as probe:
        await probe.subscribe(f"{base}/#")
        async with running_hub(mqtt_broker, tmp_path, [sim.url], base=base, plugins=vendor_plugins()) as hub:
            device_id = await hub_device_id(hub, "shure")
        assert sim.channels[1].values["muted"] is False
        probe.publish(f"{base}/devices/{device_id}/channels/1/set", {"muted": True, "transaction": "kept"}, True)
        probe.clear()
        async with running_hub(mqtt_broker, tmp_path, [sim.url], base=base, plugins=vendor_plugins()) as hub:
            await hub_device_id(hub, "shure")
            # this run's control subscriptions go out with its device's topics: the retained mute came then
            await probe.message(f"{base}/devices/{device_id}/availability", lambda payload: payload == b"online")
            await probe.json(f"{base}/devices/{device_id}/channels/1")
            # queued behind the retained mute, had the hub taken it
            await set_and_confirm(probe, base, device_id, 1, {"name": "After"})
    answers = [orjson.loads(payload) for topic, payload in probe.messages if topic.endswith("/response/set")]
    assert "kept" not in [answer.get("transaction") for answer in answers]
    assert sim.channels[1].values["muted"] is False


async def test_a_set_with_one_value_the_receiver_cannot_take_changes_nothing(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """The mute in it is fine, the name too long for a ULX-D and the gain out of its range: a flow that
    retries the message on error must not find the mute already done."""
    async with ulxd_on_mqtt(mqtt_broker, tmp_path) as (sim, _hub, probe, base, device_id):
        answer = await probe.request(
            f"{base}/hubs/hub1/response/set",
            f"{base}/devices/{device_id}/channels/1/set",
            {"name": "WAYTOOLONGNAME", "muted": True, "gain_db": 99},
        )
        await set_and_confirm(probe, base, device_id, 1, {"name": "Next"})  # the receiver's queue moved on
    codes = {key: result["code"] for key, result in answer["data"]["results"].items()}
    assert answer["status"] == "error" and codes == {"name": "invalid", "muted": "not_sent", "gain_db": "invalid"}
    assert sim.channels[1].values["muted"] is False and sim.channels[1].values["gain_db"] != 99


async def test_a_set_refused_before_sending_is_audited_as_a_rest_command_is(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """An outside audit: a gain outside the ULX-D's range over REST was audited ("invalid: ..."), the same over
    MQTT left no entry, nor did a mute to a channel the receiver lacks: a flow hammering a set topic with a bad
    value left no trace of who tried. Each part of a refused message is in the log, the unsent ones too."""
    async with ulxd_on_mqtt(mqtt_broker, tmp_path) as (_sim, hub, probe, base, device_id):
        for channel, change in ((1, {"muted": True, "gain_db": 99}), (3, {"muted": True})):
            answer = await probe.request(
                f"{base}/hubs/hub1/response/set", f"{base}/devices/{device_id}/channels/{channel}/set", change
            )
            assert answer["status"] == "error", answer
        entries = await hub.persistence.audit.query(source="mqtt")
    audited = sorted((entry.action, entry.target, entry.result.split(":")[0]) for entry in entries)
    assert audited == [
        ("command.gain", f"{device_id}/1", "invalid"),
        ("command.mute", f"{device_id}/1", "not_sent"),
        ("command.mute", f"{device_id}/3", "not_found"),
    ], audited
    gain = next(entry for entry in entries if entry.action == "command.gain")
    assert gain.after == 99 and "outside" in gain.result


async def test_a_set_to_a_channel_the_receiver_lacks_is_answered_not_found(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """An outside audit: a mute to channel 3 of a two-channel ULXD4D was answered ``unavailable``, the code
    docs/mqtt.md gives an offline device (a flow retries it), while REST answers the address 404 not_found."""
    async with ulxd_on_mqtt(mqtt_broker, tmp_path) as (sim, _hub, probe, base, device_id):
        answer = await probe.request(
            f"{base}/hubs/hub1/response/set", f"{base}/devices/{device_id}/channels/3/set", {"muted": True}
        )
    assert answer["status"] == "error"
    assert answer["data"]["results"]["muted"] == {
        "ok": False,
        "value": None,
        "error": f"device {device_id} has no channel 3",
        "code": "not_found",
    }
    assert not any(channel.values["muted"] for channel in sim.channels.values())


async def test_the_first_part_of_a_set_the_receiver_refuses_stops_the_rest(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """An outside audit: after the name of {"name", "muted"} failed on the receiver, the hub still sent the
    mute. A message's parts go one after the other and the first failure stops the rest."""
    transcript = Transcript.load(SHURE_TRANSCRIPTS / "ulxd.txt")
    refused = "< SET 1 CHAN_NAME {NOPE} >"
    transcript.exchanges[transcript.key(refused)] = Exchange(refused, ["< REP ERR >"])
    async with (
        ReplayDevice(transcript) as device,
        running_hub(mqtt_broker, tmp_path, [device.url], plugins=vendor_plugins()) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        base = hub.config.mqtt.base_topic
        device_id = await hub_device_id(hub, "shure")
        await probe.subscribe(f"{base}/hubs/hub1/response/#")
        answer = await probe.request(
            f"{base}/hubs/hub1/response/set",
            f"{base}/devices/{device_id}/channels/1/set",
            {"name": "NOPE", "muted": True},
        )
    codes = {key: result["code"] for key, result in answer["data"]["results"].items()}
    assert answer["status"] == "error" and codes == {"name": "refused", "muted": "not_sent"}
    assert answer["data"]["results"]["muted"]["error"] == "not sent: an earlier part failed"
    assert not [line for line in device.received if "AUDIO_MUTE ON" in line]


async def test_an_over_deep_or_oversized_transaction_is_refused_before_anything_is_done(
    mqtt_broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: a set whose transaction was nested 300 levels deep (within the parser's limit, far
    below max_payload_bytes) muted the channel and was never answered: the answer, echoing it, could not be
    encoded. Such a transaction is now refused first, and the answer echoes none."""
    deep = "[" * 300 + "]" * 300
    async with ulxd_on_mqtt(mqtt_broker, tmp_path) as (sim, _hub, probe, base, device_id):
        answers = {}
        for what, transaction in (("deep", deep), ("long", orjson.dumps("x" * 5000).decode())):
            for command, topic, payload in (
                ("set", f"{base}/devices/{device_id}/channels/1/set", '{"muted":true,"transaction":%s}'),
                ("get", f"{base}/devices/{device_id}/channels/1/get", '{"transaction":%s}'),
                ("info", f"{base}/hubs/hub1/request/info", '{"transaction":%s}'),
            ):
                probe.clear()
                probe.publish(topic, (payload % transaction).encode())
                answers[what, command] = await probe.json(f"{base}/hubs/hub1/response/{command}", timeout=10)
        await set_and_confirm(probe, base, device_id, 1, {"name": "Next"})  # the receiver's queue moved on
    for answer in answers.values():
        assert answer["status"] == "error" and "transaction" not in answer, answer
    assert "32 levels" in answers["deep", "set"]["error"] and "4096 bytes" in answers["long", "info"]["error"]
    assert sim.channels[1].values["muted"] is False
    assert "Recursion limit" not in caplog.text


async def test_a_set_or_request_begun_after_its_deadline_is_refused_and_not_carried_out(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """An outside audit: a mute sent through ``wmhub fleet`` to a stalled hub was answered 504, then carried
    out when the hub resumed. A request may carry its sender's deadline (wall-clock seconds): begun after it,
    by the hub's clock, it is answered "expired" and nothing is done; one in time, or without a deadline (a
    user's flow), is carried out as ever."""
    async with ulxd_on_mqtt(mqtt_broker, tmp_path) as (sim, hub, probe, base, device_id):
        channel = f"{base}/devices/{device_id}/channels/1"
        past = time.time() - 1
        rename = {"device_id": device_id, "channel": 1, "name": "Late", "deadline": past}
        answers = {
            "late set": await probe.request(f"{base}/hubs/hub1/response/set", f"{channel}/set",
                                            {"muted": True, "deadline": past}),
            "late request": await probe.request(f"{base}/hubs/hub1/response/channel/rename",
                                                f"{base}/hubs/hub1/request/channel/rename", rename),
            "no number": await probe.request(f"{base}/hubs/hub1/response/set", f"{channel}/set",
                                             {"muted": True, "deadline": "soon"}),
        }  # fmt: skip
        in_time = await probe.request(
            f"{base}/hubs/hub1/response/set", f"{channel}/set", {"name": "InTime", "deadline": time.time() + 30}
        )
        await set_and_confirm(probe, base, device_id, 1, {"gain_db": 6})  # no deadline: as before
    assert in_time["status"] == "ok", in_time
    assert abs(in_time["hub_time"] - time.time()) < 5, in_time  # every answer says the hub's clock
    for what, answer in answers.items():
        assert answer["status"] == "error", what
    assert answers["late set"]["error"].startswith("expired: not carried out")
    assert answers["late request"]["error"].startswith("expired: not carried out")
    assert answers["no number"]["error"].startswith("deadline: a number")
    assert sim.channels[1].values["muted"] is False and sim.channels[1].values["name"] == "InTime"
    assert hub.store.devices[device_id].channels[0].extended_name is None


async def test_a_set_whose_deadline_passes_behind_another_command_to_the_receiver_is_not_sent(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A known gap of the tenth session: a set whose deadline was checked when the hub took it from the
    broker, then queued behind a slow command from REST to the same receiver, was sent once that command
    finished, long after its sender (``wmhub fleet``) had reported it failed. The deadline bounds the wait
    for the receiver too: the set is answered "expired" as one that arrived late, and never sent."""
    async with ulxd_on_mqtt(mqtt_broker, tmp_path) as (sim, hub, probe, base, device_id):
        response = f"{base}/hubs/hub1/response/set"
        sim.holding = True  # the receiver takes the rename and keeps its answer back: the rename holds it
        rename = Command(device_id=device_id, channel=1, kind=CommandKind.NAME, value="SLOW")
        slow = asyncio.ensure_future(hub.apply(rename, "rest"))  # what the REST edge calls
        await eventually(lambda: any("CHAN_NAME" in line for line in sim.received), 10, "the rename on the wire")
        deadline = time.time() + 1.5
        probe.publish(f"{base}/devices/{device_id}/channels/1/set", {"muted": True, "deadline": deadline,
                                                                     "transaction": "late-mute"})  # fmt: skip

        def answered() -> bool:
            return any(topic == response and b"late-mute" in payload for topic, payload in probe.messages)

        # the rename ends once the deadline has passed (or the mute was answered): a mute still queued then
        # would reach the receiver now
        await eventually(lambda: answered() or time.time() > deadline + 1, 10, "the mute's deadline passed")
        sim.release()
        answer = await probe.json(response, lambda value: value.get("transaction") == "late-mute", timeout=10)
        renamed = await slow
        # a later set waits for everything queued before it: had the mute been sent, it went before this
        await set_and_confirm(probe, base, device_id, 1, {"gain_db": 6})
    assert renamed.ok, renamed
    assert answer["status"] == "error" and answer["error"].startswith("expired: not carried out"), answer
    assert "results" not in answer["data"], "nothing of the message was done"
    assert not [line for line in sim.received if "AUDIO_MUTE" in line and line.startswith("SET")], sim.received
    assert sim.channels[1].values["muted"] is False


@pytest.mark.parametrize("what", ["set", "meter_rate"])
async def test_a_command_whose_deadline_passes_while_the_shure_driver_resynchronises_is_not_sent(
    mqtt_broker: TestBroker, tmp_path: Path, what: str
) -> None:
    """A known gap of the eleventh session: a set (or a meter_rate request) handed to the Shure driver while it
    waited for the receiver to answer the question it asks after an unanswered request was sent once the
    answer came, long after its deadline. The deadline bounds that wait too: the message is answered
    "expired" and its command never sent, and the resynchronisation goes on (no new connection for it)."""
    async with ulxd_on_mqtt(mqtt_broker, tmp_path) as (sim, hub, probe, base, device_id):
        managed = hub.devices.find(device_id)
        assert managed is not None
        if what == "set":
            topic, body, command = f"devices/{device_id}/channels/1/set", {"muted": True}, "SET 1 AUDIO_MUTE"
        else:
            topic, body, command = "hubs/hub1/request/meter_rate", {"ms": 777, "device_id": device_id}, "00777"
        response = f"{base}/hubs/hub1/response/{what}"
        sim.holding = True  # the rename goes unanswered, and so does the question the driver asks after it
        rename = Command(device_id=device_id, channel=1, kind=CommandKind.NAME, value="LOST")
        lost = await hub.apply(rename, "rest")
        assert lost.code == "timeout", lost
        deadline = time.time() + 1.0
        probe.publish(f"{base}/{topic}", {**body, "deadline": deadline, "transaction": "in-resync"})

        def answered() -> bool:
            return any(topic == response and b"in-resync" in payload for topic, payload in probe.messages)

        # the receiver answers well before the driver's own io_timeout_s, but after the deadline: a command
        # still waiting in the driver then would reach the receiver now
        await eventually(lambda: answered() or time.time() > deadline + 0.5, 10, "the deadline passed")
        sim.release()
        answer = await probe.json(response, lambda value: value.get("transaction") == "in-resync", timeout=10)
        # a later set waits for everything before it: had the command been sent, it went before this
        await set_and_confirm(probe, base, device_id, 1, {"gain_db": 6})
    assert answer["status"] == "error" and "expired: not carried out" in answer["error"], answer
    assert "results" not in answer["data"], "nothing of the message was done"
    assert not [line for line in sim.received if command in line], sim.received
    assert sim.channels[1].values["muted"] is False
    assert managed.supervisor.reconnects == 0, "the receiver answered the driver's question in time for it"


async def test_a_later_part_of_a_set_whose_deadline_passes_behind_a_rest_command_is_not_sent(
    mqtt_broker: TestBroker, tmp_path: Path
) -> None:
    """A message of several keys sends them one after another, and a REST command may come in between: a part
    whose deadline passes behind it is not sent, and the answer says which part was done and which expired."""
    async with ulxd_on_mqtt(mqtt_broker, tmp_path) as (sim, hub, probe, base, device_id):
        response = f"{base}/hubs/hub1/response/set"
        sim.holding = True
        deadline = time.time() + 1.5
        body = {"name": "PART", "muted": True, "deadline": deadline, "transaction": "two"}
        probe.publish(f"{base}/devices/{device_id}/channels/1/set", body)
        await eventually(lambda: any("PART" in line for line in sim.received), 10, "the rename part on the wire")
        rename = Command(device_id=device_id, channel=1, kind=CommandKind.NAME, value="REST")
        rest = asyncio.ensure_future(hub.apply(rename, "rest"))
        await asyncio.sleep(0)  # the REST command now waits for the receiver, ahead of the mute part
        sim.release()  # the rename part is confirmed; the REST rename goes next and is held in turn
        sim.holding = True

        def answered() -> bool:
            return any(topic == response and b'"two"' in payload for topic, payload in probe.messages)

        await eventually(lambda: answered() or time.time() > deadline + 1, 10, "the mute part's deadline passed")
        sim.release()
        answer = await probe.json(response, lambda value: value.get("transaction") == "two", timeout=10)
        assert (await rest).ok
        await set_and_confirm(probe, base, device_id, 1, {"gain_db": 6})  # after anything queued before it
    results = answer["data"]["results"]
    assert answer["status"] == "error" and results["name"]["ok"] is True, answer
    assert results["muted"]["code"] == "expired" and results["muted"]["error"].startswith("expired: not carried"), (
        answer
    )
    assert not [line for line in sim.received if "AUDIO_MUTE" in line and line.startswith("SET")], sim.received
    assert sim.channels[1].values["muted"] is False and sim.channels[1].values["name"] == "REST"


class WaitsToSend(QuietDriver):
    """A third-party driver as docs/plugins.md ("Deadlines") has it: its mute waits for the receiver before it is
    sent, and past the command's deadline it raises CommandExpiredError in words of its own (no "expired")."""

    entered: asyncio.Event
    released: asyncio.Event

    async def connect(self) -> None:
        self.sink.identify(unique_id="W1", family="waits", model="W-1", channel_count=1)
        self.sink.update_channel(1, {"muted": False, "name": "Lead"})

    async def apply(self, command: Command) -> CommandResult:
        if command.kind is CommandKind.MUTE:
            WaitsToSend.entered.set()
            await WaitsToSend.released.wait()  # the receiver is busy with an earlier request
            deadline = command_deadline()
            if deadline is not None and self.sink.clock.now() > deadline:
                raise CommandExpiredError("the receiver was busy until after the deadline; not sent")
        self.sink.update_channel(1, {"name" if command.kind is CommandKind.NAME else "muted": command.value})
        return CommandResult(ok=True, value=command.value)


class WaitsToSendPlugin:
    @hookimpl
    def register_drivers(self, register: Any) -> None:
        register(DriverSpec(scheme="waits", vendor="waits", families=("waits",), factory=WaitsToSend, default_port=1))

    @hookimpl
    def device_capabilities(self, family: str | None, model: str | None) -> Capabilities | None:
        name = CommandLimits(text=TextLimits(max_length=16, pattern="^.+$", allowed="any"))
        return Capabilities(
            channel_fields=frozenset({"muted", "name"}),
            commands={CommandKind.MUTE: CommandLimits(), CommandKind.NAME: name},
        )


@pytest.mark.parametrize("keys", [("muted",), ("name", "muted")])
async def test_a_plugins_command_expired_error_is_answered_expired_however_the_plugin_words_it(
    mqtt_broker: TestBroker, tmp_path: Path, keys: tuple[str, ...]
) -> None:
    """An outside audit: a third-party driver raising CommandExpiredError as docs/plugins.md says ("the sender
    is answered expired") got its own message back over MQTT, without the code or the "expired:" that the
    hub's other expiry answers start with and `wmhub fleet` recognises expiry by: the fleet then reported it
    as refused by the receiver. Only the Shure driver, which writes "expired:" itself, was answered right."""
    WaitsToSend.entered, WaitsToSend.released = asyncio.Event(), asyncio.Event()
    plugins = PluginHost()
    plugins.register(WaitsToSendPlugin(), "wmhub-waits")
    clock = SimulatedClock()
    async with (
        running_hub(mqtt_broker, tmp_path, ["waits://127.0.0.1"], plugins=plugins, clock=clock) as hub,
        MqttProbe(mqtt_broker) as probe,
    ):
        base = hub.config.mqtt.base_topic
        device_id = await hub_device_id(hub, "waits")
        await probe.subscribe(f"{base}/hubs/hub1/response/set")
        body = {"name": "Vox", "muted": True} if "name" in keys else {"muted": True}
        probe.publish(
            f"{base}/devices/{device_id}/channels/1/set", {**body, "deadline": clock.now() + 30, "transaction": "w"}
        )
        await eventually(WaitsToSend.entered.is_set, 10, "the mute in the driver's apply")
        clock.set_wall(60)  # the receiver answers after the deadline
        WaitsToSend.released.set()
        answer = await probe.json(f"{base}/hubs/hub1/response/set", lambda value: value.get("transaction") == "w")
        device = hub.store.devices[device_id]
    assert answer["status"] == "error", answer
    said = "expired: the receiver was busy until after the deadline; not sent"
    if keys == ("muted",):  # nothing of the message was done: answered as one that arrived late
        assert answer["error"] == said and "results" not in answer["data"], answer
    else:
        results = answer["data"]["results"]
        assert results["name"]["ok"] is True, answer
        assert (results["muted"]["code"], results["muted"]["error"]) == ("expired", said), answer
    assert device.channels[0].muted is False


async def test_clearing_a_retained_command_is_ignored_quietly(
    mqtt_broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: clearing a retained set as docs/mqtt.md says (``mosquitto_pub -r -n -t <topic>``, an
    empty retained payload) was itself taken for a set, answered 'nothing to set' and logged as a warning.
    An empty payload is no set, nor a request that needs values: it is ignored without an answer."""
    async with ulxd_on_mqtt(mqtt_broker, tmp_path) as (_sim, _hub, probe, base, device_id):
        caplog.set_level(logging.INFO, "hub.mqtt")
        caplog.clear()
        cleared = (f"devices/{device_id}/channels/1/set", f"devices/{device_id}/set", "hubs/hub1/request/meter_rate")
        for topic in cleared:
            probe.publish(f"{base}/{topic}", b"", retain=True)
        # queued behind the empty messages, so any answer to them would have come first
        await set_and_confirm(probe, base, device_id, 1, {"name": "After"})
        await probe.request(f"{base}/hubs/hub1/response/info", f"{base}/hubs/hub1/request/info", {})
        await probe.request(f"{base}/hubs/hub1/response/set", f"{base}/devices/{device_id}/set", {"identify": True})
    answers = [orjson.loads(payload) for topic, payload in probe.messages if "/response/" in topic]
    assert [answer["status"] for answer in answers] == ["ok", "ok", "ok"], answers
    said = [record.getMessage() for record in caplog.records if record.name.startswith("hub.mqtt")]
    assert not [line for line in said if "refused" in line or "retained" in line], said
