"""Test brokers and an MQTT probe client.

``mqtt_broker`` is a real Mosquitto (``/usr/sbin/mosquitto`` or on PATH) on a free loopback port with
no persistence, one per test; it can be stopped and started again on the same port (a broker restart).
Where Mosquitto is missing the embedded amqtt broker stands in, except under ``CI=true``, where a
missing Mosquitto fails the test instead.

``MqttProbe`` is a subscriber for assertions: it records every message and waits (with a deadline) for
the one a test expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import random
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.mqtt.brokers import BrokerAddress
from hub.mqtt.client import MqttClient
from hub.mqtt.embedded import EmbeddedBroker
from hub.testing import eventually

# Topics the probe uses to learn that a subscription is active; never recorded as test messages.
MARKER_PREFIX = "wmhub-test/marker/"
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    return found or next((path for path in MOSQUITTO_PATHS if os.access(path, os.X_OK)), None)


FIRST_CHOSEN_PORT = 10000  # above the well-known and most registered services' ports


def free_port() -> int:
    """A port nothing listens on, chosen below the kernel's ephemeral range: a port the kernel handed out and
    took back (bind to port 0) can be handed out again, to any socket bound to port 0 or any outgoing
    connection, before the test's server binds it; one below the range is only ever taken by name."""
    low = _ephemeral_range_start()
    for _ in range(200):
        port = random.randrange(FIRST_CHOSEN_PORT, low) if low > FIRST_CHOSEN_PORT + 1000 else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use, or still in TIME_WAIT from an earlier test
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port below the ephemeral range")


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):  # not Linux: the kernel's choice, as before
        return 0


async def _accepts(port: int) -> bool:
    try:
        async with asyncio.timeout(0.5):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _wait_listening(port: int, process: asyncio.subprocess.Process | None = None) -> None:
    for _ in range(500):
        if process is not None and process.returncode is not None:
            raise RuntimeError(f"mosquitto exited with status {process.returncode}")
        if await _accepts(port):
            return
        await asyncio.sleep(0.01)
    raise RuntimeError(f"broker on port {port} did not start listening")


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA, and a server and a client certificate it signed (for 127.0.0.1)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


