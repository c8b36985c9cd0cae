"""The ``wmhub`` command's entry point. It imports the command-line tool itself, so that Ctrl-C while that
import runs (a second or more on a small machine: pydantic, aiohttp, the plugins' libraries) ends the
command quietly with status 130, as it does once the tool runs, instead of with a traceback; output whose
reader went away (``wmhub plugins --json | head -1``) ends it quietly too (141), and output that cannot be
written (``wmhub devices --json > devices.json`` on a full disk) in one line on stderr and status 1."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, TextIO, cast

from hub.exit_codes import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_INTERRUPTED


class _WatchedOutput:
    """stdout, keeping the first error writing to it: argparse prints --version and --help and swallows it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main() -> int:
    try:
        from hub.cli import main as run_command  # the import is what is guarded
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    output = _WatchedOutput(sys.stdout)
    sys.stdout = cast(TextIO, output)
    try:
        status = run_command()
        sys.stdout.flush()  # written now, where a failure can still be said
        return status
    except SystemExit:  # argparse, after --help or --version (or a usage error, said on stderr)
        with contextlib.suppress(OSError):
            sys.stdout.flush()
        if output.error is None:
            raise
    except OSError:
        if output.error is None:  # a file or socket of the command's own: not the output's to explain
            raise
    # what is still buffered for stdout would raise again when Python flushes it at exit
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if isinstance(output.error, BrokenPipeError):
        return EXIT_BROKEN_PIPE
    print(f"wmhub: cannot write the output: {output.error.strerror or output.error}", file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
