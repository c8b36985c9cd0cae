"""What the `wmhub` command prints for people (not --json), and its one-line answers to mistakes."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator
from wmhub_shure.simulator import ShureSimulator

from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.testing import eventually, plugin_host
from tests.fault_harness import hub_config
from tests.test_core_plugins import broken_distribution


def wmhub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=60, env=env)


async def wmhub_async(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The command as a child process, so a hub in this test's event loop can answer it meanwhile."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def test_plugins_lists_one_line_each_with_its_hooks_or_its_error(tmp_path: Path) -> None:
    extra = [str(broken_distribution(tmp_path)), os.environ.get("PYTHONPATH")]
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, extra)))
    result = wmhub("plugins", env=environ)
    assert result.returncode == 1, result.stderr  # a plugin that failed: the installation needs mending
    lines = {line.split(" ", 1)[0]: line for line in result.stdout.splitlines()}
    assert "register_drivers" in lines["wmhub-shure"] and "register_drivers" in lines["wmhub-sennheiser"]
    assert "ERROR" in lines["wmhub-broken"] and "broken on purpose" in lines["wmhub-broken"]
    # each plugin's drivers follow it; a family not confirmed on hardware says so
    uhfr = next(line for line in result.stdout.splitlines() if line.strip().startswith("shure-uhfr://"))
    assert "UHF-R" in uhfr and "unverified" in uhfr


def plugin_for_a_newer_core(root: Path) -> Path:
    """A plugin released with a later core: it imports a name this core does not have, and says which core
    releases it works with, as wmhub-shure and wmhub-sennheiser do."""
    (root / "wmhub_future.py").write_text("from hub.hookspecs import AHookOfNextYear\n")
    info = root / "wmhub_future-27.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: wmhub-future\nVersion: 27.1.0\nRequires-Dist: wmhub<27.2,>=27.1.0\n"
    )
    (info / "entry_points.txt").write_text("[wmhub]\nfuture = wmhub_future\n")
    return root


def test_a_plugin_for_a_newer_core_fails_the_listing_in_one_line_naming_both_versions(tmp_path: Path) -> None:
    """An outside audit: plugins released with a newer core failed with a bare ImportError, and `wmhub
    plugins` still exited 0; `wmhub run` started without them."""
    from hub import __version__

    environ = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_for_a_newer_core(tmp_path)), *sys.path]))
    result = wmhub("plugins", env=environ)
    assert result.returncode == 1, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("wmhub-future"))
    assert "ERROR ImportError: cannot import name 'AHookOfNextYear'" in line
    assert line.endswith(f"(it works with wmhub <27.2,>=27.1.0; this is wmhub {__version__})"), line
    run = wmhub("run", "--check", "--mqtt", "off", "--http", "127.0.0.1:0", "--data-dir", str(tmp_path), env=environ)
    failed = [line for line in run.stderr.splitlines() if "plugin future failed to load" in line]
    assert run.returncode == 0 and len(failed) == 1 and "it works with wmhub <27.2,>=27.1.0" in failed[0], run.stderr


def test_a_plugin_failing_to_import_within_its_core_range_is_not_hinted_a_version_mismatch(tmp_path: Path) -> None:
    """An outside audit: its own bug was shown as "(it works with wmhub <26.12,>=26.11.0; this is wmhub
    26.11.0)", a mismatch that is none."""
    from hub import __version__

    (tmp_path / "wmhub_buggy.py").write_text("raise ImportError('a bug of its own')\n")
    info = tmp_path / "wmhub_buggy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: wmhub-buggy\nVersion: 1.0\nRequires-Dist: wmhub<99,>={__version__}\n"
    )
    (info / "entry_points.txt").write_text("[wmhub]\nbuggy = wmhub_buggy\n")
    result = wmhub("plugins", env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path])))
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith("wmhub-buggy"))
    assert line == "wmhub-buggy 1.0 (buggy): ERROR ImportError: a bug of its own"


def test_an_http_address_without_a_port_is_refused_with_the_value() -> None:
    result = wmhub("run", "--http", "localhost")
    assert result.returncode == 2
    assert "'localhost' is not HOST:PORT" in result.stderr and "Traceback" not in result.stderr


