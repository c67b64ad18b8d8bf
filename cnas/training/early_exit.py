"""Early-exit training and measurement (EDANAS ``joint``, NACHOS ``bernulli``), exit ratios, avg_macs, epsilon tuning.

Two stages, as the original's ``ee_train``: the backbone is trained as a single-exit network, then the exit heads
are added and trained (``joint``: backbone and heads together on ``sum_i w_i CE_i``; ``bernulli``: backbone frozen,
heads trained on the NACHOS loss below). Everything that picks or measures (best epoch, exit ratios, average MACs,
threshold tuning) runs on the validation split.

NACHOS loss (the original's), with ``c_i`` the exit confidences (final exit: 1) and
``q_i = c_i * prod_{k<i}(1 - c_k)``::

    L = w_alpha * sum_i mean_b(CE_i * q_i) + beta * L_prior + w_beta * L_energy + [epoch >= n_gamma] w_gamma L_support

Deviations from the original, and why:

- ``L_energy`` is differentiable: ``relu(E[sum_i q_i cost_i] - mmax) / |cost_L - mmax|`` keeps its graph, so
  ``w_beta`` acts (the original rebuilt it as a constant tensor, which has no gradient).
- The cost of leaving at exit i counts the backbone up to i **and every head evaluated on the way**
  (``B_i + sum_{j<=i} H_j``); the original counted only the head of the exit taken.
- Epsilon tuning scans the complete grid 0.1..0.9 (the original skipped 0.4), keeps the best accuracy (ties: the
  lower cost), and the repair step works on a copy (the original read a stale accuracy and mutated the aliased
  best list). Outputs of every exit are computed once over the validation set and the policy is re-applied to
  them, so tuning costs one forward pass.
- The support set (``--support_set``) is a fixed, class-balanced 10 % of the training split held out from EE
  training (the original re-drew it every epoch from the augmented set, scanning it once per class).
- Frozen means frozen: the backbone's batch-norm statistics are not updated while the heads train.
- ``joint`` with ``freeze_backbone`` (set by the evaluation when an inherited backbone was measured without
  training, ``--n_epochs 0``): only the heads train, on EDANAS's loss, and the last epoch is kept.
- A NACHOS net without ``--tune_epsilon`` uses threshold 0.5 per exit (the original crashed).
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnas.errors import ConfigError
from cnas.models.early_exit import EENetwork, cumulative_confidence_exits, score_margin_exits
from cnas.settings import NON_NEGATIVE, Bound, ConstraintSettings, ExitSettings, redefault, setting
from cnas.training.trainer import TrainConfig, train

EPS_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ECE_BINS = 30


@dataclass
class EEConfig(ExitSettings):
    """Exit training and tuning of one network: the exit settings (:class:`cnas.settings.ExitSettings`) with the
    method resolved and the MACs budget as a number, plus the loss's own constants."""

    method: str = redefault(ExitSettings, "method", "bernulli")
    mmax: float = redefault(ConstraintSettings, "mmax", 1e10)
    top1min: float = redefault(ConstraintSettings, "top1min", 0.0)
    beta: float = setting(1.0, help="weight of the prior (confidence calibration) term", check=NON_NEGATIVE)
    support_fraction: float = setting(0.1, help="fraction of the training set held out as the support set",
                                      check=Bound(lo=0, hi=1, lo_open=True, hi_open=True))
    freeze_backbone: bool = setting(False, help="joint: train the heads only (the backbone keeps its weights and "
                                                "BN statistics) and keep the last epoch")

    @classmethod
    def from_settings(cls, settings, **overrides) -> "EEConfig":
        """The exit settings of ``settings`` (a :class:`cnas.evaluation.EvalSettings`) with its MACs budget as a
        number (none: 1e10) and its ``top1min``; ``overrides`` (``method``, ``freeze_backbone``, ...) win."""
        kw = {name: getattr(settings, name) for name in ExitSettings.__dataclass_fields__}
        kw.update(mmax=settings.tiny_ml_kwargs()["mmax"], top1min=settings.top1min)
        return cls(**{**kw, **overrides})


def exit_costs(counts: dict) -> list[float]:
    """MMACs of leaving at each exit: backbone up to it plus every head computed on the way."""
    heads = counts["classifiers_macs"]
    return [b + sum(heads[: i + 1]) for i, b in enumerate(counts["backbone_macs"])]


