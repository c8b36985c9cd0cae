"""The REST API keeps what docs/api.md and its OpenAPI document promise: over real HTTP against a real Hub."""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from hub.testing import eventually
from tests.test_web_api import AUTH, TOKEN, BenchPlugin, call, client, make_hub


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


@pytest.mark.parametrize(
    ("first", "spellings", "device_id"),
    [
        ("bench://[::1]:4001", ["bench://[0:0:0:0:0:0:0:1]:4001", "bench://[0::1]:4001"], "bench-::1"),
        (
            "bench://127.0.0.1:4002",
            ["bench://[::ffff:127.0.0.1]:4002", "bench://[::FFFF:7f00:1]:4002"],
            "bench-127.0.0.1",
        ),
        (
            "bench://rack-f.venue.lan",
            ["bench://rack-f.venue.lan.", "bench://RACK-F.Venue.LAN."],
            "bench-rack-f.venue.lan",
        ),
    ],
)
async def test_an_address_or_name_written_another_way_is_the_same_device(
    hub: Hub, http: aiohttp.ClientSession, first: str, spellings: list[str], device_id: str
) -> None:
    """An outside audit: docs/api.md promises the same device "however spelled", but an IPv6 address written out
    or shortened otherwise, and a name with the root's dot, answered 201 and became a second device (and, with a
    receiver behind them, a frequency conflict of the receiver with itself)."""
    added = await call(http, "POST", "/api/v1/devices", 201, json={"url": first}, headers=AUTH)
    await eventually(lambda: hub.store.get(device_id), what="added device online")
    for spelling in spellings:
        again = await call(http, "POST", "/api/v1/devices", 200, json={"url": spelling}, headers=AUTH)
        assert again == {"url": added["url"], "device_id": device_id}, spelling
    assert [c["url"] for c in await connections(http)] == [first]


async def test_a_device_url_with_its_options_in_another_order_is_the_same_device(
    hub: Hub, http: aiohttp.ClientSession
) -> None:
    """An outside re-audit: the same options in another order answered 201 and a second connection watched the
    receiver under a second id."""
    added = await call(http, "POST", "/api/v1/devices", 201, json={"url": "bench://rack-e?a=1&b=2"}, headers=AUTH)
    again = await call(http, "POST", "/api/v1/devices", 200, json={"url": "bench://rack-e?b=2&a=1"}, headers=AUTH)
    assert again["url"] == added["url"] == "bench://rack-e?a=1&b=2"
    assert [c["url"] for c in await connections(http)] == ["bench://rack-e?a=1&b=2"]
    await call(http, "POST", "/api/v1/devices", 201, json={"url": "bench://rack-e?a=1&b=3"}, headers=AUTH)
    assert len(await connections(http)) == 2, "another value is another device"


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


def configured_hub(data_dir: Path, devices: list[str]) -> Hub:
    config = HubConfig(
        hub_id="webtest",
        data_dir=data_dir,
        devices=devices,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(host="127.0.0.1", port=0, token=TOKEN),
    )
    plugins = PluginHost()
    plugins.register(BenchPlugin(), "bench")
    return compose_hub(config, plugins)


async def test_a_device_from_the_config_file_can_be_placed_and_stays_placed(tmp_path: Path) -> None:
    async with configured_hub(tmp_path, ["bench://rack-e"]) as hub, client(hub) as http:
        await eventually(lambda: hub.store.get("bench-rack-e"), what="configured device online")
        body = {"name": "Stage", "kind": "stage"}
        stage = await call(http, "POST", "/api/v1/locations", 201, json=body, headers=AUTH)
        placed = await call(
            http, "PUT", "/api/v1/devices/bench-rack-e/location", 200, json={"location_id": stage["id"]}, headers=AUTH
        )
        assert placed["device_id"] == "bench-rack-e" and placed["location_id"] == stage["id"]
        there = await call(http, "GET", f"/api/v1/devices?location={stage['id']}", 200)
        assert [device["id"] for device in there["items"]] == ["bench-rack-e"]
    async with configured_hub(tmp_path, ["bench://rack-e"]) as hub, client(hub) as http:
        there = await call(http, "GET", f"/api/v1/devices?location={stage['id']}", 200)
        assert [device["id"] for device in there["items"]] == ["bench-rack-e"]
        assert [c["url"] for c in await connections(http)] == ["bench://rack-e"]
    # the config file brings it back, not the database: gone from the file, the hub does not connect it
    async with configured_hub(tmp_path, []) as hub, client(hub) as http:
        assert await connections(http) == []
        await call(http, "POST", "/api/v1/devices", 201, json={"url": "bench://rack-e"}, headers=AUTH)
    # added through the API it is remembered from now on, where it was placed
    async with configured_hub(tmp_path, []) as hub, client(hub) as http:
        await eventually(lambda: hub.store.get("bench-rack-e"), what="remembered device online")
        there = await call(http, "GET", f"/api/v1/devices?location={stage['id']}", 200)
        assert [device["id"] for device in there["items"]] == ["bench-rack-e"]


