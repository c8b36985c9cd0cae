"""Plugin loading: entry points one by one, errors kept per plugin, third-party plugins like ours."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from hub import hookimpl
from hub.drivers import Driver, DriverSettings
from hub.hookspecs import DiscoveredService, DriverSpec
from hub.model import Command, CommandKind
from hub.plugins import NO_PLUGINS, PluginError, PluginHost
from hub.testing import DriverHarness, eventually, interrupt
from tests.mosquitto import free_port
from tests.test_web_api import BenchReceiver

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "wmhub-example"


def wmhub_json(*args: str, extra_path: Path | None = None, status: int = 0, **env: str) -> list[dict[str, object]]:
    environ = dict(os.environ, **env)
    if extra_path is not None:
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=60, env=environ
    )
    assert result.returncode == status, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def broken_distribution(root: Path) -> Path:
    """A distribution whose plugin module raises on import, as a packaging mistake would."""
    (root / "wmhub_broken.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    info = root / "wmhub_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wmhub-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[wmhub]\nbroken = wmhub_broken\n")
    return root


def test_plugins_json_lists_both_vendor_plugins_with_versions_and_hooks() -> None:
    listing = {plugin["distribution"]: plugin for plugin in wmhub_json("plugins", "--json")}
    for name in ("wmhub-shure", "wmhub-sennheiser"):
        assert listing[name]["version"]
        assert listing[name]["error"] is None
        assert {"register_drivers", "device_capabilities", "register_simulators"} <= set(listing[name]["hooks"])  # type: ignore[arg-type]


def test_a_broken_plugin_is_listed_with_its_error_and_the_others_still_load(tmp_path: Path) -> None:
    listing = {
        p["name"]: p for p in wmhub_json("plugins", "--json", extra_path=broken_distribution(tmp_path), status=1)
    }
    assert "broken on purpose" in str(listing["broken"]["error"])
    assert listing["shure"]["error"] is None and listing["sennheiser"]["error"] is None


def test_load_plugins_variable_chooses_plugins() -> None:
    names = [p["distribution"] for p in wmhub_json("plugins", "--json", WMHUB_LOAD_PLUGINS="wmhub-shure")]
    assert names == ["wmhub-shure"]
    assert wmhub_json("plugins", "--json", WMHUB_LOAD_PLUGINS="") == []


def test_load_plugins_naming_no_installed_plugin_is_an_error_naming_it(tmp_path: Path) -> None:
    """An outside audit: a typo there loaded nothing for it and said nothing; `wmhub plugins` exited 0. A name
    is compared as pip compares them (wmhub_shure is wmhub-shure)."""
    environ = dict(os.environ, WMHUB_LOAD_PLUGINS="wmhub_shure,wmhub-shurre")
    listing = subprocess.run(
        [sys.executable, "-m", "hub.cli", "plugins"], capture_output=True, text=True, timeout=60, env=environ
    )
    assert listing.returncode == 1 and listing.stdout.startswith("wmhub-shure ")
    assert "no installed plugin is named wmhub-shurre (the installed ones: " in listing.stderr
    run = subprocess.run(
        [sys.executable, "-m", "hub.cli", "run", "--check", "--mqtt", "off", "--http", "127.0.0.1:0",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env=environ,
    )  # fmt: skip
    # one line, as every refusal of `wmhub run` is (an outside audit: a log line came first, saying it too)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(
        "wmhub: configuration error: WMHUB_LOAD_PLUGINS: no installed plugin is named wmhub-shurre (the installed "
        "ones: "
    ), run.stderr


def test_a_plugin_raising_in_a_hook_does_not_stop_the_others() -> None:
    class Faulty:
        @hookimpl
        def register_drivers(self, register: object) -> None:
            raise ValueError("cannot register")

    host = PluginHost()
    host.load_entry_points(only="wmhub-shure")
    host.register(Faulty(), name="faulty")
    assert "shure" in host.drivers()
    assert "cannot register" in str(host.records["faulty"].error)


async def test_a_plugin_that_never_answers_is_given_up_on_with_its_name() -> None:
    class Hanging:
        @hookimpl
        async def identify_service(self, service: DiscoveredService, settings: DriverSettings) -> None:
            await asyncio.Event().wait()

    host = PluginHost()
    host.register(Hanging(), name="hanging")
    service = DiscoveredService("127.0.0.1", 2202, "_ssc._udp.local.", "rx", {})
    with pytest.raises(PluginError, match=r"plugin hanging did not answer identify_service within 0\.05 s"):
        await host.call_async("hanging", "identify_service", 0.05, service=service, settings=DriverSettings())


def test_duplicate_schemes_are_refused_and_reported() -> None:
    class Impostor:
        @hookimpl
        def register_drivers(self, register: object) -> None:
            register(DriverSpec(scheme="shure", vendor="impostor", families=(), factory=lambda *a: None))  # type: ignore[operator,arg-type,return-value]

    host = PluginHost()
    host.load_entry_points(only="wmhub-shure")
    host.register(Impostor(), name="impostor")
    assert host.drivers()["shure"][1] == "shure"
    assert "scheme shure belongs to plugin shure (wmhub-shure)" in str(host.records["impostor"].error)


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documented example plugin, built and installed as its own distribution: from a copy, since pip builds
    in the source tree and another test worker may be building the same one at the same moment."""
    target = tmp_path_factory.mktemp("site")
    source = shutil.copytree(EXAMPLE, tmp_path_factory.mktemp("example") / EXAMPLE.name)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    return target


