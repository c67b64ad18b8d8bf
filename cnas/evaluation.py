"""Turning one architecture into measured stats: build, (inherit,) train, measure, write ``NET.stats``.

``evaluate_arch`` is the in-process evaluation that ``python -m cnas.train`` and the executors call; nothing here
starts a subprocess or a shell line. A candidate whose training raises, diverges or runs out of memory raises:
the stats file is written atomically at the very end, so it is either complete or absent.

Stats keys follow the original: ``top1`` is the **validation** error in %
(``top1_split`` says ``"test"`` only when there is no validation split, e.g. ``--val_split 0`` on CIFAR);
``params``/``macs``/``activations`` in millions from :mod:`cnas.complexity` (equal to ``python -m cnas.profile``);
``tiny_ml``; with ``--eval_robust`` ``robustness`` (list per sigma) and ``top1_robust``; early-exit nets add
``backbone_top1``, ``backbone_macs``, ``classifiers_macs``, ``backbone_params``, ``classifiers_params``,
``exits_ratio``, ``avg_macs``, ``epsilon``, ``cumulative_threshold``, ``branch_scores`` (and ``ece_scores``,
``support_conf``). ``test_top1`` is the test error when ``eval_test`` is on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch

from cnas import complexity
from cnas.errors import ConfigError
from cnas.fileio import atomic_torch_save, atomic_write_json
from cnas.spaces import exit_mask, get_space, space_for_arch
from cnas.training.trainer import TrainConfig, evaluate, train, use_channels_last

STATS_DECIMALS = 2
BN_RECAL_IMAGES = 512  # training images used to re-estimate batch-norm statistics


@dataclass
class EvalSettings(TrainConfig):
    """How one candidate is evaluated: the training recipe (:class:`TrainConfig`, single exit and the backbone
    stage of early-exit nets) plus data, weights, measurements and early-exit settings. Field names follow the
    original's flags."""

    dataset: str = "digits"
    data: str | None = None
    n_classes: int | None = None
    search_space: str | None = None
    resolution: int | None = None  # used when the arch has no 'r'
    val_split: float = 0.2
    batch_size: int = 64
    num_workers: int = 0
    # weights
    supernet_path: str | None = None
    pretrained: bool = True
    bn_recalibrate: bool = True
    # what to measure and keep
    eval_test: bool = True
    save_ckpt: bool = False
    func_constr: bool = False
    eval_robust: bool = False
    sigma_min: float = 0.05
    sigma_max: float = 0.05
    sigma_step: float = 0.05
    n_draws: int = 20
    alpha: float = 0.5
    alpha_norm: float = 1.0
    # technological constraints (tiny_ml) and early-exit budget
    pmax: float | None = None  # None: no hard limit (tiny_ml then uses the original's 2)
    mmax: float | None = None  # None: no limit (tiny_ml: 1e10)
    amax: float | None = None  # None: no hard limit (tiny_ml: 5)
    wp: float = 1.0
    wm: float = 1 / 40
    wa: float = 1.0
    penalty: float = 1e10
    top1min: float = 0.0
    # early exit
    method: str | None = None  # joint | bernulli; None: joint for EDANAS ('t') archs, bernulli for NACHOS ('b')
    warmup_ee_epochs: int = 2
    ee_epochs: int = 0
    tune_epsilon: bool = False
    support_set: bool = False
    w_alpha: float = 1.0
    w_beta: float = 1.0
    w_gamma: float = 1.0
    # execution
    device: str = "cpu"
    num_threads: int | None = None

    def validate(self) -> "EvalSettings":
        if self.method not in (None, "joint", "bernulli"):
            raise ConfigError(f"--method must be joint or bernulli, got {self.method!r}")
        for name in ("epochs", "warmup_ee_epochs", "ee_epochs", "n_draws"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"--{name} must be a non-negative integer, got {v!r}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"--alpha must be in [0, 1], got {self.alpha}")
        if not 0 <= self.top1min <= 1:
            raise ConfigError(f"--top1min is a minimum accuracy as a fraction in [0, 1], got {self.top1min}")
        if self.epochs == 0 and not (self.supernet_path and self.pretrained):
            raise ConfigError("--n_epochs 0 measures the weights as they are: it needs inherited weights "
                              "(--supernet_path, with --pretrained true); without them the network is untrained")
        super().validate()
        return self

    def tiny_ml_kwargs(self) -> dict:
        """tiny_ml's limits: the given ones, else the original's defaults (2 M params, no MACs limit, 5 M acts)."""
        return dict(pmax=2.0 if self.pmax is None else self.pmax, mmax=1e10 if self.mmax is None else self.mmax,
                    amax=5.0 if self.amax is None else self.amax, wp=self.wp, wm=self.wm, wa=self.wa,
                    penalty=self.penalty)

    def train_config(self) -> TrainConfig:
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in asdict(self).items() if k in names})

    @classmethod
    def from_dict(cls, d: dict) -> "EvalSettings":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown evaluation setting(s) {unknown}")
        return cls(**d)