async def test_the_openapi_document_declares_what_the_server_answers(hub: Hub, http: aiohttp.ClientSession) -> None:
    await hub.add_device("bench://rack-a", source="test")
    await eventually(lambda: hub.store.get("bench-rack-a"), what="bench device")
    document = await call(http, "GET", "/api/openapi.json", 200)
    paths = document["paths"]
    commands = "/api/v1/channels/{channel_id}/commands"
    # a flood of commands is refused by the rate limit (10 a second) with 429, which the document lists
    flood = [{"kind": "name", "value": f"V{number}"} for number in range(30)]
    answers = await asyncio.gather(
        *(http.post(commands.format(channel_id="bench-rack-a:1"), json=body, headers=AUTH) for body in flood)
    )
    statuses = {answer.status for answer in answers}
    # and says when to send the next (an outside audit: a Companion-style client had nothing to go by)
    retry_after = {answer.headers.get("Retry-After") for answer in answers if answer.status == 429}
    for answer in answers:
        answer.release()
    assert 429 in statuses and retry_after == {"1"}, retry_after
    for path in (commands, "/api/v1/devices/{device_id}/commands"):
        refused = paths[path]["post"]["responses"]["429"]
        assert refused["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    too_long = {"name": "x" * 70_000}
    async with http.put("/api/v1/channels/bench-rack-a:1/extended-name", json=too_long, headers=AUTH) as answer:
        assert answer.status == 413 and (await answer.json())["code"] == "too_large"
    with_body = [op for item in paths.values() for op in item.values() if "requestBody" in op]
    assert with_body and all("413" in op["responses"] for op in with_body)
    # one title per schema: a generated client (openapi-python-client) dropped one of two 'CandidateView's
    titles = [schema.get("title") for schema in document["components"]["schemas"].values()]
    assert len(titles) == len(set(titles)), sorted(titles)
    # what the schema allows, the server takes: an integer written 3.0; slot numbers 1-999; the history's steps
    slot = await call(
        http, "PUT", "/api/v1/slots/999", 200, json={"device_id": "bench-rack-a", "channel": 1.0}, headers=AUTH
    )
    assert slot["channel"] == 1
    assert (await call(http, "PUT", "/api/v1/show", 200, json={"end_at": None, "margin_min": 20.0}, headers=AUTH))[
        "margin_min"
    ] == 20
    number = paths["/api/v1/slots/{number}"]["put"]["parameters"][0]["schema"]
    assert (number["minimum"], number["maximum"]) == (1, 999)
    await call(http, "PUT", "/api/v1/slots/1000", 422, json={"device_id": "bench-rack-a", "channel": 1}, headers=AUTH)
    history = paths["/api/v1/channels/{channel_id}/history"]["get"]["parameters"]
    step = next(parameter["schema"] for parameter in history if parameter["name"] == "step")
    assert step["anyOf"][0]["enum"] == [10, 60]
    await call(http, "GET", "/api/v1/channels/bench-rack-a:1/history?since=0&step=30", 422)
    # docs/api.md: acknowledging takes an optional body
    assert paths["/api/v1/alerts/{alert_id}/acknowledge"]["post"]["requestBody"]["required"] is False


async def test_with_closed_reads_the_openapi_document_says_every_endpoint_needs_the_token(tmp_path: Path) -> None:
    async with make_hub(tmp_path, token=TOKEN, open_reads=False) as hub, client(hub) as http:
        await call(http, "GET", "/api/v1/devices", 401)
        document = await call(http, "GET", "/api/openapi.json", 200, headers=AUTH)
        for item in document["paths"].values():
            for op in item.values():
                assert op["security"] == [{"bearer": []}] and "401" in op["responses"], op["operationId"]


async def test_a_name_is_counted_in_the_composed_form_it_is_stored_in(hub: Hub, http: aiohttp.ClientSession) -> None:
    await hub.add_device("bench://rack-a", source="test")
    await eventually(lambda: hub.store.get("bench-rack-a"), what="bench device")
    name = "é" * 64  # 64 characters; typed decomposed (macOS input) each is an 'e' and an accent
    body = {"name": unicodedata.normalize("NFD", name)}
    channel = await call(http, "PUT", "/api/v1/channels/bench-rack-a:1/extended-name", 200, json=body, headers=AUTH)
    assert channel["extended_name"] == name
    too_long = await call(
        http, "PUT", "/api/v1/channels/bench-rack-a:1/extended-name", 422, json={"name": "é" * 65}, headers=AUTH
    )
    # an outside audit: it said "Value should have at most 64 items after validation", as of a list
    assert too_long["details"] == [
        {"loc": ["name"], "msg": "String should have at most 64 characters", "type": "string_too_long"}
    ]


async def test_errors_name_where_the_token_is_and_a_listed_code(tmp_path: Path) -> None:
    (tmp_path / "api-token").write_text("an-old-token-from-before-rotation\n")
    async with make_hub(tmp_path, token=TOKEN) as hub, client(hub) as http:
        refused = await call(http, "POST", "/api/v1/devices", 401, json={"url": "bench://rack-a"})
        assert "http.token" in refused["error"] and "api-token" not in refused["error"]
        not_upgraded = await call(http, "GET", "/api/v1/live", 400)
        assert not_upgraded["code"] == "bad_request"
