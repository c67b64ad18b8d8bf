"""Surrogate quality: RMSE, Spearman rho and Kendall tau between predictions and measured targets.

The original computed ``sqrt(mean((pred - target)^2))`` with ``pred`` of shape (N, 1) and ``target`` of shape
(N,), which broadcasts to an (N, N) matrix and reports a wrong RMSE; here both are flattened first.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import kendalltau, spearmanr

from cnas.errors import UsageError


class RankQuality(NamedTuple):
    """``rmse``, Spearman ``rho`` and Kendall ``tau`` (tau-b); the correlations are NaN when undefined
    (fewer than 2 points, or constant predictions or targets)."""

    rmse: float
    rho: float
    tau: float


def _flat(a: Any, what: str) -> np.ndarray:
    try:
        v = np.asarray(a, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise UsageError(f"{what} must be numbers: {err}") from None
    if not np.all(np.isfinite(v)):
        raise UsageError(f"{what} hold NaN or infinite values")
    return v


def rank_quality(pred: Any, target: Any) -> RankQuality:
    """RMSE, Spearman rho and Kendall tau of ``pred`` against ``target`` (any shapes with N elements each)."""
    p, t = _flat(pred, "predictions"), _flat(target, "targets")
    if p.size != t.size:
        raise UsageError(f"got {p.size} predictions for {t.size} targets; they must pair one to one")
    if p.size == 0:
        raise UsageError("rank_quality needs at least one prediction")
    rmse = float(np.sqrt(np.mean((p - t) ** 2)))
    if p.size < 2 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return RankQuality(rmse, math.nan, math.nan)
    rho = float(spearmanr(p, t)[0])
    tau = float(kendalltau(p, t)[0])
    return RankQuality(rmse, rho, tau)


def kendall_tau(pred: Any, target: Any) -> float:
    """Kendall tau-b, 0.0 where it is undefined (used to score cross-validation folds)."""
    p, t = np.asarray(pred, dtype=np.float64).reshape(-1), np.asarray(target, dtype=np.float64).reshape(-1)
    if p.size < 2 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return 0.0
    tau = float(kendalltau(p, t)[0])
    return 0.0 if math.isnan(tau) else tau
