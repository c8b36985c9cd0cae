"""Packaging: all three distributions build as wheel and sdist, and the wheels run the demo in a fresh venv."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECTS = {
    "wmhub": REPO,
    "wmhub_shure": REPO / "plugins" / "shure",
    "wmhub_sennheiser": REPO / "plugins" / "sennheiser",
}


@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    for project in PROJECTS.values():
        subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(project)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return out


def test_every_distribution_builds_a_wheel_and_an_sdist(dist_dir: Path) -> None:
    from hub import __version__

    names = sorted(path.name for path in dist_dir.iterdir())
    for distribution in PROJECTS:
        assert f"{distribution}-{__version__}-py3-none-any.whl" in names
        assert f"{distribution}-{__version__}.tar.gz" in names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_wheels_install_into_a_fresh_venv_and_run_the_demo(dist_dir: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheels = [str(path) for path in dist_dir.glob("*.whl")]
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wheels],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    version = subprocess.run([str(venv / "bin" / "wmhub"), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("wmhub ")
    port = free_port()
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    hub = subprocess.Popen(
        [str(venv / "bin" / "wmhub"), "run", "--demo", "--mqtt", "off", "--http", f"127.0.0.1:{port}",
         "--data-dir", str(tmp_path / "data"), "--hub-id", "wheel-test"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environ,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        devices: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/devices", timeout=2) as response:
                    body = json.load(response)
                devices = body["items"]
                if devices and all(device["online"] for device in devices):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        vendors = {device["vendor"] for device in devices}
        assert vendors == {"shure", "sennheiser"}, devices
    finally:
        hub.send_signal(signal.SIGTERM)
        _, stderr = hub.communicate(timeout=30)
    assert hub.returncode == 0, stderr.decode()[-2000:]
