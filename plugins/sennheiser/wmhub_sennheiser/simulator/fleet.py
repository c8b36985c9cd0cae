"""The demo fleet: an EW-DX EM 4, an EM 6000 and a CHG 70N charger (SSCv1), an ew G4 receiver and an ew IEM G4
in-ear transmitter (MCP), animated, on loopback."""

from __future__ import annotations

from typing import Final

from hub.drivers import with_options
from wmhub_sennheiser.simulator.g4 import G4Simulator
from wmhub_sennheiser.simulator.iem import IemG4Simulator
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator
from wmhub_sennheiser.simulator.ssc1_products import EwDx

# Each channel's frequency (kHz), as a show's coordinated plan sets them: together with the Shure demo fleet's
# and the Spectera's (DEMO_SPECTERA_KHZ), clean for the hub's own check (tests/test_core_demo.py). The ew G4
# receiver and the ew IEM G4 transmitter, analog, sit at the ends of the G4's band A1 with its wider guards.
DEMO_FREQUENCIES_KHZ: Final = (
    (548_975, 556_800, 557_700, 583_950),  # EW-DX EM 4
    (587_775, 589_100),  # EM 6000
    (470_200,),  # ew G4
    (515_800,),  # ew IEM G4
    (),  # CHG 70N: a charger
)
# The demo's EW-DX EM 4 is of a band variant whose span the hub does not know (EWDX_BANDS holds only the one a
# public document gives), so its carriers above Q1-9's 550 MHz are not out of band; the span is the simulator's
# own, illustrative, for what it accepts.
DEMO_EWDX_BAND: Final = ("R1-9", (520_000, 607_800))
# Both RF channels of the demo's Spectera on one WMAS carrier, well above the narrowband ones: two 8 MHz
# carriers make third-order products 16 MHz wide around every narrowband carrier.
DEMO_SPECTERA_KHZ: Final = 686_000


class SennheiserDemoFleet:
    """A hub DemoFleet (hub.hookspecs.DemoFleet): ``start()`` returns the URLs to connect to."""

    def __init__(self, tick_s: float = 1.0, tx_churn: float = 0.02) -> None:
        ewdx = Ssc1Simulator("ewdx-em4", tick_s=tick_s, seed=11)
        assert isinstance(ewdx.device, EwDx)
        ewdx.device.frequency_code, ewdx.device.band_khz = DEMO_EWDX_BAND
        self.simulators: list[Ssc1Simulator | G4Simulator] = [
            ewdx,
            Ssc1Simulator("em6000", tick_s=tick_s, seed=12),
            G4Simulator("g4-em300", tick_s=tick_s, seed=13),
            IemG4Simulator(tick_s=tick_s, seed=14),
            Ssc1Simulator("chg70n", tick_s=tick_s, seed=15),
        ]
        for simulator, frequencies in zip(self.simulators, DEMO_FREQUENCIES_KHZ, strict=True):
            simulator.tx_churn = tx_churn
            for channel, khz in zip(simulator.channels, frequencies, strict=False):  # the charger: none
                channel.frequency_khz = khz

    async def start(self) -> list[str]:
        for simulator in self.simulators:
            await simulator.start()
        # EM 6000 and the MCP devices report no serial: a fixed id keeps each the same device across demo runs
        ids = ("", "demo-em6000", "demo-g4", "demo-iem-g4", "")
        return [
            with_options(simulator.url, id=given) if given else simulator.url
            for simulator, given in zip(self.simulators, ids, strict=True)
        ]

    async def stop(self) -> None:
        for simulator in self.simulators:
            await simulator.stop()
