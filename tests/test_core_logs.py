"""Logs: one JSON object per line off a terminal, with the device and plugin context on every line."""

import asyncio
import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.logs import setup_logging
from hub.testing import interrupt
from tests.mosquitto import free_port


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("hub.device.shure").setLevel(logging.NOTSET)
    logging.getLogger("wmhub_shure").setLevel(logging.NOTSET)


def test_lines_are_json_with_device_context_and_per_plugin_levels(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info", {"shure": "warning"})
    device_log = logging.LoggerAdapter(logging.getLogger("hub.device.shure"), {"device": "shure-rx1"})
    device_log.info("quiet: shure is at warning")
    device_log.warning("device unavailable: %s", "timeout")
    logging.getLogger("hub").info("hub started")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == ["device unavailable: timeout", "hub started"]
    assert lines[0]["device"] == "shure-rx1" and lines[0]["logger"] == "hub.device.shure"
    assert lines[0]["level"] == "warning" and "device" not in lines[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def raise_and_log(logger: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
    try:
        {}["missing"]
    except KeyError:
        logger.exception("poll failed")


def test_on_a_terminal_lines_are_for_people_with_the_device_and_the_traceback(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    setup_logging("info")
    device_log = logging.LoggerAdapter(logging.getLogger("hub.device.shure"), {"device": "shure-rx1"})
    device_log.warning("device unavailable: %s", "timeout")
    raise_and_log(logging.getLogger("hub"))
    first, second, *traceback = terminal.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING hub\.device\.shure \[shure-rx1\]: device unavailable: timeout", first)
    assert re.fullmatch(r"\d\d:\d\d:\d\d ERROR   hub: poll failed", second)
    assert traceback[0] == "Traceback (most recent call last):" and traceback[-1] == "KeyError: 'missing'"


def test_off_a_terminal_an_exception_travels_inside_its_json_line(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info")
    raise_and_log(logging.getLogger("hub"))
    [line] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert line["message"] == "poll failed" and line["level"] == "error"
    assert line["exception"].endswith("KeyError: 'missing'")


def test_on_a_terminal_control_characters_in_a_message_are_shown_escaped(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second line of defence behind the URL check: whatever a message holds (a device's text, a URL from
    an earlier version), an ESC, a BEL or a line break reaches the terminal as a visible escape, never raw."""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    setup_logging("info")
    forged = "x\x1b]0;PWNED\x07\x1b[2J\n12:00:00 ERROR   hub: forged line\x85\u202e\x7f"
    device_log = logging.LoggerAdapter(logging.getLogger("hub.device.shure"), {"device": "rx\x1b[31m"})
    device_log.warning("device %s added", forged)
    [line] = terminal.getvalue().splitlines()
    assert not re.search("[\x00-\x1f\x7f-\x9f\u202e]", line), repr(line)
    assert line.endswith(
        r"[rx\x1b[31m]: device x\x1b]0;PWNED\x07\x1b[2J\n12:00:00 ERROR   hub: forged line\x85\u202e\x7f added"
    ), line


ZETA_PLUGIN = """
import logging

from hub import hookimpl
from hub.hookspecs import DriverSpec
from hub.testing import QuietDriver


class ZetaDriver(QuietDriver):
    async def connect(self):
        self.sink.log.debug("zeta device debug line")
        logging.getLogger(__name__).debug("zeta package debug line")
        self.sink.identify(unique_id="Z1", family="z", model="Z-1", channel_count=1)


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="zeta", vendor="zeta", families=("z",), factory=ZetaDriver, default_port=1))
"""


@pytest.fixture(scope="module")
def zeta_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An installed plugin whose vendor (zeta), entry point (zdevices), distribution (wmhub-zdist) and package
    (acmepkg) all have other names, as nothing forbids."""
    site = tmp_path_factory.mktemp("zeta-site")
    (site / "acmepkg").mkdir()
    (site / "acmepkg" / "__init__.py").write_text("")
    (site / "acmepkg" / "plugin.py").write_text(ZETA_PLUGIN)
    dist = site / "wmhub_zdist-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wmhub-zdist\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[wmhub]\nzdevices = acmepkg.plugin\n")
    return site


@pytest.mark.parametrize("key", ["zeta", "zdevices", "wmhub-zdist"])
async def test_plugin_log_levels_take_the_vendor_or_its_plugins_name(zeta_site: Path, tmp_path: Path, key: str) -> None:
    """An outside audit: keys are documented as vendors and set hub.device.<key>, but were checked against the
    entry-point names; for a plugin whose vendor is named otherwise the vendor was refused (exit 2), and its
    entry-point name set a logger none of its devices use. Each name now raises the plugin's devices' and
    package's level."""
    env = {
        **os.environ,
        "PYTHONPATH": str(zeta_site),
        "WMHUB_LOAD_PLUGINS": "zdevices",
        "WMHUB_LOG_LEVEL": "info",
        f"WMHUB_PLUGIN_LOG_LEVELS__{key.upper().replace('-', '_')}": "debug",
    }
    hub = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "run", "--mqtt", "off", "--http", f"127.0.0.1:{free_port()}",
        "--data-dir", str(tmp_path), "--device", "zeta://127.0.0.1:1", env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert hub.stderr is not None
    seen: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(30):
            while not {"zeta device debug line", "zeta package debug line"} <= {line["message"] for line in seen}:
                raw = await hub.stderr.readline()
                assert raw, f"the hub ended (exit {await hub.wait()}): {seen}"
                seen.append(json.loads(raw))
    finally:
        await interrupt(hub)
    device_line = next(line for line in seen if line["message"] == "zeta device debug line")
    assert device_line["logger"] == "hub.device.zeta" and device_line["level"] == "debug"
