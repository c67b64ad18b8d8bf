"""Supervised training of one network: SGD or SAM/ASAM, warm-up + cosine decay, best epoch on validation.

Fixes of the original's protocol: the cosine schedule decays once over the whole run
(the original stepped an epoch-sized schedule every batch, so its learning rate oscillated); label smoothing is
applied when asked (the original parsed it and ignored it); the best epoch is chosen on the validation split and
never on the test split. On CUDA, bfloat16 autocast and channels-last memory layout are used when enabled.
Training is resumable from an epoch checkpoint written atomically.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnas.errors import CheckpointError, ConfigError
from cnas.fileio import atomic_torch_save, load_torch_file
from cnas.progress import progress_bar
from cnas.settings import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, Bound, OneOf, SgdSettings, setting
from cnas.training.sam import SAM, frozen_bn_stats


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


#: A seed: what numpy's and torch's generators both take.
SEED = Bound(integer=True, lo=0, hi=2**32 - 1, why="a 32-bit seed")


def check_device_here(device: str, name: str = "device") -> None:
    """Refuse a CUDA device this machine does not have (for a command that trains where it starts)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError(f"--{name} {device}: no CUDA device is visible on this machine; use --{name} cpu")
    if dev.index is not None and dev.index >= count:
        raise ConfigError(f"--{name} {device}: this machine has {count} CUDA device(s), ids 0..{count - 1}")


@dataclass
class TrainConfig(SgdSettings):
    """The training recipe (one home: :class:`cnas.evaluation.EvalSettings` extends it; momentum, weight decay,
    label smoothing and warm-up come from :class:`cnas.settings.SgdSettings`). The defaults learn in a few epochs
    from scratch; the original's recipe was batch 128, lr 0.01, no warm-up and no label smoothing."""

    title = "training recipe"

    epochs: int = setting(5, help="training epochs", check=NON_NEGATIVE_INT)
    optim: str = setting("SGD", help="SGD or SAM (ASAM with adaptive)", check=OneOf(("SGD", "SAM"), ignore_case=True))
    lr: float = setting(0.05, help="learning rate at the end of the warm-up", check=POSITIVE)
    lr_min: float = setting(0.0, help="learning rate at the end of the cosine decay", check=NON_NEGATIVE)
    nesterov: bool = setting(False, help="Nesterov momentum")
    rho: float = setting(2.0, help="SAM neighbourhood radius", check=NON_NEGATIVE)
    adaptive: bool = setting(True, help="ASAM: SAM's neighbourhood scaled by the weights")
    grad_clip: float | None = setting(None, help="largest gradient norm (default: no clipping)", check=POSITIVE)
    select: str = setting("val_loss", help="the epoch whose weights are kept: val_loss, val_acc or last",
                          check=OneOf(("val_loss", "val_acc", "last")))
    amp: bool = setting(True, help="bfloat16 autocast (CUDA only)")
    channels_last: bool | None = setting(None, help="channels-last memory layout (default: by device, on for CPU "
                                                    "and off for CUDA; see benchmarks/training.py)")
    progress: bool = setting(False, help="progress bars", runtime=True)
    seed: int = setting(42, help="seed of the initialization, batch order and augmentation", check=SEED)


@dataclass
class TrainResult:
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def best(self) -> dict:
        return self.history[self.best_epoch] if self.history else {}


def make_optimizer(params: Iterable, cfg: TrainConfig) -> torch.optim.Optimizer:
    kw = dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    if cfg.optim.upper() == "SAM":
        return SAM(params, torch.optim.SGD, rho=cfg.rho, adaptive=cfg.adaptive, **kw)
    return torch.optim.SGD(params, **kw)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Linear warm-up for ``warmup_epochs`` then one cosine decay to ``lr_min`` over the remaining steps."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = min(total - 1, int(round(cfg.warmup_epochs * steps_per_epoch)))
    floor = cfg.lr_min / cfg.lr

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        progress = min(1.0, (step - warm) / max(1, total - warm - 1))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def default_loss(label_smoothing: float = 0.0) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    def loss_fn(outputs, y):
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[-1]
        return F.cross_entropy(outputs.float(), y, label_smoothing=label_smoothing)

    return loss_fn


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def use_channels_last(setting: bool | None, device: torch.device | str) -> bool:
    """The memory format decision: an explicit setting, else channels-last on CPU and not on CUDA."""
    return torch.device(device).type == "cpu" if setting is None else bool(setting)


