"""The live frequency plan: a consumer of state that re-checks the plan when a frequency or a transmitter
changes, turns findings into alerts, and keeps the carriers and exclusions the user declares.

Carriers come from every channel's ``frequency_mhz`` (and ``frequency2_mhz`` where a model has it), plus
the declared carriers. A carrier is active while its transmitter is present, planned otherwise. Findings
among active carriers only become FREQUENCY_CONFLICT alerts on their victim channels, through the alert
engine's lifecycle (debounced raise, acknowledge, debounced clear); the rest are warnings on the plan.
A victim whose receiver is offline holds its alert: no news is not good news.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from hub.clock import Clock
from hub.frequency import (
    Band,
    Candidate,
    Carrier,
    CarrierState,
    CheckCancelled,
    Coordination,
    Exclusion,
    Finding,
    PlanChecker,
    PlanSettings,
    SearchError,
    Slot,
    TvGrid,
    coordinate,
    finding_view,
    for_family,
    merge_identical,
    narrowed,
    search_step_khz,
    suggest,
)
from hub.model import Channel, CommandKind, Device
from hub.persistence.alerts import AlertKey, Alerts
from hub.persistence.audit import AuditLog
from hub.persistence.db import Database, Statement, upsert
from hub.persistence.service_base import Service, clean_text
from hub.records import (
    AlertKind,
    ConflictError,
    DeclaredCarrier,
    FrequencyExclusion,
    InvalidInputError,
    NotFoundError,
    Source,
    StorageUnavailableError,
)
from hub.state import ADDED, ONLINE, REMOVED, ChangeKey, StateStore

log = logging.getLogger("hub.persistence.frequency")

# the state fields a check depends on (ADDED, REMOVED and ONLINE reach every subscription anyway); an in-ear
# transmitter's RF mute is "muted" or "tx_muted" (Capabilities.rf_mute_field)
FREQUENCY_FIELDS: Final = frozenset(
    {"frequency_mhz", "frequency2_mhz", "rf_bandwidth_khz", "tx_present", "muted", "tx_muted"}
)
# a device's band and carrier width (rf_capabilities)
BAND_FIELDS: Final = frozenset({"family", "rf_band", "capabilities"})
# what a carrier's label is made of: a change rebuilds that device's carriers and rewrites what the findings
# say (the plan's labels, the conflict alerts' texts) without checking the plan again
LABEL_FIELDS: Final = frozenset({"name", "extended_name"})
PLAN_FIELDS: Final = FREQUENCY_FIELDS | BAND_FIELDS | LABEL_FIELDS
_REPLAN: Final = FREQUENCY_FIELDS | BAND_FIELDS | {ADDED, REMOVED, ONLINE}
_REBUILD: Final = _REPLAN | LABEL_FIELDS
FINDING_KINDS: Final = ("intermod", "spacing", "exclusion", "out_of_band")
LOWEST_MHZ, HIGHEST_MHZ = 1.0, 10_000.0
# The most of the hub's time the live check may take: after a check that ran for t seconds the next waits
# until t * (1 / share - 1) has passed. A plan of a thousand carriers crowded into a few megahertz costs
# seconds per check, and it is re-checked whenever a transmitter comes or goes.
CHECK_SHARE: Final = 0.1
SLOW_CHECK_S: Final = 0.05  # checks quicker than this (every real plan measured) are never held back
# Under load a crowded plan's check is slow every few seconds: its info line comes at most this often, with
# the count of slow checks since the last one (it came dozens of times each half hour)
SLOW_CHECK_LOG_EVERY_S: Final = 300.0
# Plans of fewer carriers are checked inline, on the event loop; larger ones in a worker thread
# (docs/adr/0014-frequency-check-thread.md). Measured on the 2-core test machine under load, carriers crowded
# onto four frequencies (the engine's worst case: every carrier in every product) take 80 ms at 63, 0.3 s at
# 80, 1.7 s at 160 and 3.4 s at 200; coordinated plans of hundreds take milliseconds. Below 64 no plan holds
# the loop for 0.1 s, and small plans stay synchronous: their check is done when the tick or the request
# that asked for it ends.
INLINE_CHECK_CARRIERS: Final = 64
SHOWN_FINDINGS: Final = 200  # findings in the MQTT summary, worst first; the REST plan has them all
# How long the first check of a run waits for the run's devices to be read (FrequencyPlan.devices_read): a plan
# checked before their carriers are in reads as an all-clear. A device still down by then is not waited for.
FIRST_CHECK_WAIT_S: Final = 15.0
DEFAULT_MAX_LIVE_CARRIERS: Final = 1000


@dataclass(frozen=True)
class FrequencySettings:
    plan: PlanSettings = field(default_factory=PlanSettings)
    # where a family tunes, when the device model does not say (see rf_capabilities)
    bands: Mapping[str, Band] = field(default_factory=dict)
    # families whose channels share wideband carriers of this width (kHz): Spectera's WMAS carriers fill a
    # TV channel (6 or 8 MHz); 8 MHz is the conservative choice
    wideband_khz: Mapping[str, float] = field(default_factory=lambda: {"spectera": 8000.0})
    # beyond this the live check is not run, and a search is refused: both grow with the count squared (a search
    # among 2,000 carriers took 16 s and 1.2 GB)
    max_live_carriers: int = DEFAULT_MAX_LIVE_CARRIERS

    @property
    def max_search_carriers(self) -> int:
        """The most carriers a search takes on: the live check's bound, or its default when the check is off."""
        return self.max_live_carriers or DEFAULT_MAX_LIVE_CARRIERS


