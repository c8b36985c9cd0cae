"""A command that meets a broken or control-less plugin still gets a clear answer, and the hub goes on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub import hookimpl
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.drivers import DeviceSink, Driver, DriverSettings, Endpoint
from hub.hookspecs import DriverSpec
from hub.model import Command, CommandKind, CommandResult, InvalidValueError, NumberLimits
from hub.plugins import PluginHost
from hub.testing import DriverHarness, eventually
from tests.test_web_api import TOKEN, BenchReceiver


class ReadOnlyReceiver(BenchReceiver):
    """A receiver whose driver keeps the Driver base class's apply: it has no controls."""

    apply = Driver.apply


class BuggyReceiver(BenchReceiver):
    """A receiver whose driver's apply has a bug."""

    async def apply(self, command: Command) -> CommandResult:
        raise ZeroDivisionError("division by zero")


class Watching:
    """A plugin that reads receivers (scheme ``watch``) and has no controls at all."""

    scheme = "watch"
    driver: type[Driver] = ReadOnlyReceiver

    @hookimpl
    def register_drivers(self, register: Any) -> None:
        def factory(endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> Driver:
            return self.driver(endpoint, sink, settings)

        register(DriverSpec(scheme=self.scheme, vendor=self.scheme, families=(), factory=factory, default_port=1))


class Buggy(Watching):
    """A plugin whose driver's control has a bug."""

    scheme = "buggy"
    driver = BuggyReceiver


async def test_a_plugin_bug_and_a_plugin_without_controls_each_answer_with_a_code() -> None:
    async with DriverHarness() as hub:
        hub.plugins.register(Watching(), "watching")
        hub.plugins.register(Buggy(), "buggy")
        results = {}
        for scheme in ("watch", "buggy"):
            device = await hub.device(hub.add(f"{scheme}://rack-a"))
            command = Command(device_id=device.id, channel=1, kind=CommandKind.NAME, value="Vox")
            results[scheme] = await hub.apply(command)
        assert (results["watch"].ok, results["watch"].code) == (False, "not_supported")
        assert results["watch"].error == "ReadOnlyReceiver has no controls"
        assert (results["buggy"].ok, results["buggy"].code) == (False, "plugin_error")
        assert results["buggy"].error == "plugin buggy raised ZeroDivisionError: 'division by zero'"
        # the bug cost that one command only: the device is still watched
        assert all(device.online for device in hub.store.devices.values())


def test_a_value_off_the_grid_is_named_as_it_was_given() -> None:
    """Rounded for the message, 473.3751 would read 473.375, a value that is on the grid."""
    limits = NumberLimits(min=470.0, max=608.0, step=0.025, unit="MHz")
    with pytest.raises(InvalidValueError, match=r"frequency 473\.3751 MHz is not on the device's 0\.025 MHz grid"):
        limits.check(473.3751, "frequency")


class CodedReceiver(BenchReceiver):
    """A receiver whose driver fails a rename with the code the channel's new name asks for (``-`` for none)."""

    async def apply(self, command: Command) -> CommandResult:
        code = None if command.value == "-" else str(command.value)
        return CommandResult(ok=False, code=code, error=None if code is None else "the receiver is busy")


class Coded(Watching):
    scheme = "coded"
    driver = CodedReceiver


async def coded_hub_answers(tmp_path: Path, commands: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, Any]]:
    """Each (path under /api/v1, body) posted to a hub watching one ``coded`` receiver: (status, answer)."""
    config = HubConfig(
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(host="127.0.0.1", port=0, token=TOKEN),
    )
    plugins = PluginHost()
    plugins.register(Coded(), "coded")
    answers = []
    async with compose_hub(config, plugins) as hub:
        await hub.add_device("coded://rack-a", source="test")
        await eventually(lambda: (device := hub.store.get("coded-rack-a")) and device.online, what="the receiver")
        assert hub.web is not None
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            for path, body in commands:
                async with http.post(f"http://127.0.0.1:{hub.web.port}/api/v1/{path}", json=body) as response:
                    answers.append((response.status, await response.json()))
    return answers


async def test_a_plugin_s_own_failure_code_reaches_rest_as_one_of_wmhub_s(tmp_path: Path) -> None:
    """An outside audit: a code a plugin invented (``acme_busy``) went to REST and MQTT as it was, a code no
    consumer knows. A documented code passes; any other is ``failed``, the plugin's code named in the error;
    ``ok=False`` alone is ``failed`` too."""
    channel = "channels/coded-rack-a:1/commands"
    refused, invented, bare = await coded_hub_answers(
        tmp_path, [(channel, {"kind": "name", "value": asked}) for asked in ("refused", "acme_busy", "-")]
    )
    assert refused[0] == 502 and refused[1]["code"] == "refused"
    status, body = invented
    assert status == 502 and body["code"] == "failed" and body["details"]["code"] == "failed"
    assert body["error"] == "the receiver is busy (the plugin's code 'acme_busy', not one of wmhub's)"
    assert bare[0] == 502 and bare[1]["code"] == "failed"


async def test_a_whole_device_command_is_logged_as_the_device_s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside audit: a command to the whole device was logged as ``chNone=``."""
    caplog.set_level(logging.INFO, logger="hub")
    await coded_hub_answers(
        tmp_path,
        [
            ("devices/coded-rack-a/commands", {"kind": "device_name", "value": "refused"}),
            ("channels/coded-rack-a:1/commands", {"kind": "name", "value": "refused"}),
        ],
    )
    said = [record.getMessage() for record in caplog.records if record.getMessage().startswith("command ")]
    assert said == [
        "command device_name coded-rack-a device='refused' from rest: refused: the receiver is busy",
        "command name coded-rack-a ch1='refused' from rest: refused: the receiver is busy",
    ]
