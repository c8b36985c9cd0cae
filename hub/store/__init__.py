"""Persistence and the venue model (aiosqlite): known devices, discovery candidates, connection health,
locations, slots, groups, performers and assignments, extended names, alerts, history and audit.

Start here: :class:`Persistence`. The services raise :class:`StoreError` subclasses with a stable ``code``.
"""

from hub.store.alerts import ALERT_FIELDS, Alert, AlertEvent, AlertKind, Alerts, AlertSettings
from hub.store.audit import AuditLog
from hub.store.battery import RuntimeEstimate, estimate_runtime
from hub.store.clock import Clock, SimulatedClock, SystemClock
from hub.store.db import Database, WriterSettings, WriterStats
from hub.store.errors import HTTP_STATUS, ConflictError, NotFoundError, StoreError, ValidationError
from hub.store.history import History, HistoryPoint, HistorySettings, Tier
from hub.store.persistence import DATABASE_FILE, Persistence, StoreSettings
from hub.store.records import (
    AlertPrefs,
    Assignment,
    AuditEntry,
    ConnectionHealth,
    DeclaredCarrier,
    DiscoveryCandidate,
    ExtendedName,
    FrequencyExclusion,
    Group,
    KnownDevice,
    Location,
    LocationKind,
    Performer,
    Slot,
    Source,
)

__all__ = [
    "ALERT_FIELDS",
    "DATABASE_FILE",
    "HTTP_STATUS",
    "Alert",
    "AlertEvent",
    "AlertKind",
    "AlertPrefs",
    "AlertSettings",
    "Alerts",
    "Assignment",
    "AuditEntry",
    "AuditLog",
    "Clock",
    "ConflictError",
    "ConnectionHealth",
    "Database",
    "DeclaredCarrier",
    "DiscoveryCandidate",
    "ExtendedName",
    "FrequencyExclusion",
    "Group",
    "History",
    "HistoryPoint",
    "HistorySettings",
    "KnownDevice",
    "Location",
    "LocationKind",
    "NotFoundError",
    "Performer",
    "Persistence",
    "RuntimeEstimate",
    "SimulatedClock",
    "Slot",
    "Source",
    "StoreError",
    "StoreSettings",
    "SystemClock",
    "Tier",
    "ValidationError",
    "WriterSettings",
    "WriterStats",
    "estimate_runtime",
]
