"""The demo fleet for ``wmhub run --demo``: several receivers of several families, moving like a show."""

from __future__ import annotations

import asyncio
from typing import Final

from hub.drivers import with_options
from wmhub_shure.simulator.core import ShureSimulator

DEMO_MODELS: Final = ("ulxd4q", "ad4d", "slxd4q+", "qlxd4", "ur4d", "p10t")  # p10t: a PSM1000 in-ear transmitter
# Each channel's frequency, as a show's coordinated plan sets them: together with the Sennheiser demo fleet's,
# clean for the hub's own check (no intermodulation or spacing finding, tests/test_core_demo.py). Chosen
# with the hub's coordinator (hub.frequency.search.coordinate) around the other plugin's carriers.
DEMO_FREQUENCIES_MHZ: Final = {
    "ulxd4q": (472.025, 476.350, 498.625, 505.775),
    "ad4d": (472.750, 500.900),
    "slxd4q+": (475.925, 496.650, 509.800, 511.700),
    "qlxd4": (518.600,),
    "ur4d": (519.200, 520.275),
    "p10t": (525.625, 536.600),
}


class ShureDemoFleet:
    """Simulated receivers on loopback with battery drain, RF/audio movement and transmitters switching off."""

    def __init__(self, models: tuple[str, ...] = DEMO_MODELS, interval_s: float = 1.0) -> None:
        self.models = models
        self.interval_s = interval_s
        self.simulators: list[ShureSimulator] = []

    async def start(self) -> list[str]:
        for number, model in enumerate(self.models):
            sim = ShureSimulator(model, seed=number)
            for index, mhz in enumerate(DEMO_FREQUENCIES_MHZ.get(model, ()), start=1):
                sim.set_channel(index, echo=False, frequency_mhz=mhz)
            await sim.start()
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
