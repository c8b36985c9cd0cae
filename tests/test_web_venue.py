"""REST API over the venue store: locations, slots, groups, performers, assignments, history, audit."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.persistence import IN_MEMORY, Persistence, SimulatedClock
from hub.persistence.history import encode_bucket
from hub.persistence.testing import open_simulated, put_receiver
from hub.plugins import PluginHost
from tests.test_faults_startup import RunningHub, running_hub, simulated_receivers
from tests.test_web_api import BenchPlugin, client, make_hub

TOKEN = "venue-board-token"
DAY = 24 * 3600
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Venue:
    hub: Hub
    store: Persistence
    clock: SimulatedClock
    http: aiohttp.ClientSession

    def tick(self, seconds: float, steps: int = 1) -> None:
        """Move the store's clock and let it judge alerts (its ticker does this in a running hub)."""
        for _ in range(steps):
            self.clock.advance(seconds / steps)
            self.store.step()


@pytest.fixture
async def venue(tmp_path: Path) -> AsyncIterator[Venue]:
    config = HubConfig(
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN),
    )
    clock = SimulatedClock(start=time.time())
    plugins = PluginHost()
    plugins.register(BenchPlugin(), "bench")  # known devices must name a scheme some plugin handles
    hub = compose_hub(config, plugins)
    store = await open_simulated(IN_MEMORY, hub.store, clock)
    hub.persistence = store
    put_receiver(hub.store, "rx-1", channels=1, battery_bars=4)
    try:
        async with hub, aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}") as session:
            yield Venue(hub, store, clock, session)
    finally:
        await store.close()


@pytest.fixture
def http(venue: Venue) -> aiohttp.ClientSession:
    return venue.http