def test_devices_says_no_hub_answers_where_none_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        result = wmhub("devices", "--http", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"no hub answering at http://127.0.0.1:{port}/api/v1/devices" in result.stderr


async def test_devices_prints_each_receiver_and_its_channel_names(tmp_path: Path) -> None:
    simulator = await ShureSimulator("ulxd4d", seed=3).start()
    config = HubConfig(
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0),
    )
    try:
        async with compose_hub(config, plugin_host("shure")) as hub:
            await hub.add_device(simulator.url, source="test")
            device = await eventually(
                lambda: next((d for d in hub.store.devices.values() if d.online and d.channels), None),
                what="the receiver online",
            )
            status, stdout, stderr = await wmhub_async("devices", "--http", f"127.0.0.1:{hub.web.port}")
    finally:
        await simulator.stop()
    assert status == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].split()[0] == device.id and "online" in lines[0] and f"127.0.0.1:{simulator.port}" in lines[0]
    assert [line.strip() for line in lines[1:]] == [f"{c.index}: {c.name or ''}".strip() for c in device.channels]


async def test_discover_prints_a_line_per_device_to_add() -> None:
    async with Ssc1Simulator("ewdx-em4", tick_s=0, advertise=True) as simulator:
        status, stdout, stderr = await wmhub_async("discover", "--seconds", "4", "--interface", "127.0.0.1")
    assert status == 0, stderr
    line = next(line for line in stdout.splitlines() if line.startswith(simulator.url))
    assert "sennheiser" in line and "EW-DX EM 4" in line


def test_discover_refuses_an_interface_that_is_no_address_in_one_line() -> None:
    result = wmhub("discover", "--seconds", "1", "--interface", "garbage")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "'garbage' is not an IP address" in result.stderr


async def test_devices_sends_the_token_to_a_hub_that_closed_its_reads(tmp_path: Path) -> None:
    config = hub_config(tmp_path, [], http=HttpSettings(port=0, open_reads=False))
    async with compose_hub(config, plugin_host("shure")) as hub:
        status, stdout, stderr = await wmhub_async(
            "devices", "--http", f"127.0.0.1:{hub.web.port}", "--json", env={"WMHUB_DATA_DIR": str(tmp_path)}
        )
    assert status == 0, stderr
    assert stdout.strip() == "[]"


async def test_devices_refused_for_want_of_the_token_says_how_to_give_it(tmp_path: Path) -> None:
    config = hub_config(tmp_path, [], http=HttpSettings(port=0, open_reads=False))
    async with compose_hub(config, plugin_host("shure")) as hub:
        elsewhere = tmp_path / "not-the-hubs"  # no token stored here: the command has none to send
        status, _, stderr = await wmhub_async(
            "devices", "--http", f"127.0.0.1:{hub.web.port}", env={"WMHUB_DATA_DIR": str(elsewhere)}
        )
    assert status == 1 and stderr.count("\n") == 1, stderr
    assert "answered 401 Unauthorized (it wants its API token: give the hub's configuration with --config" in stderr
    assert "WMHUB_HTTP__TOKEN" in stderr


def test_a_flag_a_command_does_not_take_points_to_that_commands_help() -> None:
    result = wmhub("plugins", "--bogus")
    assert result.returncode == 2
    assert result.stderr == "wmhub plugins: unrecognized arguments: --bogus (see wmhub plugins --help)\n"


