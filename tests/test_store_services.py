"""Every configuration service of the store: what it keeps, what it refuses (typed errors), what it audits,
and that it all survives a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.drivers import EndpointError
from hub.hookspecs import Candidate
from hub.model import Command, CommandKind, CommandResult
from hub.persistence import (
    HTTP_STATUS,
    IN_MEMORY,
    ConflictError,
    InvalidInputError,
    LocationKind,
    NotFoundError,
    Persistence,
    Source,
    StoreError,
    venue,
)
from hub.persistence.testing import open_simulated, put_receiver
from hub.state import StateStore


@pytest.fixture
async def store() -> AsyncIterator[Persistence]:
    persistence = await open_simulated(IN_MEMORY)
    yield persistence
    await persistence.close()


async def test_errors_carry_a_code_an_edge_can_map(store: Persistence) -> None:
    with pytest.raises(StoreError) as caught:
        await store.slots.clear(7, source=Source.REST)
    assert isinstance(caught.value, NotFoundError)
    assert caught.value.as_dict() == {"error": "slot 7 is empty", "code": "not_found", "details": {"slot": 7}}
    assert HTTP_STATUS[caught.value.code] == 404
    assert HTTP_STATUS[ConflictError.code] == 409 and HTTP_STATUS[InvalidInputError.code] == 422


async def test_known_devices_add_bind_remove(store: Persistence) -> None:
    added = await store.devices.add("shure://127.0.0.1:2202", source=Source.REST)
    assert added.device_id is None and added.source == "rest"
    store.devices.bind("shure://127.0.0.1:2202", "shure-AD4D123")
    assert store.devices.get("shure-AD4D123").url == "shure://127.0.0.1:2202"
    assert store.restore() == [("shure://127.0.0.1:2202", "shure-AD4D123")]
    with pytest.raises(ConflictError):
        await store.devices.add("shure://127.0.0.1:2202", source=Source.CLI)
    for bad in ("not a url", "x://[", "shure://127.0.0.1:99999"):
        with pytest.raises(InvalidInputError):
            await store.devices.add(bad, source=Source.CLI)
    removed = await store.devices.remove("shure-AD4D123", source=Source.UI)
    assert removed.url == added.url and store.restore() == []
    with pytest.raises(NotFoundError):
        store.devices.get("shure-AD4D123")


async def test_url_check_refuses_schemes_no_plugin_handles(store: Persistence) -> None:
    def only_shure(url: str) -> None:
        if not url.startswith("shure://"):
            raise EndpointError(f"no plugin handles {url!r}")

    store.devices.url_check = only_shure
    with pytest.raises(InvalidInputError, match="no plugin handles"):
        await store.devices.add("ftp://127.0.0.1:21", source=Source.REST)


async def test_candidates_wait_for_approval_unless_auto_approved(store: Persistence) -> None:
    found = Candidate(url="ssc://127.0.0.1:45", vendor="sennheiser", model="EW-DX EM 2", name="Stage L")
    assert await store.candidates.offer(found) is None
    assert [candidate.url for candidate in store.candidates.all()] == [found.url]
    assert store.restore() == []
    approved = await store.candidates.approve(found.url, source=Source.UI)
    assert approved.url == found.url and store.candidates.all() == []
    assert await store.candidates.offer(found) is None, "a known device is not a candidate again"
    with pytest.raises(NotFoundError):
        await store.candidates.approve("ssc://127.0.0.1:46", source=Source.UI)

    other = Candidate(url="ssc://127.0.0.1:47", vendor="sennheiser")
    await store.candidates.offer(other)
    dismissed = await store.candidates.dismiss(other.url, source=Source.UI)
    assert dismissed.url == other.url and store.candidates.all() == []

    store.candidates.auto_approve = True
    auto = await store.candidates.offer(Candidate(url="shure://127.0.0.1:2203", vendor="shure"))
    assert auto is not None and auto.source == "discovery"
    assert store.candidates.all() == []


async def test_connection_health_keeps_the_latest_report(store: Persistence) -> None:
    entry = {
        "url": "shure://127.0.0.1:2202",
        "device_id": "shure-1",
        "plugin": "shure",
        "connected": False,
        "connected_since": None,
        "attempts": 3,
        "reconnects": 1,
        "last_error": "connection refused",
    }
    store.health.update([entry])
    health = store.health.get("shure-1")
    assert (health.attempts, health.reconnects, health.last_error) == (3, 1, "connection refused")
    store.health.update([{**entry, "connected": True, "connected_since": 1000.0, "attempts": 4}])
    assert store.health.get("shure://127.0.0.1:2202").connected_since == 1000.0
    with pytest.raises(NotFoundError):
        store.health.get("shure-2")


async def test_locations_nest_and_refuse_what_would_break(store: Persistence) -> None:
    stage = await store.locations.create("Main stage", "stage", source=Source.REST)
    rack = await store.locations.create("Rack A", "rack", source=Source.REST, parent_id=stage.id)
    with pytest.raises(ConflictError):
        await store.locations.create("main STAGE", "stage", source=Source.REST)
    with pytest.raises(InvalidInputError):
        await store.locations.create("Cellar", "basement", source=Source.REST)
    with pytest.raises(InvalidInputError):
        await store.locations.create("  ", "room", source=Source.REST)
    with pytest.raises(InvalidInputError):
        await store.locations.move(stage.id, rack.id, source=Source.REST)  # a loop
    renamed = await store.locations.update(rack.id, name="Rack 1", source=Source.UI)
    assert renamed.parent_id == stage.id

    await store.devices.add("shure://127.0.0.1:2202", source=Source.REST)
    await store.devices.set_location("shure://127.0.0.1:2202", rack.id, source=Source.REST)
    with pytest.raises(InvalidInputError):
        await store.devices.set_location("shure://127.0.0.1:2202", 999, source=Source.REST)
    with pytest.raises(ConflictError) as in_use:
        await store.locations.delete(rack.id, source=Source.REST)
    assert in_use.value.details["devices"] == ["shure://127.0.0.1:2202"]
    with pytest.raises(ConflictError):
        await store.locations.delete(stage.id, source=Source.REST)  # still holds the rack
    await store.devices.set_location("shure://127.0.0.1:2202", None, source=Source.REST)
    await store.locations.delete(rack.id, source=Source.REST)
    with pytest.raises(NotFoundError):
        store.locations.get(rack.id)


async def test_within_is_the_location_and_everything_inside_it_on_a_wide_and_deep_tree(store: Persistence) -> None:
    """A regression guard for the one-pass walk (the old one rescanned every location per level): on a tree
    both wide and as deep as allowed, within() gives exactly each location's subtree."""
    parent_of: dict[int, int | None] = {}
    chain: list[int] = []
    parent = None
    for level in range(venue.MAX_LOCATION_DEPTH):
        location = await store.locations.create(f"Level {level}", "rack", source=Source.REST, parent_id=parent)
        parent_of[location.id] = parent
        chain.append(location.id)
        parent = location.id
        for branch in range(3):  # siblings at every level, one of them with a child of its own
            side = await store.locations.create(
                f"Side {level}.{branch}", "room", source=Source.REST, parent_id=parent_of[location.id]
            )
            parent_of[side.id] = parent_of[location.id]
            if branch == 0 and level < venue.MAX_LOCATION_DEPTH - 1:
                leaf = await store.locations.create(f"Leaf {level}", "stage", source=Source.REST, parent_id=side.id)
                parent_of[leaf.id] = side.id

    def subtree(root: int) -> set[int]:
        inside = {root}
        for location_id in parent_of:
            walk: int | None = location_id
            while walk is not None:
                if walk == root:
                    inside.add(location_id)
                    break
                walk = parent_of[walk]
        return inside

    for location_id in parent_of:
        assert store.locations.within(location_id) == subtree(location_id), location_id
    assert len(store.locations.within(chain[0])) > venue.MAX_LOCATION_DEPTH * 2
    assert store.locations.within(999_999) == {999_999}


