"""Persistence and the venue model (aiosqlite): known devices, discovery candidates, connection health,
locations, slots, groups, performers and assignments, extended names, alerts, history and audit.

Start here: :class:`Persistence`. The services raise :class:`StoreError` subclasses with a stable ``code``.
"""

from hub.clock import Clock, SimulatedClock, SystemClock
from hub.persistence.alerts import ALERT_FIELDS, Alerts, AlertSettings
from hub.persistence.audit import AuditLog
from hub.persistence.battery import RuntimeEstimate, estimate_runtime
from hub.persistence.db import IN_MEMORY, Database, WriterSettings, WriterStats
from hub.persistence.history import History, HistorySettings, Tier
from hub.persistence.services import DATABASE_FILE, Persistence, StoreSettings
from hub.records import (
    HTTP_STATUS,
    Alert,
    AlertEvent,
    AlertKind,
    AlertPrefs,
    Assignment,
    AuditEntry,
    ConflictError,
    ConnectionHealthRecord,
    DeclaredCarrier,
    DiscoveryCandidate,
    ExtendedName,
    FrequencyExclusion,
    Group,
    HistoryPoint,
    InvalidInputError,
    KnownDevice,
    Location,
    LocationKind,
    NotFoundError,
    Performer,
    Slot,
    Source,
    StorageUnavailableError,
    StoreError,
)

__all__ = [
    "ALERT_FIELDS",
    "DATABASE_FILE",
    "HTTP_STATUS",
    "IN_MEMORY",
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
    "ConnectionHealthRecord",
    "Database",
    "DeclaredCarrier",
    "DiscoveryCandidate",
    "ExtendedName",
    "FrequencyExclusion",
    "Group",
    "History",
    "HistoryPoint",
    "HistorySettings",
    "InvalidInputError",
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
    "StorageUnavailableError",
    "StoreError",
    "StoreSettings",
    "SystemClock",
    "Tier",
    "WriterSettings",
    "WriterStats",
    "estimate_runtime",
]
