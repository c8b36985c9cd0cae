"""Discovery over a venue's day (an outside audit): a receiver announced while still booting is found once it
answers; candidates carry when they were last seen, follow a device that moved, and go when it says goodbye
or is not seen for CANDIDATE_TTL_S, across restarts too; hostile announcements (unusable names, huge TXT
records, addresses no receiver has, floods) cost at most a bounded amount and never stop discovery."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator

from hub import hookimpl
from hub.clock import SimulatedClock
from hub.discovery import PROBE_BACKLOG, PROBE_CONCURRENCY, RETRY_BASE_S, SWEEP_S, Discovery
from hub.drivers import DriverSettings
from hub.hookspecs import Candidate, DiscoveredService, NoAnswer
from hub.persistence.testing import open_simulated
from hub.records import CANDIDATE_TTL_S, NotFoundError, Source
from hub.testing import PROBE_SETTINGS, eventually, plugin_host


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ssc(port: int, name: str = "EM4 rack 2") -> DiscoveredService:
    return DiscoveredService("127.0.0.1", port, "_ssc._udp.local.", name, {"model": "EW-DX EM 4"})


async def test_a_receiver_announced_before_it_answers_becomes_a_candidate_once_it_does() -> None:
    clock = SimulatedClock()
    discovery = Discovery(plugin_host("sennheiser"), PROBE_SETTINGS, clock=clock)
    port = free_udp_port()
    url = f"sennheiser-ssc://127.0.0.1:{port}"
    try:
        discovery.report(ssc(port))  # still booting: nothing answers on its port
        await asyncio.sleep(PROBE_SETTINGS.io_timeout_s + 0.5)  # the probe gives up
        async with Ssc1Simulator("ewdx-em4", port=port, tick_s=0) as receiver:
            discovery.report(ssc(port))  # announced again at once: too soon, the back-off holds
            await asyncio.sleep(0.3)  # a probe goes out as the report spawns it: one would have arrived by now
            assert url not in discovery.candidates and receiver.received == 0

            def announced_after_the_back_off() -> Candidate | None:
                # on a loaded machine the first probe may give up only now, its back-off counted from then:
                # the clock moves on by the back-off until one more announcement is probed
                candidate = discovery.candidates.get(url)
                if candidate is None:
                    clock.advance(RETRY_BASE_S)
                    discovery.report(ssc(port))
                return candidate

            candidate = await eventually(announced_after_the_back_off, 10, "the booted receiver")
            assert candidate.model == "EW-DX EM 4" and candidate.last_seen == clock.now()
    finally:
        await discovery.stop()


async def test_an_mdns_receiver_announced_before_it_answers_is_found_without_a_new_announcement() -> None:
    """The zeroconf browser says nothing while a service stays announced: discovery resolves it again."""
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    port = free_udp_port()
    announcer = AsyncZeroconf(interfaces=["127.0.0.1"])
    info = AsyncServiceInfo(
        "_ssc._udp.local.",
        "booting EM4._ssc._udp.local.",
        port=port,
        properties={"model": "EW-DX EM 4"},
        server="booting-em4.local.",
        addresses=[socket.inet_aton("127.0.0.1")],
    )
    await announcer.async_register_service(info)
    clock = SimulatedClock()
    discovery = Discovery(plugin_host("sennheiser"), PROBE_SETTINGS, interfaces=["127.0.0.1"], clock=clock)
    url = f"sennheiser-ssc://127.0.0.1:{port}"
    try:
        await discovery.start()
        await asyncio.sleep(4.0)  # resolved and probed once, unanswered
        assert url not in discovery.candidates
        async with Ssc1Simulator("ewdx-em4", port=port, tick_s=0):

            def found_by_a_sweep() -> Candidate | None:
                # a sweep at each look: on a loaded machine the first probe may give up only after a few, its
                # back-off counted from then (and each resolve takes real time)
                candidate = discovery.candidates.get(url)
                if candidate is None:
                    clock.advance(SWEEP_S)
                return candidate

            await eventually(found_by_a_sweep, 15, "the booted receiver")
    finally:
        await discovery.stop()
        await announcer.async_unregister_all_services()
        await announcer.async_close()


async def test_a_candidate_that_says_goodbye_is_gone() -> None:
    gone: list[str] = []
    discovery = Discovery(plugin_host("sennheiser"), PROBE_SETTINGS, interfaces=["127.0.0.1"], on_gone=gone.append)
    try:
        await discovery.start()
        async with Ssc1Simulator("ewdx-em4", tick_s=0, advertise=True) as receiver:
            await eventually(lambda: discovery.candidates.get(receiver.url), 8.0, "the candidate")
        await eventually(lambda: receiver.url in gone, 8.0, "its goodbye")
        assert receiver.url not in discovery.candidates
    finally:
        await discovery.stop()


def found(url: str, unique_id: str | None = "1049471234") -> Candidate:
    return Candidate(url=url, vendor="sennheiser", model="EW-DX EM 4", unique_id=unique_id)


async def test_candidates_show_last_seen_follow_a_moved_device_and_expire_across_restarts(tmp_path: Path) -> None:
    clock = SimulatedClock()
    store = await open_simulated(tmp_path, clock=clock)
    try:
        await store.candidates.offer(found("sennheiser-ssc://10.0.0.5:45"))
        clock.advance(30)
        await store.candidates.offer(found("sennheiser-ssc://10.0.0.9:45"))  # the same serial, another address
        await store.candidates.offer(found("sennheiser-ssc://10.0.0.7:45", unique_id=None))
        listed = store.candidates.all()
        assert [c.url for c in listed] == ["sennheiser-ssc://10.0.0.9:45", "sennheiser-ssc://10.0.0.7:45"]
        assert listed[0].last_seen == clock.now()
        await store.candidates.offer(found("sennheiser-ssc://10.0.0.4:45", unique_id="other"))
        store.candidates.gone("sennheiser-ssc://10.0.0.4:45")  # said goodbye
        clock.advance(CANDIDATE_TTL_S - 10)
        await store.candidates.offer(found("sennheiser-ssc://10.0.0.7:45", unique_id=None))  # still announcing
        clock.advance(20)  # 10.0.0.9 not seen for longer than CANDIDATE_TTL_S
        assert [c.url for c in store.candidates.all()] == ["sennheiser-ssc://10.0.0.7:45"]
        with pytest.raises(NotFoundError):
            await store.candidates.approve("sennheiser-ssc://10.0.0.9:45", source=Source.UI)
    finally:
        await store.close()
    store = await open_simulated(tmp_path, clock=clock)  # a restart soon after: still listed
    try:
        assert [c.url for c in store.candidates.all()] == ["sennheiser-ssc://10.0.0.7:45"]
    finally:
        await store.close()
    clock.advance(CANDIDATE_TTL_S + 60)  # a restart after a longer stop: not seen since, not listed
    store = await open_simulated(tmp_path, clock=clock)
    try:
        assert store.candidates.all() == []
        with pytest.raises(NotFoundError):
            await store.candidates.approve("sennheiser-ssc://10.0.0.7:45", source=Source.UI)
    finally:
        await store.close()


async def test_the_api_view_of_a_candidate_has_last_seen() -> None:
    from hub.web.schemas import CandidateView

    clock = SimulatedClock()
    store = await open_simulated(":memory:", clock=clock)
    try:
        await store.candidates.offer(found("sennheiser-ssc://10.0.0.5:45"))
        (record,) = store.candidates.all()
        view = CandidateView.model_validate(record, from_attributes=True)
        assert view.last_seen == clock.now()
    finally:
        await store.close()


async def test_a_service_name_zeroconf_refuses_is_skipped_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    from zeroconf.asyncio import AsyncZeroconf

    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    discovery = Discovery(plugin_host("sennheiser"), PROBE_SETTINGS)
    try:
        from zeroconf import ServiceStateChange

        with caplog.at_level(logging.DEBUG, logger="hub.discovery"):
            for index in range(20):
                name = f"\x1b[31mRX{index}\x1b[0m._ssc._udp.local."
                discovery._on_zeroconf_change(zeroconf.zeroconf, "_ssc._udp.local.", name, ServiceStateChange.Added)
            await asyncio.sleep(0.5)
            import gc

            gc.collect()  # a task that died with an exception says so when collected
            await asyncio.sleep(0)
    finally:
        await discovery.stop()
        await zeroconf.async_close()
        loop.set_exception_handler(None)
    assert errors == []
    lines = [r for r in caplog.records if "unusable names" in r.getMessage()]
    assert len(lines) == 1 and len(lines[0].getMessage()) < 300


class Silent:
    """A plugin whose devices never answer: every probe ends in NoAnswer after ``delay_s``, holding a socket."""

    def __init__(self, delay_s: float = 0.0, error: Exception | None = None) -> None:
        self.delay_s = delay_s
        self.error = error or NoAnswer("no answer")
        self.running = 0
        self.most = 0
        self.asked: list[DiscoveredService] = []

    @hookimpl
    def identify_service(self, service: DiscoveredService, settings: DriverSettings) -> Any:
        async def probe() -> None:
            self.asked.append(service)
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM):
                    await asyncio.sleep(self.delay_s)
            finally:
                self.running -= 1
            raise self.error

        return probe()


async def test_a_failed_probe_logs_the_service_shortly_not_its_txt_record(caplog: pytest.LogCaptureFixture) -> None:
    from hub.plugins import PluginHost

    host = PluginHost()
    host.register(Silent(error=RuntimeError("cannot parse")), name="silent")
    discovery = Discovery(host, PROBE_SETTINGS, clock=SimulatedClock())
    huge = {f"t{index:04d}": "x" * 250 for index in range(32)}  # an 8 KB TXT record
    with caplog.at_level(logging.DEBUG, logger="hub.discovery"):
        discovery.report(DiscoveredService("127.0.0.1", 4450, "_ssc._udp.local.", "n" * 5000, huge))
        await eventually(lambda: "failed in identify_service" in caplog.text, what="the log line")
    await discovery.stop()
    # the first such failure is a warning naming the plugin's bug (its traceback apart from the message)
    (line,) = [r.getMessage() for r in caplog.records if "127.0.0.1:4450" in r.getMessage()]
    assert len(line) < 400 and "_ssc._udp.local." in line and "x" * 20 not in line and "RuntimeError" in line


async def test_addresses_no_receiver_can_have_are_not_probed() -> None:
    from hub.plugins import PluginHost

    silent = Silent()
    host = PluginHost()
    host.register(silent, name="silent")
    discovery = Discovery(host, PROBE_SETTINGS, clock=SimulatedClock())
    for address in ("0.0.0.0", "::", "224.0.0.251", "239.255.254.253", "ff02::fb", "255.255.255.255"):  # nosec B104
        discovery.report(DiscoveredService(address, 45, "_ssc._udp.local.", "spoofed"))
    discovery.report(DiscoveredService("127.0.0.1", 45, "_ssc._udp.local.", "real"))
    await eventually(lambda: silent.asked, what="the real address probed")
    await asyncio.sleep(0.1)
    await discovery.stop()
    assert [service.host for service in silent.asked] == ["127.0.0.1"]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_flood_of_announcements_is_probed_a_few_at_a_time_and_the_hub_keeps_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 new services a second for 3 s, none answering (each probe holds a socket 2 s): the open files
    stay bounded, the known receiver stays online and the REST API answers throughout."""
    import aiohttp
    from wmhub_shure.simulator import ShureSimulator

    from hub.compose import compose_hub
    from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings

    silent = Silent(delay_s=2.0)
    host = plugin_host("shure")
    host.register(silent, name="silent")
    config = HubConfig(
        data_dir=tmp_path,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),  # no multicast here: the flood is reported directly
        http=HttpSettings(port=0),
    )
    async with ShureSimulator("ulxd4q") as receiver, compose_hub(config, host) as hub:
        await hub.add_device(receiver.url, source="test")
        await eventually(lambda: any(d.online for d in hub.store.devices.values()), what="the receiver online")
        base = f"http://127.0.0.1:{hub.web.port}"
        before = open_fds()
        most = before
        timeout = aiohttp.ClientTimeout(total=2.0)
        with caplog.at_level(logging.WARNING, logger="hub.discovery"):
            async with aiohttp.ClientSession(timeout=timeout) as client:
                for second in range(3):
                    for index in range(1000):
                        address = f"127.4.{second}.{index % 250 + 1}"
                        hub.discovery.report(DiscoveredService(address, 21300 + index // 250, "_ssc._udp.local."))
                        if index % 100 == 0:
                            await asyncio.sleep(0.05)
                            most = max(most, open_fds())
                    async with client.get(f"{base}/api/health") as response:
                        assert response.status == 200
                        health = await response.json()
                    assert health["devices_online"] == 1
                    most = max(most, open_fds())
        assert silent.most == PROBE_CONCURRENCY
        assert most - before <= PROBE_CONCURRENCY + 20
        assert hub.discovery.dropped >= 3000 - PROBE_BACKLOG - len(silent.asked) - PROBE_CONCURRENCY
        assert hub.discovery_dropped == hub.discovery.dropped > 0
        drops = [r for r in caplog.records if "dropping the excess" in r.getMessage()]
        assert 1 <= len(drops) <= 3 and all(len(r.getMessage()) < 300 for r in drops)
