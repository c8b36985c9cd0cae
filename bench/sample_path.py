"""The per-sample path in isolation: SAMPLE bytes -> Shure driver -> device handle -> state store.

``python -m bench.sample_path --receivers 400 --seconds 5`` builds the benchmark's receiver mix in one
process without sockets: each receiver's driver is fed the bytes its simulator would send every 100 ms,
into a state store carrying the subscriptions a running hub takes (MQTT state and meters, history and
alerts), drained every 0.5 s as their consumers would, each drain after a look at the held meters (the
store's ``merge_held_meters``, run whole). It prints the CPU per sample, which is
what the end-to-end benchmark's "hub CPU per merged sample" is made of besides sockets, MQTT and the store
tick. Repeatable to a few percent on an idle machine; use it to compare a change before and after.
``bench/instructions.sh`` counts the instructions per sample instead (callgrind): the same on any load.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from wmhub_shure.driver import ShureDriver
from wmhub_shure.families import family_of_model

import hub.state
from bench.fleet import BenchReceiver
from bench.run import MIX, plan
from hub.cli import _tune_garbage_collector
from hub.devices import DeviceHandle
from hub.drivers import DriverSettings, Endpoint
from hub.model import CHANNEL_FIELDS, DEVICE_FIELDS, METER_FIELDS
from hub.persistence.alerts import ALERT_FIELDS
from hub.state import StateStore

TICKS_PER_DRAIN = 5  # 5 x 100 ms: the subscriptions' 0.5 s coalescing window


def build(receivers: int, model: str | None = None) -> tuple[StateStore, list[tuple[ShureDriver, list[bytes], int]]]:
    store = StateStore()
    # the hub's own subscriptions with no board open (hub/mqtt/publisher.py, hub/persistence/services.py)
    store.subscribe((CHANNEL_FIELDS - METER_FIELDS) | DEVICE_FIELDS)
    store.subscribe(METER_FIELDS)
    store.subscribe(ALERT_FIELDS | {"name"})
    feeds = []
    for number, key in enumerate(plan(receivers, None) if model is None else [model] * receivers):
        receiver = BenchReceiver(key, seed=number)
        receiver._set_meter_rate(receiver.channels.values(), 100)  # as the hub's SET METER_RATE does
        found = family_of_model(receiver.profile.model)
        assert found is not None
        family, model, channels = found
        endpoint = Endpoint.parse(f"shure://127.0.0.1:{10000 + number}")
        handle = DeviceHandle(store, endpoint, "shure")
        driver = ShureDriver(endpoint, handle, DriverSettings(), udp=family.udp)
        driver._use_family(family, model, channels)
        handle.identify(unique_id=None, family=family.key, model=model, channel_count=channels)
        cycle = [receiver._encode_samples(phase) for phase in range(12)]
        feeds.append((driver, [data for data, _ in cycle], cycle[0][1]))
    return store, feeds


def feed(store: StateStore, feeds: list[tuple[ShureDriver, list[bytes], int]], more: Callable[[int], bool]) -> int:
    """Feed every receiver's 100 ms of samples, tick after tick, while ``more(tick)``; return the samples fed."""
    subscriptions = list(store._subscriptions)
    samples = 0
    tick = 0
    while more(tick):
        for driver, cycle, count in feeds:
            driver._on_data(cycle[tick % len(cycle)])
            samples += count
        tick += 1
        if tick % TICKS_PER_DRAIN == 0:
            store.merge_held_meters()
            for subscription in subscriptions:
                subscription.drain()
    return samples


def measure(store: StateStore, feeds: list[tuple[ShureDriver, list[bytes], int]], seconds: float) -> float:
    """CPU seconds per sample over about ``seconds`` of CPU time."""
    started = time.process_time()
    samples = feed(store, feeds, lambda _: time.process_time() - started < seconds)
    return (time.process_time() - started) / samples


async def run(options: argparse.Namespace) -> None:
    # inside a loop because drivers hold their reads for the store's look timer; the bench looks itself,
    # each look whole (a running hub cuts it into slices so state changes need not wait: the same work)
    hub.state.LOOK_SLICE_S = float("inf")
    store, feeds = build(options.receivers, options.model)
    _tune_garbage_collector()  # as wmhub run does
    if options.ticks is not None:
        samples = feed(store, feeds, lambda tick: tick < options.ticks)
        # the second figure shows the holding at work: a look merges each channel's newest sample only
        print(f"samples {samples} merged {store.updates_applied}")
        return
    best = min(measure(store, feeds, options.seconds) for _ in range(options.rounds))
    channels = sum(count for _, _, count in feeds)
    print(f"{options.receivers} receivers, {channels} channels: {best * 1e6:.2f} us CPU per sample (best round)")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=400)
    parser.add_argument("--model", choices=MIX, help="every receiver this model (default: the benchmark's mix)")
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU time per round")
    parser.add_argument("--rounds", type=int, default=5, help="the best round counts (others share the CPU)")
    parser.add_argument("--ticks", type=int, help="feed exactly this many ticks, untimed (bench/instructions.sh)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
