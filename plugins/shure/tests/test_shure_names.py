"""Receivers given by host name: a name whose DNS never answers keeps only its own device waiting.

The lookups are answered by ``hub.testing.FakeDns`` and the tests run on asyncio's own event loop, whose
default pool calls ``socket.getaddrinfo`` (uvloop's would call libc's directly, and ask a real DNS server):
so the hub's old resolution through that pool is answered by the fake too.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from wmhub_shure.simulator import ShureSimulator

from hub.drivers import DriverSettings
from hub.testing import HANGING_NAMES, DriverHarness, FakeDns, eventually, run_on_asyncio_loop

FAST = DriverSettings(meter_rate_ms=100, io_timeout_s=0.5, offline_after_s=2.0)


def test_names_whose_dns_never_answers_delay_no_other_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    dns = FakeDns({"rx.lan": ["127.0.0.1"]}, hanging=HANGING_NAMES)
    monkeypatch.setattr(socket, "getaddrinfo", dns)

    async def main() -> None:
        try:
            async with ShureSimulator("ulxd4", seed=1) as sim, DriverHarness("shure", settings=FAST) as hub:
                for name in HANGING_NAMES:
                    hub.add(f"shure://{name}")
                await eventually(lambda: dns.waiting, what="lookups hanging")  # the others are asked before rx.lan
                good = hub.add(f"shure://rx.lan:{sim.port}")
                await hub.device(good, timeout=3 * FAST.io_timeout_s)
                # and what runs in the loop's default pool (the frequency checks, ADR 0014) is not held up either
                async with asyncio.timeout(2.0):
                    assert await asyncio.to_thread(lambda: True)
                hanging = hub.manager.by_url["shure://hang0.lan"]
                await eventually(lambda: hanging.supervisor.reconnects >= 2, what="a hanging name tried again")
                assert hanging.supervisor.last_error == "no answer from DNS for hang0.lan within 0.5 s"
                assert dns.asked["hang0.lan"] == 1, "a retry joins the lookup still running for the name"
        finally:
            dns.release()  # the old resolution's pool waits for its threads as the loop closes

    run_on_asyncio_loop(main())


STOP = textwrap.dedent(
    """
    import asyncio, socket, sys
    from hub.testing import DriverHarness, FakeDns
    from hub.drivers import DriverSettings

    dns = FakeDns(hanging=["hang.lan"])  # never released
    socket.getaddrinfo = dns

    async def main():
        async with DriverHarness("shure", settings=DriverSettings(io_timeout_s=0.2)) as hub:
            device = hub.add("shure://hang.lan")
            while device.supervisor.reconnects < 1:
                await asyncio.sleep(0.01)
        print("stopped", flush=True)

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        runner.run(main())
    """
)


def test_a_name_whose_dns_never_answers_does_not_hold_the_stop() -> None:
    """asyncio's end waits for its default pool's threads, and the interpreter's for every pool's: a lookup
    stuck in libc must be on neither."""
    done = subprocess.run([sys.executable, "-c", STOP], capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "stopped"), done.stderr[-2000:]


@contextmanager
def _silent(host: str, port: int) -> Iterator[None]:
    """A UDP socket that takes datagrams and answers none: a host at that address that is not the receiver."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:  # no IPv6 on this machine's loopback, or the port taken there
            pytest.skip(f"cannot listen on {host} port {port}: {exc}")
        yield


def test_a_uhfr_receiver_on_the_second_address_of_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name with an IPv6 and an IPv4 address (IPv6 first, as getaddrinfo orders them), the receiver on the
    IPv4 one: UDP's connect cannot fail, so the silent first address must be left for the next."""
    dns = FakeDns({"rx-dual.lan": ["::1", "127.0.0.1"], "rx-gone.lan": ["::1", "127.0.0.2"]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    settings = DriverSettings(meter_rate_ms=100, io_timeout_s=2.0, offline_after_s=4.0)

    async def main() -> None:
        async with ShureSimulator("ur4d", seed=3) as sim:
            with _silent("::1", sim.port):
                async with DriverHarness("shure", settings=settings) as hub:
                    managed = hub.add(f"shure-uhfr://rx-dual.lan:{sim.port}")
                    device = await hub.device(managed, timeout=3 * settings.io_timeout_s)
                    assert (device.model, len(device.channels)) == ("UR4D", 2)
                    gone = hub.add(f"shure-uhfr://rx-gone.lan:{sim.port}")
                    await eventually(lambda: gone.supervisor.last_error, timeout=3 * settings.io_timeout_s)
                    assert gone.supervisor.last_error.endswith(
                        "(nor at its other addresses: ::1, 127.0.0.2, 1 s each)"
                    ), gone.supervisor.last_error

    run_on_asyncio_loop(main())
