"""The hook implementations of the Shure plugin: a table of contents for the plugin.

Each driver is one :class:`DriverSpec` here, whole: its driver, and how its devices are found on the network
(the discovery module talks to receivers through the driver, so a spec naming both lives above them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from hub import hookimpl
from hub.drivers import DriverSettings
from hub.hookspecs import Candidate, DemoFleet, DiscoveredService, DiscoveryLoop, DriverSpec
from hub.model import Capabilities
from wmhub_shure import capabilities
from wmhub_shure.discovery import ZEROCONF_TYPES, confirm, is_shure_service, slp_loop
from wmhub_shure.driver import tcp_driver, udp_driver
from wmhub_shure.families import FAMILIES
from wmhub_shure.simulator.fleet import ShureDemoFleet

# The widest text field any Shure family reports (Axient Digital's CHAN_NAME and DEVICE_ID, families.py):
# the hub cuts longer device text to it.
SHURE_TEXT_WIDTH = 31
TCP_FAMILIES = tuple(key for key, family in FAMILIES.items() if not family.udp)


def identify_service(service: DiscoveredService, settings: DriverSettings) -> Awaitable[Candidate | None] | None:
    """A Shure receiver announced over mDNS or SLP, confirmed over its own protocol."""
    return confirm(service, settings) if is_shure_service(service) else None


DRIVERS: Final = (
    DriverSpec(
        scheme="shure",
        vendor="shure",
        families=TCP_FAMILIES,
        factory=tcp_driver,
        default_port=2202,
        description=(
            "Shure ULX-D, QLX-D, Axient Digital (AD4D/AD4Q, ANX4), SLX-D/SLX-D+, PSM1000 in-ear transmitters, "
            "Microflex Wireless (TCP 2202, family auto-detected)"
        ),
        text_width=SHURE_TEXT_WIDTH,
        zeroconf_types=ZEROCONF_TYPES,
        identify=identify_service,
        descriptors=1,  # one TCP connection per receiver
    ),
    DriverSpec(
        scheme="shure-uhfr",
        vendor="shure",
        families=("uhfr",),
        factory=udp_driver,
        default_port=2202,
        # micboard's strings; micboard issue 17 reports UHF-R never connecting, and no capture from a real UR4
        # confirms them (docs/families/shure.md)
        description="Shure UHF-R UR4S/UR4D (UDP 2202) - unverified: no transcript from a real receiver",
        text_width=SHURE_TEXT_WIDTH,
        descriptors=1,  # one UDP socket per receiver
    ),
)


@hookimpl
def register_drivers(register: Callable[[DriverSpec], None]) -> None:
    for spec in DRIVERS:
        register(spec)


@hookimpl
def device_capabilities(family: str | None) -> Capabilities | None:
    return capabilities.device_capabilities(family)


@hookimpl
def register_simulators(register: Callable[[DemoFleet], None]) -> None:
    register(ShureDemoFleet())


@hookimpl
def register_discovery_loops(register: Callable[[DiscoveryLoop], None]) -> None:
    register(slp_loop)
