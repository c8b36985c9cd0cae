"""Logs: one JSON object per line off a terminal, with the device and plugin context on every line."""

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from hub.logs import setup_logging


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
