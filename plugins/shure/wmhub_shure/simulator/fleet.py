"""The demo fleet for ``wmhub run --demo``: several receivers of several families, moving like a show."""

from __future__ import annotations

import asyncio
from typing import Final

from hub.drivers import with_options
from wmhub_shure.simulator.core import ShureSimulator

DEMO_MODELS: Final = ("ulxd4q", "ad4d", "slxd4q+", "qlxd4", "ur4d", "p10t")  # p10t: a PSM1000 in-ear transmitter


class ShureDemoFleet:
    """Simulated receivers on loopback with battery drain, RF/audio movement and transmitters switching off."""

    def __init__(self, models: tuple[str, ...] = DEMO_MODELS, interval_s: float = 1.0) -> None:
        self.models = models
        self.interval_s = interval_s
        self.simulators: list[ShureSimulator] = []

    async def start(self) -> list[str]:
        for number, model in enumerate(self.models):
            sim = await ShureSimulator(model, seed=number).start()
            sim.animate(self.interval_s)
            self.simulators.append(sim)
        # the protocol reports no serial: a fixed id keeps each receiver the same device across demo runs
        return [
            with_options(sim.url, id=f"demo-{model.replace('+', 'plus')}")
            for sim, model in zip(self.simulators, self.models, strict=True)
        ]

    async def stop(self) -> None:
        await asyncio.gather(*(sim.stop() for sim in self.simulators), return_exceptions=True)
        self.simulators.clear()
