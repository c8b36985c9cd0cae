"""The statuses the ``wmhub`` command exits with (docs/deployment.md)."""

from typing import Final

EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2  # a mistake on the command line or in the configuration, said in one line
EXIT_INTERRUPTED: Final = 130  # the shell's 128 + SIGINT
EXIT_BROKEN_PIPE: Final = 141  # the shell's 128 + SIGPIPE: the reader of the output went away (| head)
