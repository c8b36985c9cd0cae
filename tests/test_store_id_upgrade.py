"""Device ids an earlier build made with an invisible format character inside (U+200E, U+200B, U+FEFF …) and what
the user kept under them, after the upgrade to a build whose id rule takes those characters as spaces
(hub.devices.id_text: ``x-A<U+200E>B`` is now ``x-A_B``).

The database is built as a schema-7 hub left it (the DDL of migrations 1 to 7, rows under the old id), then a
whole hub starts on it, in this process, with a driver that identifies as the earlier build's receiver; what it
shows is read over REST, what the file holds afterwards with sqlite3.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from urllib.parse import quote

import pytest

from hub.compose import compose_hub
from hub.devices import MAX_ID_CHARS, id_text
from hub.drivers import Driver
from hub.persistence import DATABASE_FILE, Persistence
from hub.persistence.db import device_id_now
from hub.persistence.history import BUCKETS_PER_BLOCK, MISSING, VALUES_PER_BUCKET
from hub.persistence.schema import MIGRATIONS
from hub.plugins import PluginHost
from hub.state import StateStore
from hub.testing import plugin_of
from hub.text import device_text
from tests.fault_harness import Api, hub_config, until

OLD_ID, NEW_ID = "x-A\u200eB", "x-A_B"
URL = "x://127.0.0.1:1?id=A%E2%80%8EB"
# a receiver of the same hub whose id never held such a character: nothing of it may change
PLAIN_ID = "x-plain.Id_7"
PLAIN_URL = "x://127.0.0.1:2?id=plain.Id_7"
STEP = 10  # the finest history tier's step


class Receiver(Driver):
    """A receiver with one channel that identifies by its URL's ``id`` option, as it did on the earlier build."""

    async def connect(self) -> None:
        self.sink.identify(unique_id=None, family="x", model="X1", channel_count=1)

    async def run(self) -> None:
        while True:
            self.sink.heard()
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        pass


def plugins() -> PluginHost:
    host = PluginHost()
    host.register(plugin_of("x", Receiver, "x"), name="x")
    return host


@asynccontextmanager
async def hub_on(data_dir: Path) -> AsyncIterator[Api]:
    """A whole hub with the receiver's plugin, started on ``data_dir`` (its migrations run), over REST."""
    hub = compose_hub(hub_config(data_dir, []), plugins())
    await hub.start()
    try:
        async with Api(hub) as api:
            yield api
    finally:
        await hub.stop()


def earlier_id_text(serial: str) -> str:
    """What a build before invisible characters were taken as spaces made of a serial or ``id`` option: the text
    ``str.strip`` leaves, without control characters, cut at 64, with whitespace, ``/``, ``+``, ``#`` as ``_``."""
    return re.sub(r"[\s/+#]", "_", device_text(serial.strip(), MAX_ID_CHARS))


def schema_7_database(data_dir: Path) -> sqlite3.Connection:
    """An empty database as a schema-7 build made it: its migrations' DDL, each with its version row."""
    data_dir.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(data_dir / DATABASE_FILE, isolation_level=None)
    for name in ("wmhub_redact", "wmhub_redact_json"):  # migration 4 rewrites an audit log; this one is empty
        connection.create_function(name, 1, lambda text: text)
    connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, script in enumerate(MIGRATIONS[:7], start=1):
        connection.executescript(f"BEGIN;\n{script}\nINSERT INTO schema_version (version) VALUES ({number});\nCOMMIT;")
    return connection


def block(first: int, values: list[int]) -> bytes:
    """A history block whose buckets ``first``, ``first + 1`` … hold ``values`` as every metric's min/avg/max."""
    data = [MISSING] * (VALUES_PER_BUCKET * BUCKETS_PER_BLOCK)
    for offset, value in enumerate(values):
        start = (first + offset) * VALUES_PER_BUCKET
        data[start : start + VALUES_PER_BUCKET] = [value] * VALUES_PER_BUCKET
    return bytes(value & 0xFF for value in data)


def identity(device_id: str) -> str:
    kept = {"id": device_id, "family": "x", "model": "X1", "firmware": None, "name": "Rack", "channels": ["Ch 1"]}
    return json.dumps(kept | {"channel_indexes": [1], "unsupported": False}, separators=(",", ":"))


