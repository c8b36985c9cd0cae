"""A simulated ew IEM G4 transmitter (SR 2050 IEM / SR 300 IEM G4) speaking the Media Control Protocol.

The receiver simulator's framing, Push and errors (TI 1254 covers both), with the transmitter's own lines:
configuration ``Name, Frequency, Sensitivity, Mode, Equalizer, Mute`` and the cyclic ``Af <left> <right>
<hold left> <hold right> <flags>``, ``States <rfmute> <flag>``, ``Msg``, ``Config`` (reference 3.3-3.4;
Companion evolutionwireless src/api.ts, src/actions.ts). ``Mute`` is the RF mute. Run it alone with
``python -m wmhub_sennheiser.simulator --protocol iem``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from wmhub_sennheiser.simulator.common import Client, command_line, serve
from wmhub_sennheiser.simulator.g4 import CommandError, G4Simulator

MODELS: Final = {"sr-iem-g4": "SR IEM G4"}
SR_CONFIG: Final = ("Name", "Frequency", "Sensitivity", "Mode", "Equalizer", "Mute")  # TI 1254 p.8


class IemG4Simulator(G4Simulator):
    """One SR IEM G4 transmitter: its one channel is itself."""

    models = MODELS
    scheme = "sennheiser-iem-g4"
    config_order = SR_CONFIG
    config_dump = SR_CONFIG

    def __init__(
        self, model: str = "sr-iem-g4", *, host: str = "127.0.0.1", port: int = 0, tick_s: float = 1.0, seed: int = 1
    ) -> None:
        self.sensitivity_db = -18
        self.stereo = True
        self.equalizer_bands = (0, -2, 0, 1, 3)  # low, low-mid, mid, mid-high, high: -5..+5
        super().__init__(model, host=host, port=port, tick_s=tick_s, seed=seed)
        self.channel.name = "IEM 1"
        self._reported = self._signature()

    # --- encoding of the state

    def peak_percents(self) -> tuple[int, int]:
        left = max(0, min(100, round((self.channel.af_dbfs + 50) * 2)))
        return left, max(0, left - 4)

    def warnings(self) -> list[str]:
        return [name for name, on in (("AF_Peak", self.channel.af_dbfs > -1), ("RF_Mute", self.channel.muted)) if on]

    def cyclic(self) -> bytes:
        left, right = self.peak_percents()
        lines = [
            # the line as TI 1254's SR example prints it ("Af 15 25 40 38 5"): mixed case, a fifth field
            f"Af {left} {right} {min(100, left + 5)} {min(100, right + 5)} 0",
            f"States {int(self.channel.muted)} 2",
            "Msg " + (" ".join(self.warnings()) or "OK"),
            f"Config {self.config_index}",
        ]
        return "".join(line + "\r" for line in lines).encode()

    def config_line(self, keyword: str) -> str:
        values: dict[str, Callable[[], str]] = {
            "Sensitivity": lambda: str(self.sensitivity_db),
            "Mode": lambda: str(int(self.stereo)),
            "Equalizer": lambda: " ".join(str(v) for v in (1, *self.equalizer_bands)),
        }
        return f"{keyword} {values[keyword]()}" if keyword in values else super().config_line(keyword)

    def expected_channels(self) -> dict[int, dict[str, Any]]:
        ch = self.channel
        return {
            1: {
                "name": ch.name,
                "frequency_mhz": ch.frequency_khz / 1000,
                "muted": ch.muted,
                "group_channel": f"{ch.bank}.{ch.preset}" if ch.bank or ch.preset else None,
                "audio_dbfs": -50 + max(self.peak_percents()) / 2,
                "audio_peak": "AF_Peak" in self.warnings(),
                "tx_offset_db": float(self.sensitivity_db),
                "warnings": self.warnings(),
            }
        }

    # --- protocol

    def handlers(self) -> dict[str, Callable[[list[str], str, Client], list[str]]]:
        return {**super().handlers(), "Sensitivity": self._sensitivity, "Mode": self._mode}

    def _sensitivity(self, args: list[str], _rest: str, _client: Client) -> list[str]:
        if args:
            if len(args) != 1 or not re.fullmatch(r"-?\d+", args[0]):
                raise CommandError(1010)
            value = int(args[0])
            if not -42 <= value <= 0 or value % 3:
                raise CommandError(1020)  # TI 1254: "Sensitivity -20" -> 1020
            self.sensitivity_db = value
        return [self.config_line("Sensitivity")]

    def _mode(self, args: list[str], _rest: str, _client: Client) -> list[str]:
        if args:
            if args not in (["0"], ["1"]):
                raise CommandError(1020)
            self.stereo = args == ["1"]
        return [self.config_line("Mode")]


def main(argv: list[str] | None = None) -> None:
    description = "Simulated ew IEM G4 transmitters (Media Control Protocol) on loopback."
    arguments = command_line(description, MODELS, "sr-iem-g4").parse_args(argv)
    serve(lambda n: IemG4Simulator(arguments.model, port=arguments.port if n == 0 else 0, seed=n), arguments)


if __name__ == "__main__":
    main()