async def test_locations_nest_at_most_max_depth_and_count_at_most_max_locations(
    store: Persistence, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain of thousands of nested racks made one unauthenticated device list block the hub for seconds:
    nesting and the number of locations are bounded, and what goes beyond is refused naming the bound."""
    assert (venue.MAX_LOCATION_DEPTH, venue.MAX_LOCATIONS) == (16, 10_000)
    parent = None
    for level in range(venue.MAX_LOCATION_DEPTH):
        parent = (await store.locations.create(f"Rack {level}", "rack", source=Source.REST, parent_id=parent)).id
    with pytest.raises(InvalidInputError, match="at most 16 levels deep") as too_deep:
        await store.locations.create("Rack 16", "rack", source=Source.REST, parent_id=parent)
    assert too_deep.value.details["max_depth"] == 16
    # a move counts what the moved location holds: a two-level stage fits under level 14 (Rack 13), not 15
    stage = await store.locations.create("Stage", "stage", source=Source.REST)
    await store.locations.create("Stage rack", "rack", source=Source.REST, parent_id=stage.id)
    level = {location.name: location.id for location in store.locations.all()}
    with pytest.raises(InvalidInputError, match="would reach level 17"):
        await store.locations.move(stage.id, level["Rack 14"], source=Source.REST)
    with pytest.raises(InvalidInputError, match="would reach level 17"):
        await store.locations.update(stage.id, move=True, parent_id=level["Rack 14"], source=Source.REST)
    assert (await store.locations.move(stage.id, level["Rack 13"], source=Source.REST)).parent_id == level["Rack 13"]

    monkeypatch.setattr(venue, "MAX_LOCATIONS", len(store.locations.all()) + 1)
    await store.locations.create("Last room", "room", source=Source.REST)
    with pytest.raises(InvalidInputError, match=f"there are {venue.MAX_LOCATIONS} locations already"):
        await store.locations.create("One room too many", "room", source=Source.REST)


async def test_slots_bind_one_channel_each(store: Persistence) -> None:
    slot = await store.slots.set(1, "shure-A", 1, source=Source.UI)
    assert store.slots.for_channel("shure-A", 1) == slot
    with pytest.raises(ConflictError):
        await store.slots.set(2, "shure-A", 1, source=Source.UI)
    await store.slots.set(1, "shure-A", 2, source=Source.UI)  # rebinding the same slot is fine
    for bad in (0, -1, 1000):
        with pytest.raises(InvalidInputError):
            await store.slots.set(bad, "shure-A", 1, source=Source.UI)
    with pytest.raises(InvalidInputError):
        await store.slots.set(3, "shure-A", 0, source=Source.UI)
    await store.slots.clear(1, source=Source.UI)
    assert store.slots.all() == []


async def test_groups_are_ordered_sets_of_slots(store: Persistence) -> None:
    group = await store.groups.create(1, "Band", [3, 1, 2], source=Source.REST)
    assert group.slots == [3, 1, 2]
    with pytest.raises(ConflictError):
        await store.groups.create(1, "Again", [], source=Source.REST)
    with pytest.raises(InvalidInputError):
        await store.groups.create(2, "Twice", [1, 1], source=Source.REST)
    with pytest.raises(InvalidInputError):
        await store.groups.create(100, "Too far", [], source=Source.REST)
    updated = await store.groups.update(1, slots=[1, 2], source=Source.UI)
    assert (updated.title, updated.slots) == ("Band", [1, 2])
    with pytest.raises(NotFoundError):
        await store.groups.update(5, title="x", source=Source.UI)
    await store.groups.delete(1, source=Source.UI)
    assert store.groups.all() == []


async def test_performers_and_assignments(store: Persistence) -> None:
    anna = await store.performers.create("Anna", source=Source.REST)
    ben = await store.performers.create("Ben", source=Source.REST)
    assignment = await store.performers.assign(
        anna.id, "shure-A", 1, source=Source.REST, alert_prefs={"battery_bars": 2, "disabled_kinds": ["audio_clip"]}
    )
    assert assignment.alert_prefs.battery_bars == 2
    with pytest.raises(ConflictError, match="Anna"):
        await store.performers.assign(ben.id, "shure-A", 1, source=Source.REST)
    with pytest.raises(NotFoundError):
        await store.performers.assign(99, "shure-A", 2, source=Source.REST)
    with pytest.raises(InvalidInputError):
        await store.performers.assign(ben.id, "shure-A", 2, source=Source.REST, alert_prefs={"battery_bars": 9})
    with pytest.raises(InvalidInputError):
        await store.performers.create("bad\x00name", source=Source.REST)
    await store.performers.assign(ben.id, "shure-A", 2, source=Source.REST)
    await store.performers.delete(anna.id, source=Source.UI)
    assert store.performers.assignment_for("shure-A", 1) is None
    assert [a.performer_id for a in store.performers.assignments()] == [ben.id]
    await store.performers.unassign("shure-A", 2, source=Source.UI)
    with pytest.raises(NotFoundError):
        await store.performers.unassign("shure-A", 2, source=Source.UI)


async def test_extended_name_overrides_and_device_rename_clears_it_when_configured(tmp_path: Path) -> None:
    state = StateStore()
    put_receiver(state, "shure-A", channels=1, name="HH 1")
    store = await open_simulated(tmp_path, state, clear_name_on_device_rename=True)
    try:
        assert store.names.display_name("shure-A", 1) == "HH 1"
        await store.names.set("shure-A", 1, "Lead vocal", source=Source.UI)
        assert store.names.display_name("shure-A", 1) == "Lead vocal"
        assert extended_name_in_state(state) == "Lead vocal", "MQTT, REST and the board read it there"
        state.update_channel("shure-A", 1, {"gain_db": 3.0})
        store.step()
        assert store.names.get("shure-A", 1) is not None, "other changes keep the name"
        state.update_channel("shure-A", 1, {"name": "SPARE"})
        store.step()
        assert store.names.get("shure-A", 1) is None
        assert store.names.display_name("shure-A", 1) == "SPARE"
        assert extended_name_in_state(state) is None
        with pytest.raises(NotFoundError):
            await store.names.clear("shure-A", 1, source=Source.UI)
        with pytest.raises(InvalidInputError):
            await store.names.set("shure-A", 1, "x" * 65, source=Source.UI)

        store.names.clear_on_device_rename = False
        await store.names.set("shure-A", 1, "Lead vocal", source=Source.UI)
        state.update_channel("shure-A", 1, {"name": "OTHER"})
        store.step()
        assert store.names.display_name("shure-A", 1) == "Lead vocal"
    finally:
        await store.close()

    restarted = StateStore()
    again = await open_simulated(tmp_path, restarted)
    try:
        put_receiver(restarted, "shure-A", channels=1, name="OTHER")  # the receiver reconnects
        assert extended_name_in_state(restarted) == "Lead vocal", "no tick needed: the first read has it"
    finally:
        await again.close()


async def test_a_returning_channel_never_shows_the_receivers_own_name_first(store: Persistence) -> None:
    """MQTT and the board read a channel as soon as it appears: the user's name must already be there,
    whether the device comes back whole, or announces its channels one by one."""
    state = store.state
    put_receiver(state, "shure-A", channels=2, name="HH 1")
    await store.names.set("shure-A", 2, "Pastor", source=Source.UI)
    state.remove_device("shure-A")
    readers = state.subscribe()

    put_receiver(state, "shure-A", channels=2, name="HH 1")
    assert readers.drain(), "the returning device was announced"
    assert [channel.extended_name for channel in state.devices["shure-A"].channels] == [None, "Pastor"]

    state.remove_device("shure-A")
    put_receiver(state, "shure-A", channels=0)
    state.update_channel("shure-A", 2, {"name": "HH 1"})
    state.set_channel_count("shure-A", 2)
    assert [(channel.index, channel.extended_name) for channel in state.devices["shure-A"].channels] == [
        (1, None),
        (2, "Pastor"),
    ]
    state.remove_device("shure-A")
    put_receiver(state, "shure-A", channels=0)
    state.set_channel_count("shure-A", 2)
    assert state.devices["shure-A"].channels[1].extended_name == "Pastor"


def extended_name_in_state(state: StateStore) -> str | None:
    device = state.get("shure-A")
    channel = device.channel(1) if device is not None else None
    assert channel is not None
    return channel.extended_name


async def test_audit_records_changes_and_commands_with_source_and_result(store: Persistence) -> None:
    await store.slots.set(4, "shure-A", 1, source=Source.REST)
    await store.slots.set(4, "shure-A", 2, source=Source.MQTT)
    command = Command(device_id="shure-A", channel=2, kind=CommandKind.MUTE, value=True)
    store.audit.record_command(Source.CLI, command, before=False, result=CommandResult(ok=True, value=True))
    store.audit.record_command(
        Source.UI, command, before=False, result=CommandResult(ok=False, error="no answer", code="timeout")
    )
    entries = await store.audit.query()
    assert [(e.source, e.action, e.target, e.result) for e in entries] == [
        ("ui", "command.mute", "shure-A/2", "timeout: no answer"),
        ("cli", "command.mute", "shure-A/2", "ok"),
        ("mqtt", "slot.set", "slot/4", "ok"),
        ("rest", "slot.set", "slot/4", "ok"),
    ]
    assert entries[2].before == {"number": 4, "device_id": "shure-A", "channel": 1}
    assert entries[2].after == {"number": 4, "device_id": "shure-A", "channel": 2}
    assert [e.action for e in await store.audit.query(target="shure-A")] == ["command.mute", "command.mute"]
    assert [e.source for e in await store.audit.query(source="rest")] == ["rest"]
    with pytest.raises(InvalidInputError):
        await store.audit.query(limit=0)


async def test_everything_configured_survives_a_restart(tmp_path: Path) -> None:
    store = await open_simulated(tmp_path)
    await store.devices.add("shure://127.0.0.1:2202", source=Source.REST)
    store.devices.bind("shure://127.0.0.1:2202", "shure-A")
    stage = await store.locations.create("Stage", "stage", source=Source.REST)
    await store.slots.set(1, "shure-A", 1, source=Source.REST)
    await store.groups.create(1, "All", [1], source=Source.REST)
    anna = await store.performers.create("Anna", source=Source.REST, notes="lead")
    await store.performers.assign(anna.id, "shure-A", 1, source=Source.REST, alert_prefs={"battery_bars": 2})
    await store.names.set("shure-A", 1, "Anna HH", source=Source.REST)
    await store.candidates.offer(Candidate(url="ssc://127.0.0.1:45", vendor="sennheiser"))
    store.health.update([{"url": "shure://127.0.0.1:2202", "device_id": "shure-A", "attempts": 2, "reconnects": 0}])
    await store.close()

    again = await open_simulated(tmp_path)
    try:
        assert again.restore() == [("shure://127.0.0.1:2202", "shure-A")]
        assert again.locations.get(stage.id).name == "Stage"
        assert again.slots.get(1).device_id == "shure-A"
        assert again.groups.get(1).slots == [1]
        assert again.performers.get(anna.id).notes == "lead"
        assignment = again.performers.assignment_for("shure-A", 1)
        assert assignment is not None and assignment.alert_prefs.battery_bars == 2
        assert again.names.display_name("shure-A", 1) == "Anna HH"
        assert [c.url for c in again.candidates.all()] == ["ssc://127.0.0.1:45"]
        assert again.health.get("shure-A").attempts == 2
        created = await again.performers.create("Ben", source=Source.REST)
        assert created.id == anna.id + 1, "ids continue after a restart"
    finally:
        await again.close()


async def test_a_store_in_memory_keeps_everything_for_the_run_and_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a file named after the database would land
    store = await open_simulated(IN_MEMORY)
    try:
        await store.locations.create("Main stage", LocationKind.STAGE, source=Source.CLI)
        await store.devices.add("shure://admin:secret@10.0.0.5:2202", source=Source.CLI)
        assert [row["name"] for row in await store.db.fetchall("SELECT name FROM locations")] == ["Main stage"]
        assert store.devices.restore() == [("shure://admin:secret@10.0.0.5:2202", None)], "the password kept"
        assert not store.db.failing, "every change committed"
    finally:
        await store.close()
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240 (a listing, once, after the store closed)
