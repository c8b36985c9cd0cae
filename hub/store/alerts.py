"""Alerts: rules evaluated on state changes, with a raised -> acknowledged -> cleared lifecycle.

Every rule judges one channel (or device) as ACTIVE (the problem is there), CLEAR (clearly fine: past the
hysteresis margin) or HOLD (in between, or unknown). An alert is raised only after ACTIVE has held for the
rule's ``raise_after`` (debounce) and cleared only after CLEAR has held for ``clear_after`` without a single
ACTIVE in between; HOLD neither raises nor clears. A value flickering around a threshold therefore raises
one alert and keeps it until the value is clearly and steadily fine. While a device is offline or not yet
reconnected its channels are HOLD: no news is not good news, and a restart does not clear open alerts.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Final, Literal

from hub.model import Channel
from hub.state import ChangeKey, StateStore
from hub.store.audit import AuditLog
from hub.store.clock import Clock
from hub.store.db import Database
from hub.store.devices import KnownDevices
from hub.store.errors import ConflictError, NotFoundError
from hub.store.performers import ExtendedNames, Performers
from hub.store.records import AlertPrefs, Record, Source
from hub.store.service import Service

log = logging.getLogger("hub.store.alerts")


class AlertKind(StrEnum):
    LOW_BATTERY = "low_battery"
    TX_OFF = "tx_off"  # the transmitter of an assigned channel is off
    RF_LOW = "rf_low"
    AUDIO_CLIP = "audio_clip"
    DEVICE_OFFLINE = "device_offline"
    DEVICE_WARNING = "device_warning"  # detail: interference, encryption or unregistered


# The state fields the rules read: the store subscription the alerts take.
ALERT_FIELDS: Final = frozenset(
    {
        "tx_present",
        "battery_bars",
        "battery_percent",
        "battery_runtime_min",
        "rf_dbm",
        "rf_quality_percent",
        "audio_peak",
        "warnings",
        "online",
    }
)

# Device warnings worth an alert, matched case-insensitively as substrings of the vendor's warning text
# (vendors spell them differently: "Interference", "Aes256Error", "EncryptionMismatch", ...).
DEFAULT_WARNING_PATTERNS: Final[Mapping[str, tuple[str, ...]]] = {
    "interference": ("interference", "intermod"),
    "encryption": ("encrypt", "aes"),
    "unregistered": ("unregistered", "notregistered", "not_registered", "unknown_tx"),
}


@dataclass(frozen=True)
class AlertSettings:
    battery_bars: int = 1  # raise at this many bars or fewer; clear at two more
    battery_percent: int = 20
    battery_percent_margin: int = 5
    battery_runtime_min: int = 30
    battery_runtime_margin_min: int = 10
    battery_for_s: float = 2.0
    rf_quality_percent: int = 30
    rf_quality_margin: int = 10
    rf_dbm: float = -90.0
    rf_dbm_margin: float = 5.0
    rf_low_for_s: float = 5.0
    tx_off_for_s: float = 5.0
    offline_for_s: float = 3.0
    warning_for_s: float = 2.0
    clear_after_s: float = 5.0
    clip_clear_after_s: float = 10.0
    warning_patterns: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_WARNING_PATTERNS))


class Alert(Record):
    id: int
    kind: AlertKind
    device_id: str
    channel: int | None
    detail: str = ""
    severity: Literal["warning", "critical"]
    message: str
    raised_at: float
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    cleared_at: float | None = None


AlertAction = Literal["raised", "acknowledged", "cleared"]


@dataclass(frozen=True)
class AlertEvent:
    action: AlertAction
    alert: Alert


AlertListener = Callable[[AlertEvent], None]
AlertKey = tuple[AlertKind, str, int | None, str]


class Verdict(Enum):
    ACTIVE = "active"
    HOLD = "hold"
    CLEAR = "clear"


@dataclass(frozen=True)
class _Judgement:
    key: AlertKey
    verdict: Verdict
    raise_after: float
    clear_after: float
    severity: Literal["warning", "critical"] = "warning"
    message: str = ""


@dataclass
class _Tracker:
    pending_since: float | None = None
    ok_since: float | None = None


def _below(value: float | None, threshold: float) -> bool:
    return value is not None and value <= threshold


def _above_or_unknown(value: float | None, level: float) -> bool:
    return value is None or value >= level


_INSERT = (
    "INSERT INTO alerts (id, kind, device_id, channel, detail, severity, message, raised_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class Alerts(Service):
    """The alert engine and the alert service (list, acknowledge, recent history).

    ``open_alerts`` and ``last_id`` come from the database at open: alerts survive a restart."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditLog,
        state: StateStore,
        devices: KnownDevices,
        performers: Performers,
        names: ExtendedNames,
        settings: AlertSettings,
        open_alerts: Iterable[Alert],
        last_id: int,
    ) -> None:
        super().__init__(db, clock, audit)
        self._state = state
        self._devices = devices
        self._performers = performers
        self._names = names
        self.settings = settings
        self._open: dict[AlertKey, Alert] = {}
        self._trackers: dict[AlertKey, _Tracker] = {}
        for alert in open_alerts:
            key = _key_of(alert)
            self._open[key] = alert
            self._trackers[key] = _Tracker()
        self._last_id = last_id
        self._listeners: list[AlertListener] = []
        self._judged_all = False

    # the service

    def add_listener(self, listener: AlertListener) -> Callable[[], None]:
        """Call ``listener`` with every AlertEvent (raised, acknowledged, cleared); returns the remover.
        Listeners run synchronously in the store's tick: hand slow work to a task or a queue."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def open_alerts(self) -> list[Alert]:
        """Raised and not yet cleared, oldest first (acknowledged ones included)."""
        return sorted(self._open.values(), key=lambda alert: alert.id)

    def get(self, alert_id: int) -> Alert:
        for alert in self._open.values():
            if alert.id == alert_id:
                return alert
        raise NotFoundError(f"no open alert {alert_id}", alert_id=alert_id)

    async def acknowledge(self, alert_id: int, *, source: Source | str, by: str | None = None) -> Alert:
        """Mark an open alert as seen; it stays open until its condition clears."""
        try:
            alert = self.get(alert_id)
        except NotFoundError:
            await self._db.sync()
            rows = await self._db.fetchall("SELECT cleared_at FROM alerts WHERE id = ?", (alert_id,))
            if rows:
                raise ConflictError(f"alert {alert_id} has already cleared", alert_id=alert_id) from None
            raise
        if alert.acknowledged_at is not None:
            return alert
        acknowledged = alert.model_copy(update={"acknowledged_at": self._clock.now(), "acknowledged_by": by})
        self._open[_key_of(alert)] = acknowledged
        self._db.submit(
            "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
            (acknowledged.acknowledged_at, by, alert_id),
        )
        self._audit.record(source, "alert.acknowledge", f"alert/{alert_id}", None, by)
        self._emit("acknowledged", acknowledged)
        await self._db.sync()
        return acknowledged

    async def recent(self, *, since: float | None = None, limit: int = 100) -> list[Alert]:
        """Alerts raised since ``since`` (open and cleared), newest first."""
        await self._db.sync()
        rows = await self._db.fetchall(
            "SELECT * FROM alerts WHERE raised_at >= ? ORDER BY id DESC LIMIT ?",
            (since if since is not None else 0.0, max(1, min(limit, 10_000))),
        )
        return [_alert_from_row(row) for row in rows]

    # the engine

    def evaluate(self, changed: Iterable[ChangeKey] = ()) -> None:
        """Judge every changed channel, every channel with a pending or open alert, and every device."""
        now = self._clock.now()
        channels = {key for key in changed if key[1] is not None}
        if not self._judged_all:
            # devices already in the store when we opened sent no change: judge them once anyway
            self._judged_all = True
            channels.update(
                (device.id, channel.index) for device in self._state.devices.values() for channel in device.channels
            )
        channels.update((key[1], key[2]) for key in self._trackers if key[2] is not None)
        for device_id, index in channels:
            if index is not None:
                for judgement in self._judge_channel(device_id, index):
                    self._apply(judgement, now)
        device_ids = set(self._state.devices)
        device_ids.update(device.device_id or device.url for device in self._devices.all())
        device_ids.update(key[1] for key in self._trackers if key[0] is AlertKind.DEVICE_OFFLINE)
        for device_id in device_ids:
            self._apply(self._judge_device(device_id), now)

    def _apply(self, judgement: _Judgement, now: float) -> None:
        key = judgement.key
        tracker = self._trackers.get(key)
        if tracker is None:
            if judgement.verdict is not Verdict.ACTIVE:
                return
            tracker = self._trackers[key] = _Tracker()
        is_open = key in self._open
        if judgement.verdict is Verdict.ACTIVE:
            tracker.ok_since = None
            if not is_open:
                if tracker.pending_since is None:
                    tracker.pending_since = now
                if now - tracker.pending_since >= judgement.raise_after:
                    self._raise(judgement, now)
                    tracker.pending_since = None
        elif judgement.verdict is Verdict.HOLD:
            tracker.ok_since = None
        else:
            tracker.pending_since = None
            if is_open:
                if tracker.ok_since is None:
                    tracker.ok_since = now
                if now - tracker.ok_since >= judgement.clear_after:
                    self._clear(key, now)
                    del self._trackers[key]
            else:
                del self._trackers[key]

    def _raise(self, judgement: _Judgement, now: float) -> None:
        kind, device_id, channel, detail = judgement.key
        self._last_id += 1
        alert = Alert(
            id=self._last_id,
            kind=kind,
            device_id=device_id,
            channel=channel,
            detail=detail,
            severity=judgement.severity,
            message=judgement.message,
            raised_at=now,
        )
        self._open[judgement.key] = alert
        self._db.submit(_INSERT, (alert.id, kind.value, device_id, channel, detail, alert.severity, alert.message, now))
        log.info("alert raised: %s", alert.message)
        self._emit("raised", alert)

    def _clear(self, key: AlertKey, now: float) -> None:
        alert = self._open.pop(key).model_copy(update={"cleared_at": now})
        self._db.submit("UPDATE alerts SET cleared_at = ? WHERE id = ?", (now, alert.id))
        log.info("alert cleared: %s", alert.message)
        self._emit("cleared", alert)

    def _emit(self, action: AlertAction, alert: Alert) -> None:
        event = AlertEvent(action, alert)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # one broken consumer (MQTT, board) must not stop the alerts
                log.exception("alert listener %r failed", listener)

    # the rules

    def _judge_device(self, device_id: str) -> _Judgement:
        s = self.settings
        key: AlertKey = (AlertKind.DEVICE_OFFLINE, device_id, None, "")
        device = self._state.get(device_id)
        known = self._devices.find(device_id)
        if device is not None and device.online:
            verdict = Verdict.CLEAR
        elif device is None and known is None:
            verdict = Verdict.CLEAR  # removed from the hub: nothing left to watch
        elif known is not None and known.device_id is not None and known.device_id != device_id:
            verdict = Verdict.CLEAR  # watched by URL until it identified itself; its id takes over
        else:
            verdict = Verdict.ACTIVE
        name = device.name if device is not None and device.name else device_id
        return _Judgement(key, verdict, s.offline_for_s, s.clear_after_s, "critical", f"{name}: device offline")

    def _judge_channel(self, device_id: str, index: int) -> list[_Judgement]:
        device = self._state.get(device_id)
        channel = device.channel(index) if device is not None else None
        assignment = self._performers.assignment_for(device_id, index)
        prefs = assignment.alert_prefs if assignment is not None else AlertPrefs()
        label = self._label(device_id, index, assignment.performer_id if assignment else None)
        judgements = [
            self._low_battery(device_id, index, channel, prefs, label),
            self._tx_off(device_id, index, channel, assignment is not None, label),
            self._rf_low(device_id, index, channel, label),
            self._audio_clip(device_id, index, channel, label),
            *self._warnings(device_id, index, channel, label),
        ]
        if device is None or channel is None or not device.online:
            # unknown is not fine: hold what is open until the device reports again, unless it was removed
            gone = device is None and not self._devices.has(device_id)
            hold = Verdict.CLEAR if gone else Verdict.HOLD
            judgements = [dataclasses.replace(judgement, verdict=hold) for judgement in judgements]
        disabled = set(prefs.disabled_kinds)
        return [
            dataclasses.replace(judgement, verdict=Verdict.CLEAR) if judgement.key[0].value in disabled else judgement
            for judgement in judgements
        ]

    def _low_battery(
        self, device_id: str, index: int, channel: Channel | None, prefs: AlertPrefs, label: str
    ) -> _Judgement:
        s = self.settings
        key: AlertKey = (AlertKind.LOW_BATTERY, device_id, index, "")
        bars_limit = s.battery_bars if prefs.battery_bars is None else prefs.battery_bars
        percent_limit = s.battery_percent if prefs.battery_percent is None else prefs.battery_percent
        runtime_limit = s.battery_runtime_min if prefs.battery_runtime_min is None else prefs.battery_runtime_min
        verdict = Verdict.CLEAR
        message = ""
        if channel is not None and channel.tx_present is not False:
            bars, percent, runtime = channel.battery_bars, channel.battery_percent, channel.battery_runtime_min
            if _below(bars, bars_limit) or _below(percent, percent_limit) or _below(runtime, runtime_limit):
                verdict = Verdict.ACTIVE
            elif not (
                _above_or_unknown(bars, bars_limit + 2)
                and _above_or_unknown(percent, percent_limit + s.battery_percent_margin)
                and _above_or_unknown(runtime, runtime_limit + s.battery_runtime_margin_min)
            ):
                verdict = Verdict.HOLD
            shown = [
                f"{bars} bars" if bars is not None else "",
                f"{percent}%" if percent is not None else "",
                f"{runtime} min left" if runtime is not None else "",
            ]
            message = f"{label}: battery low ({', '.join(part for part in shown if part)})"
        return _Judgement(key, verdict, s.battery_for_s, s.clear_after_s, "warning", message)

    def _tx_off(self, device_id: str, index: int, channel: Channel | None, assigned: bool, label: str) -> _Judgement:
        s = self.settings
        key: AlertKey = (AlertKind.TX_OFF, device_id, index, "")
        present = channel.tx_present if channel is not None else None
        if not assigned or present is True:
            verdict = Verdict.CLEAR
        elif present is False:
            verdict = Verdict.ACTIVE
        else:
            verdict = Verdict.HOLD
        return _Judgement(key, verdict, s.tx_off_for_s, s.clear_after_s, "critical", f"{label}: transmitter is off")

    def _rf_low(self, device_id: str, index: int, channel: Channel | None, label: str) -> _Judgement:
        s = self.settings
        key: AlertKey = (AlertKind.RF_LOW, device_id, index, "")
        verdict = Verdict.CLEAR
        message = ""
        if channel is not None and channel.tx_present is True:
            quality, dbm = channel.rf_quality_percent, channel.rf_dbm
            if _below(quality, s.rf_quality_percent) or _below(dbm, s.rf_dbm):
                verdict = Verdict.ACTIVE
            elif not (
                _above_or_unknown(quality, s.rf_quality_percent + s.rf_quality_margin)
                and _above_or_unknown(dbm, s.rf_dbm + s.rf_dbm_margin)
            ):
                verdict = Verdict.HOLD
            shown = [f"{quality}%" if quality is not None else "", f"{dbm:g} dBm" if dbm is not None else ""]
            message = f"{label}: RF signal low ({', '.join(part for part in shown if part)})"
        return _Judgement(key, verdict, s.rf_low_for_s, s.clear_after_s, "critical", message)

    def _audio_clip(self, device_id: str, index: int, channel: Channel | None, label: str) -> _Judgement:
        s = self.settings
        key: AlertKey = (AlertKind.AUDIO_CLIP, device_id, index, "")
        clipping = channel is not None and channel.audio_peak is True
        verdict = Verdict.ACTIVE if clipping else Verdict.CLEAR
        return _Judgement(key, verdict, 0.0, s.clip_clear_after_s, "warning", f"{label}: audio clipping")

    def _warnings(self, device_id: str, index: int, channel: Channel | None, label: str) -> list[_Judgement]:
        s = self.settings
        texts = [text.lower() for text in (channel.warnings if channel is not None else [])]
        return [
            _Judgement(
                (AlertKind.DEVICE_WARNING, device_id, index, detail),
                Verdict.ACTIVE if any(p in text for text in texts for p in patterns) else Verdict.CLEAR,
                s.warning_for_s,
                s.clear_after_s,
                "warning",
                f"{label}: {detail} warning",
            )
            for detail, patterns in s.warning_patterns.items()
        ]

    def _label(self, device_id: str, index: int, performer_id: int | None) -> str:
        where = f"{device_id} ch {index}"
        if performer_id is not None:
            try:
                return f"{self._performers.get(performer_id).name} ({where})"
            except NotFoundError:
                pass
        name = self._names.display_name(device_id, index)
        return f"{name} ({where})" if name else where


def _key_of(alert: Alert) -> AlertKey:
    return (alert.kind, alert.device_id, alert.channel, alert.detail)


def _alert_from_row(row: sqlite3.Row) -> Alert:
    return Alert.model_validate({name: row[name] for name in row.keys()})  # noqa: SIM118 (a Row is not a dict)
