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
``support_conf``). ``test_top1`` is the test error when ``eval_test`` is on. With ``--quantize`` (single-exit nets):
``top1_int8`` (and ``test_top1_int8``), ``size_int8_bytes``, ``size_fp32_bytes``, ``quantization``, ``int8_seconds``
(:mod:`cnas.training.quantization`); with ``--save_ckpt`` the int8 network is also written as TorchScript
(``int8.torchscript.pt``). With ``--ood_eval``: ``mCE2``, ``mce``, ``ood_clean_top1``, ``ood_source``, ``ood_images``,
``ood_seconds`` (:mod:`cnas.training.ood`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch

from cnas import complexity
from cnas.data import load_data, loader_labels, stratified_split, subset_loader
from cnas.errors import ArchError, ConfigError
from cnas.fileio import atomic_write_bytes, atomic_write_json
from cnas.layout import CKPT, stats_file, subnet_file
from cnas.models import EENetwork, build_network, get_subnet, load_supernet, recalibrate_bn
from cnas.models.checkpoint import (
    check_supernet_family,
    check_supernet_file,
    load_net_checkpoint,
    save_net_checkpoint,
)
from cnas.models.ofa_net import build_supernet
from cnas.models.polynomial import substitute_activation
from cnas.settings import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    Bound,
    ConstraintSettings,
    DataSettings,
    DeviceSettings,
    ExitSettings,
    OneOf,
    OodSettings,
    QuantizationSettings,
    RobustnessSettings,
    setting,
    width_mult_check,
)
from cnas.spaces import SPACES, exit_mask, get_space, space_for_arch, space_of
from cnas.spaces.geometry import EDANAS, MAX_RESOLUTION, NACHOS, PLAIN, RESNET50, as_resolution, binary_heads
from cnas.training import ood
from cnas.training.early_exit import EEConfig, balanced_subset, exit_costs, measure_exits, train_exits
from cnas.training.quantization import Int8Result, quantize_and_measure
from cnas.training.robustness import sigma_grid, top1_robust, weight_robustness
from cnas.training.trainer import TrainConfig, TrainResult, evaluate, train, use_channels_last

STATS_DECIMALS = 2
#: An input resolution: whole pixels per side, at most :data:`cnas.spaces.geometry.MAX_RESOLUTION`.
RESOLUTION = Bound(integer=True, lo=1, hi=MAX_RESOLUTION, why="whole pixels per side")
#: The resolution at which :func:`preflight` opens the data when the settings give none.
PREFLIGHT_RESOLUTION = 32


