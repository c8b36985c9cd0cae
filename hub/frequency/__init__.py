"""Frequency coordination: the live plan check and the search for clean frequencies (pure, no I/O).

``check`` / :class:`PlanChecker` find intermodulation products, spacing problems, exclusions and
out-of-band carriers; ``suggest`` and ``coordinate`` find clean frequencies. docs/frequency-coordination.md
explains the arithmetic with a worked example.
"""

from hub.frequency.engine import CheckCancelled, Finding, PlanChecker, Product, check, finding_view
from hub.frequency.plan import Band, Carrier, CarrierState, Exclusion, TvGrid, merge_identical
from hub.frequency.search import (
    Candidate,
    Coordination,
    SearchError,
    Slot,
    coordinate,
    narrowed,
    search_step_khz,
    suggest,
)
from hub.frequency.settings import FamilyGuards, Guards, PlanSettings, Profile, for_family

__all__ = [
    "Band",
    "Candidate",
    "Carrier",
    "CarrierState",
    "CheckCancelled",
    "Coordination",
    "Exclusion",
    "FamilyGuards",
    "Finding",
    "Guards",
    "PlanChecker",
    "PlanSettings",
    "Product",
    "Profile",
    "SearchError",
    "Slot",
    "TvGrid",
    "check",
    "coordinate",
    "finding_view",
    "for_family",
    "merge_identical",
    "narrowed",
    "search_step_khz",
    "suggest",
]
