"""One careless plugin never breaks the others or the hub.

``careless`` is written as a third-party author would write it from docs/plugins.md, without much care:
its driver passes whatever its receiver sends straight to the sink, its apply answers whatever it
likes, and it blocks the event loop where it should await. Its "receiver" is a line-of-JSON server on
loopback (real TCP), so every bad value arrives over a real socket. Next to it the hub runs a healthy
Shure receiver (the Shure plugin and its protocol simulator) that must not notice anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import orjson
import pytest
from wmhub_shure.simulator import ShureSimulator

from hub import hookimpl
from hub.app import Hub
from hub.cli import STOP_DEADLINE_S
from hub.compose import compose_hub
from hub.discovery import Discovery
from hub.drivers import DeviceSink, Driver, DriverSettings, Endpoint
from hub.exit_codes import EXIT_FAILED
from hub.hookspecs import DriverSpec
from hub.lag import HELD_AFTER_S
from hub.model import Capabilities, Command, CommandKind, CommandLimits, CommandResult, NumberLimits, RefusedError
from hub.plugins import PluginHost
from hub.testing import DriverHarness, QuietDriver, eventually, plugin_of
from tests.fault_harness import TOKEN, Api, hub_config, until
from tests.mosquitto import MqttProbe, TestBroker, free_port
from tests.reliability_report import record_check
from tests.test_faults_hub import HubProcess, database_integrity, devices_online, hub_process
from tests.test_mqtt_bridge import listening_to

AREA = "plugin isolation"
HOSTILE_NAME = "\x1b[2J\x1b[31mFAKE\r\n2026-01-01 ERROR hub: forged line\u202e" + "y" * 100_000


def parse_heavily(seconds: float) -> None:
    time.sleep(seconds)


class CarelessDriver(Driver):
    """Reads ``{"channel": n, "fields": {...}}`` lines and writes them to the sink unchecked."""

    def __init__(self, endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> None:
        super().__init__(endpoint, sink, settings)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        # a generous line limit: the receiver's 100,000-character name arrives whole, in one read
        self.reader, self.writer = await asyncio.open_connection(self.endpoint.host, self.endpoint.port, limit=1 << 20)
        hello = json.loads(await self.reader.readline())
        self.sink.identify(unique_id=hello["serial"], family="careless", model="C-1", channel_count=2)

    async def run(self) -> None:
        assert self.reader is not None
        while line := await self.reader.readline():
            message = json.loads(line)  # Python's json: NaN and Infinity come through as floats
            if "block_s" in message:
                time.sleep(message["block_s"])  # noqa: ASYNC251 - the mistake under test: blocking in a coroutine
            elif "callback_block_s" in message:  # heavy parsing in a callback of the driver's own, no hook call
                asyncio.get_running_loop().call_soon(parse_heavily, message["callback_block_s"])
            elif "device" in message:
                self.sink.update_device(message["device"])
            elif "held" in message:  # readings held until the hub looks, written then by the merge
                self.sink.defer_meters(lambda fields=message["held"]: self.sink.update_channel(1, fields))
            else:
                self.sink.update_channel(message["channel"], message["fields"])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def apply(self, command: Command) -> Any:  # type: ignore[override]  # the sloppiness under test
        """Answers by the value of a NAME command: what a sloppy driver might return."""
        if command.kind is CommandKind.MUTE:  # the device's word for done, passed on as the new state
            return CommandResult(ok=True, value="ok")
        if command.value == "none":
            return None
        if command.value == "yes":
            return "yes"
        if command.value == "42":
            return _forty_two()
        if command.value == "bare":  # a failure that says nothing, as the example plugin once returned
            return CommandResult(ok=False, value="Kept")
        if command.value == "bytes":  # what the device sent, undecoded
            return CommandResult(ok=True, value=b"\xff\x00")
        if command.value == "object":
            return CommandResult(ok=True, value=object())
        if command.value == "huge":  # a device (or a loop) that never stops talking
            return CommandResult(ok=True, value="V" * 5_000_000)
        if command.value == "refuse-huge":
            raise RefusedError("E" * 5_000_000)
        time.sleep(0.25)
        return _answered(command)


async def _forty_two() -> int:
    return 42


class CarelessPlugin:
    @hookimpl
    def register_drivers(self, register: Callable[[DriverSpec], None]) -> None:
        register(DriverSpec(scheme="careless", vendor="careless", families=("careless",), factory=CarelessDriver))


async def _answered(command: Command) -> CommandResult:
    return CommandResult(ok=True, value=command.value)


class CarelessReceiver:
    """The careless plugin's device: a TCP server on loopback that sends the lines a test gives it."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> CarelessReceiver:
        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b'{"serial": "C0001"}\n')
            self.writers.append(writer)

        self.server = await asyncio.start_server(connected, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        for writer in self.writers:
            writer.close()
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"careless://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def send(self, message: dict[str, Any]) -> None:
        for writer in self.writers:
            writer.write(json.dumps(message).encode() + b"\n")  # allow_nan: NaN goes out as the bare word


class Rig:
    def __init__(self, hub: Hub, careless: CarelessReceiver, shure: ShureSimulator) -> None:
        self.hub = hub
        self.careless = careless
        self.shure = shure
        self.http = f"http://127.0.0.1:{hub.web.port}"

    def managed(self, scheme: str) -> Any:
        return next(managed for managed in self.hub.devices.by_url.values() if managed.url.startswith(scheme))

    def careless_channel(self, index: int = 1) -> Any:
        device = self.hub.store.devices["careless-C0001"]
        return device.channel(index)


@asynccontextmanager
async def careless_hub(tmp_path: Path, mqtt_url: str = "off") -> AsyncIterator[Rig]:
    async with CarelessReceiver() as careless, ShureSimulator("ulxd4d") as shure:
        host = PluginHost()
        host.load_entry_points(only="shure")
        host.register(CarelessPlugin(), "careless", "0.1")
        hub = compose_hub(hub_config(tmp_path, [careless.url, shure.url], mqtt_url, hub_id="careless"), host)
        await hub.start()
        try:
            rig = Rig(hub, careless, shure)
            await eventually(
                lambda: all(d.online for d in hub.store.devices.values()) and len(hub.store.devices) == 2,
                10,
                "both receivers online",
            )
            yield rig
        finally:
            await hub.stop()


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, f"{url}: {response.status} {await response.text()}"
        return await response.json()


async def test_bad_values_from_a_careless_plugin_are_dropped_and_nothing_else_breaks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with careless_hub(tmp_path) as rig, aiohttp.ClientSession() as session:
        careless = rig.managed("careless")
        rig.careless.send({"channel": 1, "fields": {"rf_dbm": -61.5, "tx_present": True, "name": "Lead"}})
        await eventually(lambda: rig.careless_channel().name == "Lead", what="a good update")
        for _ in range(2):  # the second time only counted, not logged again
            rig.careless.send({"channel": 1, "fields": {"rf_dbm": "strong", "tx_present": "maybe", "name": 12345}})
        rig.careless.send({"channel": 1, "fields": {"audio_dbfs": float("nan"), "battery_percent": 250}})
        rig.careless.send({"channel": 1, "fields": {"volume": 11}})
        rig.careless.send({"channel": 1, "fields": {"warnings": None}})  # a list, never unknown
        rig.careless.send({"channel": 0, "fields": {"name": "zero"}})
        rig.careless.send({"channel": 2, "fields": {"name": HOSTILE_NAME}})
        rig.careless.send({"device": {"model": ["not", "text"], "firmware": "1.0\x00\x07"}})
        await eventually(lambda: careless.handle.protocol_errors >= 12, what="every bad value counted")

        channel = rig.careless_channel()
        assert (channel.rf_dbm, channel.tx_present, channel.name) == (-61.5, True, "Lead")  # bad values dropped
        assert channel.audio_dbfs is None and channel.battery_percent is None  # impossible readings: unknown
        assert channel.warnings == []
        assert rig.careless_channel(0) is None
        stored = rig.careless_channel(2).name
        assert stored.startswith("[2J[31mFAKE2026-01-01 ERROR hub: forged liney") and len(stored) == 255
        device = rig.hub.store.devices["careless-C0001"]
        assert (device.model, device.firmware) == ("C-1", "1.0")
        assert careless.supervisor.reconnects == 0 and device.online  # no reconnect loop
        refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("plugin careless reported")]
        assert len(refusals) == 9 and all(len(message) < 400 for message in refusals)

        devices = await get_json(session, f"{rig.http}/api/v1/devices")
        channels = await get_json(session, f"{rig.http}/api/v1/channels")
        assert len(devices["items"]) == 2 and len(channels["items"]) == 4  # two channels each
        async with session.ws_connect(f"{rig.http}/api/v1/live?token={TOKEN}") as live:
            first = await live.receive_json(timeout=5)
        assert first
        shure = rig.managed("shure")
        assert shure.supervisor.reconnects == 0 and rig.hub.store.devices[shure.handle.device_id].online

        listing = await asyncio.to_thread(wmhub_devices, rig.hub.web.port)
        assert "\x1b" not in listing and "forged line" in listing and "\r" not in listing
        assert max(len(line) for line in listing.splitlines()) < 300
    # the history and alert tick (every 0.5 s, running all along) never met the NaN: the sink made it unknown
    assert not [r for r in caplog.records if r.getMessage() == "store tick failed"]
    record_check(
        AREA,
        'update_channel(1, {"rf_dbm": "strong", "tx_present": "maybe", "name": 12345}), NaN, 250 %, an unknown '
        "field, channel 0, a 100,000-character name with escape sequences, a list as the model",
        "wrong types and unknown fields dropped, NaN and 250 % read as unknown, channel 0 refused: each counted "
        "as the device's protocol error and logged once naming the plugin; the device stays online (no "
        "reconnect); the name is stored without control characters, cut to 255; REST devices/channels and the "
        "live WebSocket answer; `wmhub devices` prints no escape sequence; the Shure receiver never noticed",
    )


def wmhub_devices(port: int) -> str:
    env = dict(os.environ, WMHUB_HTTP__PORT=str(port), WMHUB_HTTP__HOST="127.0.0.1")
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "devices"], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_control_answers_that_are_no_command_result_are_plugin_errors_naming_the_plugin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with careless_hub(tmp_path) as rig, aiohttp.ClientSession() as session:
        url = f"{rig.http}/api/v1/channels/careless-C0001:1/commands"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        answers = {}
        for value in ("none", "yes", "42", "block", "bare"):
            async with session.post(url, json={"kind": "name", "value": value}, headers=headers) as response:
                answers[value] = (response.status, await response.json())
        async with session.post(url, json={"kind": "mute", "value": True}, headers=headers) as response:
            mute = (response.status, await response.json())
        for value in ("none", "yes", "42"):
            status, body = answers[value]
            assert status == 502 and body["code"] == "plugin_error" and "plugin careless" in body["error"], body
        assert answers["block"][0] == 200
        status, body = answers["bare"]
        assert status == 502 and body["code"] == "failed", body
        assert body["error"] == "the device did not confirm the value; it reports 'Kept'"
        status, body = mute
        assert (status, body["code"]) == (502, "plugin_error"), body
        assert body["error"] == "plugin careless confirmed mute with the value 'ok': not true or false"
    slow = [r.getMessage() for r in caplog.records if "held the event loop" in r.getMessage()]
    assert any("plugin careless" in message and "Driver.apply" in message for message in slow), slow
    record_check(
        AREA,
        'Driver.apply returns None, "yes", an awaitable of 42; confirms a mute with the value "ok"; or blocks '
        "250 ms with time.sleep",
        "REST 502 plugin_error 'plugin careless answered ... instead of a CommandResult' (not 409 'has no "
        "controls'), and 'confirmed mute with the value 'ok': not true or false'; the blocking call is named in "
        "a warning: plugin careless, Driver.apply, its time",
    )


