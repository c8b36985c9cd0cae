"""Fixtures shared by the Sennheiser plugin's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hub.testing import DriverHarness


@pytest.fixture
async def hub() -> AsyncIterator[DriverHarness]:
    """The hub's device path with only this plugin loaded."""
    async with DriverHarness("sennheiser") as harness:
        yield harness
