"""``python -m wmhub_sennheiser.simulator --protocol <name> [the protocol's own options]``."""

from __future__ import annotations

import argparse
import importlib
from typing import Final

# protocol -> the module whose main(argv) runs it
PROTOCOLS: Final = {
    "ssc1": "wmhub_sennheiser.simulator.ssc1",
    "g4": "wmhub_sennheiser.simulator.g4",
    "iem": "wmhub_sennheiser.simulator.iem",
    "ssc2": "wmhub_sennheiser.simulator.ssc2",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wmhub_sennheiser.simulator",
        description="Simulated Sennheiser receivers on loopback; --protocol NAME --help lists its options.",
        add_help=False,
    )
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), required=True)
    known, rest = parser.parse_known_args(argv)
    importlib.import_module(PROTOCOLS[known.protocol]).main(rest)


if __name__ == "__main__":
    main()