def _to(batch, device: torch.device, channels_last: bool):
    x, y = batch
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device | str = "cpu", amp: bool = True,
             channels_last: bool | None = None) -> dict:
    """Mean cross-entropy, accuracy (fraction) and count of a single-output model (the final exit of a list)."""
    device = torch.device(device)
    channels_last = use_channels_last(channels_last, device)
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for batch in loader:
        x, y = _to(batch, device, channels_last)
        with _autocast(device, amp):
            out = model(x)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        out = out.float()
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        n += y.numel()
    if n == 0:
        return {"loss": float("nan"), "acc": float("nan"), "n": 0}
    return {"loss": loss_sum / n, "acc": correct / n, "n": n}


STATE_KEYS = ("model", "optimizer", "scheduler", "history", "best_epoch", "best_score", "best_state", "rng", "config")


RISING_LOSS = 0.10  # relative rise of an epoch's mean training loss over the lowest before it that is reported
SMALL_BATCH = 0.5  # a training batch under this fraction of the first batch's size is skipped


def without_tiny_batches(batches: Iterable, on_skip: Callable[[], Any]) -> Iterator:
    """``batches`` of ``(x, y)`` without any batch smaller than :data:`SMALL_BATCH` of the first one (a final
    partial batch of a few images), calling ``on_skip()`` for each one left out (e.g. the scheduler's step)."""
    full = None
    for batch in batches:
        n = len(batch[1])
        full = n if full is None else full
        if n < SMALL_BATCH * full:
            on_skip()
            continue
        yield batch


def _rising_loss(history: list[dict]) -> str | None:
    """The report for the last epoch of ``history`` when its mean training loss is more than :data:`RISING_LOSS`
    above the lowest epoch before it, else None."""
    if len(history) < 2:
        return None
    low = min(history[:-1], key=lambda r: r["train_loss"])
    last = history[-1]
    if last["train_loss"] <= low["train_loss"] * (1 + RISING_LOSS):
        return None
    return (f"training loss rose from {low['train_loss']:.4f} (epoch {low['epoch']}) to {last['train_loss']:.4f} "
            f"(epoch {last['epoch']}): training has become unstable; lower the learning rate or clip the gradient "
            "norm (grad_clip)")


def read_training_state(path: str | os.PathLike, cfg: TrainConfig) -> dict:
    """The resumable training state at ``path`` (read with ``weights_only=True``), refused with one line when it
    is unreadable, not a cnas training state or written with another recipe than ``cfg``."""
    state = load_torch_file(path, what="training checkpoint")
    if not isinstance(state, dict) or not set(STATE_KEYS) <= set(state):
        raise CheckpointError(f"{path} is not a cnas training state; delete it to start over")
    _check_resumable(str(path), state, cfg)
    return state


def _check_resumable(path: str, state: Any, cfg: TrainConfig) -> None:
    """Refuse to resume a training state written with another recipe (``progress`` may differ)."""
    old = dict(state.get("config") or {}) if isinstance(state, dict) else {}
    diff = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in asdict(cfg).items() if k != "progress" and old.get(k) != v]
    if diff:
        raise ConfigError(f"{path} was written with other settings ({'; '.join(diff[:3])}); pass the same settings "
                          "to resume, or delete it to start over")