async def test_command_answers_the_edges_cannot_carry_are_plugin_errors_and_long_texts_are_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mqtt_broker: TestBroker
) -> None:
    """A result value of bytes or an object answered REST with 500 'internal' (no plugin named) and left the MQTT
    set unanswered; a 5 MB value or refusal went whole into the REST answer, and the refusal into the log."""
    caplog.set_level(logging.INFO)
    async with (
        careless_hub(tmp_path, mqtt_broker.url) as rig,
        aiohttp.ClientSession() as session,
        MqttProbe(mqtt_broker) as probe,
    ):
        url = f"{rig.http}/api/v1/channels/careless-C0001:1/commands"
        answers = {}
        for value in ("bytes", "object", "huge", "refuse-huge"):
            async with session.post(
                url, json={"kind": "name", "value": value}, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as response:
                answers[value] = (response.status, len(await response.read()), await response.json())
        await probe.subscribe("wmcareless/#")
        await listening_to(rig.hub, "careless-C0001")
        mqtt = await probe.request(
            "wmcareless/hubs/careless/response/set",
            "wmcareless/devices/careless-C0001/channels/1/set",
            {"name": "bytes"},
        )
    for value in ("bytes", "object"):
        status, _, body = answers[value]
        assert status == 502 and body["code"] == "plugin_error" and "plugin careless" in body["error"], body
    status, size, body = answers["huge"]
    assert status == 200 and body["value"] == "V" * 255 and size < 2_000, body  # the family's text width
    status, size, body = answers["refuse-huge"]
    assert status == 502 and body["code"] == "refused" and len(body["error"]) == 300 and size < 2_000
    assert mqtt["status"] == "error" and "plugin careless" in str(mqtt), mqtt
    assert max(len(record.getMessage()) for record in caplog.records) < 2_000
    record_check(
        AREA,
        'Driver.apply answers CommandResult(value=b"\\xff\\x00") or value=object(), a 5 MB value, or raises '
        'RefusedError("E" * 5_000_000)',
        "REST 502 plugin_error naming the plugin and an MQTT error answer for the values no edge can write; the "
        "5 MB value cut to the family's text width, the refusal to 300 characters, in answers and the log",
    )


async def test_a_merge_of_held_meters_writing_state_fields_keeps_only_its_meter_fields(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A defer_meters merge that wrote a name was stored silently: the name flipped between the state the
    driver reported and the one merged when the hub looked."""
    caplog.set_level(logging.WARNING)
    async with careless_hub(tmp_path) as rig, aiohttp.ClientSession() as session:
        rig.careless.send({"channel": 1, "fields": {"name": "Lead"}})
        for level in (-50.0, -51.0):  # merged at two looks: the second refusal only counted
            rig.careless.send({"held": {"name": "FROM-MERGE", "rf_dbm": level}})
            await eventually(lambda level=level: rig.careless_channel().rf_dbm == level, what="the merged level")
        channel = await get_json(session, f"{rig.http}/api/v1/channels/careless-C0001:1")
        protocol_errors = rig.managed("careless").handle.protocol_errors
    assert (channel["name"], channel["rf_dbm"]) == ("Lead", -51.0), channel
    assert protocol_errors == 2
    warnings = [r.getMessage() for r in caplog.records if "FROM-MERGE" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("plugin careless reported name = 'FROM-MERGE', not a meter")
    record_check(
        AREA,
        "a defer_meters merge writing {'name': 'FROM-MERGE', 'rf_dbm': -50}",
        "the level is merged, the name dropped: a protocol error of the device, one warning naming the plugin",
    )


async def test_a_driver_blocking_the_loop_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with careless_hub(tmp_path) as rig:
        rig.careless.send({"block_s": 0.3})

        def named() -> list[str]:
            return [r.getMessage() for r in caplog.records if "held the event loop" in r.getMessage()]

        messages = await eventually(named, what="the slow-call warning")
        assert "plugin careless" in messages[0] and "Driver.run" in messages[0]
    record_check(
        AREA,
        "a driver's run() calls time.sleep(0.3) (blocks the event loop)",
        "warning naming plugin careless and Driver.run with the time held (every call into a plugin is timed "
        "per step; over 100 ms is named, at most once a minute per plugin and hook)",
    )


async def test_a_driver_blocking_the_loop_from_a_callback_of_its_own_is_shown_where_it_holds_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit (a stranger's plugin): a driver parsing in its own reader task or protocol callback held
    the loop most of the time, and the hub's "not keeping up" warning promised a warning naming the plugin that
    never came (the hub times the calls it makes into a plugin, not the callbacks a plugin schedules)."""
    caplog.set_level(logging.WARNING)
    shown_where = re.compile(r"its thread was most often at tests/test_faults_plugins\.py:\d+ in parse_heavily ")
    async with careless_hub(tmp_path) as rig:
        rig.hub.loop_monitor.warn_every_s = 0  # every late tick says so: one from the machine's load is no answer
        rig.careless.send({"callback_block_s": 0.4})

        def shown() -> list[str]:
            return [r.getMessage() for r in caplog.records if shown_where.search(r.getMessage())]

        warning = (await eventually(shown, what="the not-keeping-up warning saying where"))[0]
    record_check(
        AREA,
        "a driver's own loop callback calls time.sleep(0.4) (no hook call of the hub's)",
        f"the not-keeping-up warning says where the loop's thread was: {warning!r}",
    )


def plugins_listing(env: dict[str, str]) -> tuple[dict[str, Any], str]:
    """``wmhub plugins --json`` as a child process (a coroutine never awaited is an error there): the plugins by
    name, and what it logged."""
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "hub.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1, result.stderr  # each test's plugin has an error: the listing fails
    return {plugin["name"]: plugin for plugin in json.loads(result.stdout)}, result.stderr


def test_register_drivers_returning_a_coroutine_is_a_plugin_error_shown_by_wmhub_plugins(tmp_path: Path) -> None:
    (tmp_path / "wmhub_async.py").write_text(
        "from hub import hookimpl\n\n@hookimpl\nasync def register_drivers(register):\n    pass\n"
    )
    info = tmp_path / "wmhub_async-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wmhub-async\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[wmhub]\nasyncreg = wmhub_async\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    listing, logged = plugins_listing(env)
    assert "register_drivers" in listing["asyncreg"]["error"] and "coroutine" in listing["asyncreg"]["error"]
    assert listing["shure"]["error"] is None
    assert "never awaited" not in logged
    record_check(
        AREA,
        "register_drivers written as `async def` (returns a coroutine)",
        "a plugin error on that plugin ('register_drivers: TypeError: ... returned coroutine'), shown by "
        "`wmhub plugins`; no 'never awaited' warning; the other plugins load",
    )


def stranger_distribution(root: Path, name: str, module: str, entry_points: str | None = None) -> dict[str, str]:
    """A third party's plugin distribution wmhub-``name`` on the path (module source ``module``, its entry points
    ``<name> = wmhub_<name>`` unless given); the environment to find it, ahead of the installed plugins."""
    (root / f"wmhub_{name}.py").write_text(module)
    info = root / f"wmhub_{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: wmhub-{name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[wmhub]\n{entry_points or f'{name} = wmhub_{name}'}\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))


def stranger_hub_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, module: str, settings: str, mqtt: str = 'url = "off"'
) -> tuple[Path, int]:
    """wmhub-``name`` (module source ``module``) on the path, and a hub configuration using it: hub id ``name``, its
    data in tmp_path/data, ``settings`` (top-level TOML lines), ``mqtt`` (the [mqtt] table's lines), the API token,
    no discovery. The configuration's path and the hub's HTTP port."""
    monkeypatch.setenv("PYTHONPATH", stranger_distribution(tmp_path, name, module)["PYTHONPATH"])
    port = free_port()
    config = tmp_path / "wmhub.toml"
    config.write_text(
        f'hub_id = "{name}"\ndata_dir = "{tmp_path / "data"}"\n{settings}\n[mqtt]\n{mqtt}\n'
        f'[http]\nport = {port}\ntoken = "{TOKEN}"\n[discovery]\nenabled = false\n',
        encoding="utf-8",
    )
    return config, port


def test_driver_specs_that_would_break_topics_or_text_are_refused_by_wmhub_plugins(tmp_path: Path) -> None:
    """A vendor with '/', '+' or '#' would start every device id and so every MQTT topic of its devices (paho
    refuses such a topic, and the hub's connection went down with it); a negative text width would cut every
    device string from the wrong end; a discovery loop that is no function failed only at run time."""
    env = stranger_distribution(
        tmp_path,
        "odd",
        "from hub import hookimpl\nfrom hub.hookspecs import DriverSpec\n\n"
        "def factory(*args):\n    raise AssertionError('never built')\n\n"
        "@hookimpl\ndef register_drivers(register):\n"
        "    register(DriverSpec(scheme='odd-wild', vendor='ev il/#+x', families=('x',), factory=factory))\n"
        "    register(DriverSpec(scheme='odd-narrow', vendor='odd', families=('x',), factory=factory, text_width=-5))\n"
        "    register(DriverSpec(scheme='Odd-Upper', vendor='odd', families=('x',), factory=factory))\n"
        "    register(DriverSpec(scheme='odd-none', vendor='odd', families=('x',), factory=factory, descriptors=0))\n\n"
        "@hookimpl\ndef register_discovery_loops(register):\n    register('not a function')\n",
    )
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "plugins", "--json"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 1, result.stderr  # a plugin with an error fails the listing
    odd = next(plugin for plugin in json.loads(result.stdout) if plugin["name"] == "odd")
    assert "vendor 'ev il/#+x' must be lowercase letters, digits, _ and -" in odd["error"]
    assert [driver["scheme"] for driver in odd["drivers"]] == ["odd-upper"]  # schemes compare lowercased
    errors = result.stderr
    assert "text_width -5 must be a whole number of at least 1" in errors
    assert "descriptors 0 must be a whole number of at least 1" in errors
    assert "register_discovery_loops: TypeError: not a function: 'not a function'" in errors
    record_check(
        AREA,
        "a DriverSpec whose vendor holds '/', '+', '#' or a space, a negative text_width, a discovery loop "
        "that is no function, an upper-case scheme",
        "refused at registration with what is wrong, shown by `wmhub plugins` (the scheme lowercased)",
    )


STUBBORN_PLUGIN = """
import asyncio

from hub import hookimpl
from hub.drivers import Driver
from hub.hookspecs import DriverSpec


class Stubborn(Driver):
    async def connect(self):
        self.sink.identify(unique_id="box", family="stubborn", model="S-1", channel_count=1)

    async def run(self):
        await asyncio.Event().wait()

    async def close(self):
        pass

    async def apply(self, command):
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # and carries on waiting, as careless code does


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="stubborn", vendor="stubborn", families=("s",), factory=Stubborn, default_port=1))
"""


async def test_an_apply_that_ignores_cancellation_is_answered_504_and_the_hub_still_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, port = stranger_hub_config(
        tmp_path, monkeypatch, "stubborn", STUBBORN_PLUGIN, 'devices = ["stubborn://box"]\ncommand_timeout_s = 1.0'
    )
    base = f"http://127.0.0.1:{port}"
    with hub_process(config, tmp_path / "hub.log") as hub:
        hub.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await devices_online(session, base, 1)
            started = time.monotonic()
            async with session.post(
                f"{base}/api/v1/channels/stubborn-box:1/commands",
                json={"kind": "mute", "value": True},
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as response:
                status, answered_s = response.status, time.monotonic() - started
        hub.signal(signal.SIGTERM)
        code = await hub.exited(20)
    record_check(
        AREA,
        "a driver's apply that catches CancelledError and keeps waiting",
        f"answered {status} after {answered_s:.1f} s (command_timeout_s = 1); SIGTERM: the hub exited ({code})",
    )
    assert status == 504
    assert code == 0
    assert "ignore cancellation" in (tmp_path / "hub.log").read_text()


STUCK_PLUGIN = """
import asyncio

from hub import hookimpl
from hub.drivers import PollingDriver
from hub.hookspecs import DriverSpec


async def keep_talking(sink):
    while True:
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            pass  # and carries on, as careless code does
        sink.heard()


class Stuck(PollingDriver):
    # the device's host name says where its driver ignores cancellation: connect, poll or close
    async def connect(self):
        if self.endpoint.host == "connect":
            await keep_talking(self.sink)
        self.sink.identify(unique_id=self.endpoint.host, family="stuck", model="S-1", channel_count=1)

    async def poll(self):
        self.sink.heard()
        if self.endpoint.host == "poll":
            await keep_talking(self.sink)

    async def close(self):
        if self.endpoint.host == "close":
            await keep_talking(self.sink)


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="stuck", vendor="stuck", families=("stuck",), factory=Stuck, default_port=1))
"""


async def test_a_driver_ignoring_cancellation_in_connect_run_or_close_is_left_behind_and_the_hub_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mqtt_broker: TestBroker
) -> None:
    """A driver whose connect, poll or close catches CancelledError and carries on kept `wmhub run` from
    stopping: Ctrl-C and SIGTERM left it running until SIGKILL, with no MQTT 'offline' and no clean database."""
    config, port = stranger_hub_config(
        tmp_path,
        monkeypatch,
        "stuck",
        STUCK_PLUGIN,
        'devices = ["stuck://connect", "stuck://poll", "stuck://close"]\nio_timeout_s = 2.0',
        f'url = "{mqtt_broker.url}"\nbase_topic = "stuck"\nhomeassistant = false',
    )
    data_dir = tmp_path / "data"
    with hub_process(config, tmp_path / "hub.log") as hub:
        hub.start()
        async with aiohttp.ClientSession() as session, MqttProbe(mqtt_broker) as probe:
            await probe.subscribe("stuck/#")
            await devices_online(session, f"http://127.0.0.1:{port}", 2)
            await probe.json("stuck/hubs/stuck/state", lambda value: value["state"] == "online")
            signalled = time.monotonic()
            hub.signal(signal.SIGTERM)
            code = await hub.exited(20)
            stopped_s = time.monotonic() - signalled
            await probe.json("stuck/hubs/stuck/state", lambda value: value["state"] == "offline")
            await probe.message("stuck/devices/stuck-poll/availability", lambda payload: payload == b"offline")
    logged = (tmp_path / "hub.log").read_text()
    record_check(
        AREA,
        "a driver whose connect, poll or close catches CancelledError and carries on; SIGTERM",
        f"the hub exited {code} after {stopped_s:.1f} s: each such call given 1 s after its cancellation, then "
        "left behind with an error naming the plugin and the call; MQTT offline published, the database closed "
        f"({database_integrity(data_dir)})",
    )
    assert code == 0
    for call in ("Driver.connect", "Driver.run", "Driver.close"):
        assert f"plugin stuck: {call} went on after being cancelled" in logged, logged
    assert "given up on still running (they ignore cancellation)" in logged
    assert database_integrity(data_dir) == "ok" and not [p for p in data_dir.glob("*-wal") if p.stat().st_size]


WEDGED_PLUGIN = """
import logging
import time

from hub import hookimpl
from hub.drivers import PollingDriver
from hub.hookspecs import DriverSpec


class Wedged(PollingDriver):
    async def connect(self):
        self.sink.identify(unique_id="box", family="wedged", model="W-1", channel_count=1)

    async def poll(self):
        self.sink.heard()

    async def close(self):
        logging.getLogger("wmhub_wedged").warning("letting the box go")
        time.sleep(3600)  # a blocking library call: the event loop stands still, cancellation never arrives


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="wedged", vendor="wedged", families=("wedged",), factory=Wedged, default_port=1))
"""


@asynccontextmanager
async def wedged_at_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HubProcess]:
    """`wmhub run` with the embedded broker (as the demo runs) and a driver whose close blocks the event loop,
    sent SIGTERM and stuck in that close when handed over."""
    config, port = stranger_hub_config(
        tmp_path,
        monkeypatch,
        "wedged",
        WEDGED_PLUGIN,
        'devices = ["wedged://box"]',
        f'url = "embedded"\nembedded_port = {free_port()}\nhomeassistant = false',
    )
    with hub_process(config, tmp_path / "hub.log") as hub:
        hub.start()
        async with aiohttp.ClientSession() as session:
            await devices_online(session, f"http://127.0.0.1:{port}", 1)
        hub.signal(signal.SIGTERM)
        await eventually(lambda: "letting the box go" in hub.log.read_text(), 10, "the driver's close under way")
        yield hub


