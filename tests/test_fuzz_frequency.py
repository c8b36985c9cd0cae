"""Bad input against the frequency plan: receivers reporting any frequency, and any transmitter state."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from hub.frequency import PlanChecker, PlanSettings, check
from hub.model import Channel, Device
from hub.persistence.frequency import FrequencySettings, device_carriers
from tests.reliability_report import fuzz

# what a confused or hostile receiver might report as its frequency, next to ordinary values
REPORTED = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -470.0, 1e300, 470.0, 470.0, 470.2, 470.4, 10_000.0, 10_000.001, 0.999]),
    st.integers(470, 472).map(float),
)


def receiver(number: int, frequencies: list[Any], present: list[bool | None], family: str | None) -> Device:
    # constructed, not validated: the store writes a driver's values in place (the sink's checks come first
    # there), and the plan must hold whatever ends up in a channel
    channels = [
        Channel.model_construct(index=index, frequency_mhz=mhz, tx_present=present[(index - 1) % len(present)])
        for index, mhz in enumerate(frequencies, start=1)
    ]
    return Device(id=f"rx-{number}", vendor="test", family=family, host="127.0.0.1", port=1, channels=channels)


@fuzz(
    "Frequency plan (hub.persistence.frequency carriers, hub.frequency check)",
    "receivers reporting any frequency (NaN, infinities, negative, zero, 1e300, duplicates on one device and"
    " across devices), unknown transmitter states, wideband and unknown families",
    "carriers only for 1-10,000 MHz, one per frequency per wideband device; a re-check equal to a full check;"
    " no exception",
    max_examples=150,
    frequencies=st.lists(st.lists(REPORTED, min_size=1, max_size=6), min_size=1, max_size=4),
    present=st.lists(st.sampled_from([True, False, None]), min_size=1, max_size=4),
    families=st.lists(st.sampled_from([None, "spectera", "ulxd", "ew-g4", "unknown"]), min_size=4, max_size=4),
)
def test_frequency_plan(frequencies: list[list[Any]], present: list[bool | None], families: list[str | None]) -> None:
    devices = [receiver(n, reported, present, families[n]) for n, reported in enumerate(frequencies)]
    carriers = [c for device in devices for c in device_carriers(device, FrequencySettings())]
    assert all(1.0 <= carrier.frequency_mhz <= 10_000.0 for carrier in carriers)
    wide = [c for c in carriers if c.bandwidth_khz]  # a narrowband receiver's channels on one frequency collide
    assert len({(c.device_id, c.frequency_mhz) for c in wide}) == len(wide), "one wideband carrier per frequency"
    assert len({c.id for c in carriers}) == len(carriers)
    settings = PlanSettings()
    findings = check(carriers, [], settings)
    ids = {carrier.id for carrier in carriers}
    assert all(finding.victim in ids and set(finding.sources) <= ids for finding in findings)
    checker = PlanChecker(settings)
    checker.check(carriers[1:], [])
    again = checker.update(carriers)
    key = sorted((f.product.value, f.victim, f.severity, abs(f.offset_khz), f.count) for f in again)
    assert key == sorted((f.product.value, f.victim, f.severity, abs(f.offset_khz), f.count) for f in findings)