@dataclass
class CandidateTask:
    """One unit of work for an executor: evaluate ``arch`` and write ``<out_dir>/<name>.stats``."""

    arch: dict
    settings: EvalSettings
    out_dir: str | None = None
    name: str = "net"
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- helpers
_SUPERNETS: dict[tuple, Any] = {}


def _supernet(path: str, n_classes: int):
    from cnas.models import load_supernet

    key = (str(Path(path).resolve()), n_classes)
    if key not in _SUPERNETS:
        _SUPERNETS.clear()  # keep one in memory
        _SUPERNETS[key] = load_supernet(path, n_classes)
    return _SUPERNETS[key]


def _round(v):
    if isinstance(v, float):
        return round(v, STATS_DECIMALS)
    if isinstance(v, list):
        return [_round(x) for x in v]
    return v


def resolve_arch(arch: dict, settings: EvalSettings) -> tuple[dict, int]:
    """Validate ``arch`` against the settings' space; return it (canonical) and its resolution."""
    r = arch.get("r", settings.resolution) if isinstance(arch, dict) else None
    if r is None:
        raise ConfigError("the architecture has no 'r' and no --resolution was given (e.g. --resolution 32)")
    if settings.search_space:
        space = get_space(settings.search_space, lr=int(r), ur=int(r))
    else:
        space = space_for_arch(arch, lr=int(r), ur=int(r))
    canon = space.validate({k: v for k, v in arch.items() if k != "r"} | {"r": int(r)})
    return dict(sorted((canon | {"r": int(r)}).items())), int(r)