def train(model: nn.Module, train_loader, val_loader, cfg: TrainConfig, device: torch.device | str = "cpu",
          loss_fn: Callable | None = None, eval_fn: Callable | None = None, params: Iterable | None = None,
          checkpoint_path: str | None = None, log: Callable[[str], None] | None = None,
          on_epoch_start: Callable[[int, nn.Module], None] | None = None, check_rise: bool = True) -> TrainResult:
    """Train ``model`` in place and leave it holding the weights of the selected epoch.

    ``eval_fn(model) -> dict`` with ``loss`` and ``acc`` scores an epoch (default: :func:`evaluate` on
    ``val_loader``; with no validation loader the last epoch is kept). ``params`` restricts what is optimized.
    ``on_epoch_start(epoch, model)`` runs after ``model.train()`` at the start of every epoch (e.g. to freeze
    part of the model's batch norms or refresh a loss's state). ``checkpoint_path``: after every epoch the full
    training state is written there atomically; if the file exists when training starts, training resumes from it.

    A training loss that stays finite but climbs (an epoch's mean more than :data:`RISING_LOSS` above the lowest
    epoch before it) is reported once, through ``log`` or as a :class:`RuntimeWarning`: the run has become unstable,
    and the epoch the selection keeps may be an early, poor one (``check_rise=False`` for a loss that grows by
    design). A final batch smaller than :data:`SMALL_BATCH` of the first batch is skipped (its learning-rate step
    is kept): batch-norm statistics of a few images give gradients thousands of times the usual norm, and one such
    step can wreck a deep network (25,410 images in batches of 64 end in a batch of 2).
    """
    cfg.validate()
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    model.to(device)
    channels_last = use_channels_last(cfg.channels_last, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn = loss_fn or default_loss(cfg.label_smoothing)
    if eval_fn is None and val_loader is not None:
        eval_fn = lambda m: evaluate(m, val_loader, device, cfg.amp, cfg.channels_last)  # noqa: E731
    select = cfg.select if eval_fn is not None else "last"
    trainable = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    optimizer = make_optimizer(trainable, cfg)
    steps = max(1, len(train_loader))
    sam = isinstance(optimizer, SAM)
    # SAM shares its param groups with the base optimizer, which is the one that steps
    scheduler = make_scheduler(optimizer.base_optimizer if sam else optimizer, cfg, steps)

    history: list[dict] = []
    best_epoch, best_score, best_state = -1, math.inf, None
    start_epoch = 0
    if checkpoint_path is not None:
        if os.path.exists(checkpoint_path):
            state = read_training_state(checkpoint_path, cfg)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history, best_epoch, best_score = state["history"], state["best_epoch"], state["best_score"]
            best_state = state["best_state"]
            start_epoch = len(history)
            torch.set_rng_state(state["rng"])
            if log:
                log(f"resumed training from {checkpoint_path} at epoch {start_epoch}")

    t0 = time.perf_counter()
    warned_rise = not check_rise or any(_rising_loss(history[:i + 1]) for i in range(len(history)))
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        if hasattr(train_loader, "set_epoch"):  # shuffling that depends on (seed, epoch) only: exact resume
            train_loader.set_epoch(epoch)
        if on_epoch_start is not None:
            on_epoch_start(epoch, model)
        tot_loss, tot_n = 0.0, 0
        batches = train_loader
        if cfg.progress:
            batches = progress_bar(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for batch in without_tiny_batches(batches, scheduler.step):
            x, y = _to(batch, device, channels_last)
            with _autocast(device, cfg.amp):
                loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"training loss became {loss.item()} at epoch {epoch + 1}")
            loss.backward()
            if sam:
                optimizer.first_step(zero_grad=True)
                with frozen_bn_stats(model), _autocast(device, cfg.amp):
                    loss_fn(model(x), y).backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                optimizer.second_step(zero_grad=True)
            else:
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            tot_loss += loss.item() * y.numel()
            tot_n += y.numel()
        record = {"epoch": epoch + 1, "train_loss": tot_loss / max(1, tot_n), "lr": optimizer.param_groups[0]["lr"]}
        if eval_fn is not None:
            scores = eval_fn(model)
            record.update({f"val_{k}": v for k, v in scores.items()})
        history.append(record)
        score = {"val_loss": record.get("val_loss", 0.0), "val_acc": -record.get("val_acc", 0.0), "last": -epoch}[select]
        if not math.isfinite(score):
            raise TrainingDiverged(f"validation loss became {score} at epoch {epoch + 1}")
        if score <= best_score or best_state is None:
            best_epoch, best_score = epoch, score
            best_state = copy.deepcopy(model.state_dict())
        if log:
            extra = "".join(f" {k} {v:.4f}" for k, v in record.items() if k.startswith("val_") and k != "val_n")
            log(f"epoch {epoch + 1}/{cfg.epochs} train_loss {record['train_loss']:.4f}{extra}")
        if not warned_rise and (rise := _rising_loss(history)) is not None:
            warned_rise = True
            if log is not None:
                log(rise)
            else:
                warnings.warn(rise, RuntimeWarning, stacklevel=2)
        if checkpoint_path is not None:
            atomic_torch_save(checkpoint_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "history": history, "best_epoch": best_epoch,
                "best_score": best_score, "best_state": best_state, "rng": torch.get_rng_state(),
                "config": asdict(cfg),
            })
    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(best_epoch=max(best_epoch, 0), history=history, seconds=time.perf_counter() - t0)