async def test_devices_lines_up_its_columns_whatever_the_model_names_length() -> None:
    devices = [
        {"id": "shure-ulxd4q-1", "model": "ULXD4Q", "host": "10.0.0.5", "port": 2202, "online": True},
        {"id": "s-2", "model": "SLXD4D-G58 with a long name", "host": "10.0.0.6", "port": 2202, "online": False},
    ]
    body = json.dumps({"items": devices, "total": 2}).encode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        status, stdout, stderr = await wmhub_async(
            "devices", "--http", f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        )
    assert status == 0, stderr
    first, second = stdout.splitlines()
    assert first.index("ULXD4Q") == second.index("SLXD4D"), stdout
    assert first.index("10.0.0.5") == second.index("10.0.0.6"), stdout


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", b"no HTTP at all\r\n\r\n"],
)
async def test_devices_says_what_answers_is_no_hub_in_one_line(answer: bytes) -> None:
    async def not_a_hub(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_a_hub, "127.0.0.1", 0)
    async with server:
        status, _, stderr = await wmhub_async("devices", "--http", f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
    assert status == 1 and stderr.count("\n") == 1, stderr
    assert "is not a wmhub API" in stderr and "Traceback" not in stderr


INTERRUPT_WHILE_IMPORTING = """
import importlib.abc, os, signal, sys

class InterruptOnImport(importlib.abc.MetaPathFinder):
    # Ctrl-C at a moment chosen, not hoped for: while the command-line tool imports its configuration
    def find_spec(self, name, path, target=None):
        if name == "hub.config":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, InterruptOnImport())
"""


def test_ctrl_c_while_the_command_is_still_importing_ends_it_quietly_with_130(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(INTERRUPT_WHILE_IMPORTING)
    command = Path(sys.executable).parent / "wmhub"  # the installed command, as a user starts it
    result = subprocess.run(
        [str(command), "plugins"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        # as from a terminal: a suite started in the background by a shell inherits SIGINT ignored, and Python
        # then never turns it into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "")


def test_output_whose_reader_went_away_ends_the_command_quietly() -> None:
    """An outside audit: ``wmhub plugins --json | head`` ended in a BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "wmhub"), "plugins", "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    # no traceback, no BrokenPipeError (a slow import on a loaded machine may still be reported: it is not this)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


async def test_devices_asks_the_hub_directly_never_through_the_environments_proxy(tmp_path: Path) -> None:
    """An outside audit: with http_proxy set, `wmhub devices` sent its request, and the hub's API token with
    it, to the proxy, and reported the proxy's 502 as the hub's answer."""
    received: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    config = hub_config(tmp_path, [], http=HttpSettings(port=0, open_reads=False))
    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server, compose_hub(config, plugin_host("shure")) as hub:
        status, stdout, stderr = await wmhub_async(
            "devices", "--http", f"127.0.0.1:{hub.web.port}", "--json",
            env={"WMHUB_DATA_DIR": str(tmp_path), "http_proxy": proxy_url, "HTTP_PROXY": proxy_url,
                 "no_proxy": "", "NO_PROXY": ""},
        )  # fmt: skip
    assert (status, stdout.strip(), received) == (0, "[]", []), stderr


async def test_devices_gives_up_on_an_answer_that_never_ends_in_one_line() -> None:
    """An outside audit: a server sending its answer a byte at a time kept `wmhub devices` waiting for ever
    (its timeout was per read)."""

    async def dripping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        with contextlib.suppress(OSError):
            for byte in (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + b" " * 99
            ):
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.5)

    server = await asyncio.start_server(dripping, "127.0.0.1", 0)
    started = time.monotonic()
    async with server:
        port = server.sockets[0].getsockname()[1]
        status, _, stderr = await wmhub_async("devices", "--http", f"127.0.0.1:{port}")
    assert status == 1 and stderr.count("\n") == 1, stderr
    assert f"no hub answering at http://127.0.0.1:{port}/api/v1/devices (no whole answer within 10 s)" in stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("command", ["plugins --json", "--version", "run --check --mqtt off --http 127.0.0.1:0"])
def test_output_that_cannot_be_written_is_said_in_one_line(command: str, tmp_path: Path) -> None:
    """An outside audit: `wmhub plugins > /dev/full` (a full disk) ended in a 16-line OSError traceback, and
    `wmhub --version > /dev/full` exited 0 having written nothing."""
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "wmhub"), *command.split()],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={**os.environ, "WMHUB_DATA_DIR": str(tmp_path), "WMHUB_DISCOVERY__ENABLED": "false"},
        )
    assert (result.returncode, result.stderr) == (1, "wmhub: cannot write the output: No space left on device\n")


@pytest.mark.parametrize("command", ["devices", "run"])
@pytest.mark.parametrize("address", ["[::1:23125", "exa mple:23125", "bro\nker:23125"])
def test_an_http_host_no_host_can_have_is_refused_before_anything_is_asked(command: str, address: str) -> None:
    """An outside audit: `wmhub devices --http '[::1:23125'` asked for http://[[::1]:23125/... and called
    the answer no wmhub API (exit 1); `run` refused the same value (exit 2) only once DNS had been asked."""
    result = wmhub(command, "--http", address)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"argument --http: {address!r}: " in result.stderr and "is no host name or address" in result.stderr
