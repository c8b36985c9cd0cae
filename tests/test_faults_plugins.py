"""One careless plugin never breaks the others or the hub.

``careless`` is written as a third-party author would write it from docs/plugins.md, without much care:
its driver passes whatever its receiver sends straight to the sink, its apply answers whatever it
likes, and it blocks the event loop where it should await. Its "receiver" is a line-of-JSON server on
loopback (real TCP), so every bad value arrives over a real socket. Next to it the hub runs a healthy
Shure receiver (the Shure plugin and its protocol simulator) that must not notice anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from wmhub_shure.simulator import ShureSimulator

from hub import hookimpl
from hub.app import Hub
from hub.compose import compose_hub
from hub.drivers import DeviceSink, Driver, DriverSettings, Endpoint
from hub.hookspecs import DriverSpec
from hub.model import Command, CommandResult
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.fault_harness import TOKEN, hub_config
from tests.mosquitto import free_port
from tests.reliability_report import record_check
from tests.test_faults_hub import devices_online, hub_process

AREA = "plugin isolation"
HOSTILE_NAME = "\x1b[2J\x1b[31mFAKE\r\n2026-01-01 ERROR hub: forged line\u202e" + "y" * 100_000


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
            elif "device" in message:
                self.sink.update_device(message["device"])
            else:
                self.sink.update_channel(message["channel"], message["fields"])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def apply(self, command: Command) -> Any:  # type: ignore[override]  # the sloppiness under test
        """Answers by the value of a NAME command: what a sloppy driver might return."""
        if command.value == "none":
            return None
        if command.value == "yes":
            return "yes"
        if command.value == "42":
            return _forty_two()
        if command.value == "bare":  # a failure that says nothing, as the example plugin once returned
            return CommandResult(ok=False, value="Kept")
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
async def careless_hub(tmp_path: Path) -> AsyncIterator[Rig]:
    async with CarelessReceiver() as careless, ShureSimulator("ulxd4d") as shure:
        host = PluginHost()
        host.load_entry_points(only="shure")
        host.register(CarelessPlugin(), "careless", "0.1")
        hub = compose_hub(hub_config(tmp_path, [careless.url, shure.url], hub_id="careless"), host)
        await hub.start()
        try:
            rig = Rig(hub, careless, shure)
            await eventually(lambda: all(d.online for d in hub.store.devices.values()) and len(hub.store.devices) == 2)
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
        rig.careless.send({"channel": 0, "fields": {"name": "zero"}})
        rig.careless.send({"channel": 2, "fields": {"name": HOSTILE_NAME}})
        rig.careless.send({"device": {"model": ["not", "text"], "firmware": "1.0\x00\x07"}})
        await eventually(lambda: careless.handle.protocol_errors >= 11, what="every bad value counted")

        channel = rig.careless_channel()
        assert (channel.rf_dbm, channel.tx_present, channel.name) == (-61.5, True, "Lead")  # bad values dropped
        assert channel.audio_dbfs is None and channel.battery_percent is None  # impossible readings: unknown
        assert rig.careless_channel(0) is None
        stored = rig.careless_channel(2).name
        assert stored.startswith("[2J[31mFAKE2026-01-01 ERROR hub: forged liney") and len(stored) == 255
        device = rig.hub.store.devices["careless-C0001"]
        assert (device.model, device.firmware) == ("C-1", "1.0")
        assert careless.supervisor.reconnects == 0 and device.online  # no reconnect loop
        refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("plugin careless reported")]
        assert len(refusals) == 8 and all(len(message) < 400 for message in refusals)

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
        for value in ("none", "yes", "42"):
            status, body = answers[value]
            assert status == 502 and body["code"] == "plugin_error" and "plugin careless" in body["error"], body
        assert answers["block"][0] == 200
        status, body = answers["bare"]
        assert status == 502 and body["code"] == "failed", body
        assert body["error"] == "the device did not confirm the value; it reports 'Kept'"
    slow = [r.getMessage() for r in caplog.records if "held the event loop" in r.getMessage()]
    assert any("plugin careless" in message and "Driver.apply" in message for message in slow), slow
    record_check(
        AREA,
        'Driver.apply returns None, "yes", an awaitable of 42; or blocks 250 ms with time.sleep',
        "REST 502 plugin_error 'plugin careless answered ... instead of a CommandResult' (not 409 'has no "
        "controls'); the blocking call is named in a warning: plugin careless, Driver.apply, its time",
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


def test_register_drivers_returning_a_coroutine_is_a_plugin_error_shown_by_wmhub_plugins(tmp_path: Path) -> None:
    (tmp_path / "wmhub_async.py").write_text(
        "from hub import hookimpl\n\n@hookimpl\nasync def register_drivers(register):\n    pass\n"
    )
    info = tmp_path / "wmhub_async-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wmhub-async\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[wmhub]\nasyncreg = wmhub_async\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "hub.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    listing = {plugin["name"]: plugin for plugin in json.loads(result.stdout)}
    assert "register_drivers" in listing["asyncreg"]["error"] and "coroutine" in listing["asyncreg"]["error"]
    assert listing["shure"]["error"] is None
    assert "never awaited" not in result.stderr
    record_check(
        AREA,
        "register_drivers written as `async def` (returns a coroutine)",
        "a plugin error on that plugin ('register_drivers: TypeError: ... returned coroutine'), shown by "
        "`wmhub plugins`; no 'never awaited' warning; the other plugins load",
    )


def stranger_distribution(root: Path, name: str, module: str) -> dict[str, str]:
    """A third party's plugin distribution on the path (module source ``module``); the environment to find it."""
    (root / f"wmhub_{name}.py").write_text(module)
    info = root / f"wmhub_{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: wmhub-{name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[wmhub]\n{name} = wmhub_{name}\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))


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
        "    register(DriverSpec(scheme='Odd-Upper', vendor='odd', families=('x',), factory=factory))\n\n"
        "@hookimpl\ndef register_discovery_loops(register):\n    register('not a function')\n",
    )
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "plugins", "--json"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    odd = next(plugin for plugin in json.loads(result.stdout) if plugin["name"] == "odd")
    assert "vendor 'ev il/#+x' must be lowercase letters, digits, _ and -" in odd["error"]
    assert [driver["scheme"] for driver in odd["drivers"]] == ["odd-upper"]  # schemes compare lowercased
    errors = result.stderr
    assert "text_width -5 must be a whole number of at least 1" in errors
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
    monkeypatch.setenv("PYTHONPATH", stranger_distribution(tmp_path, "stubborn", STUBBORN_PLUGIN)["PYTHONPATH"])
    port = free_port()
    config = tmp_path / "wmhub.toml"
    config.write_text(
        f'hub_id = "stubborn"\ndata_dir = "{tmp_path / "data"}"\ndevices = ["stubborn://box"]\n'
        f'command_timeout_s = 1.0\n[mqtt]\nurl = "off"\n[http]\nport = {port}\ntoken = "{TOKEN}"\n'
        "[discovery]\nenabled = false\n",
        encoding="utf-8",
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