def evaluate_arch(arch: dict, settings: EvalSettings, out_dir: str | Path | None = None, name: str = "net",
                  device: str | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Train and measure ``arch``; write ``<out_dir>/<name>.subnet`` first and ``<name>.stats`` (and ``ckpt.pth``
    when ``save_ckpt``) at the end. Returns the stats dict."""
    from cnas.data import load_data, subset_loader
    from cnas.models import EENetwork, get_subnet, recalibrate_bn
    from cnas.models.ofa_net import build_supernet
    from cnas.models.polynomial import substitute_activation

    t0 = time.perf_counter()
    settings.validate()
    arch, r = resolve_arch(arch, settings)
    dev = torch.device(device or settings.device)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    out_path = Path(out_dir) if out_dir is not None else None
    if out_path is not None and not (out_path / f"{name}.subnet").exists():
        atomic_write_json(out_path / f"{name}.subnet", arch, indent=None)

    loaders = load_data(settings.dataset, settings.data, resolution=r, val_split=settings.val_split,
                        batch_size=settings.batch_size, seed=settings.seed, n_classes=settings.n_classes,
                        num_workers=settings.num_workers, device=dev,
                        channels_last=use_channels_last(settings.channels_last, dev))
    n_classes = loaders.n_classes
    val = loaders.val if loaders.val is not None else None
    select_loader = val if val is not None else loaders.test
    top1_split = "val" if val is not None else "test"

    torch.manual_seed(settings.seed)
    inherited = bool(settings.supernet_path and settings.pretrained)
    supernet = _supernet(settings.supernet_path, n_classes) if inherited else build_supernet(n_classes)
    is_ee = any(exit_mask(arch))
    subnet = get_subnet(supernet, arch)
    if settings.func_constr:
        substitute_activation(subnet)
    subnet.to(dev)
    recal_loader = subset_loader(loaders.train, BN_RECAL_IMAGES, seed=settings.seed, augment=False)

    def recalibrate(model):
        if settings.bn_recalibrate:
            recalibrate_bn(model, recal_loader)

    if inherited:
        recalibrate(subnet)

    cfg = settings.train_config()
    counts = complexity.count(arch, n_classes, r)
    stats: dict[str, Any] = {}
    # stage 1 (or the only stage): the single-exit network; batch-norm statistics are re-estimated before every
    # validation (with few steps per epoch the running averages lag far behind the weights)
    def select_eval(m):
        recalibrate(m)
        return evaluate(m, val, dev, cfg.amp, cfg.channels_last)

    res = train(subnet, loaders.train, val, cfg, device=dev, log=log, eval_fn=select_eval if val is not None else None)
    if val is None:
        recalibrate(subnet)
    base = evaluate(subnet, select_loader, dev)
    model = subnet
    if is_ee:
        from cnas.training.early_exit import EEConfig, exit_costs, measure_exits, train_exits

        method = settings.method or ("bernulli" if "b" in arch else "joint")
        if method == "bernulli" and "b" not in arch:
            raise ConfigError("--method bernulli needs binary exit heads (NACHOS 'b' archs, cbnmobilenetv3); "
                              "EDANAS 't' archs train with --method joint")
        ee = EEConfig(method=method, warmup_ee_epochs=settings.warmup_ee_epochs,
                      ee_epochs=settings.ee_epochs, w_alpha=settings.w_alpha, w_beta=settings.w_beta,
                      w_gamma=settings.w_gamma, mmax=settings.tiny_ml_kwargs()["mmax"], top1min=settings.top1min,
                      tune_epsilon=settings.tune_epsilon, support_set=settings.support_set,
                      # an inherited backbone measured without training stays as it was measured
                      freeze_backbone=inherited and settings.epochs == 0)
        model = EENetwork(subnet, arch, n_classes, resolution=r).to(dev)
        costs = exit_costs(counts)
        train_loader, support_loader = loaders.train, None
        if settings.support_set:
            from cnas.data import loader_labels
            from cnas.training.early_exit import balanced_subset

            pick, rest = balanced_subset(torch.as_tensor(loader_labels(loaders.train)), 0.1, settings.seed)
            support_loader = loaders.train.with_indices(pick, shuffle=False, augment="none") \
                if hasattr(loaders.train, "augment") else loaders.train.with_indices(pick, shuffle=False)
            train_loader = loaders.train.with_indices(rest)
        extra = train_exits(model, train_loader, select_loader, cfg, ee, costs, dev, log=log,
                            support_loader=support_loader, recalibrate=recalibrate if method == "joint" else None)
        ee_stats = measure_exits(model, select_loader, costs, ee, dev,
                                 test_loader=loaders.test if settings.eval_test and val is not None else None)
        stats.update({
            "backbone_top1": (1 - base["acc"]) * 100,
            "backbone_params": counts["backbone_params"], "classifiers_params": counts["classifiers_params"],
            "backbone_macs": counts["backbone_macs"], "classifiers_macs": counts["classifiers_macs"],
            "exit_costs": costs, **ee_stats, **extra,
        })
    else:
        stats["top1"] = (1 - base["acc"]) * 100
        if settings.eval_test and val is not None:
            stats["test_top1"] = (1 - evaluate(model, loaders.test, dev)["acc"]) * 100
    stats.update({k: counts[k] for k in ("params", "macs", "activations")})
    stats["tiny_ml"] = complexity.tiny_ml(counts["params"], counts["macs"], counts["activations"],
                                          **settings.tiny_ml_kwargs())
    if settings.eval_robust:
        from cnas.training.robustness import sigma_grid, top1_robust, weight_robustness

        sigmas = sigma_grid(settings.sigma_min, settings.sigma_max, settings.sigma_step)
        rob = weight_robustness(subnet, select_loader, sigmas, settings.n_draws, settings.seed, dev,
                                base_acc=base["acc"])
        stats["robustness"] = rob
        stats["sigmas"] = sigmas
        stats["top1_robust"] = top1_robust(stats["top1"], rob[0], settings.alpha, settings.alpha_norm)
        stats["alpha_norm"] = settings.alpha_norm
    stats["top1_split"] = top1_split
    stats["n_classes"] = n_classes
    stats["resolution"] = r
    stats["best_epoch"] = res.best_epoch + 1 if res.history else 0
    stats["history"] = [{k: round(v, 4) if isinstance(v, float) else v for k, v in h.items() if k != "val_n"}
                        for h in res.history]
    stats["inherited"] = inherited
    stats["seconds"] = time.perf_counter() - t0
    stats = {k: _round(v) if k not in ("epsilon", "branch_scores", "ece_scores", "history") else v
             for k, v in stats.items()}
    if out_path is not None:
        if settings.save_ckpt:
            atomic_torch_save(out_path / "ckpt.pth", {
                "state_dict": model.state_dict(), "arch": arch, "n_classes": n_classes, "resolution": r,
                "dataset": settings.dataset, "thresholds": list(getattr(model, "thresholds", [])),
            })
        atomic_write_json(out_path / f"{name}.stats", stats)
    return stats


def evaluate_candidate(task: CandidateTask, device: str | None = None) -> dict:
    """Executor entry: :func:`evaluate_arch` on one :class:`CandidateTask` (raises on failure)."""
    return evaluate_arch(task.arch, task.settings, task.out_dir, task.name, device=device)


def load_stats(path: str | Path) -> dict:
    from cnas.errors import StatsFileError
    from cnas.fileio import read_json

    d = read_json(path, "stats file", StatsFileError)
    if not isinstance(d, dict):
        raise StatsFileError(f"stats file {path} does not hold a JSON object")
    return d


__all__ = ["EvalSettings", "CandidateTask", "evaluate_arch", "evaluate_candidate", "resolve_arch", "load_stats"]
