"""hub.names: device host names resolved on the hub's own threads, each lookup shared and bounded.

The lookups are answered by ``hub.testing.FakeDns``: no DNS server is asked.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from hub.names import THREADS, Address, resolve
from hub.testing import FakeDns, eventually


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDns]:
    fake = FakeDns(
        {"rx.lan": ["::1", "127.0.0.1", "127.0.0.1"]},
        hanging=[f"hang{number}.lan" for number in range(THREADS - 1)],
    )
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield fake
    fake.release()


async def test_every_address_in_order_once_and_a_literal_without_a_lookup(dns: FakeDns) -> None:
    assert await resolve("RX.lan", 2202, socket.SOCK_DGRAM, 1.0) == [
        Address(socket.AF_INET6, ("::1", 2202, 0, 0)),
        Address(socket.AF_INET, ("127.0.0.1", 2202)),
    ]
    assert [address.host for address in await resolve("rx.lan", 2202, socket.SOCK_STREAM, 1.0, socket.AF_INET)] == [
        "127.0.0.1"
    ]
    assert await resolve("192.0.2.7", 53, socket.SOCK_DGRAM, 1.0) == [Address(socket.AF_INET, ("192.0.2.7", 53))]
    assert "192.0.2.7" not in dns.asked
    with pytest.raises(socket.gaierror):
        await resolve("nosuch.lan", 2202, socket.SOCK_STREAM, 1.0)


async def test_hanging_names_time_out_share_one_lookup_each_and_hold_up_no_other(dns: FakeDns) -> None:
    hanging = sorted(dns.hanging)
    waiters = [asyncio.ensure_future(resolve(name, 2202, socket.SOCK_STREAM, 0.3)) for name in hanging]
    await eventually(lambda: dns.waiting == len(hanging), what="every hanging lookup running")
    # one thread left of the hub's: the other names get it, however many hang
    assert [address.host for address in await resolve("rx.lan", 2202, socket.SOCK_STREAM, 1.0)] == ["::1", "127.0.0.1"]
    for waiter in waiters:
        with pytest.raises(TimeoutError, match=r"^no answer from DNS for hang\d+\.lan within 0\.3 s$"):
            await waiter
    # a retry joins the lookup still running rather than taking another thread
    with pytest.raises(TimeoutError):
        await resolve(hanging[0], 2202, socket.SOCK_STREAM, 0.1)
    assert dns.asked[hanging[0]] == 1
    # once libc gives up, the failure is the waiter's, and the next attempt asks again
    dns.release()
    await eventually(lambda: dns.waiting == 0, what="the hanging lookups ended")
    with pytest.raises(socket.gaierror):
        await resolve(hanging[0], 2202, socket.SOCK_STREAM, 1.0)
    assert dns.asked[hanging[0]] == 2


BROKER_STOP = textwrap.dedent(
    """
    import asyncio, socket
    from hub.mqtt.brokers import BrokerAddress
    from hub.mqtt.client import MqttClient
    from hub.testing import FakeDns, eventually

    dns = FakeDns(hanging=["hang-broker.lan"])  # never released
    socket.getaddrinfo = dns

    async def main():
        client = MqttClient(
            BrokerAddress("hang-broker.lan", 1883), "c-hang", on_message=lambda t, p, r: None, connect_timeout=0.2
        )
        client.start()
        await eventually(lambda: dns.waiting, what="the broker's lookup hanging")
        await client.stop()
        print("stopped", flush=True)

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:  # its pool calls socket.getaddrinfo
        runner.run(main())
    """
)


def test_a_broker_name_whose_dns_never_answers_does_not_hold_the_stop() -> None:
    done = subprocess.run([sys.executable, "-c", BROKER_STOP], capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "stopped"), done.stderr[-2000:]
