"""Known devices (they survive restarts), discovery candidates (kept apart until approved) and connection
health (fed from :meth:`hub.devices.ManagedDevice.health`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from hub.clock import Clock
from hub.drivers import Endpoint
from hub.hookspecs import Candidate
from hub.persistence.audit import AuditLog
from hub.persistence.credentials import DeviceCredentials
from hub.persistence.db import Database, Statement, upsert
from hub.persistence.service_base import Service
from hub.records import (
    CANDIDATE_TTL_S,
    CandidateDescription,
    ConflictError,
    ConnectionHealthRecord,
    DiscoveryCandidate,
    InvalidInputError,
    KnownDevice,
    NotFoundError,
    Source,
)
from hub.redact import redact

# Sources whose devices come back from the config file or the demo every start: the hub does not reconnect
# them from here, but keeps their placement (a row made by set_location).
TRANSIENT_SOURCES: Final = frozenset({"config", "demo"})
# a device re-announces itself every few seconds; its last_seen is worth a write only this often
CANDIDATE_REFRESH_S = 60.0

_UPSERT_DEVICE = upsert("known_devices", ("url",), ("device_id", "added_at", "source", "location_id"))
_UPSERT_CANDIDATE = upsert(
    "candidates", ("url",), ("vendor", "model", "unique_id", "name", "source", "first_seen", "last_seen")
)
_UPSERT_HEALTH = upsert(
    "connection_health",
    ("url",),
    ("device_id", "connected_since", "attempts", "reconnects", "last_error", "updated_at"),
)


class KnownDevices(Service):
    """Devices the hub connects to at start. ``url_check`` (set by the hub, e.g. to the device manager's
    ``resolve``) refuses URLs no plugin handles; it raises ``EndpointError``.

    Each is held (and written, and audited) under its URL as shown, password redacted; the URL with its
    password is in ``credentials`` and comes back from :meth:`connect_url` and :meth:`restore`."""

    held_tables = ("known_devices",)

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditLog,
        rows: Iterable[KnownDevice],
        credentials: DeviceCredentials,
    ) -> None:
        super().__init__(db, clock, audit)
        self.credentials = credentials
        self._by_url: dict[str, KnownDevice] = {}
        self._take(rows)
        self.url_check: Callable[[str], object] | None = None
        self.location_exists: Callable[[int], bool] = lambda _location_id: False
        # a device the hub has that is not remembered here (from the config file or the demo), by id or URL:
        # (URL, device id, source); set by the hub
        self.unremembered: Callable[[str], tuple[str, str | None, str] | None] = lambda _url_or_device_id: None

    def all(self) -> list[KnownDevice]:
        return sorted(self._by_url.values(), key=lambda device: device.added_at)

    def get(self, url_or_device_id: str) -> KnownDevice:
        device = self._by_url.get(redact(url_or_device_id))
        if device is not None:
            return device
        for device in self._by_url.values():
            if device.device_id == url_or_device_id:
                return device
        raise NotFoundError(f"no known device {url_or_device_id!r}", device=url_or_device_id)

    def find(self, url_or_device_id: str) -> KnownDevice | None:
        try:
            return self.get(url_or_device_id)
        except NotFoundError:
            return None

    def has(self, url_or_device_id: str) -> bool:
        return self.find(url_or_device_id) is not None

    def restore(self) -> list[tuple[str, str | None]]:
        """(url to connect with, device_id) of every known device, for the hub to reconnect at start; the
        config file and the demo bring back their own."""
        return self._to_connect(self.all())

    def adopt(self, rows: Iterable[KnownDevice]) -> list[tuple[str, str | None]]:
        """Take the rows of the file not known here (the store started on a stand-in that lacked them, and the
        file opened since): (url to connect with, device_id) of those the hub is to connect, as :meth:`restore`."""
        new = [device for device in rows if redact(device.url) not in self._by_url]
        self._take(new)
        return self._to_connect(new)

    def _to_connect(self, devices: Iterable[KnownDevice]) -> list[tuple[str, str | None]]:
        return [
            (self.connect_url(device), device.device_id) for device in devices if device.source not in TRANSIENT_SOURCES
        ]

    def _take(self, rows: Iterable[KnownDevice]) -> None:
        for device in rows:
            shown = self.credentials.keep(device.url)
            if shown != device.url:  # stored with its password by an earlier version: move the password out
                self._db.submit("DELETE FROM known_devices WHERE url = ?", (device.url,))
                self._store(device.model_copy(update={"url": shown}))
            else:
                self._by_url[shown] = device

    def connect_url(self, device: KnownDevice) -> str:
        """The device's URL with its password, for the driver (never for display)."""
        return self.credentials.full(device.url)

    async def add(self, url: str, *, source: Source | str, device_id: str | None = None) -> KnownDevice:
        url = url.strip() if isinstance(url, str) else url
        try:
            Endpoint.parse(url, default_port=0)
            if self.url_check is not None:
                self.url_check(url)
        except (ValueError, TypeError) as exc:  # EndpointError, or urllib refusing it outright ("x://[")
            raise InvalidInputError(redact(str(exc)), url=redact(url)) from None
        shown = redact(url)
        placed = self._by_url.get(shown)
        if placed is not None and placed.source in TRANSIENT_SOURCES:  # remembered from now on, placement kept
            self.credentials.keep(url)
            device = placed.model_copy(update={"source": str(source), "device_id": placed.device_id or device_id})
            self._store(device)
            await self._committed(source, "device.add", shown, after=device.model_dump())
            return device
        if placed is not None:
            raise ConflictError(f"device {shown} is already known", url=shown)
        self.credentials.keep(url)
        device = KnownDevice(url=shown, device_id=device_id, added_at=self._clock.now(), source=str(source))
        self._store(device)
        await self._committed(source, "device.add", shown, after=device.model_dump())
        return device

    async def change_credentials(self, url: str, *, source: Source | str) -> bool:
        """Keep ``url``'s password for the known device it names when it differs from the one stored (an
        admin correcting a typo by adding the device again); audited as ``device.credentials``, without the
        secret. False when nothing changed."""
        url = url.strip()
        shown = redact(url)
        if shown not in self._by_url or self.credentials.full(shown) == url:
            return False
        self.credentials.keep(url)
        await self._committed(source, "device.credentials", shown, after={"credentials": "changed"})
        return True

    async def remove(self, url_or_device_id: str, *, source: Source | str) -> KnownDevice:
        device = self.get(url_or_device_id)
        del self._by_url[device.url]
        self.credentials.forget(device.url)
        self._db.submit("DELETE FROM known_devices WHERE url = ?", (device.url,))
        await self._committed(source, "device.remove", device.url, before=device.model_dump())
        return device

    async def set_location(
        self, url_or_device_id: str, location_id: int | None, *, source: Source | str
    ) -> KnownDevice:
        device = self.find(url_or_device_id)
        if location_id is not None and not self.location_exists(location_id):
            raise InvalidInputError(f"no location {location_id}", location_id=location_id)
        if device is None:
            device = self._placeable(url_or_device_id)
        updated = device.model_copy(update={"location_id": location_id})
        self._store(updated)
        # under its id, as the API and the assignments name it (older builds: its URL, matched too)
        target = device.device_id or device.url
        await self._committed(source, "device.location", target, device.location_id, location_id)
        return updated

    def _placeable(self, url_or_device_id: str) -> KnownDevice:
        """A row for a device the hub has from the config file or the demo, which holds only its placement."""
        found = self.unremembered(url_or_device_id)
        if found is None:
            raise NotFoundError(f"no known device {url_or_device_id!r}", device=url_or_device_id)
        url, device_id, source = found
        return KnownDevice(url=redact(url), device_id=device_id, added_at=self._clock.now(), source=source)

    def bind(self, url: str, device_id: str) -> None:
        """Record the id a known device identified itself with (call it from the device's on_identified)."""
        device = self._by_url.get(redact(url))
        if device is not None and device.device_id != device_id:
            self._store(device.model_copy(update={"device_id": device_id}))

    def other_name(self, url_or_device_id: str) -> str | None:
        """A known device's URL for its id, its id for its URL (None when it has no other, or is not known)."""
        device = self.find(url_or_device_id)
        if device is None:
            return None
        other = device.url if url_or_device_id == device.device_id else device.device_id
        return other if other != url_or_device_id else None

    def uses_location(self, location_id: int) -> list[str]:
        return [device.url for device in self._by_url.values() if device.location_id == location_id]

    def held(self) -> Iterator[Statement]:
        return map(_device_row, self._by_url.values())

    def _store(self, device: KnownDevice) -> None:
        self._by_url[device.url] = device
        self._db.submit(*_device_row(device))