@dataclass(frozen=True)
class RfCapabilities:
    band: Band | None
    bandwidth_khz: float = 0.0


def rf_capabilities(device: Device, settings: FrequencySettings) -> RfCapabilities:
    """Where a device's channels tune and how wide their carriers are: the one place this is read.

    The band: the configuration's band (``[frequency.bands]``: the user knows which band variant the
    receivers are) for the device's band variant, else for its family; else the frequency command's limits
    the plugin declares in the device's capabilities (often the protocol's whole range rather than the
    hardware's band). The width: the settings' wideband families (Spectera's WMAS carriers)."""
    family = device.family
    band = _configured_band(settings.bands, device) or _declared_band(device)
    return RfCapabilities(band, for_family(settings.wideband_khz, family) or 0.0)


def _configured_band(bands: Mapping[str, Band], device: Device) -> Band | None:
    # a key of family and band code (`slxd-g58`) tells apart receivers of one family in different band
    # variants; the code itself is not read as a range (no verified table of the vendors' codes is at hand)
    variant = for_family(bands, f"{device.family} {device.rf_band}") if device.family and device.rf_band else None
    return variant or for_family(bands, device.family)


def _declared_band(device: Device) -> Band | None:
    limits = device.capabilities.commands.get(CommandKind.FREQUENCY) if device.capabilities is not None else None
    number = limits.number if limits is not None else None
    if number is None or number.unit.casefold() != "mhz":
        return None
    return Band(number.min, number.max, number.step * 1000, whole_range=True)


def device_carriers(device: Device, settings: FrequencySettings) -> list[Carrier]:
    """One carrier per frequency per channel (two with frequency diversity), channels of the device on one
    frequency merged into one carrier."""
    rf = rf_capabilities(device, settings)
    return merge_identical(carrier for channel in device.channels for carrier in _channel_carriers(device, channel, rf))


def declared_carriers(declared: Iterable[DeclaredCarrier]) -> list[Carrier]:
    return [
        Carrier(
            id=f"declared:{entry.id}",
            frequency_mhz=entry.frequency_mhz,
            state=CarrierState.ACTIVE if entry.active else CarrierState.PLANNED,
            bandwidth_khz=entry.bandwidth_khz,
            family=entry.family,
            label=entry.label,
            declared_id=entry.id,
        )
        for entry in declared
    ]


def on_air(device: Device, channel: Channel) -> bool:
    """Whether the channel's carrier is on air: its receiver sees the transmitter, or the device is itself an
    in-ear transmitter that is online and not RF-muted (an unknown mute counts as on air: a conflict among
    transmitters on air must not wait for a reading that may never come)."""
    if channel.tx_present is True:
        return True
    capabilities = device.capabilities
    if capabilities is None or not capabilities.transmitter or not device.online:
        return False
    return capabilities.rf_mute_field is None or getattr(channel, capabilities.rf_mute_field) is not True


