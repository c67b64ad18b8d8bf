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

from cnas.cli import ArgumentParser, add_dataclass_args, build_settings, given_fields, load_config_file
from cnas.errors import ConfigError, run_cli
from cnas.training.progressive import SupernetConfig, train_supernet
from cnas.training.trainer import TrainingDiverged

HELP = {
    "dataset": "digits (bundled), cifar10, cifar100, svhn, cinic10, imagenet, imagenette, tinyimagenet, folder",
    "data": "local path of the dataset (nothing is downloaded)",
    "n_classes": "class count; checked against the data",
    "init": "start from these supernet weights, e.g. an official OFA checkpoint (its classifier is replaced "
            "when the class count differs)",
    "save": "output checkpoint (default: supernets/<dataset>.pth); <save>.state holds the resumable state",
    "lr": "lower input resolution", "ur": "upper input resolution", "rstep": "resolution step",
    "width_mult": "supernet width 1.0 or 1.2 (with --init: read from the file)",
    "train_lr": "learning rate of the full-network phase",
    "elastic_lr": "learning rate of the elastic phases",
    "epochs_full": "epochs of the full network (0 with --init to go straight to shrinking)",
    "epochs_kernel": "epochs of the elastic-kernel phase",
    "epochs_depth": "epochs of each elastic-depth step (4,3 then 4,3,2)",
    "epochs_expand": "epochs of each elastic-expansion step (6,4 then 6,4,3)",
    "n_subnets": "sub-networks per step: largest, smallest and n_subnets - 2 random ones",
    "kd_ratio": "weight of the distillation loss from the largest network (0: none)",
    "kd_temperature": "distillation temperature",
    "warmup_epochs": "linear warm-up of the full-network phase (from scratch only)",
    "val_split": "fraction of the training set held out to measure the sub-networks",
    "augment": "the dataset's default training augmentation",
    "bn_images": "training images used to re-calibrate BatchNorm before measuring a sub-network",
    "max_steps_per_epoch": "cap on the steps of every epoch (quick runs and tests)",
    "eval_each_phase": "measure smallest/middle/largest after every phase (else only at the end)",
    "device": "cpu, cuda or cuda:N",
    "num_threads": "torch CPU threads",
    "progress": "progress bars",
}


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnas.supernet", description=__doc__.split("\n")[0])
    p.add_argument("--config", default=None, help="YAML file of settings; flags override it")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain even when --save holds a finished supernet (and discard a stale state file)")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no per-phase lines")
    add_dataclass_args(p, SupernetConfig, help=HELP)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    file_cfg = load_config_file(args.config) if args.config else {}
    cfg = build_settings(SupernetConfig, file_cfg, given_fields(args, SupernetConfig))
    if args.quiet:
        cfg.progress = False
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
