"""A number of thousands of digits in a receiver's message, through a real socket: CPython's int() refuses
more than 4,300 digits (ValueError) and a few hundred make a float overflow. Such a message is junk to be
counted, never a reason to drop the connection and lose what follows it in the same read."""

from __future__ import annotations

from wmhub_shure.simulator import ShureSimulator

from hub.drivers import DriverSettings
from hub.testing import DriverHarness, eventually

FAST = DriverSettings(meter_rate_ms=100, io_timeout_s=0.5, offline_after_s=1.0)
HUGE = b"9" * 4301


async def test_huge_channel_index_and_frequency_are_counted_and_the_connection_stays() -> None:
    async with ShureSimulator("ad4q", seed=11) as sim, DriverHarness("shure", settings=FAST) as hub:
        managed = hub.add(sim.url)
        device_id = (await hub.device(managed)).id
        before = managed.handle.protocol_errors
        # one read: the junk first, then what the receiver really says
        sim.send_garbage(
            b"< REP " + HUGE + b" CHAN_NAME {x} >"
            b"< REP 1 RSSI " + HUGE + b" -080 >"
            b"< REP 1 FREQUENCY 1" + b"0" * 400 + b" >"
            b"< REP 1 CHAN_NAME {After} >< REP 1 FREQUENCY 0550125 >"
        )

        def channel_one() -> tuple[str | None, float | None] | None:
            device = hub.store.get(device_id)
            channel = device.channels[0] if device and device.channels else None
            return (channel.name, channel.frequency_mhz) if channel else None

        await eventually(lambda: channel_one() == ("After", 550.125), what="the messages after the junk applied")
        assert managed.supervisor.reconnects == 0
        assert (await hub.device(managed)).online
        # the channel and the antenna index are unreadable messages; a frequency too large to be one is unknown
        assert managed.handle.protocol_errors == before + 2


async def test_huge_address_octet_leaves_the_address_unknown_and_the_connection_up() -> None:
    async with ShureSimulator("slxd4+", seed=12) as sim, DriverHarness("shure", settings=FAST) as hub:
        managed = hub.add(sim.url)
        device_id = (await hub.device(managed)).id

        def address() -> str | None:
            device = hub.store.get(device_id)
            return device.ip_address if device else None

        # the driver asks for the address once identified: its answer must not overtake what the test sends
        await eventually(lambda: address() == "127.0.0.1", what="the receiver's own address read")
        tail = b" 255.255.255.000 000.000.000.000 00:0E:DD:45:60:EB >"
        sim.send_garbage(
            b"< REP NET_SETTINGS SC AUTO 192.168.001." + HUGE + tail
            + b"< REP NET_SETTINGS SC AUTO 192.168.001.025" + tail
        )  # fmt: skip
        await eventually(lambda: address() == "192.168.1.25", what="the readable address after the junk one")
        assert managed.supervisor.reconnects == 0
        assert (await hub.device(managed)).online