# ---------------------------------------------------------------- outputs over a split, policy metrics
@dataclass
class ExitOutputs:
    logits: torch.Tensor  # (n_exits, N, C) class logits
    conf: torch.Tensor | None  # (n_exits, N) confidences (binary heads), final = 1
    labels: torch.Tensor  # (N,)


@torch.no_grad()
def collect_outputs(model: EENetwork, loader, device: torch.device | str = "cpu") -> ExitOutputs:
    model.eval()
    logits, conf, labels = [], [], []
    for x, y in loader:
        outs = model(x.to(device))
        lg, cf = model.split([o.float() for o in outs])
        logits.append(torch.stack(lg).cpu())
        if cf is not None:
            conf.append(torch.stack(cf).cpu())
        labels.append(y.cpu())
    return ExitOutputs(torch.cat(logits, 1), torch.cat(conf, 1) if conf else None, torch.cat(labels))


def apply_policy(out: ExitOutputs, thresholds) -> torch.Tensor:
    """The exit index of every sample under ``thresholds`` (score margin, or cumulative confidence)."""
    if out.conf is not None:
        return cumulative_confidence_exits(list(out.conf), thresholds)
    return score_margin_exits(list(out.logits), thresholds)


def policy_metrics(out: ExitOutputs, thresholds, costs: list[float]) -> dict:
    """Global accuracy (fraction), exit ratios, per-exit accuracy of the samples leaving there, avg MMACs."""
    idx = apply_policy(out, thresholds)
    n_exits, n = out.logits.shape[0], out.labels.numel()
    pred = out.logits[idx, torch.arange(n)].argmax(1)
    correct = pred == out.labels
    counts = torch.bincount(idx, minlength=n_exits).double()
    ratios = (counts / max(1, n)).tolist()
    branch = {}
    for i in range(n_exits):
        sel = idx == i
        branch[str(i)] = float(correct[sel].double().mean()) if sel.any() else None
    acc = float(correct.double().mean()) if n else float("nan")
    branch["global"] = acc
    avg = float(sum(r * c for r, c in zip(ratios, costs)))
    return {"acc": acc, "exits_ratio": ratios, "branch_scores": branch, "avg_macs": avg}


