"""The hook implementations of the Sennheiser plugin: a table of contents for the plugin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from hub import hookimpl
from hub.drivers import DriverSettings
from hub.hookspecs import Candidate, DemoFleet, DiscoveredService, DriverSpec
from hub.model import Capabilities
from wmhub_sennheiser import capabilities, discovery, g4_driver, iem_driver, ssc1_driver, ssc2_driver


def identify_service(service: DiscoveredService, settings: DriverSettings) -> Awaitable[Candidate | None] | None:
    """A device announcing SSC over mDNS, confirmed by asking its identity (SSCv1 over UDP)."""
    if service.service_type.lower() not in discovery.SERVICE_TYPES:
        return None
    return discovery.identify_ssc_service(service, settings)


DRIVERS = (
    # sennheiser-ssc://  SSCv1, JSON over UDP: the one that finds SSC devices on the network
    replace(ssc1_driver.SPEC, zeroconf_types=discovery.SERVICE_TYPES, identify=identify_service),
    g4_driver.SPEC,  # sennheiser-g4://   ew G3/G4/2000 Media Control Protocol
    iem_driver.SPEC,  # sennheiser-iem-g4:// ew IEM G4 transmitters, the same protocol
    ssc2_driver.SPEC,  # sennheiser-ssc2:// SSCv2, HTTPS REST + Server-Sent Events
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
    from wmhub_sennheiser.simulator.fleet import SennheiserDemoFleet
    from wmhub_sennheiser.simulator.ssc2 import Ssc2Fleet

    register(SennheiserDemoFleet())
    register(Ssc2Fleet(tick_s=1.0, tx_churn=0.02))  # a Spectera-style SSCv2 base station over HTTPS
