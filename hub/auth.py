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


def load_or_create_token(data_dir: Path) -> str:
    """Read the stored token, or generate one and store it readable by the owner only."""
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""  # nosec B105 # an empty string means 'no stored token yet', not a password
    if token:
        return token
    token = secrets.token_urlsafe(32)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(token + "\n")
        os.chmod(path, 0o600)
    except OSError as exc:
        # a read-only or full data dir must not keep the hub from monitoring: this token lasts one run
        log.error("cannot store the API token in %s (%s); valid until the hub stops: %s", path, exc.strerror, token)
        return token
    log.warning("generated the API token for writes (stored in %s): %s", path, token)
    return token


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison, so the time taken says nothing about how much of a guess was right."""
    return bool(given) and hmac.compare_digest(str(given).strip().encode(), token.encode())
