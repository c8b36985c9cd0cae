"""Logs: one JSON object per line off a terminal, with the device and plugin context on every line."""

import json
import logging
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