@dataclass
class EvalSettings(DeviceSettings, ExitSettings, OodSettings, QuantizationSettings, ConstraintSettings,
                   RobustnessSettings, DataSettings, TrainConfig):
    """How one candidate is evaluated: the training recipe (:class:`TrainConfig`, single exit and the backbone
    stage of early-exit nets), data, robustness, constraints, early exits and device (parts of
    :mod:`cnas.settings`) plus the arch, weights and what to keep. Field names follow the original's flags."""

    search_space: str | None = setting(None, help="mobilenetv3, eemobilenetv3, cbnmobilenetv3 or resnet50 "
                                                  "(default: guessed from the arch's keys)",
                                       check=OneOf(tuple(SPACES)))
    resolution: int | None = setting(None, help="input resolution when the arch has no 'r'", check=RESOLUTION)
    width_mult: float = setting(1.0, help="width multiplier of the MobileNetV3 supernet: 1.0 or 1.2 (OFA's "
                                          "ofa_mbv3_d234_e346_k357_w1.2); counts, networks and --supernet_path "
                                          "follow it", check=width_mult_check, earlier=1.0)
    num_workers: int = setting(0, help="data-loading worker processes (0: in the main process)", runtime=True,
                               check=NON_NEGATIVE_INT)
    supernet_path: str | None = setting(None, help="OFA supernet checkpoint to inherit weights from (see "
                                                   "supernets/README.md)")
    pretrained: bool = setting(True, help="inherit weights from supernet_path")
    bn_recalibrate: bool = setting(True, help="re-estimate batch-norm statistics of inherited weights on training "
                                              "images")
    bn_recal_images: int = setting(512, help="training images that re-estimate the batch-norm statistics",
                                   check=POSITIVE_INT, earlier=512)
    train_images: int = setting(0, help="train (and re-estimate batch norm) on this many training images, a fixed "
                                        "class-balanced subset (0: the whole training split); caps the cost of "
                                        "training candidates and exits on a large dataset",
                                check=NON_NEGATIVE_INT, earlier=0)
    val_images: int = setting(0, help="measure top1 on this many validation images, a fixed class-balanced subset "
                                      "(0: the whole validation split); a smaller subset measures faster with more "
                                      "binomial noise", check=NON_NEGATIVE_INT, earlier=0)
    eval_test: bool = setting(True, help="also measure the test error (test_top1)")
    save_ckpt: bool = setting(False, help="write the trained weights (ckpt.pth)")
    func_constr: bool = setting(False, help="replace ReLU by 0.01x^2 + 0.5x (homomorphic-encryption friendly) "
                                            "before training")

    def validate(self) -> "EvalSettings":
        super().validate()
        if self.eval_robust:
            sigma_grid(self.sigma_min, self.sigma_max, self.sigma_step)
            if self.n_draws < 1:
                raise ConfigError("--eval_robust needs --n_draws of at least 1 (noise draws per level)")
        if self.epochs == 0 and not (self.supernet_path and self.pretrained):
            raise ConfigError("--n_epochs 0 measures the weights as they are: it needs inherited weights "
                              "(--supernet_path, with --pretrained true); without them the network is untrained")
        if self.ood_data is not None and not self.ood_eval:
            raise ConfigError("--ood_data holds corrupted images for --ood_eval: pass --ood_eval too")
        if self.smax is not None and not self.quantize:
            raise ConfigError("--smax bounds the size of the int8 network: pass --quantize too")
        if self.quantize and self.search_space in (EDANAS, NACHOS):
            raise ConfigError(f"--quantize measures single-exit networks; the {self.search_space} space has early "
                              "exits (use --search_space mobilenetv3)")
        if self.search_space:
            check_space_support(self.search_space, self)
        return self

    def tiny_ml_kwargs(self) -> dict:
        """tiny_ml's limits and weights: the given ones, else :data:`cnas.complexity.TINY_ML_DEFAULTS`."""
        given = {k: getattr(self, k) for k in complexity.TINY_ML_DEFAULTS}
        return {k: complexity.TINY_ML_DEFAULTS[k] if v is None else v for k, v in given.items()}

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


def check_space_support(space: str, settings: EvalSettings) -> None:
    """Refuse, in one line naming the flag and the fix, a setting that the networks of the search space ``space``
    do not support (what each space supports is declared by its class: ``width_mults``, ``latency_tables``,
    ``int8``, ``exit_heads``). The resnet50 space refuses ``--width_mult 1.2``, ``--latency_table``/``--lmax``,
    ``--quantize`` and the early-exit flags ``--method``, ``--tune_epsilon``, ``--support_set``, ``--ee_epochs``."""
    cls = SPACES[space]
    if float(settings.width_mult) not in cls.width_mults:
        raise ConfigError(f"--width_mult {settings.width_mult:g} is a MobileNetV3 supernet width; the {space} space's "
                          "widths are its arch's own w genes (drop --width_mult)")
    if not cls.latency_tables:
        flag = "--latency_table" if settings.latency_table is not None else "--lmax" if settings.lmax is not None \
            else None
        if flag:
            raise ConfigError(f"{flag}: latency tables time the operations of the MobileNetV3 spaces; the {space} "
                              f"space has none (drop {flag}; bound the MACs with --mmax instead)")
    if not cls.int8 and settings.quantize:
        raise ConfigError(f"--quantize (and the top1_int8 / size_int8 objectives) measures MobileNetV3 networks as "
                          f"int8; the {space} space has no int8 path (drop --quantize)")
    if not cls.exit_heads:
        given = [flag for flag, on in (("--method", settings.method is not None),
                                       ("--tune_epsilon", settings.tune_epsilon),
                                       ("--support_set", settings.support_set),
                                       ("--ee_epochs", settings.ee_epochs > 0)) if on]
        if given:
            raise ConfigError(f"{given[0]} sets up early exits; the {space} space has none (drop {given[0]}, or "
                              "search --search_space eemobilenetv3 or cbnmobilenetv3)")


