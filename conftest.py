"""Test-run settings shared by the core's and every plugin's tests.

The hub runs on uvloop where it is installed (docs/adr/0009-uvloop.md), so the tests run on it too.
``TEST_EVENT_LOOP=asyncio`` runs them on the standard event loop instead, the fallback where uvloop is
not available. (Not a ``WMHUB_`` name: hubs the tests start as processes inherit the environment and read
every ``WMHUB_*`` variable as a setting.)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import pytest


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if os.environ.get("TEST_EVENT_LOOP", "uvloop") == "asyncio":
        return {"asyncio": asyncio.new_event_loop}
    import uvloop

    return {"uvloop": uvloop.new_event_loop}
