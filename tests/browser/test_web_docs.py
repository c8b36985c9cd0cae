"""The API reference at /api/docs in a real browser, cut off from everything but the hub: Swagger UI comes from
the hub itself, reads the OpenAPI document with the board's token and lists the device endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Route, expect

from hub.app import Hub
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from tests.browser.rig import TOKEN


@pytest.fixture
async def closed_hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub whose every endpoint needs the token, so the page must send the board's."""
    config = HubConfig(
        hub_id="docstest",
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN, open_reads=False),
    )
    async with compose_hub(config, PluginHost()) as hub:
        yield hub


async def offline_page(browser: Browser, hub: Hub, elsewhere: list[str], token: str | None) -> Page:
    """A page that reaches the hub and nothing else; every other request is refused and noted."""
    context = await browser.new_context()

    async def only_the_hub(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == f"127.0.0.1:{hub.web.port}" or url.startswith("data:"):
            await route.continue_()
        else:
            elsewhere.append(url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_the_hub)
    if token is not None:
        # what the board's Token field leaves in the browser
        await context.add_init_script(f"localStorage.setItem('wmhub.token', {token!r})")
    return await context.new_page()


async def test_the_board_links_api_docs_that_work_offline_and_list_devices(browser: Browser, closed_hub: Hub) -> None:
    elsewhere: list[str] = []
    page = await offline_page(browser, closed_hub, elsewhere, TOKEN)
    await page.goto(f"http://127.0.0.1:{closed_hub.web.port}/")
    await page.click("#api-docs-link")
    await expect(page).to_have_url(f"http://127.0.0.1:{closed_hub.web.port}/api/docs")
    devices = page.locator('.opblock-summary-path[data-path="/api/v1/devices"]')
    # the first paint parses a 1.5 MB Swagger UI bundle: seconds of CPU on a loaded two-core machine
    await expect(devices.first).to_be_visible(timeout=20_000)
    for path in ("/api/v1/devices/{device_id}", "/api/v1/devices/{device_id}/commands"):
        await expect(page.locator(f'.opblock-summary-path[data-path="{path}"]').first).to_be_visible()
    # "Try it out" on GET /api/v1/devices goes through once the token is given through "Authorize"
    await page.locator(".auth-wrapper .authorize").click()
    await page.locator(".modal-ux input").fill(TOKEN)
    await page.locator(".modal-ux button.authorize").click()
    await page.locator(".modal-ux .btn-done").click()
    listing = page.locator("#operations-devices-list_devices")
    await listing.locator(".opblock-summary").click()
    await listing.locator(".try-out__btn").click()
    await listing.locator(".execute").click()
    await expect(listing.locator(".live-responses-table tr.response .response-col_status").first).to_have_text("200")
    assert elsewhere == []


async def test_api_docs_never_show_the_boards_token_after_try_it_out(browser: Browser, closed_hub: Hub) -> None:
    page = await offline_page(browser, closed_hub, [], TOKEN)
    await page.goto(f"http://127.0.0.1:{closed_hub.web.port}/api/docs")
    health = page.locator("#operations-health-health")
    await health.locator(".opblock-summary").click()
    await health.locator(".try-out__btn").click()
    await health.locator(".execute").click()
    await expect(health.locator(".curl-command")).to_contain_text("/api/health")
    # sent without the token: on this hub a read needs it, given through "Authorize"
    await expect(health.locator(".live-responses-table tr.response .response-col_status").first).to_contain_text("401")
    assert TOKEN not in await page.locator("body").inner_text()
    fields = await page.locator("input").evaluate_all("inputs => inputs.map((input) => input.value)")
    assert TOKEN not in fields


async def test_api_docs_without_the_token_say_the_document_needs_it(browser: Browser, closed_hub: Hub) -> None:
    elsewhere: list[str] = []
    page = await offline_page(browser, closed_hub, elsewhere, token=None)
    await page.goto(f"http://127.0.0.1:{closed_hub.web.port}/api/docs")
    await expect(page.locator("#api-docs")).to_contain_text("Unauthorized")
    assert elsewhere == []
