"""SSCv2 end to end: the hub's device path against the simulator, over real HTTPS sockets on loopback."""

from __future__ import annotations

import base64
import logging
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from wmhub_sennheiser.simulator.ssc2 import SimMobile, Ssc2Simulator, Unframed
from wmhub_sennheiser.ssc2 import (
    IDENTITY_PATH,
    MAX_RAW_RESOURCES,
    MOBILES_PATH,
    SITE_PATH,
    SUBSCRIPTIONS_PATH,
    encode_sse,
)
from wmhub_sennheiser.ssc2_driver import MAX_RETRY_AFTER_S, Ssc2Driver, Ssc2Options, retry_after_s

from hub.clock import SimulatedClock
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.devices import ManagedDevice
from hub.drivers import DriverSettings, EndpointError
from hub.model import Channel, Command, CommandKind, Device
from hub.plugins import PluginHost
from hub.state import ONLINE, Subscription
from hub.testing import DriverHarness, eventually

TOKEN = "ssc2-url-check-token-0123"

COMPARED = (
    "name",
    "frequency_mhz",
    "rf_bandwidth_khz",
    "tx_present",
    "tx_model",
    "tx_id",
    "battery_percent",
    "battery_runtime_min",
    "rf_quality_percent",
    "rf_dbm",
    "antenna",
    "audio_dbfs",
    "audio_peak",
    "warnings",
)


@pytest.fixture
async def simulator() -> AsyncIterator[Ssc2Simulator]:
    # tick_s=0: state changes only when a test says so, so exact values can be compared
    async with Ssc2Simulator(tick_s=0) as sim:
        yield sim


def shown(device: Device) -> dict[int, dict[str, Any]]:
    return {channel.index: channel.model_dump(include=set(COMPARED)) for channel in device.channels}


def stored(hub: DriverHarness, device_id: str) -> Device:
    device = hub.store.get(device_id)
    assert device is not None
    return device


def stored_channel(hub: DriverHarness, device_id: str, index: int) -> Channel:
    channel = stored(hub, device_id).channel(index)
    assert channel is not None
    return channel


def state_of(hub: DriverHarness, managed: ManagedDevice) -> dict[int, dict[str, Any]] | None:
    device = hub.store.get(managed.handle.device_id or "")
    return shown(device) if device is not None else None


async def matches(hub: DriverHarness, managed: ManagedDevice, sim: Ssc2Simulator, what: str) -> None:
    await eventually(lambda: state_of(hub, managed) == sim.expected_channels(), what=what)


