"""The one registry of objective names, their units, directions and where their values come from (pure core).

Every objective is minimized. ``top1`` is an error in %; ``params``, ``macs``, ``activations`` and ``avg_macs`` are
in millions. Exact objectives are computed from the config by :mod:`cnas.complexity` (no predictor, no forward
pass); predicted ones come from a surrogate fitted on the archive's measured stats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnas.errors import ConfigError


@dataclass(frozen=True)
class Objective:
    name: str
    unit: str
    exact: bool  # computed by cnas.complexity; otherwise measured by training and predicted by a surrogate
    description: str
    early_exit_only: bool = False


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("top1", "% error", False, "validation top-1 error"),
    Objective("top1_robust", "% error", False, "FlatNAS: alpha * top1 + alpha_norm * (1 - alpha) * robustness"),
    Objective("params", "M", True, "trainable parameters"),
    Objective("macs", "M", True, "multiply-accumulates of one inference (final exit for early-exit nets)"),
    Objective("activations", "M", True, "activation values of one inference (the original's definition)"),
    Objective("tiny_ml", "", True, "the original's weighted, penalized sum of params, MACs and activations"),
    Objective("avg_macs", "M", False, "average MACs per sample with early exits (measured exit ratios)", True),
)}
FIRST_OBJECTIVES = ("top1", "top1_robust")


def parse_objectives(first_obj: str, sec_obj: str | list[str] | None, space_has_exits: bool) -> list[str]:
    """The objective list ``[first, *secondary]`` from the flags; ``sec_obj`` may be ``"macs,activations"``."""
    if first_obj not in FIRST_OBJECTIVES:
        raise ConfigError(f"--first_obj must be one of {', '.join(FIRST_OBJECTIVES)}, got {first_obj!r}")
    if sec_obj is None or sec_obj == "" or sec_obj == []:
        names: list[str] = []
    elif isinstance(sec_obj, str):
        names = [s.strip() for s in sec_obj.split(",") if s.strip()]
    else:
        names = [str(s).strip() for s in sec_obj]
    for n in names:
        if n not in OBJECTIVES:
            raise ConfigError(f"unknown objective '{n}' in --sec_obj; choose from {', '.join(OBJECTIVES)}")
        if n == first_obj:
            raise ConfigError(f"--sec_obj {n} repeats --first_obj")
        if OBJECTIVES[n].early_exit_only and not space_has_exits:
            raise ConfigError(f"--sec_obj {n} needs an early-exit space (--search_space eemobilenetv3 or "
                              "cbnmobilenetv3)")
    if len(set(names)) != len(names):
        raise ConfigError(f"--sec_obj lists an objective twice: {','.join(names)}")
    if "top1_robust" in names and first_obj == "top1_robust":
        raise ConfigError("top1_robust cannot be both objectives")
    return [first_obj, *names]


def needs_robustness(objectives: list[str]) -> bool:
    return "top1_robust" in objectives


def robust_value(top1: float, robustness: float, alpha: float, alpha_norm: float) -> float:
    """FlatNAS ``top1_robust`` of one net under a given ``alpha_norm`` (robustness: the first sigma)."""
    return alpha * top1 + alpha_norm * (1 - alpha) * robustness


def alpha_norm_of(top1: np.ndarray, robustness: np.ndarray) -> float:
    """``mean(top1) / mean(robustness)`` over the archive (1 when robustness is all zero or empty)."""
    top1, robustness = np.asarray(top1, float), np.asarray(robustness, float)
    if top1.size == 0 or not np.isfinite(robustness).all() or robustness.mean() <= 0:
        return 1.0
    return float(top1.mean() / robustness.mean())
