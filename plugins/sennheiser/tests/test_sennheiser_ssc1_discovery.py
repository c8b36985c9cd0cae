"""mDNS discovery on loopback: an announced simulator is found, confirmed by /device/identity, and added."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator

from hub.discovery import Discovery
from hub.hookspecs import Candidate, DiscoveredService, NoAnswer
from hub.testing import PROBE_SETTINGS, DriverHarness, eventually, identify_with, plugin_host


async def test_an_announced_simulator_is_found_by_hub_discovery_identified_and_added() -> None:
    host = plugin_host("sennheiser")
    assert host.zeroconf_types() == ["_ssc._tcp.local.", "_ssc._udp.local."]
    async with Ssc1Simulator("ewdx-em4", tick_s=0, advertise=True) as simulator:
        discovery = Discovery(host, PROBE_SETTINGS, interfaces=["127.0.0.1"])
        await discovery.start()
        try:
            candidate = await eventually(lambda: discovery.candidates.get(simulator.url), 8.0, "the candidate")
        finally:
            await discovery.stop()
        # the URL carries the SRV port, not the default 45; the hub stamps when it was seen
        assert candidate.last_seen is not None
        assert dataclasses.replace(candidate, last_seen=None) == Candidate(
            url=simulator.url,
            vendor="sennheiser",
            model="EW-DX EM 4",
            unique_id="1049471234",
            name="EW-DX EM 4",
            source="mdns",
        )
        async with DriverHarness("sennheiser") as hub:
            device = await hub.device(hub.add(candidate.url))
            assert device.id == "sennheiser-1049471234"


def announced(port: int, service_type: str = "_ssc._udp.local.", **properties: str) -> DiscoveredService:
    return DiscoveredService("127.0.0.1", port, service_type, "test", properties)


async def test_txt_keys_are_read_case_insensitively_and_other_products_are_not_probed() -> None:
    host = plugin_host("sennheiser")
    async with Ssc1Simulator("em6000", tick_s=0) as simulator:
        candidate = await identify_with(host, "sennheiser", announced(simulator.port, Model="EM6000", ID="a1b2"))
        assert candidate is not None
        assert (candidate.model, candidate.unique_id) == ("EM6000", "a1b2")  # no serial in its identity: TXT id

        before = simulator.received
        assert await identify_with(host, "sennheiser", announced(simulator.port, MODEL="KH 150")) is None
        assert await identify_with(host, "sennheiser", announced(simulator.port, "_ssc._tcp.local.")) is None
        assert simulator.received == before


async def test_a_service_that_does_not_answer_is_not_a_candidate() -> None:
    host = plugin_host("sennheiser")
    silent: Any = Ssc1Simulator("ewdx-em2", tick_s=0)
    async with silent:
        silent.silent = True
        with pytest.raises(NoAnswer):  # not "not ours": the hub asks again when it is announced again
            await identify_with(host, "sennheiser", announced(silent.port, model="EW-DX EM 2"))
