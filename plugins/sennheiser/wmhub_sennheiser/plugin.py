"""The hook implementations of the Sennheiser plugin: a table of contents for the plugin.

Each driver is one :class:`DriverSpec` here, whole: its driver, and how its devices are found on the network
(the discovery modules talk to devices through the drivers, so a spec naming both lives above them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from hub import hookimpl
from hub.drivers import DriverSettings
from hub.hookspecs import Candidate, DemoFleet, DiscoveredService, DriverSpec
from hub.model import Capabilities
from wmhub_sennheiser import capabilities, discovery, g4_driver, iem_driver, mcp, ssc1_driver, ssc2_driver
from wmhub_sennheiser.families import FAMILIES


def identify_service(service: DiscoveredService, settings: DriverSettings) -> Awaitable[Candidate | None] | None:
    """A device announcing SSC over mDNS, confirmed by asking its identity (SSCv1 over UDP)."""
    if service.service_type.lower() not in discovery.SERVICE_TYPES:
        return None
    return discovery.identify_ssc_service(service, settings)


DRIVERS: Final = (
    DriverSpec(
        scheme=ssc1_driver.SCHEME,
        vendor=ssc1_driver.VENDOR,
        families=tuple(family.label for family in FAMILIES),
        factory=ssc1_driver.Ssc1Driver,
        default_port=ssc1_driver.DEFAULT_PORT,
        description="SSCv1, JSON over UDP: EW-DX (legacy mode), Digital 6000 EM 6000, SpeechLine DW",
        # SSCv1 is the protocol that finds SSC devices on the network
        zeroconf_types=discovery.SERVICE_TYPES,
        identify=identify_service,
        descriptors=1,  # one UDP socket per receiver
    ),
    DriverSpec(
        scheme=g4_driver.SCHEME,
        vendor=g4_driver.VENDOR,
        families=(g4_driver.FAMILY,),
        factory=g4_driver.G4Driver,
        check_url=g4_driver.check_url,
        default_port=mcp.PORT,
        description="ew G3/G4/2000 Media Control Protocol, ASCII over UDP 53212 (add by address)",
        descriptors=1,  # at most one: the UDP socket of its local port, shared by every receiver on that port
    ),
    DriverSpec(
        scheme=iem_driver.SCHEME,
        vendor="sennheiser",
        families=(iem_driver.FAMILY,),
        factory=iem_driver.IemG4Driver,
        check_url=g4_driver.check_url,
        default_port=mcp.PORT,
        description="ew IEM G4 transmitters (SR 2050 IEM, SR 300 IEM G4), Media Control Protocol over UDP 53212",
        descriptors=1,  # as sennheiser-g4: the shared socket of its local port
    ),
    DriverSpec(
        scheme=ssc2_driver.SCHEME,
        vendor="sennheiser",
        families=("spectera", "tcc-m", "ew-dx", "sscv2"),
        factory=ssc2_driver.Ssc2Driver,
        check_url=ssc2_driver.check_url,
        default_port=ssc2_driver.DEFAULT_PORT,
        description="SSCv2, HTTPS REST + Server-Sent Events: Spectera, TCC M, EW-DX in secure mode",
        descriptors=ssc2_driver.CONNECTIONS,  # the event stream and one request at a time
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
    # imported here: the simulators need cryptography (a certificate for SSCv2), 10 MB of memory that a
    # hub without --demo never uses
    from wmhub_sennheiser.simulator.fleet import DEMO_SPECTERA_KHZ, SennheiserDemoFleet
    from wmhub_sennheiser.simulator.ssc2 import Ssc2Fleet

    register(SennheiserDemoFleet())
    spectera = Ssc2Fleet(tick_s=1.0, tx_churn=0.02)  # a Spectera-style SSCv2 base station over HTTPS
    for simulator in spectera.simulators:
        simulator.rf_khz = dict.fromkeys(simulator.rf_khz, DEMO_SPECTERA_KHZ)
    register(spectera)