def _channel_carriers(device: Device, channel: Channel, rf: RfCapabilities) -> list[Carrier]:
    state = CarrierState.ACTIVE if on_air(device, channel) else CarrierState.PLANNED
    name = channel.extended_name or channel.name
    where = f"{device.id} ch {channel.index}"
    label = f"{name} ({where})" if name else where
    # frequency diversity (Axient FREQUENCY2): a model that reports it has frequency2_mhz
    second = getattr(channel, "frequency2_mhz", None)
    # the width the device reports for this channel's carrier, else its family's (RfCapabilities)
    width = channel.rf_bandwidth_khz if channel.rf_bandwidth_khz is not None else rf.bandwidth_khz
    found = []
    for suffix, mhz in (("", channel.frequency_mhz), ("/2", second)):
        if isinstance(mhz, int | float) and LOWEST_MHZ <= mhz <= HIGHEST_MHZ:
            found.append(
                Carrier(
                    id=f"{device.id}:{channel.index}{suffix}",
                    frequency_mhz=float(mhz),
                    state=state,
                    bandwidth_khz=width,
                    family=device.family,
                    label=label + (" f2" if suffix else ""),
                    device_id=device.id,
                    channels=(channel.index,),
                    band=rf.band,
                )
            )
    return found


def exclusion_of(record: FrequencyExclusion) -> Exclusion:
    grid = TvGrid(record.tv_grid) if record.tv_grid else None
    return Exclusion(record.low_mhz, record.high_mhz, record.label, record.id, grid, record.tv_channel)


def _worst_first(finding: Finding) -> tuple[int, float]:
    return (0 if finding.severity == "alert" else 1, abs(finding.offset_khz))


PlanListener = Callable[[dict[str, Any]], None]
Found = TypeVar("Found")


