"""``python -m wmhub_shure.simulator --family ad4q --port 0 [--count N] [--host 127.0.0.1] [--animate]``.

Prints one line per receiver (``<model> <url>``) once it listens, then runs until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from wmhub_shure.simulator.core import MODELS, start_many


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m wmhub_shure.simulator", description=__doc__)
    parser.add_argument("--family", default="ad4q", choices=sorted(MODELS), help="receiver model to simulate")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    parser.add_argument("--port", type=int, default=0, help="first port; 0 lets the OS choose each one")
    parser.add_argument("--count", type=int, default=1, help="number of receivers in this process")
    parser.add_argument("--animate", action="store_true", help="move meters, drain batteries, switch TX off")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    simulators = await start_many(args.family, args.count, args.host, args.port)
    for sim in simulators:
        if args.animate:
            sim.animate()
        print(f"{sim.profile.key} {sim.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.gather(*(sim.stop() for sim in simulators), return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
