"""Logging: readable lines on a terminal, one JSON object per line otherwise (journald, Docker, files).

Every line goes through hub.redact on its way out, whatever a plugin or library put in it. On a terminal a
message's control characters are shown escaped (``\\x1b``); JSON escapes them itself.

Every record carries its logger name (``hub.device.shure`` …) and, where a driver logged it, the device.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

from hub.redact import redact, redact_values, redacted_text
from hub.text import escape_controls

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in record.__dict__.items() if key not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(redact_values(entry), default=redacted_text).decode()


class TerminalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        device = getattr(record, "device", None)
        context = f" [{escape_controls(str(device))}]" if device else ""
        # a message (a device URL, a plugin's text) is shown with its control characters escaped: on a terminal
        # an ESC sequence would set the title or clear the screen, and a line break would forge a log line
        message = escape_controls(record.getMessage())
        name = escape_controls(record.name)
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {name}{context}: {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def set_levels(levels: Mapping[str, str]) -> None:
    """Each named logger at its level (``{"hub.device.shure": "debug"}``)."""
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level.upper())


def setup_logging(level: str = "info", plugin_levels: Mapping[str, str] | None = None) -> None:
    """Configure the root logger once; ``plugin_levels`` maps a vendor (``shure``) to its own level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TerminalFormatter() if sys.stderr.isatty() else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # before the plugins load, a key is taken as a vendor whose package is wmhub_<vendor>, so what they log
    # as they load follows it too; the command line then sets the loggers each key really names (set_levels)
    for vendor, vendor_level in (plugin_levels or {}).items():
        set_levels({f"hub.device.{vendor}": vendor_level, f"wmhub_{vendor}": vendor_level})
    # aiosqlite logs every statement with its parameters at debug: device URLs, passwords included
    for noisy in ("amqtt", "transitions", "aiohttp.access", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
