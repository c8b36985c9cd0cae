"""The audit log: every control command and configuration change, with when, source, target, before/after
and result. Recording never waits for the disk; entries are never dropped silently (see hub.persistence.db)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hub.clock import Clock
from hub.model import Command, CommandResult
from hub.persistence.db import Database
from hub.records import AuditEntry, InvalidInputError, Source
from hub.redact import redact, redact_values, redacted_text

_INSERT = "INSERT INTO audit (id, at, source, action, target, before, after, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def _encode(value: Any) -> str | None:
    """JSON for the database, any credential in it redacted (a device URL in ``after``, say)."""
    if value is None:
        return None
    return json.dumps(redact_values(value), default=redacted_text, sort_keys=True)


def _decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class AuditLog:
    def __init__(self, db: Database, clock: Clock, last_id: int) -> None:
        self._db = db
        self._clock = clock
        self._last_id = last_id
        # the other name a known device goes by, its URL for its id and its id for its URL (set by the store):
        # its entries under either are one device's (device.add and older builds' device.location: the URL)
        self.other_name: Callable[[str], str | None] = lambda _name: None

    def record(
        self,
        source: Source | str,
        action: str,
        target: str,
        before: Any = None,
        after: Any = None,
        result: str = "ok",
    ) -> AuditEntry:
        self._last_id += 1
        target, result = redact(target), redact(result)
        before_text, after_text = _encode(before), _encode(after)
        entry = AuditEntry(
            id=self._last_id,
            at=self._clock.now(),
            source=str(source),
            action=action,
            target=target,
            before=_decode(before_text),
            after=_decode(after_text),
            result=result,
        )
        self._db.submit(
            _INSERT,
            (entry.id, entry.at, entry.source, action, target, before_text, after_text, result),
        )
        return entry

    def record_command(self, source: Source | str, command: Command, before: Any, result: CommandResult) -> AuditEntry:
        """Record a control command once the device answered (or refused); call it from every edge."""
        target = command.device_id if command.channel is None else f"{command.device_id}/{command.channel}"
        outcome = "ok" if result.ok else f"{result.code or 'failed'}: {result.error or ''}".rstrip(": ")
        return self.record(
            source,
            f"command.{command.kind.value}",
            target,
            before=before,
            after=result.value if result.ok else command.value,
            result=outcome,
        )

    async def query(
        self,
        *,
        target: str | None = None,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first. ``target`` matches a device id and all of its channels, or one channel, written as
        the audit writes it (``shure-A/1``) or as the API names channels (``shure-A:1``), or a device URL; a
        known device's id and URL each match the entries under the other too."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInputError("limit must be between 1 and 10000", limit=limit)
        clauses: list[str] = []
        params: list[object] = []
        if target is not None:
            device, colon, index = target.rpartition(":")
            if colon and index.isdigit() and "://" not in target:  # a URL's port is not a channel
                target = f"{device}/{index}"
            names = [redact(target)]
            other = self.other_name(target)
            if other is not None:
                names.append(other)
            matches: list[str] = []
            for name in names:
                matches.append("target = ? OR target LIKE ? ESCAPE '\\'")
                escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                params += [name, f"{escaped}/%"]
            clauses.append(f"({' OR '.join(matches)})")
        if source is not None:
            clauses.append("source = ?")
            params.append(source)
        if since is not None:
            clauses.append("at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("at < ?")
            params.append(until)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        await self._db.sync()
        query = f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?"  # nosec B608 # fixed clauses, values are ? parameters
        rows = await self._db.fetchall(query, [*params, limit])
        return [
            AuditEntry(  # redacted on the way out too: whatever a database restored from a backup holds
                id=row["id"],
                at=row["at"],
                source=row["source"],
                action=row["action"],
                target=redact(row["target"]),
                before=redact_values(_decode(row["before"])),
                after=redact_values(_decode(row["after"])),
                result=redact(row["result"]),
            )
            for row in rows
        ]