@dataclass
class CandidateTask:
    """One unit of work for an executor: evaluate ``arch`` and write ``<out_dir>/<name>.stats``."""

    arch: dict
    settings: EvalSettings
    out_dir: str | None = None
    name: str = "net"
    extra: dict = field(default_factory=dict)


INIT_KINDS = ("random", "supernet", "checkpoint")


@dataclass(frozen=True)
class Init:
    """Where the network's weights start.

    ``random``: the sub-network of a freshly initialised supernet (seeded with the settings' seed).
    ``supernet``: the sub-network of the supernet file ``path``, its batch-norm statistics re-estimated.
    ``checkpoint``: the cnas network checkpoint ``path`` (:func:`cnas.models.checkpoint.load_net_checkpoint`),
    saved for the same arch; with ``supernet_stats`` its batch-norm statistics are a supernet's and are re-estimated.
    ``label`` names the start in the stats (``init``); by default the kind, or the kind and the path.
    """

    kind: str = "random"
    path: str | None = None
    supernet_stats: bool = False
    label: str | None = None

    def __post_init__(self):
        if self.kind not in INIT_KINDS:
            raise ConfigError(f"initialisation must be one of {list(INIT_KINDS)}, got {self.kind!r}")
        if self.kind != "random" and not self.path:
            raise ConfigError(f"a {self.kind} initialisation needs a file")

    @classmethod
    def for_settings(cls, settings: EvalSettings) -> "Init":
        """The search's start: the supernet of ``--supernet_path`` with ``--pretrained``, else random."""
        if settings.supernet_path and settings.pretrained:
            return cls("supernet", str(settings.supernet_path))
        return cls()

    @property
    def inherited(self) -> bool:
        """The weights (and batch-norm statistics) are the supernet's."""
        return self.kind == "supernet" or (self.kind == "checkpoint" and self.supernet_stats)

    def describe(self) -> str:
        if self.label:
            return self.label
        return self.kind if self.kind == "random" else f"{self.kind} {self.path}"


@dataclass
class Outputs:
    """What the pipeline writes under ``dir`` (nothing when ``dir`` is None): ``<name>.subnet`` first (when
    ``subnet`` and it does not exist yet), the trainer's resumable epoch state ``state`` while the backbone trains,
    the network checkpoint ``ckpt`` (:func:`cnas.models.checkpoint.save_net_checkpoint`) and ``<name>.stats`` last.

    ``extra_stats`` are added to the stats. ``report_test``: when there is no validation split (the test split
    selects), the figures measured on it are reported under ``test_*`` too.
    """

    dir: str | Path | None = None
    name: str = "net"
    subnet: bool = True
    ckpt: str | None = None
    state: str | None = None
    extra_stats: dict = field(default_factory=dict)
    report_test: bool = False


# ---------------------------------------------------------------- helpers
_SUPERNETS: dict[tuple, Any] = {}


def _supernet(path: str, n_classes: int, width_mult: float = 1.0, space: str = PLAIN):
    key = (str(Path(path).resolve()), n_classes, float(width_mult), space == RESNET50)
    if key not in _SUPERNETS:
        _SUPERNETS.clear()  # keep one in memory
        _SUPERNETS[key] = load_supernet(path, n_classes, width_mult=width_mult, space=space)
    return _SUPERNETS[key]


