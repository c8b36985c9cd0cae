"""A password in a device URL's userinfo (``scheme://user:password@host``) is never shown: not in the REST
answers, not in /api/health, not in the log, even at log level debug."""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.logs import setup_logging
from hub.testing import eventually
from tests.test_web_api import AUTH, TOKEN, call, serving


@pytest.fixture
def debug_logging() -> Iterator[None]:
    """The hub's own logging set-up at level debug (`log_level = "debug"`), undone afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging("debug")
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


SECRET = "s3cret-Pa55"


async def test_a_userinfo_password_is_redacted_everywhere_it_could_show(
    tmp_path: Path, debug_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with serving(tmp_path, token=TOKEN) as (hub, http):
            added = await call(
                http, "POST", "/api/v1/devices", 201, json={"url": f"bench://admin:{SECRET}@rack-a"}, headers=AUTH
            )
            assert added["url"] == "bench://admin:***@rack-a"
            await eventually(lambda: hub.store.get("bench-rack-a"), what="the device")
            shown = [await call(http, "GET", path, 200) for path in ("/api/v1/devices", "/api/health", "/api/v1/hub")]
    assert SECRET not in str(shown) and "admin:***@rack-a" in str(shown)
    assert SECRET not in caplog.text
