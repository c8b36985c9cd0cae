"""The REST API keeps what docs/api.md and its OpenAPI document promise: over real HTTP against a real Hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from hub.app import Hub
from hub.testing import eventually
from tests.test_web_api import AUTH, TOKEN, call, client, make_hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with make_hub(tmp_path, token=TOKEN) as running:
        yield running


@pytest.fixture
async def http(hub: Hub) -> AsyncIterator[aiohttp.ClientSession]:
    async with client(hub) as session:
        yield session


async def connections(http: aiohttp.ClientSession) -> list[dict[str, object]]:
    health = await call(http, "GET", "/api/health", 200, headers=AUTH)
    return list(health["connections"])


async def test_another_spelling_of_a_device_url_is_the_same_device(hub: Hub, http: aiohttp.ClientSession) -> None:
    added = await call(http, "POST", "/api/v1/devices", 201, json={"url": "bench://rack-c"}, headers=AUTH)
    await eventually(lambda: hub.store.get("bench-rack-c"), what="added device online")
    # the scheme and host in capitals, an empty path or query, the plugin's default port (1) written out
    for spelling in ("BENCH://Rack-C/", "bench://rack-c?", "bench://rack-c/", "bench://rack-c:1"):
        again = await call(http, "POST", "/api/v1/devices", 200, json={"url": spelling}, headers=AUTH)
        assert again == {"url": added["url"], "device_id": "bench-rack-c"}, spelling
    assert [(c["url"], c["device_id"]) for c in await connections(http)] == [("bench://rack-c", "bench-rack-c")]
    assert (await call(http, "GET", "/api/v1/devices", 200))["total"] == 1
    await call(http, "DELETE", f"/api/v1/devices/{quote('BENCH://rack-c:1/', safe='')}", 204, headers=AUTH)
    assert await connections(http) == [] and hub.persistence.devices.all() == []


async def test_devices_that_identify_alike_never_share_an_id(hub: Hub, http: aiohttp.ClientSession) -> None:
    # one host and port, options apart: four URLs whose devices all identify as 'bench-rack-d'
    urls = [f"bench://rack-d:7?copy={number}" for number in range(4)]
    for url in urls:
        await call(http, "POST", "/api/v1/devices", 201, json={"url": url}, headers=AUTH)

    async def ids() -> list[object]:
        return [c["device_id"] for c in await connections(http)]

    await eventually(lambda: len(hub.store.devices) == 4, what="four devices identified")
    held = await ids()
    assert len(set(held)) == 4, held
    for device_id in held:
        await call(http, "DELETE", f"/api/v1/devices/{device_id}", 204, headers=AUTH)
    assert await ids() == [] and hub.store.devices == {}
