"""Alerts: rules evaluated on state changes, with a raised -> acknowledged -> cleared lifecycle.

Every rule judges one channel (or device) as ACTIVE (the problem is there), CLEAR (clearly fine: past the
hysteresis margin) or HOLD (in between, or unknown). An alert is raised only after ACTIVE has held for the
rule's ``raise_after`` (debounce) and cleared only after CLEAR has held for ``clear_after`` without a single
ACTIVE in between; HOLD neither raises nor clears. A value flickering around a threshold therefore raises
one alert and keeps it until the value is clearly and steadily fine. While a device is offline or not yet
reconnected its channels are HOLD: no news is not good news, and a restart does not clear open alerts.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal

from hub.clock import Clock
from hub.model import LOW_BATTERY, BatteryLimits, Channel
from hub.persistence.audit import AuditLog
from hub.persistence.db import Database, Statement, upsert
from hub.persistence.known_devices import KnownDevices
from hub.persistence.performers import ChannelKey, ExtendedNames, Performers
from hub.persistence.service_base import Service
from hub.records import (
    Alert,
    AlertAction,
    AlertEvent,
    AlertKind,
    AlertPrefs,
    Assignment,
    ConflictError,
    KnownDevice,
    NotFoundError,
    Source,
)
from hub.redact import redact
from hub.state import ONLINE, ChangeKey, StateStore

log = logging.getLogger("hub.persistence.alerts")


# Kinds judged outside the engine's own rules (by hub.persistence.frequency): the engine only runs their lifecycle.
EXTERNAL_KINDS: Final = frozenset({AlertKind.FREQUENCY_CONFLICT})


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
    battery_bars: int = LOW_BATTERY.bars  # raise at this many bars or fewer; clear at two more
    battery_percent: int = LOW_BATTERY.percent
    battery_percent_margin: int = 5
    battery_runtime_min: int = LOW_BATTERY.runtime_min
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
    # a retune passes through other frequencies for a moment; a conflict must hold this long to raise
    frequency_for_s: float = 2.0
    # how often every device and every channel's assignment is looked at, changed or not: the safety net
    # for what reaches the alerts without a state change (a performer assigned to a silent channel)
    sweep_every_s: float = 5.0
    warning_patterns: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_WARNING_PATTERNS))


AlertListener = Callable[[AlertEvent], None]
AlertKey = tuple[AlertKind, str, int | None, str]


class Verdict(Enum):
    ACTIVE = "active"
    HOLD = "hold"
    CLEAR = "clear"


# Channel rules as bits of a mask, and which rules read which state field: a change re-judges only those.
_BATTERY, _TX_OFF, _RF, _CLIP, _WARNING = 1, 2, 4, 8, 16
_ALL_RULES: Final = _BATTERY | _TX_OFF | _RF | _CLIP | _WARNING
_RULE_OF_KIND: Final[Mapping[AlertKind, int]] = {
    AlertKind.LOW_BATTERY: _BATTERY,
    AlertKind.TX_OFF: _TX_OFF,
    AlertKind.RF_LOW: _RF,
    AlertKind.AUDIO_CLIP: _CLIP,
    AlertKind.DEVICE_WARNING: _WARNING,
}
# Fields not listed (the lifecycle pseudo-fields, anything new) re-judge every rule of the channel.
_RULES_OF_FIELD: Final[Mapping[str, int]] = {
    "tx_present": _BATTERY | _TX_OFF | _RF,
    "battery_bars": _BATTERY,
    "battery_percent": _BATTERY,
    "battery_runtime_min": _BATTERY,
    "rf_dbm": _RF,
    "rf_quality_percent": _RF,
    "audio_peak": _CLIP,
    "warnings": _WARNING,
    # only an alert's message shows it: a channel rule's is written when its alert is raised, a frequency
    # conflict's follows the plan's findings (set_external)
    "name": 0,
    "frequency_mhz": 0,  # the frequency plan's concern (hub.persistence.frequency), not a channel rule's
}
_SEVERITY: Final[Mapping[AlertKind, Literal["warning", "critical"]]] = {
    AlertKind.LOW_BATTERY: "warning",
    AlertKind.TX_OFF: "critical",
    AlertKind.RF_LOW: "critical",
    AlertKind.AUDIO_CLIP: "warning",
    AlertKind.DEVICE_OFFLINE: "critical",
    AlertKind.DEVICE_WARNING: "warning",
    AlertKind.SHOW_BATTERY: "warning",
    AlertKind.FREQUENCY_CONFLICT: "critical",
}
_NO_PREFS: Final = AlertPrefs()
_METER_FIELDS: Final = frozenset({"rf_dbm", "rf_quality_percent", "audio_peak"})


@dataclass
class _Tracker:
    # on the monotonic clock: a wall clock set back an hour (an NTP step) held every pending alert for it
    pending_since: float | None = None
    ok_since: float | None = None


def _below(value: float | None, threshold: float) -> bool:
    return value is not None and value <= threshold


def _above_or_unknown(value: float | None, level: float) -> bool:
    return value is None or value >= level


# an upsert, not an INSERT: a file replaced under the hub already holds the open alerts (Database.hold) when
# the raise still queued for one is written
_UPSERT_ALERT = upsert(
    "alerts",
    ("id",),
    (
        "kind",
        "device_id",
        "channel",
        "detail",
        "severity",
        "message",
        "raised_at",
        "acknowledged_at",
        "acknowledged_by",
        "cleared_at",
    ),
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
        s = settings
        self._timing: dict[AlertKind, tuple[float, float]] = {  # (raise after, clear after)
            AlertKind.LOW_BATTERY: (s.battery_for_s, s.clear_after_s),
            AlertKind.TX_OFF: (s.tx_off_for_s, s.clear_after_s),
            AlertKind.RF_LOW: (s.rf_low_for_s, s.clear_after_s),
            AlertKind.AUDIO_CLIP: (0.0, s.clip_clear_after_s),
            AlertKind.DEVICE_OFFLINE: (s.offline_for_s, s.clear_after_s),
            AlertKind.DEVICE_WARNING: (s.warning_for_s, s.clear_after_s),
            # judged from an estimate that already looks back over minutes: no debounce of its own
            AlertKind.SHOW_BATTERY: (0.0, s.clear_after_s),
            AlertKind.FREQUENCY_CONFLICT: (s.frequency_for_s, s.clear_after_s),
        }
        self._show_notes: dict[ChannelKey, str] = {}
        # conditions judged elsewhere: what is ACTIVE now (with its message) and what is held (unknown)
        self._external_active: dict[AlertKey, str] = {}
        self._external_held: set[AlertKey] = set()
        # keys whose text changed since the last tick: an open alert of theirs is told what it says now
        self._external_reworded: set[AlertKey] = set()
        self._next_sweep = clock.monotonic()
        self._swept = False
        self._assignments_seen: dict[ChannelKey, Assignment] = {}
        self._known: list[KnownDevice] = []
        self._judging = True  # until the hub's stop closes the devices (stop_judging)

    # the service

    def add_listener(self, listener: AlertListener) -> Callable[[], None]:
        """Call ``listener`` with every AlertEvent (raised, updated, acknowledged, cleared); returns the remover.
        Listeners run synchronously in the store's tick: hand slow work to a task or a queue."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def open_alerts(self) -> list[Alert]:
        """Raised and not yet cleared, oldest first (acknowledged ones included)."""
        return sorted(self._open.values(), key=lambda alert: alert.id)

    def held(self) -> Iterator[Statement]:
        """The open alerts (the cleared ones are only in the database: the table is not held whole)."""
        return map(_alert_row, self._open.values())

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

    def set_external(self, kind: AlertKind, active: Mapping[AlertKey, str], held: Set[AlertKey] = frozenset()) -> None:
        """Replace the conditions of an external ``kind``: the keys in ``active`` are ACTIVE (with the message
        an alert raised for them says), those in ``held`` HOLD, every other tracked key of the kind is CLEAR.
        The next tick runs the usual lifecycle on them: debounced raise, acknowledge, debounced clear; an open
        alert whose text is no longer the one given gets the new text (action ``updated``)."""
        if kind not in EXTERNAL_KINDS:
            raise ValueError(f"{kind.value} is judged by the alert engine itself")
        said = self._external_active
        # only a text that changed: the plan hands over every text at each check, most of them as they were
        self._external_reworded.update(key for key, text in active.items() if said.get(key) != text)
        self._external_active = {key: text for key, text in self._external_active.items() if key[0] is not kind}
        self._external_active.update(active)
        self._external_held = {key for key in self._external_held if key[0] is not kind} | set(held)

    def clear_removed(self, names: Set[str]) -> None:
        """Clear every alert of a device removed from the hub, and forget what was pending for it, at once: a
        removal is no flicker to wait out (``clear_after``), and nothing of the device is left to judge. It is
        named by its id and its URL as shown (redacted): an alert of a device that had not identified itself
        names the URL."""
        now = self._clock.now()
        for key in [key for key in self._trackers.keys() | self._open.keys() if redact(key[1]) in names]:
            if key in self._open:
                self._clear(key, now)
            self._trackers.pop(key, None)
            # until the frequency plan's next check, which no longer has its carriers
            self._external_active.pop(key, None)
            self._external_held.discard(key)

    def stop_judging(self) -> None:
        """The hub is stopping: its devices go offline because it closes them, which says nothing of the venue.
        From now on no alert is raised or cleared by a rule (a slow stop raised "device offline" for every
        receiver, stored and shown at the next start); open alerts stay open, to be judged by the next run."""
        self._judging = False

    # the engine

    def evaluate_slices(self, changed: Mapping[ChangeKey, Set[str]], due: Callable[[], bool]) -> Iterator[None]:
        """Judge what may have changed: per changed channel the rules that read a changed field, every rule
        with a pending or open alert (time moves those), changed devices, and every device on a sweep.

        Yields whenever ``due()`` says so; what runs in between may change the state store and the known
        devices, so each channel and device is looked up again when it is judged."""
        now = self._clock.now()
        state = self._state.devices
        tracked: dict[ChannelKey, int] = {}
        device_ids: set[str] = set()
        for kind, device_id, index, _ in self._trackers:
            if index is None:
                device_ids.add(device_id)
            elif kind in _RULE_OF_KIND:  # the show's check and the frequency plan judge their own alerts
                tracked[device_id, index] = tracked.get((device_id, index), 0) | _RULE_OF_KIND[kind]
        lifecycle: list[str] = []
        settings = self.settings
        for key, fields in changed.items():
            if due():
                yield
            device_id, index = key
            if index is None:
                device_ids.add(device_id)
                if ONLINE in fields:
                    lifecycle.append(device_id)  # its channels report no change of their own
                continue
            if fields <= _METER_FIELDS and (device_id, index) not in tracked:
                # The bulk of every tick: meters moved on a channel with nothing pending or open. Only a rule
                # turning ACTIVE would matter; if neither could, skip the channel.
                device = state.get(device_id)
                channel = device.channel(index) if device is not None else None
                if channel is None:
                    continue
                if not _rf_low(channel, settings) and channel.audio_peak is not True:
                    continue
            rules = 0
            for name in fields:
                rules |= _RULES_OF_FIELD.get(name, _ALL_RULES)
            pending = tracked.pop((device_id, index), 0) if tracked else 0
            if rules | pending:
                self._judge_channel(device_id, index, rules | pending, pending, now)
        for (device_id, index), pending in tracked.items():
            if due():
                yield
            self._judge_channel(device_id, index, pending, pending, now)
        for device_id in lifecycle:
            yield from self._judge_channels(device_id, due, now)

        sweep = self._clock.monotonic() >= self._next_sweep
        if sweep:
            # devices already in the store when we opened sent no change, and an assignment or its preferences
            # change without a state change: look at every channel whose assignment is not the one last seen
            self._next_sweep = self._clock.monotonic() + self.settings.sweep_every_s
            yield from self._sweep_channels(due, now)
        known = self._devices.all()
        if sweep or known != self._known:
            # KnownDevices changes (added, removed, bound to its id) never reach the state store
            self._known = known
            device_ids.update(state)
            device_ids.update(entry.device_id or entry.url for entry in known)
        self._judge_external(now)
        by_key = _index(known) if device_ids else {}
        for device_id in device_ids:
            if due():
                yield
                current = self._devices.all()
                if current != known:  # added, removed or bound meanwhile: judge by what is known now
                    known, by_key = current, _index(current)
            self._judge_device(device_id, by_key.get(device_id), now)

    def _judge_external(self, now: float) -> None:
        active, held = self._external_active, self._external_held
        for key in active:
            self._apply(key, Verdict.ACTIVE, now)
        reworded, self._external_reworded = self._external_reworded, set()
        for key in reworded:
            # one pending or held keeps nothing: a raise writes the text of its moment, and a held key's text
            # counts as new when its device is back
            if key in active and key in self._open:
                self._reword(key)
        for key in [key for key in self._trackers if key[0] in EXTERNAL_KINDS and key not in active]:
            self._apply(key, Verdict.HOLD if key in held else Verdict.CLEAR, now)

    def _judge_channels(self, device_id: str, due: Callable[[], bool], now: float) -> Iterator[None]:
        """Judge every rule of each channel of a device (the channels it has now, not after a slice)."""
        device = self._state.devices.get(device_id)
        for index in [channel.index for channel in device.channels] if device is not None else []:
            self._judge_channel(device_id, index, _ALL_RULES, _ALL_RULES, now)
            if due():
                yield

    def _sweep_channels(self, due: Callable[[], bool], now: float) -> Iterator[None]:
        """Judge every rule of each channel whose assignment changed since the last sweep (all of them on
        the first: the channels already in the store when the alerts opened sent no change)."""
        seen = self._assignments_seen
        assignment_for = self._performers.assignment_for
        for device_id in list(self._state.devices):
            device = self._state.devices.get(device_id)
            for index in [channel.index for channel in device.channels] if device is not None else []:
                key = (device_id, index)
                assignment = assignment_for(*key)
                if assignment is not seen.get(key) or not self._swept:
                    if assignment is None:
                        seen.pop(key, None)
                    else:
                        seen[key] = assignment
                    self._judge_channel(device_id, index, _ALL_RULES, _ALL_RULES, now)
                if due():
                    yield
        self._swept = True

    def _apply(self, key: AlertKey, verdict: Verdict, now: float) -> None:
        if not self._judging:
            return
        tracker = self._trackers.get(key)
        if tracker is None:
            if verdict is not Verdict.ACTIVE:
                return
            tracker = self._trackers[key] = _Tracker()
        is_open = key in self._open
        raise_after, clear_after = self._timing[key[0]]
        held_for = self._clock.monotonic()  # how long a verdict has held; ``now`` stamps the alert
        if verdict is Verdict.ACTIVE:
            tracker.ok_since = None
            if not is_open:
                if tracker.pending_since is None:
                    tracker.pending_since = held_for
                if held_for - tracker.pending_since >= raise_after:
                    self._raise(key, now)
                    tracker.pending_since = None
        elif verdict is Verdict.HOLD:
            tracker.ok_since = None
        else:
            tracker.pending_since = None
            if is_open:
                if tracker.ok_since is None:
                    tracker.ok_since = held_for
                if held_for - tracker.ok_since >= clear_after:
                    self._clear(key, now)
                    del self._trackers[key]
            else:
                del self._trackers[key]

    def _raise(self, key: AlertKey, now: float) -> None:
        kind, device_id, channel, detail = key
        self._last_id += 1
        alert = Alert(
            id=self._last_id,
            kind=kind,
            device_id=redact(device_id),
            channel=channel,
            detail=detail,
            severity=_SEVERITY[kind],
            message=redact(self._message(key)),
            raised_at=now,
        )
        self._open[key] = alert
        self._db.submit(*_alert_row(alert))
        log.info("alert raised: %s", alert.message)
        self._emit("raised", alert)

    def _reword(self, key: AlertKey) -> None:
        """Give an open alert the text its condition has now. It stays the alert it was (id, raise time,
        acknowledgement): the conflict it names stands, only what it involves changed."""
        alert = self._open[key]
        message = redact(self._message(key))
        if message == alert.message:
            return
        reworded = alert.model_copy(update={"message": message})
        self._open[key] = reworded
        self._db.submit("UPDATE alerts SET message = ? WHERE id = ?", (message, alert.id))
        log.info("alert %d now says: %s", alert.id, message)
        self._emit("updated", reworded)

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

    def judge_show_runtime(
        self, verdicts: Mapping[ChannelKey, tuple[Verdict, str]], now: float, *, show_on: bool
    ) -> None:
        """Apply the show check's verdicts (with the text each alert would say). A pack the check did not
        judge (transmitter off for the swap, receiver offline) holds; with no show on, or its receiver
        removed from the hub, it clears."""
        for (device_id, index), (verdict, note) in verdicts.items():
            self._show_notes[device_id, index] = note
            self._apply((AlertKind.SHOW_BATTERY, device_id, index, ""), verdict, now)
        for key in [key for key in self._trackers if key[0] is AlertKind.SHOW_BATTERY]:
            _, held_device, held_index, _ = key
            if held_index is None or (held_device, held_index) in verdicts:
                continue
            gone = not show_on or held_device not in self._state.devices
            self._apply(key, Verdict.CLEAR if gone else Verdict.HOLD, now)
        self._show_notes = {key: note for key, note in self._show_notes.items() if key in verdicts}

    # the rules: verdicts are cheap and built for every change; the message only when an alert is raised

    def _judge_device(self, device_id: str, known: KnownDevice | None, now: float) -> None:
        device = self._state.devices.get(device_id)
        if device is not None and device.online:
            verdict = Verdict.CLEAR
        elif device is None and known is None:
            verdict = Verdict.CLEAR  # removed from the hub: nothing left to watch
        elif known is not None and known.device_id is not None and known.device_id != device_id:
            verdict = Verdict.CLEAR  # watched by URL until it identified itself; its id takes over
        else:
            verdict = Verdict.ACTIVE
        self._apply((AlertKind.DEVICE_OFFLINE, device_id, None, ""), verdict, now)

    def _judge_channel(self, device_id: str, index: int, rules: int, tracked: int, now: float) -> None:
        """Apply the verdicts of ``rules`` (a mask of rule bits) to one channel. A verdict other than ACTIVE
        changes nothing for a rule without a pending or open alert (``tracked``, a mask too, may have one),
        so the common case, a meter moving within its limits, builds no key and looks nothing up."""
        device = self._state.devices.get(device_id)
        channel = device.channel(index) if device is not None else None
        verdicts: list[tuple[AlertKey, Verdict]]
        if device is None or channel is None or not device.online:
            if not rules & tracked:
                return
            # unknown is not fine: hold what is open until the device reports again, unless it was removed
            # (or the device has fewer channels now)
            gone = channel is None and (device is not None or not self._devices.has(device_id))
            held = Verdict.CLEAR if gone else Verdict.HOLD
            verdicts = [(key, held) for key in self._keys(device_id, index, rules & tracked)]
        else:
            verdicts = []
            s = self.settings
            if rules & _RF:
                verdict = _rf_verdict(channel, s)
                if verdict is Verdict.ACTIVE or tracked & _RF:
                    verdicts.append(((AlertKind.RF_LOW, device_id, index, ""), verdict))
            if rules & _CLIP:
                verdict = Verdict.ACTIVE if channel.audio_peak is True else Verdict.CLEAR
                if verdict is Verdict.ACTIVE or tracked & _CLIP:
                    verdicts.append(((AlertKind.AUDIO_CLIP, device_id, index, ""), verdict))
            if rules & _WARNING:
                texts = [text.lower() for text in channel.warnings]
                for detail, patterns in s.warning_patterns.items():
                    key: AlertKey = (AlertKind.DEVICE_WARNING, device_id, index, detail)
                    if any(pattern in text for text in texts for pattern in patterns):
                        verdicts.append((key, Verdict.ACTIVE))
                    elif tracked & _WARNING:
                        verdicts.append((key, Verdict.CLEAR))
            if rules & (_BATTERY | _TX_OFF):
                assignment = self._performers.assignment_for(device_id, index)
                if rules & _BATTERY:
                    prefs = assignment.alert_prefs if assignment is not None else _NO_PREFS
                    verdict = _battery_verdict(channel, prefs, s)
                    if verdict is Verdict.ACTIVE or tracked & _BATTERY:
                        verdicts.append(((AlertKind.LOW_BATTERY, device_id, index, ""), verdict))
                if rules & _TX_OFF:
                    present = channel.tx_present
                    if assignment is None or present is True:
                        verdict = Verdict.CLEAR
                    else:
                        verdict = Verdict.ACTIVE if present is False else Verdict.HOLD
                    if verdict is Verdict.ACTIVE or tracked & _TX_OFF:
                        verdicts.append(((AlertKind.TX_OFF, device_id, index, ""), verdict))
        if not verdicts:
            return
        assignment = self._performers.assignment_for(device_id, index)
        disabled = assignment.alert_prefs.disabled_kinds if assignment is not None else ()
        for key, verdict in verdicts:
            self._apply(key, Verdict.CLEAR if disabled and key[0].value in disabled else verdict, now)

    def _keys(self, device_id: str, index: int, rules: int) -> list[AlertKey]:
        keys: list[AlertKey] = [
            (kind, device_id, index, "") for kind, rule in _RULE_OF_KIND.items() if rules & rule and rule != _WARNING
        ]
        if rules & _WARNING:
            keys += [(AlertKind.DEVICE_WARNING, device_id, index, detail) for detail in self.settings.warning_patterns]
        return keys

    def _message(self, key: AlertKey) -> str:
        """What an alert says, from the values at the moment it is raised (an external kind's: now)."""
        kind, device_id, index, detail = key
        if kind in EXTERNAL_KINDS:
            return self._external_active.get(key, f"{device_id} ch {index}: {detail}")
        device = self._state.devices.get(device_id)
        if index is None:
            return f"{device.name if device is not None and device.name else device_id}: device offline"
        channel = device.channel(index) if device is not None else None
        label = self.channel_label(device_id, index)
        if kind is AlertKind.LOW_BATTERY and channel is not None:
            bars, percent, runtime = channel.battery_bars, channel.battery_percent, channel.battery_runtime_min
            shown = [
                f"{bars} bars" if bars is not None else "",
                f"{percent}%" if percent is not None else "",
                f"{runtime} min left" if runtime is not None else "",
            ]
            return f"{label}: battery low ({', '.join(part for part in shown if part)})"
        if kind is AlertKind.RF_LOW and channel is not None:
            quality, dbm = channel.rf_quality_percent, channel.rf_dbm
            shown = [f"{quality}%" if quality is not None else "", f"{dbm:g} dBm" if dbm is not None else ""]
            return f"{label}: RF signal low ({', '.join(part for part in shown if part)})"
        if kind is AlertKind.TX_OFF:
            return f"{label}: transmitter is off"
        if kind is AlertKind.AUDIO_CLIP:
            return f"{label}: audio clipping"
        if kind is AlertKind.SHOW_BATTERY:
            return f"{label}: {self._show_notes.get((device_id, index), 'will not last until the end of the show')}"
        return f"{label}: {detail} warning"

    def channel_label(self, device_id: str, index: int) -> str:
        where = f"{device_id} ch {index}"
        assignment = self._performers.assignment_for(device_id, index)
        if assignment is not None:
            try:
                return f"{self._performers.get(assignment.performer_id).name} ({where})"
            except NotFoundError:
                pass
        name = self._names.display_name(device_id, index)
        return f"{name} ({where})" if name else where