def _round(v):
    if isinstance(v, float):
        return round(v, STATS_DECIMALS)
    if isinstance(v, list):
        return [_round(x) for x in v]
    return v


def resolve_arch(arch: dict, settings: EvalSettings) -> tuple[dict, int]:
    """Validate ``arch`` against the settings' space (and its exits against ``--method``); return it (canonical)
    and its resolution."""
    if not isinstance(arch, dict):
        raise ArchError(f"an architecture must be a JSON object with ks, e, d (and r); got {type(arch).__name__}")
    r = arch.get("r", settings.resolution)
    if r is None:
        raise ConfigError("the architecture has no 'r' and no --resolution was given (e.g. --resolution 32)")
    if as_resolution(r) is None:
        raise ArchError(f"the architecture's resolution 'r' must be an integer in [1, {MAX_RESOLUTION}], got {r!r}")
    if settings.search_space:
        space = get_space(settings.search_space, lr=int(r), ur=int(r))
    else:
        space = space_for_arch(arch, lr=int(r), ur=int(r))
    canon = space.validate({k: v for k, v in arch.items() if k != "r"} | {"r": int(r)})
    check_space_support(space.name, settings)
    if any(exit_mask(canon)):
        exit_method(canon, settings)
        if settings.quantize:
            raise ConfigError("--quantize measures single-exit networks; this arch has early exits (t/b genes)")
    if settings.ood_eval and settings.ood_data is None and r < ood.MIN_SIDE:
        raise ConfigError(f"--ood_eval corrupts images of at least {ood.MIN_SIDE} x {ood.MIN_SIDE} pixels; the arch's "
                          f"resolution is {r} (use r >= {ood.MIN_SIDE}, or --ood_data with CIFAR-10-C files)")
    return dict(sorted((canon | {"r": int(r)}).items())), int(r)


def exit_method(arch: dict, settings: EvalSettings) -> str:
    """How the exits of the early-exit ``arch`` train: ``--method``, else by its keys (``b``: bernulli)."""
    method = settings.method or ("bernulli" if binary_heads(arch) else "joint")
    if method == "bernulli" and "b" not in arch:
        raise ConfigError("--method bernulli needs binary exit heads (NACHOS 'b' archs, cbnmobilenetv3); "
                          "EDANAS 't' archs train with --method joint")
    return method


def preflight(settings: EvalSettings) -> None:
    """Check, without training, everything about ``settings`` that could stop an evaluation, so that bad input
    stops before any work starts or any file is written: every setting (:meth:`EvalSettings.validate`), the
    dataset (``--data``'s existence and kind, then the data opened as an evaluation opens it: its files, their
    format, the class count, the validation split) and, when weights are inherited, the supernet of
    ``--supernet_path`` (:func:`cnas.models.checkpoint.check_supernet_file`: missing, empty, truncated, not a
    supernet, another width, space or class count). Raises a :class:`~cnas.errors.UsageError` (one line); keeps
    nothing in memory and leaves torch's random state as it was."""
    preflight_classes(settings)


def preflight_classes(settings: EvalSettings) -> int:
    """:func:`preflight`, returning the class count of the data."""
    settings.validate()
    with torch.random.fork_rng(devices=[]):
        loaders = load_data(settings.dataset, settings.data, resolution=settings.resolution or PREFLIGHT_RESOLUTION,
                            val_split=settings.val_split, batch_size=settings.batch_size, seed=settings.seed,
                            n_classes=settings.n_classes, num_workers=0, device="cpu")
    if settings.supernet_path and settings.pretrained:
        check_supernet_file(settings.supernet_path, loaders.n_classes, width_mult=settings.width_mult,
                            space=settings.search_space)  # no space given: the file's keys tell its family
    if settings.ood_eval:
        if settings.ood_data is not None:
            ood.read_corruption_folder(settings.ood_data, loaders.n_classes)
        else:
            ood.corrupt_fn()
    return loaders.n_classes


