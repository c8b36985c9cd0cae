"""The venue model: locations (room, stage, rack), slots (numbered board positions bound to a device
channel, as in micboard) and groups (named, ordered sets of slots for one board view)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator

from hub.clock import Clock
from hub.persistence.audit import AuditLog
from hub.persistence.db import Database, Statement, upsert
from hub.persistence.service_base import Service, clean_text, positive
from hub.records import (
    MAX_GROUP,
    MAX_SLOT,
    ConflictError,
    Group,
    InvalidInputError,
    Location,
    LocationKind,
    NotFoundError,
    Slot,
    Source,
)
from hub.text import same_name

MAX_CHANNEL = 64
# A room holds stages, a stage racks: far fewer levels than this. The bounds keep a request that walks the
# tree (GET /api/v1/devices?location=…, open to anyone with open_reads) short whatever was created.
MAX_LOCATION_DEPTH = 16
MAX_LOCATIONS = 10_000

_UPSERT_LOCATION = upsert("locations", ("id",), ("name", "kind", "parent_id"))
_UPSERT_SLOT = upsert("slots", ("number",), ("device_id", "channel"))
_UPSERT_GROUP = upsert("groups", ("number",), ("title", "slots"))


class Locations(Service):
    held_tables = ("locations",)

    def __init__(self, db: Database, clock: Clock, audit: AuditLog, rows: Iterable[Location]) -> None:
        super().__init__(db, clock, audit)
        self._by_id = {location.id: location for location in rows}
        self._last_id = max(self._by_id, default=0)
        self.users_of: Callable[[int], list[str]] = lambda _location_id: []

    def all(self) -> list[Location]:
        return sorted(self._by_id.values(), key=lambda location: location.id)

    def get(self, location_id: int) -> Location:
        location = self._by_id.get(location_id)
        if location is None:
            raise NotFoundError(f"no location {location_id}", location_id=location_id)
        return location

    def exists(self, location_id: int) -> bool:
        return location_id in self._by_id

    def within(self, location_id: int) -> set[int]:
        """The location and every location inside it (a stage holds racks): one pass over the locations to
        index their children, then each location inside is visited once."""
        children = self._children()
        found = {location_id}
        waiting = [location_id]
        while waiting:
            for child in children.get(waiting.pop(), ()):
                if child not in found:
                    found.add(child)
                    waiting.append(child)
        return found

    def _depth(self, location_id: int) -> int:
        """1 for a location at the top, 2 inside one of those, …"""
        depth = 1
        parent = self._by_id[location_id].parent_id
        while parent is not None:
            depth += 1
            parent = self._by_id[parent].parent_id
        return depth

    def _height(self, location_id: int) -> int:
        """How many levels the location and what is inside it take: 1 for one with nothing inside."""
        children = self._children()
        levels = 0
        level = [location_id]
        while level:
            levels += 1
            level = [child for parent in level for child in children.get(parent, ())]
        return levels

    def _children(self) -> dict[int, list[int]]:
        children: dict[int, list[int]] = {}
        for location in self._by_id.values():
            if location.parent_id is not None:
                children.setdefault(location.parent_id, []).append(location.id)
        return children

    async def create(
        self, name: str, kind: LocationKind | str, *, source: Source | str, parent_id: int | None = None
    ) -> Location:
        if len(self._by_id) >= MAX_LOCATIONS:
            raise InvalidInputError(f"there are {MAX_LOCATIONS} locations already, the most the hub keeps")
        self._last_id += 1
        location = self._checked(self._last_id, name, kind, parent_id)
        self._store(location)
        await self._committed(
            source, "location.create", f"location/{location.id}", after=location.model_dump(mode="json")
        )
        return location

    async def update(
        self,
        location_id: int,
        *,
        source: Source | str,
        name: str | None = None,
        kind: LocationKind | str | None = None,
        move: bool = False,
        parent_id: int | None = None,
    ) -> Location:
        """Rename a location or change its kind, and with ``move`` put it inside ``parent_id`` (None: at the
        top), all checked before anything changes: a refused move leaves the name as it was."""
        before = self.get(location_id)
        location = self._checked(
            location_id,
            before.name if name is None else name,
            before.kind if kind is None else kind,
            parent_id if move else before.parent_id,
        )
        return await self._replace(before, location, "location.update", source)

    async def move(self, location_id: int, parent_id: int | None, *, source: Source | str) -> Location:
        """Put a location inside another (a rack on a stage), or at the top with ``parent_id=None``."""
        before = self.get(location_id)
        location = self._checked(location_id, before.name, before.kind, parent_id)
        return await self._replace(before, location, "location.move", source)

    async def _replace(self, before: Location, location: Location, action: str, source: Source | str) -> Location:
        self._store(location)
        await self._committed(
            source, action, f"location/{location.id}", before.model_dump(mode="json"), location.model_dump(mode="json")
        )
        return location

    async def delete(self, location_id: int, *, source: Source | str) -> Location:
        location = self.get(location_id)
        children = [other.id for other in self._by_id.values() if other.parent_id == location_id]
        users = self.users_of(location_id)
        if children or users:
            raise ConflictError(f"location {location.name!r} is still in use", child_locations=children, devices=users)
        del self._by_id[location_id]
        self._db.submit("DELETE FROM locations WHERE id = ?", (location_id,))
        await self._committed(
            source, "location.delete", f"location/{location_id}", before=location.model_dump(mode="json")
        )
        return location

    def _checked(self, location_id: int, name: str, kind: LocationKind | str, parent_id: int | None) -> Location:
        name = clean_text(name, "location name", max_length=100)
        try:
            kind = LocationKind(kind)
        except ValueError:
            raise InvalidInputError(f"location kind must be one of {', '.join(LocationKind)}", kind=str(kind)) from None
        if parent_id is not None:
            if parent_id not in self._by_id:
                raise InvalidInputError(f"no parent location {parent_id}", parent_id=parent_id)
            ancestor: int | None = parent_id
            while ancestor is not None:
                if ancestor == location_id:
                    raise InvalidInputError("a location cannot be inside itself", parent_id=parent_id)
                ancestor = self._by_id[ancestor].parent_id
            levels = self._height(location_id) if location_id in self._by_id else 1
            if self._depth(parent_id) + levels > MAX_LOCATION_DEPTH:
                raise InvalidInputError(
                    f"locations nest at most {MAX_LOCATION_DEPTH} levels deep; inside location {parent_id} "
                    f"this one would reach level {self._depth(parent_id) + levels}",
                    parent_id=parent_id,
                    max_depth=MAX_LOCATION_DEPTH,
                )
        for other in self._by_id.values():
            if other.id != location_id and other.kind == kind and same_name(other.name, name):
                raise ConflictError(f"there is already a {kind.value} called {other.name!r}", id=other.id)
        return Location(id=location_id, name=name, kind=kind, parent_id=parent_id)

    def held(self) -> Iterator[Statement]:
        return map(_location_row, self._by_id.values())

    def _store(self, location: Location) -> None:
        self._by_id[location.id] = location
        self._db.submit(*_location_row(location))


def _location_row(location: Location) -> Statement:
    return _UPSERT_LOCATION, (location.id, location.name, location.kind.value, location.parent_id)


class Slots(Service):
    held_tables = ("slots",)

    def __init__(self, db: Database, clock: Clock, audit: AuditLog, rows: Iterable[Slot]) -> None:
        super().__init__(db, clock, audit)
        self._by_number = {slot.number: slot for slot in rows}

    def all(self) -> list[Slot]:
        return sorted(self._by_number.values(), key=lambda slot: slot.number)

    def get(self, number: int) -> Slot:
        slot = self._by_number.get(number)
        if slot is None:
            raise NotFoundError(f"slot {number} is empty", slot=number)
        return slot

    def for_channel(self, device_id: str, channel: int) -> Slot | None:
        for slot in self._by_number.values():
            if slot.device_id == device_id and slot.channel == channel:
                return slot
        return None

    async def set(self, number: int, device_id: str, channel: int, *, source: Source | str) -> Slot:
        """Bind slot ``number`` to a device channel (replacing what it showed before)."""
        positive(number, "slot number", maximum=MAX_SLOT)
        positive(channel, "channel", maximum=MAX_CHANNEL)
        device_id = clean_text(device_id, "device id", max_length=120)
        taken = self.for_channel(device_id, channel)
        if taken is not None and taken.number != number:
            raise ConflictError(f"{device_id} channel {channel} is already on slot {taken.number}", slot=taken.number)
        before = self._by_number.get(number)
        slot = Slot(number=number, device_id=device_id, channel=channel)
        self._by_number[number] = slot
        self._db.submit(*_slot_row(slot))
        await self._committed(
            source, "slot.set", f"slot/{number}", before.model_dump() if before else None, slot.model_dump()
        )
        return slot

    async def clear(self, number: int, *, source: Source | str) -> Slot:
        slot = self.get(number)
        del self._by_number[number]
        self._db.submit("DELETE FROM slots WHERE number = ?", (number,))
        await self._committed(source, "slot.clear", f"slot/{number}", before=slot.model_dump())
        return slot

    def held(self) -> Iterator[Statement]:
        return map(_slot_row, self._by_number.values())


def _slot_row(slot: Slot) -> Statement:
    return _UPSERT_SLOT, (slot.number, slot.device_id, slot.channel)


class Groups(Service):
    held_tables = ("groups",)

    def __init__(self, db: Database, clock: Clock, audit: AuditLog, rows: Iterable[Group]) -> None:
        super().__init__(db, clock, audit)
        self._by_number = {group.number: group for group in rows}

    def all(self) -> list[Group]:
        return sorted(self._by_number.values(), key=lambda group: group.number)

    def get(self, number: int) -> Group:
        group = self._by_number.get(number)
        if group is None:
            raise NotFoundError(f"no group {number}", group=number)
        return group

    async def create(self, number: int, title: str, slots: list[int], *, source: Source | str) -> Group:
        if number in self._by_number:
            raise ConflictError(f"group {number} already exists", group=number)
        group = self._checked(number, title, slots)
        self._store(group)
        await self._committed(source, "group.create", f"group/{number}", after=group.model_dump())
        return group

    async def update(
        self, number: int, *, source: Source | str, title: str | None = None, slots: list[int] | None = None
    ) -> Group:
        before = self.get(number)
        group = self._checked(
            number, before.title if title is None else title, before.slots if slots is None else slots
        )
        self._store(group)
        await self._committed(source, "group.update", f"group/{number}", before.model_dump(), group.model_dump())
        return group

    async def delete(self, number: int, *, source: Source | str) -> Group:
        group = self.get(number)
        del self._by_number[number]
        self._db.submit("DELETE FROM groups WHERE number = ?", (number,))
        await self._committed(source, "group.delete", f"group/{number}", before=group.model_dump())
        return group

    @staticmethod
    def _checked(number: int, title: str, slots: list[int]) -> Group:
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= MAX_GROUP:
            raise InvalidInputError(f"group number must be a whole number from 0 to {MAX_GROUP}", value=number)
        title = clean_text(title, "group title", max_length=100)
        if not isinstance(slots, list):
            raise InvalidInputError("slots must be a list of slot numbers")
        for slot in slots:
            positive(slot, "slot number", maximum=MAX_SLOT)
        if len(set(slots)) != len(slots):
            raise InvalidInputError("a slot appears twice in the group", slots=slots)
        return Group(number=number, title=title, slots=list(slots))

    def held(self) -> Iterator[Statement]:
        return map(_group_row, self._by_number.values())

    def _store(self, group: Group) -> None:
        self._by_number[group.number] = group
        self._db.submit(*_group_row(group))


def _group_row(group: Group) -> Statement:
    return _UPSERT_GROUP, (group.number, group.title, json.dumps(group.slots))
