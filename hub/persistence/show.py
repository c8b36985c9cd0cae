"""The show: when it ends, and which transmitter packs will not last until then (the battery swap list).

A pack's empty time comes from the transmitter's own runtime where it reports one, else from the drain
history of a bars-only pack (:meth:`History.runtime_estimate`, docs/battery-estimate.md). A channel whose
transmitter is on but has neither yet is listed apart: nobody can say when it will run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Literal, NamedTuple

from hub.clock import Clock
from hub.persistence.alerts import Alerts, Verdict
from hub.persistence.audit import AuditLog
from hub.persistence.db import Database, Statement, upsert
from hub.persistence.history import History
from hub.persistence.performers import ExtendedNames, Performers
from hub.persistence.service_base import Service
from hub.persistence.venue import Slots
from hub.records import (
    MAX_MARGIN_MIN,
    ChannelRef,
    InvalidInputError,
    NotFoundError,
    ShowSettings,
    Source,
    StorageUnavailableError,
    SwapEntry,
    SwapList,
)
from hub.state import StateStore

SETTINGS_KEY: Final = "show"
# docs/battery-estimate.md: the bars-only estimate is required (and tested) to be within 15 %
ESTIMATE_BAND: Final = 0.15
# a pack on the list leaves it (and its alert clears) only once it lasts this much past the deadline, so an
# estimate wobbling around the deadline raises one alert, not one a minute
CLEAR_MARGIN_S: Final = 10 * 60.0
_REPORTED: Final = "reported by the transmitter"


# Going through every transmitter of a site of thousands took 216 ms at 12,000 channels, every 30 s, with
# the event loop stopped: it lets the loop run after each slice this long, as the store's tick does.
PACKS_SLICE_S: Final = 0.005

SwapListListener = Callable[[SwapList], None]


class _Pack(NamedTuple):
    """A transmitter that is on, as the check finds it. The records the swap list shows (with performer,
    slot and display name) are built only for the packs it lists: building two models for every pack of a
    site of thousands every 30 s, to drop nearly all of them, filled the garbage collector's young
    generation, whose collections then stopped the hub for 140-160 ms at 12,000 channels."""

    device_id: str
    channel: int
    name: str | None
    battery_type: str | None
    empty_at: float | None  # None: no runtime reported and no estimate yet
    minutes_left: int = 0
    earliest_empty_at: float = 0.0
    latest_empty_at: float = 0.0
    source: Literal["transmitter", "estimate"] = "transmitter"
    certainty: str = ""


class Show(Service):
    """The show settings (stored, audited) and the swap list built from live state and history."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditLog,
        state: StateStore,
        history: History,
        performers: Performers,
        slots: Slots,
        names: ExtendedNames,
        alerts: Alerts,
        settings: ShowSettings,
    ) -> None:
        super().__init__(db, clock, audit)
        self._state = state
        self._history = history
        self._performers = performers
        self._slots = slots
        self._names = names
        self._alerts = alerts
        self.settings = settings
        self._listeners: list[SwapListListener] = []

    @staticmethod
    def settings_from_rows(rows: Iterable[tuple[str, str]]) -> ShowSettings:
        stored = dict(rows).get(SETTINGS_KEY)
        return ShowSettings.model_validate_json(stored) if stored else ShowSettings()

    async def set(self, end_at: float | None, margin_min: int, *, source: Source | str) -> ShowSettings:
        if end_at is not None and not 0 < end_at < 1e11:
            raise InvalidInputError("end_at must be a Unix time", end_at=end_at)
        if isinstance(margin_min, bool) or not 0 <= margin_min <= MAX_MARGIN_MIN:
            raise InvalidInputError(f"margin_min must be 0 to {MAX_MARGIN_MIN} minutes", margin_min=margin_min)
        before, self.settings = self.settings, ShowSettings(end_at=end_at, margin_min=margin_min)
        self._db.submit(*self._settings_row())
        await self._committed(source, "show.set", "show", before.model_dump(), self.settings.model_dump())
        return self.settings

    def held(self) -> Iterator[Statement]:
        yield self._settings_row()

    def _settings_row(self) -> Statement:
        # one key of the hub-wide settings table: the table is not held whole
        return upsert("settings", ("key",), ("value",)), (SETTINGS_KEY, self.settings.model_dump_json())

    def add_listener(self, listener: SwapListListener) -> Callable[[], None]:
        """Call ``listener`` with the swap list after every check; returns the remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def swap_list(self, until: float | None = None) -> SwapList:
        """Every pack that will be empty before ``until`` (default: the show's end) plus the margin."""
        now = self._clock.now()
        return self._swap_list(await self._packs(now), now, self.settings.end_at if until is None else until)

    async def check(self) -> SwapList:
        """Build the swap list for the show's end and judge the 'will not last' alerts from it: raised for
        each pack empty before the deadline, cleared once the pack lasts well past it (swapped, or the show
        end moved) or the show is over or unset."""
        now = self._clock.now()
        packs = await self._packs(now)
        end_at = self.settings.end_at
        swap = self._swap_list(packs, now, end_at)
        show_on = end_at is not None and swap.deadline is not None and end_at > now
        verdicts: dict[tuple[str, int], tuple[Verdict, str]] = {}
        if show_on and swap.deadline is not None and end_at is not None:
            for pack in packs:
                if pack.empty_at is None:
                    continue
                if pack.empty_at < swap.deadline:
                    verdict = Verdict.ACTIVE
                elif pack.empty_at >= swap.deadline + CLEAR_MARGIN_S:
                    verdict = Verdict.CLEAR
                else:
                    verdict = Verdict.HOLD
                empty, ends = _clock_time(pack.empty_at), _clock_time(end_at)
                note = f"will not last until the end of the show (empty about {empty}, the show ends {ends})"
                verdicts[pack.device_id, pack.channel] = (verdict, note)
        self._alerts.judge_show_runtime(verdicts, now, show_on=show_on)
        for listener in list(self._listeners):
            listener(swap)
        return swap

    def _swap_list(self, packs: list[_Pack], now: float, until: float | None) -> SwapList:
        margin_min = self.settings.margin_min
        deadline = None if until is None else until + margin_min * 60
        items = [
            self._entry(pack)
            for pack in packs
            if pack.empty_at is not None and deadline is not None and pack.empty_at < deadline
        ]
        items.sort(key=lambda entry: (entry.empty_at, entry.channel_id))
        return SwapList(
            generated_at=now,
            until=until,
            margin_min=margin_min,
            deadline=deadline,
            items=items,
            no_estimate=[self._ref(pack) for pack in packs if pack.empty_at is None],
        )

    async def _packs(self, now: float) -> list[_Pack]:
        """Each transmitter that is on, with its expected empty time where one is known."""
        packs: list[_Pack] = []
        pause_at = time.perf_counter() + PACKS_SLICE_S
        for device in list(self._state.devices.values()):
            if time.perf_counter() >= pause_at:
                await asyncio.sleep(0)
                pause_at = time.perf_counter() + PACKS_SLICE_S
            if not device.online:
                continue
            for channel in device.channels:
                if channel.tx_present is not True:
                    continue
                found = (device.id, channel.index, channel.name, channel.battery_type)
                if channel.battery_runtime_min is not None:
                    minutes = channel.battery_runtime_min
                    empty_at = now + minutes * 60
                    packs.append(_Pack(*found, empty_at, minutes, empty_at, empty_at, "transmitter", _REPORTED))
                    continue
                try:
                    estimate = await self._history.runtime_estimate(device.id, channel.index)
                except StorageUnavailableError:  # its drain history cannot be read now: listed without one
                    estimate = None
                if estimate is None:
                    packs.append(_Pack(*found, None))
                    continue
                seconds = estimate.minutes * 60
                packs.append(
                    _Pack(
                        *found,
                        now + seconds,
                        estimate.minutes,
                        now + seconds * (1 - ESTIMATE_BAND),
                        now + seconds * (1 + ESTIMATE_BAND),
                        "estimate",
                        f"estimated from {estimate.observed_points} points of its bar drain (±15 %)",
                    )
                )
        return packs

    def _entry(self, pack: _Pack) -> SwapEntry:
        assert pack.empty_at is not None
        return SwapEntry(
            **self._ref(pack).model_dump(),
            empty_at=pack.empty_at,
            minutes_left=pack.minutes_left,
            earliest_empty_at=pack.earliest_empty_at,
            latest_empty_at=pack.latest_empty_at,
            source=pack.source,
            certainty=pack.certainty,
        )

    def _ref(self, pack: _Pack) -> ChannelRef:
        device_id, index = pack.device_id, pack.channel
        assignment = self._performers.assignment_for(device_id, index)
        performer = None
        if assignment is not None:
            with contextlib.suppress(NotFoundError):  # deleted meanwhile: the pack is listed without a name
                performer = self._performers.get(assignment.performer_id).name
        slot = self._slots.for_channel(device_id, index)
        return ChannelRef(
            channel_id=f"{device_id}:{index}",
            device_id=device_id,
            channel=index,
            name=self._names.display_name(device_id, index) or pack.name,
            performer=performer,
            slot=slot.number if slot is not None else None,
            battery_type=pack.battery_type,
        )


def _clock_time(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))