async def call(http: aiohttp.ClientSession, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    async with http.request(method, path, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        assert response.status == expect, body
        if expect >= 400:
            assert set(body) == {"error", "code", "details"}, body
        return body


async def test_locations(http: aiohttp.ClientSession) -> None:
    stage = await call(
        http, "POST", "/api/v1/locations", 201, json={"name": "Main stage", "kind": "stage"}, headers=AUTH
    )
    rack = await call(
        http,
        "POST",
        "/api/v1/locations",
        201,
        json={"name": "Rack 1", "kind": "rack", "parent_id": stage["id"]},
        headers=AUTH,
    )
    assert rack["parent_id"] == stage["id"]
    renamed = await call(http, "PATCH", f"/api/v1/locations/{rack['id']}", 200, json={"name": "Rack A"}, headers=AUTH)
    assert renamed["name"] == "Rack A"
    moved = await call(http, "PATCH", f"/api/v1/locations/{rack['id']}", 200, json={"move_to_top": True}, headers=AUTH)
    assert moved["parent_id"] is None
    listed = await call(http, "GET", "/api/v1/locations", 200)
    assert [item["name"] for item in listed["items"]] == ["Main stage", "Rack A"]
    await call(http, "DELETE", f"/api/v1/locations/{stage['id']}", 204, headers=AUTH)
    assert (await call(http, "DELETE", "/api/v1/locations/999", 404, headers=AUTH))["code"] == "not_found"
    bad = await call(http, "POST", "/api/v1/locations", 422, json={"name": "X", "kind": "cellar"}, headers=AUTH)
    assert bad["code"] == "invalid_body"
    await call(http, "POST", "/api/v1/locations", 401, json={"name": "X", "kind": "room"})


async def test_an_error_naming_a_number_beyond_64_bits_is_the_same_compact_json(http: aiohttp.ClientSession) -> None:
    """An outside audit: the store's 422 for a parent id beyond 64 bits (which orjson cannot write) came out
    with a space after every separator, unlike every other answer."""
    body = '{"name":"Rack","kind":"room","parent_id":99999999999999999999}'
    async with http.post("/api/v1/locations", data=body, headers={**AUTH, "Content-Type": "application/json"}) as got:
        assert got.status == 422
        text = await got.text()
    assert json.loads(text)["details"] == {"parent_id": 99999999999999999999}, text
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False), text


async def test_slots_and_groups(http: aiohttp.ClientSession) -> None:
    slot = await call(http, "PUT", "/api/v1/slots/3", 200, json={"device_id": "rx-1", "channel": 1}, headers=AUTH)
    assert slot == {"number": 3, "device_id": "rx-1", "channel": 1}
    taken = await call(http, "PUT", "/api/v1/slots/4", 409, json={"device_id": "rx-1", "channel": 1}, headers=AUTH)
    assert taken["code"] == "conflict" and taken["details"]["slot"] == 3
    assert (await call(http, "GET", "/api/v1/slots", 200))["items"] == [slot]
    group = {"title": "Band", "slots": [3, 4]}
    assert (await call(http, "PUT", "/api/v1/groups/1", 201, json=group, headers=AUTH))["slots"] == [3, 4]
    group["title"] = "Band A"
    assert (await call(http, "PUT", "/api/v1/groups/1", 200, json=group, headers=AUTH))["title"] == "Band A"
    twice = await call(http, "PUT", "/api/v1/groups/2", 422, json={"title": "T", "slots": [1, 1]}, headers=AUTH)
    assert twice["code"] == "invalid"
    assert [g["number"] for g in (await call(http, "GET", "/api/v1/groups", 200))["items"]] == [1]
    await call(http, "DELETE", "/api/v1/groups/1", 204, headers=AUTH)
    await call(http, "DELETE", "/api/v1/slots/3", 204, headers=AUTH)
    assert (await call(http, "DELETE", "/api/v1/slots/3", 404, headers=AUTH))["code"] == "not_found"
    await call(http, "PUT", "/api/v1/slots/abc", 404, json={"device_id": "rx-1", "channel": 1}, headers=AUTH)


async def test_performers_and_assignments(http: aiohttp.ClientSession) -> None:
    jim = await call(http, "POST", "/api/v1/performers", 201, json={"name": "Pastor Jim"}, headers=AUTH)
    ann = await call(
        http, "POST", "/api/v1/performers", 201, json={"name": "Ann", "notes": "left-handed"}, headers=AUTH
    )
    patched = await call(http, "PATCH", f"/api/v1/performers/{ann['id']}", 200, json={"notes": ""}, headers=AUTH)
    assert patched == {"id": ann["id"], "name": "Ann", "notes": ""}
    body = {"performer_id": jim["id"], "alert_prefs": {"battery_bars": 2}}
    assignment = await call(http, "PUT", "/api/v1/channels/rx-1:1/assignment", 200, json=body, headers=AUTH)
    assert assignment["alert_prefs"]["battery_bars"] == 2
    clash = await call(
        http, "PUT", "/api/v1/channels/rx-1:1/assignment", 409, json={"performer_id": ann["id"]}, headers=AUTH
    )
    assert clash["code"] == "conflict"
    unknown = await call(
        http, "PUT", "/api/v1/channels/rx-1:1/assignment", 404, json={"performer_id": 99}, headers=AUTH
    )
    assert unknown["code"] == "not_found"
    await call(http, "PUT", "/api/v1/channels/rx-9:1/assignment", 404, json={"performer_id": jim["id"]}, headers=AUTH)
    listed = await call(http, "GET", f"/api/v1/assignments?performer_id={jim['id']}", 200)
    assert [(a["device_id"], a["channel"]) for a in listed["items"]] == [("rx-1", 1)]
    await call(http, "DELETE", "/api/v1/channels/rx-1:1/assignment", 204, headers=AUTH)
    await call(http, "DELETE", "/api/v1/channels/rx-1:1/assignment", 404, headers=AUTH)
    await call(http, "DELETE", f"/api/v1/performers/{ann['id']}", 204, headers=AUTH)
    assert [p["name"] for p in (await call(http, "GET", "/api/v1/performers", 200))["items"]] == ["Pastor Jim"]


@pytest.mark.parametrize(
    ("prefs", "expected"),
    [
        ({"disabled_kinds": ["low-battery"]}, "unknown alert kind 'low-battery'; the kinds are low_battery, tx_off"),
        ({"disabled_kinds": ["x\n\u001b[31mFAKE"]}, "unknown alert kind 'x\\n\\x1b[31mFAKE'"),
        ({"disabled_kinds": ["<b>b</b>"]}, "unknown alert kind '<b>b</b>'"),
        ({"battery_runtime_min": 2**70}, "less than or equal to 1440"),
        ({"battery_runtime_min": 1441}, "less than or equal to 1440"),
        ({"battery_runtime_min": -1}, "greater than or equal to 0"),
    ],
)
async def test_alert_prefs_take_known_kinds_and_bounded_numbers(
    http: aiohttp.ClientSession, prefs: dict[str, Any], expected: str
) -> None:
    jim = await call(http, "POST", "/api/v1/performers", 201, json={"name": "Jim"}, headers=AUTH)
    body = {"performer_id": jim["id"], "alert_prefs": prefs}
    refused = await call(http, "PUT", "/api/v1/channels/rx-1:1/assignment", 422, json=body, headers=AUTH)
    assert refused["code"] == "invalid_body" and expected in refused["details"][0]["msg"], refused
    assert (await call(http, "GET", "/api/v1/assignments", 200))["items"] == []
    body["alert_prefs"] = {"disabled_kinds": ["tx_off", "rf_low", "tx_off"], "battery_runtime_min": 1440}
    taken = await call(http, "PUT", "/api/v1/channels/rx-1:1/assignment", 200, json=body, headers=AUTH)
    assert taken["alert_prefs"]["disabled_kinds"] == ["tx_off", "rf_low"]


async def test_alert_prefs_stored_by_an_earlier_version_keep_what_is_still_valid(tmp_path: Path) -> None:
    async with make_hub(tmp_path, token=TOKEN) as hub, client(hub) as http:
        await call(http, "POST", "/api/v1/devices", 201, json={"url": "bench://rack-a"}, headers=AUTH)
        jim = await call(http, "POST", "/api/v1/performers", 201, json={"name": "Jim"}, headers=AUTH)
        body = {"performer_id": jim["id"], "alert_prefs": {"battery_bars": 2}}
        await call(http, "PUT", "/api/v1/channels/bench-rack-a:1/assignment", 200, json=body, headers=AUTH)
    old = {"disabled_kinds": ["low-battery", "tx_off"], "battery_runtime_min": 2**70, "battery_bars": 2}
    with contextlib.closing(sqlite3.connect(tmp_path / "wmhub.sqlite3")) as db, db:
        db.execute("UPDATE assignments SET alert_prefs = ?", (json.dumps(old),))
    async with make_hub(tmp_path, token=TOKEN) as hub, client(hub) as http:
        [assignment] = (await call(http, "GET", "/api/v1/assignments", 200))["items"]
        assert assignment["alert_prefs"] == {
            "disabled_kinds": ["tx_off"],
            "battery_bars": 2,
            "battery_percent": None,
            "battery_runtime_min": None,
        }


async def test_history_and_audit(http: aiohttp.ClientSession) -> None:
    now = time.time()
    missing = await call(http, "GET", f"/api/v1/channels/rx-1:1/history?since={now - 60}", 404)
    assert missing["code"] == "not_found"
    assert (await call(http, "GET", "/api/v1/channels/rx-1:1/history?since=soon", 422))["code"] == "invalid_query"
    await call(http, "POST", "/api/v1/performers", 201, json={"name": "Audited"}, headers=AUTH)
    entries = (await call(http, "GET", "/api/v1/audit?source=rest", 200))["items"]
    assert entries[0]["action"] == "performer.create" and entries[0]["source"] == "rest"
    assert (await call(http, "GET", "/api/v1/audit?limit=0", 422))["code"] == "invalid_query"
    # an outside audit: an unknown source answered 200 with no entries, as if nothing had been done
    bogus = await call(http, "GET", "/api/v1/audit?source=bogus", 422)
    assert bogus["code"] == "invalid_query" and bogus["details"][0]["loc"] == ["source"], bogus
    assert all(f"'{source}'" in bogus["details"][0]["msg"] for source in ("rest", "mqtt", "ui", "discovery")), bogus


async def test_openapi_lists_the_venue_routes_with_integer_ids(http: aiohttp.ClientSession) -> None:
    paths = (await call(http, "GET", "/api/openapi.json", 200))["paths"]
    parameter = paths["/api/v1/slots/{number}"]["put"]["parameters"][0]
    assert parameter["schema"]["type"] == "integer"
    assert "/api/v1/channels/{channel_id}/history" in paths


async def test_alerts_listed_and_acknowledged(venue: Venue) -> None:
    http = venue.http
    assert (await call(http, "GET", "/api/v1/alerts", 200))["items"] == []
    venue.hub.store.update_channel("rx-1", 1, {"battery_bars": 1})
    venue.tick(10, steps=5)
    alerts = (await call(http, "GET", "/api/v1/alerts", 200))["items"]
    assert [(a["kind"], a["device_id"], a["channel"]) for a in alerts] == [("low_battery", "rx-1", 1)]
    alert_id = alerts[0]["id"]
    metrics = await call(http, "GET", "/metrics", 200)
    assert 'wmhub_alerts_open{acknowledged="false",kind="low_battery"' in metrics
    await call(http, "POST", f"/api/v1/alerts/{alert_id}/acknowledge", 401)
    seen = await call(http, "POST", f"/api/v1/alerts/{alert_id}/acknowledge", 200, json={"by": "A2"}, headers=AUTH)
    assert seen["acknowledged_by"] == "A2" and seen["acknowledged_at"] is not None
    assert (await call(http, "POST", f"/api/v1/alerts/{alert_id}/acknowledge", 200, headers=AUTH))["id"] == alert_id
    assert (await call(http, "POST", "/api/v1/alerts/999/acknowledge", 404, headers=AUTH))["code"] == "not_found"
    venue.hub.store.update_channel("rx-1", 1, {"battery_bars": 5})
    venue.tick(20, steps=10)
    assert (await call(http, "GET", "/api/v1/alerts", 200))["items"] == []
    recent = (await call(http, "GET", "/api/v1/alerts?recent=true", 200))["items"]
    assert recent[0]["id"] == alert_id and recent[0]["cleared_at"] is not None
    cleared = await call(http, "POST", f"/api/v1/alerts/{alert_id}/acknowledge", 409, headers=AUTH)
    assert cleared["code"] == "conflict"


async def test_device_location_and_the_location_filter(venue: Venue) -> None:
    http = venue.http
    await venue.store.devices.add("bench://rx-1", source="test", device_id="rx-1")
    stage = await call(http, "POST", "/api/v1/locations", 201, json={"name": "Stage", "kind": "stage"}, headers=AUTH)
    rack = await call(
        http,
        "POST",
        "/api/v1/locations",
        201,
        json={"name": "Rack", "kind": "rack", "parent_id": stage["id"]},
        headers=AUTH,
    )
    placed = await call(
        http, "PUT", "/api/v1/devices/rx-1/location", 200, json={"location_id": rack["id"]}, headers=AUTH
    )
    assert placed["location_id"] == rack["id"]
    for location, expected in ((rack["id"], ["rx-1"]), (stage["id"], ["rx-1"]), (999, [])):
        listed = await call(http, "GET", f"/api/v1/devices?location={location}", 200)
        assert [d["id"] for d in listed["items"]] == expected
    assert (await call(http, "GET", f"/api/v1/channels?location={stage['id']}", 200))["total"] == 1
    in_use = await call(http, "DELETE", f"/api/v1/locations/{rack['id']}", 409, headers=AUTH)
    assert in_use["code"] == "conflict"
    await call(http, "PUT", "/api/v1/devices/rx-1/location", 422, json={"location_id": 999}, headers=AUTH)
    await call(http, "PUT", "/api/v1/devices/ghost/location", 404, json={"location_id": None}, headers=AUTH)


async def test_a_refused_move_leaves_the_location_as_it_was(http: aiohttp.ClientSession) -> None:
    stage = await call(http, "POST", "/api/v1/locations", 201, json={"name": "Stage B", "kind": "stage"}, headers=AUTH)
    path = f"/api/v1/locations/{stage['id']}"
    for body in (
        {"name": "Renamed", "kind": "room", "parent_id": 999999},
        {"name": "Inside", "parent_id": stage["id"]},
    ):
        assert (await call(http, "PATCH", path, 422, json=body, headers=AUTH))["code"] == "invalid"
    assert (await call(http, "GET", "/api/v1/locations", 200))["items"] == [stage]
    actions = [entry["action"] for entry in (await call(http, "GET", "/api/v1/audit", 200))["items"]]
    assert actions == ["location.create"]


async def test_a_location_nested_deeper_than_allowed_is_422_naming_the_bound(http: aiohttp.ClientSession) -> None:
    parent = None
    for level in range(16):
        body = {"name": f"Rack {level}", "kind": "rack"} | ({"parent_id": parent} if parent else {})
        parent = (await call(http, "POST", "/api/v1/locations", 201, json=body, headers=AUTH))["id"]
    body = {"name": "Rack 16", "kind": "rack", "parent_id": parent}
    refused = await call(http, "POST", "/api/v1/locations", 422, json=body, headers=AUTH)
    assert refused["code"] == "invalid" and "at most 16 levels deep" in refused["error"], refused
    found = await call(http, "GET", "/api/v1/devices?location=1", 200)
    assert found["total"] == 0


async def test_text_that_reads_like_a_secret_option_is_kept_and_audited(http: aiohttp.ClientSession) -> None:
    """Notes and names are the user's words, ``key="12"`` included: the audit's redaction must not break them."""
    notes = 'spare pack in locker key="12", pass=(B)'
    performer = await call(
        http, "POST", "/api/v1/performers", 201, json={"name": "Bassist", "notes": notes}, headers=AUTH
    )
    group = await call(http, "PUT", "/api/v1/groups/7", 201, json={"title": 'Band pass="B"', "slots": []}, headers=AUTH)
    assert performer["notes"] == notes and group["title"] == 'Band pass="B"'
    entries = (await call(http, "GET", "/api/v1/audit", 200))["items"]
    assert [entry["action"] for entry in entries] == ["group.create", "performer.create"]
    assert entries[1]["after"]["name"] == "Bassist" and entries[1]["after"]["notes"].startswith("spare pack in locker")


async def test_ids_no_row_can_have_answer_404(http: aiohttp.ClientSession) -> None:
    """Digits int() cannot read (more than 4,300 of them, another script's) are no id either."""
    huge = "9" * 5000
    for method, path in (
        ("PATCH", f"/api/v1/performers/{huge}"),
        ("DELETE", f"/api/v1/slots/{huge}"),
        ("DELETE", f"/api/v1/frequency-plan/carriers/{huge}"),
        ("PATCH", "/api/v1/performers/\u0663"),  # ARABIC-INDIC DIGIT THREE, which int() reads as 3
        ("DELETE", "/api/v1/slots/\u00b2"),
    ):
        assert (await call(http, method, path, 404, json={"name": "x"}, headers=AUTH))["code"] == "not_found"


@pytest.mark.parametrize("text", ["Lead\u009b2JVox", "Lead\u0085Vox", "Lead\u202eVox"])
async def test_names_with_c1_controls_or_direction_overrides_are_refused(
    http: aiohttp.ClientSession, text: str
) -> None:
    for method, path, body in (
        ("POST", "/api/v1/performers", {"name": text}),
        ("POST", "/api/v1/locations", {"name": text, "kind": "room"}),
        ("PUT", "/api/v1/groups/3", {"title": text, "slots": []}),
    ):
        assert (await call(http, method, path, 422, json=body, headers=AUTH))["code"] == "invalid_body"
    assert (await call(http, "GET", "/api/v1/performers", 200))["items"] == []


async def test_names_are_one_whatever_their_unicode_form_and_invisible_ones_are_refused(
    http: aiohttp.ClientSession,
) -> None:
    """ "José" typed precomposed and with a combining accent looked identical on the board yet were two
    stages; a name of only invisible format characters (U+200E, U+200F, U+FEFF, U+200B) showed blank."""
    body = {"name": "Jose\u0301", "kind": "stage"}
    created = await call(http, "POST", "/api/v1/locations", 201, json=body, headers=AUTH)
    assert created["name"] == "Jos\u00e9"  # stored composed (NFC)
    for name in ("Jos\u00e9", "JOS\u00c9", "JOSE\u0301", "\u200bjose\u0301\ufeff"):
        taken = await call(http, "POST", "/api/v1/locations", 409, json={"name": name, "kind": "stage"}, headers=AUTH)
        assert taken["code"] == "conflict", name
    for name in ("\u200e\u200f", "\ufeff", "\u200b", "   ", " \u200b\u2060 "):
        blank = await call(http, "POST", "/api/v1/performers", 422, json={"name": name}, headers=AUTH)
        assert "must not be empty" in blank["error"], (name, blank)
        await call(http, "PUT", "/api/v1/groups/4", 422, json={"title": name, "slots": []}, headers=AUTH)
    assert (await call(http, "GET", "/api/v1/performers", 200))["items"] == []
    kept = await call(http, "POST", "/api/v1/performers", 201, json={"name": "\ufeffRe\u0301my\u200b"}, headers=AUTH)
    assert kept["name"] == "R\u00e9my"


async def test_renaming_a_performer_or_a_location_keeps_what_refers_to_it_after_a_restart(tmp_path: Path) -> None:
    """A rename is an update in place: the performer keeps its channel, the location its child and its device,
    on disk too (a delete-and-insert would have cascaded the assignment away and unplaced the rest)."""
    async with make_hub(tmp_path, token=TOKEN) as hub, client(hub) as http:
        await call(http, "POST", "/api/v1/devices", 201, json={"url": "bench://rack-a"}, headers=AUTH)
        alice = await call(http, "POST", "/api/v1/performers", 201, json={"name": "Alice"}, headers=AUTH)
        assignment = {"performer_id": alice["id"], "alert_prefs": {"battery_bars": 2}}
        await call(http, "PUT", "/api/v1/channels/bench-rack-a:1/assignment", 200, json=assignment, headers=AUTH)
        stage = await call(http, "POST", "/api/v1/locations", 201, json={"name": "Main", "kind": "stage"}, headers=AUTH)
        rack = {"name": "Rack A", "kind": "rack", "parent_id": stage["id"]}
        rack = await call(http, "POST", "/api/v1/locations", 201, json=rack, headers=AUTH)
        placed = {"location_id": stage["id"]}
        await call(http, "PUT", "/api/v1/devices/bench%3A%2F%2Frack-a/location", 200, json=placed, headers=AUTH)
        await call(http, "PATCH", f"/api/v1/performers/{alice['id']}", 200, json={"name": "Alice B."}, headers=AUTH)
        renamed = {"name": "Main West"}
        await call(http, "PATCH", f"/api/v1/locations/{stage['id']}", 200, json=renamed, headers=AUTH)
    async with make_hub(tmp_path, token=TOKEN) as hub, client(hub) as http:
        assignments = (await call(http, "GET", "/api/v1/assignments", 200))["items"]
        assert [(a["performer_id"], a["device_id"], a["channel"]) for a in assignments] == [
            (alice["id"], "bench-rack-a", 1)
        ]
        locations = {item["id"]: item for item in (await call(http, "GET", "/api/v1/locations", 200))["items"]}
        assert locations[stage["id"]]["name"] == "Main West" and locations[rack["id"]]["parent_id"] == stage["id"]
        placed_here = await call(http, "GET", f"/api/v1/devices?location={stage['id']}", 200)
        assert placed_here["total"] == 1, placed_here


async def test_notes_keep_line_breaks_and_tabs_but_refuse_other_controls(http: aiohttp.ClientSession) -> None:
    notes = "IEM mix 3\nspare pack:\tleft rack"
    carol = await call(http, "POST", "/api/v1/performers", 201, json={"name": "Carol", "notes": notes}, headers=AUTH)
    assert carol["notes"] == notes
    patched = await call(http, "PATCH", f"/api/v1/performers/{carol['id']}", 200, json={"notes": "x\ny"}, headers=AUTH)
    assert patched["notes"] == "x\ny"
    assert [p["notes"] for p in (await call(http, "GET", "/api/v1/performers", 200))["items"]] == ["x\ny"]
    refused = await call(
        http, "PATCH", f"/api/v1/performers/{carol['id']}", 422, json={"notes": "x\x1b[2Jy"}, headers=AUTH
    )
    assert refused["code"] == "invalid_body"


async def test_the_stored_history_of_a_receiver_that_is_off_after_a_restart_is_readable(tmp_path: Path) -> None:
    """A receiver switched off before the hub restarts is not in the live state, but its history is on disk:
    the history endpoint answers it (it used to look the channel up among live ones only: 404)."""
    start = int(time.time()) // 600 * 600 - 600  # a finished 10 min block, well inside the 24 h tier
    async with make_hub(tmp_path, token=TOKEN) as hub:
        series = hub.persistence.history.series("shure-off", 2)
        for k in range(6):
            hub.persistence.history.add_bucket(series, start + k * 10, encode_bucket([60, 60, 60, -50] + [-40] * 5))
    async with make_hub(tmp_path, token=TOKEN) as hub, client(hub) as http:
        assert hub.state.get("shure-off") is None, "the receiver is off"
        history = await call(http, "GET", f"/api/v1/channels/shure-off:2/history?since={start}&until={start + 60}", 200)
        assert [(point["t"], point["battery_avg"]) for point in history["items"]] == [
            (start + k * 10, 60) for k in range(6)
        ]
        await call(http, "GET", f"/api/v1/channels/never-seen:1/history?since={start}", 404)


def test_the_audit_finds_a_device_s_placements_by_its_id_and_by_its_url(tmp_path: Path) -> None:
    """docs/deployment.md sends a user looking for lost placements to ``/api/v1/audit?target=<device id>``, but
    ``device.location`` was written under the device's URL, and a URL could not be asked for at all (its port
    was read as a channel). New entries name the id; an entry an older build wrote under the URL is found by
    the id too, and the URL finds both."""

    def actions(hub: RunningHub, target: str) -> list[tuple[str, str]]:
        status, body = hub.get(f"/api/v1/audit?target={urllib.parse.quote(target, safe='')}")
        assert status == 200, body
        return [(entry["action"], entry["target"]) for entry in json.loads(body)["items"]]

    with simulated_receivers(1) as (url,):
        with running_hub(tmp_path) as hub:
            token = (tmp_path / "api-token").read_text().strip()
            assert hub.post("/api/v1/devices", json.dumps({"url": url}), token)[0] in (200, 201, 202)
            device_id = wait_until_online(hub)
            hub.stop()
        with sqlite3.connect(tmp_path / "wmhub.sqlite3") as database:  # what an older build wrote on a move
            database.execute(
                "INSERT INTO audit (id, at, source, action, target, before, after, result) "
                "VALUES (1000, ?, 'rest', 'device.location', ?, NULL, '1', 'ok')",
                (time.time(), url),
            )
        database.close()
        with running_hub(tmp_path) as hub:
            assert wait_until_online(hub) == device_id
            status, body = hub.post("/api/v1/locations", json.dumps({"name": "Stage left", "kind": "stage"}), token)
            assert status == 201, body
            location = json.loads(body)["id"]
            request = urllib.request.Request(
                f"http://127.0.0.1:{hub.port}/api/v1/devices/{device_id}/location",
                json.dumps({"location_id": location}).encode(),
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                method="PUT",
            )
            assert hub.request(request)[0] == 200
            placements = [("device.location", device_id), ("device.location", url)]
            assert [entry for entry in actions(hub, device_id) if entry[0] == "device.location"] == placements
            by_url = actions(hub, url)
            assert [entry for entry in by_url if entry[0] == "device.location"] == placements
            assert ("device.add", url) in by_url


def wait_until_online(hub: RunningHub) -> str:
    """The id of the hub's one device, once it is online."""
    deadline = time.monotonic() + 20
    while True:
        items = json.loads(hub.get("/api/v1/devices")[1])["items"]
        if items and items[0]["online"]:
            return str(items[0]["id"])
        assert time.monotonic() < deadline, items
        time.sleep(0.1)


@contextlib.asynccontextmanager
async def venue_on_file(data_dir: Path, clock: SimulatedClock) -> AsyncIterator[Venue]:
    """A hub serving HTTP whose store reads and writes ``data_dir`` as a start would, on a simulated clock."""
    config = HubConfig(
        data_dir=data_dir,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN),
    )
    plugins = PluginHost()
    plugins.register(BenchPlugin(), "bench")
    hub = compose_hub(config, plugins)
    store = await open_simulated(data_dir, hub.store, clock)
    hub.persistence = store
    try:
        async with hub, aiohttp.ClientSession(f"http://127.0.0.1:{hub.web.port}") as session:
            yield Venue(hub, store, clock, session)
    finally:
        await store.close()