def test_the_documented_example_plugin_installs_and_its_device_appears(example_site: Path) -> None:
    listing = {p["distribution"]: p for p in wmhub_json("plugins", "--json", extra_path=example_site)}
    assert listing["wmhub-example"]["version"] == "1.0.0"
    script = textwrap.dedent(
        """
        import asyncio, json
        from hub.model import Command, CommandKind
        from hub.hookspecs import DiscoveredService
        from hub.testing import DriverHarness, identify_with
        from wmhub_example.plugin import EXAMPLE_SERVICE, serve_example_receiver

        async def main():
            server = await serve_example_receiver(serial="EX42", name="Lead")
            port = server.sockets[0].getsockname()[1]
            async with DriverHarness("wmhub-example") as hub:
                seen = DiscoveredService("127.0.0.1", port, EXAMPLE_SERVICE, "rack", {"serial": "EX42"})
                found = await identify_with(hub.plugins, "example", seen)
                assert hub.plugins.zeroconf_types() == [EXAMPLE_SERVICE]
                device = await hub.device(hub.add(found.url))
                result = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.NAME, value="Vox"))
                print(json.dumps({"id": device.id, "battery": device.channels[0].battery_percent,
                                  "ok": result.ok, "name": device.channels[0].name}))
            server.close()

        asyncio.run(main())
        """
    )
    environ = dict(os.environ, PYTHONPATH=str(example_site))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=environ)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"id": "example-EX42", "battery": 87, "ok": True, "name": "Vox"}


def test_the_documented_example_plugin_reports_nothing_before_identify(example_site: Path) -> None:
    """An outside audit: the example reported its channel before identify, the report the guide says is
    dropped; a plugin author copying it lost the first full state."""
    script = textwrap.dedent(
        """
        import asyncio, logging
        from hub.testing import DriverHarness
        from wmhub_example.plugin import serve_example_receiver

        async def main():
            logging.basicConfig(level=logging.WARNING)
            logging.getLogger("hub.device.example").setLevel(logging.DEBUG)
            server = await serve_example_receiver(serial="EX44", name="Lead")
            port = server.sockets[0].getsockname()[1]
            async with DriverHarness("wmhub-example") as hub:
                device = await hub.device(hub.add(f"example://127.0.0.1:{port}"))
                print(device.channels[0].battery_percent, device.channels[0].name)
            server.close()

        asyncio.run(main())
        """
    )
    environ = dict(os.environ, PYTHONPATH=str(example_site))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=environ)
    assert result.returncode == 0, result.stderr
    assert "before sink.identify" not in result.stderr
    assert result.stdout.split() == ["87", "Lead"]


