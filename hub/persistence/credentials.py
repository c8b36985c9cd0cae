"""Device URLs that carry a password, kept out of the database.

The database, its audit log and its alerts hold a known device's URL as shown to people (``hub.redact``);
the URL the driver needs, password included, lives only in ``<data_dir>/device-credentials.json``,
readable by the hub's user alone and keyed by the shown URL. A database copied for a bug report, or read
through the API, then holds no device password.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Final

from hub.redact import redact

log = logging.getLogger("hub.persistence")

CREDENTIALS_FILE: Final = "device-credentials.json"


class DeviceCredentials:
    """The device URLs with a password, by their shown URL; ``path`` None keeps them for this run only (a
    store in memory)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._urls: dict[str, str] = {}
        if path is None:
            return
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            stored = {}
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s): devices with a password in their URL need to be added again", path, exc)
            stored = {}
        if isinstance(stored, dict):
            self._urls = {str(shown): str(url) for shown, url in stored.items()}

    def keep(self, url: str) -> str:
        """Remember ``url`` if it carries a secret; the URL as shown, which the database may hold."""
        shown = redact(url)
        if shown != url and self._urls.get(shown) != url:
            self._urls[shown] = url
            self._save()
        return shown

    def forget(self, shown: str) -> None:
        if self._urls.pop(shown, None) is not None:
            self._save()

    def full(self, shown: str) -> str:
        """The URL to connect with: the stored one with its password, or ``shown`` when it needs none."""
        return self._urls.get(shown, shown)

    def write_again_if_gone(self) -> str | None:
        """Write the file again if it is gone while it has URLs to hold (the data dir deleted under the running
        hub): the next start still connects with the passwords. The file's name when written, else None."""
        if self.path is None or not self._urls or self.path.exists():
            return None
        return self.path.name if self._save() else None

    def _save(self) -> bool:
        """Write the whole file anew (a handful of devices), owner-only from its first byte; whether it was."""
        if self.path is None:
            return False
        temporary = self.path.with_suffix(".tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(self._urls, file, indent=1, sort_keys=True)
            os.replace(temporary, self.path)
        except OSError as exc:
            # a read-only or full data dir: the device is watched this run and must be added again after it
            log.error("cannot store device credentials in %s (%s): they last until the hub stops", self.path, exc)
            return False
        return True
