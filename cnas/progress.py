"""Progress bars that are drawn only on a terminal.

A tqdm bar redraws itself with carriage returns; written to a log file or a pipe (a search run under ``nohup``,
a CI job, a worker process) every redraw becomes one more line. :func:`progress_bar` is the one place that
decides: the bar is shown when its stream is a terminal and is a silent pass-through otherwise (iterating it
yields the items, ``update``/``set_postfix``/``refresh``/``close`` do nothing).
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, TextIO


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is an open terminal (False for files, pipes, closed or replaced streams)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable: Iterable | None = None, *, file: TextIO | None = None, **kwargs: Any):
    """A ``tqdm`` bar over ``iterable`` written to ``file`` (default: ``sys.stderr`` at call time), disabled
    unless that stream is a terminal. Other keyword arguments go to ``tqdm``."""
    from tqdm import tqdm

    stream = sys.stderr if file is None else file
    return tqdm(iterable, file=stream, disable=not is_terminal(stream), **kwargs)
