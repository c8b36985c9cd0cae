"""The board's spectrum view in a real browser: an intermod conflict among simulated receivers drawn in
red with lines to its sources, its finding on a click, a suggestion, and the retune that clears it."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from hub.testing import eventually
from tests.browser.rig import Board


async def test_a_conflict_is_drawn_explained_suggested_away_and_gone(page: Page, board: Board) -> None:
    ulxd, axient = board.simulators
    await board.store.frequency.exclude(source="test", tv_grid="eu", tv_channel=30)  # 542-550 MHz, shaded
    for simulator, index, mhz in ((ulxd, 1, 518.2), (ulxd, 2, 518.6), (axient, 1, 517.8)):
        simulator.set_tx_present(index, True)
        simulator.set_channel(index, frequency_mhz=mhz)
    for index in (2, 3, 4):  # the rest of the quad well away, switched off
        axient.set_channel(index, frequency_mhz=560.0 + index)
        axient.set_tx_present(index, False)
    await page.goto(board.url)
    await page.fill("#token", board.token)
    await page.press("#token", "Enter")
    spectrum = page.locator("#spectrum")
    conflicts = spectrum.locator("g.conflict")
    await expect(conflicts).to_have_count(2, timeout=15_000)  # 2A - B on C, and 2A - C back on B
    await expect(spectrum.locator(".carrier.active")).to_have_count(3)
    await expect(spectrum.locator(".carrier.planned")).to_have_count(3)
    await expect(spectrum.locator("rect.exclusion")).to_have_count(1)
    await expect(conflicts.first.locator("line.source-line")).to_have_count(2)
    await expect(page.locator("#spectrum-count")).to_have_text("(2 conflicts)")

    victim = board.device_id(axient)
    # the tile names the alert in a few words; its sentence (every source and guard) is the words' title
    victim_state = page.locator(f'.tile[data-channel="{victim}:1"] .state')
    await expect(victim_state).to_have_text("frequency conflict: intermod", timeout=15_000)
    await expect(victim_state).to_have_attribute("title", re.compile("intermodulation"))
    target = spectrum.locator("g.conflict", has=page.locator("title", has_text="517.800 MHz"))
    await target.locator("rect.tick").click()
    await expect(page.locator("#finding .finding-text")).to_contain_text("2f1-f2 (order 3)")
    await expect(page.locator("#finding .finding-text")).to_contain_text("at 517.800 MHz, 0 kHz from")
    await page.locator("#finding").get_by_role("button", name="Suggest").click()
    candidates = page.locator("#finding .candidate")
    await expect(candidates).to_have_count(3)
    chosen = float((await candidates.first.locator("span").first.text_content() or "").split()[0])
    await candidates.first.get_by_role("button", name="Tune").click()
    await eventually(lambda: axient.channels[1].values["frequency_mhz"] == chosen, what="the receiver retuned")
    await expect(conflicts).to_have_count(0, timeout=15_000)
    await eventually(
        lambda: not [a for a in board.store.alerts.open_alerts() if a.device_id == victim], 15, "the alert cleared"
    )
