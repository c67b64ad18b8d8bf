"""Progressive shrinking: training an OFA MobileNetV3 supernet on the user's own data.

Once-for-All (Cai et al., ICLR 2020) trains the supernet in phases that each open one more elastic dimension:

==============  =================  ==========  ===========  =====================================================
phase           kernel sizes       expansions  depths       trains
==============  =================  ==========  ===========  =====================================================
``full``        7                  6           4            the largest network alone (cross-entropy)
``kernel``      3, 5, 7            6           4            elastic kernel
``depth_34``    3, 5, 7            6           3, 4         elastic depth, first step
``depth_234``   3, 5, 7            6           2, 3, 4      elastic depth
``expand_46``   3, 5, 7            4, 6        2, 3, 4      elastic expansion, first step
``expand_346``  3, 5, 7            3, 4, 6     2, 3, 4      the whole space
==============  =================  ==========  ===========  =====================================================

Every step of an elastic phase trains ``n_subnets`` sub-networks on the same batch and sums their gradients
before one optimizer step: the largest (cross-entropy with label smoothing), the smallest of the phase and
``n_subnets - 2`` random ones (with ``sandwich=False``: ``n_subnets - 1`` random ones), drawn per block within the phase's choices and stage-aware
(:func:`cnas.models.set_active_arch`). The sampled sub-networks learn from the largest network's outputs of the
same step (knowledge distillation: ``CE + kd_ratio * T^2 * KL(softmax(teacher/T) || softmax(student/T))``).
Each step draws one input resolution from ``range(lr, ur + 1, rstep)`` and resizes the batch to it. After
each phase the smallest, a middle and the largest sub-network of the phase are extracted, their BatchNorm
statistics re-calibrated (:func:`cnas.models.recalibrate_bn`) and measured on the validation split.

Deviations from OFA's own training code (which cannot run here: it hard-codes CUDA, an ImageNet data provider and
1000 classes):

* The teacher is the largest sub-network of the supernet being trained, evaluated in the same step ("in-place"
  distillation as in BigNAS), instead of a separate frozen copy of the phase-1 network: it costs no extra
  forward pass and no second model in memory. The largest network itself is trained with cross-entropy only.
* The sandwich rule by default: the largest and smallest sub-networks are in every step; OFA drew all of a
  step's sub-networks at random (``sandwich=False`` keeps only the largest, the teacher, in every step). On a
  short CPU schedule the sandwich rule makes the smallest sub-network one of the best-trained, so it can measure
  as accurate as far larger ones.
* One learning rate per kind of phase (``train_lr`` for the full network, ``elastic_lr`` for the others) with a
  cosine decay over each phase; OFA used hand-tuned per-phase rates for ImageNet with a 2048 batch.
* Per-step resolutions are made by resizing the batch (bilinear, antialiased when shrinking) instead of a
  per-sample random-resized crop at the drawn size.
* Weight decay skips BatchNorm weights and all biases (OFA's ``no_decay_keys='bn#bias'``).

Resume: after every epoch the whole training state (weights, optimizer, scheduler, position, history) is written
atomically to ``<save>.state`` and read back with ``weights_only=True``. Every epoch draws its random numbers
from ``(seed, phase, epoch)`` only, so a resumed run gives the same weights as an uninterrupted one on CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnas.data import load_data, subset_loader
from cnas.errors import CheckpointError, ConfigError
from cnas.fileio import atomic_torch_save, load_torch_file
from cnas.models import (
    build_supernet,
    get_subnet,
    load_supernet,
    read_checkpoint,
    recalibrate_bn,
    save_supernet,
    set_active_arch,
)
from cnas.models.checkpoint import check_supernet_file
from cnas.progress import progress_bar
from cnas.settings import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    DataSettings,
    DeviceSettings,
    ResolutionSettings,
    SgdSettings,
    int_at_least,
    redefault,
    resume_settings,
    setting,
    width_mult_check,
)
from cnas.spaces import DEPTHS, EXPANSIONS, KERNELS, N_STAGES, get_space
from cnas.spaces.geometry import MAX_RESOLUTION
from cnas.training.trainer import (SEED, TrainConfig, TrainingDiverged, evaluate, make_optimizer, make_scheduler,
                                   without_tiny_batches)

STATE_FORMAT = "cnas-supernet-state"
STATE_VERSION = 1


@dataclass(frozen=True)
class Phase:
    """One progressive-shrinking phase: its name, its group (whose epoch count it takes) and elastic choices."""

    name: str
    group: str
    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]

    @property
    def elastic(self) -> bool:
        return len(self.ks) * len(self.e) * len(self.d) > 1


PHASES: tuple[Phase, ...] = (
    Phase("full", "full", (7,), (6,), (4,)),
    Phase("kernel", "kernel", KERNELS, (6,), (4,)),
    Phase("depth_34", "depth", KERNELS, (6,), (3, 4)),
    Phase("depth_234", "depth", KERNELS, (6,), DEPTHS),
    Phase("expand_46", "expand", KERNELS, (4, 6), DEPTHS),
    Phase("expand_346", "expand", KERNELS, EXPANSIONS, DEPTHS),
)


@dataclass
class SupernetConfig(DeviceSettings, SgdSettings, ResolutionSettings, DataSettings):
    """Settings of one supernet training (the flags of ``python -m cnas.supernet``): data, resolutions, the SGD
    recipe and device (parts of :mod:`cnas.settings`) plus the phases and distillation.

    ``lr``/``ur``/``rstep`` are RESOLUTIONS (the original's names); the learning rates are ``train_lr`` (full
    network) and ``elastic_lr`` (elastic phases). ``epochs_depth`` and ``epochs_expand`` are the epochs of EACH of
    their two steps (depth 4,3 then 4,3,2; expansion 6,4 then 6,4,3). A phase with 0 epochs is skipped. Runtime
    settings (``save``, ``eval_each_phase``, device, threads, progress) may differ between an interrupted run and
    its resumption, and between a checkpoint and its re-use.
    """

    weight_decay: float = redefault(SgdSettings, "weight_decay", 3e-5)
    warmup_epochs: float = redefault(SgdSettings, "warmup_epochs", 1.0,
                                     help="linear warm-up of the full-network phase (from scratch only)")
    init: str | None = setting(None, help="start from these supernet weights, e.g. an official OFA checkpoint (its "
                                          "classifier is replaced when the class count differs)")
    save: str | None = setting(None, help="output checkpoint (default: supernets/<dataset>.pth); <save>.state "
                                          "holds the resumable state", runtime=True)
    width_mult: float = setting(1.0, help="supernet width 1.0 or 1.2 (with --init: read from the file)",
                                check=width_mult_check)
    train_lr: float = setting(0.05, help="learning rate of the full-network phase", check=POSITIVE)
    elastic_lr: float = setting(0.02, help="learning rate of the elastic phases", check=POSITIVE)
    epochs_full: int = setting(3, help="epochs of the full network (0 with --init to go straight to shrinking)",
                               check=NON_NEGATIVE_INT)
    epochs_kernel: int = setting(1, help="epochs of the elastic-kernel phase", check=NON_NEGATIVE_INT)
    epochs_depth: int = setting(1, help="epochs of each elastic-depth step (4,3 then 4,3,2)", check=NON_NEGATIVE_INT)
    epochs_expand: int = setting(1, help="epochs of each elastic-expansion step (6,4 then 6,4,3)",
                                 check=NON_NEGATIVE_INT)
    n_subnets: int = setting(3, help="sub-networks per step: largest, smallest and n_subnets - 2 random ones",
                             check=int_at_least(2))
    sandwich: bool = setting(True, help="train the smallest sub-network in every elastic step (the sandwich rule); "
                                        "false: the largest and n_subnets - 1 random ones")
    kd_ratio: float = setting(1.0, help="weight of the distillation loss from the largest network (0: none)",
                              check=NON_NEGATIVE)
    kd_temperature: float = setting(1.0, help="distillation temperature", check=POSITIVE)
    augment: bool = setting(True, help="the dataset's default training augmentation")
    bn_images: int = setting(2000, help="training images used to re-calibrate BatchNorm before measuring a "
                                        "sub-network", check=POSITIVE_INT)
    max_steps_per_epoch: int | None = setting(None, help="cap on the steps of every epoch (quick runs and tests)",
                                              check=POSITIVE_INT)
    eval_each_phase: bool = setting(True, help="measure smallest/middle/largest after every phase (else only at "
                                               "the end)", runtime=True)
    seed: int = setting(0, help="seed of the sampled sub-networks, batch order and augmentation",
                        check=SEED)
    progress: bool = setting(True, help="progress bars", runtime=True)

    def validate(self) -> "SupernetConfig":
        super().validate()
        if sum(self.phase_epochs().values()) == 0:
            raise ConfigError("every phase has 0 epochs: give e.g. --epochs_full 3 --epochs_kernel 1")
        get_space("mobilenetv3", self.lr, self.ur, self.rstep)  # checks the resolution flags
        if self.ur > MAX_RESOLUTION:
            raise ConfigError(f"--ur {self.ur} is beyond the largest input resolution {MAX_RESOLUTION}")
        if not 0 < self.val_split < 1:
            raise ConfigError(f"--val_split {self.val_split} must be in (0, 1): the subnets are measured on the "
                              "validation split (never on the test set)")
        return self

    def preflight(self) -> None:
        """Everything that can be checked without training, before anything is written: the settings, the data
        (opened as training opens it), the ``--init`` weights (:func:`cnas.models.checkpoint.check_supernet_file`:
        any class count; the width given, else any official one) and what ``--save`` names (a file path whose
        folder is not a file). Torch's random state is left as it was."""
        self.validate()
        path = self.save_path()
        if path.is_dir():
            raise ConfigError(f"--save {path} is a folder; give the supernet's file path, e.g. {path / 'net.pth'}")
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ConfigError(f"--save {path}: {parent} is a file, not a folder")
        with torch.random.fork_rng(devices=[]):
            loaders = load_data(self.dataset, self.data, resolution=self.ur, val_split=self.val_split,
                                batch_size=self.batch_size, seed=self.seed, augment=self.augment,
                                n_classes=self.n_classes, device="cpu")
        if self.init:
            check_supernet_file(self.init, loaders.n_classes, flag="--init",
                                width_mult=None if self.width_mult == 1.0 else self.width_mult, same_classes=False,
                                width_hint=f" as --width_mult {self.width_mult} asks")

    def save_path(self) -> Path:
        return Path(self.save) if self.save else Path("supernets") / f"{self.dataset}.pth"

    def phase_epochs(self) -> dict[str, int]:
        return {"full": self.epochs_full, "kernel": self.epochs_kernel, "depth": self.epochs_depth,
                "expand": self.epochs_expand}

    def phases(self) -> list[tuple[Phase, int]]:
        """The phases that run, with their epochs."""
        ep = self.phase_epochs()
        return [(p, ep[p.group]) for p in PHASES if ep[p.group] > 0]

    def training_settings(self) -> dict:
        """The settings that determine the trained weights (compared on resume and on re-use of a checkpoint)."""
        return resume_settings(self)


