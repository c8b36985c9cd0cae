"""Performers and their assignments to device channels (with alert preferences), and extended names: a
user's name for a channel that the board and MQTT show instead of the name stored in the receiver."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from pydantic import ValidationError

from hub.clock import Clock
from hub.persistence.audit import AuditLog
from hub.persistence.db import Database, Statement, upsert
from hub.persistence.service_base import Service, clean_text, positive
from hub.persistence.venue import MAX_CHANNEL
from hub.records import (
    AlertKind,
    AlertPrefs,
    Assignment,
    ConflictError,
    ExtendedName,
    InvalidInputError,
    NotFoundError,
    Performer,
    Source,
)
from hub.state import StateStore

ChannelKey = tuple[str, int]


def channel_target(device_id: str, channel: int) -> str:
    return f"{device_id}/{channel}"


_UPSERT_PERFORMER = upsert("performers", ("id",), ("name", "notes"))
_UPSERT_ASSIGNMENT = upsert("assignments", ("device_id", "channel"), ("performer_id", "alert_prefs"))
_UPSERT_NAME = upsert("extended_names", ("device_id", "channel"), ("name", "device_name_at_set", "set_at"))


class Performers(Service):
    """Performers and assignments together: deleting a performer ends their assignments."""

    held_tables = ("performers", "assignments")

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditLog,
        performers: Iterable[Performer],
        assignments: Iterable[Assignment],
    ) -> None:
        super().__init__(db, clock, audit)
        self._by_id = {performer.id: performer for performer in performers}
        self._assignments = {(a.device_id, a.channel): a for a in assignments}
        self._last_id = max(self._by_id, default=0)

    def all(self) -> list[Performer]:
        return sorted(self._by_id.values(), key=lambda performer: performer.id)

    def get(self, performer_id: int) -> Performer:
        performer = self._by_id.get(performer_id)
        if performer is None:
            raise NotFoundError(f"no performer {performer_id}", performer_id=performer_id)
        return performer

    async def create(self, name: str, *, source: Source | str, notes: str = "") -> Performer:
        performer = Performer(
            id=self._last_id + 1,
            name=clean_text(name, "performer name", max_length=100),
            notes=clean_text(notes, "notes", max_length=1000, allow_empty=True, layout=True),
        )
        self._last_id = performer.id
        self._store(performer)
        await self._committed(source, "performer.create", f"performer/{performer.id}", after=performer.model_dump())
        return performer

    async def update(
        self, performer_id: int, *, source: Source | str, name: str | None = None, notes: str | None = None
    ) -> Performer:
        before = self.get(performer_id)
        performer = Performer(
            id=performer_id,
            name=before.name if name is None else clean_text(name, "performer name", max_length=100),
            notes=before.notes
            if notes is None
            else clean_text(notes, "notes", max_length=1000, allow_empty=True, layout=True),
        )
        self._store(performer)
        await self._committed(
            source, "performer.update", f"performer/{performer_id}", before.model_dump(), performer.model_dump()
        )
        return performer

    async def delete(self, performer_id: int, *, source: Source | str) -> Performer:
        performer = self.get(performer_id)
        del self._by_id[performer_id]
        ended = [key for key, assignment in self._assignments.items() if assignment.performer_id == performer_id]
        for key in ended:
            del self._assignments[key]
        # the database's ON DELETE CASCADE ends the assignments there too
        self._db.submit("DELETE FROM performers WHERE id = ?", (performer_id,))
        await self._committed(source, "performer.delete", f"performer/{performer_id}", before=performer.model_dump())
        return performer

    # assignments

    def assignments(self, performer_id: int | None = None) -> list[Assignment]:
        return sorted(
            (a for a in self._assignments.values() if performer_id is None or a.performer_id == performer_id),
            key=lambda a: (a.device_id, a.channel),
        )

    def assignment_for(self, device_id: str, channel: int) -> Assignment | None:
        return self._assignments.get((device_id, channel))

    async def assign(
        self,
        performer_id: int,
        device_id: str,
        channel: int,
        *,
        source: Source | str,
        alert_prefs: AlertPrefs | dict[str, object] | None = None,
    ) -> Assignment:
        """Give a performer a channel (or change the preferences of an existing assignment)."""
        self.get(performer_id)
        positive(channel, "channel", maximum=MAX_CHANNEL)
        device_id = clean_text(device_id, "device id", max_length=120)
        try:
            prefs = alert_prefs if isinstance(alert_prefs, AlertPrefs) else AlertPrefs.model_validate(alert_prefs or {})
        except (ValidationError, TypeError) as exc:
            raise InvalidInputError("invalid alert preferences", problems=str(exc)) from None
        before = self._assignments.get((device_id, channel))
        if before is not None and before.performer_id != performer_id:
            holder = self._by_id[before.performer_id]
            raise ConflictError(f"{device_id} channel {channel} is assigned to {holder.name}", performer_id=holder.id)
        assignment = Assignment(performer_id=performer_id, device_id=device_id, channel=channel, alert_prefs=prefs)
        self._assignments[(device_id, channel)] = assignment
        self._db.submit(*_assignment_row(assignment))
        await self._committed(
            source,
            "assignment.set",
            channel_target(device_id, channel),
            before.model_dump() if before else None,
            assignment.model_dump(),
        )
        return assignment

    async def unassign(self, device_id: str, channel: int, *, source: Source | str) -> Assignment:
        assignment = self._assignments.pop((device_id, channel), None)
        if assignment is None:
            raise NotFoundError(f"{device_id} channel {channel} has no performer", device_id=device_id, channel=channel)
        self._db.submit("DELETE FROM assignments WHERE device_id = ? AND channel = ?", (device_id, channel))
        await self._committed(
            source, "assignment.clear", channel_target(device_id, channel), before=assignment.model_dump()
        )
        return assignment

    def held(self) -> Iterator[Statement]:
        yield from map(_performer_row, self._by_id.values())
        yield from map(_assignment_row, self._assignments.values())

    def _store(self, performer: Performer) -> None:
        self._by_id[performer.id] = performer
        self._db.submit(*_performer_row(performer))


def _performer_row(performer: Performer) -> Statement:
    return _UPSERT_PERFORMER, (performer.id, performer.name, performer.notes)


def _assignment_row(assignment: Assignment) -> Statement:
    return _UPSERT_ASSIGNMENT, (
        assignment.device_id,
        assignment.channel,
        assignment.performer_id,
        assignment.alert_prefs.model_dump_json(),
    )


def assignment_from_row(device_id: str, channel: int, performer_id: int, prefs_json: str) -> Assignment:
    return Assignment(
        performer_id=performer_id,
        device_id=device_id,
        channel=channel,
        alert_prefs=stored_prefs(prefs_json),
    )


def stored_prefs(prefs_json: str) -> AlertPrefs:
    """Alert preferences as stored, keeping what today's checks accept: an earlier version took any kind
    name and any number, and one such row must not stop the hub from starting."""
    stored = json.loads(prefs_json)
    kept: dict[str, object] = {}
    for key, value in stored.items() if isinstance(stored, dict) else ():
        if key == "disabled_kinds" and isinstance(value, list):
            value = [kind for kind in value if kind in {known.value for known in AlertKind}]
        try:
            AlertPrefs.model_validate({key: value})
        except ValidationError:
            continue
        kept[key] = value
    return AlertPrefs.model_validate(kept)


class ExtendedNames(Service):
    """A user's name for a channel. With ``clear_on_device_rename``, renaming the channel on the receiver
    itself (front panel, vendor software) drops the extended name: the person at the rack wins.

    The channel's ``extended_name`` in the state store, where MQTT, REST and the board read it, is set on
    every change here, and the state store asks for it whenever a channel appears (a device identified
    again), so the first thing anyone reads of a returning channel already carries the user's name."""

    held_tables = ("extended_names",)

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditLog,
        state: StateStore,
        rows: Iterable[ExtendedName],
        clear_on_device_rename: bool = False,
    ) -> None:
        super().__init__(db, clock, audit)
        self._state = state
        self._by_channel = {(name.device_id, name.channel): name for name in rows}
        self.clear_on_device_rename = clear_on_device_rename
        state.extended_name_of = self.name_of

    def name_of(self, device_id: str, channel: int) -> str | None:
        extended = self._by_channel.get((device_id, channel))
        return extended.name if extended is not None else None

    def all(self) -> list[ExtendedName]:
        return sorted(self._by_channel.values(), key=lambda name: (name.device_id, name.channel))

    def get(self, device_id: str, channel: int) -> ExtendedName | None:
        return self._by_channel.get((device_id, channel))

    def display_name(self, device_id: str, channel: int) -> str | None:
        """The extended name if there is one, else the receiver's channel name."""
        extended = self._by_channel.get((device_id, channel))
        if extended is not None:
            return extended.name
        return self._device_name(device_id, channel)

    async def set(self, device_id: str, channel: int, name: str, *, source: Source | str) -> ExtendedName:
        positive(channel, "channel", maximum=MAX_CHANNEL)
        device_id = clean_text(device_id, "device id", max_length=120)
        before = self._by_channel.get((device_id, channel))
        extended = ExtendedName(
            device_id=device_id,
            channel=channel,
            name=clean_text(name, "name", max_length=64),
            device_name_at_set=self._device_name(device_id, channel),
            set_at=self._clock.now(),
        )
        self._store(extended)
        self._publish(device_id, channel, extended.name)
        await self._committed(
            source, "name.set", channel_target(device_id, channel), before.name if before else None, extended.name
        )
        return extended

    async def clear(self, device_id: str, channel: int, *, source: Source | str) -> ExtendedName:
        extended = self._forget(device_id, channel)
        if extended is None:
            raise NotFoundError(
                f"{device_id} channel {channel} has no extended name", device_id=device_id, channel=channel
            )
        await self._committed(source, "name.clear", channel_target(device_id, channel), before=extended.name)
        return extended

    def device_renamed(self, device_id: str, channel: int) -> ExtendedName | None:
        """Called when the receiver reports a new channel name; returns the extended name it cleared."""
        extended = self._by_channel.get((device_id, channel))
        if extended is None or not self.clear_on_device_rename:
            return None
        current = self._device_name(device_id, channel)
        if current is None or current == extended.device_name_at_set:
            return None
        if extended.device_name_at_set is None:
            # set while the receiver was unreachable: its first report is the baseline, not a rename
            self._store(extended.model_copy(update={"device_name_at_set": current}))
            return None
        self._forget(device_id, channel)
        self._audit.record(
            Source.SYSTEM,
            "name.clear",
            channel_target(device_id, channel),
            before=extended.name,
            after=None,
            result=f"renamed on the device to {current!r}",
        )
        return extended

    def held(self) -> Iterator[Statement]:
        return map(_name_row, self._by_channel.values())

    def _store(self, extended: ExtendedName) -> None:
        self._by_channel[(extended.device_id, extended.channel)] = extended
        self._db.submit(*_name_row(extended))

    def _forget(self, device_id: str, channel: int) -> ExtendedName | None:
        extended = self._by_channel.pop((device_id, channel), None)
        if extended is not None:
            self._db.submit("DELETE FROM extended_names WHERE device_id = ? AND channel = ?", (device_id, channel))
            self._publish(device_id, channel, None)
        return extended

    def _publish(self, device_id: str, channel: int, name: str | None) -> None:
        device = self._state.get(device_id)
        if device is not None and device.channel(channel) is not None:
            self._state.update_channel(device_id, channel, {"extended_name": name})

    def _device_name(self, device_id: str, channel: int) -> str | None:
        device = self._state.get(device_id)
        found = device.channel(channel) if device is not None else None
        return found.name if found is not None else None


def _name_row(extended: ExtendedName) -> Statement:
    return _UPSERT_NAME, (
        extended.device_id,
        extended.channel,
        extended.name,
        extended.device_name_at_set,
        extended.set_at,
    )
