"""``wmhub run`` with a setting it cannot start with: one line naming the key or flag, exit status 2, no
traceback, no secret, and the process gone at once (systemd's ``Restart=on-failure`` then acts). A failure
after the start stops everything that was started and exits 1 instead of hanging."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mosquitto import MqttProbe, free_port
from tests.reliability_report import record_check

# a bounded wait, far above the second a failed start takes: a hang fails the test instead of stalling it
EXIT_DEADLINE_S = 30.0
LEAKED_PASSWORD = "LEAKPW1"


@contextmanager
def port_in_use() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def wmhub_run(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Run ``wmhub run`` as a child process (HTTP on a free port, no MQTT unless ``args`` say otherwise):
    its exit status, its stderr and how long it lived. A child still running at the deadline is killed and
    fails the test."""
    command = [sys.executable, "-m", "hub.cli", "run", "--data-dir", str(data_dir), "--mqtt", "off"]
    command += ["--http", "127.0.0.1:0", *args]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=EXIT_DEADLINE_S,
            env={**os.environ, "WMHUB_DISCOVERY__ENABLED": "false", **(env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() kills the child before raising
        pytest.fail(f"wmhub run still running after {EXIT_DEADLINE_S} s: {exc.stderr!r}")
    return done.returncode, done.stderr, round(time.monotonic() - started, 2)


@dataclass
class RunningHub:
    port: int
    process: subprocess.Popen[str]

    def get(self, path: str) -> tuple[int, str]:
        return self.request(urllib.request.Request(f"http://127.0.0.1:{self.port}{path}"))

    def post(self, path: str, body: str, token: str) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        url = f"http://127.0.0.1:{self.port}{path}"
        return self.request(urllib.request.Request(url, body.encode(), headers, method="POST"))

    @staticmethod
    def request(request: urllib.request.Request, timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self) -> str:
        """SIGTERM, then its stderr (it must stop within the deadline)."""
        self.process.terminate()
        _, stderr = self.process.communicate(timeout=EXIT_DEADLINE_S)
        return stderr


@contextmanager
def running_hub(
    data_dir: Path | str,
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    launcher: tuple[str, ...] = (),
    mqtt_off: bool = True,
    file_size_limit: int | None = None,
) -> Iterator[RunningHub]:
    """``wmhub run`` (started through ``launcher``, e.g. ``nohup``) as a child process that started and serves
    HTTP; stopped (killed) when the block ends. Without MQTT unless ``mqtt_off`` is false (then the broker is
    the one ``args`` or ``env`` name, as a deployment's environment would). ``file_size_limit``: no file the
    hub writes grows past it (RLIMIT_FSIZE), a full disk for any user."""
    port = free_port()
    command = [*launcher, sys.executable, "-m", "hub.cli", "run", "--data-dir", str(data_dir)]
    command += ["--mqtt", "off"] if mqtt_off else []
    command += ["--http", f"127.0.0.1:{port}", *args]
    environment = {**os.environ, "WMHUB_DISCOVERY__ENABLED": "false", **(env or {})}
    limit = None if file_size_limit is None else (file_size_limit, file_size_limit)
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if limit is None else lambda: resource.setrlimit(resource.RLIMIT_FSIZE, limit),
    )
    hub = RunningHub(port, process)
    try:
        deadline = time.monotonic() + EXIT_DEADLINE_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the hub exited with {process.returncode}: {process.communicate()[1]}")
            try:
                if hub.get("/api/health")[0] in (200, 503):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the hub did not answer HTTP in time")
                time.sleep(0.1)
        yield hub
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@contextmanager
def simulated_receivers(count: int) -> Iterator[list[str]]:
    """``count`` Shure simulators in a child process: their URLs."""
    command = [sys.executable, "-m", "wmhub_shure.simulator", "--family", "ad4q", "--port", "0", "--count", str(count)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield [process.stdout.readline().split()[-1] for _ in range(count)]
    finally:
        process.terminate()
        process.wait(10)


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wmhub.toml"
    path.write_text(text, encoding="utf-8")
    return path


CASES = {
    "device URL, unknown scheme (--device)": (["--device", "shur://127.0.0.1"], {}, "--device: no plugin handles"),
    "device URL, no host (--device)": (["--device", "shure://"], {}, "--device: 'shure://' is not a device URL"),
    "device URL, port 0 (--device)": (
        ["--device", "shure://127.0.0.1:0"],
        {},
        "--device: 'shure://127.0.0.1:0': port 0",
    ),
    "device URL, a password with '#' and a space (--device)": (
        ["--device", "sennheiser-ssc2://127.0.0.1:443?password=Sec ret#HashPart9"],
        {},
        "--device: sennheiser-ssc2://127.0.0.1:443: a device URL has no '#' part",
    ),
    "device URL, a password with '+' (config file)": (
        ["--config", "{file}"],
        {"file": 'devices = ["sennheiser-ssc2://127.0.0.1:443?password=Plus+Part9"]\n'},
        "wmhub.toml: devices: sennheiser-ssc2://127.0.0.1:443: the password option holds a '+'",
    ),
    "device URL, unknown scheme (config file)": (
        ["--config", "{file}"],
        {"file": 'devices = ["shur://127.0.0.1"]\n'},
        "wmhub.toml: devices: no plugin handles",
    ),
    "device URL, two addresses in its host (config file)": (
        ["--config", "{file}"],
        {"file": 'devices = ["shure://10.0.0.5,10.0.0.6"]\n'},
        "wmhub.toml: devices: 'shure://10.0.0.5,10.0.0.6': the host is neither an IP address nor a host name",
    ),
    "device URL, a host with a space (--device)": (
        ["--device", "shure://10.0.0.5 10.0.0.6"],
        {},
        "--device: 'shure://10.0.0.5 10.0.0.6': the host is neither an IP address nor a host name",
    ),
    "MQTT URL, a password with '/', '?', '@' and '#' as they are (--mqtt)": (
        ["--mqtt", f"mqtt://wmhub:{LEAKED_PASSWORD}/a?b@c#d@127.0.0.1:1"],
        {},
        "command line: mqtt.url: a password or user name in a URL must have / ? # [ ] and % percent-encoded",
    ),
    "device URL, no host (WMHUB_DEVICES)": ([], {"WMHUB_DEVICES": "shure://"}, "WMHUB_DEVICES: 'shure://'"),
    "device URL with an ESC sequence and a forged log line (--device)": (
        ["--device", "shure://127.0.0.1:23302?id=\x1b]0;PWNED\x07\x1b[2J\n12:00:00 ERROR   hub: forged line"],
        {},
        "--device: a device URL must not contain control characters",
    ),
    "device URL with an escape sequence (config file)": (
        ["--config", "{file}"],
        {"file": 'devices = ["shure://127.0.0.1?id=\\u001b[2J"]\n'},
        "wmhub.toml: devices: a device URL must not contain control characters",
    ),
    "device URL with a BEL (WMHUB_DEVICES)": (
        [],
        {"WMHUB_DEVICES": "shure://127.0.0.1?id=a\x07b"},
        "WMHUB_DEVICES: a device URL must not contain control characters",
    ),
    "http.token with a space inside (WMHUB_HTTP__TOKEN)": (
        [],
        {"WMHUB_HTTP__TOKEN": "LEAKPW1 and-0123456789abcdef"},
        "environment (WMHUB_HTTP__TOKEN): http.token: must not contain whitespace",
    ),
    "http.token of 16 characters counting a trailing line break (WMHUB_HTTP__TOKEN)": (
        [],
        {"WMHUB_HTTP__TOKEN": "LEAKPW1-0123456\n"},
        "environment (WMHUB_HTTP__TOKEN): http.token: String should have at least 16 characters",
    ),
    "MQTT URL, port not a number": (["--mqtt", "mqtt://u:p@127.0.0.1:notaport"], {}, "mqtt.url: the host or port"),
    "MQTT URL, unclosed bracket": (["--mqtt", "mqtt://u:p@[::1"], {}, "mqtt.url: the host or port"),
    "MQTT URL, a space in the host": (["--mqtt", "mqtt://exa mple:1883"], {}, "mqtt.url: a URL holds a space"),
    "MQTT URL, a line break in the host": (["--mqtt", "mqtt://bro\nker:1883"], {}, "mqtt.url: a URL holds a space"),
    "MQTT URL with a fragment": (
        ["--mqtt", "mqtt://127.0.0.1:1883#frag"],
        {},
        "mqtt.url: a URL has a path, '?' or '#'",
    ),
    "MQTT URL, a password with '#' (read as a fragment)": (
        ["--mqtt", "mqtt://u:LEAKPW1#x@127.0.0.1:1883"],
        {},
        "mqtt.url: a password or user name in a URL must have / ? # [ ] and % percent-encoded",
    ),
    "MQTT URL, scheme mistyped with a password in it": (
        ["--mqtt", f"mqtts//wmuser:{LEAKED_PASSWORD}@broker:8883"],
        {},
        "mqtt.url: must be",
    ),
    "HTTP host that does not resolve": (["--http", "bad..host:8058"], {}, "http.host: 'bad..host' does not resolve"),
    "HTTP port in use": (
        ["--http", "127.0.0.1:{busy_port}"],
        {},
        "command line: http.port: 127.0.0.1:{busy_port} is already in use",
    ),
    "data_dir is a file": (["--data-dir", "{a_file}"], {}, "command line: data_dir: {a_file} is a file"),
    "max_connecting zero (WMHUB_MAX_CONNECTING)": ([], {"WMHUB_MAX_CONNECTING": "0"}, "max_connecting: Input"),
    "max_connecting not a number (config file)": (
        ["--config", "{file}"],
        {"file": 'max_connecting = "lots"\n'},
        "max_connecting: Input should be a valid integer",
    ),
    "unknown flag": (["--bogus"], {}, "wmhub run: unrecognized arguments: --bogus (see wmhub run --help)"),
    "flag without its value": (["--http"], {}, "wmhub run: argument --http: expected one argument"),
    "HTTP address with an IPv6 host in brackets, port in use": (
        ["--http", "[::ffff:127.0.0.1]:{busy_port}"],
        {},
        "http.port: ",
    ),
    # an outside audit: exempt from the check of unknown variables, and read by nothing
    "WMHUB_TRACE_PLUGINS, which no part of the hub reads": (
        [],
        {"WMHUB_TRACE_PLUGINS": "1"},
        "environment (WMHUB_TRACE_PLUGINS): trace_plugins: unknown setting",
    ),
    "hub id given empty (an unset variable in a script)": (["--hub-id", ""], {}, "command line: hub_id"),
    "data dir given empty": (["--data-dir", ""], {}, "wmhub run: argument --data-dir: an empty path"),
    "hub id of 70,000 characters (WMHUB_HUB_ID)": (
        [],
        {"WMHUB_HUB_ID": "a" * 70_000},
        "environment (WMHUB_HUB_ID): hub_id: String should have at most 64 characters",
    ),
    "data dir name too long": (["--data-dir", "{long_dir}"], {}, "data_dir: cannot create"),
    "discovery on an address this machine does not have": (
        [],
        {"WMHUB_DISCOVERY__ENABLED": "true", "WMHUB_DISCOVERY__INTERFACES": "192.0.2.123"},
        "discovery.interfaces: 192.0.2.123 is not an address of this machine",
    ),
    "discovery on a multicast address (Linux binds it)": (
        [],
        {"WMHUB_DISCOVERY__ENABLED": "true", "WMHUB_DISCOVERY__INTERFACES": "224.0.0.251"},
        "discovery.interfaces: 224.0.0.251 is not an address of this machine's interfaces",
    ),
    "discovery on the broadcast address (Linux binds it)": (
        [],
        {"WMHUB_DISCOVERY__ENABLED": "true", "WMHUB_DISCOVERY__INTERFACES": "255.255.255.255"},
        "discovery.interfaces: 255.255.255.255 is not an address of this machine's interfaces",
    ),
    "the embedded broker on the HTTP port": (
        ["--mqtt", "embedded", "--http", "127.0.0.1:{free_port}"],
        {"WMHUB_MQTT__EMBEDDED_PORT": "{free_port}"},
        "mqtt.embedded_port: {free_port} is http.port too",
    ),
    "a configuration file of 3 GB (a disk image given by mistake)": (
        ["--config", "{huge_file}"],
        {},
        "<tmp>/huge.toml: larger than 1 MiB, too large to be a configuration",
    ),
    "a FIFO as the configuration file (nothing writes to it)": (
        ["--config", "{fifo}"],
        {},
        "<tmp>/fifo.toml: not a regular file",
    ),
    "mqtt.ca_file missing": (
        ["--config", "{file}", "--mqtt", "mqtts://127.0.0.1:8883"],
        {"file": '[mqtt]\nca_file = "/nonexistent/ca.pem"\n'},
        "<tmp>/wmhub.toml: mqtt.ca_file: /nonexistent/ca.pem is not a readable file",
    ),
    "device URL, unknown scheme (the file WMHUB_CONFIG names)": (
        [],
        {"WMHUB_CONFIG": "{file}", "file": 'devices = ["shur://127.0.0.1"]\n'},
        "<tmp>/wmhub.toml: devices: no plugin handles 'shur://127.0.0.1'",
    ),
    "WMHUB_CONFIG naming a missing file (a container's environment)": (
        [],
        {"WMHUB_CONFIG": "{a_file}.toml"},
        "environment (WMHUB_CONFIG): <tmp>/not-a-directory.toml: no such file",
    ),
    "plugin_log_levels naming no installed plugin (config file)": (
        ["--config", "{file}"],
        {"file": 'plugin_log_levels = { shrue = "debug" }\n'},
        "<tmp>/wmhub.toml: plugin_log_levels.shrue: no installed plugin or vendor is named 'shrue' (the vendors: ",
    ),
    "keepalive = true (config file)": (
        ["--config", "{file}"],
        {"file": "[mqtt]\nkeepalive = true\n"},
        "<tmp>/wmhub.toml: mqtt.keepalive: must be a number, not true or false (got True)",
    ),
    "max_connecting = true (config file)": (
        ["--config", "{file}"],
        {"file": "max_connecting = true\n"},
        "<tmp>/wmhub.toml: max_connecting: must be a number, not true or false (got True)",
    ),
    # ~user of a user the machine does not know: Path.expanduser's RuntimeError stopped the hub with a traceback
    "data_dir under an unknown user's home (--data-dir)": (
        ["--data-dir", "~nosuchuser/wmhub"],
        {},
        "command line: data_dir: ~nosuchuser is no user's home directory on this machine",
    ),
    "mqtt.ca_file under an unknown user's home (config file)": (
        ["--config", "{file}"],
        {"file": '[mqtt]\nca_file = "~nosuchuser/ca.pem"\n'},
        "<tmp>/wmhub.toml: mqtt.ca_file: ~nosuchuser is no user's home directory on this machine",
    ),
    "the config file under an unknown user's home (WMHUB_CONFIG)": (
        [],
        {"WMHUB_CONFIG": "~nosuchuser/wmhub.toml"},
        "environment (WMHUB_CONFIG): ~nosuchuser is no user's home directory on this machine",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_setting_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    args, extra, expected = CASES[case]
    a_file = tmp_path / "not-a-directory"
    a_file.write_text("", encoding="utf-8")
    with port_in_use() as free_port:
        pass  # closed again: free now, and unlikely to be taken in the second this test runs
    with port_in_use() as busy_port:
        values = {"busy_port": str(busy_port), "a_file": str(a_file), "free_port": str(free_port)}
        values["long_dir"] = str(tmp_path / ("x" * 300))
        values["huge_file"] = str(tmp_path / "huge.toml")
        Path(values["huge_file"]).touch()
        os.truncate(values["huge_file"], 3 << 30)  # sparse: no disk used
        values["fifo"] = str(tmp_path / "fifo.toml")
        os.mkfifo(values["fifo"])
        if "file" in extra:
            values["file"] = str(config_file(tmp_path, extra["file"]))
        args = [arg.format(**values) for arg in args]
        env = {key: value.format(**values) for key, value in extra.items() if key.startswith("WMHUB_")}
        status, stderr, seconds = wmhub_run(tmp_path / "data", *args, env=env)
    lines = stderr.replace(str(tmp_path), "<tmp>").splitlines()
    record_check(
        "Startup",
        f"wmhub run, {case}",
        f"exit {status} after {seconds} s: {lines[-1] if lines else '(nothing)'}"
        if len(lines) == 1 and "Traceback" not in stderr
        else f"exit {status}, {len(lines)} lines{', a traceback' if 'Traceback' in stderr else ''}",
    )
    assert status == 2, stderr
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert expected.format(**values).replace(str(tmp_path), "<tmp>") in lines[0], lines[0]
    assert LEAKED_PASSWORD not in stderr and ":p@" not in stderr and "Part9" not in stderr, stderr
    assert "\x1b" not in stderr and "\x07" not in stderr and "PWNED" not in stderr, stderr
    assert not (tmp_path / "data" / "wmhub.sqlite3").exists()  # refused before anything started


# (settings in the environment, the file's text after its data_dir, the line expected): what a start-up check
# refuses is named with where its value came from, as a setting's wrong shape is
SOURCED_CASES = {
    "HTTP port in use, from the environment (left in a service's environment)": (
        {"WMHUB_HTTP__PORT": "{busy_port}"},
        "[http]\nport = 0\n[mqtt]\nurl = 'off'\n",
        "environment (WMHUB_HTTP__PORT): http.port: 127.0.0.1:{busy_port} is already in use",
    ),
    "HTTP port in use, from the file": (
        {},
        "[http]\nport = {busy_port}\n[mqtt]\nurl = 'off'\n",
        "<tmp>/wmhub.toml: http.port: 127.0.0.1:{busy_port} is already in use",
    ),
    "data_dir a file, from the environment": (
        {"WMHUB_DATA_DIR": "{a_file}"},
        "[http]\nport = 0\n[mqtt]\nurl = 'off'\n",
        "environment (WMHUB_DATA_DIR): data_dir: <tmp>/not-a-directory is a file, not a directory",
    ),
    # a security audit: an '@' on the line after the password hid it from the redaction; it was shown in clear
    "MQTT URL, a password ending in a secret file's line break, from the environment": (
        {"WMHUB_MQTT__URL": f"mqtt://wmhub:{LEAKED_PASSWORD}\n@127.0.0.1:1883"},
        "[http]\nport = 0\n[mqtt]\nurl = 'off'\n",
        "environment (WMHUB_MQTT__URL): mqtt.url: a URL holds a space or a control character (in a password, "
        "write a space as %20) (got 'mqtt://wmhub:***@127.0.0.1:1883')",
    ),
    "MQTT URL, a password ending in Windows line breaks, from the environment": (
        {"WMHUB_MQTT__URL": f"mqtt://wmhub:{LEAKED_PASSWORD}\r\n\r\n@127.0.0.1:1883"},
        "[http]\nport = 0\n[mqtt]\nurl = 'off'\n",
        "environment (WMHUB_MQTT__URL): mqtt.url: a URL holds a space or a control character (in a password, "
        "write a space as %20) (got 'mqtt://wmhub:***@127.0.0.1:1883')",
    ),
    # an outside audit: a password from `openssl rand -base64` (a '/') was refused as "the host or port of a URL
    # cannot be read", which sent the operator to the host and port
    "MQTT URL, a password with a raw '/', from the environment (docker compose)": (
        {"WMHUB_MQTT__URL": f"mqtt://wmhub:Gen/{LEAKED_PASSWORD}+x=@127.0.0.1:1883"},
        "[http]\nport = 0\n[mqtt]\nurl = 'off'\n",
        "environment (WMHUB_MQTT__URL): mqtt.url: a password or user name in a URL must have / ? # [ ] and % "
        "percent-encoded: '/' as %2F, '?' as %3F, '#' as %23, '[' as %5B, ']' as %5D, '%' as %25 "
        "(got 'mqtt://wmhub:***@127.0.0.1:1883')",
    ),
    "MQTT URL, a password with a raw '%', from the file": (
        {},
        f"[http]\nport = 0\n[mqtt]\nurl = 'mqtt://wmhub:50%off{LEAKED_PASSWORD}@127.0.0.1:1883'\n",
        "<tmp>/wmhub.toml: mqtt.url: a password or user name in a URL must have / ? # [ ] and % percent-encoded: "
        "'/' as %2F, '?' as %3F, '#' as %23, '[' as %5B, ']' as %5D, '%' as %25 (got 'mqtt://wmhub:***@127.0.0.1:1883')",
    ),
    "MQTT URL, a password with a raw ',', from the environment": (
        {"WMHUB_MQTT__URL": f"mqtt://wmhub:{LEAKED_PASSWORD},x@127.0.0.1:1883"},
        "[http]\nport = 0\n[mqtt]\nurl = 'off'\n",
        "environment (WMHUB_MQTT__URL): mqtt.url: a comma separates brokers: in a password, write ',' as %2C "
        "(got 'mqtt://wmhub:***@127.0.0.1:1883')",
    ),
    "mqtt.ca_file missing, from the environment": (
        {"WMHUB_MQTT__CA_FILE": "/nonexistent/ca.pem"},
        "[http]\nport = 0\n[mqtt]\nurl = 'mqtts://127.0.0.1:8883'\n",
        "environment (WMHUB_MQTT__CA_FILE): mqtt.ca_file: /nonexistent/ca.pem is not a readable file",
    ),
}


@pytest.mark.parametrize("case", list(SOURCED_CASES))
def test_a_start_up_check_names_where_the_refused_value_came_from(tmp_path: Path, case: str) -> None:
    """docs/deployment.md: the line names the key and where it came from. A WMHUB_HTTP__PORT left in a
    service's environment overrides the file's port: a line naming only ``http.port`` sends the tech to the
    file, where changing it changes nothing."""
    environ, text, expected = SOURCED_CASES[case]
    a_file = tmp_path / "not-a-directory"
    a_file.write_text("", encoding="utf-8")
    with port_in_use() as busy_port:
        values = {"busy_port": str(busy_port), "a_file": str(a_file)}
        path = config_file(tmp_path, 'data_dir = "data"\n' + text.format(**values))
        env = {**os.environ, "WMHUB_DISCOVERY__ENABLED": "false"}
        env.update({key: value.format(**values) for key, value in environ.items()})
        # --check takes a port in use as the running hub's: the file's port is checked by the start alone
        for check in [[]] if "in use" in expected else [[], ["--check"]]:
            done = subprocess.run(
                [sys.executable, "-m", "hub.cli", "run", "--config", str(path), *check],
                capture_output=True,
                text=True,
                timeout=EXIT_DEADLINE_S,
                env=env,
                check=False,
            )
            lines = done.stderr.replace(str(tmp_path), "<tmp>").splitlines()
            assert done.returncode == 2 and len(lines) == 1, done.stderr
            assert lines[0] == "wmhub: configuration error: " + expected.format(**values), lines[0]


def test_failure_after_start_stops_everything_and_exits_1(tmp_path: Path) -> None:
    """A start that fails past the checks stops what was started (the database's writer thread would keep
    the process alive) and exits 1. To get past them, the child runs with the checks switched off, so a
    device URL no plugin handles fails inside the hub's start."""
    script = (
        "import sys, hub.preflight, hub.cli\n"
        "hub.preflight.check_startup = lambda *args, **kwargs: None\n"
        "sys.exit(hub.cli.main(sys.argv[1:]))\n"
    )
    command = [sys.executable, "-c", script, "run", "--data-dir", str(tmp_path), "--mqtt", "off"]
    command += ["--http", "127.0.0.1:0", "--device", "shur://127.0.0.1"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=EXIT_DEADLINE_S, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the hub hung after a failed start: {exc.stderr!r}")
    last = done.stderr.splitlines()[-1] if done.stderr else ""
    record_check(
        "Startup",
        "a failure inside the hub's start, past the checks (a device URL no plugin handles)",
        f"stopped cleanly, exit {done.returncode}: {last[:120]}",
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "the hub stopped: no plugin handles" in last, done.stderr


async def test_a_needed_task_that_dies_after_the_start_stops_the_hub_and_fails(tmp_path: Path) -> None:
    """After the start, a task the hub cannot run without (here the store's ticker, whose clock breaks) ends:
    the hub stops everything cleanly and run_until_signalled raises, so ``wmhub run`` exits 1."""
    from hub.app import HubFailed
    from hub.compose import compose_hub
    from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
    from hub.persistence import Persistence
    from hub.plugins import PluginHost
    from hub.testing import eventually

    config = HubConfig(
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        http=HttpSettings(enabled=False),
        discovery=DiscoverySettings(enabled=False),
    )
    hub = compose_hub(config, PluginHost())
    running = asyncio.ensure_future(hub.run_until_signalled())

    def open_store() -> Persistence | None:
        try:
            return hub.persistence
        except RuntimeError:  # not open yet
            return None

    store = await eventually(open_store, what="the store open")

    async def broken_sleep(seconds: float) -> None:
        raise OSError("the clock broke")

    store.clock.sleep = broken_sleep  # type: ignore[method-assign]
    with pytest.raises(HubFailed, match=r"store's ticker .* ended: the clock broke"):
        await asyncio.wait_for(running, EXIT_DEADLINE_S)
    assert hub.stopped.is_set() and open_store() is None, "everything started was stopped"


async def a_database_with_a_performer_and_history(data_dir: Path) -> None:
    from hub.persistence import Persistence, Source
    from hub.persistence.history import encode_bucket
    from hub.state import StateStore

    store = await Persistence.open(data_dir, StateStore(), start_ticker=False)
    await store.performers.create("Anna", source=Source.CLI)
    series = store.history.series("shure-A", 1)
    for k in range(120):
        store.history.add_bucket(series, k * 10, encode_bucket([50, 50, 50, -60, -55, -50, -30, -20, -10]))
    await store.close()


def damage_the_first_page_of(database: Path, table: str) -> None:
    with sqlite3.connect(database) as connection:
        [(root,)] = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
        [(page_size,)] = connection.execute("PRAGMA page_size")
    with database.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(bytes(range(256)) * (page_size // 256))


def test_a_damaged_page_sets_the_file_aside_and_starts_on_a_fresh_one_with_what_could_be_read(tmp_path: Path) -> None:
    """One page that no longer reads back (here: the history table's) does not stop the hub: the damaged file
    is kept under another name, a fresh database holds every row still readable, one line says so."""
    asyncio.run(a_database_with_a_performer_and_history(tmp_path))
    damage_the_first_page_of(tmp_path / "wmhub.sqlite3", "history_blocks")
    with running_hub(tmp_path) as hub:
        status, performers = hub.get("/api/v1/performers")
        assert status == 200 and '"name":"Anna"' in performers.replace(" ", ""), performers
        stderr = hub.stop()
    assert hub.process.returncode == 0, stderr
    said = [line for line in stderr.splitlines() if '"level":"error"' in line]
    assert len(said) == 1 and "rows lost in: history_blocks" in said[0] and "monitoring continues" in said[0], stderr
    kept_files = [path.name for path in tmp_path.iterdir() if path.name.startswith("wmhub.sqlite3.damaged-")]
    [kept] = [name for name in kept_files if not name.endswith(("-wal", "-shm"))]  # its companions go with it
    assert kept in said[0]
    with sqlite3.connect(tmp_path / "wmhub.sqlite3") as fresh:
        assert fresh.execute("PRAGMA quick_check").fetchall() == [("ok",)]


def test_a_relative_data_dir_whose_database_is_locked_starts_degraded_on_a_read_only_view(tmp_path: Path) -> None:
    """``--data-dir data`` (relative to where the hub runs) on a database another program holds locked: the
    documented degraded start, reading the file as it is, instead of a stop."""
    asyncio.run(a_database_with_a_performer_and_history(tmp_path / "data"))
    other_program = sqlite3.connect(tmp_path / "data" / "wmhub.sqlite3")
    other_program.execute("PRAGMA locking_mode = EXCLUSIVE")
    other_program.execute("BEGIN EXCLUSIVE")
    try:
        with running_hub("data", cwd=tmp_path) as hub:
            assert '"status":"degraded"' in hub.get("/api/health")[1].replace(" ", "")
            status, performers = hub.get("/api/v1/performers")
            assert status == 200 and '"name":"Anna"' in performers.replace(" ", ""), performers
            stderr = hub.stop()
    finally:
        other_program.rollback()
        other_program.close()
    assert hub.process.returncode == 0, stderr
    assert "monitoring continues on a read-only view" in stderr, stderr


def test_a_second_hub_on_the_same_data_dir_refuses_to_start_and_a_dead_ones_lock_does_not_block(
    tmp_path: Path,
) -> None:
    """Two hubs on one database would overwrite each other's performers and audit entries: the second one
    says so in one line and exits 2. The first one killed (SIGKILL, no clean-up), the next start goes ahead."""
    with running_hub(tmp_path) as first:
        status, stderr, _ = wmhub_run(tmp_path)
        assert status == 2, stderr
        assert stderr.splitlines() == [
            f"wmhub: configuration error: command line: data_dir: {tmp_path} is in use by another running hub "
            f"(pid {first.process.pid}); each hub needs its own data_dir"
        ]
        first.process.kill()
        first.process.communicate()
    with running_hub(tmp_path) as after_the_crash:
        assert after_the_crash.get("/api/health")[0] == 200
        after_the_crash.stop()
    assert after_the_crash.process.returncode == 0


def test_the_running_hubs_configuration_started_again_names_the_running_hub_not_its_port(tmp_path: Path) -> None:
    """An outside audit: `wmhub run --config /etc/wmhub/wmhub.toml` by hand beside the service said its http.port
    "is already in use", as if another program held it, naming no hub: the data dir's lock was looked at after
    the ports. docs/deployment.md promises the line naming the running hub."""
    with running_hub(tmp_path) as first:
        status, stderr, _ = wmhub_run(tmp_path, "--http", f"127.0.0.1:{first.port}")
    assert status == 2, stderr
    assert stderr.splitlines() == [
        f"wmhub: configuration error: command line: data_dir: {tmp_path} is in use by another running hub "
        f"(pid {first.process.pid}); each hub needs its own data_dir"
    ]


def a_database_a_newer_build_migrated(data_dir: Path, *, stopped_cleanly: bool) -> None:
    """A data dir this build's hub started on, whose schema a newer build then raised to 99 (a rollback after an
    upgrade, docs/deployment.md "Upgrading"); not ``stopped_cleanly``, the newer build was killed and its
    migration is still in the database's WAL."""
    with running_hub(data_dir) as hub:
        hub.stop()
    database = data_dir / "wmhub.sqlite3"
    newer = sqlite3.connect(database, isolation_level=None)
    try:
        newer.execute("PRAGMA journal_mode=WAL")
        newer.execute("PRAGMA wal_autocheckpoint=0")
        newer.execute("INSERT INTO schema_version (version) VALUES (99)")
        if not stopped_cleanly:  # the files as a kill leaves them: the closing checkpoint would empty the WAL
            left = {suffix: Path(f"{database}{suffix}").read_bytes() for suffix in ("", "-wal")}
    finally:
        newer.close()
    if not stopped_cleanly:
        for suffix, content in left.items():
            Path(f"{database}{suffix}").write_bytes(content)


@pytest.mark.parametrize("stopped_cleanly", [True, False])
def test_a_database_of_a_newer_schema_is_refused_by_the_check_and_the_start_alike(
    tmp_path: Path, stopped_cleanly: bool
) -> None:
    """An outside audit: after a rollback, `wmhub run --check` said "configuration ok" for a data dir whose database a
    newer build had migrated, and the start then exited 1, which the documented unit restarted every 2 s. The check
    reads the schema version and changes nothing; the start refuses it in the same line, exit 2, which the unit
    does not restart (RestartPreventExitStatus=2)."""
    data_dir = tmp_path / "data"
    a_database_a_newer_build_migrated(data_dir, stopped_cleanly=stopped_cleanly)
    before = {path.name: path.read_bytes() for path in data_dir.iterdir()}
    refusal = (
        f"wmhub: configuration error: command line: data_dir: {data_dir}/wmhub.sqlite3 holds database schema 99, "
        f"newer than this hub knows ("
    )
    checked = wmhub_check(data_dir, "--http", "127.0.0.1:0")
    assert checked.returncode == 2 and checked.stdout == "", checked.stdout
    assert len(checked.stderr.splitlines()) == 1 and checked.stderr.startswith(refusal), checked.stderr
    assert {path.name: path.read_bytes() for path in data_dir.iterdir()} == before, "a check changes nothing"
    status, stderr, _ = wmhub_run(data_dir)
    assert status == 2 and stderr == checked.stderr
    assert {path.name: path.read_bytes() for path in data_dir.iterdir()} == before
    deployment = (Path(__file__).resolve().parent.parent / "docs" / "deployment.md").read_text(encoding="utf-8")
    unit = deployment.partition("```ini\n")[2].partition("```")[0]
    assert re.search(rf"^RestartPreventExitStatus=.*\b{status}\b", unit, re.MULTILINE), "the unit would restart it"


def test_a_newer_schema_is_refused_where_the_database_cannot_be_copied_to_read_its_wal(tmp_path: Path) -> None:
    """An outside review: with a WAL beside the database the check reads a private copy of the two; where the copy
    could not be written (a small /tmp) it gave up and said "configuration ok" for a database a newer build had
    migrated, checkpointed and written on. The file alone is read then."""
    data_dir = tmp_path / "data"
    a_database_a_newer_build_migrated(data_dir, stopped_cleanly=True)
    database = data_dir / "wmhub.sqlite3"
    newer = sqlite3.connect(database, isolation_level=None)
    try:
        newer.execute("PRAGMA journal_mode=WAL")
        newer.execute("PRAGMA wal_autocheckpoint=0")
        newer.execute("CREATE TABLE newer_builds_table (anything)")  # written after the checkpoint: in the WAL
        left = {suffix: Path(f"{database}{suffix}").read_bytes() for suffix in ("", "-wal")}
    finally:
        newer.close()
    for suffix, content in left.items():  # as a kill leaves them
        Path(f"{database}{suffix}").write_bytes(content)
    assert len(left[""]) > 8192 and left["-wal"], "a database larger than the copy may be, and a WAL beside it"
    command = [sys.executable, "-m", "hub.cli", "run", "--check", "--mqtt", "off", "--data-dir", str(data_dir)]
    checked = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WMHUB_DISCOVERY__ENABLED": "false"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192)),  # no file over 8 KB written
        check=False,
    )
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "holds database schema 99, newer than this hub knows" in checked.stderr


def set_writable(paths: list[Path], writable: bool) -> None:
    """What a read-only mount does to a data dir, for any user: root writes through file modes, but not
    through the immutable attribute (ext4, chattr). Paths gone meanwhile (a -wal checkpointed away) are skipped."""
    paths = [path for path in paths if path.exists()]
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i" if writable else "+i", *map(str, paths)], check=True)
    else:
        for path in paths:
            path.chmod((0o700 if path.is_dir() else 0o600) if writable else (0o500 if path.is_dir() else 0o400))


def test_a_read_only_data_dir_after_an_unclean_stop_resumes_writing_once_writable(tmp_path: Path) -> None:
    """A hub killed (-9) leaves its -wal, where its last changes are; restarted on the data dir made read-only,
    it cannot open the file for writing and reads a copy of it with that WAL (read without it, the services
    counted ids from an empty database and overwrote the row made before the crash). Once the dir is
    writable again the hub writes what it held (the promise: retries every 2 s, then 'database writes
    resumed')."""
    with running_hub(tmp_path) as first:
        token = (tmp_path / "api-token").read_text().strip()
        assert first.post("/api/v1/performers", '{"name": "Before the crash"}', token)[0] == 201
        first.process.kill()
        first.process.communicate()
    assert (tmp_path / "wmhub.sqlite3-wal").exists()
    read_only = [*tmp_path.iterdir(), tmp_path]
    set_writable(read_only, False)
    try:
        with running_hub(tmp_path) as hub:
            assert hub.post("/api/v1/performers", '{"name": "While read-only"}', token)[0] == 202  # held
            assert '"status":"degraded"' in hub.get("/api/health")[1].replace(" ", "")
            set_writable(read_only, True)
            deadline = time.monotonic() + EXIT_DEADLINE_S
            while '"status":"ok"' not in hub.get("/api/health")[1].replace(" ", ""):
                assert time.monotonic() < deadline, "writes never resumed"
                time.sleep(0.2)
            stderr = hub.stop()
    finally:
        set_writable(read_only, True)
    assert "database writes resumed" in stderr and "not stored" not in stderr, stderr
    with sqlite3.connect(tmp_path / "wmhub.sqlite3") as database:
        names = [name for (name,) in database.execute("SELECT name FROM performers ORDER BY id")]
    assert names == ["Before the crash", "While read-only"]


def test_a_stop_that_cannot_store_what_the_hub_accepted_exits_1_naming_what_was_lost(tmp_path: Path) -> None:
    """A full disk (a file-size limit: no file grows past 1 KB, so nothing reaches the WAL) holds a change the hub
    accepted (202) in memory; a stop then could not store it and exited 0, the status of a clean stop, with only a
    log line saying it was lost. It exits 1, the line naming what was lost."""
    with running_hub(tmp_path) as first:
        token = (tmp_path / "api-token").read_text().strip()
        first.stop()
    assert first.process.returncode == 0
    with running_hub(tmp_path, file_size_limit=1024) as hub:
        assert hub.post("/api/v1/performers", '{"name": "Held"}', token)[0] == 202
        stderr = hub.stop()
    assert hub.process.returncode == 1, stderr
    [lost] = [line for line in stderr.splitlines() if "not stored" in line]
    assert "performers 1" in lost and "audit" in lost, lost


def test_a_token_with_a_trailing_line_break_is_the_token_without_it(tmp_path: Path) -> None:
    """``WMHUB_HTTP__TOKEN=$(cat secret-file)``-style values end in a line break: the hub started, then
    refused every client (it stripped what clients sent, not its own token)."""
    token = "spaced-token-0123456789abcdef"
    with running_hub(tmp_path / "data", env={"WMHUB_HTTP__TOKEN": f"{token}\n"}) as hub:
        status, body = hub.post("/api/v1/performers", '{"name": "Jim"}', token)
        assert status == 201, body
        assert hub.post("/api/v1/performers", '{"name": "Jo"}', "spaced-token-0123456789abcde")[0] == 401


def test_a_tls_file_that_cannot_be_read_is_refused_naming_the_key_and_the_path(tmp_path: Path) -> None:
    """A root-owned key of mode 600 passed the start check (it is a file) and the hub then stopped with a bare
    "Permission denied". Root reads a mode-000 file, so as root the file is one of /proc's that opens but
    cannot be read (EINVAL): the check must read, as the TLS setup does, not only look."""
    if os.geteuid() == 0:
        unreadable = "/proc/self/clear_refs"
    else:
        key = tmp_path / "hub.key"
        key.write_text("-----BEGIN PRIVATE KEY-----\n", encoding="utf-8")
        key.chmod(0)
        unreadable = str(key)
    path = config_file(tmp_path, f'[mqtt]\nkey_file = "{unreadable}"\n')
    status, stderr, _ = wmhub_run(tmp_path / "data", "--config", str(path), "--mqtt", "mqtts://127.0.0.1:8883")
    lines = stderr.splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert f"mqtt.key_file: {unreadable} cannot be read (" in lines[0], lines[0]


def wmhub_check(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``wmhub run --check`` (no MQTT unless ``args`` say otherwise) as a child process."""
    command = [sys.executable, "-m", "hub.cli", "run", "--check", "--mqtt", "off", "--data-dir", str(data_dir)]
    environ = {**os.environ, "WMHUB_DISCOVERY__ENABLED": "false", **(env or {})}
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, env=environ)


def test_check_says_whether_a_configuration_would_start_beside_the_running_hub(tmp_path: Path) -> None:
    """An outside audit following the deployment docs: there was no way to check a configuration before
    restarting the service with it; ``wmhub run`` beside the running hub stopped at its port or data dir."""
    data_dir = tmp_path / "data"
    with running_hub(data_dir) as hub:
        good = wmhub_check(data_dir, "--http", f"127.0.0.1:{hub.port}")
        bad = wmhub_check(data_dir, "--http", f"127.0.0.1:{hub.port}", "--device", "shur://127.0.0.1")
    assert (good.returncode, good.stdout.strip(), good.stderr) == (
        0,
        "wmhub: configuration ok (0 device(s), MQTT off)",
        "",
    )
    assert bad.returncode == 2 and bad.stderr.startswith("wmhub: configuration error: --device: no plugin handles")


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("shure://0.0.0.0", "0.0.0.0 is the unspecified address (any address of this machine), no receiver's"),
        ("shure://[::]", ":: is the unspecified address (any address of this machine), no receiver's"),
        ("sennheiser-ssc://239.255.0.1:45", "239.255.0.1 is a multicast group, no receiver's address"),
        ("shure://[ff02::1]", "ff02::1 is a multicast group, no receiver's address"),
        ("shure-uhfr://255.255.255.255", "255.255.255.255 is the broadcast address, no receiver's"),
    ],
)
def test_check_refuses_a_device_at_an_address_no_receiver_has(tmp_path: Path, url: str, said: str) -> None:
    """An outside audit: --check said "configuration ok" for these, and the hub then connected to itself
    (0.0.0.0) or sent requests into a multicast group every retry, for ever; its discovery already skipped
    exactly these addresses."""
    checked = wmhub_check(tmp_path / "data", "--device", url)
    lines = checked.stderr.splitlines()
    assert checked.returncode == 2 and len(lines) == 1, checked.stderr
    assert lines[0].startswith("wmhub: configuration error: --device: ") and said in lines[0], lines[0]


@pytest.mark.parametrize("scheme", ["sennheiser-g4", "sennheiser-iem-g4"])
def test_check_refuses_an_ipv6_address_for_the_ipv4_only_g4_devices(tmp_path: Path, scheme: str) -> None:
    """An outside audit: --check said "configuration ok" for sennheiser-g4://[::1], and the hub then failed at
    every attempt for ever ("Address family for hostname not supported"), its device "no answer from device"."""
    checked = wmhub_check(tmp_path / "data", "--device", f"{scheme}://[::1]:53212?local_port=0")
    lines = checked.stderr.splitlines()
    assert checked.returncode == 2 and len(lines) == 1, checked.stderr
    assert f"{scheme}: ew G3/G4/2000 and IEM G4 devices speak IPv4 only" in lines[0], lines[0]
    mapped = wmhub_check(tmp_path / "data", "--device", f"{scheme}://[::ffff:127.0.0.1]:53212?local_port=0")
    assert mapped.returncode == 0, mapped.stderr  # an IPv4 address written the IPv6 way


@pytest.mark.parametrize("key", ["http.port", "mqtt.embedded_port"])
def test_check_refuses_a_port_another_program_holds_when_no_hub_runs_on_the_data_dir(tmp_path: Path, key: str) -> None:
    """An outside audit: `wmhub run --check` said "configuration ok" for a port a program other than a hub held
    (every port in use was waived), and `wmhub run` with the same settings then refused it."""
    with port_in_use() as port:
        if key == "http.port":
            args, env, source = ["--http", f"127.0.0.1:{port}"], {}, "command line"
        else:
            args, env = ["--http", "127.0.0.1:0", "--mqtt", "embedded"], {"WMHUB_MQTT__EMBEDDED_PORT": str(port)}
            source = "environment (WMHUB_MQTT__EMBEDDED_PORT)"
        checked = wmhub_check(tmp_path / "data", *args, env=env)
        status, stderr, _ = wmhub_run(tmp_path / "data", *args, env=env)
    assert status == 2 and f"{key}: 127.0.0.1:{port} is already in use" in stderr, stderr
    assert checked.returncode == 2 and checked.stdout == "", checked.stdout
    refusal = f"wmhub: configuration error: {source}: {key}: 127.0.0.1:{port} is already in use"
    assert checked.stderr.startswith(refusal), checked.stderr
    assert not (tmp_path / "data" / "wmhub.sqlite3").exists(), "a check starts nothing"


def test_a_demo_without_plugins_offering_simulators_says_so(tmp_path: Path) -> None:
    """An outside audit: the core installed without its plugins ran the demo with no device, and not a word."""
    with running_hub(tmp_path / "data", "--demo", env={"WMHUB_LOAD_PLUGINS": ""}) as hub:
        assert '"total":0' in hub.get("/api/v1/devices")[1]
        stderr = hub.stop()
    assert "demo: no plugin offers simulated devices" in stderr, stderr


@pytest.mark.parametrize(
    ("args", "env", "hub_id"),
    [
        (("--demo",), {}, "demo"),
        (("--demo", "--hub-id", "stage-2"), {}, "stage-2"),
        (("--demo",), {"WMHUB_HUB_ID": "foh"}, "foh"),
    ],
)
def test_the_demo_is_hub_demo_unless_given_an_id(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], hub_id: str
) -> None:
    """An outside audit: scripts/demo.sh's hub was wmhub-<hostname>, so docs/mqtt.md's commands to
    wmhub/hubs/demo/request/... reached no hub; an id given still wins."""
    with running_hub(tmp_path / "data", *args, env={"WMHUB_LOAD_PLUGINS": "", **env}) as hub:
        status, body = hub.get("/api/v1/hub")
    assert status == 200 and json.loads(body)["hub_id"] == hub_id


def test_device_flags_add_to_the_devices_of_the_configuration_file(tmp_path: Path) -> None:
    """An outside audit: `--device` ("add a device (repeatable)") replaced the file's devices, so a receiver
    added by flag for one show took every receiver of the file off the board."""
    path = config_file(tmp_path, 'devices = ["shure://127.0.0.1:20001", "shure://127.0.0.1:20002"]\n')
    flags = ["--config", str(path), "--device", "shure://127.0.0.1:20003", "--device", "shure://127.0.0.1:20002"]
    checked = wmhub_check(tmp_path / "data", "--http", "127.0.0.1:0", *flags)
    assert checked.returncode == 0 and "configuration ok (3 device(s)" in checked.stdout, checked.stderr
    with running_hub(tmp_path / "data", *flags) as hub:
        _, body = hub.get("/api/health")  # no receiver answers there: each is a connection the hub keeps trying
    connecting = [connection["url"] for connection in json.loads(body)["connections"]]
    assert sorted(connecting) == [f"shure://127.0.0.1:{port}" for port in (20001, 20002, 20003)]


@pytest.mark.parametrize(
    ("keys", "said"),
    [
        (("ulxd", "ULXD"), "keys 'ulxd' and 'ULXD' name the same family (ulxd)"),
        (('"slxd-g58+"', "slxd-g58"), "keys 'slxd-g58+' and 'slxd-g58' name the same family (slxd-g58)"),
        (('"+-"',), "key '+-' names no family"),
    ],
)
def test_check_refuses_frequency_band_keys_that_clash_or_name_nothing(
    tmp_path: Path, keys: tuple[str, ...], said: str
) -> None:
    """Keys that read alike once compared as families left it to their order which band a receiver got, and a
    key of punctuation matched none; `wmhub run --check` said "configuration ok" (an outside audit)."""
    path = tmp_path / "hub.toml"
    path.write_text("[frequency.bands]\n" + "".join(f"{key} = {{low_mhz = 470.0, high_mhz = 534.0}}\n" for key in keys))
    status, stderr, _ = wmhub_run(tmp_path / "data", "--check", "--config", str(path))
    lines = stderr.splitlines()
    assert status == 2 and len(lines) == 1 and said in lines[0], stderr


@contextmanager
def mqtt_default_port_taken() -> Iterator[None]:
    """127.0.0.1:1883 held, as by the Mosquitto of a home-automation machine (this one may run one already)."""
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", 1883))
            holder.listen()
        except OSError:  # taken already: by the broker this machine runs
            pass
        yield


@dataclass(frozen=True)
class BrokerAt:
    host: str
    port: int


def wmhub_logging_to(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``wmhub run`` (HTTP on any free port) as a child process writing its log to ``log``; no WMHUB_* variable
    of the caller's changes its settings."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("WMHUB_")}
    command = [sys.executable, "-m", "hub.cli", "run", "--http", "127.0.0.1:0", *args]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=out, env={**environ, "WMHUB_DISCOVERY__ENABLED": "false"})


async def test_the_demo_takes_a_free_broker_port_when_1883_is_taken_and_says_where(tmp_path: Path) -> None:
    """An outside audit: the README's first command (scripts/demo.sh, `wmhub run --demo`) exited 2 with
    "mqtt.embedded_port: 127.0.0.1:1883 is already in use" on a machine that runs an MQTT broker, naming no
    way out. With the port left at its default the demo takes a free one, and one line says where."""
    log = tmp_path / "hub.log"
    with mqtt_default_port_taken():
        process = wmhub_logging_to(log, "--demo", "--data-dir", str(tmp_path / "demo"), "--hub-id", "demo1883")
        try:
            said = "demo: 127.0.0.1:1883 is taken (an MQTT broker already runs there?): the embedded broker listens on "
            deadline = time.monotonic() + EXIT_DEADLINE_S
            while said not in (text := log.read_text(encoding="utf-8")):
                assert process.poll() is None, f"the demo exited with {process.returncode}: {text}"
                assert time.monotonic() < deadline, f"no line saying where the broker is: {text}"
                await asyncio.sleep(0.1)
            port = int(text.split(said)[1].split(":")[1].split(" ")[0])
            assert port != 1883
            async with MqttProbe(BrokerAt("127.0.0.1", port)) as probe:  # type: ignore[arg-type]
                await probe.subscribe("wmhub/#")
                await probe.json("wmhub/hubs/demo1883/state", lambda state: state["state"] == "online")
        finally:
            process.terminate()
            assert process.wait(EXIT_DEADLINE_S) == 0, log.read_text(encoding="utf-8")


@pytest.mark.parametrize("demo", [True, False], ids=["demo", "run"])
def test_an_embedded_broker_port_set_and_taken_is_refused_saying_how_to_choose_another(
    tmp_path: Path, demo: bool
) -> None:
    """The port the user set (here in the environment) stays theirs, in the demo too: refused when taken, and the
    line says where else it is set (there is no flag for it) or how to use the broker already there."""
    with port_in_use() as port:
        args = ["--mqtt", "embedded", *(["--demo"] if demo else [])]
        status, stderr, _ = wmhub_run(tmp_path / "data", *args, env={"WMHUB_MQTT__EMBEDDED_PORT": str(port)})
    lines = stderr.splitlines()
    assert status == 2 and len(lines) == 1, stderr
    assert lines[0] == (
        "wmhub: configuration error: environment (WMHUB_MQTT__EMBEDDED_PORT): mqtt.embedded_port: "
        f"127.0.0.1:{port} is already in use; choose another with "
        "WMHUB_MQTT__EMBEDDED_PORT=<port> or mqtt.embedded_port in the config file (0: any free port), or use a "
        "broker already running with --mqtt mqtt://host:port"
    )


@pytest.mark.alone("a start beside other tests' processes can be late for their sake, not the hub's")
def test_a_normal_start_is_not_reported_as_the_hub_falling_behind(tmp_path: Path) -> None:
    """An outside audit: nearly every start of the demo (or with no device at all) logged "the hub is not keeping
    up ... 600 ms late": the loop monitor ran while the hub started (the demo's simulators, the web edge's
    OpenAPI document), one-off work it took for the hub falling behind."""
    with running_hub(tmp_path / "data", "--demo") as hub:
        status, metrics = hub.get("/metrics")
        stderr = hub.stop()
    assert status == 200 and "\nwmhub_loop_late_total 0.0\n" in metrics, metrics
    assert "not keeping up" not in stderr, stderr


# `python -c` this, then `run ...` and a trigger file: the hub runs with a wall clock that steps an hour forward
# once the file exists (and says so in <file>.stepped), as NTP's first sync steps it on a rack PC or a Pi
# without a real-time clock
WALL_CLOCK_STEP = """
import os, sys, threading, time
real_time, offset, trigger = time.time, [0.0], sys.argv.pop()
time.time = lambda: real_time() + offset[0]
def step():
    while not os.path.exists(trigger):
        threading.Event().wait(0.05)
    offset[0] = 3600.0
    open(trigger + ".stepped", "w").close()
threading.Thread(target=step, daemon=True).start()
from hub.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_uptime_does_not_follow_a_step_of_the_wall_clock(tmp_path: Path) -> None:
    """An outside audit: /api/health's uptime_s was the wall clock minus the start time; an hour's step of the
    clock after the start made it 3604 s four seconds later (or negative, stepped back)."""
    port = free_port()
    trigger = tmp_path / "step-now"
    command = [sys.executable, "-c", WALL_CLOCK_STEP, "run", "--mqtt", "off", "--data-dir", str(tmp_path / "data")]
    environment = {**os.environ, "WMHUB_DISCOVERY__ENABLED": "false"}
    process = subprocess.Popen(
        [*command, "--http", f"127.0.0.1:{port}", str(trigger)], env=environment, stderr=subprocess.DEVNULL
    )
    hub = RunningHub(port, process)
    try:
        deadline = time.monotonic() + EXIT_DEADLINE_S
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "the hub did not answer HTTP in time"
            try:
                before = json.loads(hub.get("/api/health")[1])["uptime_s"]
                break
            except OSError:
                time.sleep(0.1)
        asked = time.monotonic()
        trigger.touch()
        while not (tmp_path / "step-now.stepped").exists():
            assert time.monotonic() < deadline, "the wall clock was not stepped"
            time.sleep(0.05)
        after = json.loads(hub.get("/api/health")[1])["uptime_s"]
        elapsed = time.monotonic() - asked
    finally:
        hub.stop()
    assert before <= after <= before + elapsed + 0.5, (before, after, elapsed)


def ignores_sighup(pid: int) -> bool:
    """Whether the process ignores SIGHUP (the kernel discards it on sending), from /proc/<pid>/status."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
    return bool(ignored & (1 << (signal.SIGHUP - 1)))


def test_a_hub_started_with_nohup_outlives_its_terminal(tmp_path: Path) -> None:
    """SIGHUP stops a hub cleanly (its terminal closed) unless the hub was started with SIGHUP ignored, as
    `nohup wmhub run ... &` does (docs/deployment.md): that one was asked to outlive its terminal."""
    with running_hub(tmp_path / "data", launcher=("nohup",)) as hub:
        assert ignores_sighup(hub.process.pid), "the hub took SIGHUP over from nohup"
        hub.process.send_signal(signal.SIGHUP)  # discarded by the kernel: nothing to wait for
        status, _ = hub.get("/api/health")
        stderr = hub.stop()
    assert status == 200 and hub.process.returncode == 0, stderr
    assert stderr.count('"shutting down"') == 1, stderr


def test_stop_signals_that_keep_coming_while_the_hub_stops_leave_its_exit_status_0(tmp_path: Path) -> None:
    """A closing terminal can send SIGHUP twice (the kernel's hangup, then the shell's), a user presses Ctrl-C
    again: one arriving after the loop had closed (and put the default action back) killed a hub whose stop had
    finished cleanly, exit status -1. Here SIGHUP keeps coming, every 2 ms, from the first until the exit."""
    with running_hub(tmp_path / "data") as hub:
        deadline = time.monotonic() + EXIT_DEADLINE_S
        while hub.process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                hub.process.send_signal(signal.SIGHUP)
            time.sleep(0.002)  # the stimulus' pace, not a wait for a condition
        _, stderr = hub.process.communicate(timeout=EXIT_DEADLINE_S)
    assert hub.process.returncode == 0, stderr
    assert stderr.count('"shutting down"') == 1, stderr


@pytest.mark.parametrize("where", ["file", "environment"])
def test_an_integer_of_thousands_of_digits_is_a_configuration_error(tmp_path: Path, where: str) -> None:
    """An outside audit: an integer of more than 4,300 digits (CPython's int() refuses it: tomllib and json pass
    the ValueError on) in the file or in WMHUB_DEVICES made `wmhub run --check` print a traceback, status 1."""
    huge = "1" * 4301
    path = tmp_path / "hub.toml"
    path.write_text(f"offline_after_s = {huge}\n" if where == "file" else "", encoding="utf-8")
    env = {"WMHUB_DEVICES": f"[{huge}]"} if where == "environment" else {}
    checked = wmhub_check(tmp_path / "data", "--config", str(path), env=env)
    lines = checked.stderr.splitlines()
    assert checked.returncode == 2 and len(lines) == 1 and "Traceback" not in checked.stderr, checked.stderr[-300:]
    source = f"{path}: not valid TOML (" if where == "file" else "environment (WMHUB_DEVICES): devices: "
    assert lines[0].startswith(f"wmhub: configuration error: {source}"), lines[0][:200]


HUGE = "a" * 100_000
# a 100 KB value where a short one belongs (a file's content pasted into a service's environment), and the key it
# is refused under
HUGE_VALUES = {
    "no scheme": ({"WMHUB_DEVICES": HUGE}, "WMHUB_DEVICES: no plugin handles"),
    "a JSON list": ({"WMHUB_DEVICES": f'["{HUGE}"]'}, "environment (WMHUB_DEVICES): devices: no plugin handles"),
    "no host name": ({"WMHUB_DEVICES": f"shure://{HUGE}"}, "WMHUB_DEVICES: 'shure://aaa"),
    "no port": ({"WMHUB_DEVICES": f"shure://host:{'9' * 100_000}"}, "its port is not a number from 1 to 65535"),
    "a hub id": ({"WMHUB_HUB_ID": HUGE}, "environment (WMHUB_HUB_ID): hub_id: String should have at most"),
    "a log level": ({"WMHUB_LOG_LEVEL": HUGE}, "environment (WMHUB_LOG_LEVEL): log_level: Input should be"),
}


@pytest.mark.parametrize("case", list(HUGE_VALUES))
def test_a_huge_bad_value_in_the_environment_is_refused_in_one_short_line(tmp_path: Path, case: str) -> None:
    """An outside audit: an invalid WMHUB_DEVICES of 100 KB was refused in an error line that repeated all of it."""
    env, expected = HUGE_VALUES[case]
    status, stderr, _ = wmhub_run(tmp_path / "data", env=env)
    lines = stderr.splitlines()
    assert status == 2 and len(lines) == 1, stderr[:500]
    assert expected in lines[0] and "characters)" in lines[0] and len(lines[0]) < 500, lines[0][:1000]