async def make_certificates(directory: Path) -> Certificates:
    """Made with the openssl command line tool (installed wherever Mosquitto is)."""

    async def openssl(*args: str) -> None:
        process = await asyncio.create_subprocess_exec(
            "openssl", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    # Python 3.13 verifies strictly (VERIFY_X509_STRICT): the CA needs its key usage, a leaf its key identifiers
    await openssl(
        "req", "-x509", *key, "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=wmhub test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    extensions = directory / "leaf.cnf"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    for role in ("server", "client"):
        request = directory / f"{role}.csr"
        await openssl(
            "req", *key, "-keyout", str(directory / f"{role}.key"), "-out", str(request), "-subj", f"/CN={role}"
        )
        await openssl(
            "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(directory / f"{role}.pem"), "-days", "2", "-extfile", str(extensions),
        )  # fmt: skip
    return Certificates(
        ca, directory / "server.pem", directory / "server.key", directory / "client.pem", directory / "client.key"
    )


class MosquittoBroker:
    """A Mosquitto process on 127.0.0.1; ``restart()`` keeps the port and loses every retained message.

    With ``tls`` it accepts only TLS clients presenting a certificate of that CA, and with ``users`` only
    those names and passwords.
    """

    def __init__(
        self,
        executable: str,
        directory: Path,
        tls: Certificates | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.executable = executable
        self.directory = directory
        self.tls = tls
        self.users = users or {}
        self.host = "127.0.0.1"
        self.port = 0
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        for _ in range(5):  # a free port can be taken between choosing and binding it
            self.port = self.port or free_port()
            config = self.directory / "mosquitto.conf"
            config.write_text(await self._config())
            log = (self.directory / "mosquitto.log").open("ab")
            self._process = await asyncio.create_subprocess_exec(
                self.executable, "-c", str(config), stdout=log, stderr=log
            )
            log.close()
            try:
                await _wait_listening(self.port, self._process)
                return
            except RuntimeError:
                self.port = 0
        log_text = (self.directory / "mosquitto.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"mosquitto did not start:\n{log_text}")

    async def _config(self) -> str:
        # as root, Mosquitto would switch to a "mosquitto" user that cannot read the private temp directory
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", f"user {getpass.getuser()}"]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
            ]
        if self.users:
            passwords = self.directory / "passwords"
            passwords.write_text("".join(f"{user}:{password}\n" for user, password in self.users.items()))
            process = await asyncio.create_subprocess_exec("mosquitto_passwd", "-U", str(passwords))
            assert await process.wait() == 0, "mosquitto_passwd could not hash the test passwords"
            lines += [f"password_file {passwords}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        return "\n".join(lines) + "\n"

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def stall(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing is read nor acknowledged."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)


class EmbeddedTestBroker:
    """The amqtt stand-in with the same interface, for machines without Mosquitto (never in CI)."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._broker: EmbeddedBroker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        self._broker = EmbeddedBroker(self.port)
        self.port = await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.stop()
            self._broker = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


TestBroker = MosquittoBroker | EmbeddedTestBroker


@contextlib.asynccontextmanager
async def running_broker(
    tls: Certificates | None = None, users: dict[str, str] | None = None
) -> AsyncIterator[TestBroker]:
    """Mosquitto if installed; else (outside CI) the embedded broker, which cannot do ``tls`` or ``users``."""
    executable = find_mosquitto()
    with tempfile.TemporaryDirectory(prefix="wmhub-mosquitto-") as directory:
        broker: TestBroker
        if executable is not None:
            broker = MosquittoBroker(executable, Path(directory), tls, users)
        elif tls is not None or users:
            pytest.fail("TLS and password tests need Mosquitto (apt-get install mosquitto)")
        elif os.environ.get("CI") == "true":
            pytest.fail("mosquitto is not installed; CI needs a real broker (apt-get install mosquitto)")
        else:
            broker = EmbeddedTestBroker()
        await broker.start()
        try:
            yield broker
        finally:
            await broker.stop()


@pytest.fixture
async def mqtt_broker(request: pytest.FixtureRequest) -> AsyncIterator[TestBroker]:
    """A fresh broker for one test (Mosquitto, or the embedded broker outside CI when it is missing); with
    the parameter ``rabbitmq`` (tests/conftest.py), the session's RabbitMQ node (tests/rabbitmq.py) instead."""
    if getattr(request, "param", "mosquitto") == "rabbitmq":
        yield request.getfixturevalue("rabbitmq_node")
        return
    async with running_broker() as broker:
        yield broker


class MqttProbe:
    """A subscriber that records what it receives: ``await probe.json(topic)`` waits for a message."""

    def __init__(
        self,
        broker: TestBroker,
        client_id: str = "wmhub-test-probe",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._markers: set[str] = set()
        # RabbitMQ 3.x hands a retained message only to a subscription naming its exact topic: on such a
        # broker a topic waited for is also subscribed by name, so its retained copy arrives whatever the
        # order of the hub's publish and the probe's wildcard subscription
        self._retained_needs_exact_topic = getattr(broker, "retained_needs_exact_topic", False)
        self._exact_topics: set[str] = set()
        self.latest: dict[str, bytes] = {}
        address = BrokerAddress(broker.host, broker.port, username=username, password=password)
        self.client = MqttClient(address, client_id, on_message=self._record, keepalive=10)

    def _record(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic.startswith(MARKER_PREFIX):
            self._markers.add(topic)
            return
        self.messages.append((topic, payload))
        self.latest[topic] = payload

    async def __aenter__(self) -> MqttProbe:
        self.client.start()
        assert await self.client.wait_connected(10), "the probe could not connect to the test broker"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.stop()

    async def subscribe(self, topic_filter: str) -> None:
        """Subscribe and wait until the broker confirmed it (a marker message comes back through it)."""
        self.client.subscribe(topic_filter, 1)
        marker = f"{MARKER_PREFIX}{id(self)}/{len(self._markers)}"
        self.client.subscribe(marker, 1)
        await eventually(lambda: self._sent_and_seen(marker), 10, f"subscription to {topic_filter}")
        self.client.unsubscribe(marker)

    def _sent_and_seen(self, marker: str) -> bool:
        if marker in self._markers:
            return True
        self.client.publish(marker, b"1", 0)
        return False

    def publish(self, topic: str, payload: Any = b"", retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.client.publish(topic, data, 1, retain)

    def clear(self) -> None:
        self.messages.clear()
        self.latest.clear()

    async def message(
        self, topic: str, where: Callable[[bytes], bool] = lambda payload: True, timeout: float = 15.0
    ) -> bytes:
        """The first message recorded on ``topic`` satisfying ``where`` (waiting for it if needed)."""

        def found() -> tuple[str, bytes] | None:
            return next(((t, p) for t, p in self.messages if t == topic and where(p)), None)

        if (
            self._retained_needs_exact_topic
            and topic not in self._exact_topics
            and not {"#", "+"} & set(topic)
            and found() is None
        ):
            # confirmed before waiting, so the retained copy it brings does not arrive after a later clear()
            self._exact_topics.add(topic)
            await self.subscribe(topic)
        _, payload = await eventually(found, timeout, f"a message on {topic}")
        return payload

    async def json(self, topic: str, where: Callable[[Any], bool] = lambda value: True, timeout: float = 15.0) -> Any:
        def matches(payload: bytes) -> bool:
            try:
                return bool(payload) and bool(where(orjson.loads(payload)))
            except orjson.JSONDecodeError:
                return False

        return orjson.loads(await self.message(topic, matches, timeout))

    async def request_until_answered(
        self, response_topic: str, request_topic: str, payload: Any, timeout: float = 30.0
    ) -> Any:
        """A request harmless to repeat, asked again each second until answered: how a test learns that a hub
        in another process (whose client it cannot ask) has its request subscription in place, as a request
        published before that reaches nobody."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                return await self.request(response_topic, request_topic, payload, timeout=1.0)
            except AssertionError:
                if asyncio.get_running_loop().time() > deadline:
                    raise

    async def request(self, response_topic: str, request_topic: str, payload: Any, timeout: float = 15.0) -> Any:
        """Publish a request with a fresh transaction id and wait for its response."""
        transaction = f"t{len(self.messages)}-{id(payload)}"
        body = dict(payload, transaction=transaction) if isinstance(payload, dict) else payload
        self.publish(request_topic, body)
        return await self.json(response_topic, lambda value: value.get("transaction") == transaction, timeout)
