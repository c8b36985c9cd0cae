"""GET /api/docs over HTTP: the page and every file it needs come from the hub, and nothing else on disk does."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.test_web_api import TOKEN, call, serving

ASSET = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[aiohttp.ClientSession]:
    async with serving(tmp_path, token=TOKEN) as (_, session):
        yield session


async def test_api_docs_page_needs_only_files_the_hub_serves(http: aiohttp.ClientSession) -> None:
    page = await call(http, "GET", "/api/docs", 200)
    assets = [url for url in ASSET.findall(page) if not url.startswith("data:")]
    assert "/api/docs/swagger-ui-bundle.js" in assets and "/static/docs.js" in assets
    for url in assets:
        # a venue is often offline: no CDN, no other host
        assert url.startswith("/"), url
        async with http.get(url) as response:
            assert response.status == 200, url
            assert len(await response.read()) > 0, url
    script = await call(http, "GET", "/static/docs.js", 200)
    assert "/api/openapi.json" in script


async def test_api_docs_serve_no_other_file(http: aiohttp.ClientSession) -> None:
    # index.html and the source maps are in the bundle too, but the page does not use them
    for name in ("index.html", "swagger-ui.js.map", "..%2F__init__.py", "%2E%2E%2F%2E%2E%2Fserver.py"):
        body = await call(http, "GET", f"/api/docs/{name}", 404)
        assert body["code"] == "not_found"