def _device_row(device: KnownDevice) -> Statement:
    return _UPSERT_DEVICE, (device.url, device.device_id, device.added_at, device.source, device.location_id)


class Candidates(Service):
    """Discovered devices waiting for approval. With ``auto_approve`` they become known devices at once."""

    held_tables = ("candidates",)

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditLog,
        devices: KnownDevices,
        rows: Iterable[DiscoveryCandidate],
        auto_approve: bool = False,
    ) -> None:
        super().__init__(db, clock, audit)
        self._devices = devices
        self._by_url = {candidate.url: candidate for candidate in rows}
        self.auto_approve = auto_approve
        for candidate in list(self._by_url.values()):
            if not self._live(candidate):  # left by an earlier run and not seen since: gone
                self._forget(candidate.url)

    def _live(self, candidate: DiscoveryCandidate) -> bool:
        return self._clock.now() - candidate.last_seen <= CANDIDATE_TTL_S

    def all(self) -> list[DiscoveryCandidate]:
        """The candidates seen in the last CANDIDATE_TTL_S, oldest first."""
        live = (candidate for candidate in self._by_url.values() if self._live(candidate))
        return sorted(live, key=lambda candidate: candidate.first_seen)

    def get(self, url: str) -> DiscoveryCandidate:
        candidate = self._by_url.get(url)
        if candidate is None or not self._live(candidate):
            raise NotFoundError(f"no discovery candidate {url!r}", url=url)
        return candidate

    def gone(self, url: str) -> None:
        """The device said goodbye (or was not seen for CANDIDATE_TTL_S): no longer a candidate."""
        if url in self._by_url:
            self._forget(url)

    async def offer(self, found: Candidate) -> KnownDevice | None:
        """Take a plugin's discovery result. Returns the new known device when it was auto-approved
        (the hub then adds it to the device manager); None when it waits for approval or is known."""
        if self._devices.has(found.url):
            return None
        if self.auto_approve:
            self._by_url.pop(found.url, None)
            return await self._devices.add(found.url, source=Source.DISCOVERY)
        now = self._clock.now()
        if found.unique_id is not None:  # the same device at another address or port: the new URL holds
            for other in list(self._by_url.values()):
                if other.url != found.url and (other.vendor, other.unique_id) == (found.vendor, found.unique_id):
                    self._forget(other.url)
        previous = self._by_url.get(found.url)
        candidate = DiscoveryCandidate(
            **CandidateDescription.model_validate(found, from_attributes=True).model_dump(),
            first_seen=previous.first_seen if previous else now,
            last_seen=now,
        )
        self._by_url[found.url] = candidate
        if (
            previous is None
            or previous.model_copy(update={"last_seen": now}) != candidate
            or now - previous.last_seen >= CANDIDATE_REFRESH_S
        ):
            self._db.submit(*_candidate_row(candidate))
        else:
            # keep the memory copy fresh but skip the write: only the time moved
            self._by_url[found.url] = candidate.model_copy(update={"last_seen": previous.last_seen})
        return None

    async def approve(self, url: str, *, source: Source | str) -> KnownDevice:
        """Make a candidate a known device; the hub then adds it to the device manager."""
        candidate = self.get(url)
        self._forget(candidate.url)
        if self._devices.has(candidate.url):
            return self._devices.get(candidate.url)
        return await self._devices.add(candidate.url, source=source)

    async def dismiss(self, url: str, *, source: Source | str) -> DiscoveryCandidate:
        candidate = self.get(url)
        self._forget(candidate.url)
        await self._committed(source, "candidate.dismiss", url, before=candidate.model_dump())
        return candidate

    def held(self) -> Iterator[Statement]:
        return map(_candidate_row, self._by_url.values())

    def _forget(self, url: str) -> None:
        del self._by_url[url]
        self._db.submit("DELETE FROM candidates WHERE url = ?", (url,))


