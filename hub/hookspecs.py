"""Every hook a wmhub plugin can implement: registration, discovery, polling (drivers) and control.

Hooks are plain functions (pluggy has no async support). A hook that needs I/O returns an awaitable,
which the hub awaits inside a timeout; an exception or overrun in one plugin is logged against that
plugin and never reaches another. docs/plugins.md documents each hook with a complete example plugin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import pluggy

from hub.drivers import DeviceSink, Driver, DriverSettings, Endpoint
from hub.model import Capabilities
from hub.text import DEFAULT_TEXT_WIDTH

hookspec = pluggy.HookspecMarker("wmhub")


@dataclass(frozen=True)
class DiscoveredService:
    """Something that answered on the network: an mDNS service, or a plugin's own announcement."""

    host: str
    port: int
    service_type: str
    name: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """A discovered endpoint a plugin recognised as one of its devices, ready to be approved."""

    url: str
    vendor: str
    model: str | None = None
    unique_id: str | None = None
    name: str | None = None
    source: str = ""
    # set by the hub (when it last saw the device announce itself, Unix time); a plugin leaves it None
    last_seen: float | None = None


class NoAnswer(Exception):
    """Raised by ``identify`` when the service it was asked about did not answer (a receiver still booting,
    a port not open yet): the hub asks again when the service is announced again, after a back-off. Returning
    None instead says "not one of ours", which the hub remembers for the rest of the discovery run."""


Identify = Callable[[DiscoveredService, DriverSettings], Candidate | Awaitable[Candidate | None] | None]


@dataclass(frozen=True)
class DriverSpec:
    """A kind of device a plugin can talk to, reached through URLs with ``scheme``: the whole plugin unit.

    ``factory(endpoint, sink, settings)`` builds one driver per device URL. ``text_width`` is the longest
    text any of the ``families`` reports in one field (name, model, firmware, warning): the hub cuts every
    device string to it at the sink. ``zeroconf_types`` are the DNS-SD service types (e.g.
    ``"_ssc._udp.local."``) such devices announce, which the hub's one shared browser watches;
    ``identify(service, settings)`` returns a :class:`Candidate` when a service seen on the network (by that
    browser or by the plugin's own discovery loop) is one of these devices (probing it if need be; it may
    return an awaitable), else None; it raises :class:`NoAnswer` when the device did not answer. The hub
    calls it timed and bounded as the plugin's code. ``check_url(endpoint)`` raises
    :class:`hub.drivers.EndpointError` for URL options the driver could never use (a malformed certificate
    fingerprint): the hub calls it wherever a device URL is taken (configuration, ``--check``, REST, MQTT), so
    the mistake is refused there instead of failing at every connect. ``descriptors`` is the most file
    descriptors one device's connection may hold at once (its sockets, its event stream beside its requests):
    under a low open-file limit the hub lets connections hold only what the limit leaves room for, and a device
    whose connection would pass it waits its turn (docs/deployment.md, "Limits").
    """

    scheme: str
    vendor: str
    families: tuple[str, ...]
    factory: Callable[[Endpoint, DeviceSink, DriverSettings], Driver]
    default_port: int | None = None
    description: str = ""
    text_width: int = DEFAULT_TEXT_WIDTH
    zeroconf_types: tuple[str, ...] = ()
    identify: Identify | None = None
    check_url: Callable[[Endpoint], None] | None = None
    descriptors: int = 1


ReportService = Callable[[DiscoveredService], None]
DiscoveryLoop = Callable[[ReportService], Awaitable[None]]


class DemoFleet(Protocol):
    """Simulated devices for ``wmhub run --demo``, speaking the real protocol on loopback."""

    async def start(self) -> list[str]:
        """Start the simulators; return the device URLs the hub should connect to."""
        ...

    async def stop(self) -> None: ...


@hookspec
def register_drivers(register: Callable[[DriverSpec], None]) -> None:
    """Declare the drivers this plugin provides: call ``register(DriverSpec(...))`` once per scheme."""


@hookspec
def register_zeroconf_types(register: Callable[[str], None]) -> None:
    """Older form of ``DriverSpec.zeroconf_types``, still honoured for plugins written against it."""


@hookspec
def register_discovery_loops(register: Callable[[DiscoveryLoop], None]) -> None:
    """Register coroutines that listen for devices by the plugin's own means (e.g. SLP multicast).

    Each loop is called with a ``report`` callback and runs until cancelled; the hub restarts a loop
    that fails, with backoff. Reported services go through every ``DriverSpec.identify`` like mDNS ones.
    A loop with a parameter ``interfaces`` is also given the IPv4 addresses of ``discovery.interfaces``
    (``wmhub discover --interface``), None for all: it must listen on those interfaces only.
    """


@hookspec
def identify_service(
    service: DiscoveredService, settings: DriverSettings
) -> Candidate | Awaitable[Candidate | None] | None:
    """Older form of ``DriverSpec.identify``, still honoured for plugins written against it."""


@hookspec
def device_capabilities(family: str | None, model: str | None) -> Capabilities | None:
    """What a device of ``family`` (and ``model``) reports and accepts; None if this plugin cannot say.

    Called only on the plugin that owns the device, when the device identifies itself. The hub checks every
    command against the answer before ``Driver.apply`` and builds Home Assistant entities from it; a device
    without capabilities gets every entity and only the plugin's own checks. A driver that learns a narrower
    range from its device replaces the answer for that device with ``DeviceSink.update_capabilities``.
    """


@hookspec
def register_simulators(register: Callable[[DemoFleet], None]) -> None:
    """Offer simulated devices for demo mode: call ``register(fleet)`` with a :class:`DemoFleet`."""