def stop_lines(hub: HubProcess) -> list[str]:
    return [
        message
        for line in hub.log.read_text().splitlines()
        if "the stop unfinished" in (message := orjson.loads(line)["message"])
    ]


async def test_a_second_signal_ends_a_stop_that_plugin_code_holds_at_once_saying_what_was_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver's close blocking the event loop held `wmhub run` in its stop for good: a second Ctrl-C did
    nothing (the loop that would have run its handler stood still), only SIGKILL ended it."""
    async with wedged_at_stop(tmp_path, monkeypatch) as hub:
        signalled = time.monotonic()
        hub.signal(signal.SIGINT)
        code = await hub.exited(5)
        exited_s = time.monotonic() - signalled
    record_check(
        AREA,
        "a driver's close blocks the event loop during the stop; a second signal",
        f"SIGTERM, then SIGINT: exited {code} after {exited_s:.2f} s, saying {stop_lines(hub)}",
    )
    assert code == EXIT_FAILED
    assert stop_lines(hub) == [
        "SIGINT while stopping: exiting now, the stop unfinished (still stopping the devices' drivers: wedged://box)"
    ]


async def test_a_stop_that_plugin_code_holds_ends_at_the_deadline_saying_what_was_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no second signal, the same stop ran until systemd's SIGKILL (TimeoutStopSec) ended it without a word."""
    async with wedged_at_stop(tmp_path, monkeypatch) as hub:
        code = await hub.exited(STOP_DEADLINE_S + 10)
    record_check(
        AREA,
        "a driver's close blocks the event loop during the stop; no second signal",
        f"SIGTERM: exited {code} at the stop's bound, saying {stop_lines(hub)}",
    )
    assert code == EXIT_FAILED
    assert stop_lines(hub) == [
        f"the stop did not finish within {STOP_DEADLINE_S:g} s: exiting now, the stop unfinished "
        "(still stopping the devices' drivers: wedged://box)"
    ]


HOLDING_PLUGIN = WEDGED_PLUGIN.replace("import logging\n", "import logging\nimport os\n").replace(
    """    async def poll(self):
        self.sink.heard()
""",
    """    async def poll(self):
        self.sink.heard()
        if os.path.exists(HOLD_FLAG):
            logging.getLogger("wmhub_wedged").warning("holding the loop")
            time.sleep(3600)  # a blocking library call: the event loop never turns again (nor close runs)
""",
)


@asynccontextmanager
async def hub_held_by_plugin_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HubProcess]:
    """`wmhub run` whose one device is online and whose driver's poll then holds the event loop for good."""
    assert "HOLD_FLAG" in HOLDING_PLUGIN and "import os" in HOLDING_PLUGIN
    flag = tmp_path / "hold"
    config, port = stranger_hub_config(
        tmp_path,
        monkeypatch,
        "holding",
        HOLDING_PLUGIN.replace("HOLD_FLAG", repr(str(flag))),
        'devices = ["wedged://box"]',
    )
    with hub_process(config, tmp_path / "hub.log") as hub:
        hub.start()
        async with aiohttp.ClientSession() as session:
            await devices_online(session, f"http://127.0.0.1:{port}", 1)
        flag.touch()
        await eventually(lambda: "holding the loop" in hub.log.read_text(), 10, "the poll holding the loop")
        yield hub


def messages_of(hub: HubProcess) -> list[str]:
    return [orjson.loads(line)["message"] for line in hub.log.read_text().splitlines()]


async def test_a_stop_signal_while_plugin_code_holds_the_loop_for_good_ends_the_hub_at_the_bound_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver's poll that never returned to the event loop: SIGTERM (and Ctrl-C) went unheard, only SIGKILL
    ended the hub, and nothing in its log said what held it."""
    async with hub_held_by_plugin_code(tmp_path, monkeypatch) as hub:
        hub.signal(signal.SIGTERM)
        code = await hub.exited(STOP_DEADLINE_S + 10)
    messages = messages_of(hub)
    record_check(
        AREA,
        "a driver's poll holds the event loop for good; SIGTERM",
        f"exited {code} at the stop's bound, saying {stop_lines(hub)}",
    )
    assert code == EXIT_FAILED
    held_at = r"\S*wmhub_holding\.py:\d+ in poll"
    assert [m for m in messages if "has not turned" in m and re.search(f"held at {held_at}", m)], messages
    [line] = stop_lines(hub)
    assert re.fullmatch(
        rf"the stop did not finish within {STOP_DEADLINE_S:g} s: exiting now, the stop unfinished \(still stopping "
        rf"nothing: the stop never began, the event loop's thread held for \d+ s at {held_at}\)",
        line,
    ), line


async def signalled_until_ended(hub: HubProcess, signum: int, timeout: float) -> int:
    """Send ``signum`` until the hub ends (two sent at once may be heard as one); its exit status."""
    assert hub.process is not None
    deadline = time.monotonic() + timeout
    while (code := hub.process.poll()) is None:
        assert time.monotonic() < deadline, f"hub still running after {timeout} s; log:\n{hub.log.read_text()}"
        hub.signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(hub.process.wait, 0.2)
    return code


async def test_a_second_signal_soon_after_plugin_code_holds_the_loop_names_that_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outside review: Ctrl-C twice while a driver's poll blocked the event loop, before the hold was 10 s old
    (and said), exited naming `hub/lag.py:… in where_held`: the second signal's handler runs on the loop's own
    thread, and the exit line read that thread's stack, the handler's own frames."""
    async with hub_held_by_plugin_code(tmp_path, monkeypatch) as hub:
        held_at = time.monotonic()
        code = await signalled_until_ended(hub, signal.SIGINT, 5)
        ended_after_s = time.monotonic() - held_at
    assert code == EXIT_FAILED
    assert ended_after_s < HELD_AFTER_S  # the hold was never said: the line cannot take its place from the watch
    [line] = stop_lines(hub)
    assert re.fullmatch(
        r"SIGINT while stopping: exiting now, the stop unfinished \(still stopping nothing: the stop never began, "
        r"the event loop's thread at \S*wmhub_holding\.py:\d+ in poll\)",
        line,
    ), line


