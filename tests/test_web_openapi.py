"""A property-based run of schemathesis against /api/openapi.json: no request it generates gets a 5xx.

The hub runs in the test's event loop; schemathesis runs as its own process (its HTTP client is
blocking), bounded by --max-examples. The hub has no plugins loaded, so no generated device URL can make
it connect anywhere: adding devices answers 422, and every command 404s on the unknown device. The venue
store is attached, so its routes are in the document and fuzzed too.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.persistence import IN_MEMORY
from hub.persistence.testing import open_simulated
from hub.plugins import PluginHost

TOKEN = "schemathesis-token"
# positive_data_acceptance would want every schema-valid device URL accepted; an unknown scheme is a 422
EXCLUDED_CHECKS = "positive_data_acceptance"


@pytest.mark.timeout(400)  # about a minute alone; several times that beside other tests on the 2-core machine
async def test_schemathesis_finds_no_server_errors(tmp_path: Path) -> None:
    config = HubConfig(
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(port=0, token=TOKEN),
    )
    hub = compose_hub(config, PluginHost())
    store = await open_simulated(IN_MEMORY, hub.store)
    hub.persistence = store
    async with hub:
        st = Path(sys.executable).with_name("st")
        process = await asyncio.create_subprocess_exec(
            str(st),
            "run",
            f"http://127.0.0.1:{hub.web.port}/api/openapi.json",
            "--checks=all",
            f"--exclude-checks={EXCLUDED_CHECKS}",
            "--phases=examples,coverage,fuzzing",
            "--max-examples=20",
            "--seed=7",
            "--request-timeout=5",
            "--no-color",
            f"--header=Authorization: Bearer {TOKEN}",
            f"--report-dir={tmp_path / 'st-report'}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )
        output, _ = await asyncio.wait_for(process.communicate(), 360)
        operations = len(hub.web.operations)
    await store.close()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert f"Tested: {operations}" in text, text[-3000:]