class FrequencyPlan(Service):
    """Declared carriers and exclusions (stored, audited) and the live check of the whole plan."""

    held_tables = ("declared_carriers", "frequency_exclusions")

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditLog,
        state: StateStore,
        alerts: Alerts,
        settings: FrequencySettings,
        declared: Iterable[DeclaredCarrier],
        exclusions: Iterable[FrequencyExclusion],
    ) -> None:
        super().__init__(db, clock, audit)
        self._state = state
        self._alerts = alerts
        self.settings = settings
        self._declared = {entry.id: entry for entry in declared}
        self._exclusions = {entry.id: entry for entry in exclusions}
        # set when the hub stops: a check running in its thread stops within a step of the engine
        self._stopping = threading.Event()
        # touched only by the one check running (inline, or in its thread while ``_checking`` is set)
        self._checker = PlanChecker(settings.plan, self._stopping.is_set)
        self._checking: asyncio.Task[None] | None = None  # a check running in a worker thread
        self._search_turn = asyncio.Lock()  # searches run in a worker thread one at a time
        self._carriers: list[Carrier] = []
        # Each device's carriers, kept between checks: a transmitter switched on rebuilds its own device's
        # carriers, not those of every channel in the venue (at 2,000 channels that was 5% of the hub's CPU).
        self._device_carriers: dict[str, list[Carrier]] = {}
        self._stale_devices: set[str] = set()
        self._findings: list[Finding] = []
        self._dirty = True
        self._relabel = False  # a name changed: the findings stand, what they say does not
        self._full_check_due = True
        self._listeners: list[PlanListener] = []
        self._summary: dict[str, Any] = {}
        self.checked_at: float | None = None
        self._next_check_at = 0.0  # on the clock's monotonic time: when a slow check lets the next one run
        self._slow_checks = 0  # slow checks not yet told in the log (their line is rate-limited)
        self._slow_check_logged_at: float | None = None
        self.too_many = False  # more carriers than the live check takes on: no findings, and the summary says so
        # whether every device of this run has identified itself and reported its channels (the hub says)
        self.devices_read: Callable[[], bool] = _always
        self._first_check_by = clock.monotonic() + FIRST_CHECK_WAIT_S

    # what the plan is

    @property
    def carriers(self) -> list[Carrier]:
        return list(self._carriers)

    @property
    def findings(self) -> list[Finding]:
        return sorted(self._findings, key=_worst_first)

    def exclusions(self) -> list[FrequencyExclusion]:
        return sorted(self._exclusions.values(), key=lambda entry: entry.id)

    def declared(self) -> list[DeclaredCarrier]:
        return sorted(self._declared.values(), key=lambda entry: entry.id)

    def labels(self) -> dict[str, str]:
        return {carrier.id: carrier.label or carrier.id for carrier in self._carriers}

    @property
    def checking(self) -> bool:
        """Whether a check runs in its worker thread: the carriers and findings are the last check's until it ends."""
        return self._checking is not None

    @property
    def checked(self) -> bool:
        """Whether the findings are a check's: not before this run's first, nor while there are too many carriers."""
        return self.checked_at is not None and not self.too_many

    def summary(self) -> dict[str, Any]:
        """What MQTT publishes retained: counts, and the worst findings."""
        findings = self.findings
        alerts = [f for f in findings if f.severity == "alert"]
        labels = self.labels()
        return {
            "carriers": len(self._carriers),
            "active": sum(1 for c in self._carriers if c.state is CarrierState.ACTIVE),
            "planned": sum(1 for c in self._carriers if c.state is CarrierState.PLANNED),
            "declared": len(self._declared),
            "exclusions": len(self._exclusions),
            "alerts": len(alerts),
            "warnings": len(findings) - len(alerts),
            "conflict": bool(alerts) if self.checked else None,  # unchecked is not conflict-free
            "checked": self.checked,
            "profile": self.settings.plan.profile.value,
            "checked_at": self.checked_at,
            "findings": [finding_view(f, labels) for f in findings[:SHOWN_FINDINGS]],
        }

    def add_listener(self, listener: PlanListener) -> Callable[[], None]:
        """Call ``listener`` with the summary each time it changes; returns the remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # the live check

    def observe(self, changes: Mapping[ChangeKey, Set[str]]) -> None:
        """Note the state changes of one tick: the plan is re-checked only when a frequency, a transmitter
        or a device's presence changed; a device whose channels changed name gets new labels (and its
        conflict alerts new texts) at the next refresh, checked or not."""
        for (device_id, _), fields in changes.items():
            if not fields.isdisjoint(_REBUILD):
                self._stale_devices.add(device_id)
                if not fields.isdisjoint(_REPLAN):
                    self._dirty = True
                else:
                    self._relabel = True

    def refresh(self) -> bool:
        """Re-check the plan if anything it depends on changed and no slow check holds it back; True when it
        did, or started a check in a worker thread (a held-back change is checked at a later tick, a change
        during a running check after it). A rename alone is no check: the plan takes the new labels at once
        (unless a check is waiting anyway), and its alerts say them."""
        if self._checking is not None or self._stopping.is_set():
            return False
        if not self._dirty:
            if self._relabel and self.checked_at is not None:
                self._relabel = False
                devices = list(self._state.devices.values())
                self._carriers = self._current_carriers(devices)
                self._judge_alerts(devices)
                self._tell_listeners()
            return False
        if self._clock.monotonic() < self._next_check_at:
            return False
        if self.checked_at is None and not self.devices_read() and self._clock.monotonic() < self._first_check_by:
            return False
        started = time.perf_counter()
        devices = list(self._state.devices.values())
        carriers = self._current_carriers(devices)
        exclusions = [exclusion_of(entry) for entry in self.exclusions()]
        # what changes from here on is checked by the next check
        self._dirty = self._relabel = False
        full, self._full_check_due = self._full_check_due, False
        if len(carriers) > self.settings.max_live_carriers:
            if not self.too_many:
                log.warning(
                    "the live frequency check is off: %d carriers, more than frequency.max_live_carriers (%d)",
                    len(carriers),
                    self.settings.max_live_carriers,
                )
            self._full_check_due = True  # the checker saw none of this: the next check starts over
            self._checked(devices, carriers, [], started, too_many=True)
            return True
        if len(carriers) >= INLINE_CHECK_CARRIERS:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # stepped without an event loop (a script, a test): inline
                pass
            else:
                work = self._check_in_thread(devices, carriers, exclusions, full, started)
                self._checking = loop.create_task(work, name="frequency check")
                return True
        try:
            findings = self._run_check(carriers, exclusions, full)
        except Exception:
            self._check_failed(len(carriers))
            return False
        self._checked(devices, carriers, findings, started)
        return True

    def _run_check(self, carriers: Sequence[Carrier], exclusions: Sequence[Exclusion], full: bool) -> list[Finding]:
        """The check itself: the one place the checker is used (inline, or in the worker thread)."""
        if full:
            return self._checker.check(carriers, exclusions)
        return self._checker.update(carriers)

    async def _check_in_thread(
        self,
        devices: Sequence[Device],
        carriers: list[Carrier],
        exclusions: Sequence[Exclusion],
        full: bool,
        started: float,
    ) -> None:
        """Run the check in a worker thread (numpy releases the GIL in its kernels, and the interpreter's
        switch interval lets the loop turn between them), then take its result on the loop."""
        try:
            findings = await asyncio.to_thread(self._run_check, carriers, exclusions, full)
        except CheckCancelled:
            return
        except asyncio.CancelledError:
            self._stopping.set()  # the thread runs on regardless: stop it within a step, and start no other
            raise
        except Exception:
            self._check_failed(len(carriers))
            return
        finally:
            self._checking = None
        if not self._stopping.is_set():  # a stopping hub takes no more alerts
            self._checked(devices, carriers, findings, started)

    def _check_failed(self, carriers: int) -> None:
        """A check that raised leaves the checker's state undefined: the plan keeps its last result, and the
        next change checks it in full."""
        log.exception("the frequency check of %d carriers failed: the next change checks the plan in full", carriers)
        self._full_check_due = True

    def _checked(
        self,
        devices: Sequence[Device],
        carriers: list[Carrier],
        findings: list[Finding],
        started: float,
        *,
        too_many: bool = False,
    ) -> None:
        """Take a check's result: carriers, findings, when, and the alerts and listeners, all at once."""
        self._carriers, self._findings, self.too_many = carriers, findings, too_many
        self.checked_at = self._clock.now()
        took = time.perf_counter() - started
        if took >= SLOW_CHECK_S:
            self._held_back_after(took)
        self._judge_alerts(devices)
        self._tell_listeners()

    async def close(self) -> None:
        """Stop a running check within a step of the engine (the hub stops; its result would be dropped)."""
        self._stopping.set()
        if self._checking is not None:
            await asyncio.gather(self._checking, return_exceptions=True)

    def _tell_listeners(self) -> None:
        """Hand the summary to the listeners if it changed (a check that found the same is no news)."""
        summary = self.summary()
        if {k: v for k, v in summary.items() if k != "checked_at"} == {
            k: v for k, v in self._summary.items() if k != "checked_at"
        }:
            return
        self._summary = summary
        for listener in list(self._listeners):
            try:
                listener(summary)
            except Exception:  # one broken consumer must not stop the plan
                log.exception("frequency plan listener %r failed", listener)

    def _held_back_after(self, took: float) -> None:
        """Hold the next check back after one that took ``took`` seconds, and say so at most every
        SLOW_CHECK_LOG_EVERY_S."""
        wait_s = took * (1 / CHECK_SHARE - 1)
        now = self._clock.monotonic()
        self._next_check_at = now + wait_s
        self._slow_checks += 1
        if self._slow_check_logged_at is not None and now - self._slow_check_logged_at < SLOW_CHECK_LOG_EVERY_S:
            return
        log.info(
            "the frequency check took %.2f s for %d carriers: the next waits %.1f s (%d slow check(s) since the "
            "last such line; at most one every %.0f min)",
            took,
            len(self._carriers),
            wait_s,
            self._slow_checks,
            SLOW_CHECK_LOG_EVERY_S / 60,
        )
        self._slow_check_logged_at = now
        self._slow_checks = 0

    def _current_carriers(self, devices: Sequence[Device]) -> list[Carrier]:
        known, stale = self._device_carriers, self._stale_devices
        self._device_carriers = {
            device.id: known[device.id]
            if device.id in known and device.id not in stale
            else device_carriers(device, self.settings)
            for device in devices
        }
        stale.clear()
        carriers = [carrier for found in self._device_carriers.values() for carrier in found]
        return carriers + declared_carriers(self._declared.values())

    def _judge_alerts(self, devices: Sequence[Device]) -> None:
        by_id = {carrier.id: carrier for carrier in self._carriers}
        labels = self.labels()
        active: dict[AlertKey, str] = {}
        for finding in self.findings:  # worst first: the first message per key is the closest product
            victim = by_id.get(finding.victim)
            if finding.severity != "alert" or victim is None or victim.device_id is None:
                continue
            for index in victim.channels:
                key: AlertKey = (AlertKind.FREQUENCY_CONFLICT, victim.device_id, index, finding.kind)
                if key not in active:
                    active[key] = self._message(finding, victim.device_id, index, labels)
        # a device that is offline says nothing of its conflicts, and neither does a plan too large to check:
        # what was open stays open ("no news is not good news")
        held = {
            (AlertKind.FREQUENCY_CONFLICT, device.id, channel.index, kind)
            for device in devices
            if self.too_many or not device.online
            for channel in device.channels
            for kind in FINDING_KINDS
        }
        self._alerts.set_external(AlertKind.FREQUENCY_CONFLICT, active, held)

    def _message(self, finding: Finding, device_id: str, index: int, labels: Mapping[str, str]) -> str:
        who = self._alerts.channel_label(device_id, index)
        sources = ", ".join(labels.get(source, source) for source in finding.sources)
        if finding.kind == "intermod":
            more = f" and {finding.count - 1} more" if finding.count > 1 else ""
            return (
                f"{who}: {finding.product.value} intermodulation of {sources} at {finding.product_mhz:.3f} MHz "
                f"({finding.offset_khz:+g} kHz, guard {finding.guard_khz:g} kHz){more}"
            )
        if finding.kind == "spacing":
            return f"{who}: {abs(finding.offset_khz):g} kHz from {sources} (needs {finding.guard_khz:g} kHz)"
        if finding.kind == "exclusion":
            return f"{who}: inside the excluded range {sources}"
        return f"{who}: outside the tunable band {sources}"

    # clean frequencies

    def carriers_now(self) -> list[Carrier]:
        """Every carrier as it is at this moment, for a search on demand: the live check's list may lag (a
        slow check holds the next one back, the first waits for the devices to report), and a search run on
        it proposed frequencies on top of carriers declared or tuned since. Built afresh, without the live
        check's per-device cache (a change reaches that only at the next tick)."""
        devices = list(self._state.devices.values())
        found = [carrier for device in devices for carrier in device_carriers(device, self.settings)]
        return found + declared_carriers(self._declared.values())

    def carrier_of_channel(self, device_id: str, index: int, carriers: Sequence[Carrier] | None = None) -> Carrier:
        """The channel's (first) carrier among ``carriers``, by default those of this moment."""
        for carrier in self.carriers_now() if carriers is None else carriers:
            if carrier.device_id == device_id and index in carrier.channels and not carrier.id.endswith("/2"):
                return carrier
        raise NotFoundError(f"{device_id} channel {index} has no frequency in the plan", device_id=device_id)

    def band_for(self, carrier: Carrier, band: Band | None) -> Band:
        found = band or carrier.band
        if found is None:
            raise InvalidInputError(
                f"the tunable band of {carrier.label or carrier.id} is not known: give low_mhz and high_mhz",
                carrier=carrier.id,
            )
        return found

    async def suggest_for(
        self,
        device_id: str,
        index: int,
        *,
        band: Band | None = None,
        within: tuple[float, float] | None = None,
        step_khz: float | None = None,
        count: int = 5,
    ) -> tuple[Carrier, list[Candidate]]:
        """Clean frequencies for one channel among every other carrier of the plan as it is now, its own second
        frequency (frequency diversity) included: a retune sets the first frequency only."""
        carriers = self._searchable(self.carriers_now())
        carrier = self.carrier_of_channel(device_id, index, carriers)
        others = [c for c in carriers if c.id != carrier.id]
        chosen = self.band_for(carrier, band)
        exclusions = [exclusion_of(entry) for entry in self.exclusions()]
        search = functools.partial(
            suggest, carrier, others, chosen, self.settings.plan, exclusions=exclusions, within=within,
            step_khz=step_khz, count=count,
        )  # fmt: skip
        return carrier, await self._search(search, len(carriers))

    async def coordinate_group(
        self,
        count: int,
        band: Band,
        *,
        backups: int = 0,
        family: str | None = None,
        step_khz: float | None = None,
        moving: Sequence[tuple[str, int]] = (),
    ) -> Coordination:
        """A compatible set of frequencies for a group around every carrier in the plan as it is now, except
        the carriers of the ``moving`` channels (those the group will retune: their first frequency only, so a
        frequency-diversity channel's second frequency stays fixed). Each moving channel's frequency is one it
        tunes: inside ``band`` (the request's range) and its own band, on its own tuning step (``step_khz``,
        when given, must be a multiple of it); a channel left no frequency is refused, by name."""
        carriers = self._searchable(self.carriers_now())
        leaving = [self.carrier_of_channel(device_id, index, carriers) for device_id, index in moving]
        moved = {carrier.id for carrier in leaving}
        if len(moved) < len(leaving):  # channels of one wideband carrier: two frequencies would split it
            raise InvalidInputError("two of the channels share one carrier (a wideband device's): give one of them")
        fixed = [c for c in carriers if c.id not in moved]
        exclusions = [exclusion_of(entry) for entry in self.exclusions()]
        slots = [self._slot(carrier, band, step_khz, family) for carrier in leaving]
        search = functools.partial(
            coordinate, count, fixed, band, self.settings.plan, backups=backups, family=family,
            exclusions=exclusions, step_khz=step_khz, slots=slots, cancelled=self._stopping.is_set,
        )  # fmt: skip
        return await self._search(search, len(carriers))

    def _searchable(self, carriers: list[Carrier]) -> list[Carrier]:
        if len(carriers) > (limit := self.settings.max_search_carriers):
            raise ConflictError(
                f"the plan has {len(carriers)} carriers, more than frequency.max_live_carriers ({limit}): a search "
                "grows with the square of the count; coordinate the site in parts, a hub each",
                carriers=len(carriers),
                limit=limit,
            )
        return carriers

    async def _search(self, search: Callable[[], Found], carriers: int) -> Found:
        """Run a search as the live check runs (ADR 0014): among fewer than INLINE_CHECK_CARRIERS carriers on the
        loop, else in a worker thread, one search at a time; a stopping hub stops a group's search between
        its frequencies."""
        try:
            if carriers < INLINE_CHECK_CARRIERS:
                return search()
            async with self._search_turn:
                return await asyncio.to_thread(search)
        except CheckCancelled:
            raise StorageUnavailableError("the hub is stopping: the search was not finished") from None
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None

    @staticmethod
    def _slot(carrier: Carrier, wanted: Band, step_khz: float | None, family: str | None) -> Slot:
        """Where the carrier may go in a group: its own band (the request's where its own is unknown) within the
        request's range, on its own tuning step."""
        own = carrier.band or wanted
        try:
            grid = narrowed(own, (wanted.low_mhz, wanted.high_mhz), search_step_khz(own, step_khz))
        except SearchError as exc:
            raise InvalidInputError(
                f"{carrier.label or carrier.id} cannot tune there: {exc}", channel=carrier.id
            ) from None
        return Slot(grid, own, carrier.family or family, carrier.bandwidth_khz)

    # declared carriers and exclusions

    async def declare(
        self,
        label: str,
        frequency_mhz: float,
        *,
        source: Source | str,
        bandwidth_khz: float = 0.0,
        active: bool = True,
        family: str | None = None,
        carrier_id: int | None = None,
    ) -> DeclaredCarrier:
        """Add a declared carrier, or replace the one with ``carrier_id``."""
        before = self.declared_carrier(carrier_id) if carrier_id is not None else None
        entry = DeclaredCarrier(
            id=carrier_id if carrier_id is not None else max(self._declared, default=0) + 1,
            label=clean_text(label, "carrier label", max_length=100),
            frequency_mhz=_frequency(frequency_mhz, "frequency_mhz"),
            bandwidth_khz=_bandwidth(bandwidth_khz),
            active=active,
            family=clean_text(family, "family", max_length=40) if family else None,
        )
        self._declared[entry.id] = entry
        self._db.submit(*_carrier_row(entry))
        self._dirty = True
        action = "frequency.carrier.update" if before else "frequency.carrier.create"
        await self._committed(
            source, action, f"frequency/carrier/{entry.id}", before.model_dump() if before else None, entry.model_dump()
        )
        return entry

    def declared_carrier(self, carrier_id: int) -> DeclaredCarrier:
        entry = self._declared.get(carrier_id)
        if entry is None:
            raise NotFoundError(f"no declared carrier {carrier_id}", carrier_id=carrier_id)
        return entry

    async def undeclare(self, carrier_id: int, *, source: Source | str) -> DeclaredCarrier:
        entry = self.declared_carrier(carrier_id)
        del self._declared[carrier_id]
        self._db.submit("DELETE FROM declared_carriers WHERE id = ?", (carrier_id,))
        self._dirty = True
        await self._committed(source, "frequency.carrier.delete", f"frequency/carrier/{carrier_id}", entry.model_dump())
        return entry

    async def exclude(
        self,
        *,
        source: Source | str,
        label: str = "",
        low_mhz: float | None = None,
        high_mhz: float | None = None,
        tv_grid: str | None = None,
        tv_channel: int | None = None,
        exclusion_id: int | None = None,
    ) -> FrequencyExclusion:
        """Add (or with ``exclusion_id`` replace) an exclusion: a TV channel of a grid, or a range."""
        before = self.exclusion(exclusion_id) if exclusion_id is not None else None
        if tv_grid is not None or tv_channel is not None:
            if tv_grid is None or tv_channel is None or low_mhz is not None or high_mhz is not None:
                raise InvalidInputError("an exclusion is either tv_grid + tv_channel, or low_mhz + high_mhz")
            try:
                made = Exclusion.tv(TvGrid(tv_grid), tv_channel, label=label.strip())
            except ValueError as exc:
                raise InvalidInputError(str(exc), tv_grid=tv_grid, tv_channel=tv_channel) from None
            low, high, label = made.low_mhz, made.high_mhz, made.label
        else:
            if low_mhz is None or high_mhz is None:
                raise InvalidInputError("an exclusion is either tv_grid + tv_channel, or low_mhz + high_mhz")
            low, high = _frequency(low_mhz, "low_mhz"), _frequency(high_mhz, "high_mhz")
            if high < low:
                raise InvalidInputError("high_mhz is below low_mhz", low_mhz=low, high_mhz=high)
            label = label.strip() or f"{low:g}-{high:g} MHz"
        entry = FrequencyExclusion(
            id=exclusion_id if exclusion_id is not None else max(self._exclusions, default=0) + 1,
            label=clean_text(label, "exclusion label", max_length=100),
            low_mhz=low,
            high_mhz=high,
            tv_grid=tv_grid,
            tv_channel=tv_channel,
        )
        self._exclusions[entry.id] = entry
        self._db.submit(*_exclusion_row(entry))
        self._dirty = self._full_check_due = True
        action = "frequency.exclusion.update" if before else "frequency.exclusion.create"
        target = f"frequency/exclusion/{entry.id}"
        await self._committed(source, action, target, before.model_dump() if before else None, entry.model_dump())
        return entry

    def exclusion(self, exclusion_id: int) -> FrequencyExclusion:
        entry = self._exclusions.get(exclusion_id)
        if entry is None:
            raise NotFoundError(f"no exclusion {exclusion_id}", exclusion_id=exclusion_id)
        return entry

    async def unexclude(self, exclusion_id: int, *, source: Source | str) -> FrequencyExclusion:
        entry = self.exclusion(exclusion_id)
        del self._exclusions[exclusion_id]
        self._db.submit("DELETE FROM frequency_exclusions WHERE id = ?", (exclusion_id,))
        self._dirty = self._full_check_due = True
        target = f"frequency/exclusion/{exclusion_id}"
        await self._committed(source, "frequency.exclusion.delete", target, entry.model_dump())
        return entry

    def held(self) -> Iterator[Statement]:
        yield from map(_carrier_row, self._declared.values())
        yield from map(_exclusion_row, self._exclusions.values())


_UPSERT_CARRIER = upsert("declared_carriers", ("id",), ("label", "frequency_mhz", "bandwidth_khz", "active", "family"))
_UPSERT_EXCLUSION = upsert("frequency_exclusions", ("id",), ("label", "low_mhz", "high_mhz", "tv_grid", "tv_channel"))


def _carrier_row(entry: DeclaredCarrier) -> Statement:
    return _UPSERT_CARRIER, (
        entry.id,
        entry.label,
        entry.frequency_mhz,
        entry.bandwidth_khz,
        int(entry.active),
        entry.family,
    )


def _exclusion_row(entry: FrequencyExclusion) -> Statement:
    return _UPSERT_EXCLUSION, (entry.id, entry.label, entry.low_mhz, entry.high_mhz, entry.tv_grid, entry.tv_channel)


def _frequency(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not LOWEST_MHZ <= value <= HIGHEST_MHZ:
        raise InvalidInputError(f"{what} must be a number of MHz from {LOWEST_MHZ:g} to {HIGHEST_MHZ:g}", value=value)
    return float(value)


def _bandwidth(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100_000:
        raise InvalidInputError("bandwidth_khz must be from 0 to 100000", value=value)
    return float(value)


def _always() -> bool:
    return True
