"""The ``wmhub`` command's entry point. It imports the command-line tool itself, so that Ctrl-C while that
import runs (a second or more on a small machine: pydantic, aiohttp, the plugins' libraries) ends the
command quietly with status 130, as it does once the tool runs, instead of with a traceback."""

from __future__ import annotations

import sys

from hub.exit_codes import EXIT_INTERRUPTED


def main() -> int:
    try:
        from hub.cli import main as run_command  # the import is what is guarded
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return run_command()


if __name__ == "__main__":
    sys.exit(main())
