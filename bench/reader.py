"""The least a Python hub can do with the side-by-side fleet: read every byte and nothing else.

    python -m bench.reader --receivers 250 [--imports]

Connects to the shared fleet's ULX-D Quads (``../shared/bench/shure_fleet.py``) on uvloop, as the hub does,
asks each for meters every 100 ms (``< SET 0 METER_RATE 00100 >``, the hub's pinned rate in ``bench.ab``) and
counts the bytes it reads, decoding none. ``bench.ab --floor`` measures this process beside micboard and the
hub: its CPU is what reading the same stream costs before any work, its RSS with ``--imports`` what the
libraries the hub is built on cost before any code of the hub runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from typing import cast

import uvloop

from bench.ab import fleet_addresses

PORT = 2202
# The hub's dependencies as its brief names them, and numpy for the frequency check (ADR 0011).
HUB_LIBRARIES = ("pydantic", "aiohttp.web", "paho.mqtt.client", "aiosqlite", "zeroconf", "pluggy", "numpy", "orjson")


class Counter(asyncio.Protocol):
    received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.WriteTransport, transport).write(b"< SET 0 METER_RATE 00100 >")

    def data_received(self, data: bytes) -> None:
        Counter.received += len(data)


async def read_fleet(receivers: int) -> None:
    loop = asyncio.get_running_loop()
    for address in fleet_addresses(receivers):
        await loop.create_connection(Counter, address, PORT)
    await asyncio.Event().wait()  # until the benchmark stops this process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--receivers", type=int, default=250)
    parser.add_argument("--imports", action="store_true", help="import the hub's libraries first")
    args = parser.parse_args()
    if args.imports:
        for name in HUB_LIBRARIES:
            importlib.import_module(name)
    uvloop.run(read_fleet(args.receivers))


if __name__ == "__main__":
    main()
