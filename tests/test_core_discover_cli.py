"""`wmhub discover` finds a device announcing itself over mDNS and prints the URL to add it by."""

import asyncio
import json
import sys

from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator


async def test_discover_prints_an_announced_receiver_with_its_srv_port() -> None:
    async with Ssc1Simulator("ewdx-em4", tick_s=0, advertise=True) as simulator:
        scan = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "discover", "--seconds", "4", "--json", "--interface", "127.0.0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(scan.communicate(), 60)
    assert scan.returncode == 0, stderr.decode()
    found = {candidate["url"]: candidate for candidate in json.loads(stdout)}
    assert simulator.url in found
    assert found[simulator.url]["model"] == "EW-DX EM 4" and found[simulator.url]["vendor"] == "sennheiser"