async def test_state_matches_the_simulator_including_pushes_and_a_transmitter_off(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    managed = hub.add(simulator.url(poll="0.5"))
    device = await hub.device(managed)
    expected = simulator.expected_device()
    assert (device.id, device.name, device.model, device.family) == (
        expected["id"],
        expected["name"],
        expected["model"],
        "spectera",
    )
    await matches(hub, managed, simulator, "the initial state")
    for _ in range(3):
        simulator.tick()
        await matches(hub, managed, simulator, "pushed meter, battery and antenna changes")
    simulator.set_transmitter(2, on=False)
    await matches(hub, managed, simulator, "a transmitter switched off")
    channel = stored_channel(hub, device.id, 2)
    assert channel.tx_present is False and channel.battery_percent is None
    simulator.set_warnings(["PSU 2 failed"])
    await matches(hub, managed, simulator, "a device warning on every channel")
    simulator.set_transmitter(2, on=True)
    await matches(hub, managed, simulator, "the transmitter back on")


async def test_wrong_password_is_a_clear_error_without_a_retry_storm(
    hub: DriverHarness, simulator: Ssc2Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    managed = hub.add(simulator.url(password="Wrong-Pass-0000"))
    error = await eventually(lambda: managed.supervisor.last_error, what="the connection error")
    assert "refused the credentials for user 'controlSennheiser'" in error and "check the password" in error
    assert "Wrong-Pass" not in error
    asked, attempts = simulator.requests, managed.supervisor.attempts
    # the supervisor keeps trying (with its backoff), but nothing reaches the device for a while
    await eventually(lambda: managed.supervisor.attempts >= attempts + 2, what="two more attempts")
    assert simulator.requests == asked
    assert simulator.refused == 1
    assert caplog.records and not [record for record in caplog.records if "Wrong-Pass" in record.getMessage()]


async def test_after_a_refusal_the_device_is_asked_again_only_once_auth_retry_passed_on_the_clock(
    simulator: Ssc2Simulator,
) -> None:
    clock = SimulatedClock()
    async with DriverHarness("sennheiser", clock=clock) as hub:
        # a password of its own: the refusal is remembered per URL, on this test's clock
        managed = hub.add(simulator.url(password="Wrong-Pass-3030", auth_retry="30"))
        await eventually(lambda: managed.supervisor.last_error, what="the refusal")
        asked, attempts = simulator.requests, managed.supervisor.attempts
        # the clock moves only once the supervisor sleeps on it: it closes the driver between failing and sleeping
        await eventually(lambda: clock.sleeping == 1, what="the supervisor's back-off")
        clock.advance(29.0)  # past the supervisor's back-off, short of auth_retry
        await eventually(lambda: managed.supervisor.attempts == attempts + 1, what="the supervisor's next attempt")
        await eventually(lambda: clock.sleeping == 1, what="the supervisor's next back-off")
        assert simulator.requests == asked, "no request within auth_retry of the refusal"
        clock.advance(5.0)  # past auth_retry, and past the supervisor's next back-off
        # the open identity first, then the refused request: wait for the refusal, not only the first request
        await eventually(lambda: simulator.refused == 2, what="the device asked again")


async def test_an_unpinned_self_signed_certificate_is_refused(hub: DriverHarness, simulator: Ssc2Simulator) -> None:
    managed = hub.add(simulator.url(pin=False))
    error = await eventually(lambda: managed.supervisor.last_error, what="the connection error")
    assert f"the certificate of 127.0.0.1:{simulator.port} is not trusted" in error  # names the receiver
    assert f"fingerprint={simulator.fingerprint_sha256}" in error  # says exactly what to pin
    assert "or opt out with verify=false" in error  # the advice survives the cut to 300 characters
    assert simulator.requests == 0
    wrong_pin = hub.add(simulator.url(pin=False, fingerprint="ab" * 32))
    error = await eventually(lambda: wrong_pin.supervisor.last_error, what="the pin mismatch")
    assert "does not match the pinned fingerprint" in error
    assert simulator.requests == 0


async def test_pinning_or_an_explicit_opt_out_is_accepted(hub: DriverHarness, simulator: Ssc2Simulator) -> None:
    pinned = await hub.device(hub.add(simulator.url()))
    opted_out = await hub.device(hub.add(simulator.url(pin=False, verify="false")))
    # the same device under a second URL is a second entry (its id gets the scheme), not a shared one
    assert pinned.id == simulator.expected_device()["id"]
    assert opted_out.id == f"{pinned.id}-sennheiser-ssc2" and opted_out.online


async def test_two_clients_each_get_their_own_session(hub: DriverHarness, simulator: Ssc2Simulator) -> None:
    first = hub.add(simulator.url(poll="0.5"))
    second = hub.add(simulator.url(poll="0.6"))
    await hub.device(first)
    await eventually(lambda: len(simulator.sessions) == 2, what="two sessions")
    simulator.tick()
    await matches(hub, first, simulator, "the change on the first client")
    await matches(hub, second, simulator, "the change on the second client")


async def streaming(hub: DriverHarness, simulator: Ssc2Simulator) -> tuple[ManagedDevice, str]:
    """Add the simulator and wait until the driver holds a subscription session; return the device and session."""
    managed = hub.add(simulator.url(poll="0.5"))
    await hub.device(managed)
    session: str = await eventually(lambda: next(iter(simulator.sessions), None), what="a session")
    return managed, session


def went_offline(online: Subscription, device_id: str) -> bool:
    """Whether the device's online flag changed (to offline and, maybe, back) since ``online`` was last drained."""
    return ONLINE in online.drain().get((device_id, None), set())


async def test_a_dropped_stream_is_replaced_without_the_device_going_offline(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    """Every stream drop took the device offline and online again within a second: MQTT availability and the
    board flapped, though offline means silence for offline_after_s."""
    managed, old_session = await streaming(hub, simulator)
    device_id = simulator.expected_device()["id"]
    online = hub.store.subscribe({ONLINE})
    online.drain()
    simulator.drop_streams()
    await eventually(
        lambda: list(simulator.sessions) not in ([], [old_session]) and old_session not in simulator.sessions,
        what="a new session replacing the stale one",
    )
    simulator.tick()
    await matches(hub, managed, simulator, "data flowing again")
    assert not went_offline(online, device_id)
    assert (managed.supervisor.reconnects, managed.supervisor.last_error) == (0, None)


async def test_junk_events_are_ignored_and_a_close_event_brings_a_new_session_while_online(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    managed, old_session = await streaming(hub, simulator)
    device_id = simulator.expected_device()["id"]
    online = hub.store.subscribe({ONLINE})
    online.drain()
    simulator.sessions[old_session].outbox.put_nowait(b"event: message\ndata: {not json\n\n")
    simulator.tick()
    await matches(hub, managed, simulator, "data flowing past a junk event")
    simulator.sessions[old_session].outbox.put_nowait(encode_sse({}, event="close"))
    await eventually(
        lambda: any(uuid != old_session for uuid in simulator.sessions),
        what="a new session after the device closed the old one",
    )
    simulator.tick()
    await matches(hub, managed, simulator, "data flowing in the new session")
    assert not went_offline(online, device_id)
    assert managed.supervisor.reconnects == 0


async def test_a_device_that_opens_no_new_stream_goes_offline_after_offline_after_s(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    """The device answers its resources but refuses every new stream: online while it may still come back,
    offline once offline_after_s has passed, saying why."""
    managed, _ = await streaming(hub, simulator)
    simulator.answers[SUBSCRIPTIONS_PATH] = lambda: web.json_response({"error": 503}, status=503)
    dropped_at = time.monotonic()
    simulator.drop_streams()
    limit = hub.settings.offline_after_s
    await hub.device(managed, online=False, timeout=limit * 2)
    assert time.monotonic() - dropped_at >= limit * 0.9  # not before offline_after_s (less the jitter of a delay)
    error = managed.supervisor.last_error or ""
    assert error.startswith(f"the device closed the event stream; no new event stream within {limit:g} s"), error
    del simulator.answers[SUBSCRIPTIONS_PATH]
    await hub.device(managed, timeout=limit * 3)
    simulator.tick()
    await matches(hub, managed, simulator, "data flowing once streams open again")


async def test_a_session_the_driver_could_not_end_is_deleted_before_the_next_one_opens(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    _, old_session = await streaming(hub, simulator)
    simulator.busy_deletes = 1  # the DELETE sent when the stream dropped fails
    simulator.drop_streams()
    await eventually(lambda: simulator.deletes.count(old_session) == 2, what="the DELETE retried on reconnect")
    await eventually(lambda: len(simulator.sessions) == 1 and old_session not in simulator.sessions, what="one session")


async def test_a_reboot_recovers_by_itself() -> None:
    async with DriverHarness("sennheiser") as hub, Ssc2Simulator(tick_s=0.05) as simulator:
        managed = hub.add(simulator.url())
        await hub.device(managed)
        await eventually(lambda: simulator.sessions, what="a session")
        simulator.reboot()
        await eventually(
            lambda: any("/api/mts/paired/all" in session.paths for session in simulator.sessions.values()),
            what="a new session subscribed to the transmitters",
        )
        before = state_of(hub, managed)
        await eventually(lambda: state_of(hub, managed) != before, what="live data after the reboot")


async def test_a_silent_device_goes_offline_and_comes_back(hub: DriverHarness, simulator: Ssc2Simulator) -> None:
    managed = hub.add(simulator.url(poll="0.5", sse_timeout="1"))
    await hub.device(managed)
    simulator.set_silent(True)
    await hub.device(managed, online=False)
    simulator.set_silent(False)
    await hub.device(managed, timeout=10)
    simulator.tick()
    await matches(hub, managed, simulator, "data flowing after the silence")


async def test_the_state_is_polled_only_as_the_hubs_clock_moves(simulator: Ssc2Simulator) -> None:
    clock = SimulatedClock()
    settings = DriverSettings(io_timeout_s=2.0, offline_after_s=30.0)
    async with DriverHarness("sennheiser", settings=settings, clock=clock) as hub:
        await hub.device(hub.add(simulator.url(poll="5")))
        await eventually(lambda: clock.sleeping == 2, what="the poll and the watchdog wait on the clock")
        asked = simulator.requests
        clock.advance(4.9)
        assert clock.sleeping == 2 and simulator.requests == asked, "no poll before its interval"
        clock.advance(0.1)
        await eventually(lambda: simulator.requests == asked + 1, what="the poll once the clock reached it")


async def test_control_round_trips(hub: DriverHarness, simulator: Ssc2Simulator) -> None:
    device = await hub.device(hub.add(simulator.url(poll="0.5")))

    def command(kind: CommandKind, value: object, channel: int | None = 1) -> Command:
        return Command.model_validate({"device_id": device.id, "channel": channel, "kind": kind, "value": value})

    result = await hub.apply(command(CommandKind.NAME, "Lead Vox"))
    assert result.ok and simulator.mobiles[0].name == "Lead Vox"
    # the bodies Spectera's own client sends: mtUid and type (src/api.ts), rfChannelId (src/actions.ts)
    assert simulator.writes[-1] == ("/api/mts/paired/all/10", {"name": "Lead Vox", "mtUid": 10, "type": "SKM"})
    # a state poll sent before the PUT and answered after its event shows the old name until the next poll (a
    # matrix run under load saw it)
    await eventually(lambda: stored_channel(hub, device.id, 1).name == "Lead Vox", what="the name in the store")

    result = await hub.apply(command(CommandKind.FREQUENCY, 500))
    assert result.ok and result.value == 500 and simulator.rf_khz[0] == 500_000
    assert simulator.writes[-1] == ("/api/rf/channels/0", {"rfChannelId": 0, "frequency": 500_000})
    # every transmitter on that RF channel moved with it
    assert stored_channel(hub, device.id, 3).frequency_mhz == 500

    result = await hub.apply(command(CommandKind.DEVICE_NAME, "Stage Left", channel=None))
    assert result.ok and simulator.device_name == "Stage Left"
    assert stored(hub, device.id).name == "Stage Left"

    result = await hub.apply(command(CommandKind.IDENTIFY, None, channel=2))
    assert result.ok and simulator.mobiles[1].identify is True

    managed = hub.manager.find(device.id)
    assert managed is not None
    await matches(hub, managed, simulator, "state after the writes")


async def test_out_of_range_values_are_refused_before_sending(hub: DriverHarness, simulator: Ssc2Simulator) -> None:
    device = await hub.device(hub.add(simulator.url(poll="0.5")))
    for kind, value in (
        (CommandKind.FREQUENCY, 900.0),
        (CommandKind.FREQUENCY, 482.125),  # off Spectera's 1 MHz grid (src/types.ts RfChannel.frequency)
        (CommandKind.NAME, "A name far too long"),
        (CommandKind.NAME, ""),
        (CommandKind.NAME, "Vox "),  # the hub shows names trimmed: refused, as the device would keep the space
    ):
        result = await hub.apply(Command(device_id=device.id, channel=1, kind=kind, value=value))
        assert not result.ok and result.code == "invalid", result
    result = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.FREQUENCY, value=400))
    assert "outside 470..694 MHz" in str(result.error)
    result = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.FREQUENCY, value="inf"))
    assert (result.ok, result.code) == (False, "invalid"), result
    result = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.MUTE, value=True))
    assert result.code == "not_supported"
    for name in (" Stage Left", "Stage Left "):  # the device name too: it read back trimmed, as another name
        result = await hub.apply(Command(device_id=device.id, kind=CommandKind.DEVICE_NAME, value=name))
        assert (result.ok, result.code) == (False, "invalid") and "space at either end" in str(result.error), result
    assert simulator.writes == []