# ---------------------------------------------------------------- the pipeline
@dataclass
class Run:
    """What the steps of :func:`run_pipeline` share: the arch and settings, the data, the network as it trains
    and what the training steps measured."""

    arch: dict
    r: int
    settings: EvalSettings
    device: torch.device
    init: Init = field(default_factory=Init)
    loaders: Any = None
    backbone: torch.nn.Module | None = None
    network: torch.nn.Module | None = None  # the early-exit network (None until the exits are added)
    recal_loader: Any = None
    result: TrainResult | None = None
    base: dict = field(default_factory=dict)  # the backbone's scores on the selection split after its training
    ee: Any = None  # EEConfig of an early-exit arch
    costs: list = field(default_factory=list)
    exit_extra: dict = field(default_factory=dict)
    int8: Int8Result | None = None  # the int8 network and its stats (--quantize)

    @property
    def n_classes(self) -> int:
        return self.loaders.n_classes

    @property
    def val(self):
        return self.loaders.val

    @property
    def select_loader(self):
        """The split that selects (epochs, thresholds) and is reported as ``top1``: validation, else test."""
        return self.loaders.val if self.loaders.val is not None else self.loaders.test

    @property
    def early_exit(self) -> bool:
        return any(exit_mask(self.arch))

    @property
    def model(self) -> torch.nn.Module:
        """The network measured and saved: the early-exit network once built, else the backbone."""
        return self.network if self.network is not None else self.backbone

    def recalibrate(self, model: torch.nn.Module) -> None:
        """Re-estimate the batch-norm statistics of ``model`` on ``bn_recal_images`` training images (when
        ``bn_recalibrate``)."""
        if self.settings.bn_recalibrate:
            recalibrate_bn(model, self.recal_loader)


def setup(arch: dict, settings: EvalSettings, device: str | torch.device | None = None) -> Run:
    """Validate the settings and the arch; pick the device and thread count."""
    settings.validate()
    arch, r = resolve_arch(arch, settings)
    dev = torch.device(device or settings.device)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    return Run(arch=arch, r=r, settings=settings, device=dev)


def load_run_data(run: Run) -> None:
    """The train / validation / test loaders of the settings' dataset at the arch's resolution."""
    s = run.settings
    run.loaders = load_data(s.dataset, s.data, resolution=run.r, val_split=s.val_split, batch_size=s.batch_size,
                            seed=s.seed, n_classes=s.n_classes, num_workers=s.num_workers, device=run.device,
                            channels_last=use_channels_last(s.channels_last, run.device))
    if s.train_images and s.train_images < len(run.loaders.train.dataset):
        run.loaders.train = subset_loader(run.loaders.train, s.train_images, seed=0, shuffle=True,
                                          loader_seed=s.seed)
    if s.val_images and run.loaders.val is not None and s.val_images < len(run.loaders.val.dataset):
        run.loaders.val = subset_loader(run.loaders.val, s.val_images, seed=0)


def initialise(run: Run, init: Init) -> None:
    """Step 1: the backbone's weights (and, from a checkpoint of an early-exit net, its exits'), then the
    polynomial activations of ``func_constr``; supernet batch-norm statistics are re-estimated."""
    s = run.settings
    run.init = init
    torch.manual_seed(s.seed)
    if init.kind == "checkpoint":
        net = build_network(run.arch, run.n_classes, resolution=run.r, width_mult=s.width_mult)
        load_net_checkpoint(init.path, net, arch=run.arch, n_classes=run.n_classes)
        if run.early_exit:
            run.network, run.backbone = net, net.backbone
        else:
            run.backbone = net
    else:
        space = space_of(run.arch)
        supernet = (_supernet(init.path, run.n_classes, s.width_mult, space) if init.kind == "supernet"
                    else build_supernet(run.n_classes, width_mult=s.width_mult, space=space))
        run.backbone = get_subnet(supernet, run.arch)
    if s.func_constr:
        substitute_activation(run.backbone)
    run.model.to(run.device)
    run.recal_loader = subset_loader(run.loaders.train, s.bn_recal_images, seed=s.seed, augment=False)
    if init.inherited:
        run.recalibrate(run.backbone)


