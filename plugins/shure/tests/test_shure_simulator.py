"""The simulator on the wire, seen by raw clients: what a receiver would send, byte for byte."""

from __future__ import annotations

import asyncio
import sys

from wmhub_shure.protocol import Framer
from wmhub_shure.simulator import ShureSimulator

from hub.testing import eventually, interrupt


class RawClient:
    """A bare TCP client that collects every message body the simulator sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = Framer()
        self.messages: list[str] = []
        self.task = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2.0)
        return cls(reader, writer)

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            self.messages.extend(body.decode().strip() for body in self.framer.feed(data))

    def send(self, text: str) -> None:
        self.writer.write(text.encode())

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()

    async def wait_for(self, message: str) -> None:
        await eventually(lambda: message in self.messages, 2.0, repr(message))


async def test_replies_are_padded_like_the_device_and_unknowns_get_err() -> None:
    async with ShureSimulator("ad4d", seed=1) as sim:
        client = await RawClient.connect(sim.port)
        try:
            sim.set_name(1, "Lead Vox")
            client.send("< GET 1 CHAN_NAME >< GET 1 NO_SUCH_THING >< GET FW_VER >< GET 1 FREQUENCY >")
            await client.wait_for("REP 1 CHAN_NAME {Lead Vox" + " " * 23 + "}")
            await client.wait_for("REP ERR")
            await client.wait_for("REP FW_VER {1.1.43.0" + " " * 16 + "}")
            await client.wait_for(f"REP 1 FREQUENCY {round(sim.channels[1].values['frequency_mhz'] * 1000):07d}")
        finally:
            await client.close()


async def test_every_client_hears_every_change_and_samples_follow_the_meter_rate() -> None:
    async with ShureSimulator("ulxd4d") as sim:
        first, second = await RawClient.connect(sim.port), await RawClient.connect(sim.port)
        try:
            first.send("< SET 2 CHAN_NAME {Vox 2} >< SET 2 AUDIO_MUTE ON >< SET 0 METER_RATE 00100 >")
            for client in (first, second):
                await client.wait_for("REP 2 CHAN_NAME {Vox 2   }")
                await client.wait_for("REP 2 AUDIO_MUTE ON")
                await client.wait_for("REP 1 METER_RATE 00100")
            sim.set_tx_present(1, False)  # pushed without being asked
            await second.wait_for("REP 1 TX_TYPE UNKN")
            await second.wait_for("REP 1 BATT_BARS 255")
            loop = asyncio.get_running_loop()
            started, already = loop.time(), sum(m.startswith("SAMPLE 1 ") for m in second.messages)
            await eventually(
                lambda: sum(m.startswith("SAMPLE 1 ") for m in second.messages) >= already + 5, 3.0, "samples"
            )
            assert loop.time() - started >= 0.35  # five more samples at 100 ms cannot arrive faster
            first.send("< SET 0 METER_RATE 0 >")
            await first.wait_for("REP 2 METER_RATE 00000")
        finally:
            await first.close()
            await second.close()
        await eventually(lambda: len(sim.closed_clients) == 2, what="both clients gone")
        assert [record.metering_left_on for record in sim.closed_clients] == [False, False]


async def test_uhfr_speaks_star_framing_over_udp() -> None:
    async with ShureSimulator("ur4s") as sim:
        received: asyncio.Queue[bytes] = asyncio.Queue()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                received.put_nowait(data)

        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", sim.port))
        try:
            transport.sendto(b"* GET 1 CHAN_NAME *")
            assert await asyncio.wait_for(received.get(), 2.0) == b"* REPORT 1 CHAN_NAME Mic1 *"
            transport.sendto(b"* METER 1 ALL 003 *")
            sample = await asyncio.wait_for(received.get(), 2.0)
            assert sample.startswith(b"* SAMPLE 1 ALL AX ")
            assert sim.channels[1].meter_rate_ms == 90
        finally:
            transport.close()


async def test_command_line_starts_many_receivers_prints_them_and_stops_on_ctrl_c() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wmhub_shure.simulator", "--family", "slxd4d", "--count", "3", "--animate",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        lines = [await asyncio.wait_for(process.stdout.readline(), 10.0) for _ in range(3)]
        urls = [line.decode().split()[1] for line in lines]
        assert all(url.startswith("shure://127.0.0.1:") for url in urls) and len(set(urls)) == 3
        client = await RawClient.connect(int(urls[2].rsplit(":", 1)[1]))
        client.send("< GET MODEL >")
        await client.wait_for("REP MODEL {SLXD4D" + " " * 26 + "}")
        await client.close()
    finally:
        status = await interrupt(process)
    assert status == 0 and await process.stderr.read() == b""


async def test_animation_moves_meters_drains_batteries_and_switches_transmitters() -> None:
    """What the demo's receivers do on their own: a hub watching them sees a live stage."""
    async with ShureSimulator("ulxd4q", seed=2) as sim:
        first = {index: dict(channel.values) for index, channel in sim.channels.items()}
        switched_off: set[int] = set()
        sim.animate(interval_s=0.005, tx_off_chance=0.2)

        def changed(field: str) -> bool:
            return any(channel.values.get(field) != first[index][field] for index, channel in sim.channels.items())

        def some_transmitter_off_then_on() -> bool:
            switched_off.update(index for index, channel in sim.channels.items() if not channel.tx_on)
            return any(sim.channels[index].tx_on for index in switched_off)

        await eventually(lambda: changed("rf_dbm") and changed("audio_dbfs"), what="meters moving")
        await eventually(lambda: changed("battery_runtime_min"), what="a battery draining")
        await eventually(some_transmitter_off_then_on, what="a transmitter switched off and on again")
        for channel in sim.channels.values():
            if channel.tx_on:
                assert -90 <= channel.values["rf_dbm"] <= -35 and -48 <= channel.values["audio_dbfs"] <= -6


async def test_requests_a_receiver_refuses_are_answered_err_and_change_nothing() -> None:
    async with ShureSimulator("ulxd4d", seed=4) as sim:
        before = {index: dict(channel.values) for index, channel in sim.channels.items()}
        client = await RawClient.connect(sim.port)
        try:
            refused = [
                "< SET FLASH MAYBE >",  # not ON or OFF
                "< SET 9 CHAN_NAME {Nine} >",  # a dual receiver has no channel 9
                "< SET 1 METER_RATE 00010 >",  # faster than the 50 ms the receiver allows
                "< SET 0 CHAN_NAME {All} >",  # a name is per channel
                "< DO 1 CHAN_NAME >",  # no such verb
                "< GET >",  # not a request at all
            ]
            client.send("".join(refused))
            await eventually(lambda: client.messages.count("REP ERR") == len(refused), 2.0, "an ERR for each")
        finally:
            await client.close()
        assert {index: dict(channel.values) for index, channel in sim.channels.items()} == before
        assert all(channel.meter_rate_ms == 0 for channel in sim.channels.values())