async def test_the_password_can_come_from_the_environment(
    hub: DriverHarness, simulator: Ssc2Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WMHUB_TEST_SSC2_PASSWORD", simulator.password)
    url = f"sennheiser-ssc2://127.0.0.1:{simulator.port}?password_env=WMHUB_TEST_SSC2_PASSWORD"
    device = await hub.device(hub.add(f"{url}&fingerprint={simulator.fingerprint_sha256}"))
    assert device.id == simulator.expected_device()["id"]
    missing = hub.add(f"sennheiser-ssc2://127.0.0.1:{simulator.port}?fingerprint={simulator.fingerprint_sha256}")
    error = await eventually(lambda: missing.supervisor.last_error, what="the missing password")
    assert "needs password=" in error


async def test_resources_beyond_the_mapped_ones_are_read_from_the_schema_and_kept_raw(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    managed = hub.add(simulator.url(poll="0.5"))
    await hub.device(managed)
    driver = managed.driver
    assert isinstance(driver, Ssc2Driver)
    await eventually(lambda: driver.resources.raw.get("/api/health/psu"), what="the PSU health resource")
    assert "/api/health/psu" in simulator.sessions[driver.session_uuid or ""].paths


async def test_a_device_without_a_schema_gets_the_documented_resources(hub: DriverHarness) -> None:
    async with Ssc2Simulator(tick_s=0, serve_schema=False) as simulator:
        managed = hub.add(simulator.url(poll="0.5"))
        await hub.device(managed)
        await matches(hub, managed, simulator, "the initial state")
        simulator.set_transmitter(1, on=False)
        await matches(hub, managed, simulator, "a transmitter switched off")


def test_defaults_verify_the_certificate_and_leave_the_user_to_the_product() -> None:
    options = Ssc2Options.parse({"password": "Pass-word-1"})
    assert (options.user, options.verify, options.fingerprint) == (None, True, None)
    assert options.users_for("Spectera Base Station") == ("controlSennheiser",)
    assert options.users_for("TCCM") == options.users_for("Base Station") == ("api", "controlSennheiser")
    assert Ssc2Options.parse({"password": "p", "user": "admin"}).users_for("Spectera") == ("admin",)
    context = options.tls()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode is ssl.CERT_REQUIRED
    assert Ssc2Options.parse({"password": "p", "verify": "false"}).tls() is False
    assert "Pass-word-1" not in repr(options.authorization("api"))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("password=p&fingerprint=abcd", "64 hex digits"),
        ("password=p&fingerprint=" + "zz" * 32, "64 hex digits"),
        ("password=p&poll=0", "positive"),
        ("password=p&sse_timeout=nan", "positive"),
        ("password=p&auth_retry=inf", "positive"),
        ("password=p&sse_timeout=soon", "not a number"),
        ("user=api", "needs password="),
        ("password_env=WMHUB_TEST_SSC2_UNSET_VARIABLE", "is not set"),
    ],
)
def test_unusable_options_are_explained(query: str, message: str) -> None:
    with pytest.raises(EndpointError, match=message):
        Ssc2Options.parse(dict(parse_qsl(query)))


