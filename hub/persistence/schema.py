"""The database schema as a numbered list of migrations; each runs once, in order, in its own transaction.

Append new migrations; never edit one that has shipped. ``schema_version`` holds the number applied last.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the venue model, devices, alerts, audit and history
    """
    CREATE TABLE locations (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        parent_id INTEGER REFERENCES locations(id) ON DELETE SET NULL,
        UNIQUE (kind, name)
    );
    CREATE TABLE known_devices (
        url TEXT PRIMARY KEY,
        device_id TEXT,
        added_at REAL NOT NULL,
        source TEXT NOT NULL,
        location_id INTEGER REFERENCES locations(id) ON DELETE SET NULL
    );
    CREATE TABLE candidates (
        url TEXT PRIMARY KEY,
        vendor TEXT NOT NULL,
        model TEXT,
        unique_id TEXT,
        name TEXT,
        source TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE TABLE connection_health (
        url TEXT PRIMARY KEY,
        device_id TEXT,
        connected_since REAL,
        attempts INTEGER NOT NULL,
        reconnects INTEGER NOT NULL,
        last_error TEXT,
        updated_at REAL NOT NULL
    );
    CREATE TABLE slots (
        number INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        channel INTEGER NOT NULL,
        UNIQUE (device_id, channel)
    );
    CREATE TABLE groups (
        number INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        slots TEXT NOT NULL
    );
    CREATE TABLE performers (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE assignments (
        device_id TEXT NOT NULL,
        channel INTEGER NOT NULL,
        performer_id INTEGER NOT NULL REFERENCES performers(id) ON DELETE CASCADE,
        alert_prefs TEXT NOT NULL,
        PRIMARY KEY (device_id, channel)
    );
    CREATE TABLE extended_names (
        device_id TEXT NOT NULL,
        channel INTEGER NOT NULL,
        name TEXT NOT NULL,
        device_name_at_set TEXT,
        set_at REAL NOT NULL,
        PRIMARY KEY (device_id, channel)
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        device_id TEXT NOT NULL,
        channel INTEGER,
        detail TEXT NOT NULL DEFAULT '',
        severity TEXT NOT NULL,
        message TEXT NOT NULL,
        raised_at REAL NOT NULL,
        acknowledged_at REAL,
        acknowledged_by TEXT,
        cleared_at REAL
    );
    CREATE INDEX alerts_by_cleared ON alerts (cleared_at);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT,
        after TEXT,
        result TEXT NOT NULL
    );
    CREATE INDEX audit_by_time ON audit (at);
    CREATE INDEX audit_by_target ON audit (target, at);
    CREATE TABLE history_series (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        channel INTEGER NOT NULL,
        UNIQUE (device_id, channel)
    );
    -- a rowid table on purpose: a 1 KB block would overflow a WITHOUT ROWID page and take 4 KB
    CREATE TABLE history_blocks (
        series_id INTEGER NOT NULL,
        step INTEGER NOT NULL,
        start INTEGER NOT NULL,
        data BLOB NOT NULL,
        UNIQUE (series_id, step, start)
    );
    CREATE INDEX history_blocks_by_age ON history_blocks (step, start);
    """,
    # 2: hub-wide settings kept with the venue (the show's end time and swap margin), JSON per key
    """
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 3: frequency coordination (#19): carriers the hub cannot see, and exclusions (TV channels, ranges)
    """
    CREATE TABLE declared_carriers (
        id INTEGER PRIMARY KEY,
        label TEXT NOT NULL,
        frequency_mhz REAL NOT NULL,
        bandwidth_khz REAL NOT NULL DEFAULT 0,
        active INTEGER NOT NULL DEFAULT 1,
        family TEXT
    );
    CREATE TABLE frequency_exclusions (
        id INTEGER PRIMARY KEY,
        label TEXT NOT NULL,
        low_mhz REAL NOT NULL,
        high_mhz REAL NOT NULL,
        tv_grid TEXT,
        tv_channel INTEGER
    );
    """,
    # 4: an audit log written before device passwords were moved out of the database (hub.persistence.
    # credentials) held them in clear: each entry is rewritten redacted, as the audit writes entries now.
    # wmhub_redact and wmhub_redact_json are hub.redact, registered by hub.persistence.db for migrations,
    # which run with secure_delete on: the old text is overwritten in the file (audit_by_target included).
    """
    UPDATE audit SET
        target = wmhub_redact(target),
        result = wmhub_redact(result),
        before = wmhub_redact_json(before),
        after = wmhub_redact_json(after)
    WHERE target IS NOT wmhub_redact(target)
        OR result IS NOT wmhub_redact(result)
        OR before IS NOT wmhub_redact_json(before)
        OR after IS NOT wmhub_redact_json(after);
    """,
    # 5: what drivers keep of their devices across restarts (DeviceSink.remember), JSON text by device URL as
    # shown: the SSCv2 driver's channel of each Spectera transmitter
    """
    CREATE TABLE device_memory (
        url TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 6: what each device last said it is (id, family, model, name, its channels' names), JSON text by device URL
    # as shown: a receiver down when the hub starts is listed offline with its channels (hub.devices)
    """
    CREATE TABLE device_identity (
        url TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 7: a driver's memory follows its device to another address: kept under the device's id (its url column
    # holds the URL only until the device first identifies). A row goes under the id its URL last had; of two
    # URLs that were the same device (it moved before), the newer row stays.
    """
    DELETE FROM device_memory WHERE EXISTS (
        SELECT 1 FROM connection_health AS mine
        JOIN connection_health AS other ON other.device_id = mine.device_id AND other.url != mine.url
        JOIN device_memory AS newer ON newer.url = other.url
        WHERE mine.url = device_memory.url AND newer.updated_at > device_memory.updated_at
    );
    UPDATE OR REPLACE device_memory
    SET url = (SELECT device_id FROM connection_health WHERE connection_health.url = device_memory.url)
    WHERE EXISTS (
        SELECT 1 FROM connection_health
        WHERE connection_health.url = device_memory.url AND connection_health.device_id IS NOT NULL
    );
    """,
    # 8: an id an earlier build made of a serial or id option holding an invisible format character (U+200B, U+200E,
    # U+FEFF …) is written as the hub makes it now (hub.devices.id_text: x-A<U+200E>B is x-A_B), so what the user
    # kept under it stays the receiver's. wmhub_device_id is hub.persistence.db.device_id_now: any other id, and one
    # that does not tell what the hub makes of its serial now, comes back as it is. Where the new id has a row
    # already (a build with the new rule ran, or two old ids are one now), one stays: the newest name, driver's
    # memory or open alert (the others are cleared), else the row already under the new id, then the least old id; a
    # channel on two slots keeps the slot already naming the new id, else the lowest; the history series of a
    # channel are one (history_keep_recorded: where several have a block of one time, each bucket the kept series'
    # own, else the first recorded of the others by series id, folded one series at a time). The audit log keeps the
    # ids of its time.
    """
    DELETE FROM extended_names WHERE rowid IN (
        SELECT rowid FROM (
            SELECT rowid, row_number() OVER (
                PARTITION BY wmhub_device_id(device_id), channel
                ORDER BY set_at DESC, device_id = wmhub_device_id(device_id) DESC, device_id
            ) AS place FROM extended_names
        ) WHERE place > 1
    );
    UPDATE extended_names SET device_id = wmhub_device_id(device_id) WHERE device_id != wmhub_device_id(device_id);
    DELETE FROM assignments WHERE rowid IN (
        SELECT rowid FROM (
            SELECT rowid, row_number() OVER (
                PARTITION BY wmhub_device_id(device_id), channel
                ORDER BY device_id = wmhub_device_id(device_id) DESC, device_id
            ) AS place FROM assignments
        ) WHERE place > 1
    );
    UPDATE assignments SET device_id = wmhub_device_id(device_id) WHERE device_id != wmhub_device_id(device_id);
    DELETE FROM slots WHERE number IN (
        SELECT number FROM (
            SELECT number, row_number() OVER (
                PARTITION BY wmhub_device_id(device_id), channel
                ORDER BY device_id = wmhub_device_id(device_id) DESC, number
            ) AS place FROM slots
        ) WHERE place > 1
    );
    UPDATE slots SET device_id = wmhub_device_id(device_id) WHERE device_id != wmhub_device_id(device_id);
    UPDATE known_devices SET device_id = wmhub_device_id(device_id) WHERE device_id != wmhub_device_id(device_id);
    UPDATE connection_health SET device_id = wmhub_device_id(device_id)
    WHERE device_id != wmhub_device_id(device_id);
    UPDATE alerts SET cleared_at = (julianday('now') - 2440587.5) * 86400.0 WHERE id IN (
        SELECT id FROM (
            SELECT id, row_number() OVER joined AS place,
                max(device_id != wmhub_device_id(device_id)) OVER joined AS moved
            FROM alerts WHERE cleared_at IS NULL
            WINDOW joined AS (
                PARTITION BY kind, wmhub_device_id(device_id), channel, detail
                ORDER BY raised_at DESC, device_id = wmhub_device_id(device_id) DESC, id DESC
                ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
            )
        ) WHERE place > 1 AND moved
    );
    UPDATE alerts SET device_id = wmhub_device_id(device_id) WHERE device_id != wmhub_device_id(device_id);
    DELETE FROM device_memory WHERE rowid IN (
        SELECT rowid FROM (
            SELECT rowid, row_number() OVER (
                PARTITION BY wmhub_device_id(url) ORDER BY updated_at DESC, url = wmhub_device_id(url) DESC, url
            ) AS place FROM device_memory
        ) WHERE place > 1
    );
    UPDATE device_memory SET url = wmhub_device_id(url) WHERE url != wmhub_device_id(url);
    UPDATE device_identity SET value = wmhub_identity(value) WHERE value IS NOT wmhub_identity(value);
    CREATE TEMP TABLE wmhub_joined_series AS SELECT from_id, to_id FROM (
        SELECT id AS from_id, first_value(id) OVER (
            PARTITION BY wmhub_device_id(device_id), channel ORDER BY device_id = wmhub_device_id(device_id) DESC, id
        ) AS to_id FROM history_series
    ) WHERE from_id != to_id;
    CREATE TEMP TABLE wmhub_joined_blocks (
        to_id INTEGER, step INTEGER, start INTEGER, place INTEGER, blocks INTEGER, data BLOB,
        PRIMARY KEY (to_id, step, start, place)
    );
    INSERT INTO temp.wmhub_joined_blocks
    SELECT to_id, step, start, row_number() OVER one_time, count(*) OVER (PARTITION BY to_id, step, start), data
    FROM history_blocks JOIN (
        SELECT from_id, to_id FROM temp.wmhub_joined_series UNION SELECT to_id, to_id FROM temp.wmhub_joined_series
    ) ON from_id = series_id
    WINDOW one_time AS (PARTITION BY to_id, step, start ORDER BY series_id != to_id, series_id);
    DELETE FROM history_blocks WHERE series_id IN (SELECT from_id FROM temp.wmhub_joined_series);
    WITH RECURSIVE folded (to_id, step, start, place, blocks, data) AS (
        SELECT to_id, step, start, place, blocks, data FROM temp.wmhub_joined_blocks WHERE place = 1
        UNION ALL
        SELECT folded.to_id, folded.step, folded.start, next.place, folded.blocks,
            history_keep_recorded(folded.data, next.data)
        FROM folded JOIN temp.wmhub_joined_blocks AS next
        ON next.to_id = folded.to_id AND next.step = folded.step AND next.start = folded.start
            AND next.place = folded.place + 1
    )
    INSERT OR REPLACE INTO history_blocks (series_id, step, start, data)
    SELECT to_id, step, start, data FROM folded WHERE place = blocks;
    DROP TABLE temp.wmhub_joined_blocks;
    DELETE FROM history_series WHERE id IN (SELECT from_id FROM temp.wmhub_joined_series);
    UPDATE history_series SET device_id = wmhub_device_id(device_id) WHERE device_id != wmhub_device_id(device_id);
    DROP TABLE temp.wmhub_joined_series;
    """,
)
