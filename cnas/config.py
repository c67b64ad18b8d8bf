"""The search's settings, and which of them a resumed run must share with the run it resumes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cnas.errors import ConfigError
from cnas.evaluation import EvalSettings
from cnas.settings import (
    NON_NEGATIVE_INT,
    ExecutorSettings,
    OneOf,
    ResolutionSettings,
    count,
    int_at_least,
    later_settings,
    result_settings,
    resume_settings,
    setting,
)
from cnas.objectives import FIRST_OBJECTIVES, OBJECTIVES
from cnas.spaces import get_space
from cnas.surrogates import PREDICTORS


@dataclass
class SearchConfig(ExecutorSettings, ResolutionSettings):
    """The search's own settings: its input resolutions and executor (parts of :mod:`cnas.settings`) plus the
    objectives, the surrogates and the evolutionary search on them. The evaluation's settings are
    :class:`cnas.evaluation.EvalSettings`."""

    save: str = setting("results/run", help="output folder of the run", runtime=True)
    first_obj: str = setting("top1", help=" or ".join(FIRST_OBJECTIVES))
    sec_obj: str | None = setting(None, help=f"{', '.join(n for n in OBJECTIVES if n != 'top1')}; several "
                                             "comma-separated names run a search with three or more objectives; "
                                             "none: single-objective")
    iterations: int = setting(30, help="search iterations after the initial design", runtime=True,
                              check=count())
    n_doe: int = setting(100, help="size of the initial design (smallest, largest and random archs)",
                         check=count(2, "the smallest and largest arch"))
    n_iter: int = setting(8, help="archs evaluated per iteration", check=count(1))
    first_predictor: str = setting("as", help="surrogate of the first objective: rbf, gp, mlp, carts, as")
    sec_predictor: str | None = setting(None, help="surrogate of a predicted second objective (avg_macs, "
                                                   "top1_robust); default: first_predictor")
    as_folds: int = setting(5, help="folds of adaptive switching's cross-validation (the original used 10; 5 "
                                    "halves the fit time)", check=int_at_least(2))
    as_every: int = setting(1, help="adaptive switching runs its cross-validated choice every this many "
                                    "iterations and, in between, refits the last choice on the whole archive "
                                    "(1: every iteration, as the original)", check=count(1), earlier=1)
    as_criterion: str = setting("pooled", help="adaptive switching's choice: pooled (Kendall tau of all "
                                               "out-of-fold predictions together) or mean_std (the original's mean "
                                               "minus std of the per-fold taus)",
                                check=OneOf(("pooled", "mean_std")), earlier="mean_std")
    r_trend: bool = setting(True, help="where the resolution is a gene, fit a least-squares line in it first and "
                                       "each surrogate on what the line leaves (false: the surrogates treat it as "
                                       "any other gene, as the original)", earlier=False)
    search_space: str = setting("mobilenetv3", help="mobilenetv3, eemobilenetv3 (EDANAS early exits), "
                                                    "cbnmobilenetv3 (NACHOS early exits) or resnet50 (OFA's "
                                                    "ResNet-50: depth, expansion and width genes)")
    pop_size: int = setting(40, help="population of NSGA-II on the surrogate problem", check=count(2))
    n_gens: int = setting(20, help="generations of NSGA-II on the surrogate problem per iteration",
                          check=count())
    patience: int = setting(10, help="stop after this many iterations without hypervolume gain (0: never)",
                            runtime=True, check=count())
    pick: str = setting("gaps", help="how each iteration picks its n_iter candidates from the predicted front: "
                                     "gaps (the original's: even gaps along the second objective) or hv (largest "
                                     "predicted hypervolume gain over the archive's front)",
                        check=OneOf(("gaps", "hv")), earlier="gaps")
    constraint_mode: str = setting("native", help="native (pymoo constraints, feasibility first) or penalty (the "
                                                  "original's)", check=OneOf(("native", "penalty")))
    seed: int = setting(0, help="seed of the sampling, the surrogates and the evolutionary search",
                        check=NON_NEGATIVE_INT)
    plots: bool = setting(True, help="PNG plots of every iteration", runtime=True)
    progress: bool = setting(True, help="progress bars", runtime=True)

    def validate(self) -> "SearchConfig":
        super().validate()
        for flag in ("first_predictor", "sec_predictor"):
            v = getattr(self, flag)
            if v is not None and v not in PREDICTORS:
                raise ConfigError(f"unknown predictor '{v}' for --{flag}; choose one of {', '.join(PREDICTORS)}")
        get_space(self.search_space, self.lr, self.ur, self.rstep)
        return self


#: search settings added after the first release, with the behaviour runs had before them (declared with
#: ``earlier=``): at that value they are left out of the settings hash, so earlier runs still resume
LATER_SETTINGS = later_settings(SearchConfig)
#: the same for the evaluation's settings
LATER_EVAL_SETTINGS = later_settings(EvalSettings)


def settings_hash(cfg: SearchConfig, ev: EvalSettings) -> str:
    """The hash a resumed run must share with the run it resumes: every setting but the runtime ones, and the
    later settings only where they differ from the behaviour before them."""
    d, e = resume_settings(cfg), resume_settings(ev)
    return hashlib.sha256(json.dumps({"search": d, "evaluation": e}, sort_keys=True).encode()).hexdigest()[:16]


def settings_diff(rec: dict, cfg: SearchConfig, ev: EvalSettings) -> str:
    """The first settings (at most four) that differ between a run's ``config.json`` record and these."""
    out = []
    for part, obj in (("search", cfg), ("evaluation", ev)):
        old = {**later_settings(obj), **rec.get(part, {})}
        out += [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in result_settings(obj).items() if old.get(k) != v]
    return "; ".join(out[:4]) or "settings hash differs"


__all__ = ["SearchConfig", "LATER_SETTINGS", "LATER_EVAL_SETTINGS", "settings_hash", "settings_diff"]
