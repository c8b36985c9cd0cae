"""EW-DX receivers in secure mode (SSCv2) end to end: the hub against the EW-DX simulator over HTTPS on loopback."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from wmhub_sennheiser.capabilities import device_capabilities
from wmhub_sennheiser.ewdx_ssc2 import EwdxResourceMap, channel_count_of, channel_write
from wmhub_sennheiser.simulator.ssc2_ewdx import EwdxSsc2Simulator

from hub.devices import ManagedDevice
from hub.model import Command, CommandKind, Device, NotSupportedError
from hub.testing import DriverHarness, eventually

COMPARED = (
    "name", "muted", "gain_db", "frequency_mhz", "rf_dbm", "rf_quality_percent", "antenna", "audio_dbfs",
    "tx_present", "tx_model", "tx_muted", "tx_locked", "tx_offset_db", "battery_percent", "battery_runtime_min",
    "battery_type", "warnings",
)  # fmt: skip


@pytest.fixture
async def simulator() -> AsyncIterator[EwdxSsc2Simulator]:
    sim = EwdxSsc2Simulator(tick_s=0)  # state changes only when a test says so
    async with sim:
        yield sim


def shown(hub: DriverHarness, managed: ManagedDevice) -> dict[int, dict[str, Any]] | None:
    device = hub.store.get(managed.handle.device_id or "")
    if device is None:
        return None
    return {channel.index: channel.model_dump(include=set(COMPARED)) for channel in device.channels}


async def matches(hub: DriverHarness, managed: ManagedDevice, sim: EwdxSsc2Simulator, what: str) -> None:
    await eventually(lambda: shown(hub, managed) == sim.expected_channels(), what=what)


async def test_an_ewdx_receiver_shows_its_channels_transmitters_and_device_facts(
    hub: DriverHarness, simulator: EwdxSsc2Simulator
) -> None:
    managed = hub.add(simulator.url(poll="0.5"))
    device = await hub.device(managed)
    expected = simulator.expected_device()
    assert (device.id, device.name, device.model, device.family) == (
        expected["id"],
        expected["name"],
        expected["model"],
        "ew-dx",
    )
    assert (device.firmware, device.rf_band, device.encryption_mode) == ("4.0.1", "Q1-9", "on")
    assert len(device.channels) == 2
    await matches(hub, managed, simulator, "the initial state")
    for _ in range(3):
        simulator.tick()
        await matches(hub, managed, simulator, "pushed RF, audio and battery values")
    simulator.set_transmitter(2, on=False)
    await matches(hub, managed, simulator, "a transmitter switched off (its resources answer 422)")
    simulator.tick()
    await matches(hub, managed, simulator, "meters move on one channel, the other stays without link")
    simulator.set_battery(1, 10)
    await matches(hub, managed, simulator, "a low battery warning from the transmitter")
    simulator.set_warnings(["TemperatureHigh"])
    await matches(hub, managed, simulator, "a device warning on every channel")
    simulator.set_transmitter(2, on=True)
    await matches(hub, managed, simulator, "the transmitter back on")


async def test_a_transmitter_without_a_battery_shows_no_battery_level(
    hub: DriverHarness, simulator: EwdxSsc2Simulator
) -> None:
    """Battery type NoBattery (EW-DX OpenAPI: Battery, PrimaryCell, NoBattery) comes with gauge 0: it was shown
    as an empty battery (0 %), which raises a low-battery alert for a transmitter on external power."""
    managed = hub.add(simulator.url(poll="0.5"))
    await hub.device(managed)
    simulator.set_battery(1, 0, battery_type="NoBattery")
    await matches(hub, managed, simulator, "a transmitter without a battery")
    channel = (shown(hub, managed) or {})[1]
    assert (channel["battery_type"], channel["battery_percent"], channel["battery_runtime_min"]) == (
        "NoBattery",
        None,
        None,
    )
    simulator.set_battery(1, 80)
    await matches(hub, managed, simulator, "a battery put back in")


async def test_a_receiver_whose_product_does_not_name_its_channels_is_probed(hub: DriverHarness) -> None:
    sim = EwdxSsc2Simulator(product="EWDX2CHS", tick_s=0)
    sim.product = "EW-DX EM 2"  # the channel count is not in the name: the driver asks channelId 0..3
    async with sim:
        managed = hub.add(sim.url())
        device = await hub.device(managed)
        assert (device.family, len(device.channels)) == ("ew-dx", 2)  # 2 and 3 answered 404
        await matches(hub, managed, sim, "the two channels that answered")


async def test_ewdx_controls_round_trip_through_the_device(hub: DriverHarness, simulator: EwdxSsc2Simulator) -> None:
    managed = hub.add(simulator.url(poll="0.5"))
    device: Device = await hub.device(managed)

    def command(kind: CommandKind, value: object, channel: int | None = 1) -> Command:
        return Command.model_validate({"device_id": device.id, "channel": channel, "kind": kind, "value": value})

    result = await hub.apply(command(CommandKind.NAME, "LEAD VOX"))
    assert result.ok and simulator.channels[0].name == "LEAD VOX"
    result = await hub.apply(command(CommandKind.MUTE, "toggle", channel=2))
    assert result.ok and result.value is True and simulator.channels[1].muted is True
    result = await hub.apply(command(CommandKind.GAIN, 12))
    assert result.ok and simulator.channels[0].gain == 12
    result = await hub.apply(command(CommandKind.FREQUENCY, 512.325))
    assert result.ok and result.value == 512.325 and simulator.channels[0].khz == 512_325
    result = await hub.apply(command(CommandKind.IDENTIFY, None, channel=2))
    assert result.ok and simulator.channels[1].identify is True
    result = await hub.apply(command(CommandKind.IDENTIFY, None, channel=None))
    assert result.ok and simulator.device_identify is True
    await matches(hub, managed, simulator, "the state after the writes")
    assert ("/api/rf/channels/0/frequency", {"frequency": 512_325}) in simulator.writes


async def test_ewdx_values_outside_the_document_are_refused(hub: DriverHarness, simulator: EwdxSsc2Simulator) -> None:
    device = await hub.device(hub.add(simulator.url()))
    for kind, value in (
        (CommandKind.NAME, "lead"),  # capitals only
        (CommandKind.NAME, "LONGER THAN 8"),
        # held by the device with the space, shown trimmed by the hub, confirmed as asked (an outside audit)
        (CommandKind.NAME, "VOX "),
        (CommandKind.NAME, " VOX"),
        (CommandKind.GAIN, 4),  # 3 dB steps
        (CommandKind.GAIN, 45),
        (CommandKind.FREQUENCY, 512.31),  # 25 kHz grid
        (CommandKind.MUTE, "yes"),
    ):
        result = await hub.apply(Command(device_id=device.id, channel=1, kind=kind, value=value))
        assert (result.ok, result.code) == (False, "invalid"), (kind, value, result)
    # in the hub's span but outside the band this receiver reported (/api/rf ranges)
    result = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.FREQUENCY, value=650.0))
    assert (result.ok, result.code) == (False, "invalid"), result
    assert "outside this receiver's band (470.2-550 MHz)" in str(result.error)
    assert simulator.writes == []
    # /api/device/site is read-only in the EW-DX OpenAPI
    result = await hub.apply(Command(device_id=device.id, channel=None, kind=CommandKind.DEVICE_NAME, value="EM2"))
    assert result.code in ("not_supported", "invalid"), result
    assert simulator.device_name == "EWDXEM2"
    for kind in (CommandKind.GAIN_STEP, CommandKind.METER_RATE):
        result = await hub.apply(Command(device_id=device.id, channel=1, kind=kind, value=3))
        assert (result.ok, result.code) == (False, "not_supported"), (kind, result)
    with pytest.raises(NotSupportedError):  # what the driver says should a hub send it anyway
        channel_write(CommandKind.GAIN_STEP, 0, 3)
    # with the capabilities unknown the hub passes a meter-rate retune on: refused, the receiver not flashed
    hub.store.update_device(device.id, {"capabilities": None})
    result = await hub.apply(Command(device_id=device.id, kind=CommandKind.METER_RATE, value=100))
    assert (result.ok, result.code) == (False, "not_supported"), result
    assert simulator.writes == [] and simulator.device_identify is False


def test_capabilities_declare_the_ewdx_controls_and_not_the_device_name() -> None:
    capabilities = device_capabilities("ew-dx")
    assert capabilities is not None
    assert set(capabilities.commands) == {
        CommandKind.NAME,
        CommandKind.MUTE,
        CommandKind.GAIN,
        CommandKind.FREQUENCY,
        CommandKind.IDENTIFY,
    }
    assert {"tx_locked", "battery_type", "gain_db", "rf_dbm"} <= capabilities.channel_fields


def test_the_map_accepts_vague_shapes_liberally() -> None:
    resources = EwdxResourceMap(2)
    changes = resources.apply_all(
        {
            "/api/channel/1/signalQualityIndicator": 55,  # a bare number instead of {"value": ...}
            "/api/channel/7/level": {"value": -20},  # a channel this model lacks: ignored
            "/api/transmitters": [{"id": 0, "transmitter": {"type": "EW_DX_SK", "lock": False, "trim": -3}}],
            "/api/rf/channels/0": {"frequency": 470_200, "presets": {"type": "User", "bank": 0, "channel": 5}},
            "/api/ssc/legacyMode": {"enabled": False},
        }
    )
    assert changes.channels[2]["rf_quality_percent"] == 55
    assert 8 not in changes.channels
    assert changes.channels[1]["tx_model"] == "EW_DX_SK" and changes.channels[1]["tx_locked"] == "none"
    assert changes.channels[1]["group_channel"] == "0.5"
    # an event with only the property that changed keeps the rest of the transmitter
    partial = resources.apply("/api/transmitters/0", {"mute": True})
    assert partial.channels[1] | {"warnings": []} == {
        "tx_present": True,
        "tx_model": "EW_DX_SK",
        "tx_muted": True,
        "tx_locked": "none",
        "tx_offset_db": -3,
        "warnings": [],
    }
    assert resources.raw == {"/api/ssc/legacyMode": {"enabled": False}}
    # shapes the document does not give: ignored, nothing is made up
    odd = resources.apply_all(
        {
            "/api/channel/0": "VOCAL",
            "/api/rf/channels/1": [470_200],
            "/api/rf/channels/0": {"presets": {"type": "Factory", "bank": 1}},
            "/api/transmitters": [{"transmitter": {"type": "EW_DX_SKM"}}, "TX1"],
            "/api/device/site": None,
            "/api/device/state": "Normal",
            "/api/firmware/update/state": {"state": "Idle"},
            "/api/rf": {"ranges": [{"start": 470_200, "end": 550_000, "stepsize": 25}, {"start": "low"}, "S1-10"]},
        }
    )
    assert resources.band == [(470_200, 550_000)]  # the example's "stepsize" spelling, junk entries skipped
    assert odd.device == {}
    assert odd.channels == {1: {"frequency_mhz": 470.2, "group_channel": None, "warnings": []}, 2: {"warnings": []}}
    resources.apply("/api/ssc/legacyMode", None)  # null deletes a kept resource
    # what could not be read is kept as it came, like any resource the map does not know
    assert resources.raw == {"/api/device/state": "Normal", "/api/firmware/update/state": {"state": "Idle"}}
    gone = resources.apply("/api/transmitters/0", None)
    assert gone.channels[1]["tx_present"] is False and gone.channels[1]["battery_percent"] is None
    assert (channel_count_of("EWDX2CHDS"), channel_count_of("EM 4"), channel_count_of(None)) == (2, None, None)


async def test_the_simulator_refuses_writes_the_document_does_not_allow(simulator: EwdxSsc2Simulator) -> None:
    simulator.set_transmitter(2, on=False)
    auth = {"Authorization": "Basic " + base64.b64encode(f"api:{simulator.password}".encode()).decode()}
    connector = aiohttp.TCPConnector(ssl=False)
    async with aiohttp.ClientSession(f"https://127.0.0.1:{simulator.port}", headers=auth, connector=connector) as http:
        async with http.get("/api/transmitters") as response:
            assert [item["id"] for item in await response.json()] == [0]  # only the linked one
        for path, body, status in (
            ("/api/channel/2", {"mute": True}, 404),  # an EM 2 has channelId 0 and 1
            ("/api/channel/0", {"colour": "red"}, 400),
            ("/api/channel/0", {"name": "lower"}, 400),
            ("/api/channel/0", {"gain": 5}, 400),
            ("/api/channel/0/identify", {"enabled": "yes"}, 400),
            ("/api/rf/channels/0/frequency", {"frequency": 512_310}, 400),
            ("/api/rf/channels/0/frequency", {"frequency": 650_000}, 400),  # outside Q1-9
            ("/api/device/identification", {"visual": 1}, 400),
        ):
            async with http.put(path, json=body) as response:
                assert response.status == status, (path, body)
    assert simulator.writes == []


class StoresNamesItsOwnWay(EwdxSsc2Simulator):
    """An EW-DX receiver that stores a channel name its own way (``store``) and answers 200 at once; its event
    of the change may follow an event repeating the old name (``stale_first``), ``event_delay_s`` late. With
    ``hang`` it never answers a PUT at all."""

    def __init__(self, store: Callable[[str], str] = str, *, stale_first: bool = False, hang: bool = False) -> None:
        super().__init__(tick_s=0)
        self.store, self.stale_first, self.hang = store, stale_first, hang
        self.event_delay_s = 0.0

    async def _put_channel(self, request: web.Request) -> web.Response:
        if self.hang:
            await asyncio.sleep(3600)
        body = await self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return await super()._put_channel(request)
        n, channel = self._channel_of(request)
        loop, path = asyncio.get_running_loop(), f"/api/channel/{n}"
        if self.stale_first:  # another change of the channel: its event repeats the old name
            loop.call_later(self.event_delay_s / 3, self._publish, [path])
        channel.name = self.store(body["name"])
        self.writes.append((request.path, body))
        loop.call_later(self.event_delay_s, self._publish, [path])
        return web.Response(status=200)


async def name_channel_one(hub: DriverHarness, simulator: EwdxSsc2Simulator, name: str) -> tuple[Device, Any]:
    managed = hub.add(simulator.url(poll="0.5"))
    device: Device = await hub.device(managed)
    return device, await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.NAME, value=name))


async def test_a_name_the_receiver_cuts_short_is_refused_at_once_with_the_name_it_holds(hub: DriverHarness) -> None:
    async with StoresNamesItsOwnWay(lambda name: name[:3]) as simulator:
        started = time.monotonic()
        _, result = await name_channel_one(hub, simulator, "LONGNAME")
        assert (result.ok, result.code, result.value) == (False, "refused", "LON"), result
        assert result.error == "/api/channel/0 name: the device applied 'LON', not 'LONGNAME'"
        assert time.monotonic() - started < hub.settings.io_timeout_s


async def test_a_receiver_keeping_the_old_name_is_refused_after_a_short_grace(hub: DriverHarness) -> None:
    async with StoresNamesItsOwnWay(lambda name: "VOCALS") as simulator:
        old = simulator.channels[0].name = "VOCALS"
        _, result = await name_channel_one(hub, simulator, "LEAD")
        assert (result.ok, result.code, result.value) == (False, "refused", old), result
        assert result.error == f"/api/channel/0 name: the device applied {old!r}, not 'LEAD'"


async def test_an_event_repeating_the_old_name_after_the_answer_is_not_the_answer(hub: DriverHarness) -> None:
    async with StoresNamesItsOwnWay(lambda name: name[:3], stale_first=True) as simulator:
        simulator.event_delay_s = 0.3  # the old name at 0.1 s, after the 200; the name held at 0.3 s
        device, result = await name_channel_one(hub, simulator, "LONGNAME")
        assert (result.ok, result.code, result.value) == (False, "refused", "LON"), result
        simulator.store, simulator.stale_first = str, True
        result = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.NAME, value="LEAD"))
        assert (result.ok, result.value) == (True, "LEAD"), result


async def test_an_unanswered_put_is_a_timeout_that_may_have_been_done(hub: DriverHarness) -> None:
    async with StoresNamesItsOwnWay(hang=True) as simulator:
        device, result = await name_channel_one(hub, simulator, "LEAD")
        assert (result.ok, result.code) == (False, "timeout"), result
        assert (result.error or "").endswith(": no answer within 2 s; it may have been done"), result
        assert (result.error or "").startswith("PUT /api/channel/0 on 127.0.0.1:")
        assert hub.store.get(device.id).online  # type: ignore[union-attr]