@dataclass
class SupernetResult:
    path: Path
    meta: dict
    trained: bool  # False when an up-to-date checkpoint was found and nothing was trained


# ------------------------------------------------------------------------------------------------ sampling
def _stage_arch(ks: list[int], e: list[int], d: list[int]) -> dict:
    return {"d": [int(v) for v in d], "e": [int(v) for v in e], "ks": [int(v) for v in ks]}


def uniform_arch(k: int, e: int, d: int) -> dict:
    """The arch with kernel ``k``, expansion ``e`` in every block and depth ``d`` in every stage."""
    n = d * N_STAGES
    return _stage_arch([k] * n, [e] * n, [d] * N_STAGES)


def phase_archs(phase: Phase) -> dict[str, dict]:
    """The smallest, a middle and the largest sub-network within ``phase``'s choices."""
    mid = lambda c: sorted(c)[len(c) // 2]  # noqa: E731
    return {
        "smallest": uniform_arch(min(phase.ks), min(phase.e), min(phase.d)),
        "middle": uniform_arch(mid(phase.ks), mid(phase.e), mid(phase.d)),
        "largest": uniform_arch(max(phase.ks), max(phase.e), max(phase.d)),
    }


def sample_arch(phase: Phase, rng: np.random.Generator) -> dict:
    """A random sub-network within ``phase``'s choices: one depth per stage, one kernel/expansion per block."""
    d = rng.choice(phase.d, size=N_STAGES).tolist()
    n = int(sum(d))
    return _stage_arch(rng.choice(phase.ks, size=n).tolist(), rng.choice(phase.e, size=n).tolist(), d)


def step_archs(phase: Phase, n_subnets: int, rng: np.random.Generator, sandwich: bool = True) -> list[dict]:
    """The sub-networks of one training step: the largest first (the teacher), then for an elastic phase the
    smallest and ``n_subnets - 2`` random ones (``sandwich``), or ``n_subnets - 1`` random ones."""
    ext = phase_archs(phase)
    if not phase.elastic:
        return [ext["largest"]]
    fixed = [ext["largest"], ext["smallest"]] if sandwich else [ext["largest"]]
    return fixed + [sample_arch(phase, rng) for _ in range(n_subnets - len(fixed))]


def _epoch_seed(seed: int, phase_index: int, epoch: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(phase_index), int(epoch)]).generate_state(1)[0])


