"""The candidate-evaluation protocol flags shared by the benchmarks that evaluate archs on digits.

Defaults are the README quickstart's protocol: weights inherited from ``supernets/digits.pth`` (built by
``python -m cnas.supernet``), batch-norm statistics re-estimated, no further training. A benchmark that must run
without a supernet passes its own defaults (``benchmarks/executors.py``: 1 epoch from a random initialization).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


DEFAULT_SUPERNET = "supernets/digits.pth"


def add_protocol_args(ap: argparse.ArgumentParser, epochs: int = 0, supernet: str = DEFAULT_SUPERNET) -> None:
    """``--epochs`` and ``--supernet`` with the given defaults (by default the quickstart's protocol)."""
    ap.add_argument("--epochs", type=int, default=epochs,
                    help=f"training epochs per candidate (0: inherited as is; default {epochs})")
    ap.add_argument("--supernet", default=supernet,
                    help="inherit weights from this supernet checkpoint ('none': random initialization; "
                         f"default {supernet})")


def check_protocol(args: argparse.Namespace, prog: str) -> None:
    """Turn ``--supernet none`` into None; exit 2 with one line when the protocol cannot run."""
    if args.supernet in ("none", ""):
        args.supernet = None
    elif not Path(args.supernet).is_file():
        _fail(prog, f"{args.supernet} not found; build it with python -m cnas.supernet "
                    "(or pass --supernet none to train from scratch)")
    if args.epochs < 0:
        _fail(prog, f"--epochs must be >= 0, got {args.epochs}")
    if args.epochs == 0 and args.supernet is None:
        _fail(prog, "--epochs 0 needs --supernet (an untrained network has nothing to measure)")


def _fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)