def _candidate_row(candidate: DiscoveryCandidate) -> Statement:
    return _UPSERT_CANDIDATE, (
        candidate.url,
        candidate.vendor,
        candidate.model,
        candidate.unique_id,
        candidate.name,
        candidate.source,
        candidate.first_seen,
        candidate.last_seen,
    )


class HealthLog:
    """Connection health per device URL, as the device manager's supervisors report it."""

    def __init__(self, db: Database, clock: Clock, rows: Iterable[ConnectionHealthRecord]) -> None:
        self._db = db
        self._clock = clock
        self._by_url = {health.url: health for health in rows}
        db.hold(self.held, whole=("connection_health",))

    def update(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Feed ``DeviceManager.health()``; only changes are written."""
        for entry in entries:
            url = str(entry["url"])
            health = ConnectionHealthRecord(
                url=url,
                device_id=entry.get("device_id"),
                connected=bool(entry.get("connected")),
                connected_since=entry.get("connected_since"),
                attempts=int(entry.get("attempts") or 0),
                reconnects=int(entry.get("reconnects") or 0),
                last_error=entry.get("last_error"),
                updated_at=self._clock.now(),
            )
            previous = self._by_url.get(url)
            if previous is not None and previous.model_copy(update={"updated_at": health.updated_at}) == health:
                continue
            self._by_url[url] = health
            self._db.submit(*_health_row(health))

    def all(self) -> list[ConnectionHealthRecord]:
        return sorted(self._by_url.values(), key=lambda health: health.url)

    def find(self, url_or_device_id: str) -> ConnectionHealthRecord | None:
        health = self._by_url.get(url_or_device_id)
        if health is not None:
            return health
        for health in self._by_url.values():
            if health.device_id == url_or_device_id:
                return health
        return None

    def get(self, url_or_device_id: str) -> ConnectionHealthRecord:
        health = self.find(url_or_device_id)
        if health is None:
            raise NotFoundError(f"no connection health for {url_or_device_id!r}", device=url_or_device_id)
        return health

    def forget(self, url: str) -> None:
        if self._by_url.pop(url, None) is not None:
            self._db.submit("DELETE FROM connection_health WHERE url = ?", (url,))

    def held(self) -> Iterator[Statement]:
        """The statements that write every record held here (:meth:`Database.hold`)."""
        return map(_health_row, self._by_url.values())


def _health_row(health: ConnectionHealthRecord) -> Statement:
    return _UPSERT_HEALTH, (
        health.url,
        health.device_id,
        health.connected_since,
        health.attempts,
        health.reconnects,
        health.last_error,
        health.updated_at,
    )
