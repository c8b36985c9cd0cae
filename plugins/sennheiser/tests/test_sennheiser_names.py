"""Receivers given by host name: names whose DNS never answers keep only their own receivers waiting (SSCv2,
whose HTTP client resolves through the hub), and a name with an IPv6 and an IPv4 address finds an SSCv1
receiver on the second.

The lookups are answered by ``hub.testing.FakeDns`` on asyncio's own event loop, whose default pool calls
``socket.getaddrinfo`` (uvloop's would call libc's, and ask a real DNS server for the old resolution).
"""

from __future__ import annotations

import socket

import pytest
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator
from wmhub_sennheiser.simulator.ssc2 import Ssc2Simulator

from hub.drivers import DriverSettings
from hub.testing import HANGING_NAMES, DriverHarness, FakeDns, eventually, run_on_asyncio_loop

SETTINGS = DriverSettings(meter_rate_ms=100, io_timeout_s=2.0, offline_after_s=4.0)


def test_ssc2_names_whose_dns_never_answers_delay_no_other_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    dns = FakeDns({"rx.lan": ["127.0.0.1"]}, hanging=HANGING_NAMES)
    monkeypatch.setattr(socket, "getaddrinfo", dns)

    async def main() -> None:
        try:
            async with Ssc2Simulator(tick_s=0) as simulator, DriverHarness("sennheiser", settings=SETTINGS) as hub:
                url = simulator.url()
                for name in HANGING_NAMES:
                    hub.add(url.replace("//127.0.0.1:", f"//{name}:"))
                await eventually(lambda: dns.waiting, what="lookups hanging")  # the others are asked before rx.lan
                good = hub.add(url.replace("//127.0.0.1:", "//rx.lan:"))
                await hub.device(good, timeout=2 * SETTINGS.io_timeout_s)
        finally:
            dns.release()  # the old resolution's pool waits for its threads as the loop closes

    run_on_asyncio_loop(main())


@pytest.mark.parametrize("model", ["ewdx-em2", "em6000"])
def test_a_receiver_on_the_second_address_of_its_name(monkeypatch: pytest.MonkeyPatch, model: str) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns({"rx-dual.lan": ["::1", "127.0.0.1"]}))

    async def main() -> None:
        async with Ssc1Simulator(model, tick_s=0) as simulator:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as silent:
                try:  # on the first address, a host that is not the receiver: it takes datagrams, answers none
                    silent.bind(("::1", simulator.port))
                except OSError as exc:
                    pytest.skip(f"cannot listen on ::1 port {simulator.port}: {exc}")
                async with DriverHarness("sennheiser", settings=SETTINGS) as hub:
                    managed = hub.add(f"sennheiser-ssc://rx-dual.lan:{simulator.port}")
                    device = await hub.device(managed, timeout=3 * SETTINGS.io_timeout_s)
                    assert device.channels

    run_on_asyncio_loop(main())