def keep_as_the_earlier_build_did(connection: sqlite3.Connection, device_id: str, url: str, number: int) -> int:
    """What a user and a run of the earlier build left of receiver ``device_id`` (slot ``number``, performer
    ``number``, series ``number``): returns the start of its history block."""
    now = time.time()
    start = int(now - 1800) // 600 * 600  # a finished 10-minute block of the finest tier
    run = connection.execute
    run("INSERT OR IGNORE INTO locations (id, name, kind) VALUES (1, 'Stage Left', 'stage')")
    run("INSERT INTO known_devices VALUES (?, ?, ?, 'api', 1)", (url, device_id, now - 3600))
    run("INSERT INTO connection_health VALUES (?, ?, ?, 1, 0, NULL, ?)", (url, device_id, now - 3600, now - 60))
    run("INSERT INTO extended_names VALUES (?, 1, ?, 'Ch 1', ?)", (device_id, f"Vocal {number}", now - 3000))
    run("INSERT INTO slots VALUES (?, ?, 1)", (number, device_id))
    run("INSERT INTO performers VALUES (?, ?, '')", (number, f"Performer {number}"))
    run("INSERT INTO assignments VALUES (?, 1, ?, '{}')", (device_id, number))
    run("INSERT INTO history_series VALUES (?, ?, 1)", (number, device_id))
    run("INSERT INTO history_blocks VALUES (?, ?, ?, ?)", (number, STEP, start, block(3, [80, 79, 78])))
    run(
        "INSERT INTO alerts (kind, device_id, channel, severity, message, raised_at, cleared_at) "
        "VALUES ('low_battery', ?, 1, 'warning', 'battery low', ?, ?)",
        (device_id, now - 2500, now - 2400),
    )
    run("INSERT INTO device_identity VALUES (?, ?, ?)", (url, identity(device_id), now - 60))
    run("INSERT INTO device_memory VALUES (?, '{\"pack\": 1}', ?)", (device_id, now - 60))
    run(
        "INSERT INTO audit (at, source, action, target, before, after, result) VALUES (?, 'rest', 'slot.set', ?, "
        "NULL, ?, 'ok')",
        (now - 3000, f"slot/{number}", json.dumps({"number": number, "device_id": device_id, "channel": 1})),
    )
    return start