async def test_a_spectera_is_asked_as_its_own_user_and_a_tcc_m_as_api(hub: DriverHarness) -> None:
    # Spectera's client logs in as controlSennheiser (companion-module-sennheiser-spectera src/api.ts)
    async with Ssc2Simulator(tick_s=0) as spectera, Ssc2Simulator(tick_s=0, product="TCCM", user="api") as tcc:
        assert "user=" not in spectera.url()
        for simulator in (spectera, tcc):
            managed = hub.add(simulator.url(poll="0.5").replace("&user=api", ""))
            await hub.device(managed)
            await matches(hub, managed, simulator, f"{simulator.product} monitored")
            assert simulator.refused == 0


async def test_sleeping_packs_and_still_syncing_placeholders_are_not_on_air(hub: DriverHarness) -> None:
    async with Ssc2Simulator(tick_s=0, mobiles=2) as simulator:
        simulator.placeholders = 2  # listed with serial 0000000000: no channel for them
        managed = hub.add(simulator.url(poll="0.5"))
        device = await hub.device(managed)
        await matches(hub, managed, simulator, "two packs, no placeholder channels")
        simulator.tick()
        await matches(hub, managed, simulator, "metered per output")
        assert stored_channel(hub, device.id, 1).audio_dbfs is not None
        simulator.set_sleeping(2, True)
        await matches(hub, managed, simulator, "a sleeping pack")
        assert stored_channel(hub, device.id, 2).battery_percent is None
        assert len(stored(hub, device.id).channels) == 2


