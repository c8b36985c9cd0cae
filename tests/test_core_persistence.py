"""The hub remembers: devices added at run time, extended names and every command survive a restart."""

from pathlib import Path

import pytest
from wmhub_shure.simulator import ShureSimulator

from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.hookspecs import Candidate
from hub.model import Command, CommandKind
from hub.plugins import PluginHost
from hub.testing import eventually


def shure_hub(data_dir: Path) -> Hub:
    config = HubConfig(
        data_dir=data_dir,
        mqtt=MqttSettings(url="off"),
        http=HttpSettings(enabled=False),
        discovery=DiscoverySettings(enabled=False),
        meter_rate_ms=200,
    )
    plugins = PluginHost()
    plugins.load_entry_points(only="shure")
    return compose_hub(config, plugins)


def online(hub: Hub) -> str | None:
    return next((device.id for device in hub.store.devices.values() if device.online), None)


async def test_a_device_added_at_run_time_reconnects_after_a_restart_with_its_extended_name(tmp_path: Path) -> None:
    async with ShureSimulator("ulxd4d") as receiver:
        async with shure_hub(tmp_path) as hub:
            await hub.add_device(receiver.url, source="rest")
            device_id = await eventually(lambda: online(hub), what="the receiver online")
            await hub.rename_channel(device_id, 2, "Pastor", source="rest")
            result = await hub.apply(
                Command(device_id=device_id, channel=1, kind=CommandKind.NAME, value="VOX1"), "mqtt"
            )
            assert result.ok
            assert hub.persistence is not None
            assert (tmp_path / "wmhub.sqlite3").stat().st_mode & 0o777 == 0o600
        async with shure_hub(tmp_path) as hub:  # no config, no discovery: only what it remembered
            assert await eventually(lambda: online(hub), what="the remembered receiver online") == device_id
            channel = await eventually(lambda: hub.store.devices[device_id].channel(2), what="channel 2")
            await eventually(lambda: channel.extended_name == "Pastor", what="the extended name restored")
            assert hub.persistence is not None
            entries = await hub.persistence.audit.query(limit=50)
            commands = [e for e in entries if e.action == "command.name"]
            assert commands and commands[0].source == "mqtt" and commands[0].result == "ok"
            assert await hub.remove_device(device_id, source="rest")
        async with shure_hub(tmp_path) as hub:
            assert hub.devices.by_url == {}


async def test_config_devices_are_not_remembered(tmp_path: Path) -> None:
    async with ShureSimulator("qlxd4") as receiver:
        async with shure_hub(tmp_path) as hub:
            await hub.add_device(receiver.url, source="config")
            await eventually(lambda: online(hub), what="the receiver online")
        async with shure_hub(tmp_path) as hub:
            assert hub.devices.by_url == {}


async def test_a_discovery_candidate_waits_for_approval_then_becomes_a_known_device(tmp_path: Path) -> None:
    async with ShureSimulator("slxd4") as receiver:
        async with shure_hub(tmp_path) as hub:
            await hub.offer_candidate(Candidate(url=receiver.url, vendor="shure", model="SLXD4"))
            assert [c.url for c in hub.candidates()] == [receiver.url]
            assert hub.devices.by_url == {}
            await hub.approve_candidate(receiver.url, source="ui")
            await eventually(lambda: online(hub), what="the approved receiver online")
            assert hub.candidates() == []
        async with shure_hub(tmp_path) as hub:
            await eventually(lambda: online(hub), what="the approved receiver back after a restart")


async def test_the_database_is_open_exactly_while_the_hub_runs(tmp_path: Path) -> None:
    hub = shure_hub(tmp_path)
    with pytest.raises(RuntimeError, match="only while the hub runs"):
        hub.persistence.devices.all()
    async with hub:
        assert not hub.degraded() and hub.open_alerts() == []
    with pytest.raises(RuntimeError, match="only while the hub runs"):
        hub.persistence.devices.all()
