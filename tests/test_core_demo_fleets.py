"""Demo mode with a plugin whose simulators fail to start or to stop: the other plugins' devices are
watched all the same, and the hub starts and stops cleanly."""

import logging
from pathlib import Path
from typing import Any

import pytest

from hub import hookimpl
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.test_web_api import BenchPlugin


class WorkingFleet:
    async def start(self) -> list[str]:
        return ["bench://demo-rack"]

    async def stop(self) -> None:
        raise OSError("the simulator's port is gone already")


class BrokenFleet:
    async def start(self) -> list[str]:
        raise OSError("address already in use")

    async def stop(self) -> None:
        return None


class Fleets:
    @hookimpl
    def register_simulators(self, register: Any) -> None:
        register(BrokenFleet())
        register(WorkingFleet())


async def test_a_fleet_that_fails_leaves_the_others_running(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = HubConfig(
        data_dir=tmp_path,
        demo=True,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(enabled=False),
    )
    plugins = PluginHost()  # only these two: no vendor plugin's demo receivers
    plugins.register(BenchPlugin(), "bench")
    plugins.register(Fleets(), "fleets")
    hub = compose_hub(config, plugins)
    with caplog.at_level(logging.ERROR, logger="hub"):
        async with hub:
            device = await eventually(lambda: hub.store.get("bench-demo-rack"), what="the working fleet's device")
            assert device.online
    messages = [record.getMessage() for record in caplog.records]
    assert "demo simulators of plugin fleets failed to start: address already in use" in messages
    assert "demo simulators of plugin fleets failed to stop: the simulator's port is gone already" in messages
