"""What a frequency plan is made of: carriers, exclusions (TV channels, user ranges) and tunable bands.

A carrier is an RF transmission, not an audio channel: channels of one wideband device on the same frequency
(a Spectera WMAS carrier holds many) are one carrier, and a frequency-diversity channel is two. Two channels of
a narrowband receiver on one frequency are two carriers, and a collision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class CarrierState(StrEnum):
    ACTIVE = "active"  # on air: the transmitter is present (or a declared carrier the user says is on)
    PLANNED = "planned"  # configured but its transmitter is off (or its receiver is offline)


@dataclass(frozen=True)
class Band:
    """Where a device can tune: [low, high] MHz in steps of ``step_khz`` from ``low_mhz``. ``whole_range``:
    only the limits a plugin accepts for the family (often the protocol's whole range), wider than the band
    of the receiver at hand, which may refuse much of it."""

    low_mhz: float
    high_mhz: float
    step_khz: float = 25.0
    whole_range: bool = False

    def contains(self, low_mhz: float, high_mhz: float) -> bool:
        return self.low_mhz <= low_mhz and high_mhz <= self.high_mhz


@dataclass(frozen=True)
class Carrier:
    """One RF carrier of the plan. ``id`` is stable: ``<device_id>:<index>[/2]`` or ``declared:<n>``."""

    id: str
    frequency_mhz: float
    state: CarrierState = CarrierState.ACTIVE
    bandwidth_khz: float = 0.0  # 0: narrowband; guards are then centre to centre
    family: str | None = None
    label: str = ""
    device_id: str | None = None
    channels: tuple[int, ...] = ()
    declared_id: int | None = None
    band: Band | None = None

    @property
    def low_mhz(self) -> float:
        return self.frequency_mhz - self.bandwidth_khz / 2000

    @property
    def high_mhz(self) -> float:
        return self.frequency_mhz + self.bandwidth_khz / 2000


class TvGrid(StrEnum):
    US = "us"  # 6 MHz channels; channel 14 starts at 470 MHz
    EU = "eu"  # 8 MHz channels; channel 21 starts at 470 MHz


# (channel width MHz, first UHF channel number, its lower edge MHz, last channel number). Sources: the FCC's
# UHF TV table (47 CFR 73.603: channel 14 = 470-476 MHz, 6 MHz each; 36 = 602-608 MHz, the top since the
# 600 MHz repack, which moved every station off 38-51 (614-698 MHz, now mobile broadband) by July 2020; 37 is
# radio astronomy, never TV) and the ITU Region 1 UHF raster (channel 21 = 470-478 MHz, 8 MHz each; 48 =
# 686-694 MHz, the top in the EU since the 700 MHz release, 69 = 854-862 MHz where a country still has them).
# A US exclusion of 38-51 would guard against TV that is no longer there: such a channel is refused.
TV_GRIDS: Final[dict[TvGrid, tuple[float, int, float, int]]] = {
    TvGrid.US: (6.0, 14, 470.0, 36),
    TvGrid.EU: (8.0, 21, 470.0, 69),
}


def tv_channel_range(grid: TvGrid, channel: int) -> tuple[float, float]:
    """[low, high] MHz of a UHF TV channel; ValueError for a channel the grid does not have."""
    width, first, start, last = TV_GRIDS[grid]
    if not first <= channel <= last:
        raise ValueError(f"{grid.value.upper()} UHF TV channels run from {first} to {last}, not {channel}")
    low = start + (channel - first) * width
    return low, low + width


def tv_channels_in(grid: TvGrid, low_mhz: float, high_mhz: float) -> list[tuple[int, float, float]]:
    """Every channel of ``grid`` that overlaps [low, high] MHz, as (number, low, high)."""
    width, first, start, last = TV_GRIDS[grid]
    found = []
    for channel in range(first, last + 1):
        low = start + (channel - first) * width
        if low < high_mhz and low + width > low_mhz:
            found.append((channel, low, low + width))
    return found


@dataclass(frozen=True)
class Exclusion:
    """A range no carrier may touch: an occupied TV channel or a user's range (both ends included)."""

    low_mhz: float
    high_mhz: float
    label: str = ""
    id: int | None = None
    tv_grid: TvGrid | None = None
    tv_channel: int | None = None

    @classmethod
    def tv(cls, grid: TvGrid, channel: int, id: int | None = None, label: str = "") -> Exclusion:
        low, high = tv_channel_range(grid, channel)
        return cls(low, high, label or f"TV {grid.value.upper()} ch {channel}", id, grid, channel)


@dataclass(frozen=True)
class Plan:
    carriers: Sequence[Carrier]
    exclusions: Sequence[Exclusion] = field(default_factory=tuple)


def merge_identical(carriers: Iterable[Carrier]) -> list[Carrier]:
    """One carrier per (device, frequency) of wideband carriers: channels of one device that share a wideband
    carrier become one carrier that lists them all, active when any of them is. Narrowband carriers stay apart:
    two transmitters on one frequency collide."""
    merged: dict[tuple[str | None, str, float], Carrier] = {}
    order: list[tuple[str | None, str, float]] = []
    for carrier in carriers:
        shared = carrier.device_id is not None and carrier.bandwidth_khz > 0
        key = (carrier.device_id, "" if shared else carrier.id, carrier.frequency_mhz)
        seen = merged.get(key)
        if seen is None:
            merged[key] = carrier
            order.append(key)
            continue
        state = CarrierState.ACTIVE if CarrierState.ACTIVE in (seen.state, carrier.state) else CarrierState.PLANNED
        channels = tuple(sorted({*seen.channels, *carrier.channels}))
        merged[key] = Carrier(
            id=f"{seen.device_id}:{'+'.join(str(index) for index in channels)}"
            if seen.device_id is not None
            else seen.id,
            frequency_mhz=seen.frequency_mhz,
            state=state,
            bandwidth_khz=max(seen.bandwidth_khz, carrier.bandwidth_khz),
            family=seen.family,
            label=seen.label,
            device_id=seen.device_id,
            channels=channels,
            declared_id=seen.declared_id,
            band=seen.band,
        )
    return [merged[key] for key in order]
