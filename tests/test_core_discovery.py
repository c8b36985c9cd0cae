"""Discovery keeps going when a plugin fails: a discovery loop that raises is run again, and a plugin that
cannot identify a service leaves it to the others."""

import logging
from typing import Any

import pytest

from hub import hookimpl
from hub.clock import SimulatedClock
from hub.discovery import Discovery
from hub.drivers import Driver, DriverSettings
from hub.hookspecs import Candidate, DiscoveredService, DriverSpec, ReportService
from hub.plugins import PluginHost
from hub.testing import eventually, identify_with

SERVICE = DiscoveredService("127.0.0.1", 4440, "flaky-announce", "rack 1")


class FlakyAnnouncer:
    """A plugin whose listener fails the first time (as a multicast join can while an interface comes up)."""

    def __init__(self) -> None:
        self.attempts = 0

    @hookimpl
    def register_discovery_loops(self, register: Any) -> None:
        async def listen(report: ReportService) -> None:
            self.attempts += 1
            if self.attempts == 1:
                raise OSError("no such device")
            report(SERVICE)

        register(listen)


class Confused:
    def __init__(self) -> None:
        self.asked: list[DiscoveredService] = []

    @hookimpl
    def identify_service(self, service: DiscoveredService, settings: DriverSettings) -> Candidate | None:
        self.asked.append(service)
        raise RuntimeError("cannot parse the announcement")


class Knowing:
    @hookimpl
    def identify_service(self, service: DiscoveredService, settings: DriverSettings) -> Candidate | None:
        return Candidate(url=f"flaky://{service.host}:{service.port}", vendor="flaky", name=service.name)


async def test_a_failing_loop_is_retried_and_a_failing_identify_leaves_the_service_to_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    announcer, confused = FlakyAnnouncer(), Confused()
    host = PluginHost()
    host.register(announcer, name="announcer")
    for name, plugin in (("confused", confused), ("knowing", Knowing())):
        host.register(plugin, name=name)
    assert host.plugins_with("identify_service") == ["confused", "knowing"], "the confused plugin is asked first"
    clock = SimulatedClock()
    discovery = Discovery(host, DriverSettings(io_timeout_s=1.0), clock=clock)
    with caplog.at_level(logging.WARNING, logger="hub.discovery"):
        await discovery.start()
        try:
            await eventually(lambda: clock.sleeping == 1, what="the failed loop backs off")
            clock.advance(1.0)  # the back-off's first delay, jitter included
            candidate = await eventually(lambda: discovery.candidates.get("flaky://127.0.0.1:4440"))
        finally:
            await discovery.stop()
    assert candidate.name == "rack 1" and announcer.attempts == 2 and confused.asked == [SERVICE]
    assert "discovery loop of plugin announcer failed: no such device" in caplog.text


def identify_rack(service: DiscoveredService, settings: DriverSettings) -> Candidate | None:
    if service.service_type != "_rack._tcp.local.":
        return None
    return Candidate(url=f"rack://{service.host}:{service.port}", vendor="rack", name=service.name, source="mdns")


class RackPlugin:
    """Written to docs/plugins.md: what it announces and how it is recognised live on its DriverSpec."""

    @hookimpl
    def register_drivers(self, register: Any) -> None:
        register(
            DriverSpec(
                scheme="rack",
                vendor="rack",
                families=("rack",),
                factory=Driver,
                zeroconf_types=("_rack._tcp.local.",),
                identify=identify_rack,
            )
        )


class OlderAnnouncer:
    """Written before the DriverSpec carried discovery: the separate hooks still work."""

    @hookimpl
    def register_zeroconf_types(self, register: Any) -> None:
        register("_older._udp.local.")


async def test_discovery_declared_on_the_driver_spec_and_by_the_older_hooks_both_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = PluginHost()
    with caplog.at_level(logging.INFO, logger="hub.plugins"):
        for name, plugin in (("rack", RackPlugin()), ("older", OlderAnnouncer()), ("knowing", Knowing())):
            host.register(plugin, name=name)
    assert host.zeroconf_types() == ["_older._udp.local.", "_rack._tcp.local."]
    assert "plugin older implements register_zeroconf_types, which still works" in caplog.text
    assert "plugin knowing implements identify_service" in caplog.text

    rack = DiscoveredService("127.0.0.1", 7000, "_rack._tcp.local.", "rack 7")
    assert await identify_with(host, "rack", rack) == Candidate(
        url="rack://127.0.0.1:7000", vendor="rack", name="rack 7", source="mdns"
    )
    assert await identify_with(host, "rack", SERVICE) is None
    discovery = Discovery(host, DriverSettings(io_timeout_s=1.0))
    discovery.report(rack)
    discovery.report(SERVICE)
    await eventually(lambda: len(discovery.candidates) == 2, what="one candidate from each way of identifying")
    assert sorted(discovery.candidates) == ["flaky://127.0.0.1:4440", "rack://127.0.0.1:7000"]
    await discovery.stop()


class Garbled:
    """Hands back what its probe read, unchecked: an escape-laden model, a 100,000-character name."""

    @hookimpl
    def identify_service(self, service: DiscoveredService, settings: DriverSettings) -> Candidate | None:
        if service.name == "bad url":
            return Candidate(url="garbled://127.0.0.1:9\x1b[2J", vendor="garbled")
        return Candidate(
            url=f"garbled://{service.host}:{service.port}",
            vendor="garbled",
            model="\x1b[31mRED\x07",
            name="y" * 100_000,
        )


async def test_a_candidate_is_shown_as_device_text_and_one_with_an_unusable_url_not_at_all() -> None:
    host = PluginHost()
    host.register(Garbled(), name="garbled")
    discovery = Discovery(host, DriverSettings(io_timeout_s=1.0), clock=SimulatedClock())
    discovery.report(DiscoveredService("127.0.0.1", 4441, "garbled", "rack"))
    candidate = await eventually(lambda: discovery.candidates.get("garbled://127.0.0.1:4441"))
    await discovery.stop()
    assert candidate.model == "[31mRED" and candidate.name == "y" * 255
    [(plugin, what, identify)] = host.identifiers()
    bad_url = DiscoveredService("127.0.0.1", 4442, "garbled", "bad url")
    assert await host.identify(plugin, what, identify, bad_url, DriverSettings()) is None
