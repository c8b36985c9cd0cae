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
)
