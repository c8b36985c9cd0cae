"""Discovery on loopback: SLP bytes -> service -> TCP probe -> Candidate; plus the plugin's registrations."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
from wmhub_shure.discovery import (
    SLP_GROUP,
    SLP_SERVICE,
    SlpListener,
    dcid_of,
    open_slp_socket,
    service_from_slp,
    slp_loop,
)
from wmhub_shure.simulator import ShureSimulator
from wmhub_shure.simulator.fleet import ShureDemoFleet

from hub.hookspecs import Candidate, DiscoveredService, NoAnswer
from hub.testing import DriverHarness, eventually, identify_with, plugin_host

# An SLP service reply as micboard sees it: comma-separated attributes, the DCID after "cd:"
SLP_PACKET = b"\x02\x07\x00\x00\x70\x00\x00\x00\x00\x00(cd:03EC1770-FD5A-11E3-9967-0015C5F3F612),(model=AD4Q)"


def test_dcid_is_taken_from_the_cd_attribute() -> None:
    assert dcid_of(SLP_PACKET) == "03EC1770-FD5A-11E3-9967-0015C5F3F612"
    assert dcid_of(b"no device class here") is None
    service = service_from_slp(SLP_PACKET, "127.0.0.1")
    assert service is not None and service.properties["map_model"] == "ADTx"


async def test_slp_packet_on_a_loopback_socket_becomes_a_probed_candidate() -> None:
    async with ShureSimulator("ad4q") as sim:
        reported: list[DiscoveredService] = []
        loop = asyncio.get_running_loop()
        sock = open_slp_socket(port=0, group=None, interface="127.0.0.1")
        transport, _ = await loop.create_datagram_endpoint(
            lambda: SlpListener(reported.append, control_port=sim.port), sock=sock
        )
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.sendto(SLP_PACKET, sock.getsockname())
            await eventually(lambda: reported, what="SLP announcement")
        finally:
            transport.close()
        (service,) = reported
        assert service.service_type == SLP_SERVICE and service.host == "127.0.0.1"
        candidate = await identify_with(plugin_host("shure"), "shure", service)
        assert candidate == Candidate(
            url=f"shure://127.0.0.1:{sim.port}",
            vendor="shure",
            model="AD4Q-A",
            name=sim.device["name"],
            source="slp",
        )


async def test_mdns_service_is_probed_and_strangers_are_refused() -> None:
    async def stranger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(stranger, "127.0.0.1", 0)
    stranger_port = server.sockets[0].getsockname()[1]
    host = plugin_host("shure")
    try:
        async with ShureSimulator("ulxd4q") as sim:
            mdns = DiscoveredService(host="127.0.0.1", port=sim.port, service_type="_shure._tcp.local.", name="ULXD4Q")
            candidate = await identify_with(host, "shure", mdns)
            assert candidate is not None and candidate.url == sim.url and candidate.source == "mdns"
        not_shure = DiscoveredService(host="127.0.0.1", port=stranger_port, service_type="_shure._tcp.local.")
        assert await identify_with(host, "shure", not_shure) is None
        other_type = DiscoveredService(host="127.0.0.1", port=stranger_port, service_type="_ssc._udp.local.")
        assert await identify_with(host, "shure", other_type) is None
    finally:
        server.close()
        await server.wait_closed()


async def test_plugin_registers_schemes_zeroconf_types_and_a_demo_fleet() -> None:
    host = plugin_host("shure")
    assert {"shure", "shure-uhfr"} <= set(host.drivers())
    assert "_shure._tcp.local." in host.zeroconf_types()
    assert [plugin for plugin, _ in host.collect("register_discovery_loops")] == ["shure"]
    ((_, fleet),) = host.collect("register_simulators")
    assert isinstance(fleet, ShureDemoFleet)
    fleet.interval_s = 0.05
    urls = await fleet.start()
    try:
        async with DriverHarness("shure") as hub:
            devices = [hub.add(url) for url in urls]
            found = [await hub.device(managed) for managed in devices]
            assert len({device.family for device in found}) == len(urls)
    finally:
        await fleet.stop()


async def test_an_in_ear_transmitter_that_acts_only_on_whole_lines_is_found() -> None:
    host = plugin_host("shure")
    async with ShureSimulator("p10t", seed=3) as p10t:
        p10t.lines_only = True  # as Shure's PSM1000 command strings describe: every message ends with CRLF
        mdns = DiscoveredService(host="127.0.0.1", port=p10t.port, service_type="_shure._tcp.local.")
        candidate = await identify_with(host, "shure", mdns)
        assert candidate is not None and candidate.url == p10t.url
        assert candidate.model == "ULX-D, QLX-D or PSM1000", "no MODEL: the families that report none, named"


async def test_a_receiver_that_takes_the_connection_but_answers_nothing_yet_is_asked_again_later() -> None:
    """A receiver still starting (or an SLX-D with Controller Access off) holds the probe's connection and says
    nothing: that is no answer (the hub asks again after a back-off), not "no receiver of ours" for the run."""
    host = plugin_host("shure")
    async with ShureSimulator("slxd4", seed=3) as starting:
        starting.silent = True
        mdns = DiscoveredService(host="127.0.0.1", port=starting.port, service_type="_shure._tcp.local.")
        with pytest.raises(NoAnswer, match="answered nothing"):
            await identify_with(host, "shure", mdns)
        starting.silent = False
        candidate = await identify_with(host, "shure", mdns)
        assert candidate is not None and candidate.model == "SLXD4"


async def test_slp_loop_limited_to_loopback_takes_announcements_to_the_group_there() -> None:
    reported: list[DiscoveredService] = []
    listening = open_slp_socket(port=0, interfaces=["127.0.0.1"])
    group, port = listening.getsockname()
    assert group == SLP_GROUP  # bound to the group: nothing sent to the port's unicast addresses arrives
    task = asyncio.ensure_future(slp_loop(reported.append, sock=listening, interfaces=["127.0.0.1"]))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            # out of the loopback interface only, as an announcement on the network that was chosen
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
            sender.sendto(SLP_PACKET, (SLP_GROUP, port))
            (service,) = await eventually(lambda: reported, what="the SLP announcement on loopback")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert service.host == "127.0.0.1" and service.properties["map_model"] == "ADTx"
