"""The example plugin: one driver, controls for the channel name, and a demo device.

The "receiver" speaks a made-up line protocol over TCP: ``STATE\n`` answers
``<serial> <battery percent> <name>\n``; ``NAME <text>\n`` renames the channel and answers like STATE.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hub import hookimpl
from hub.drivers import DeviceSink, DriverSettings, Endpoint, PollingDriver
from hub.hookspecs import Candidate, DemoFleet, DiscoveredService, DriverSpec
from hub.model import (
    Capabilities,
    Command,
    CommandKind,
    CommandLimits,
    CommandResult,
    NotSupportedError,
    RefusedError,
    TextLimits,
)

# What the receiver reports and accepts: the hub checks commands against it and builds Home Assistant
# entities from it. A name is one line of printable ASCII (the protocol ends it at the newline).
CAPABILITIES = Capabilities(
    channel_fields=frozenset({"battery_percent", "name", "tx_present"}),
    commands={
        CommandKind.NAME: CommandLimits(
            text=TextLimits(max_length=16, pattern=r"^[ -~]+$", allowed="printable ASCII characters")
        )
    },
)


class ExampleDriver(PollingDriver):
    poll_interval_s = 0.2

    def __init__(self, endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> None:
        super().__init__(endpoint, sink, settings)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def _ask(self, line: str) -> tuple[str, int, str]:
        """One request and its answer: (serial, battery percent, name). The lock keeps one exchange at a time:
        the hub may call ``apply`` while ``poll`` waits for its answer."""
        assert self._streams is not None
        reader, writer = self._streams
        async with self._lock, asyncio.timeout(self.settings.io_timeout_s):
            writer.write(line.encode() + b"\n")
            reply = await reader.readline()
        if not reply:
            raise ConnectionError("the receiver closed the connection")
        serial, battery, name = reply.decode().rstrip("\n").split(" ", 2)
        return serial, int(battery), name

    def _report(self, battery: int, name: str) -> None:
        self.sink.update_channel(1, {"battery_percent": battery, "name": name, "tx_present": True})

    async def connect(self) -> None:
        async with asyncio.timeout(self.settings.io_timeout_s):
            self._streams = await asyncio.open_connection(self.endpoint.host, self.endpoint.port)
        serial, battery, name = await self._ask("STATE")
        # identify first: a report before it is dropped (the hub cannot know yet which device it is about)
        self.sink.identify(unique_id=serial, family="example", model="EX-1", channel_count=1)
        self._report(battery, name)

    async def poll(self) -> None:
        _, battery, name = await self._ask("STATE")
        self._report(battery, name)

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()

    async def apply(self, command: Command) -> CommandResult:
        if command.kind is not CommandKind.NAME:
            raise NotSupportedError(f"the example receiver cannot {command.kind.value}")
        _, battery, name = await self._ask(f"NAME {command.value}")
        # the hub takes the new state from reports, not from the result: report what the receiver answered
        self._report(battery, name)
        if name != command.value:  # the receiver kept another name (it strips spaces at the ends)
            raise RefusedError(f"the receiver holds the name {name!r}, not {command.value!r}")
        return CommandResult(ok=True, value=name)


# The example receiver announces itself over mDNS with its serial in the TXT record.
EXAMPLE_SERVICE = "_wmhub-example._tcp.local."


def identify_example(service: DiscoveredService, settings: DriverSettings) -> Candidate | None:
    if service.service_type != EXAMPLE_SERVICE:
        return None
    url = f"example://{service.host}:{service.port}"
    return Candidate(url=url, vendor="example", model="EX-1", unique_id=service.properties.get("serial"))


# One spec per kind of device, whole: how to reach it (the driver), what it announces, how to recognise it.
DRIVERS = (
    DriverSpec(
        scheme="example",
        vendor="example",
        families=("example",),
        factory=ExampleDriver,
        description="the example receiver: one channel, a line protocol over TCP",
        zeroconf_types=(EXAMPLE_SERVICE,),
        identify=identify_example,
    ),
)


@hookimpl
def register_drivers(register: Callable[[DriverSpec], None]) -> None:
    for spec in DRIVERS:
        register(spec)


@hookimpl
def device_capabilities(family: str | None) -> Capabilities | None:
    return CAPABILITIES if family == "example" else None


async def serve_example_receiver(serial: str = "EX0001", name: str = "Lead") -> asyncio.Server:
    """A simulated receiver on a free loopback port (for demo mode and tests)."""
    state = {"name": name, "battery": 87}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := (await reader.readline()).decode().strip():
            if line.startswith("NAME "):
                state["name"] = line[5:]
            writer.write(f"{serial} {state['battery']} {state['name']}\n".encode())
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


class ExampleFleet:
    """The demo (``wmhub run --demo``): one simulated receiver, added like any device by its URL."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None

    async def start(self) -> list[str]:
        self._server = await serve_example_receiver()
        return [f"example://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


@hookimpl
def register_simulators(register: Callable[[DemoFleet], None]) -> None:
    register(ExampleFleet())