def test_identify_with_takes_a_plugin_by_distribution_name_as_plugin_host_does(example_site: Path) -> None:
    """An outside audit: identify_with(plugin_host("wmhub-example"), "wmhub-example", ...) said None (not my
    device) for the example's own receiver; only the entry-point name found it. A name no loaded plugin has
    now raises, naming it, instead of a None that reads as a verdict."""
    script = textwrap.dedent(
        """
        import asyncio, json
        from hub.hookspecs import DiscoveredService
        from hub.testing import identify_with, plugin_host
        from wmhub_example.plugin import EXAMPLE_SERVICE, serve_example_receiver

        async def main():
            server = await serve_example_receiver(serial="EX43", name="Lead")
            port = server.sockets[0].getsockname()[1]
            host = plugin_host("wmhub-example")
            seen = DiscoveredService("127.0.0.1", port, EXAMPLE_SERVICE, "rack", {"serial": "EX43"})
            found = {name: (await identify_with(host, name, seen)).url for name in ("wmhub-example", "example")}
            try:
                await identify_with(host, "wmhub-exampel", seen)
                typo = "no error"
            except ValueError as error:
                typo = str(error)
            server.close()
            print(json.dumps({"found": found, "typo": typo}))

        asyncio.run(main())
        """
    )
    environ = dict(os.environ, PYTHONPATH=str(example_site))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=environ)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer["found"]) == {"wmhub-example", "example"}
    assert len(set(answer["found"].values())) == 1
    assert answer["found"]["example"].startswith("example://127.0.0.1:")
    assert "'wmhub-exampel'" in answer["typo"] and "example" in answer["typo"]


async def test_the_documented_example_plugin_has_its_demo_receiver(example_site: Path, tmp_path: Path) -> None:
    """An outside audit: the docs promised the example a simulated receiver, and `wmhub run --demo` showed none."""
    http_port = free_port()
    hub = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "run", "--demo", "--mqtt", "off", "--http", f"127.0.0.1:{http_port}",
        "--data-dir", str(tmp_path), env=dict(os.environ, PYTHONPATH=str(example_site), WMHUB_LOAD_PLUGINS="example"),
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        devices = await eventually(lambda: online_devices(http_port), timeout=20, what="the example's demo device")
    finally:
        assert await interrupt(hub) == 0
    assert [(device["vendor"], device["model"]) for device in devices] == [("example", "EX-1")]


def online_devices(http_port: int) -> list[dict[str, object]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v1/devices", timeout=2) as response:
            devices: list[dict[str, object]] = json.load(response)["items"]
    except OSError:
        return None
    return devices if devices and all(device["online"] for device in devices) else None


def test_version_names_the_core_and_every_plugin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    from hub import __version__

    assert result.stdout.splitlines() == [
        f"wmhub {__version__}",
        f"wmhub-sennheiser {__version__}",
        f"wmhub-shure {__version__}",
    ]


class PluginFromBeforeTheUnit:
    """Written to the plugin API before the DriverSpec was the whole unit: it still has an ``apply_command``
    hook (every such hook only called ``driver.apply``), which the hub no longer calls."""

    @hookimpl
    def register_drivers(self, register: Callable[[DriverSpec], None]) -> None:
        register(DriverSpec(scheme="older", vendor="older", families=("bench",), factory=BenchReceiver, default_port=1))

    @hookimpl
    def apply_command(self, driver: Driver, command: Command) -> object:
        raise AssertionError("the hub calls Driver.apply itself")


async def test_a_plugin_with_the_old_control_hook_still_loads_and_its_commands_reach_its_driver() -> None:
    async with DriverHarness() as harness:
        harness.plugins.register(PluginFromBeforeTheUnit(), "older")
        device = await harness.device(harness.add("older://rack-b"))
        result = await harness.apply(Command(device_id=device.id, channel=1, kind=CommandKind.NAME, value="Lead"))
        assert result.ok and result.value == "Lead"
        assert harness.store.get(device.id).channels[0].name == "Lead"  # type: ignore[union-attr]
        assert harness.plugins.listing()[-1]["error"] is None


def test_a_slow_device_capabilities_is_named_as_itself(caplog: pytest.LogCaptureFixture) -> None:
    """It runs inside Driver.connect (the device identifies itself): the warning must name the hook."""

    class Slow:
        @hookimpl
        def device_capabilities(self, family: object, model: object) -> None:
            time.sleep(0.15)

    host = PluginHost()
    host.register(Slow(), name="slow")
    caplog.set_level("WARNING")
    assert host.call_one("slow", "device_capabilities", family="x", model="y") is None
    assert any("in device_capabilities" in record.getMessage() for record in caplog.records), caplog.text


def test_a_core_without_plugins_says_so_where_a_chosen_empty_set_does_not(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pip install wmhub` alone drives no device: said once (the packaging test runs it as a user would)."""
    monkeypatch.setattr("hub.plugins.entry_points", lambda group: [])
    monkeypatch.delenv("WMHUB_LOAD_PLUGINS", raising=False)
    caplog.set_level("WARNING")
    PluginHost().load_entry_points()
    assert [record.getMessage() for record in caplog.records] == [NO_PLUGINS]
    caplog.clear()
    PluginHost().load_entry_points(only="")
    assert caplog.records == []
