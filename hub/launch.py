"""The ``wmhub`` command's entry point. It imports the command-line tool itself, so that Ctrl-C while that
import runs (a second or more on a small machine: pydantic, aiohttp, the plugins' libraries) ends the
command quietly with status 130, as it does once the tool runs, instead of with a traceback; and output
whose reader went away (``wmhub plugins --json | head -1``) ends it quietly too."""

from __future__ import annotations

import os
import sys

from hub.exit_codes import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED


def main() -> int:
    try:
        from hub.cli import main as run_command  # the import is what is guarded
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    try:
        return run_command()
    except BrokenPipeError:
        # what is still buffered for the closed pipe would raise again when Python flushes it at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
