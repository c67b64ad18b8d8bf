"""The candidate-evaluation protocol flags shared by the benchmarks that evaluate archs.

Two tasks have a ready protocol:

* ``--dataset digits`` (the bundled data, the default): weights inherited from ``supernets/digits.pth`` (built by
  ``python -m cnas.supernet``), batch-norm statistics re-estimated, no further training, 32 px, the whole
  360-image validation split.
* ``--dataset fashion_mnist`` (the real benchmark task; Debian's ``dataset-fashion-mnist`` package or ``--data``):
  weights inherited from ``supernets/fashion_mnist.pth`` (built by the README's ``cnas.supernet`` command), 28 px,
  top1 on a fixed class-balanced subset of 3000 of the 12,000 validation images (``--val_images``).

Every default can be overridden by its flag. A benchmark that must run without a supernet passes its own defaults
(``benchmarks/executors.py``: 1 epoch from a random initialization).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Per dataset: the supernet file, the resolution and the validation subset of the protocol.
PROTOCOLS = {
    "digits": dict(supernet="supernets/digits.pth", resolution=32, val_images=0),
    "fashion_mnist": dict(supernet="supernets/fashion_mnist.pth", resolution=28, val_images=3000),
}
DEFAULT_SUPERNET = PROTOCOLS["digits"]["supernet"]


def add_protocol_args(ap: argparse.ArgumentParser, epochs: int = 0, supernet: str | None = "default") -> None:
    """``--dataset``, ``--data``, ``--resolution``, ``--val_images``, ``--train_images``, ``--bn_recal_images``,
    ``--epochs`` and ``--supernet``; a value left at ``None`` ("default") is the dataset's protocol value (see
    :data:`PROTOCOLS`)."""
    g = ap.add_argument_group("candidate evaluation")
    g.add_argument("--dataset", default="digits", help="digits (bundled) or fashion_mnist, or any cnas dataset "
                                                       "with explicit --resolution/--supernet (default digits)")
    g.add_argument("--data", default=None, help="local folder of the dataset (fashion_mnist: the Debian package's "
                                                "folder by default)")
    g.add_argument("--resolution", type=int, default=None, help="input resolution (digits 32, fashion_mnist 28)")
    g.add_argument("--val_images", type=int, default=None,
                   help="validation images that measure top1 (digits: all 360; fashion_mnist: 3000)")
    g.add_argument("--train_images", type=int, default=0,
                   help="training images (a fixed class-balanced subset) for whatever a candidate trains: its "
                        "epochs, its exit heads, its batch-norm re-estimation (default 0: the whole split)")
    g.add_argument("--bn_recal_images", type=int, default=512,
                   help="training images that re-estimate the batch-norm statistics (default 512)")
    g.add_argument("--epochs", type=int, default=epochs,
                   help=f"training epochs per candidate (0: inherited as is; default {epochs})")
    g.add_argument("--supernet", default=None if supernet == "default" else supernet,
                   help="inherit weights from this supernet checkpoint ('none': random initialization; default "
                        + ("supernets/<dataset>.pth" if supernet == "default" else str(supernet)) + ")")


def check_protocol(args: argparse.Namespace, prog: str) -> None:
    """Fill the dataset's protocol defaults; turn ``--supernet none`` into None; exit 2 with one line when the
    protocol cannot run."""
    proto = PROTOCOLS.get(args.dataset.replace("-", "_").lower())
    for key in ("supernet", "resolution", "val_images"):
        if getattr(args, key) is None:
            if proto is None:
                _fail(prog, f"--dataset {args.dataset} has no ready protocol: give --{key} (and --resolution, "
                            "--val_images, --supernet)")
            setattr(args, key, proto[key])
    if args.supernet in ("none", ""):
        args.supernet = None
    elif not Path(args.supernet).is_file():
        how = ("python -m cnas.supernet" if args.dataset == "digits" else
               f"python -m cnas.supernet --dataset {args.dataset} (the README gives the recipe)")
        _fail(prog, f"{args.supernet} not found; build it with {how} (or pass --supernet none to train from "
                    "scratch)")
    if args.epochs < 0:
        _fail(prog, f"--epochs must be >= 0, got {args.epochs}")
    if args.bn_recal_images <= 0:
        _fail(prog, f"--bn_recal_images must be positive, got {args.bn_recal_images}")
    if args.resolution <= 0 or args.val_images < 0 or args.train_images < 0:
        _fail(prog, "--resolution must be positive, --val_images and --train_images non-negative")
    if args.epochs == 0 and args.supernet is None:
        _fail(prog, "--epochs 0 needs --supernet (an untrained network has nothing to measure)")


def eval_kwargs(args: argparse.Namespace) -> dict:
    """The :class:`~cnas.evaluation.EvalSettings` fields the protocol flags set."""
    return dict(dataset=args.dataset, data=args.data, epochs=args.epochs, supernet_path=args.supernet,
                val_images=args.val_images, train_images=args.train_images, resolution=args.resolution,
                bn_recal_images=args.bn_recal_images)


def describe(args: argparse.Namespace) -> str:
    src = f"inherited from {args.supernet}" if args.supernet else "random init"
    val = f"{args.val_images} validation images" if args.val_images else "the whole validation split"
    bn = f", batch-norm re-estimated on {args.bn_recal_images} images" if args.supernet else ""
    train = f", training on {args.train_images} images" if args.train_images else ""
    return f"{args.dataset} {args.resolution} px, {args.epochs} epoch(s), {src}{bn}{train}, top1 on {val}"


def _fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)