def basic_auth(simulator: Ssc2Simulator) -> dict[str, str]:
    credentials = base64.b64encode(f"{simulator.user}:{simulator.password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("PUT", "/api/device/site", b"{not json", 400, "malformed JSON"),
        ("PUT", "/api/device/site", b'{"serial": "X"}', 400, "only deviceName and location"),
        ("PUT", "/api/device/site", b'{"deviceName": ""}', 400, ""),
        ("PUT", "/api/mts/paired/all/99", b'{"name": "X"}', 422, "no such mobile device"),
        ("PUT", "/api/mts/paired/all/10", b'{"gain": 3}', 400, "only name and identify"),
        ("PUT", "/api/rf/channels/7", b'{"frequency": 480000}', 422, "no such RF channel"),
        ("PUT", "/api/rf/channels/0", b'{"frequency": 1, "x": 2}', 400, "only frequency"),
        ("PUT", "/api/rf/channels/0", b'{"frequency": 1}', 400, ""),
        ("GET", "/api/no/such/thing", b"", 422, "no resource"),
        ("GET", "/api/ssc/state/subscriptions/unknown", b"", 422, "unknown subscription"),
        ("PUT", "/api/ssc/state/subscriptions/unknown/add", b"[]", 422, "unknown subscription"),
    ],
)
async def test_the_simulator_refuses_like_a_device(
    simulator: Ssc2Simulator, method: str, path: str, body: bytes, status: int, message: str
) -> None:
    """Against the simulator directly: the refusals the driver's error handling is tested against."""
    async with (
        aiohttp.ClientSession(headers=basic_auth(simulator)) as http,
        http.request(method, f"https://127.0.0.1:{simulator.port}{path}", data=body, ssl=False) as response,
    ):
        answer = await response.json(content_type=None)
    assert response.status == status and answer["error"] == status and message in answer["message"]
    assert simulator.writes == []


async def test_the_simulator_session_api_lists_and_edits_paths(simulator: Ssc2Simulator) -> None:
    base = f"https://127.0.0.1:{simulator.port}/api/ssc/state/subscriptions"
    async with aiohttp.ClientSession(headers=basic_auth(simulator)) as http, http.get(base, ssl=False) as stream:
        session = stream.headers["Content-Location"].rsplit("/", 1)[1]
        async with http.put(f"{base}/{session}", json=["/api/device/site"], ssl=False) as response:
            assert await response.json() == ["/api/device/site"]
        async with http.put(f"{base}/{session}/remove", json=["/api/device/site"], ssl=False) as response:
            assert await response.json() == []
        async with http.put(f"{base}/{session}", json={"not": "a list"}, ssl=False) as response:
            assert response.status == 400
        async with http.get(f"{base}/{session}", ssl=False) as response:
            assert await response.json() == []
        async with http.post(f"{base}/{session}", ssl=False) as response:
            assert response.status == 405
        async with http.delete(f"{base}/{session}", ssl=False) as response:
            assert response.status == 204


def device_online(hub: DriverHarness, simulator: Ssc2Simulator) -> bool:
    device = hub.store.get(simulator.expected_device()["id"])
    return device is not None and device.online


