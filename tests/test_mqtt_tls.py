"""TLS with certificate verification, a client certificate, and username/password from the URL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hub.mqtt.brokers import BrokerAddress, TlsFiles
from hub.mqtt.client import MqttClient
from hub.testing import eventually
from tests import fault_harness
from tests.mosquitto import Certificates, TestBroker, make_certificates, running_broker
from tests.test_mqtt_bridge import online_device, receiver, running_hub

__all__ = ["receiver"]  # the fixture, imported so pytest finds it here

USERS = {"hub": "s3cret/@x", "probe": "probe-pass"}  # "/" and "@" must be percent-encoded in the URL


@pytest.fixture
async def certificates(tmp_path: Path) -> Certificates:
    directory = tmp_path / "pki"
    directory.mkdir()
    return await make_certificates(directory)


@pytest.fixture
async def secure_broker(certificates: Certificates) -> AsyncIterator[TestBroker]:
    async with running_broker(tls=certificates, users=USERS) as broker:
        yield broker


def client_for(url: str, tls: TlsFiles, received: dict[str, bytes] | None = None) -> MqttClient:
    def on_message(topic: str, payload: bytes, retained: bool) -> None:
        if received is not None:
            received[topic] = payload

    return MqttClient(BrokerAddress.parse(url), "tls-test", on_message=on_message, tls=tls)


async def test_hub_publishes_over_verified_tls_with_client_certificate_and_password(
    secure_broker: TestBroker, certificates: Certificates, tmp_path: Path, receiver: str
) -> None:
    url = f"mqtts://hub:s3cret%2F%40x@127.0.0.1:{secure_broker.port}"
    settings = {"ca_file": certificates.ca, "cert_file": certificates.client_cert, "key_file": certificates.client_key}
    async with running_hub(secure_broker, tmp_path, [receiver], url=url, **settings) as hub:
        device_id = await online_device(hub)
        base = hub.config.mqtt.base_topic
        probe_tls = TlsFiles(certificates.ca, certificates.client_cert, certificates.client_key)
        received: dict[str, bytes] = {}
        probe_client = client_for(f"mqtts://probe:probe-pass@127.0.0.1:{secure_broker.port}", probe_tls, received)
        probe_client.subscribe(f"{base}/#", 1)
        probe_client.start()
        try:
            await eventually(lambda: f"{base}/devices/{device_id}/channels/1" in received, 5, "channel over TLS")
            assert received[f"{base}/hubs/hub1/state"] == b'{"state":"online"}'
        finally:
            await probe_client.stop()
        assert "s3cret" not in str(hub.info())


@pytest.mark.parametrize(
    ("case", "expected_error"),
    [
        ("unknown CA", "CERTIFICATE_VERIFY_FAILED"),
        ("wrong password", "Not authorized"),
        ("no client certificate", "disconnected before the broker answered"),
    ],
)
async def test_connection_is_refused_without_valid_credentials(
    secure_broker: TestBroker, certificates: Certificates, case: str, expected_error: str
) -> None:
    password = "nope" if case == "wrong password" else "probe-pass"
    tls = TlsFiles(
        None if case == "unknown CA" else certificates.ca,
        None if case == "no client certificate" else certificates.client_cert,
        None if case == "no client certificate" else certificates.client_key,
    )
    client = client_for(f"mqtts://probe:{password}@127.0.0.1:{secure_broker.port}", tls)
    client.start()
    try:
        await eventually(lambda: client.last_error, 5, "a connection error")
        assert not client.connected and expected_error in (client.last_error or "")
    finally:
        await client.stop()


async def test_tls_insecure_skips_verification_on_request(
    secure_broker: TestBroker, certificates: Certificates
) -> None:
    tls = TlsFiles(None, certificates.client_cert, certificates.client_key, insecure=True)
    client = client_for(f"mqtts://probe:probe-pass@127.0.0.1:{secure_broker.port}", tls)
    client.start()
    try:
        assert await client.wait_connected(5)
    finally:
        await client.stop()


async def test_a_hub_its_broker_refuses_says_so_in_health_and_metrics(tmp_path: Path) -> None:
    """An outside audit: a hub whose broker refused its login looked healthy in /api/health and /metrics
    (only a 'dropped' counter that blamed a slow broker), while Home Assistant and the fleet saw nothing."""
    async with running_broker(users=USERS) as broker:
        config = fault_harness.hub_config(tmp_path, [], mqtt_url=f"mqtt://hub:wrong-password@127.0.0.1:{broker.port}")
        async with fault_harness.running_hub(config) as hub, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{hub.web.port}"
            mqtt: dict[str, object] = {}
            deadline = time.monotonic() + 10
            while not mqtt.get("last_error") and time.monotonic() < deadline:
                async with http.get(f"{base}/api/health") as response:
                    mqtt = (await response.json())["mqtt"]
                await asyncio.sleep(0.05)
            assert mqtt["connected"] is False and mqtt["broker"] == f"mqtt://127.0.0.1:{broker.port}", mqtt
            assert mqtt["last_error"] and "wrong-password" not in str(mqtt), mqtt
            async with http.get(f"{base}/metrics") as response:
                assert "wmhub_mqtt_connected 0.0" in await response.text()
