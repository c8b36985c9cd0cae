"""The ew IEM G4 transmitter driver (SR 2050 IEM, SR 300 IEM G4): the Media Control Protocol of the receivers.

URL: ``sennheiser-iem-g4://host[:port][?local_port=53212&push_timeout=60&retry_ms=250]``, the options of
``sennheiser-g4``. Same framing, socket and Push keep-alive as the EM receivers (TI 1254 covers both), but
its own lines: no RF or battery (it is the transmitter), stereo ``AF``, ``States`` with the RF mute, and
``Sensitivity``/``Mode``/``Equalizer`` in its configuration. ``Mute`` switches the RF off (RF mute); the
hub shows it as the channel's ``muted``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from wmhub_sennheiser import mcp
from wmhub_sennheiser.g4_driver import G4Driver
from wmhub_sennheiser.mcp import Line

SCHEME: Final = "sennheiser-iem-g4"
FAMILY: Final = mcp.SR_FAMILY
MODEL: Final = "SR IEM G4"


class IemG4Driver(G4Driver):
    """One SR IEM G4 transmitter: one channel, the transmitter itself."""

    family = FAMILY
    model = MODEL
    push_mode = mcp.PUSH_CONFIG | mcp.PUSH_ON_WARNING  # bit 4 (pilot or battery) is the EM's only
    config_keywords = ("Name", "Frequency", "Mute", "Sensitivity")

    def channel_fields(self, line: Line) -> Mapping[str, Any]:
        return mcp.sr_channel_fields(line)
