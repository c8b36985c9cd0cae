"""Test-run settings shared by the core's and every plugin's tests.

The suite runs on several pytest-xdist workers (scripts/test.sh): most of its time is spent waiting on
processes, sockets and deadlines, not computing. Tests that share a costly module-scoped fixture stay on
one worker (``xdist_group``), so it is built once.

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


# modules whose tests share a module-scoped fixture that is costly to build: the wheels, the installed
# example plugin, a running hub with its broker and simulators
ONE_WORKER_MODULES = frozenset({"test_release_packaging", "test_core_plugins", "test_fuzz_edges"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "alone(reason): the test measures the hub's own timing; scripts/test.sh runs it after the others, alone",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.nodeid.split("::")[0].rpartition("/")[2].removesuffix(".py")
        if module in ONE_WORKER_MODULES:
            item.add_marker(pytest.mark.xdist_group(module))
