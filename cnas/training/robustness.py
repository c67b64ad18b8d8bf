"""FlatNAS robustness: how much accuracy a trained network loses when its weights are perturbed.

For each sigma, ``n_draws`` times: every parameter ``p`` becomes ``p + sigma * p * z`` with ``z ~ N(0, 1)``
(multiplicative noise), the network is re-validated, and the robustness is the mean absolute accuracy drop in
percentage points, as the original computed it. The original deep-copied the network per draw; here the weights are
perturbed in place and restored, with a seeded generator so the figure is reproducible.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cnas.errors import ConfigError
from cnas.objectives import robust_value
from cnas.training.trainer import evaluate


def sigma_grid(sigma_min: float = 0.05, sigma_max: float = 0.05, sigma_step: float = 0.05) -> list[float]:
    """``round(min + j * step, 2)`` for ``j < round((max - min) / step) + 1`` (step forced to 1 when min == max)."""
    if sigma_min < 0 or sigma_max < sigma_min:
        raise ConfigError(f"need 0 <= --sigma_min <= --sigma_max, got {sigma_min} and {sigma_max}")
    step = 1.0 if sigma_min == sigma_max else sigma_step
    if step <= 0:
        raise ConfigError(f"--sigma_step must be positive, got {sigma_step}")
    n = int(round((sigma_max - sigma_min) / step)) + 1
    return [round(sigma_min + j * step, 2) for j in range(n)]


@torch.no_grad()
def weight_robustness(model: nn.Module, loader, sigmas: list[float], n_draws: int = 20, seed: int = 0,
                      device: str | torch.device = "cpu", base_acc: float | None = None) -> list[float]:
    """Mean |acc0 - acc_perturbed| in % for each sigma (``base_acc`` as a fraction, measured if not given)."""
    device = torch.device(device)
    model.to(device)
    acc0 = evaluate(model, loader, device)["acc"] if base_acc is None else base_acc
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    try:
        for sigma in sigmas:
            drops = []
            for _ in range(n_draws):
                for p, p0 in zip(params, saved):
                    z = torch.randn(p0.shape, generator=gen).to(device=p.device, dtype=p.dtype)
                    p.copy_(p0 + sigma * p0 * z)
                drops.append(abs(acc0 - evaluate(model, loader, device)["acc"]) * 100.0)
            out.append(sum(drops) / len(drops))
    finally:
        for p, p0 in zip(params, saved):
            p.copy_(p0)
    return out


def top1_robust(top1_err: float, robustness: float, alpha: float = 0.5, alpha_norm: float = 1.0) -> float:
    """FlatNAS ``top1_robust`` of one net as its stats record it (:func:`cnas.objectives.robust_value`, rounded
    to 2 decimals; both inputs in %)."""
    return round(robust_value(top1_err, robustness, alpha, alpha_norm), 2)
