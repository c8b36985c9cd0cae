"""RabbitMQ test brokers: nodes of their own, with the MQTT plugin, on free loopback ports.

The machine's own RabbitMQ node (``rabbit@localhost``, AMQP on 5672) is never touched: every node started
here has its own name (``wmhub-test-<pid>-<n>@localhost``), its own ports (AMQP, Erlang distribution,
MQTT), its own data and log directories and Erlang cookie (its ``HOME``) in a temporary directory, and an
``enabled_plugins`` file of its own that enables only ``rabbitmq_mqtt``. The system ``rabbitmq-env.conf``
(which names the system node) is replaced by an empty one.

A node takes 15-40 s to boot on the 2-core test machine, so ``rabbitmq_node`` is one node for the whole
session (the MQTT suites share it; each test uses its own base topic), started as soon as the collected
tests need it (tests/conftest.py) so that it boots while other tests run; a two-node cluster is started
only by the test that needs one (:func:`running_cluster`). Nodes are stopped with SIGKILL: their data is
thrown away with the temporary directory, and a graceful stop would cost another 5-10 s each.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.mosquitto import free_port

RABBITMQ_SERVER_PATHS = ("/usr/lib/rabbitmq/bin/rabbitmq-server",)
BOOT_TIMEOUT_S = 150.0
_numbers = itertools.count(1)


def find_rabbitmq_server() -> str | None:
    """The server script itself: /usr/sbin/rabbitmq-server would switch to the rabbitmq user, who cannot
    read the private temporary directory."""
    found = next((path for path in RABBITMQ_SERVER_PATHS if os.access(path, os.X_OK)), None)
    return found or shutil.which("rabbitmq-server")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RabbitNode:
    """One RabbitMQ node with the MQTT plugin; ``url``, ``host`` and ``port`` are its MQTT listener."""

    retained_needs_exact_topic = True  # read by tests.mosquitto.MqttProbe

    def __init__(self, directory: Path, name: str, cluster_with: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.name = name
        self.host = "127.0.0.1"
        self.port = free_port()
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.cluster_with = cluster_with
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _environment(self, home: Path) -> dict[str, str]:
        base = self.directory / self.name.split("@")[0]
        base.mkdir(parents=True, exist_ok=True)
        config = base / "rabbitmq.conf"
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}",
        ]
        if self.cluster_with:
            # the nodes find each other from this list at boot: no join_cluster round trip through rabbitmqctl
            lines.append("cluster_formation.peer_discovery_backend = classic_config")
            for number, node in enumerate(self.cluster_with, 1):
                lines.append(f"cluster_formation.classic_config.nodes.{number} = {node}")
        config.write_text("\n".join(lines) + "\n")
        plugins = base / "enabled_plugins"
        plugins.write_text("[rabbitmq_mqtt].\n")
        empty_env = base / "rabbitmq-env.conf"
        empty_env.write_text("")
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),  # the Erlang cookie lives here; nodes of one cluster share it
            "RABBITMQ_CONF_ENV_FILE": str(empty_env),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, executable: str, home: Path) -> None:
        """Start booting; :meth:`wait_ready` waits for the MQTT listener."""
        log = (self.directory / f"{self.name.split('@')[0]}.out").open("ab")
        # a session of its own: the node (a shell script and its beam.smp) is stopped as one process group
        self._process = subprocess.Popen(
            [executable], env=self._environment(home), stdout=log, stderr=log, start_new_session=True
        )
        log.close()

    def wait_ready(self, deadline: float) -> None:
        while not _listening(self.port):
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"RabbitMQ node {self.name} exited while booting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node {self.name} did not open its MQTT port:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self) -> str:
        path = self.directory / f"{self.name.split('@')[0]}.out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self) -> None:
        """The node dies at once, as in a power cut: its clients' connections drop, its last wills with it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


def _prepare_home(home: Path) -> None:
    """The nodes' HOME, with the Erlang cookie they share (a cluster's nodes must hold the same one)."""
    home.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text(f"WMHUBTEST{os.getpid()}{time.time_ns()}")
        cookie.chmod(0o400)


def _boot(nodes: list[RabbitNode], executable: str, home: Path) -> None:
    _prepare_home(home)
    for node in nodes:
        node.start(executable, home)
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    try:
        for node in nodes:
            node.wait_ready(deadline)
    except BaseException:
        for node in nodes:
            node.kill()
        raise


def _node_name() -> str:
    return f"wmhub-test-{os.getpid()}-{next(_numbers)}@localhost"


def _required_executable() -> str:
    executable = find_rabbitmq_server()
    if executable is None:
        pytest.fail("RabbitMQ is not installed (apt-get install rabbitmq-server); the broker matrix needs it")
    return executable


class _SessionNode:
    """The session's node: started as soon as the collected tests show one is needed, so it boots while
    the tests before the first RabbitMQ test run, and killed at the end of the session."""

    def __init__(self, executable: str) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="wmhub-rabbitmq-")
        root = Path(self._directory.name)
        self.node = RabbitNode(root, _node_name())
        _prepare_home(root / "home")
        self.node.start(executable, root / "home")

    def close(self) -> None:
        self.node.kill()
        self._directory.cleanup()


_session_node: _SessionNode | None = None


def start_session_node() -> RabbitNode:
    """Start booting the session's node (once); :meth:`RabbitNode.wait_ready` waits for it."""
    global _session_node
    if _session_node is None:
        _session_node = _SessionNode(_required_executable())
    return _session_node.node


def stop_session_node() -> None:
    global _session_node
    if _session_node is not None:
        _session_node.close()
        _session_node = None


@pytest.fixture(scope="session")
def rabbitmq_node() -> Iterator[RabbitNode]:
    """One RabbitMQ node with the MQTT plugin for the whole session."""
    node = start_session_node()
    try:
        node.wait_ready(time.monotonic() + BOOT_TIMEOUT_S)
        yield node
    finally:
        stop_session_node()


@contextlib.asynccontextmanager
async def running_cluster(size: int = 2) -> AsyncIterator[list[RabbitNode]]:
    """``size`` RabbitMQ nodes clustered on this machine (one Erlang cookie, own names and ports)."""
    executable = _required_executable()
    with tempfile.TemporaryDirectory(prefix="wmhub-rabbitmq-cluster-") as directory:
        names = tuple(_node_name() for _ in range(size))
        nodes = [RabbitNode(Path(directory), name, cluster_with=names) for name in names]
        # blocks the test's event loop while the nodes boot: nothing else runs on it before the cluster is up
        _boot(nodes, executable, Path(directory) / "home")
        try:
            yield nodes
        finally:
            for node in nodes:
                node.kill()