def ece(logits: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error of softmax confidence, equal-width bins over [0, 1]."""
    prob = logits.softmax(1)
    conf, pred = prob.max(1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            total += sel.double().mean().item() * abs(conf[sel].double().mean().item() - correct[sel].mean().item())
    return total


def tune_thresholds(out: ExitOutputs, costs: list[float], mmax: float, top1min: float) -> tuple[list[float], dict]:
    """Grid search of one threshold for all intermediate exits (best accuracy, ties to the cheaper), then while the
    average cost exceeds ``mmax``, lower the thresholds from the last intermediate exit backwards in steps of 0.1
    as long as accuracy stays >= ``top1min``."""
    n_int = out.logits.shape[0] - 1
    best_eps, best = None, None
    for eps in EPS_GRID:
        th = [eps] * n_int + [1.0]
        m = policy_metrics(out, th, costs)
        if best is None or (m["acc"], -m["avg_macs"]) > (best["acc"], -best["avg_macs"]):
            best_eps, best = th, m
    eps = list(best_eps)
    cur = best
    if cur["acc"] >= top1min:
        for i in range(n_int - 1, -1, -1):
            while cur["avg_macs"] > mmax and eps[i] > 0.1 + 1e-9:
                trial = list(eps)
                trial[i] = round(trial[i] - 0.1, 10)
                m = policy_metrics(out, trial, costs)
                if m["acc"] < top1min:
                    break
                eps, cur = trial, m
            if cur["avg_macs"] <= mmax:
                break
    return eps, cur


# ---------------------------------------------------------------- losses
def joint_loss(model: EENetwork, weights: list[float] | None = None) -> Callable:
    """EDANAS: ``sum_{i<L} w_i CE_i + CE_L`` (class logits of binary heads)."""

    def loss_fn(outputs, y):
        logits, _ = model.split(outputs)
        w = weights or [1.0] * (len(logits) - 1)
        loss = F.cross_entropy(logits[-1].float(), y)
        for wi, lg in zip(w, logits[:-1]):
            loss = loss + wi * F.cross_entropy(lg.float(), y)
        return loss

    return loss_fn


class BernulliLoss:
    """The NACHOS loss (see the module docstring); ``support`` (classes x exits accuracies) enables L_support."""

    def __init__(self, model: EENetwork, costs: list[float], cfg: EEConfig, n_gamma: int):
        self.model, self.cfg, self.n_gamma = model, cfg, n_gamma
        self.costs = torch.tensor(costs, dtype=torch.float32)
        self.epoch = 0
        self.support: torch.Tensor | None = None

    def __call__(self, outputs, y):
        # computed in float32 outside autocast (binary cross-entropy on probabilities is not autocast-safe)
        with torch.autocast(y.device.type, enabled=False):
            return self._loss([o.float() for o in outputs], y)

    def _loss(self, outputs, y):
        cfg = self.cfg
        logits, conf = self.model.split(outputs)
        c = torch.stack([cf.float() for cf in conf], 1)  # (B, n_exits), final = 1
        ones = torch.ones_like(c[:, :1])
        q = c * torch.cumprod(torch.cat([ones, 1 - c[:, :-1]], 1), 1)
        ce = torch.stack([F.cross_entropy(lg.float(), y, reduction="none") for lg in logits], 1)
        loss = cfg.w_alpha * (ce * q).mean(0).sum()
        # class-balanced calibration prior on the intermediate exits
        g = torch.stack([(lg.argmax(1) == y).float() for lg in logits[:-1]], 1)
        b = float(y.numel())
        pos = g.sum(0, keepdim=True)
        neg = b - pos
        weight = torch.where(g > 0, b / (2 * pos.clamp(min=1)), b / (2 * neg.clamp(min=1)))
        cc = c[:, :-1].clamp(1e-4, 1 - 1e-4)
        loss = loss + cfg.beta * F.binary_cross_entropy(cc, g, weight=weight, reduction="mean")
        # energy: differentiable excess of the expected cost over the budget
        costs = self.costs.to(c.device)
        cost_l = float(costs[-1])
        if cost_l > cfg.mmax:
            avg = (q * costs).sum(1).mean()
            loss = loss + cfg.w_beta * F.relu(avg - cfg.mmax) / abs(cost_l - cfg.mmax)
        if self.support is not None and self.epoch >= self.n_gamma:
            target = self.support.to(c.device)[y][:, :-1]
            loss = loss + cfg.w_gamma * F.mse_loss(c[:, :-1], target)
        return loss


@torch.no_grad()
def support_matrix(out: ExitOutputs, n_classes: int) -> torch.Tensor:
    """Accuracy of every exit on every class of the support set: (classes, exits)."""
    pred = out.logits.argmax(2)  # (n_exits, N)
    correct = (pred == out.labels.unsqueeze(0)).float()
    s = torch.zeros(n_classes, out.logits.shape[0])
    for k in range(n_classes):
        sel = out.labels == k
        if sel.any():
            s[k] = correct[:, sel].mean(1)
    return s


# ---------------------------------------------------------------- the two-stage procedure
@contextmanager
def _frozen(module: nn.Module):
    """No gradients for ``module``'s parameters inside the block."""
    params = list(module.parameters())
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _freeze_backbone_bn(model: EENetwork) -> Callable[[int, nn.Module], None]:
    def hook(epoch, _model):
        model.backbone.eval()

    return hook


def train_exits(model: EENetwork, train_loader, val_loader, train_cfg: TrainConfig, ee: EEConfig, costs: list[float],
                device: torch.device | str = "cpu", log: Callable[[str], None] | None = None,
                support_loader=None, recalibrate: Callable[[nn.Module], None] | None = None) -> dict:
    """Stage 2: train the exits of ``model`` (its backbone already trained). Returns extra stats
    (``support_conf`` when a support set is used). ``recalibrate(model)`` runs before every validation."""
    epochs = ee.warmup_ee_epochs + ee.ee_epochs
    cfg = replace(train_cfg, epochs=epochs, select="val_acc")
    thresholds = model.thresholds

    def eval_fn(m):
        if recalibrate is not None:
            recalibrate(m)
        out = collect_outputs(m, val_loader, device)
        met = policy_metrics(out, thresholds, costs)
        loss = float(sum(F.cross_entropy(lg, out.labels).item() for lg in out.logits))
        return {"loss": loss, "acc": met["acc"]}

    extra: dict = {}
    if ee.method == "joint":
        frozen = {}
        if ee.freeze_backbone:
            # heads only, keeping the last epoch. Choosing the epoch by the policy's accuracy favours heads whose
            # exits do not fire, and which epoch that is varies with the seed: on 18 EDANAS archs x 2 seeds the
            # repeat std of avg_macs fell from 1.02 to 0.21 M MACs (benchmarks/fidelity.py --n_archs 0 --ee 20)
            cfg = replace(cfg, select="last")
            frozen = dict(params=list(model.heads.parameters()), on_epoch_start=_freeze_backbone_bn(model))
        with _frozen(model.backbone) if ee.freeze_backbone else nullcontext():
            train(model, train_loader, val_loader, cfg, device=device, loss_fn=joint_loss(model), eval_fn=eval_fn,
                  log=log, **frozen)
        return extra
    if ee.method != "bernulli":
        raise ConfigError(f"--method must be joint or bernulli, got {ee.method!r}")
    n_gamma = ee.warmup_ee_epochs if ee.support_set else epochs
    loss = BernulliLoss(model, costs, ee, n_gamma)
    freeze = _freeze_backbone_bn(model)

    def on_epoch_start(epoch, m):
        freeze(epoch, m)
        loss.epoch = epoch
        if support_loader is not None and epoch >= n_gamma:
            loss.support = support_matrix(collect_outputs(model, support_loader, device), model.n_classes)
            model.train()
            freeze(epoch, m)

    with _frozen(model.backbone):
        train(model, train_loader, val_loader, cfg, device=device, loss_fn=loss, eval_fn=eval_fn,
              params=list(model.heads.parameters()), log=log, on_epoch_start=on_epoch_start,
              check_rise=support_loader is None)  # the support set's term joins the loss at epoch n_gamma
    if loss.support is not None:
        extra["support_conf"] = loss.support.mean(0).tolist()
    return extra


def measure_exits(model: EENetwork, val_loader, costs: list[float], ee: EEConfig, device="cpu",
                  test_loader=None) -> dict:
    """Exit ratios, per-exit scores, avg_macs and global error on validation (thresholds tuned there when asked);
    with ``test_loader`` the same thresholds are applied to the test split too."""
    out = collect_outputs(model, val_loader, device)
    if ee.tune_epsilon:
        eps, met = tune_thresholds(out, costs, ee.mmax, ee.top1min)
    else:
        eps = list(model.thresholds)
        met = policy_metrics(out, eps, costs)
    model.thresholds = list(eps)
    stats = {
        "exits_ratio": met["exits_ratio"],
        "avg_macs": met["avg_macs"],
        "epsilon": list(eps),
        "cumulative_threshold": bool(model.binary),
        "branch_scores": met["branch_scores"],
        "top1": (1 - met["acc"]) * 100,
        "exit_top1": [(1 - float((lg.argmax(1) == out.labels).double().mean())) * 100 for lg in out.logits],
    }
    if model.binary:
        stats["ece_scores"] = {str(i): ece(lg, out.labels) for i, lg in enumerate(out.logits)}
    if test_loader is not None:
        tout = collect_outputs(model, test_loader, device)
        tm = policy_metrics(tout, eps, costs)
        stats["test_top1"] = (1 - tm["acc"]) * 100
        stats["test_exits_ratio"] = tm["exits_ratio"]
        stats["test_avg_macs"] = tm["avg_macs"]
    return stats


def balanced_subset(labels: torch.Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a class-balanced ``fraction`` of ``labels`` and of the rest (seeded)."""
    labels = labels.cpu().numpy()
    classes = np.unique(labels)
    per = max(1, int(math.floor(fraction * len(labels) / len(classes))))
    rng = np.random.default_rng(seed)
    pick = []
    for k in classes:
        idx = np.flatnonzero(labels == k)
        pick.extend(rng.choice(idx, size=min(per, len(idx)), replace=False).tolist())
    pick = np.sort(np.asarray(pick, dtype=np.int64))
    rest = np.setdiff1d(np.arange(len(labels)), pick)
    return pick, rest
