"""Surrogate predictors fitted on the integer encodings of evaluated archs (pure core: no files).

``get_predictor(name, **params)`` builds one of

========  ==================================================================  =================================
name      model                                                               class
========  ==================================================================  =================================
``rbf``   cubic RBF interpolant with a linear tail (scipy)                    :class:`RBF`
``gp``    Kriging: linear trend + Gaussian-correlation GP, ML hyper-params    :class:`Kriging`
``mlp``   torch MLP 2 x 300, Adam, smooth L1, best held-out epoch             :class:`MLP`
``carts`` bagged regression trees on random gene subsets                      :class:`CartEnsemble`
``as``    adaptive switching: k-fold choice among the above, winner refit     :class:`AdaptiveSwitching`
========  ==================================================================  =================================

Each is a scikit-learn regressor: ``fit(X, y)`` returns self, ``predict(X)`` returns a 1-D float array,
``get_params``/``set_params``, a ``random_state`` argument, usable with ``sklearn.base.clone`` and
``cross_val_score``. :class:`LinearTrend` wraps any of them: a least-squares line in a few genes (the search
uses the resolution's) with the predictor fitted to the residual. ``rank_quality(pred, target)`` gives RMSE,
Spearman rho and Kendall tau.
The module docstrings say where each model deviates from the original and why.
"""

from __future__ import annotations

from typing import Any

from cnas.errors import ConfigError
from cnas.surrogates.adaptive import POOL_MODELS, AdaptiveSwitching
from cnas.surrogates.carts import CartEnsemble
from cnas.surrogates.gp import Kriging
from cnas.surrogates.metrics import RankQuality, kendall_tau, rank_quality
from cnas.surrogates.mlp import MLP
from cnas.surrogates.rbf import RBF
from cnas.surrogates.trend import LinearTrend

PREDICTORS: dict[str, type] = {**POOL_MODELS, "as": AdaptiveSwitching}


def get_predictor(name: str, **params: Any):
    """A new, unfitted predictor ``name`` (one of rbf, gp, mlp, carts, as) built with ``params``."""
    if not isinstance(name, str) or name not in PREDICTORS:
        raise ConfigError(f"unknown surrogate predictor {name!r}; choose one of {', '.join(PREDICTORS)}")
    cls = PREDICTORS[name]
    valid = cls._get_param_names()
    bad = [k for k in params if k not in valid]
    if bad:
        raise ConfigError(f"predictor '{name}' has no parameter {', '.join(map(repr, bad))}; "
                          f"its parameters are {', '.join(valid)}")
    return cls(**params)


__all__ = [
    "PREDICTORS", "get_predictor", "rank_quality", "kendall_tau", "RankQuality", "RBF", "Kriging", "MLP",
    "CartEnsemble", "AdaptiveSwitching", "LinearTrend",
]
