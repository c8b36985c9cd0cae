"""What every configuration service shares: the database, the clock and the audit log."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

from hub.clock import Clock
from hub.persistence.audit import AuditLog
from hub.persistence.db import Database, Statement
from hub.records import InvalidInputError, Source
from hub.text import has_controls, user_text

MAX_TEXT = 200


class Service(ABC):
    """Services keep their records in memory (loaded at open) and write behind through the database queue.

    A change is checked and applied in memory, queued, audited, then awaited until committed: in normal
    operation a change is on disk when the call returns; while the disk fails it is live and queued.

    Every service says what it holds with :meth:`held` (and :attr:`held_tables`): a database file replaced
    under the running hub gets it written in (:meth:`Database.hold`). A service without it cannot be made.
    """

    # the tables whose every row this service holds (emptied before :meth:`held` is written)
    held_tables: ClassVar[tuple[str, ...]] = ()

    def __init__(self, db: Database, clock: Clock, audit: AuditLog) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        db.hold(self.held, whole=self.held_tables)

    @abstractmethod
    def held(self) -> Iterator[Statement]:
        """The statements that write every record this service holds in memory, the ones its changes use."""

    async def _committed(
        self, source: Source | str, action: str, target: str, before: Any = None, after: Any = None
    ) -> None:
        self._audit.record(source, action, target, before, after)
        await self._db.sync()


def clean_text(
    value: str, what: str, *, max_length: int = MAX_TEXT, allow_empty: bool = False, layout: bool = False
) -> str:
    """The one check of text people type (names, titles, labels, notes): ``value`` in composed Unicode form
    (NFC) without the whitespace and invisible format characters around it (hub.text.user_text); refuse
    text that shows nothing (only whitespace and format characters such as U+200B, U+200E, U+FEFF), control
    characters and over-long text (names end up on screens); with ``layout`` (notes), line breaks and tabs
    are kept."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be text", value=repr(value))
    text = user_text(value)
    if not text and not allow_empty:
        raise InvalidInputError(f"{what} must not be empty (nor only invisible characters)")
    if len(text) > max_length:
        raise InvalidInputError(f"{what} is longer than {max_length} characters", length=len(text))
    if has_controls(text, layout=layout):
        raise InvalidInputError(f"{what} contains control characters")
    return text


def positive(value: int, what: str, *, maximum: int = 1_000_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidInputError(f"{what} must be a whole number from 1 to {maximum}", value=value)
    return value
