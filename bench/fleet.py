"""One load-generator process: many simulated Shure receivers, live meters and timed state changes.

``python -m bench.fleet --models ulxd4q,ad4q,ur4d --changes-per-s 10 --seed 1`` starts one receiver per
model given, then talks to the benchmark on stdout, one JSON object per line:

- ``{"ready": [[model, url, channels], ...]}`` once every receiver listens;
- ``{"stats": {"t": wall time, "samples": SAMPLE lines sent so far, "clients": connected clients,
  "queued": bytes written but not yet taken by the kernel}}`` every second;
- ``{"change": [url, channel, {field: value the hub must show}, wall time of the change]}`` for every state
  change it makes (a name, a battery step, a transmitter switched off or on).

One ticker sends every receiver's SAMPLE lines, a tenth of the receivers every 10 ms, instead of one
timer task per receiver: thousands of timer tasks would load the generator, which shares the machine
with the hub being measured, and a spread-out stream is what a real rack of receivers sends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from itertools import cycle
from typing import Any, Final

import orjson
from wmhub_shure.simulator import ShureSimulator
from wmhub_shure.simulator.core import SimChannel

TICK_S: Final = 0.01
GROUPS: Final = 10  # GROUPS x TICK_S = the 100 ms metering interval
# A level wobble that repeats: each sample moves by a few dB, so the hub's meter throttle really publishes.
RATE_MS: Final = 100
CYCLE: Final = 36  # the wobble repeats every 12 samples, the audio pattern every 9
SETTLE_S: Final = 1.0  # least time between two changes on one channel
WOBBLE: Final = (0, 3, 5, 2, -1, -4, -2, 1, 4, 6, 3, -3)


class BenchReceiver(ShureSimulator):
    """A simulator whose SAMPLE lines come from the fleet's shared ticker, counted as they are sent.

    At the benchmark's 100 ms rate the wobbling meters repeat every ``CYCLE`` samples, so the encoded
    bytes of a whole cycle are built once and reused until the receiver's state changes: the generator
    then costs little more than its socket writes, which leaves the machine's CPU to the hub under test.
    """

    samples_sent = 0
    _cycle: list[tuple[bytes, int]] | None = None
    _cycle_key: tuple[tuple[int, bool], ...] = ()

    async def _meter_loop(self) -> None:
        return  # the fleet ticker samples this receiver

    def set_channel(self, index: int, *, echo: bool = True, **changes: Any) -> None:
        self._cycle = None
        super().set_channel(index, echo=echo, **changes)

    def send_samples(self, tick: int) -> None:
        if not self.peers or self.silent:
            return
        key = tuple((channel.meter_rate_ms, channel.tx_on) for channel in self.channels.values())
        if all(rate in (0, RATE_MS) for rate, _ in key):
            if self._cycle is None or key != self._cycle_key:
                self._cycle = [self._encode_samples(phase) for phase in range(CYCLE)]
                self._cycle_key = key
            data, count = self._cycle[tick % CYCLE]
        else:
            data, count = self._encode_samples(tick, due_only=True)
        if count:
            self.samples_sent += count * len(self.peers)
            for peer in list(self.peers):
                peer.send(data)

    def _encode_samples(self, tick: int, due_only: bool = False) -> tuple[bytes, int]:
        now = time.monotonic()
        lines = []
        for channel in self.channels.values():
            rate = channel.meter_rate_ms
            if not rate:
                continue
            if due_only:
                if channel.next_sample > now + TICK_S:
                    continue
                channel.next_sample = max(channel.next_sample + rate / 1000, now)
            if channel.tx_on:
                _wobble(channel, tick)
            lines.append(self._sample(channel))
        return b"".join(self._message(line) for line in lines), len(lines)

    def queued_bytes(self) -> int:
        total = 0
        for peer in self.peers:
            transport = getattr(peer, "transport", None)
            if transport is not None and hasattr(transport, "get_write_buffer_size"):  # TCP, on either event loop
                total += transport.get_write_buffer_size()
        return total


def _wobble(channel: SimChannel, tick: int) -> None:
    values = channel.values
    step = WOBBLE[(tick + channel.index * 5) % len(WOBBLE)]
    if "rf_dbm" in values:
        values["rf_dbm"] = -60 - channel.index + step
    if "audio_dbfs" in values:
        values["audio_dbfs"] = -24 - 6 * ((tick // 3 + channel.index) % 3)


class Fleet:
    def __init__(self, receivers: list[BenchReceiver], changes_per_s: float, seed: int) -> None:
        self.receivers = receivers
        self.changes_per_s = changes_per_s
        self._random = random.Random(seed)
        self._sequence = seed * 1_000_000
        self._last_change: dict[tuple[str, int], float] = {}

    async def run(self) -> None:
        await asyncio.gather(self._tick(), self._report(), self._change())

    async def _tick(self) -> None:
        groups = [self.receivers[group::GROUPS] for group in range(GROUPS)]
        loop = asyncio.get_running_loop()
        started = loop.time()
        for tick in range(sys.maxsize):
            for receiver in groups[tick % GROUPS]:
                receiver.send_samples(tick // GROUPS)
            # sleep to the next slot of a fixed grid, so time spent sending does not stretch the interval
            await asyncio.sleep(max(0.0, started + (tick + 1) * TICK_S - loop.time()))

    async def _report(self) -> None:
        while True:
            emit(
                {
                    "stats": {
                        "t": time.time(),
                        "samples": sum(receiver.samples_sent for receiver in self.receivers),
                        "clients": sum(len(receiver.peers) for receiver in self.receivers),
                        "queued": sum(receiver.queued_bytes() for receiver in self.receivers),
                    }
                }
            )
            await asyncio.sleep(1.0)

    async def _change(self) -> None:
        if self.changes_per_s <= 0:
            return
        kinds = cycle(("name", "battery", "tx"))
        interval = 1.0 / self.changes_per_s
        while True:
            await asyncio.sleep(interval * (0.5 + self._random.random()))
            receiver = self._random.choice(self.receivers)
            if not receiver.peers:
                continue
            channel = self._random.choice(list(receiver.channels.values()))
            # a second change within the hub's coalescing window would hide the first one from the subscriber
            key = (receiver.url, channel.index)
            if time.monotonic() - self._last_change.get(key, -SETTLE_S) < SETTLE_S:
                continue
            self._last_change[key] = time.monotonic()
            made_at = time.time()  # before the change is written, so no part of the trip goes uncounted
            expected = self._make_change(receiver, channel, next(kinds))
            if expected is not None:
                emit({"change": [receiver.url, channel.index, expected, made_at]})

    def _make_change(self, receiver: BenchReceiver, channel: SimChannel, kind: str) -> dict[str, Any] | None:
        """Change the simulator's state as a stage would; return the fields the hub must then show."""
        if kind == "name" and "name" in channel.values:
            self._sequence += 1
            name = f"B{self._sequence % 10_000_000}"
            receiver.set_name(channel.index, name)
            return {"name": name}
        if kind == "battery" and channel.tx_on and channel.values.get("battery_runtime_min"):
            receiver.drain_battery(channel.index)
            return {"battery_runtime_min": channel.values["battery_runtime_min"]}
        if receiver.family.udp:
            # UHF-R reports its transmitter only inside SAMPLE: that is meter latency, not change latency
            return None
        receiver.set_tx_present(channel.index, not channel.tx_on)
        return {"tx_present": channel.tx_on}


def emit(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


async def serve(models: list[str], changes_per_s: float, seed: int) -> None:
    receivers: list[BenchReceiver] = []
    try:
        for number, model in enumerate(models):
            receiver = BenchReceiver(model, seed=seed * 100_000 + number)
            await receiver.start()
            receivers.append(receiver)
        emit({"ready": [[r.profile.key, r.url, len(r.channels)] for r in receivers]})
        await Fleet(receivers, changes_per_s, seed).run()
    finally:
        await asyncio.gather(*(receiver.stop() for receiver in receivers), return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--models", required=True, help="comma-separated simulator model keys, one per receiver")
    parser.add_argument("--changes-per-s", type=float, default=0.0, help="state changes per second, all receivers")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.models.split(","), args.changes_per_s, args.seed))


if __name__ == "__main__":
    main()
