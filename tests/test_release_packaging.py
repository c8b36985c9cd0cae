"""Packaging, checked as a user installs: all three distributions build as wheel and sdist, and the wheels,
installed into a fresh venv and run from a directory outside the source tree, list their plugins and run the
demo (board, API, API docs)."""

import email
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.mosquitto import free_port

# building three projects and installing every dependency from the package index into a fresh venv takes
# minutes on a loaded machine, far beyond the suite's 120 s per test
pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[1]
PROJECTS = {
    "wmhub": REPO,
    "wmhub_shure": REPO / "plugins" / "shure",
    "wmhub_sennheiser": REPO / "plugins" / "sennheiser",
}


@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    sources = tmp_path_factory.mktemp("sources")
    for name, project in PROJECTS.items():
        # built from a copy, as from a clean checkout: the other test workers write into the working tree
        # (bytecode, coverage data, build/reliability) while setuptools walks it for the sdist's file list
        source = sources / name
        shutil.copytree(
            project, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__")
        )
        built = subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert built.returncode == 0, f"building {name} failed:\n{built.stdout[-2000:]}\n{built.stderr[-4000:]}"
    return out


def test_every_distribution_builds_a_wheel_and_an_sdist(dist_dir: Path) -> None:
    from hub import __version__

    names = sorted(path.name for path in dist_dir.iterdir())
    for distribution in PROJECTS:
        assert f"{distribution}-{__version__}-py3-none-any.whl" in names
        assert f"{distribution}-{__version__}.tar.gz" in names
    # the board and the API docs page are data files: an sdist without them builds a hub with no UI
    with tarfile.open(dist_dir / f"wmhub-{__version__}.tar.gz") as sdist:
        shipped = {Path(name).name for name in sdist.getnames()}
    assert {"index.html", "board.js", "docs.html", "docs.js", "py.typed"} <= shipped
    # tests run from the repository: an sdist carried some without the configuration and fixtures they need
    for distribution in PROJECTS:
        with tarfile.open(dist_dir / f"{distribution}-{__version__}.tar.gz") as sdist:
            assert not [name for name in sdist.getnames() if "/tests/" in name], f"{distribution} ships tests"


def test_every_wheel_carries_the_licence_and_the_readme_and_each_plugin_the_core_range_it_goes_with(
    dist_dir: Path,
) -> None:
    """An outside audit: the plugin wheels said `License-Expression: MIT` without the licence text MIT asks
    to be shipped, had no description, and required any core version."""
    from packaging.requirements import Requirement

    from hub import __version__

    year, month, _ = (int(part) for part in __version__.split("."))
    next_month = f"{year + month // 12}.{month % 12 + 1}.0"
    for distribution in PROJECTS:
        with zipfile.ZipFile(dist_dir / f"{distribution}-{__version__}-py3-none-any.whl") as wheel:
            info = f"{distribution}-{__version__}.dist-info"
            metadata = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
            assert wheel.read(f"{info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        assert metadata["License-File"] == "LICENSE" and metadata["License-Expression"] == "MIT"
        assert metadata["Description-Content-Type"] == "text/markdown" and len(metadata.get_payload()) > 200
        if distribution != "wmhub":
            (core,) = [req for req in map(Requirement, metadata.get_all("Requires-Dist")) if req.name == "wmhub"]
            assert __version__ in core.specifier and next_month not in core.specifier, core


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


def test_the_wheels_install_into_a_fresh_venv_and_run_the_demo(dist_dir: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # as a user runs it: from elsewhere, with nothing of the source tree importable
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    wmhub = str(venv / "bin" / "wmhub")

    def install(*wheels: Path) -> None:
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *map(str, wheels)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip

    # the core alone (`pip install wmhub`) drives nothing, and says so (an outside audit: it said nothing)
    install(*dist_dir.glob("wmhub-*.whl"))
    alone = subprocess.run([wmhub, "plugins"], cwd=elsewhere, env=environ, capture_output=True, text=True, timeout=60)
    assert alone.returncode == 1 and "no plugins installed: install wmhub-shure / wmhub-sennheiser" in alone.stderr
    install(*dist_dir.glob("wmhub_s*.whl"))

    def run(*args: str) -> str:
        done = subprocess.run([wmhub, *args], cwd=elsewhere, env=environ, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("--version").startswith("wmhub ")
    plugins = {plugin["name"]: plugin for plugin in json.loads(run("plugins", "--json"))}
    assert set(plugins) == {"shure", "sennheiser"}
    assert all(plugin["error"] is None and plugin["version"] for plugin in plugins.values()), plugins

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    hub = subprocess.Popen(
        [wmhub, "run", "--demo", "--mqtt", "off", "--http", f"127.0.0.1:{port}",
         "--data-dir", str(tmp_path / "data"), "--hub-id", "wheel-test"],
        cwd=elsewhere, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environ,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                health = get_json(f"{base}/api/health")
                if health["devices"] and health["devices_online"] == health["devices"]:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert health.get("status") == "ok" and health["devices_online"] == health["devices"] > 0, health
        vendors = {device["vendor"] for device in get_json(f"{base}/api/v1/devices")["items"]}
        assert vendors == {"shure", "sennheiser"}
        # the API docs' Swagger UI comes with the installed dependencies, not from the source tree
        with urllib.request.urlopen(f"{base}/api/docs/swagger-ui-bundle.js", timeout=5) as response:
            assert response.status == 200 and len(response.read()) > 100_000
    finally:
        hub.send_signal(signal.SIGTERM)
        _, stderr = hub.communicate(timeout=30)
    assert hub.returncode == 0, stderr.decode()[-2000:]


def test_pip_install_upgrade_replaces_a_build_from_before_the_version_bump(dist_dir: Path, tmp_path: Path) -> None:
    """docs/deployment.md upgrades with ``pip install -U``. Every build before the first upgrade audit
    (2026-12-07) said 26.11.0, and every build handed over after it until the second said 26.12.0: pip took each
    new build for the one installed and left the old code in place. An older build here: this source with the
    version of the changelog's previous entry (the last one handed over) and a file of its own, which the
    upgrade must remove."""
    from packaging.version import Version

    from hub import __version__

    entries = re.findall(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    # what a user reads for the build they run (`wmhub --version`) is the release the changelog describes, and
    # each entry is of a higher version than the one below it
    assert entries[0] == __version__
    assert [Version(entry) for entry in entries] == sorted(map(Version, entries), reverse=True), entries
    assert len(set(entries)) == len(entries), entries

    older = tmp_path / "older"
    shutil.copytree(
        REPO, older, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "tests", "bench", "plugins")
    )
    init = older / "hub" / "__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]+"', f'__version__ = "{entries[1]}"', init.read_text()))
    (older / "hub" / "only_in_the_older_build.py").write_text("")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(tmp_path / "old"), str(older)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    subprocess.run([*pip, *map(str, (tmp_path / "old").glob("wmhub-*.whl"))], check=True, timeout=300)
    subprocess.run([*pip, "-U", *map(str, dist_dir.glob("wmhub-*.whl"))], check=True, timeout=300)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.metadata, pathlib, sysconfig; print(importlib.metadata.version('wmhub'), "
         "(pathlib.Path(sysconfig.get_paths()['purelib']) / 'hub' / 'only_in_the_older_build.py').exists())"],
        check=True, capture_output=True, text=True, timeout=60, cwd=tmp_path,  # not the checkout's own egg-info
    ).stdout.split()  # fmt: skip
    assert installed == [__version__, "False"], installed