# ------------------------------------------------------------------------------------------------ losses
def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch."""
    t = float(temperature)
    return F.kl_div(F.log_softmax(student.float() / t, dim=1), F.log_softmax(teacher.float() / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)


def _resize(x: torch.Tensor, r: int) -> torch.Tensor:
    if x.shape[-1] == r and x.shape[-2] == r:
        return x
    return F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=r < x.shape[-1])


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or ".bn." in name or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ------------------------------------------------------------------------------------------------ trainer
class ProgressiveShrinking:
    """Progressive-shrinking training of one supernet, resumable from ``<save>.state``.

    ``log(msg)`` receives one line per phase (and resume/skip notices). ``on_epoch_end(phase_name, epoch)`` runs
    after every epoch's state file is written (e.g. to stop a run; an exception there leaves a resumable state).
    """

    def __init__(self, cfg: SupernetConfig, log: Callable[[str], None] | None = None,
                 on_epoch_end: Callable[[str, int], None] | None = None):
        self.cfg = cfg.validate()
        self.log = log or (lambda msg: None)
        self.on_epoch_end = on_epoch_end
        self.path = cfg.save_path()
        self.state_path = Path(str(self.path) + ".state")
        self.device = torch.device(cfg.device)
        self.space = get_space("mobilenetv3", cfg.lr, cfg.ur, cfg.rstep)
        self._data: dict[int, Any] = {}

    # ---------------------------------------------------------------- data
    def data(self, resolution: int):
        r = int(resolution)
        if r not in self._data:
            self._data[r] = load_data(self.cfg.dataset, self.cfg.data, resolution=r, val_split=self.cfg.val_split,
                                      batch_size=self.cfg.batch_size, seed=self.cfg.seed,
                                      augment=self.cfg.augment, n_classes=self.cfg.n_classes, device=self.device)
        return self._data[r]

    # ---------------------------------------------------------------- measuring
    def measure(self, supernet: nn.Module, arch: dict, resolution: int) -> float:
        """Validation accuracy of ``arch`` extracted from ``supernet`` after BN re-calibration."""
        loaders = self.data(resolution)
        subnet = get_subnet(supernet, arch).to(self.device)
        recalibrate_bn(subnet, subset_loader(loaders.train, self.cfg.bn_images, seed=self.cfg.seed, augment=False))
        return float(evaluate(subnet, loaders.val, self.device)["acc"])

    def measure_phase(self, supernet: nn.Module, phase: Phase) -> dict:
        """``{"smallest"|"middle"|"largest": {"arch", "r", "val_acc"}}``: the smallest at the lowest resolution,
        the middle at the middle one, the largest at the highest."""
        res = self.space.resolutions
        at = {"smallest": res[0], "middle": res[len(res) // 2], "largest": res[-1]}
        out = {}
        for which, arch in phase_archs(phase).items():
            out[which] = {"arch": arch, "r": int(at[which]), "val_acc": self.measure(supernet, arch, at[which])}
        return out

    # ---------------------------------------------------------------- state
    def _load_state(self) -> dict | None:
        if not self.state_path.exists():
            return None
        state = load_torch_file(self.state_path, what="supernet training state")
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{self.state_path} is not a cnas supernet training state; delete it to start over")
        old, new = state.get("settings", {}), self.cfg.training_settings()
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            k = diff[0]
            raise ConfigError(f"{self.state_path} was written with other settings ({k}: {old.get(k)!r} there, "
                              f"{new.get(k)!r} now): pass the same flags to resume, or delete it to start over")
        return state

    def _save_state(self, supernet, optimizer, scheduler, phase_index: int, epoch: int, history: list) -> None:
        atomic_torch_save(self.state_path, {
            "format": STATE_FORMAT, "version": STATE_VERSION, "settings": self.cfg.training_settings(),
            "phase": phase_index, "epoch": epoch, "history": history,
            "model": {k: v.detach().cpu() for k, v in supernet.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        })

    # ---------------------------------------------------------------- building
    def build(self) -> nn.Module:
        torch.manual_seed(self.cfg.seed)
        n_classes = self.data(self.cfg.ur).n_classes
        if self.cfg.init:
            width = None if self.cfg.width_mult == 1.0 else self.cfg.width_mult
            return load_supernet(self.cfg.init, n_classes, width_mult=width)
        return build_supernet(n_classes, width_mult=self.cfg.width_mult)

    def _optim(self, supernet: nn.Module, phase: Phase, epochs: int, steps: int):
        cfg = self.cfg
        first = phase.name == "full" and not cfg.init
        tc = TrainConfig(epochs=epochs, lr=cfg.train_lr if phase.name == "full" else cfg.elastic_lr,
                         momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                         warmup_epochs=cfg.warmup_epochs if first else 0.0)
        optimizer = make_optimizer(_param_groups(supernet, cfg.weight_decay), tc)
        return optimizer, make_scheduler(optimizer, tc, steps), tc.lr

    # ---------------------------------------------------------------- training
    def _train_epoch(self, supernet, optimizer, scheduler, phase: Phase, phase_index: int, epoch: int,
                     global_epoch: int, steps: int, desc: str) -> float:
        cfg = self.cfg
        loader = self.data(cfg.ur).train
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(global_epoch)
        seed = _epoch_seed(cfg.seed, phase_index, epoch)
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        supernet.train()
        batches = loader
        if cfg.progress:
            batches = progress_bar(loader, total=steps, desc=desc, leave=False)
        tot, n = 0.0, 0
        for step, (x, y) in enumerate(without_tiny_batches(batches, scheduler.step)):
            if step >= steps:
                break
            x, y = x.to(self.device), y.to(self.device)
            x = _resize(x, int(rng.choice(self.space.resolutions)))
            optimizer.zero_grad(set_to_none=True)
            teacher = None
            for i, arch in enumerate(step_archs(phase, cfg.n_subnets, rng, cfg.sandwich)):
                set_active_arch(supernet, arch)
                out = supernet(x).float()
                loss = F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
                if teacher is None:
                    teacher = out.detach()
                elif cfg.kd_ratio > 0:
                    loss = loss + cfg.kd_ratio * kd_loss(out, teacher, cfg.kd_temperature)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"the supernet's training loss became {loss.item()} in phase {phase.name} "
                                           f"epoch {epoch + 1}")
                loss.backward()
                if i == 0:
                    tot += loss.item() * y.numel()
                    n += y.numel()
            optimizer.step()
            scheduler.step()
        if cfg.progress:
            batches.close()
        return tot / max(1, n)

    def run(self) -> SupernetResult:
        cfg = self.cfg
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        t0 = time.perf_counter()
        supernet = self.build().to(self.device)
        phases = cfg.phases()
        state = self._load_state()
        start_phase, start_epoch, history = 0, 0, []
        if state is not None:
            nn.Module.load_state_dict(supernet, state["model"], strict=True)
            start_phase, start_epoch, history = int(state["phase"]), int(state["epoch"]), list(state["history"])
            self.log(f"resuming from {self.state_path}: phase {phases[start_phase][0].name}, "
                     f"{start_epoch} epoch(s) done")
        loader = self.data(cfg.ur).train
        steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
        steps = max(1, steps)
        global_epoch = sum(ep for _, ep in phases[:start_phase])
        for pi in range(start_phase, len(phases)):
            phase, epochs = phases[pi]
            optimizer, scheduler, lr = self._optim(supernet, phase, epochs, steps)
            first = start_epoch if pi == start_phase else 0
            if state is not None and pi == start_phase:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            tp = time.perf_counter()
            losses = [h for h in history if h["phase"] == phase.name]
            record = losses[0] if losses else {"phase": phase.name, "epochs": epochs, "lr": lr,
                                                "ks": list(phase.ks), "e": list(phase.e), "d": list(phase.d),
                                                "train_loss": [], "seconds": 0.0}
            if not losses:
                history.append(record)
            for epoch in range(first, epochs):
                loss = self._train_epoch(supernet, optimizer, scheduler, phase, pi, epoch, global_epoch + epoch,
                                         steps, f"{phase.name} {epoch + 1}/{epochs}")
                record["train_loss"].append(float(loss))
                record["seconds"] = float(record["seconds"] + time.perf_counter() - tp)
                tp = time.perf_counter()
                self._save_state(supernet, optimizer, scheduler, pi, epoch + 1, history)
                if self.on_epoch_end is not None:
                    self.on_epoch_end(phase.name, epoch + 1)
            global_epoch += epochs
            if cfg.eval_each_phase and "accuracy" not in record:
                record["accuracy"] = self.measure_phase(supernet, phase)
                record["seconds"] = float(record["seconds"] + time.perf_counter() - tp)
                self._save_state(supernet, optimizer, scheduler, pi, epochs, history)
            acc = record.get("accuracy")
            accs = " ".join(f"{k} {v['val_acc'] * 100:.1f}%" for k, v in acc.items()) if acc else "(not measured)"
            loss_txt = f"{record['train_loss'][-1]:.3f}" if record["train_loss"] else "n/a"
            self.log(f"phase {phase.name} (ks {list(phase.ks)} e {list(phase.e)} d {list(phase.d)}, {epochs} "
                     f"epoch(s), lr {lr:g}): train loss {loss_txt}; val acc {accs}")

        last = phases[-1][0]
        accuracy = history[-1].get("accuracy") or self.measure_phase(supernet, last)
        trained = {"ks": sorted(set().union(*(p.ks for p, _ in phases))),
                   "e": sorted(set().union(*(p.e for p, _ in phases))),
                   "d": sorted(set().union(*(p.d for p, _ in phases)))}
        meta = {
            "dataset": cfg.dataset,
            "data": cfg.data,
            "init": cfg.init,
            "resolutions": list(self.space.resolutions),
            "lr": cfg.lr, "ur": cfg.ur, "rstep": cfg.rstep,
            "phases": history,
            "trained_choices": trained,
            "accuracy": accuracy,
            "settings": cfg.training_settings(),
            "seconds": float(sum(h["seconds"] for h in history)),
            "complete": True,
        }
        save_supernet(self.path, supernet, meta)
        _, meta = read_checkpoint(self.path)
        self.state_path.unlink(missing_ok=True)
        self.log(f"wrote {self.path} ({self.path.stat().st_size / 2**20:.1f} MiB) in "
                 f"{time.perf_counter() - t0:.0f} s")
        return SupernetResult(self.path, meta, trained=True)


def existing_supernet(cfg: SupernetConfig) -> dict | None:
    """The meta of the finished checkpoint at ``cfg``'s save path when it was trained with the same settings;
    ``None`` when there is none. A checkpoint trained with other settings raises :class:`ConfigError`."""
    path = cfg.save_path()
    if not path.exists():
        return None
    _, meta = read_checkpoint(path)
    old, new = meta.get("settings"), cfg.training_settings()
    if isinstance(old, dict):  # a setting added since the file was trained had its default's behaviour then
        defaults = SupernetConfig().training_settings()
        old = {**{k: defaults[k] for k in new if k not in old}, **old}
    if meta.get("complete") and old == new:
        return meta
    if old is None:
        raise ConfigError(f"--save {path} already holds a supernet that cnas.supernet did not train; "
                          "pass --overwrite or choose another --save")
    k = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))[0]
    raise ConfigError(f"--save {path} already holds a supernet trained with other settings ({k}: {old.get(k)!r} "
                      f"there, {new.get(k)!r} now); pass --overwrite or choose another --save")


def train_supernet(cfg: SupernetConfig, log: Callable[[str], None] | None = None, overwrite: bool = False,
                   on_epoch_end: Callable[[str, int], None] | None = None) -> SupernetResult:
    """Train (or resume, or re-use) the supernet that ``cfg`` describes and write it to ``cfg.save_path()``.

    An existing finished checkpoint trained with the same settings is returned without training (``trained``
    False) unless ``overwrite``; one trained with other settings is a :class:`ConfigError` unless ``overwrite``.
    With ``overwrite`` a stale ``<save>.state`` of other settings is discarded too.
    """
    cfg.validate()
    log = log or (lambda msg: None)
    if not overwrite:
        meta = existing_supernet(cfg)
        if meta is not None:
            log(f"{cfg.save_path()} is up to date (trained with these settings); nothing to do")
            return SupernetResult(cfg.save_path(), meta, trained=False)
    trainer = ProgressiveShrinking(cfg, log=log, on_epoch_end=on_epoch_end)
    if overwrite and trainer.state_path.exists():
        try:
            trainer._load_state()
        except (ConfigError, CheckpointError):
            trainer.state_path.unlink()
            log(f"discarded {trainer.state_path} (other settings)")
    return trainer.run()


__all__ = ["Phase", "PHASES", "SupernetConfig", "SupernetResult", "ProgressiveShrinking", "train_supernet",
           "existing_supernet", "phase_archs", "sample_arch", "step_archs", "uniform_arch", "kd_loss"]