TICKING_PLUGIN = """
import asyncio
import logging

from hub import hookimpl


class SlowFleet:
    async def start(self):
        await asyncio.sleep(START_S)  # a fleet slow to start, awaiting: the event loop turns all along
        return []

    async def stop(self):
        pass


async def tick():
    while True:
        logging.getLogger("wmhub_ticking").warning("tick")
        await asyncio.sleep(0.2)


class TickingFleet:
    async def start(self):
        self.ticking = asyncio.get_running_loop().create_task(tick())
        return []

    async def stop(self):
        self.ticking.cancel()


@hookimpl
def register_simulators(register):
    register(SlowFleet())
    register(SlowFleet())
    register(TickingFleet())
"""


def ticks_after(messages: list[str], marker: str) -> int:
    """How many times the ticking fleet's task said so after the first message containing ``marker``."""
    start = next((index for index, message in enumerate(messages) if marker in message), len(messages))
    return messages[start:].count("tick")


def loop_warnings(messages: list[str]) -> list[str]:
    """The warnings of the loop held, or over a second late (a loaded test machine makes it late by less)."""
    return [
        message
        for message in messages
        if "has not turned" in message
        or "turns again" in message
        or ((late := re.search(r"not keeping up: its event loop runs (\d+) ms late", message)) and int(late[1]) >= 1000)
    ]


async def test_a_start_that_only_awaits_for_longer_than_a_hold_is_not_taken_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outside review: a start awaiting over 10 s in all (two demo fleets of 5.5 s each, within their bound; a
    slow database) was followed by "the event loop has not turned for 12 s, held at uvloop/__init__.py:92 in run":
    the watch measured from the hub's construction, not from the start of its watching."""
    start_s = HELD_AFTER_S / 2 + 0.5
    config, _ = stranger_hub_config(
        tmp_path, monkeypatch, "ticking", TICKING_PLUGIN.replace("START_S", repr(start_s)), "demo = true"
    )
    with hub_process(config, tmp_path / "hub.log", env={"WMHUB_LOAD_PLUGINS": "ticking"}) as hub:
        hub.start()
        await eventually(lambda: "started with" in hub.log.read_text(), 2 * start_s + 60, "the hub's start")
        # the loop has turned for 0.2 s since: the watch, which looks 50 ms after its start, has looked
        await eventually(lambda: ticks_after(messages_of(hub), "started with") >= 2, 10, "the loop turning after")
        hub.signal(signal.SIGTERM)
        assert await hub.exited(15) == 0
    messages = messages_of(hub)
    assert not loop_warnings(messages), messages


async def test_a_hub_stopped_and_continued_blames_no_held_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An outside review: a hub stopped by Ctrl-Z (SIGSTOP, `docker pause`) for 12 s and continued logged "the event
    loop has not turned for 12 s, held at uvloop/__init__.py:92 in run … (plugin code must await I/O, never
    block)" and "the hub is not keeping up … 11805 ms late … most often at uvloop/__init__.py:92 in run": the
    watch, stopped with the loop, took the whole process's stop for plugin code holding the loop."""
    config, _ = stranger_hub_config(
        tmp_path, monkeypatch, "ticking", TICKING_PLUGIN.replace("START_S", "0"), "demo = true"
    )
    with hub_process(config, tmp_path / "hub.log", env={"WMHUB_LOAD_PLUGINS": "ticking"}) as hub:
        hub.start()
        await eventually(lambda: "started with" in hub.log.read_text(), 60, "the hub's start")
        await eventually(lambda: ticks_after(messages_of(hub), "started with") >= 1, 10, "the loop turning")
        hub.signal(signal.SIGSTOP)
        await asyncio.sleep(HELD_AFTER_S + 1)  # the stop itself, longer than a hold the watch names
        hub.signal(signal.SIGCONT)
        await eventually(
            lambda: "did not run for" in hub.log.read_text() or loop_warnings(messages_of(hub)), 10, "the stop said"
        )
        assert not loop_warnings(messages_of(hub)), messages_of(hub)
        # the loop has turned for 0.2 s since: its monitor's overdue tick and the watch's look are both behind
        await eventually(lambda: ticks_after(messages_of(hub), "did not run for") >= 2, 10, "the loop turning after")
        hub.signal(signal.SIGTERM)
        assert await hub.exited(15) == 0
    messages = messages_of(hub)
    assert not loop_warnings(messages), messages
    [stopped] = [m for m in messages if "did not run for" in m]
    assert re.fullmatch(
        r"the hub's process did not run for 1\d s \(stopped: Ctrl-Z, SIGSTOP, docker pause\): devices, MQTT and "
        r"the web server waited meanwhile",
        stopped,
    ), stopped


STUBBORN_FLEET_PLUGIN = """
import asyncio
import logging

from hub import hookimpl


class StubbornFleet:
    async def start(self):
        logging.getLogger("wmhub_stubborn").warning("starting the simulators")
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                logging.getLogger("wmhub_stubborn").warning("not stopping yet")

    async def stop(self):
        pass


@hookimpl
def register_simulators(register):
    register(StubbornFleet())
"""


async def test_a_stop_held_before_its_first_step_is_not_said_to_be_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A demo hub whose event loop was too busy to get from "shutting down" to its stop's first step ended at the
    bound saying it was still stopping "the event loop's end", as if the stop had finished: the database and
    everything else were still open."""
    config, _ = stranger_hub_config(
        tmp_path, monkeypatch, "stubborn", STUBBORN_FLEET_PLUGIN, "demo = true", 'url = "off"'
    )
    with hub_process(config, tmp_path / "hub.log") as hub:
        hub.start()
        await eventually(lambda: "starting the simulators" in hub.log.read_text(), 20, "the fleet's start")
        hub.signal(signal.SIGTERM)
        # the start, cancelled, waits for the fleet (which goes on for a while): the stop has not begun its steps
        await eventually(lambda: "not stopping yet" in hub.log.read_text(), 10, "the fleet's start cancelled")
        hub.signal(signal.SIGINT)
        code = await hub.exited(5)
    assert code == EXIT_FAILED
    assert stop_lines(hub) == [
        "SIGINT while stopping: exiting now, the stop unfinished (still stopping its beginning: the hub's start ending)"
    ]


CHATTY_PLUGIN = WEDGED_PLUGIN.replace(
    """        time.sleep(3600)  # a blocking library call: the event loop stands still, cancellation never arrives""",
    """        while True:  # the event loop stands still, and once stderr's pipe is full so does this write
            logging.getLogger("wmhub_wedged").warning("still letting go " + "x" * 1000)""",
)


async def test_the_stop_bound_ends_the_hub_while_a_plugin_stands_writing_to_a_full_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A security audit (in theory): the bound's thread logged its line before ending the process, through the
    log handler, whose lock the event loop's thread held, stuck writing to a stderr pipe no one read: the bound
    never ended the stop. Here a driver's close logs without end and stderr is never read."""
    assert CHATTY_PLUGIN != WEDGED_PLUGIN
    config, port = stranger_hub_config(
        tmp_path, monkeypatch, "wedged", CHATTY_PLUGIN, 'devices = ["wedged://box"]', 'url = "off"'
    )
    environ = {key: value for key, value in os.environ.items() if not key.startswith("WMHUB_")}
    unread, stderr = os.pipe()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=stderr, env=environ,
    )  # fmt: skip
    os.close(stderr)
    try:
        async with aiohttp.ClientSession() as session:
            await devices_online(session, f"http://127.0.0.1:{port}", 1)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.wait_for(process.wait(), STOP_DEADLINE_S + 10)
        exited_s = time.monotonic() - signalled
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(unread)
    record_check(
        AREA,
        "a driver's close logs without end during the stop, stderr a pipe no one reads",
        f"SIGTERM: exited {process.returncode} after {exited_s:.1f} s",
    )
    assert process.returncode == EXIT_FAILED and exited_s < STOP_DEADLINE_S + 5


FLEET_PLUGIN = """
import asyncio

from hub import hookimpl
from hub.drivers import Driver
from hub.hookspecs import DriverSpec


class Box(Driver):
    async def connect(self):
        self.sink.identify(unique_id=self.endpoint.host, family="box", model="B-1", channel_count=1)

    async def run(self):
        while True:
            self.sink.heard()
            await asyncio.sleep(0.2)

    async def close(self):
        pass


class EndlessFleet:
    async def start(self):
        await asyncio.Event().wait()

    async def stop(self):
        pass


class GarbageFleet:
    async def start(self):
        return ["not a url", 42, "fleety://good"]

    async def stop(self):
        pass


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="fleety", vendor="fleety", families=("box",), factory=Box, default_port=1))


@hookimpl
def register_simulators(register):
    register(EndlessFleet())
    register(GarbageFleet())
"""


