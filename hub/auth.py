"""The API token that guards every write and control path (REST, the board, and optionally MQTT requests).

It is ``http.token`` from the configuration or, when unset, the one stored in ``<data_dir>/api-token``
(file mode 600), generated and logged once at the first start.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Final

log = logging.getLogger("hub.auth")

TOKEN_FILE: Final = "api-token"


def stored_token(data_dir: Path) -> str | None:
    """The token stored in ``data_dir``, or None when none is stored yet; a file that cannot be read raises."""
    try:
        return (data_dir / TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def load_or_create_token(data_dir: Path) -> str:
    """Read the stored token, or generate one and store it readable by the owner only."""
    stored = stored_token(data_dir)
    if stored:
        return stored
    path = data_dir / TOKEN_FILE
    token = secrets.token_urlsafe(32)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        _store(path, token)
    except OSError as exc:
        # a read-only or full data dir must not keep the hub from monitoring: this token lasts one run
        log.error("cannot store the API token in %s (%s); valid until the hub stops: %s", path, exc.strerror, token)
        return token
    log.warning("generated the API token for writes (stored in %s): %s", path, token)
    return token


def store_token_again(data_dir: Path, token: str) -> str | None:
    """Store ``token`` again if its file is gone (the data dir deleted under the running hub): the token every
    client holds stays valid after the next start. The file's name when written; None when it was there."""
    path = data_dir / TOKEN_FILE
    if path.exists():
        return None
    _store(path, token)
    return TOKEN_FILE


def _store(path: Path, token: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison, so the time taken says nothing about how much of a guess was right."""
    return bool(given) and hmac.compare_digest(str(given).strip().encode(), token.encode())
