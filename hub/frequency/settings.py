"""Guard bands and minimum spacings: per family, with a robust / standard / dense profile switch.

Every number is in kHz. A guard of 0 switches that check off. The defaults come from one of two places,
named next to each value:

* ``conservative``: a value chosen on the safe side by this project, not taken from a vendor. The
  relative order (carrier spacing > 2-transmitter 3rd order > 5th order >= 3-transmitter 3rd order) follows
  the usual practice of coordination tools: a product grows weaker with its order and with the number of
  transmitters that must line up, so it needs less room.
* a public source, quoted by what it states (e.g. a vendor's published minimum spacing).

A family's own entry replaces the profile's values only where it says something; everything else follows
the profile, so ``dense`` tightens every family at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final, TypeVar

from hub.text import family_key


class Profile(StrEnum):
    ROBUST = "robust"  # more room: a hostile RF site, long distances, many unknowns
    STANDARD = "standard"
    DENSE = "dense"  # less room: more channels in a crowded band, at a higher risk of audible hits


@dataclass(frozen=True)
class Guards:
    """How close a carrier or a product may come to a carrier before it is a finding (kHz).

    ``spacing_khz`` is carrier to carrier (edge to edge for a carrier with a bandwidth); the other four are
    how close an intermodulation product may come to a carrier that receives it."""

    spacing_khz: float
    im3_2tx_khz: float  # 2f1 - f2
    im3_3tx_khz: float  # f1 + f2 - f3
    im5_2tx_khz: float  # 3f1 - 2f2
    im7_2tx_khz: float  # 4f1 - 3f2 (0: off; the 7th order is optional)


# The profile defaults, all ``conservative`` (see the module docstring): no vendor publishes one set of
# guards for every family, and a monitoring tool should rather warn once too often.
PROFILE_GUARDS: Final[Mapping[Profile, Guards]] = {
    Profile.ROBUST: Guards(spacing_khz=400, im3_2tx_khz=150, im3_3tx_khz=75, im5_2tx_khz=100, im7_2tx_khz=0),
    Profile.STANDARD: Guards(spacing_khz=350, im3_2tx_khz=100, im3_3tx_khz=50, im5_2tx_khz=50, im7_2tx_khz=0),
    Profile.DENSE: Guards(spacing_khz=250, im3_2tx_khz=75, im3_3tx_khz=25, im5_2tx_khz=25, im7_2tx_khz=0),
}


@dataclass(frozen=True)
class FamilyGuards:
    """A family's deviation from the profile: a scale on every guard, or fixed values (kHz)."""

    scale: float = 1.0
    spacing_khz: float | None = None
    source: str = "conservative"


T = TypeVar("T")


def for_family(table: Mapping[str, T], family: str | None) -> T | None:
    """The entry of ``table`` for ``family``, its keys and the family compared by :func:`family_key`."""
    wanted = family_key(family)
    return next((value for key, value in table.items() if family_key(key) == wanted), None) if wanted else None


# Families whose receivers need more or less room than the profile's narrowband default.
DEFAULT_FAMILY_GUARDS: Final[Mapping[str, FamilyGuards]] = {
    # analog FM receivers and in-ear transmitters: wider IF filters than the digital ones; 1.5x is a
    # conservative choice
    "ew-g3": FamilyGuards(scale=1.5),
    "ew-g4": FamilyGuards(scale=1.5),
    "ew-iem-g4": FamilyGuards(scale=1.5),
    # wideband (WMAS) carriers are checked edge to edge by their bandwidth; the spacing left between two
    # such blocks is a conservative 1 MHz
    "spectera": FamilyGuards(spacing_khz=1000),
}


@dataclass(frozen=True)
class PlanSettings:
    profile: Profile = Profile.STANDARD
    seventh_order: bool = False
    families: Mapping[str, FamilyGuards] = field(default_factory=lambda: dict(DEFAULT_FAMILY_GUARDS))
    # used when a carrier's family guard for the 7th order is wanted but the profile has it off
    im7_when_on_khz: float = 25.0

    def guards(self, family: str | None) -> Guards:
        base = PROFILE_GUARDS[self.profile]
        if self.seventh_order and base.im7_2tx_khz == 0:
            base = replace(base, im7_2tx_khz=self.im7_when_on_khz)
        own = for_family(self.families, family)
        if own is None:
            return base
        scaled = Guards(
            spacing_khz=base.spacing_khz * own.scale,
            im3_2tx_khz=base.im3_2tx_khz * own.scale,
            im3_3tx_khz=base.im3_3tx_khz * own.scale,
            im5_2tx_khz=base.im5_2tx_khz * own.scale,
            im7_2tx_khz=base.im7_2tx_khz * own.scale,
        )
        return scaled if own.spacing_khz is None else replace(scaled, spacing_khz=own.spacing_khz)

    def describe(self) -> dict[str, object]:
        """The settings as the API shows them: the profile, its guards, and each family's own."""
        return {
            "profile": self.profile.value,
            "seventh_order": self.seventh_order,
            "guards": vars(self.guards(None)),
            "families": {
                name: {**vars(self.guards(name)), "source": own.source} for name, own in sorted(self.families.items())
            },
            "profiles": {profile.value: vars(guards) for profile, guards in PROFILE_GUARDS.items()},
        }