def train_backbone(run: Run, state_path: str | Path | None = None, log: Callable[[str], None] | None = None) -> None:
    """Step 2: train the backbone as a single-exit network, selecting the epoch on validation (batch-norm
    statistics re-estimated before every validation: with few steps per epoch the running averages lag far behind
    the weights). ``state_path``: the trainer's resumable epoch state. Measures the backbone on the selection
    split afterwards."""
    cfg = run.settings.train_config()
    val = run.val

    def select_eval(m):
        run.recalibrate(m)
        return evaluate(m, val, run.device, cfg.amp, cfg.channels_last)

    run.result = train(run.backbone, run.loaders.train, val, cfg, device=run.device, log=log,
                       eval_fn=select_eval if val is not None else None,
                       checkpoint_path=str(state_path) if state_path is not None else None)
    if val is None:
        run.recalibrate(run.backbone)
    run.base = evaluate(run.backbone, run.select_loader, run.device)


def train_early_exits(run: Run, log: Callable[[str], None] | None = None) -> None:
    """Step 3 (early-exit archs): add the exits (unless the checkpoint brought them) and train them (``joint``:
    with the backbone, or on it frozen when it was measured untrained; ``bernulli``: on the frozen backbone)."""
    s, arch = run.settings, run.arch
    method = exit_method(arch, s)
    # a backbone measured without training stays as it was measured
    run.ee = EEConfig.from_settings(s, method=method, freeze_backbone=run.init.kind != "random" and s.epochs == 0)
    if run.network is None:
        run.network = EENetwork(run.backbone, arch, run.n_classes, resolution=run.r).to(run.device)
    run.costs = exit_costs(complexity.count(arch, run.n_classes, run.r, width_mult=s.width_mult))
    train_loader, support_loader = run.loaders.train, None
    if s.support_set:
        trn = run.loaders.train
        pick, rest = balanced_subset(torch.as_tensor(loader_labels(trn)), 0.1, s.seed)
        support_loader = trn.with_indices(pick, shuffle=False, augment="none") \
            if hasattr(trn, "augment") else trn.with_indices(pick, shuffle=False)
        train_loader = trn.with_indices(rest)
    run.exit_extra = train_exits(run.network, train_loader, run.select_loader, s.train_config(), run.ee, run.costs,
                                 run.device, log=log, support_loader=support_loader,
                                 recalibrate=run.recalibrate if method == "joint" else None)


def measure(run: Run) -> dict:
    """Step 4: the stats (see the module docstring), unrounded."""
    s, dev, loaders = run.settings, run.device, run.loaders
    val, select_loader = run.val, run.select_loader
    counts = complexity.count(run.arch, run.n_classes, run.r, width_mult=s.width_mult)
    stats: dict[str, Any] = {}
    if run.early_exit:
        ee_stats = measure_exits(run.network, select_loader, run.costs, run.ee, dev,
                                 test_loader=loaders.test if s.eval_test and val is not None else None)
        stats.update({
            "backbone_top1": (1 - run.base["acc"]) * 100,
            "backbone_params": counts["backbone_params"], "classifiers_params": counts["classifiers_params"],
            "backbone_macs": counts["backbone_macs"], "classifiers_macs": counts["classifiers_macs"],
            "exit_costs": run.costs, **ee_stats, **run.exit_extra,
        })
    else:
        stats["top1"] = (1 - run.base["acc"]) * 100
        if s.eval_test and val is not None:
            stats["test_top1"] = (1 - evaluate(run.model, loaders.test, dev)["acc"]) * 100
    stats.update({k: counts[k] for k in ("params", "macs", "activations")})
    stats["tiny_ml"] = complexity.tiny_ml(counts["params"], counts["macs"], counts["activations"],
                                          **s.tiny_ml_kwargs())
    if s.eval_robust:
        sigmas = sigma_grid(s.sigma_min, s.sigma_max, s.sigma_step)
        rob = weight_robustness(run.backbone, select_loader, sigmas, s.n_draws, s.seed, dev,
                                base_acc=run.base["acc"])
        stats["robustness"] = rob
        stats["sigmas"] = sigmas
        stats["top1_robust"] = top1_robust(stats["top1"], rob[0], s.alpha, s.alpha_norm)
        stats["alpha_norm"] = s.alpha_norm
    res = run.result
    stats["top1_split"] = "val" if val is not None else "test"
    stats["n_classes"] = run.n_classes
    stats["resolution"] = run.r
    if s.width_mult != 1.0:
        stats["width_mult"] = s.width_mult
    stats["best_epoch"] = res.best_epoch + 1 if res.history else 0
    stats["history"] = [{k: round(v, 4) if isinstance(v, float) else v for k, v in h.items() if k != "val_n"}
                        for h in res.history]
    stats["inherited"] = run.init.inherited
    return stats