async def test_a_malformed_stream_is_noticed_at_once_and_named(
    hub: DriverHarness, simulator: Ssc2Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad chunk-size line killed the stream, but the hub waited for sse_timeout (60 s) and blamed silence."""
    caplog.set_level(logging.INFO)
    managed, old_session = await streaming(hub, simulator)
    simulator.push_to_streams(Unframed(b"zz\x1b[2J\x1b]0;pwn\x07" + b"A" * 5000 + b"\r\n"))
    await eventually(lambda: old_session not in simulator.sessions and simulator.sessions, 2.0, "a new stream")
    (said,) = [r.getMessage() for r in caplog.records if "opening a new event stream" in r.getMessage()]
    assert said.startswith("the SSE stream is malformed") and "chunk size" in said, said
    assert "\x1b" not in said and "\x07" not in said
    simulator.tick()
    await matches(hub, managed, simulator, "data flowing in the new stream")


async def test_events_naming_endless_new_resources_do_not_grow_the_hub(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    managed, _ = await streaming(hub, simulator)
    for batch in range(4):
        simulator.push_to_streams(encode_sse({f"/api/unknown/b{batch}/{n}": {"blob": "x" * 100} for n in range(1000)}))
    simulator.set_warnings(["after the flood"])
    await matches(hub, managed, simulator, "the change after the flood")
    driver = managed.supervisor.driver
    assert isinstance(driver, Ssc2Driver)
    assert len(driver.resources.raw) <= MAX_RAW_RESOURCES
    assert driver.resources.raw.get("/api/health/psu")  # the device's own extra resources came first


async def test_json_nested_past_the_interpreters_limit_is_skipped_as_not_json(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    """200,000 levels deep (under the size bound): a RecursionError escaped and took the device offline."""
    managed, _ = await streaming(hub, simulator)
    simulator.push_to_streams(b"data: " + b"[" * 200_000 + b"]" * 200_000 + b"\n\n")
    simulator.set_warnings(["after the deep event"])
    await matches(hub, managed, simulator, "the change after the deep event")
    assert managed.supervisor.attempts == 1 and managed.handle.protocol_errors >= 1
    simulator.answers[SITE_PATH] = lambda: web.Response(
        body=b"[" * 200_000 + b"]" * 200_000, content_type="application/json"
    )
    second = hub.add(simulator.url(poll="60", id="second"))
    error = await eventually(lambda: second.supervisor.last_error, what="the deep answer refused")
    assert error == "GET /api/device/site: unreadable answer (JSON nested too deeply)"


async def test_a_device_whose_stream_never_opens_is_not_shown_online_and_says_why(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    """Identified before its stream opened, such a device flapped online and offline (and so did MQTT)."""
    simulator.hold_open_event = True
    managed = hub.add(simulator.url(poll="60"))
    seen_online = False

    def failed() -> str | None:
        nonlocal seen_online
        seen_online = seen_online or device_online(hub, simulator)
        return managed.supervisor.last_error

    error = await eventually(failed, hub.settings.io_timeout_s * 3, "the stream that never opened")
    assert "sent its headers but did not open" in error, error
    assert not seen_online
    simulator.hold_open_event = False
    simulator.drop_streams()
    await hub.device(managed, timeout=hub.settings.io_timeout_s * 6)


async def test_an_answer_larger_than_an_event_is_refused_unread(hub: DriverHarness, simulator: Ssc2Simulator) -> None:
    simulator.answers[SITE_PATH] = lambda: web.json_response({"deviceName": "S" * (2 * 1024 * 1024)})
    managed = hub.add(simulator.url(poll="60"))
    error = await eventually(lambda: managed.supervisor.last_error, what="the huge answer refused")
    assert error == "GET /api/device/site: answer larger than 1024 KiB, refused unread"


async def test_a_redirect_is_not_followed_and_is_named(hub: DriverHarness, simulator: Ssc2Simulator) -> None:
    """With a pinned certificate, a redirect to plain HTTP was followed and its answer believed."""
    plain = "http://127.0.0.1:9/api/device/identity"
    simulator.answers[IDENTITY_PATH] = lambda: web.Response(status=302, headers={"Location": plain})
    managed = hub.add(simulator.url(poll="60"))
    error = await eventually(lambda: managed.supervisor.last_error, what="the redirect refused")
    assert f"redirected (302) to {plain}, not followed" in error, error
    assert hub.store.get(simulator.expected_device()["id"]) is None


async def test_a_session_id_with_escape_sequences_is_used_as_given_and_logged_without_them(
    hub: DriverHarness, simulator: Ssc2Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The session id is the device's to choose: the driver subscribes, ends and deletes exactly that id, and
    no log line carries its control characters (a terminal would clear its screen, or turn the text around)."""
    simulator.session_prefix = "\x1b[2J\x1b]0;pwned\x07\u202e"
    caplog.set_level(logging.DEBUG)
    managed, old_session = await streaming(hub, simulator)
    simulator.tick()
    await matches(hub, managed, simulator, "state through the oddly named session")
    simulator.drop_streams()
    await eventually(lambda: old_session in simulator.deletes, what="the session ended by its own id")
    await eventually(lambda: any(uuid != old_session for uuid in simulator.sessions), what="a new session")
    simulator.tick()
    await matches(hub, managed, simulator, "state through the next session")
    subscribed = [r.getMessage() for r in caplog.records if "subscribed to" in r.getMessage()]
    assert subscribed, "the session's subscription is logged"
    assert not [r for r in caplog.records if any(c in r.getMessage() for c in "\x1b\x07\u202e")]


async def test_a_pack_without_a_battery_or_antenna_reading_shows_none_rather_than_empty(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    """Spectera sends batteryFillLevel and batteryRuntime -1 for no reading ("Off" in its own client): shown as
    0 % and 0 min, the pack raised a low-battery alert. dominantAntenna "NotAvailable" was shown as it came."""
    managed = hub.add(simulator.url(poll="0.5"))
    device = await hub.device(managed)
    await matches(hub, managed, simulator, "the initial state")
    assert stored_channel(hub, device.id, 1).antenna == "A"  # port "a", named as the hub names antennas
    simulator.set_readings(2, battery=False, antenna="NotAvailable")
    await matches(hub, managed, simulator, "a pack without battery and antenna readings")
    channel = stored_channel(hub, device.id, 2)
    assert channel.tx_present is True
    assert (channel.battery_percent, channel.battery_runtime_min, channel.antenna) == (None, None, None)
    assert "battery low" not in channel.warnings


async def test_an_event_of_another_type_carrying_resources_is_applied(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    """Spectera's own client applies an event's {path: value} whatever its type (src/api.ts handleSSEEvent); the
    driver dropped every event not named "message"."""
    managed, _ = await streaming(hub, simulator)
    simulator.push_to_streams(encode_sse({SITE_PATH: {"deviceName": "Renamed Rack"}}, event="update"))
    await eventually(lambda: stored(hub, managed.handle.device_id or "").name == "Renamed Rack", what="the rename")


async def test_a_pack_name_outside_spectera_s_characters_is_refused_before_sending_and_names_them(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    """Spectera names a pack with at most 16 of A-Z a-z 0-9 - + = * / ; < > # | , . and space (its own client,
    src/utils.ts MOBILE_DEVICE_NAME_ALLOWED). Any printable name was sent, and the device's 400 (an SSCv2 error
    body {"path", "error"}) came back as "refused ... 400 400"."""
    device = await hub.device(hub.add(simulator.url(poll="0.5")))

    def rename(name: str) -> Command:
        return Command(device_id=device.id, channel=1, kind=CommandKind.NAME, value=name)

    for name in ("Vox_1", "Sänger", "Lead!"):
        result = await hub.apply(rename(name))
        assert (result.ok, result.code) == (False, "invalid"), result
        assert "A-Z" in str(result.error) and "- + = * / ; < > # | , ." in str(result.error), result.error
    assert simulator.writes == []
    result = await hub.apply(rename("Jim #2, -3 dB."))
    assert result.ok and simulator.mobiles[0].name == "Jim #2, -3 dB."
    path = "/api/mts/paired/all/10"
    simulator.answers[path] = lambda: web.json_response({"path": path, "error": 400}, status=400)
    result = await hub.apply(rename("Lead Vox"))
    assert result.code == "refused", result
    assert str(result.error).endswith(f"PUT {path} on 127.0.0.1:{simulator.port}: 400 Bad Request"), result.error


async def test_a_channel_stays_with_its_pack_when_others_are_unpaired_or_paired(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    """Channels were numbered 1.. in mtUid order afresh on every connection: once the pack on channel 2 had been
    unpaired, the pack on channel 3 became channel 2 and took that channel's extended name, topics and bindings."""
    managed = hub.add(simulator.url(poll="0.5", sse_timeout="1"))
    device = await hub.device(managed)

    def packs() -> dict[int, str | None]:
        return {channel.index: channel.tx_id for channel in stored(hub, device.id).channels}

    await eventually(lambda: packs() == {1: "7000010", 2: "7000011", 3: "7000012", 4: "7000013"}, what="four packs")
    simulator.unpair(11)
    await eventually(lambda: packs() == {1: "7000010", 2: None, 3: "7000012", 4: "7000013"}, what="channel 2 empty")
    empty = stored_channel(hub, device.id, 2)
    assert (empty.tx_present, empty.name, empty.battery_percent) == (False, None, None)
    result = await hub.apply(Command(device_id=device.id, channel=2, kind=CommandKind.NAME, value="Nobody"))
    assert result.code == "unavailable", result
    # a pack unpaired while the hub was not connected (the device silent, so a new connection)
    simulator.set_silent(True)
    await hub.device(managed, online=False)
    simulator.unpair(12)
    simulator.set_silent(False)
    await hub.device(managed, timeout=10)
    await eventually(lambda: packs() == {1: "7000010", 2: None, 3: None, 4: "7000013"}, what="the packs in place")
    simulator.pair(SimMobile(mt_uid=20, name="Spare"))
    await eventually(lambda: packs() == {1: "7000010", 2: "7000020", 3: None, 4: "7000013"}, what="lowest free channel")
    assert stored_channel(hub, device.id, 2).name == "Spare"


async def test_a_product_not_named_spectera_is_asked_as_api_then_as_spectera_s_user(hub: DriverHarness) -> None:
    """Spectera's product string is not public: a base station whose identity does not say "Spectera" was asked
    only as user api (companion-module-sennheiser-spectera src/api.ts logs in as controlSennheiser), and the
    refusal blamed the password alone."""
    async with Ssc2Simulator(tick_s=0, product="Base Station") as simulator:
        managed = hub.add(simulator.url(poll="0.5"))
        await hub.device(managed)
        await matches(hub, managed, simulator, "the base station monitored")
        assert simulator.refused == 1, "api asked once, then controlSennheiser throughout"
        wrong = hub.add(simulator.url(password="Wrong-Pass-5050", id="wrong"))
        error = await eventually(lambda: wrong.supervisor.last_error, what="the refusal")
        assert "refused the credentials for users 'api' and 'controlSennheiser' (HTTP 401)" in error, error
        assert "user=" in error, "says how to name the user"


async def advance(clock: SimulatedClock, seconds: float) -> None:
    """Move the clock, then wait until the supervisor (woken or not) sleeps on it again: nothing else does
    while the device is not connected."""
    clock.advance(seconds)
    await eventually(lambda: clock.sleeping == 1, what="the supervisor waiting again")


def _in_20_s_as_http_date(clock: SimulatedClock) -> str:
    return format_datetime(datetime.fromtimestamp(clock.now() + 20, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "held_s"),
    [(lambda clock: "20", 20), (_in_20_s_as_http_date, 20), (lambda clock: "86400", MAX_RETRY_AFTER_S)],
    ids=["seconds", "http-date", "capped"],
)
async def test_a_device_asking_for_a_pause_is_not_asked_again_before_retry_after(
    simulator: Ssc2Simulator, retry_after: Callable[[SimulatedClock], str], held_s: float
) -> None:
    """A 429 or 503 with Retry-After was retried at the supervisor's pace (30 requests in 10 s)."""
    clock = SimulatedClock()
    simulator.answers[MOBILES_PATH] = lambda: web.json_response(
        {"error": 429}, status=429, headers={"Retry-After": retry_after(clock)}
    )
    async with DriverHarness("sennheiser", clock=clock) as hub:
        managed = hub.add(simulator.url(poll="60"))
        error = await eventually(lambda: managed.supervisor.last_error, what="the 429")
        assert error.endswith(f"GET {MOBILES_PATH} on 127.0.0.1:{simulator.port}: 429 Too Many Requests"), error
        await eventually(lambda: clock.sleeping == 1, what="the supervisor waiting")
        asked, attempts = simulator.requests, managed.supervisor.attempts
        await advance(clock, held_s - 1)
        assert managed.supervisor.attempts > attempts and simulator.requests == asked, "nothing within Retry-After"
        assert "not asking the device again for 1 s" in (managed.supervisor.last_error or "")
        del simulator.answers[MOBILES_PATH]
        clock.advance(2.0)
        await hub.device(managed)


async def test_a_forbidden_event_stream_is_asked_again_after_growing_waits(simulator: Ssc2Simulator) -> None:
    """A 403 (the user may not read it) does not pass by itself, yet it was asked again at the supervisor's pace,
    every resource read again each time: 45 requests in 10 s."""
    clock = SimulatedClock()
    simulator.answers[SUBSCRIPTIONS_PATH] = lambda: web.json_response({"error": 403}, status=403)
    async with DriverHarness("sennheiser", clock=clock) as hub:
        managed = hub.add(simulator.url(poll="60"))
        error = await eventually(lambda: managed.supervisor.last_error, what="the 403")
        assert error.endswith("403 Forbidden"), error
        await eventually(lambda: clock.sleeping == 1, what="the supervisor waiting")
        first = simulator.requests
        await advance(clock, 2.4)  # the first wait: 2.5 to 5 s
        assert simulator.requests == first
        await advance(clock, 2.7)
        assert simulator.requests > first, "asked again once the first wait passed"
        second = simulator.requests
        await advance(clock, 4.9)  # the second wait: 5 to 10 s
        assert simulator.requests == second
        del simulator.answers[SUBSCRIPTIONS_PATH]
        clock.advance(5.2)
        await hub.device(managed)


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = datetime(2026, 12, 6, 20, 0, tzinfo=UTC).timestamp()
    assert retry_after_s("120", now) == 120
    assert retry_after_s("Sun, 06 Dec 2026 20:00:30 GMT", now) == 30
    assert retry_after_s("Sun, 06 Dec 2026 19:00:00 GMT", now) == 0  # already past
    assert [retry_after_s(value, now) for value in (None, "", "soon", "-5", "1.5")] == [None] * 5


MALFORMED_PIN = "sennheiser-ssc2://127.0.0.1:4443?password=p&fingerprint=abc"


def test_wmhub_run_check_refuses_a_malformed_fingerprint(tmp_path: Path) -> None:
    """An outside audit: `fingerprint=abc` passed `wmhub run --check`, REST (201) and the configuration, and failed
    only at every connect. It is refused where the URL is taken, as any unusable URL is."""
    check = subprocess.run(
        [sys.executable, "-m", "hub.cli", "run", "--check", "--mqtt", "off", "--http", "127.0.0.1:0",
         "--data-dir", str(tmp_path), "--device", MALFORMED_PIN],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 2, check.stderr
    assert "--device: " in check.stderr and "fingerprint must be the certificate's SHA-256" in check.stderr


async def test_rest_refuses_a_malformed_fingerprint_as_an_invalid_url(tmp_path: Path) -> None:
    config = HubConfig(
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        http=HttpSettings(port=0, token=TOKEN),
        discovery=DiscoverySettings(enabled=False),
    )
    plugins = PluginHost()
    plugins.load_entry_points(only="sennheiser")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        compose_hub(config, plugins) as running,
        aiohttp.ClientSession(f"http://127.0.0.1:{running.web.port}") as http,
    ):
        async with http.post("/api/v1/devices", json={"url": MALFORMED_PIN}, headers=headers) as response:
            refused = await response.json()
        assert response.status == 422 and refused["code"] == "invalid_url", refused
        assert "64 hex digits" in refused["error"]
        pinned = MALFORMED_PIN.replace("fingerprint=abc", "fingerprint=" + "ab" * 32)
        async with http.post("/api/v1/devices", json={"url": pinned}, headers=headers) as response:
            assert response.status == 201, await response.text()


async def test_a_deeply_nested_open_event_is_a_protocol_error_and_the_stream_runs_on(
    hub: DriverHarness, simulator: Ssc2Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The open event's JSON was read with only ValueError expected: nested past Python's limit it raised
    RecursionError, which the supervisor took for a bug of the plugin, and the device never connected. It is
    device JSON that is none: counted as a protocol error, the session id taken from Content-Location."""
    simulator.open_event_data = "[" * 100_000 + "]" * 100_000
    managed, _ = await streaming(hub, simulator)
    simulator.tick()
    await matches(hub, managed, simulator, "state through the session its header named")
    assert managed.supervisor.last_error is None
    assert managed.handle.protocol_errors >= 1
    assert not [record for record in caplog.records if "bug of the plugin" in record.getMessage()]


async def test_a_pushed_event_nested_deeper_than_any_device_json_is_a_protocol_error(
    hub: DriverHarness, simulator: Ssc2Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Nested 900 levels, an event still parses within Python's limit, but whatever walks it later (a log
    line's repr of it) does not: refused when it is read, the stream goes on."""
    managed, _ = await streaming(hub, simulator)
    errors = managed.handle.protocol_errors
    deep = "[" * 900 + "]" * 900
    simulator.push_to_streams(f'data: {{"{SITE_PATH}": {{"deviceName": {deep}}}}}\n\n'.encode())
    await eventually(lambda: managed.handle.protocol_errors > errors, what="the deep event counted")
    simulator.tick()
    await matches(hub, managed, simulator, "state after the deep event")
    assert managed.supervisor.last_error is None
    assert not [record for record in caplog.records if "bug of the plugin" in record.getMessage()]


async def test_a_device_name_with_a_lone_surrogate_is_stored_readable(
    hub: DriverHarness, simulator: Ssc2Simulator
) -> None:
    """JSON's "\\ud800" decodes to a str no UTF-8 writer takes (REST answered 500 for every device, MQTT and the
    database failed): the sink shows it as U+FFFD."""
    simulator.device_name = "Rack \ud800"
    managed = hub.add(simulator.url(poll="0.5"))
    device = await hub.device(managed)
    await eventually(lambda: stored(hub, device.id).name == "Rack \ufffd", what="the name, readable")
    stored(hub, device.id).model_dump_json().encode("utf-8")