async def test_a_removed_receiver_s_history_index_goes_with_its_history_and_it_records_anew_when_back(
    tmp_path: Path,
) -> None:
    """An outside soak audit: every (device id, channel) the hub ever saw kept its history_series row, loaded at
    every start and held in memory, long after its history expired; ids come and go (receivers readdressed, ids
    made of host and port, demo ports), so the file and the hub grew for good. The hourly sweep now drops the
    series of a gone device with its last block; a present receiver keeps its own however long it is quiet; a
    receiver back after its history expired records under a new series and reads only what it recorded since."""
    clock = SimulatedClock(start=float(int(time.time()) // 600 * 600))
    first_start = int(clock.now())
    async with venue_on_file(tmp_path, clock) as venue:
        put_receiver(venue.hub.store, "rx-gone", channels=2, battery_percent=90, rf_dbm=-60.0, audio_dbfs=-30.0)
        put_receiver(venue.hub.store, "rx-quiet", channels=1, battery_percent=70, rf_dbm=-55.0, audio_dbfs=-20.0)
        venue.tick(120, steps=240)
        before = await call(venue.http, "GET", f"/api/v1/channels/rx-gone:1/history?since={first_start}", 200)
        assert {point["battery_avg"] for point in before["items"]} == {90}

        venue.hub.store.remove_device("rx-gone")  # taken out of the venue
        venue.hub.store.update_channel("rx-quiet", 1, {"tx_present": False})  # still there, its pack out
        venue.tick(3 * DAY, steps=3 * 24)
        kept = await call(venue.http, "GET", f"/api/v1/channels/rx-gone:1/history?since={first_start}", 200)
        assert kept["items"] and {point["battery_avg"] for point in kept["items"]} == {90}, "readable while kept"

        venue.tick(6 * DAY, steps=6 * 24)  # past the 7-day tier: every block is gone
        assert await venue.store.db.sync()
        await call(venue.http, "GET", f"/api/v1/channels/rx-gone:1/history?since={first_start}", 404)
        quiet = await call(venue.http, "GET", f"/api/v1/channels/rx-quiet:1/history?since={first_start}", 200)
        assert quiet["items"] == [], "a present receiver keeps its channel's history, empty as it is"

    with contextlib.closing(sqlite3.connect(tmp_path / "wmhub.sqlite3")) as db:
        rows = db.execute("SELECT device_id, channel FROM history_series ORDER BY device_id, channel").fetchall()
        assert rows == [("rx-quiet", 1)], "the gone receiver's rows are not in the file a start loads"
        assert db.execute("SELECT count(*) FROM history_blocks").fetchone() == (0,)

    # a fresh start on that file; the receiver comes back (same id, other values) and the quiet one's pack is in
    clock.advance(60)
    async with venue_on_file(tmp_path, clock) as venue:
        back_start = int(clock.now())
        put_receiver(venue.hub.store, "rx-gone", channels=2, battery_percent=40, rf_dbm=-70.0, audio_dbfs=-10.0)
        put_receiver(venue.hub.store, "rx-quiet", channels=1, battery_percent=60, rf_dbm=-50.0, audio_dbfs=-25.0)
        venue.tick(60, steps=120)
        for channel, battery in (("rx-gone:1", 40), ("rx-gone:2", 40), ("rx-quiet:1", 60)):
            since = back_start - 3600  # the 10 s tier: what the channel recorded since it came back, no more
            history = await call(venue.http, "GET", f"/api/v1/channels/{channel}/history?since={since}", 200)
            assert [point["t"] for point in history["items"]] == list(range(back_start, back_start + 60, 10)), channel
            assert {point["battery_avg"] for point in history["items"]} == {battery}, channel

    with contextlib.closing(sqlite3.connect(tmp_path / "wmhub.sqlite3")) as db:
        rows = db.execute("SELECT device_id, channel FROM history_series ORDER BY device_id, channel").fetchall()
        assert rows == [("rx-gone", 1), ("rx-gone", 2), ("rx-quiet", 1)]
        unnamed = "SELECT count(*) FROM history_blocks WHERE series_id NOT IN (SELECT id FROM history_series)"
        assert db.execute(unnamed).fetchone() == (0,), "every block belongs to a channel"