def measure_ood(run: Run) -> dict:
    """Step 4c (``--ood_eval``): the errors of the trained network (its final exit) under the 15 corruptions at
    5 severities (:mod:`cnas.training.ood`): corrupted on the fly from ``--ood_images`` images of ``--ood_split``
    at the network's resolution, or read from ``--ood_data``; normalized with the dataset's mean and std."""
    s, mean, std = run.settings, run.loaders.mean, run.loaders.std
    if s.ood_data is not None:
        sets, labels = ood.read_corruption_folder(s.ood_data, run.n_classes)
        if s.ood_images and s.ood_images < len(labels):
            idx = stratified_split(labels, s.ood_images / len(labels), s.seed)[1]  # ~ood_images, per class
            sets, labels = {k: v[idx] for k, v in sets.items()}, labels[idx]
        clean, source = None, str(s.ood_data)
    else:
        split = "val" if s.ood_split == "val" and run.val is not None else "test"
        loader = run.val if split == "val" else run.loaders.test
        clean, labels = ood.split_images(loader, mean, std, n=s.ood_images or None, seed=s.seed)
        key = (s.dataset, s.data, s.val_split, split, run.r, s.ood_images, s.seed)
        sets, source = ood.corrupted_set(clean, s.seed, key), split
    stats = ood.measure_ood(run.model, sets, clean, labels, run.r, mean, std, run.device)
    stats["mCE2"] = ood.round_table(stats["mCE2"], STATS_DECIMALS)
    stats["ood_source"] = source
    return stats


def measure_int8(run: Run, log: Callable[[str], None] | None = None) -> dict:
    """Step 4b (``--quantize``): the int8 network of the trained single-exit backbone and its stats
    (:func:`cnas.training.quantization.quantize_and_measure`, on the splits ``top1`` and ``test_top1`` use)."""
    s = run.settings
    test = run.loaders.test if s.eval_test and run.val is not None else None
    run.int8 = quantize_and_measure(run.backbone, run.loaders.train, run.select_loader, test, s.train_config(),
                                    qat_epochs=s.qat_epochs, qat_lr=s.qat_lr, calib_images=s.calib_images,
                                    backend=s.quant_backend, seed=s.seed, device=run.device, log=log)
    return dict(run.int8.stats)


_UNROUNDED = ("epsilon", "branch_scores", "ece_scores", "history")


#: The int8 network's TorchScript file, written beside the checkpoint (``--quantize --save_ckpt``).
INT8_FILE = "int8.torchscript.pt"


