"""A driver's memory of its device (DeviceSink.remember / recall), kept in the hub's database.

Whole hubs in-process on a data dir in tmp_path, REST as a client sees it.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest

from hub.compose import compose_hub
from hub.drivers import MAX_MEMORY_BYTES, Driver
from hub.plugins import PluginHost
from hub.testing import plugin_of
from tests.fault_harness import Api, hub_config, until


class Counter(Driver):
    """A third party's driver that counts its connections to the device in its memory of it, and tries to keep
    what is no JSON and what is too large."""

    async def connect(self) -> None:
        kept = self.sink.recall()
        connections = kept["connections"] + 1 if isinstance(kept, dict) else 1
        self.sink.identify(unique_id="C1", family="counter", model="C-1", channel_count=1, name=f"{connections}x")
        self.sink.remember({"connections": connections})
        unkeepable = [{"connections": 0, "socket": object()}, "x" * MAX_MEMORY_BYTES]
        for value in unkeepable if connections == 1 else reversed(unkeepable):  # each logged once, first
            self.sink.remember(value)

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None


async def test_a_plugin_s_driver_keeps_json_across_restarts_and_is_refused_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The memory is the plugin API's, not the Sennheiser plugin's: any driver recalls what it kept before the
    hub restarted; what is no JSON or too large is refused like a wrong field, and the last good value stays."""
    config = hub_config(tmp_path / "data", ["counter://127.0.0.1"])
    for connections in (1, 2):
        plugins = PluginHost()
        plugins.register(plugin_of("counter", Counter, "counter"), "counter")
        async with compose_hub(config, plugins) as hub, Api(hub) as api:
            counted = functools.partial(api_has, api, "/api/v1/devices/counter-C1", "name", f"{connections}x")
            await until(counted, 10, f"the device named for connection {connections}")
            assert hub.devices.by_url["counter://127.0.0.1"].handle.protocol_errors == 2
    refused = [record.getMessage() for record in caplog.records if "reported memory" in record.getMessage()]
    assert len(refused) == 2 and "not JSON" in refused[0] and "larger than" in refused[1], refused


async def api_has(api: Api, path: str, field: str, value: object) -> bool:
    found: object = (await api.get(path)).get(field)
    return found == value
