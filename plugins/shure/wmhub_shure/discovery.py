"""Finding Shure receivers: the SLP multicast they announce themselves with, and the TCP 2202 probe.

micboard only listens on 239.255.254.253:8427 and takes the device-class id after ``cd:``; the public
DCID map holds few entries, so an unknown DCID still becomes a candidate and the probe decides.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

from hub.drivers import DriverSettings
from hub.hookspecs import Candidate, DiscoveredService, NoAnswer
from wmhub_shure.driver import NoAnswerError, probe
from wmhub_shure.families import family_of_model

SLP_GROUP: Final = "239.255.254.253"
SLP_PORT: Final = 8427
CONTROL_PORT: Final = 2202
SLP_SERVICE: Final = "slp:shure"
ZEROCONF_TYPES: Final = ("_shure._tcp.local.",)

# From micboard's dcid.json (generated from Shure's DCIDMap.xml); only this entry is public in full.
DCID_MODELS: Final = {"03EC1770-FD5A-11E3-9967-0015C5F3F612": "ADTx"}
# micboard's model names in that map -> the MODEL a receiver reports (transmitters map to nothing)
MAP_MODELS: Final = {
    "ULX-DSingle": "ULXD4",
    "ULX-DDual": "ULXD4D",
    "ULX-DQuad": "ULXD4Q",
    "QLX-DSingle": "QLXD4",
    "AD4D": "AD4D",
    "AD4Q": "AD4Q",
    "UR4S": "UR4S",
    "UR4D": "UR4D",
    "PSM1KTx": "P10T",
}


def dcid_of(packet: bytes) -> str | None:
    """The device-class id in an SLP packet: the text after ``cd:`` in its comma-separated attributes."""
    text = packet.decode("latin-1")
    for attribute in text.split(","):
        if "cd:" in attribute:
            dcid = attribute.split("cd:")[-1]
            kept = "".join(char for char in dcid.strip() if char.isalnum() or char == "-")
            return kept.upper() or None
    return None


def service_from_slp(packet: bytes, source: str, control_port: int = CONTROL_PORT) -> DiscoveredService | None:
    """An SLP announcement -> the service to confirm, with what the DCID says about the model."""
    dcid = dcid_of(packet)
    if dcid is None:
        return None
    properties = {"dcid": dcid}
    map_model = DCID_MODELS.get(dcid)
    if map_model is not None:
        properties["map_model"] = map_model
        found = family_of_model(MAP_MODELS.get(map_model, map_model))
        if found is not None:
            properties["family"] = found[0].key
    return DiscoveredService(
        host=source, port=control_port, service_type=SLP_SERVICE, name=map_model or dcid, properties=properties
    )


class SlpListener(asyncio.DatagramProtocol):
    """Turns every SLP datagram into a reported service; ``control_port`` is where the probe goes."""

    def __init__(self, report: Callable[[DiscoveredService], None], control_port: int = CONTROL_PORT) -> None:
        self.report = report
        self.control_port = control_port
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        service = service_from_slp(data, addr[0], self.control_port)
        if service is None:
            self.ignored += 1
        else:
            self.report(service)


# Linux: 0 makes a socket receive only the groups it joined, on the interfaces it joined them on (by default it
# gets a group's datagrams from every interface where any socket of the machine joined it)
IP_MULTICAST_ALL: Final = 49


# bandit B104 waived: SLP multicast arrives on any interface unless one is named
def open_slp_socket(
    port: int = SLP_PORT,
    group: str | None = SLP_GROUP,
    interface: str = "0.0.0.0",  # nosec B104
    interfaces: Sequence[str] | None = None,
) -> socket.socket:
    """A UDP socket bound to ``port`` that has joined ``group`` on ``interface`` (None: no join, for tests), or
    on each of ``interfaces`` (IPv4 addresses of this machine) and on no other: it is then bound to the group
    address, so nothing sent to the port's unicast addresses reaches it either."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if group and interfaces:
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            sock.bind((group, port))
        else:
            sock.bind(("" if group else interface, port))
        if group:
            for address in interfaces or [interface]:
                membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(address))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def slp_loop(
    report: Callable[[DiscoveredService], None],
    sock: socket.socket | None = None,
    interfaces: Sequence[str] | None = None,
) -> None:
    """Listen for SLP announcements until cancelled (the hub restarts the loop if it fails), on the hub's
    ``interfaces`` (discovery.interfaces) if it names any, else on every interface."""
    loop = asyncio.get_running_loop()
    listening = sock or open_slp_socket(interfaces=interfaces)
    transport, _ = await loop.create_datagram_endpoint(lambda: SlpListener(report), sock=listening)
    try:
        await asyncio.Event().wait()
    finally:
        transport.close()


async def _accepts(host: str, port: int, timeout_s: float) -> bool:
    """Whether ``host`` takes a TCP connection on ``port`` (asked only after a probe came back empty)."""
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def is_shure_service(service: DiscoveredService) -> bool:
    return service.service_type == SLP_SERVICE or service.service_type.rstrip(".").endswith("_shure._tcp.local")


async def confirm(service: DiscoveredService, settings: DriverSettings) -> Candidate | None:
    """Probe the candidate on its control port: only a device that answers GET MODEL/DEVICE_ID is offered.

    A port that does not take the connection, or takes it and answers nothing (a receiver still booting, an
    SLX-D with Controller Access off), raises NoAnswer, so the hub asks again later; one that answers as no
    receiver is not one (None).
    """
    port = service.port if service.service_type != SLP_SERVICE else service.port or CONTROL_PORT
    try:
        answer = await probe(service.host, port, settings.io_timeout_s)
    except NoAnswerError as silent:
        raise NoAnswer(f"{silent} (still starting? an SLX-D needs Controller Access set to Allow)") from silent
    if answer is None:
        if not await _accepts(service.host, port, settings.io_timeout_s):
            raise NoAnswer(f"nothing accepting connections on port {port}")
        return None
    model, name = answer
    netloc = service.host if port == CONTROL_PORT else f"{service.host}:{port}"
    return Candidate(
        url=f"shure://{netloc}",
        vendor="shure",
        model=model,
        unique_id=None,
        name=name,
        source="slp" if service.service_type == SLP_SERVICE else "mdns",
    )