def write_outputs(run: Run, stats: dict, outputs: Outputs) -> None:
    """Step 5: the network checkpoint (when ``outputs.ckpt``; with ``--quantize`` also :data:`INT8_FILE`), then
    the stats file (atomically, last)."""
    if outputs.dir is None:
        return
    out = Path(outputs.dir)
    if outputs.ckpt:
        save_net_checkpoint(out / outputs.ckpt, run.model, run.arch, run.n_classes, run.r,
                            dataset=run.settings.dataset, mean=run.loaders.mean, std=run.loaders.std,
                            width_mult=float(run.settings.width_mult))
        if run.int8 is not None:
            atomic_write_bytes(out / INT8_FILE, run.int8.torchscript)
    atomic_write_json(stats_file(out, outputs.name), stats)


def run_pipeline(arch: dict, settings: EvalSettings, init: Init | None = None, outputs: Outputs | None = None,
                 device: str | torch.device | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Initialise -> train the backbone -> train the exits (early-exit archs) -> measure -> write the stats and
    the checkpoint. ``init`` defaults to :meth:`Init.for_settings`; ``outputs`` to writing nothing. Returns the
    stats dict (rounded, as written). Raises on failure, leaving no stats file."""
    t0 = time.perf_counter()
    outputs = outputs if outputs is not None else Outputs()
    run = setup(arch, settings, device)
    init = init if init is not None else Init.for_settings(settings)
    if init.kind == "supernet":  # a supernet of another space is refused before anything is written
        check_supernet_family(init.path, space_of(run.arch))
    out_path = Path(outputs.dir) if outputs.dir is not None else None
    if out_path is not None and outputs.subnet and not subnet_file(out_path, outputs.name).exists():
        atomic_write_json(subnet_file(out_path, outputs.name), run.arch, indent=None)
    load_run_data(run)
    initialise(run, init)
    if log is not None:
        cfg = settings.train_config()
        log(f"training from {run.init.describe()}: {run.loaders.describe()}; {cfg.epochs} epochs {cfg.optim} "
            f"lr {cfg.lr}")
    train_backbone(run, out_path / outputs.state if out_path is not None and outputs.state else None, log=log)
    if run.early_exit:
        train_early_exits(run, log=log)
    stats = measure(run)
    if settings.quantize:
        stats.update(measure_int8(run, log=log))
    if settings.ood_eval:
        stats.update(measure_ood(run))
    if outputs.report_test and stats["top1_split"] == "test":
        for k in ("top1", "exits_ratio", "avg_macs", "top1_int8"):
            if k in stats:
                stats.setdefault(f"test_{k}", stats[k])
    stats.update(outputs.extra_stats)
    stats["seconds"] = time.perf_counter() - t0
    stats = {k: _round(v) if k not in _UNROUNDED else v for k, v in stats.items()}
    write_outputs(run, stats, outputs)
    return stats


def evaluate_arch(arch: dict, settings: EvalSettings, out_dir: str | Path | None = None, name: str = "net",
                  device: str | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Train and measure ``arch`` from the search's start (:meth:`Init.for_settings`); write
    ``<out_dir>/<name>.subnet`` first and ``<name>.stats`` (and ``ckpt.pth`` when ``save_ckpt``) at the end.
    Returns the stats dict."""
    outputs = Outputs(out_dir, name, ckpt=CKPT if settings.save_ckpt else None)
    return run_pipeline(arch, settings, Init.for_settings(settings), outputs, device=device, log=log)


def evaluate_candidate(task: CandidateTask, device: str | None = None) -> dict:
    """Executor entry: :func:`evaluate_arch` on one :class:`CandidateTask` (raises on failure)."""
    return evaluate_arch(task.arch, task.settings, task.out_dir, task.name, device=device)


__all__ = ["EvalSettings", "CandidateTask", "Init", "Outputs", "Run", "run_pipeline", "evaluate_arch",
           "evaluate_candidate", "resolve_arch", "preflight", "setup", "load_run_data", "initialise",
           "train_backbone", "train_early_exits", "measure", "measure_int8", "measure_ood", "write_outputs",
           "INT8_FILE", "check_space_support"]
