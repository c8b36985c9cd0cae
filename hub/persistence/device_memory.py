"""What drivers keep of their devices across restarts (``DeviceSink.remember``): one JSON text per device URL.

The hub's device manager reads and writes it through :class:`hub.devices.DeviceMemories`; what the text means
is the plugin's alone (the SSCv2 driver keeps which transmitter is on which channel). The hub checks it where
the driver hands it over and where it is read back (hub.devices.DeviceHandle), so this only holds it.

The same kind of table, ``device_identity``, holds what the hub itself keeps of each device (its last identity,
hub.devices.DeviceManager.identities).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from hub.clock import Clock
from hub.drivers import MAX_MEMORY_BYTES
from hub.persistence.db import Database, Statement, upsert

# the tables of this shape: the drivers' memories, and the hub's own of each device's identity
MEMORY_TABLES: Final = frozenset({"device_memory", "device_identity"})


class DeviceMemory:
    """The memories by device URL as shown (password redacted), loaded at open, written behind like health."""

    def __init__(
        self, db: Database, clock: Clock, rows: Iterable[tuple[str, object]], table: str = "device_memory"
    ) -> None:
        assert table in MEMORY_TABLES  # nosec B101: the table name goes into SQL text
        self._db = db
        self._clock = clock
        self._table = table
        self._upsert = upsert(table, ("url",), ("value", "updated_at"))
        # a value that is no text (a row written by something else) is kept as its repr: not JSON, refused
        self._by_url = {url: value if isinstance(value, str) else repr(value) for url, value in rows}
        db.hold(self.held, whole=(table,))

    def held(self) -> Iterator[Statement]:
        """Every memory, for a database file replaced under the running hub (Database.hold)."""
        now = self._clock.now()
        for url, text in self._by_url.items():
            yield self._upsert, (url, text, now)

    @staticmethod
    async def read(db: Database, table: str = "device_memory") -> list[tuple[str, object]]:
        """The rows at open. A text longer than the bound is read only as far as shows that it is too long (a
        damaged or hand-edited row must not fill the hub's memory): DeviceHandle.recall refuses it."""
        assert table in MEMORY_TABLES  # nosec B101: the table name goes into SQL text
        # bandit B608 waived: the table name is one of MEMORY_TABLES
        sql = f"SELECT url, substr(value, 1, ?) AS value FROM {table}"  # nosec B608
        rows = await db.fetchall(sql, (MAX_MEMORY_BYTES + 1,))
        return [(row["url"], row["value"]) for row in rows]

    def recall(self, url: str) -> str | None:
        return self._by_url.get(url)

    def remember(self, url: str, text: str) -> None:
        if self._by_url.get(url) == text:
            return
        self._by_url[url] = text
        self._db.submit(self._upsert, (url, text, self._clock.now()))

    def forget(self, url: str) -> None:
        if self._by_url.pop(url, None) is not None:
            # bandit B608 waived: the table name is one of MEMORY_TABLES
            self._db.submit(f"DELETE FROM {self._table} WHERE url = ?", (url,))  # nosec B608

    def urls(self) -> list[str]:
        return sorted(self._by_url)