def _rf_low(channel: Channel, s: AlertSettings) -> bool:
    """The RF rule's ACTIVE condition: a transmitter is on and its quality or level is at or under the limit."""
    return channel.tx_present is True and (
        _below(channel.rf_quality_percent, s.rf_quality_percent) or _below(channel.rf_dbm, s.rf_dbm)
    )


def _rf_verdict(channel: Channel, s: AlertSettings) -> Verdict:
    if channel.tx_present is not True:
        return Verdict.CLEAR
    if _rf_low(channel, s):
        return Verdict.ACTIVE
    quality, dbm = channel.rf_quality_percent, channel.rf_dbm
    if _above_or_unknown(quality, s.rf_quality_percent + s.rf_quality_margin) and _above_or_unknown(
        dbm, s.rf_dbm + s.rf_dbm_margin
    ):
        return Verdict.CLEAR
    return Verdict.HOLD


def _battery_verdict(channel: Channel, prefs: AlertPrefs, s: AlertSettings) -> Verdict:
    if channel.tx_present is False:
        return Verdict.CLEAR
    low = BatteryLimits(
        bars=s.battery_bars if prefs.battery_bars is None else prefs.battery_bars,
        percent=s.battery_percent if prefs.battery_percent is None else prefs.battery_percent,
        runtime_min=s.battery_runtime_min if prefs.battery_runtime_min is None else prefs.battery_runtime_min,
    )
    if low.is_low(channel):
        return Verdict.ACTIVE
    bars, percent, runtime = channel.battery_bars, channel.battery_percent, channel.battery_runtime_min
    if (
        _above_or_unknown(bars, low.bars + 2)
        and _above_or_unknown(percent, low.percent + s.battery_percent_margin)
        and _above_or_unknown(runtime, low.runtime_min + s.battery_runtime_margin_min)
    ):
        return Verdict.CLEAR
    return Verdict.HOLD


def _index(known: Iterable[KnownDevice]) -> dict[str, KnownDevice]:
    """Known devices by URL and by device id: KnownDevices.find, without a scan of them all per device."""
    by_key: dict[str, KnownDevice] = {}
    for entry in known:
        by_key.setdefault(entry.url, entry)
    for entry in known:
        if entry.device_id is not None:
            by_key.setdefault(entry.device_id, entry)
    return by_key


def _key_of(alert: Alert) -> AlertKey:
    return (alert.kind, alert.device_id, alert.channel, alert.detail)


def _alert_from_row(row: sqlite3.Row) -> Alert:
    return Alert.model_validate({name: row[name] for name in row.keys()})  # noqa: SIM118 (a Row is not a dict)


def _alert_row(alert: Alert) -> Statement:
    return _UPSERT_ALERT, (
        alert.id,
        alert.kind.value,
        alert.device_id,
        alert.channel,
        alert.detail,
        alert.severity,
        alert.message,
        alert.raised_at,
        alert.acknowledged_at,
        alert.acknowledged_by,
        alert.cleared_at,
    )