def rows_of(data_dir: Path, device_id: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the file that names ``device_id`` (the identity by the id inside its JSON)."""
    found: dict[str, list[tuple[object, ...]]] = {}
    with closing(sqlite3.connect(data_dir / DATABASE_FILE)) as connection:
        for table in (
            "known_devices", "connection_health", "extended_names", "slots", "assignments", "history_series",
            "alerts", "device_memory",
        ):  # fmt: skip
            column = "url" if table == "device_memory" else "device_id"
            found[table] = connection.execute(f"SELECT * FROM {table} WHERE {column} = ?", (device_id,)).fetchall()
        found["device_identity"] = [
            row for row in connection.execute("SELECT * FROM device_identity") if json.loads(row[1])["id"] == device_id
        ]
        found["history_blocks"] = connection.execute(
            "SELECT b.* FROM history_blocks AS b JOIN history_series AS s ON s.id = b.series_id WHERE s.device_id = ?",
            (device_id,),
        ).fetchall()
    return found


async def test_a_receiver_whose_id_held_an_invisible_character_keeps_its_names_slot_performer_and_history(
    tmp_path: Path,
) -> None:
    """An outside audit: after the upgrade the receiver came back as x-A_B without its channel name, board slot
    and performer (they stayed under x-A<U+200E>B, which REST answers 404), and its history split in two."""
    data_dir = tmp_path / "data"
    with closing(schema_7_database(data_dir)) as connection:
        start = keep_as_the_earlier_build_did(connection, OLD_ID, URL, 1)
        keep_as_the_earlier_build_did(connection, PLAIN_ID, PLAIN_URL, 2)

    async with hub_on(data_dir) as api:

        async def both_online() -> bool:
            devices = (await api.get("/api/v1/devices"))["items"]
            return sorted(device["id"] for device in devices if device["online"]) == [NEW_ID, PLAIN_ID]

        await until(both_online, 15, "both receivers online, one as x-A_B")
        listed = sorted(device["id"] for device in (await api.get("/api/v1/devices"))["items"])
        device = await api.get(f"/api/v1/devices/{NEW_ID}")
        slots = [
            (slot["number"], slot["device_id"], slot["channel"]) for slot in (await api.get("/api/v1/slots"))["items"]
        ]
        assignments = (await api.get("/api/v1/assignments"))["items"]
        history = await api.get(f"/api/v1/channels/{NEW_ID}:1/history?since={start}&until={start + 600}&step={STEP}")
        audit = (await api.get("/api/v1/audit?limit=50"))["items"]

    assert listed == [NEW_ID, PLAIN_ID], "no second, offline receiver under the old id"
    assert device["channels"][0]["extended_name"] == "Vocal 1"
    assert slots == [(1, NEW_ID, 1), (2, PLAIN_ID, 1)]
    assert sorted((item["device_id"], item["channel"], item["performer_id"]) for item in assignments) == [
        (NEW_ID, 1, 1),
        (PLAIN_ID, 1, 2),
    ]
    assert [(point["t"], point["battery_avg"]) for point in history.get("items", [])] == [
        (start + 3 * STEP, 80.0),
        (start + 4 * STEP, 79.0),
        (start + 5 * STEP, 78.0),
    ]
    # the audit log is what happened then: the entry names the id the slot was set to at the time
    assert [entry["after"]["device_id"] for entry in audit if entry["action"] == "slot.set"] == [PLAIN_ID, OLD_ID]

    left = {table: rows for table, rows in rows_of(data_dir, OLD_ID).items() if rows}
    assert left == {}, f"rows left under the old id: {left}"
    moved = rows_of(data_dir, NEW_ID)
    assert all(moved[table] for table in ("extended_names", "slots", "assignments", "history_series", "alerts"))


def every_row(data_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    with closing(sqlite3.connect(data_dir / DATABASE_FILE)) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            table: sorted(connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in tables
            if table != "schema_version"
        }


async def migrated(data_dir: Path) -> None:
    """The file opened by this build (its migrations run) and closed again."""
    persistence = await Persistence.open(data_dir, StateStore())
    await persistence.close()


async def test_rows_the_new_id_has_already_stay_and_ids_without_the_characters_are_untouched(tmp_path: Path) -> None:
    """A build with the new rule ran once on this file (rows under x-A_B too), two old ids are one now, and a
    database that holds no such id comes out of the migration row for row as it went in."""
    untouched, data_dir = tmp_path / "untouched", tmp_path / "data"
    with closing(schema_7_database(untouched)) as connection:
        keep_as_the_earlier_build_did(connection, PLAIN_ID, PLAIN_URL, 2)
        keep_as_the_earlier_build_did(connection, "shure-RACK_1", "shure://10.0.0.5:2202", 3)
        connection.execute(  # a URL (a driver's memory before it identified) holding such a character is no id
            "INSERT INTO device_memory VALUES ('x://127.0.0.1:3?id=C\u200bD', '{}', 0)"
        )
        connection.execute(  # two open alerts alike of one id: not the migration's to join
            "INSERT INTO alerts (kind, device_id, channel, severity, message, raised_at) "
            "VALUES ('tx_off', 'shure-RACK_1', 1, 'warning', 'off', 5), "
            "('tx_off', 'shure-RACK_1', 1, 'warning', 'off', 6)"
        )
    before = every_row(untouched)
    await migrated(untouched)
    after = every_row(untouched)
    assert after == before

    with closing(schema_7_database(data_dir)) as connection:
        start = keep_as_the_earlier_build_did(connection, OLD_ID, URL, 1)
        # a second old id that is x-A_B now too, and what the new rule's build kept under x-A_B itself
        keep_as_the_earlier_build_did(connection, "x-A\u200bB", "x://127.0.0.1:5?id=A%E2%80%8BB", 2)
        run = connection.execute
        run("UPDATE extended_names SET name = 'Newest', set_at = set_at + 100 WHERE device_id = 'x-A\u200bB'")
        run("INSERT INTO extended_names VALUES (?, 1, 'Set on the new build', NULL, 0)", (NEW_ID,))
        run("INSERT INTO slots VALUES (9, ?, 1)", (NEW_ID,))
        run("INSERT INTO performers VALUES (9, 'Bob', '')")
        run("INSERT INTO assignments VALUES (?, 1, 9, '{}')", (NEW_ID,))
        run("INSERT INTO history_series VALUES (9, ?, 1)", (NEW_ID,))  # the new build's series, same block
        run("INSERT INTO history_blocks VALUES (9, ?, ?, ?)", (STEP, start, block(5, [50, 51])))
        run("INSERT INTO device_memory VALUES (?, '{\"new\": true}', ?)", (NEW_ID, time.time()))
        for device_id, raised_at in ((OLD_ID, 10), ("x-A\u200bB", 20), (NEW_ID, 15)):
            run(
                "INSERT INTO alerts (kind, device_id, channel, severity, message, raised_at) "
                "VALUES ('tx_off', ?, 1, 'warning', 'off', ?)",
                (device_id, raised_at),
            )
    audit_before = every_row(data_dir)["audit"]
    await migrated(data_dir)
    rows = every_row(data_dir)

    assert rows["audit"] == audit_before
    assert [row[:3] for row in rows["extended_names"]] == [(NEW_ID, 1, "Newest")]
    assert rows["slots"] == [(9, NEW_ID, 1)]
    assert rows["assignments"] == [(NEW_ID, 1, 9, "{}")]
    assert rows["history_series"] == [(9, NEW_ID, 1)]
    # the new build's buckets 5 and 6 and, where it had none, the earlier build's 3 and 4 (its 5 is the new one's)
    [(series_id, step, block_start, data)] = rows["history_blocks"]
    assert (series_id, step, block_start) == (9, STEP, start)
    assert data == block(3, [80, 79, 50, 51])
    assert [row[:2] for row in rows["device_memory"]] == [(NEW_ID, '{"new": true}')], "the newest memory"
    assert sorted(json.loads(row[1])["id"] for row in rows["device_identity"]) == [NEW_ID, NEW_ID]
    assert sorted((row[1], row[0]) for row in rows["known_devices"]) == [
        (NEW_ID, "x://127.0.0.1:1?id=A%E2%80%8EB"),
        (NEW_ID, "x://127.0.0.1:5?id=A%E2%80%8BB"),
    ]
    assert {row[1] for row in rows["connection_health"]} == {NEW_ID}
    open_alerts = [(row[2], row[7]) for row in rows["alerts"] if row[10] is None]
    assert open_alerts == [(NEW_ID, 20)], "of the open alerts alike, the newest is left open"
    assert {row[2] for row in rows["alerts"]} == {NEW_ID}


def test_the_migration_s_rule_is_the_hub_s_id_rule() -> None:
    """What migration 8 makes of an id the earlier build made of a serial is the id this build makes of that
    serial, or the id as it was (where another serial got the same id then and gets another now): for every
    serial of up to five characters of the kinds that matter, near the cut at 64 characters, after a vendor
    name with a ``-`` of its own and before the suffix a second device wanting the same id got."""

    def sound(serial: str, vendor: str = "x", suffix: str = "") -> bool:
        earlier = f"{vendor}-{earlier_id_text(serial)}{suffix}"
        now = f"{vendor}-{id_text(serial)}{suffix}" if id_text(serial) else earlier  # else from the address
        return device_id_now(earlier) in (earlier, now)

    kinds = ("A", "_", " ", "#", "-", "\u200b", "\ufeff")
    short = ["".join(chars) for length in range(1, 6) for chars in itertools.product(kinds, repeat=length)]
    near_the_cut = [
        text for length in range(58, 70) for end in ("\u200b", " \u200b", "\u200bM", "\u200b ", "\u200b_")
        for text in ("L" * length + end, end + "L" * length)
    ]  # fmt: skip
    for serial in short + near_the_cut:
        assert sound(serial) and sound(serial, "acme-audio") and sound(serial, suffix="-x-127_0_0_1_2"), ascii(serial)

    for serial in (
        "A\u200eB",
        "\u200bRACK1",
        "rack2\ufeff",
        "\u200b\u200eA\u00adB\u2060C\ufeff",
        "A \u200bB",
        "\u200bA#B",
    ):
        assert device_id_now(f"x-{earlier_id_text(serial)}") == f"x-{id_text(serial)}", ascii(serial)
    for kept in ("plain.Id_7", "a-b", "x-\u200b", "x-\u200b_ABC", "x-ABC_\u200b", "x-AB\u200b-x-127_0_0_1_2"):
        assert device_id_now(kept) == kept, ascii(kept)


# Two fleets of receivers (serial or id option, and whether migration 8 can tell the id the hub makes now from
# the earlier build's id alone). Each serial of the second has a look-alike in the first that the earlier build
# gave the same id, and that the hub now gives another: such an id is the second's or the first's, so it stays.
FLEET_WITH_SPACES = (
    ("A\u200eB", True),
    ("\u200bRACK1", True),
    ("rack2\ufeff", True),
    ("\u200b\u200eA\u00adB\u2060C\ufeff", True),
    ("plain.Id_7", True),
    ("\u200b ABC", False),  # x-\u200b_ABC: the hub makes x-ABC of it now
    ("DEF \u200b", False),  # x-DEF_\u200b: x-DEF now
    ("\u200b" + "L" * 69, False),  # cut at 64: x-L…L of 64 now
    ("\u200b", False),  # nothing left: the hub makes the id of the address now, which the id does not hold
)
FLEET_WITH_LOOK_ALIKES = (
    ("\u200b_ABC", False),  # x-\u200b_ABC too: x-_ABC now
    ("DEF#\u200b", False),  # x-DEF_\u200b too: x-DEF_ now
    ("\u200b" + "L" * 63, False),  # the same 64 characters: x-L…L of 63 now
)


@pytest.mark.parametrize("fleet", [FLEET_WITH_SPACES, FLEET_WITH_LOOK_ALIKES], ids=["spaces", "look-alikes"])
async def test_each_receiver_s_rows_are_under_the_id_the_hub_gives_it_now_or_where_they_were(
    tmp_path: Path, fleet: tuple[tuple[str, bool], ...]
) -> None:
    """An outside audit: the earlier id of serial '<U+200B> ABC' (x-<U+200B>_ABC) was moved to x-_ABC, an id no
    receiver has (the hub makes x-ABC of it), so its names, slot and performer were under a dead id unseen."""
    data_dir = tmp_path / "data"
    earlier_ids = {}
    with closing(schema_7_database(data_dir)) as connection:
        for number, (serial, _) in enumerate(fleet, start=1):
            earlier_ids[number] = f"x-{earlier_id_text(serial)}"
            keep_as_the_earlier_build_did(
                connection, earlier_ids[number], f"x://127.0.0.1:{number}?id={quote(serial, safe='')}", number
            )

    async with hub_on(data_dir) as api:

        async def all_online() -> bool:
            devices = (await api.get("/api/v1/devices"))["items"]
            return sum(device["online"] for device in devices) == len(fleet)

        await until(all_online, 15, "every receiver online")
        devices = {device["port"]: device for device in (await api.get("/api/v1/devices"))["items"]}

    with closing(sqlite3.connect(data_dir / DATABASE_FILE)) as connection:
        named = dict(connection.execute("SELECT name, device_id FROM extended_names").fetchall())
    for number, (serial, derivable) in enumerate(fleet, start=1):
        now_id, earlier_id = devices[number]["id"], earlier_ids[number]
        expected = now_id if derivable else earlier_id
        assert named[f"Vocal {number}"] == expected, f"{serial!a}: earlier {earlier_id!a}, now {now_id}"
        shown = devices[number]["channels"][0]["extended_name"]
        assert shown == (f"Vocal {number}" if expected == now_id else None), ascii(serial)


async def test_three_series_that_are_one_channel_now_keep_every_bucket_of_a_block_they_share(tmp_path: Path) -> None:
    """An outside review's suspicion, proven: of three stored ids that are one id now (two earlier ones and the
    new one a build with the new rule ran under), each with a block of the same 10 minutes, only the first
    extra series' buckets were joined into the kept block; the other's block was deleted with its buckets, so
    the channel's history had a hole where it had been recorded."""
    data_dir = tmp_path / "data"
    with closing(schema_7_database(data_dir)) as connection:
        start = keep_as_the_earlier_build_did(connection, OLD_ID, URL, 1)  # its buckets 3, 4, 5
        run = connection.execute
        # its bucket 5 is series 1's too: the kept series' own bucket first, then the others' by series id
        for series_id, device_id, first, values in ((2, "x-A\u200bB", 5, [77, 74]), (9, NEW_ID, 7, [76, 75])):
            run("INSERT INTO history_series VALUES (?, ?, 1)", (series_id, device_id))
            run("INSERT INTO history_blocks VALUES (?, ?, ?, ?)", (series_id, STEP, start, block(first, values)))

    async with hub_on(data_dir) as api:
        history = await api.get(f"/api/v1/channels/{NEW_ID}:1/history?since={start}&until={start + 600}&step={STEP}")

    assert [(point["t"], point["battery_avg"]) for point in history.get("items", [])] == [
        (start + bucket * STEP, float(value)) for bucket, value in enumerate([80, 79, 78, 74, 76, 75], start=3)
    ]