async def test_demo_fleets_that_never_start_or_return_garbage_are_named_and_the_demo_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wmhub run --demo` exited 1 when a fleet's start() returned "not a url", and never served REST, naming
    nothing, when a start() never returned."""
    config, port = stranger_hub_config(tmp_path, monkeypatch, "fleety", FLEET_PLUGIN, "demo = true")
    base = f"http://127.0.0.1:{port}"
    with hub_process(config, tmp_path / "hub.log") as hub:
        hub.start()
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            while "fleety-good" not in (ids := {item["id"] for item in await devices_online(session, base, 2, 40)}):
                assert time.monotonic() - started < 40, ids
                await asyncio.sleep(0.1)
            up_s = time.monotonic() - started
        hub.signal(signal.SIGTERM)
        code = await hub.exited(20)
    logged = (tmp_path / "hub.log").read_text()
    record_check(
        AREA,
        'demo fleets whose start() never returns, or returns ["not a url", 42, "fleety://good"]',
        f"the demo served REST after {up_s:.0f} s with the other plugins' devices and fleety://good; the endless "
        "start() given up on after 10 s and the two unusable entries left out, each logged naming the plugin; "
        f"SIGTERM: exit {code}",
    )
    assert any(device_id.startswith("shure-") for device_id in ids), ids
    assert "demo simulators of plugin fleety failed to start: plugin fleety did not answer DemoFleet.start" in logged
    assert "demo device 'not a url' of plugin fleety left out: no plugin handles 'not a url'" in logged
    assert "demo device 42 of plugin fleety left out: not text" in logged
    assert code == 0


CHECK_URL_BUG_PLUGIN = """
from hub import hookimpl
from hub.hookspecs import DriverSpec
from hub.testing import QuietDriver


class Quiet(QuietDriver):
    async def connect(self):
        self.sink.identify(unique_id=self.endpoint.host, family="x", model="X", channel_count=1)


def check(endpoint):
    {"known": 1}[endpoint.options.get("mode", "known")]  # the bug: a KeyError for any other mode


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="checky", vendor="checky", families=("x",), factory=Quiet, default_port=1,
                        check_url=check))
"""


async def test_a_bug_in_check_url_refuses_that_url_naming_the_plugin_and_the_hub_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyError in a DriverSpec.check_url escaped: `wmhub run` and `wmhub run --check` died with a traceback
    (exit 1) whatever else was configured, and REST POST /api/v1/devices answered 500 "internal error"."""
    config, port = stranger_hub_config(
        tmp_path,
        monkeypatch,
        "checky",
        CHECK_URL_BUG_PLUGIN,
        'devices = ["checky://127.0.0.1", "checky://127.0.0.2?mode=other"]',
    )
    said = "plugin checky failed in DriverSpec.check_url on checky://127.0.0.2?mode=other: KeyError: 'other'"
    checking = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "run", "--config", str(config), "--check",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = (text.decode() for text in await asyncio.wait_for(checking.communicate(), 60))
    assert checking.returncode == 0 and "configuration ok" in out, err
    assert said in err, err
    log = tmp_path / "hub.log"
    with hub_process(config, log) as hub:
        hub.start()
        async with Api(port) as api:

            async def good_device_watched() -> bool:
                connections = (await api.get("/api/health"))["connections"]
                return [item["url"] for item in connections] == ["checky://127.0.0.1"]

            await until(good_device_watched, 20, "the hub running with the configured device it could take")
            status, refused = await api.post("/api/v1/devices", {"url": "checky://127.0.0.3?mode=other"})
            added, _ = await api.post("/api/v1/devices", {"url": "checky://127.0.0.4"})
            urls = sorted(item["url"] for item in (await api.get("/api/health"))["connections"])
        hub.signal(signal.SIGTERM)
        assert await hub.exited(20) == 0
    record_check(
        AREA,
        "DriverSpec.check_url raising KeyError for one configured URL, then for one added over REST",
        f"the hub starts with the other device, logging '{said}' (with the traceback); "
        f"`wmhub run --check` says so and exits 0; REST answers {status} {refused['code']}: {refused['error']}",
    )
    assert status == 502 and refused["code"] == "plugin_error", refused
    assert refused["error"] == said.replace("127.0.0.2", "127.0.0.3"), refused
    assert added == 201 and urls == ["checky://127.0.0.1", "checky://127.0.0.4"], (added, urls)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["level"] == "error"]
    assert [line["message"] for line in errors if line["message"].startswith(said)] == [
        f"{said} (a bug of the plugin: this URL is refused)"
    ], errors
    assert any('{"known": 1}[' in line.get("exception", "") for line in errors), errors
    assert any(
        line["message"] == f"configured device 'checky://127.0.0.2?mode=other' left out: {said}" for line in errors
    )
    assert all("Traceback" not in line["message"] for line in lines)


FAILED_START = """
import asyncio, sys, threading
from hub import hookimpl
from hub.compose import compose_hub
from hub.config import HubConfig
from hub.drivers import EndpointError
from hub.hookspecs import DriverSpec
from hub.plugins import PluginHost
from hub.testing import QuietDriver


def strict(endpoint):
    if endpoint.options:
        raise EndpointError("takes no options")


class Plugin:
    @hookimpl
    def register_drivers(self, register):
        register(DriverSpec(scheme="strict", vendor="strict", families=("x",), factory=QuietDriver,
                            default_port=1, check_url=strict))


async def main():
    host = PluginHost()
    host.load_entry_points(only="")
    host.register(Plugin(), "strict")
    config = HubConfig(hub_id="strict", data_dir=sys.argv[1], devices=["strict://127.0.0.1?x=1"],
                       mqtt={"url": "off"}, http={"host": "127.0.0.1", "port": 0}, discovery={"enabled": False})
    try:
        async with compose_hub(config, host):
            print("started", flush=True)
    except EndpointError as error:
        print("refused:", error, flush=True)


asyncio.run(main())
# a closed database's worker thread ends a moment after the close returns (on a loaded machine, later)
others = [t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
for thread in others:
    thread.join(10)
print("threads left:", [t.name for t in others if t.is_alive()], flush=True)
"""


def test_a_hub_that_fails_to_start_in_a_plugins_test_closes_what_it_opened_and_the_process_exits(
    tmp_path: Path,
) -> None:
    """`async with compose_hub(...)` whose start failed (here for a documented reason: a configured URL its
    plugin's check_url refuses) left the database open: its worker thread kept the process alive for ever, and
    a plugin's test run hung instead of reporting the failure."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", FAILED_START, str(tmp_path / "data")], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the process did not exit 60 s after the hub failed to start: {expired.stdout!r}")
    record_check(
        AREA,
        "`async with compose_hub(...)` whose start fails (a configured URL check_url refuses) in a plugin's test",
        "the start's error is raised, the database it opened is closed and the process exits",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["refused: takes no options", "threads left: []"], done.stdout


NUMBER_KEYS_PLUGIN = """
import json

from hub import hookimpl
from hub.hookspecs import DriverSpec
from hub.testing import QuietDriver


class Numbering(QuietDriver):
    async def connect(self):
        self.sink.remember({"kept": True})
        self.sink.remember({1: "A", 2: "B"})  # channel number -> label: json.dumps would write "1", "2"
        self.sink.identify(unique_id="m1", family="x", model="M", channel_count=1, name=json.dumps(self.sink.recall()))


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="numbering", vendor="numbering", families=("x",), factory=Numbering, default_port=1))
"""


PROTOCOL_ERRORS = "wmhub_device_protocol_errors_total{"


async def test_a_memory_with_number_keys_is_refused_and_what_was_kept_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sink.remember({1: "A"}) was kept as {"1": "A"} without a word: recall() handed the driver another shape
    than it gave (docs/plugins.md: dicts with text keys only, anything else refused like a wrong field)."""
    config, port = stranger_hub_config(
        tmp_path, monkeypatch, "numbering", NUMBER_KEYS_PLUGIN, 'devices = ["numbering://127.0.0.1"]'
    )
    log = tmp_path / "hub.log"
    with hub_process(config, log) as hub:
        hub.start()
        async with Api(port) as api:

            async def identified() -> bool:
                return bool((await api.get("/api/v1/devices"))["items"])

            await until(identified, 20, "the device identified")
            device = await api.get("/api/v1/devices/numbering-m1")
            async with api.session.get(f"{api.base}/metrics") as got:
                (counted,) = [line for line in (await got.text()).splitlines() if line.startswith(PROTOCOL_ERRORS)]
    record_check(
        AREA,
        "sink.remember({1: 'A', 2: 'B'}) after remember({'kept': True})",
        f"refused as a protocol error ({counted}), logged naming the plugin; recall() gives {device['name']}",
    )
    assert device["name"] == '{"kept": true}', device
    assert counted.endswith(" 1.0"), counted
    assert "plugin numbering reported memory = {1: 'A', 2: 'B'}, a dict key 1 is not text: not kept" in log.read_text()


BUGGY_PLUGIN = """
from hub import hookimpl
from hub.drivers import Driver
from hub.hookspecs import DriverSpec
from hub.model import DeviceUnavailableError


class Buggy(Driver):
    # the device's host name says what goes wrong: a bug in __init__ or in connect, or a receiver refusing
    def __init__(self, endpoint, sink, settings):
        super().__init__(endpoint, sink, settings)
        if endpoint.host == "init":
            raise RuntimeError("driver __init__ exploded")

    async def connect(self):
        if self.endpoint.host == "keyerror":
            {}["model"]  # a typical plugin bug
        if self.endpoint.host == "dropped":  # the link dropped under a command connect sends
            raise DeviceUnavailableError("not connected to dropped")
        raise ConnectionRefusedError("the receiver refused the connection")

    async def run(self):
        pass

    async def close(self):
        pass


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="buggy", vendor="buggy", families=("b",), factory=Buggy, default_port=1))
"""


async def test_a_bug_in_a_driver_is_logged_once_as_the_plugins_with_its_type_and_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyError in connect was logged as "device unavailable: buggy://keyerror: 'model'", a network problem's
    warning without type, traceback or plugin; one in the driver's __init__ as "...: the device: ..."."""
    config, port = stranger_hub_config(
        tmp_path,
        monkeypatch,
        "buggy",
        BUGGY_PLUGIN,
        'devices = ["buggy://keyerror", "buggy://init", "buggy://refused", "buggy://dropped"]',
    )
    with hub_process(config, tmp_path / "hub.log") as hub:
        hub.start()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
            while True:  # each device tried three times: a bug is logged once, not per retry
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/api/health") as response:
                        connections = {item["url"]: item for item in (await response.json())["connections"]}
                    if len(connections) == 4 and all(item["attempts"] >= 3 for item in connections.values()):
                        break
                await asyncio.sleep(0.1)
        hub.signal(signal.SIGTERM)
        await hub.exited(20)
    lines = [json.loads(line) for line in (tmp_path / "hub.log").read_text().splitlines() if line.startswith("{")]
    about = {url: [line for line in lines if line.get("device") == url] for url in connections}
    bugs = {url: [line for line in found if line["level"] == "error"] for url, found in about.items()}
    record_check(
        AREA,
        "a KeyError in Driver.connect, a RuntimeError in the driver's __init__, each failing on every retry",
        "one error each naming the plugin, the call and the exception's type, with its traceback: "
        + bugs["buggy://keyerror"][0]["message"]
        + "; a refused connection, and a DeviceUnavailableError from a command connect sends, stay one warning "
        "'device unavailable' without a traceback",
    )
    (keyerror,), (init,) = bugs["buggy://keyerror"], bugs["buggy://init"]
    assert "plugin buggy failed in Driver.connect: KeyError: 'model'" in keyerror["message"], keyerror
    assert "plugin buggy failed in DriverSpec.factory: RuntimeError: driver __init__ exploded" in init["message"]
    assert '{}["model"]' in keyerror["exception"] and "driver __init__ exploded" in init["exception"]
    assert connections["buggy://keyerror"]["last_error"] == "plugin buggy failed in Driver.connect: KeyError: 'model'"
    (refused,) = about["buggy://refused"]
    assert refused["level"] == "warning" and "exception" not in refused
    assert refused["message"] == "device unavailable: buggy://refused: the receiver refused the connection"
    (dropped,) = about["buggy://dropped"]
    assert dropped["level"] == "warning" and "exception" not in dropped
    assert dropped["message"] == "device unavailable: buggy://dropped: not connected to dropped"


IDENTIFY_PLUGIN = """
import asyncio

from hub import hookimpl
from hub.hookspecs import DiscoveredService, DriverSpec


def factory(*args):
    raise AssertionError("never built")


def garbage(service, settings):
    return "definitely a candidate"


def exploding(service, settings):
    raise RuntimeError("identify exploded")


async def announcements(report):
    for port in range(20000, 20040):  # forty receivers announcing themselves
        report(DiscoveredService(host="127.0.0.1", port=port, service_type="odd-announce"))
        await asyncio.sleep(0.01)
    await asyncio.Event().wait()


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="odd-garbage", vendor="odd", families=("o",), factory=factory, identify=garbage))
    register(DriverSpec(scheme="odd-raise", vendor="odd", families=("o",), factory=factory, identify=exploding))


@hookimpl
def register_discovery_loops(register):
    register(announcements)
"""


async def test_an_identify_answering_garbage_or_raising_is_named_in_one_warning_per_plugin_and_kind(
    tmp_path: Path,
) -> None:
    """identify returning a string was silently "not mine"; one raising RuntimeError only an info line per
    service offered, so nothing told the plugin's author."""
    env = stranger_distribution(tmp_path, "oddid", IDENTIFY_PLUGIN) | {"WMHUB_LOAD_PLUGINS": "oddid"}
    scan = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "discover", "--seconds", "2", "--json", "--interface", "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(scan.communicate(), 60)
    logged = stderr.decode()
    assert scan.returncode == 0 and json.loads(stdout) == [], logged
    garbage = "plugin oddid: DriverSpec.identify (odd-garbage) returned str, not a Candidate or None"
    raised = "plugin oddid failed in DriverSpec.identify (odd-raise) on "
    assert logged.count(garbage) == 1 and logged.count(raised) == 1, logged
    assert "RuntimeError: identify exploded" in logged and "Traceback" in logged
    record_check(
        AREA,
        "DriverSpec.identify returning a string, or raising RuntimeError, for each of 40 services announced",
        "one warning each naming the plugin and the identify (the raise with its type and traceback), not one per "
        "service; the services are left to the other plugins",
    )


UNSUPPORTED_PLUGIN = """
from hub import hookimpl
from hub.drivers import Driver, UnsupportedDeviceError
from hub.hookspecs import DriverSpec


class Picky(Driver):
    async def connect(self):
        self.sink.identify(unique_id="zz1", family=None, model="ZZ-9", channel_count=0)
        raise UnsupportedDeviceError("the ZZ-9 is not a receiver this plugin monitors")

    async def run(self):
        pass

    async def close(self):
        pass


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="picky", vendor="picky", families=("p",), factory=Picky, default_port=1))
"""


async def test_a_device_the_plugin_does_not_monitor_gets_no_home_assistant_controls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mqtt_broker: TestBroker
) -> None:
    """A device reported unsupported (channel_count=0, then UnsupportedDeviceError) got a receiver-name text
    entity and an identify button in Home Assistant, which could only ever answer 'not connected'. And before
    the hub learnt it was unsupported it was published online, with those controls, then taken back: at every
    retry (10 minutes) its availability flapped."""
    config, port = stranger_hub_config(
        tmp_path,
        monkeypatch,
        "picky",
        UNSUPPORTED_PLUGIN,
        'devices = ["picky://zz"]',
        f'url = "{mqtt_broker.url}"\nbase_topic = "picky"',
    )
    config_topic = "homeassistant/device/picky-zz1/config"
    with hub_process(config, tmp_path / "hub.log") as hub:
        async with MqttProbe(mqtt_broker) as probe, Api(port) as api:
            await probe.subscribe("homeassistant/device/#")
            await probe.subscribe("picky/devices/#")
            hub.start()

            async def said_unsupported() -> bool:
                connections = (await api.get("/api/health"))["connections"]
                return any("not a receiver this plugin monitors" in (c["last_error"] or "") for c in connections)

            await until(said_unsupported, 20, "the device reported unsupported over REST")
            # published in order: once the config with no controls is there, whatever came before it is too
            final = await probe.json(config_topic, lambda value: not _with_config(value["components"]) - {"online"})
            device = await probe.json("picky/devices/picky-zz1", lambda value: value.get("model") == "ZZ-9")
    configs = [orjson.loads(payload) for topic, payload in probe.messages if topic == config_topic and payload]
    with_controls = [sorted(_with_config(value["components"])) for value in configs]
    availability = [payload for topic, payload in probe.messages if topic == "picky/devices/picky-zz1/availability"]
    online = [
        payload
        for topic, payload in probe.messages
        if topic == "picky/devices/picky-zz1" and payload and orjson.loads(payload).get("online")
    ]
    record_check(
        AREA,
        "a device the plugin reports unsupported (identify with channel_count=0, then UnsupportedDeviceError)",
        f"its Home Assistant config only ever holds {sorted(_with_config(final['components']))}: no receiver-name "
        "or identify control that could only answer 'not connected'; never published online on MQTT",
    )
    assert with_controls == [["online"]] * len(configs), with_controls
    assert b"online" not in availability and not online, (availability, online)
    assert device["online"] is False and device["capabilities"]["commands"] == {}, device


SWAPPED_PLUGIN = """
import asyncio
from pathlib import Path

from hub import hookimpl
from hub.drivers import Driver, UnsupportedDeviceError
from hub.hookspecs import DriverSpec
from hub.model import Capabilities, CommandKind, CommandLimits

HERE = Path(__file__).parent  # the test's switches: the receiver answers, the receiver was swapped


class Swapped(Driver):
    async def connect(self):
        while not (HERE / "answering").exists():
            await asyncio.sleep(0.05)
        if (HERE / "swapped").exists():
            self.sink.identify(unique_id="zz1", family="p", model="ZZ-9", channel_count=0)
            raise UnsupportedDeviceError("the ZZ-9 is not a receiver this plugin monitors")
        self.sink.identify(unique_id="zz1", family="p", model="P-1", channel_count=1)

    async def run(self):
        while not (HERE / "swapped").exists():
            self.sink.heard()
            await asyncio.sleep(0.05)
        raise ConnectionError("the receiver went away")

    async def close(self):
        pass


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="swapped", vendor="swapped", families=("p",), factory=Swapped, default_port=1))


@hookimpl
def device_capabilities(family, model):
    return Capabilities(channel_fields=frozenset({"muted"}), commands={CommandKind.MUTE: CommandLimits()})
"""


async def test_a_device_found_unsupported_has_no_home_assistant_controls_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mqtt_broker: TestBroker
) -> None:
    """A known gap of the eleventh session: a receiver the hub had watched, replaced at its address by a model
    the plugin does not monitor, came back after a restart as it was last watched, with its family's controls
    in Home Assistant, until its first connect failed again. The hub remembers that it was unsupported: after
    a restart its first configuration already holds no control."""
    config, port = stranger_hub_config(
        tmp_path,
        monkeypatch,
        "swapped",
        SWAPPED_PLUGIN,
        'devices = ["swapped://zz"]',
        f'url = "{mqtt_broker.url}"\nbase_topic = "swapped"',
    )
    config_topic = "homeassistant/device/swapped-zz1/config"
    (tmp_path / "answering").touch()

    async def said_unsupported(api: Api) -> bool:
        connections = (await api.get("/api/health"))["connections"]
        return any("not a receiver this plugin monitors" in (c["last_error"] or "") for c in connections)

    with hub_process(config, tmp_path / "hub.log") as hub:
        async with MqttProbe(mqtt_broker) as probe, Api(port) as api:
            await probe.subscribe("homeassistant/device/#")
            hub.start()
            watched = await probe.json(config_topic, lambda value: "ch1_mute" in _with_config(value["components"]))
            (tmp_path / "swapped").touch()
            await until(lambda: said_unsupported(api), 20, "the swapped receiver reported unsupported")
            await probe.json(config_topic, lambda value: not _with_config(value["components"]) - {"online"})
            hub.signal(signal.SIGTERM)
            assert await hub.exited(30) == 0
            for retained in (config_topic, "swapped/devices/swapped-zz1"):  # what the second hub says, only
                probe.publish(retained, b"", retain=True)
    (tmp_path / "answering").unlink()  # the second hub's first publications come before any connect
    with hub_process(config, tmp_path / "hub.log") as hub:
        async with MqttProbe(mqtt_broker) as probe, Api(port) as api:
            await probe.subscribe("homeassistant/device/#")
            await probe.subscribe("swapped/devices/#")
            hub.start()
            first = await probe.json(config_topic)
            device = await probe.json("swapped/devices/swapped-zz1")
            (tmp_path / "answering").touch()
            await until(lambda: said_unsupported(api), 20, "the receiver reported unsupported again")
    configs = [orjson.loads(payload) for topic, payload in probe.messages if topic == config_topic and payload]
    assert "ch1_mute" in _with_config(watched["components"]), watched
    assert not _with_config(first["components"]) - {"online"}, first
    assert [sorted(_with_config(value["components"])) for value in configs] == [["online"]] * len(configs), configs
    assert device["model"] == "ZZ-9" and device["capabilities"]["commands"] == {}, device


def _with_config(components: dict[str, Any]) -> set[str]:
    """The Home Assistant components that have a configuration (one sent with its platform alone is removed)."""
    return {name for name, component in components.items() if set(component) != {"platform"}}


def wmhub_plugins(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`wmhub plugins --json` in a child process with ``env``."""
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "plugins", "--json"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 1, result.stderr  # each test's plugin has an error: the listing fails
    return result


TYPO_PLUGIN = """
from hub import hookimpl
from hub.hookspecs import DriverSpec


def factory(*args):
    raise AssertionError("never built")


@hookimpl
def register_drivers(register):
    # the comma of a one-item tuple forgotten; a type that is no DNS-SD type; families as a bare string
    register(DriverSpec(scheme="zc-bare", vendor="zc", families=("x",), factory=factory,
                        zeroconf_types="_acme-rx._tcp.local."))
    register(DriverSpec(scheme="zc-notype", vendor="zc", families=("x",), factory=factory, zeroconf_types=("acme-rx",)))
    register(DriverSpec(scheme="zc-family", vendor="zc", families="x", factory=factory))
    register(DriverSpec(scheme="zc-good", vendor="zc", families=("x",), factory=factory,
                        zeroconf_types=("_zc._tcp.local.",)))


@hookimpl
def register_zeroconf_types(register):
    register("zc-older")
"""


async def test_a_typo_in_zeroconf_types_or_families_refuses_that_spec_and_discovery_still_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare string "_x._tcp.local." (a 1-tuple without its comma) or a type that is no DNS-SD type went to the
    shared mDNS browser, which refused it: discovery, and with it the whole hub (`wmhub run` exited 1), stopped
    for every plugin, and `wmhub plugins` showed nothing."""
    env = stranger_distribution(tmp_path, "zc", TYPO_PLUGIN)
    result = wmhub_plugins(env)
    zc = next(plugin for plugin in json.loads(result.stdout) if plugin["name"] == "zc")
    assert "zeroconf_types '_acme-rx._tcp.local.' must be a tuple of DNS-SD service types" in zc["error"]
    assert [driver["scheme"] for driver in zc["drivers"]] == ["zc-good"]
    assert "plugin zc failed in register_drivers" in result.stderr
    assert "zeroconf_types ('acme-rx',) must be" in result.stderr and "families 'x' must be" in result.stderr
    assert "'zc-older' is not a DNS-SD service type" in result.stderr

    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost()
    host.load_entry_points(only="zc,shure")
    assert "_zc._tcp.local." in host.zeroconf_types() and "_shure._tcp.local." in host.zeroconf_types()
    discovery = Discovery(host, DriverSettings(io_timeout_s=1.0), interfaces=["127.0.0.1"])
    await discovery.start()  # the shared browser, on loopback: it raised for the typo
    await discovery.stop()
    record_check(
        AREA,
        "DriverSpec.zeroconf_types as a bare string or ('acme-rx',); families as a bare string; an older "
        "register_zeroconf_types registering 'zc-older'",
        "that spec (or type) refused at load naming the plugin and the field, shown by `wmhub plugins`; the "
        "shared mDNS browser starts with the others' types (it stopped the whole hub before)",
    )


HOOK_TYPO_PLUGIN = """
from hub import hookimpl
from hub.hookspecs import DriverSpec


def factory(*args):
    raise AssertionError("never built")


@hookimpl
def register_driver(register):  # singular: no such hook
    register(DriverSpec(scheme="typo", vendor="typo", families=("x",), factory=factory))


@hookimpl
async def device_capabilities(family, model):  # the hub never awaits it
    return None
"""


def test_a_misspelt_hook_name_is_reported_by_wmhub_plugins_and_the_others_load(tmp_path: Path) -> None:
    env = stranger_distribution(tmp_path, "typo", HOOK_TYPO_PLUGIN)
    listing, logged = plugins_listing(env)
    error = listing["typo"]["error"]
    assert "unknown hook 'register_driver'" in error and "did you mean register_drivers?" in error, error
    assert "device_capabilities is async def: it must be a plain function" in error
    assert listing["shure"]["error"] is None and listing["sennheiser"]["error"] is None
    assert logged.count("unknown hook 'register_driver'") == 1  # logged once, at load
    record_check(
        AREA,
        "@hookimpl def register_driver (singular), and device_capabilities written as async def",
        "`wmhub plugins` shows the plugin's error: unknown hook 'register_driver' (did you mean "
        "register_drivers?), device_capabilities is async def; logged once at load; the others load",
    )


UNMARKED_PLUGIN = """
from hub.hookspecs import DriverSpec
from hub.testing import QuietDriver


def register_drivers(register):  # @hookimpl forgotten: pluggy never registers it
    register(DriverSpec(scheme="unmarked", vendor="unmarked", families=("x",), factory=QuietDriver, default_port=1))


def identify_service(service, settings):  # an older hook's name, used as a DriverSpec.identify: no error
    return None
"""


def test_a_hook_function_not_marked_hookimpl_is_reported_by_wmhub_plugins(tmp_path: Path) -> None:
    """A plugin module whose register_drivers lacked @hookimpl registered nothing, and `wmhub plugins` listed it
    with no hooks, no error and exit status 0."""
    env = stranger_distribution(tmp_path, "unmarked", UNMARKED_PLUGIN)
    listing, logged = plugins_listing(env)
    error = listing["unmarked"]["error"]
    assert error == "register_drivers is not marked @hookimpl (from hub import hookimpl): wmhub never calls it"
    assert listing["shure"]["error"] is None and listing["sennheiser"]["error"] is None
    assert logged.count("plugin unmarked: register_drivers is not marked @hookimpl") == 1
    record_check(
        AREA,
        "a plugin module whose register_drivers lacks @hookimpl",
        f"`wmhub plugins` exits 1 with the plugin's error: {error}",
    )


BAD_CAPABILITIES_PLUGIN = """
import asyncio

from hub import hookimpl
from hub.drivers import Driver
from hub.hookspecs import DriverSpec
from hub.model import Capabilities, CommandKind, CommandLimits, CommandResult, NumberLimits, TextLimits


class Box(Driver):
    async def connect(self):
        self.sink.identify(unique_id=self.endpoint.host, family="box", model="B-1", channel_count=1)
        self.sink.update_channel(1, {"name": "Lead", "extended_name": "Lead vocal", "frequency_mhz": 520.0})

    async def run(self):
        await asyncio.Event().wait()

    async def close(self):
        pass

    async def apply(self, command):
        return CommandResult(ok=True, value=command.value)


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="caps", vendor="caps", families=("box",), factory=Box, default_port=1))


@hookimpl
def device_capabilities(family, model):
    return Capabilities(
        channel_fields=frozenset({"name", "muted", "frequency_mhz", "gain_db", "tx_present"}),
        commands={
            CommandKind.NAME: CommandLimits(text=TextLimits(max_length=12, pattern="^[", allowed="x")),
            CommandKind.FREQUENCY: CommandLimits(number=NumberLimits(min=608, max=470, step=0.025, unit="MHz")),
            CommandKind.GAIN: CommandLimits(number=NumberLimits(min=float("nan"), max=30, step=1, unit="dB")),
            CommandKind.DEVICE_NAME: CommandLimits(
                channel=False, device=True, text=TextLimits(min_length=9, max_length=8, pattern="^.+$", allowed="x")
            ),
            CommandKind.MUTE: CommandLimits(),
            CommandKind.IDENTIFY: CommandLimits(
                text=TextLimits(max_length=8, pattern="^[^{}<>*]+$", allowed="no braces")
            ),
        },
    )
"""


async def test_capabilities_a_plugin_cannot_have_meant_are_refused_per_command_naming_the_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A name pattern that does not compile crashed every name command (REST 500, a bare AssertionError from
    DeviceManager.apply); an inverted frequency band refused every frequency and put every carrier out of band.
    Each such command is left out of the device's capabilities, as if not declared, with one error per field."""
    env = stranger_distribution(tmp_path, "caps", BAD_CAPABILITIES_PLUGIN)
    result = wmhub_plugins(env)
    caps = next(plugin for plugin in json.loads(result.stdout) if plugin["name"] == "caps")
    assert "commands[name].text.pattern '^[' does not compile in Python" in caps["error"]

    monkeypatch.syspath_prepend(str(tmp_path))
    caplog.set_level(logging.WARNING)
    async with DriverHarness("caps") as harness:
        first = await harness.device(harness.add("caps://box1"))
        await harness.device(harness.add("caps://box2"))  # a second device: nothing said twice
        assert first.capabilities is not None
        assert set(first.capabilities.commands) == {CommandKind.MUTE, CommandKind.IDENTIFY}
        answers = {
            kind: await harness.apply(Command(device_id=first.id, channel=1, kind=kind, value=value))
            for kind, value in ((CommandKind.NAME, "Vox"), (CommandKind.FREQUENCY, 520.0), (CommandKind.MUTE, True))
        }
    assert answers[CommandKind.NAME].code == "not_supported", answers
    assert answers[CommandKind.FREQUENCY].code == "not_supported"
    assert answers[CommandKind.MUTE].ok
    messages = [record.getMessage() for record in caplog.records if record.getMessage().startswith("plugin caps")]
    for expected in (
        "commands[name].text.pattern '^[' does not compile in Python",
        "commands[frequency].number: min 608 above max 470 (inverted)",
        "commands[gain].number.min nan: not a finite number",
        "commands[device_name].text: min_length 9 above max_length 8",
        "commands[identify].text.pattern '^[^{}<>*]+$': an unescaped '{' inside a class",
    ):
        assert sum(expected in message for message in messages) == 1, (expected, messages)
    # the driver's extended_name is refused, and the warning says whose field it is
    extended = [message for message in messages if "extended_name" in message]
    assert extended and "set by the user" in extended[0] and "not a field of the model" not in extended[0]
    record_check(
        AREA,
        "device_capabilities declaring a name pattern '^[', a band min=608 max=470, a NaN gain limit, "
        "min_length above max_length",
        "each such command left out of the device's capabilities (answered not_supported, no crash, no false "
        "out-of-band), one error per field naming the plugin; `wmhub plugins` shows the first",
    )


def plugin_registering(*schemes_and_vendors: tuple[str, str]) -> str:
    """A plugin's module registering drivers (never built) under these schemes and vendors."""
    registrations = "".join(
        f"    register(DriverSpec(scheme={scheme!r}, vendor={vendor!r}, families=('x',), factory=factory))\n"
        for scheme, vendor in schemes_and_vendors
    )
    return f"""
from hub import hookimpl
from hub.hookspecs import DriverSpec


def factory(*args):
    raise AssertionError("never built")


@hookimpl
def register_drivers(register):
{registrations}"""


INTRUDER_PLUGIN = plugin_registering(
    ("shure", "intruder"), ("intruder-x", "shure"), ("intruder", "intruder"), ("shared", "shared")
)
RIVAL_PLUGIN = plugin_registering(("shared", "shared"))


def test_a_plugin_claiming_another_plugins_scheme_or_vendor_is_the_one_refused_whichever_loads_first(
    tmp_path: Path,
) -> None:
    """An outside audit: a third party's plugin registering the scheme shure, found before wmhub-shure (here
    ahead of it on the path), took shure:// from it, and wmhub-shure was listed as the broken one; one with the
    vendor shure published its devices as shure-<serial>, on Shure's MQTT topics and REST paths, without error."""
    stranger_distribution(tmp_path, "rival", RIVAL_PLUGIN)
    result = wmhub_plugins(stranger_distribution(tmp_path, "intruder", INTRUDER_PLUGIN))
    listing = {plugin["name"]: plugin for plugin in json.loads(result.stdout)}
    shure, intruder, rival = listing["shure"], listing["intruder"], listing["rival"]
    assert shure["error"] is None and "shure" in [driver["scheme"] for driver in shure["drivers"]]
    assert [driver["scheme"] for driver in intruder["drivers"]] == ["intruder"]
    assert intruder["error"] == (
        "register_drivers: ValueError: DriverSpec for shure:// refused: scheme shure belongs to plugin shure "
        "(wmhub-shure), whose distribution is named for it"
    )
    assert "DriverSpec for intruder-x:// refused: vendor shure belongs to plugin shure (wmhub-shure)" in result.stderr
    # neither distribution is named for "shared": neither has it, whichever loaded first
    assert (
        rival["drivers"] == [] and "scheme shared is claimed by plugin intruder (wmhub-intruder) too" in rival["error"]
    )
    assert "scheme shared is claimed by plugin rival (wmhub-rival) too" in result.stderr
    record_check(
        AREA,
        "a plugin (found first) registering another plugin's scheme (shure) or vendor (shure), and two plugins "
        "registering the same scheme",
        "the scheme or vendor stays with the plugin whose distribution is named for it (wmhub-shure); the "
        "intruder's spec is refused naming wmhub-shure, `wmhub plugins` exits 1; a scheme no distribution is "
        "named for goes to neither, each error naming the other",
    )


def test_a_second_distribution_with_a_plugins_entry_point_name_is_listed_as_itself_and_not_loaded(
    tmp_path: Path,
) -> None:
    """An outside audit: a second distribution declaring the entry-point name of a working plugin replaced that
    plugin's row in `wmhub plugins` with its own error, listed with the working plugin's drivers, and its error
    quoted every plugin module the hub had (pluggy's message)."""
    stranger_distribution(
        tmp_path,
        "twin",
        "from hub import hookimpl\nfrom hub.hookspecs import DriverSpec\n\n"
        "@hookimpl\ndef register_drivers(register):\n"
        "    register(DriverSpec(scheme='twin', vendor='twin', families=('x',), factory=print))\n",
    )
    env = stranger_distribution(tmp_path, "copycat", "", "twin = wmhub_twin\ntwin2 = wmhub_twin")
    rows = json.loads(wmhub_plugins(env).stdout)
    twin, copycat, copycat2 = (
        next(row for row in rows if (row["distribution"], row["name"]) == key)
        for key in (("wmhub-twin", "twin"), ("wmhub-copycat", "twin"), ("wmhub-copycat", "twin2"))
    )
    assert twin["error"] is None and [driver["scheme"] for driver in twin["drivers"]] == ["twin"]
    assert copycat["drivers"] == [] and copycat["error"] == (
        "not loaded: entry-point name twin belongs to plugin twin (wmhub-twin), whose distribution is named for it"
    )
    assert copycat2["drivers"] == [] and copycat2["error"] == (
        "ValueError: its module wmhub_twin is loaded already, as plugin twin: a module is one plugin only"
    )
    record_check(
        AREA,
        "a second distribution declaring a working plugin's entry-point name, and a second name for its module",
        "the working plugin keeps its row and drivers; each of the other's entry points is a row of its own "
        "with a one-line error naming the plugin of that name; `wmhub plugins` exits 1",
    )


def test_what_a_plugin_prints_while_loading_leaves_the_json_listing_json(tmp_path: Path) -> None:
    """An outside audit: a plugin that printed at import ("Acme plugin loaded") made `wmhub plugins --json`
    something no script could read."""
    env = stranger_distribution(
        tmp_path,
        "chatty",
        "from hub import hookimpl\n\nprint('chatty plugin loaded')\n\n"
        "@hookimpl\ndef register_drivers(register):\n    print('chatty registers nothing')\n"
        "    raise RuntimeError('and fails')\n",
    )
    result = wmhub_plugins(env)
    listing = {plugin["name"]: plugin for plugin in json.loads(result.stdout)}
    assert "and fails" in listing["chatty"]["error"]
    assert "chatty plugin loaded" in result.stderr and "chatty registers nothing" in result.stderr
    record_check(
        AREA,
        "a plugin printing at import and in register_drivers",
        "its output goes to stderr; `wmhub plugins --json` stays JSON",
    )


def test_a_plugin_whose_import_blocks_is_named_while_the_hub_waits_for_it(tmp_path: Path) -> None:
    """An outside audit: a plugin whose import hung (a network call, a large load) kept `wmhub run` from
    starting and nothing said which. The import here waits until the test has seen it named."""
    go_on = tmp_path / "go-on"
    env = stranger_distribution(
        tmp_path,
        "stuck",
        f"import pathlib, time\n\nwhile not pathlib.Path({str(go_on)!r}).exists():\n    time.sleep(0.05)\n",
    )
    listing = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "plugins", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert listing.stderr is not None
        named = listing.stderr.readline()  # the first thing said: the plugin the listing waits for
        go_on.touch()
        stdout, stderr = listing.communicate(timeout=60)
    finally:
        listing.kill()
    assert named.strip() == "plugin stuck (wmhub-stuck) is still importing after 2 s: the hub waits for it to start"
    assert "plugin stuck (wmhub-stuck) took" in stderr and listing.returncode == 0
    assert {plugin["name"] for plugin in json.loads(stdout)} >= {"stuck", "shure"}
    record_check(
        AREA,
        "a plugin whose import blocks",
        "named in a warning 2 s into the import, while the hub (or `wmhub plugins`) waits for it, and again "
        "with the time it took",
    )


CLAIMING_PLUGIN = """
from hub import hookimpl
from hub.hookspecs import Candidate, DiscoveredService, DriverSpec


def factory(*args):
    raise AssertionError("never built")


def identify(service, settings):
    if service.name == "mine":
        return Candidate(url=f"claimer://{service.host}:{service.port}", vendor="claimer", source="own")
    if service.name == "foreign vendor":
        return Candidate(url=f"claimer://{service.host}:{service.port}", vendor="shure", source="own")
    return Candidate(url=f"shure://{service.host}:{service.port}", vendor="shure", source="own")


async def loop(report):
    for port, name in ((4001, "mine"), (4002, "foreign vendor"), (4003, "foreign scheme")):
        report(DiscoveredService("127.0.0.1", port, "claimer", name, {}))


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="claimer", vendor="claimer", families=("x",), factory=factory, identify=identify))


@hookimpl
def register_discovery_loops(register):
    register(loop)
"""


def test_a_candidate_naming_another_plugins_scheme_or_vendor_is_dropped_naming_the_plugin(tmp_path: Path) -> None:
    """An outside audit: a plugin's identify answered shure:// candidates with vendor shure for what it heard,
    and the hub listed them for approval as Shure receivers found by it."""
    env = stranger_distribution(tmp_path, "claimer", CLAIMING_PLUGIN)
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "discover", "--json", "--seconds", "1", "--interface", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert [candidate["url"] for candidate in json.loads(result.stdout)] == ["claimer://127.0.0.1:4001"]
    logged = result.stderr
    assert "plugin claimer offered a candidate whose vendor shure is plugin shure's, not its own: dropped" in logged
    assert "plugin claimer offered a candidate whose scheme shure is plugin shure's, not its own: dropped" in logged
    record_check(
        AREA,
        "a plugin's identify answering a candidate with another plugin's scheme (shure://) or vendor (shure)",
        "dropped with a warning naming the plugin and whose scheme or vendor it is; its own candidates stay",
    )


class ReportsFirst(QuietDriver):
    """A driver that reports its channel before it says what the device is: what the documented example did."""

    async def connect(self) -> None:
        self.sink.update_channel(1, {"name": "Early"})
        self.sink.update_channel(1, {"name": "Early again"})
        self.sink.identify(unique_id="RF1", family="early", model="E-1", channel_count=1)


async def test_a_report_before_identify_is_dropped_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """An outside audit: the example plugin reported before identify, which the docs say is dropped, and the hub
    dropped it without a word. It is said once per device at debug level (plugin_log_levels)."""
    caplog.set_level(logging.DEBUG, logger="hub.device.early")
    async with DriverHarness() as hub:
        hub.plugins.register(plugin_of("early", ReportsFirst, "early"), "early")
        device = await hub.device(hub.add("early://rack-a"))
    assert device.channels[0].name is None
    said = [record.getMessage() for record in caplog.records if "before sink.identify" in record.getMessage()]
    assert said == [
        "plugin early called sink.update_channel before sink.identify: dropped (identify first, then report); "
        "further reports before identify are dropped unsaid"
    ]


class MisnamesItsFamily(QuietDriver):
    """A driver whose identify names a family its spec does not list: "acme2" for "acme", a typo."""

    sent: ClassVar[list[object]] = []

    async def connect(self) -> None:
        for _ in range(2):  # identified again (a channel count that changed, a reconnect): said once all the same
            self.sink.identify(unique_id=self.endpoint.host, family="acme2", model="AX", channel_count=1)
        self.sink.update_channel(1, {"frequency_mhz": 500.0, "name": "Lead"})

    async def apply(self, command: Command) -> CommandResult:
        MisnamesItsFamily.sent.append(command.value)
        return CommandResult(ok=True, value=command.value)


class DeclaresItsFamily:
    @hookimpl
    def register_drivers(self, register: Callable[[DriverSpec], None]) -> None:
        register(
            DriverSpec(scheme="acme", vendor="acme", families=("acme",), factory=MisnamesItsFamily, default_port=1)
        )

    @hookimpl
    def device_capabilities(self, family: str | None, model: str | None) -> Capabilities | None:
        band = CommandLimits(number=NumberLimits(min=470, max=608, step=0.025, unit="MHz"))
        acme = Capabilities(channel_fields=frozenset({"frequency_mhz", "name"}), commands={CommandKind.FREQUENCY: band})
        return acme if family == "acme" else None


class DeclaresNothing:
    """A plugin without device_capabilities: its devices have every entity and only its own checks (documented)."""

    @hookimpl
    def register_drivers(self, register: Callable[[DriverSpec], None]) -> None:
        register(
            DriverSpec(scheme="bare", vendor="bare", families=("bare",), factory=MisnamesItsFamily, default_port=1)
        )


async def test_a_family_the_driver_spec_does_not_list_is_named_once_and_passes_nothing_unchecked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An outside audit: a driver whose sink.identify named a family its DriverSpec does not list ("acme2" for
    "acme") got None from its own device_capabilities, silently: every check the plugin declared was gone (a
    frequency of 9999 MHz reached Driver.apply) and Home Assistant got every control. The hub says so once per
    device, naming the plugin, the family and the spec's families; a plugin that declares limits for its
    families but none for that one has the device watched without controls, rather than unchecked."""
    caplog.set_level(logging.WARNING)
    MisnamesItsFamily.sent.clear()
    async with DriverHarness() as harness:
        harness.plugins.register(DeclaresItsFamily(), "wmhub-acme")
        harness.plugins.register(DeclaresNothing(), "wmhub-bare")
        ids = {vendor: (await harness.device(harness.add(f"{vendor}://rack-a"))).id for vendor in ("acme", "bare")}
        await eventually(lambda: harness.store.devices[ids["acme"]].channels[0].frequency_mhz, 5, "the reading")
        answers = {
            vendor: await harness.apply(
                Command(device_id=device_id, channel=1, kind=CommandKind.FREQUENCY, value=9999.0)
            )
            for vendor, device_id in ids.items()
        }
        acme, bare = (harness.store.devices[ids[vendor]] for vendor in ("acme", "bare"))
        await harness.device(harness.add("acme://rack-b"))  # a second such device is named too
    assert answers["acme"].code == "not_supported", answers
    assert MisnamesItsFamily.sent == [9999.0], "only the plugin without declarations checks for itself"
    assert acme.capabilities is not None and acme.capabilities.commands == {}
    assert acme.channels[0].frequency_mhz == 500.0 and acme.channels[0].name == "Lead", "still watched"
    assert bare.capabilities is None  # as for its own families: every entity, the plugin's own checks
    said = [record.getMessage() for record in caplog.records if "'acme2'" in record.getMessage()]
    by_acme = [line for line in said if line.startswith("plugin wmhub-acme: ")]
    by_bare = [line for line in said if line.startswith("plugin wmhub-bare: ")]
    assert len(by_acme) == 2 and len(by_bare) == 1 and len(said) == 3, said  # once per device
    assert all("(families: 'acme';" in line and "no controls" in line for line in by_acme), by_acme
    assert "(families: 'bare';" in by_bare[0], by_bare
