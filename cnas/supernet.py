"""``python -m cnas.supernet``: train an OFA MobileNetV3 supernet on your own data by progressive shrinking.

    python -m cnas.supernet                                   # digits, 32 px: writes supernets/digits.pth
    python -m cnas.supernet --dataset cifar10 --data ~/data/cifar10 --lr 32 --ur 64 --rstep 8 \\
        --init supernets/ofa_mbv3_d234_e346_k357_w1.0 --epochs_full 0 --save supernets/cifar10.pth
    python -m cnas.search --supernet_path supernets/digits.pth ...

Phases (OFA): the full network, then elastic kernel, elastic depth (4,3 then 4,3,2), elastic expansion (6,4 then
6,4,3); see :mod:`cnas.training.progressive`. ``--lr``/``--ur``/``--rstep`` are the input RESOLUTIONS (the
original's names, as in ``cnas.search``); the learning rates are ``--train_lr`` (full network) and ``--elastic_lr``.
``--epochs_depth`` and ``--epochs_expand`` are the epochs of each of their two steps.

The result is ``{"state_dict": ..., "meta": {...}}`` in the official OFA key layout (``cnas.models.save_supernet``),
with the dataset, classes, resolutions, phases and the validation accuracy of the smallest, a middle and the
largest sub-network in ``meta``. An interrupted run resumes from ``<save>.state`` when started again with the same
flags. A finished checkpoint trained with the same flags is re-used (nothing is trained; ``--overwrite`` retrains).
"""

from __future__ import annotations

import sys

from cnas.cli import ArgumentParser, add_config_arg, add_dataclass_args, build_settings, given_fields, load_config_file
from cnas.errors import ConfigError, run_cli
from cnas.training.progressive import SupernetConfig, train_supernet
from cnas.training.trainer import TrainingDiverged, check_device_here


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnas.supernet", description=__doc__.split("\n")[0])
    add_config_arg(p)
    p.add_argument("--overwrite", action="store_true",
                   help="retrain even when --save holds a finished supernet (and discard a stale state file)")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no per-phase lines")
    add_dataclass_args(p, SupernetConfig, title="progressive shrinking")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    file_cfg = load_config_file(args.config) if args.config else {}
    cfg = build_settings(SupernetConfig, file_cfg, given_fields(args, SupernetConfig))
    if args.quiet:
        cfg.progress = False
    cfg.preflight()  # bad input stops here, before anything is trained or written
    check_device_here(cfg.device)
    log = None if args.quiet else (lambda msg: print(msg, flush=True))
    try:
        result = train_supernet(cfg, log=log, overwrite=args.overwrite)
    except TrainingDiverged as exc:
        raise ConfigError(f"{exc}; retry with a lower --train_lr / --elastic_lr and --overwrite") \
            from None
    acc = result.meta.get("accuracy", {})
    parts = ", ".join(f"{k} {v['val_acc'] * 100:.1f}%" for k, v in acc.items())
    print(f"{result.path}: val accuracy {parts}")
    print(f"search with it: python -m cnas.search --supernet_path {result.path} --dataset {cfg.dataset}"
          + (f" --data {cfg.data}" if cfg.data else "") + f" --lr {cfg.lr} --ur {cfg.ur} --rstep {cfg.rstep}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="cnas.supernet"))
