"""Errors that entry points turn into one line on stderr and exit code 2.

Everything a user can get wrong (flags, config files, arch JSON, stats files, checkpoints, dataset paths)
raises a :class:`UsageError` subclass whose message names the bad value and, where there is one, the fix.
Internal bugs are ordinary exceptions and keep their traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class ArchError(UsageError):
    """A malformed architecture dict or encoding."""


class ConfigError(UsageError):
    """Bad flags or configuration file."""


class CheckpointError(UsageError):
    """A missing, corrupt or incompatible checkpoint."""


class DataError(UsageError):
    """A missing or malformed dataset."""


class StatsFileError(UsageError):
    """A missing or corrupt stats file."""


class EvaluationError(UsageError):
    """Too few candidates could be evaluated to go on (each one's error is recorded with it)."""


def fail(err: UsageError, prog: str = "cnas") -> NoReturn:
    msg = " ".join(str(err).split())  # one line, whatever the message held
    print(f"{prog}: error: {msg}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None, prog: str = "cnas") -> int:
    """Run an entry point's ``main``; a UsageError becomes one line on stderr and exit code 2."""
    try:
        return int(main(argv) or 0)
    except UsageError as err:
        fail(err, prog)
