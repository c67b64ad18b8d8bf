"""Adaptive switching (``as``): pick the predictor that ranks best under k-fold cross-validation, refit it.

As the original: k folds (default 10), each pool model fitted on k-1 folds and predicting the held-out fold, then
the winner is refitted on every sample. The original's winner is the argmax over the pool of ``mean(tau) -
std(tau)`` of the per-fold Kendall taus (``criterion="mean_std"``).

Deviations: by default (``criterion="pooled"``) the winner is the model whose out-of-fold predictions, all folds
together, rank the samples best (one Kendall tau over all n samples). A fold of a small archive holds a handful of
archs, so its tau is coarse (with 10 archs in a fold, one swapped pair moves it by 0.04) and ``mean - std`` of
such values is a noisy way to rank the models: on digits archs evaluated with inherited weights (the
``benchmarks/fidelity.py`` archive, and a multi-resolution one), the pooled choice ranked held-out archs better than
``mean - std`` (3 x 5-fold), and equally where nothing is predictable (the figures are in the README). The
default pool is rbf, gp, carts, mlp (the original's was rbf, carts, mlp; gp could not run on numpy 2), the
members are the fast cnas predictors (the original's switch took minutes on 100 archs; ``benchmarks/surrogates.py``
times the fit), folds are shuffled with ``random_state``, a fold scores tau = 0 where tau is undefined (constant
predictions or targets),
the number of folds drops to ``len(X) // 2`` on tiny archives (each fold holds at least 2 archs) and the switch
skips cross-validation and takes the first pool member below 4 archs. Every fit of one member uses the same seed
(drawn from ``random_state``), so the result does not depend on ``n_jobs``.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.model_selection import KFold
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from cnas.errors import ConfigError
from cnas.surrogates._base import SEED_MAX, check_training_data
from cnas.surrogates.carts import CartEnsemble
from cnas.surrogates.gp import Kriging, quiet_optimizer
from cnas.surrogates.metrics import kendall_tau
from cnas.surrogates.mlp import MLP, _threads
from cnas.surrogates.rbf import RBF

POOL_MODELS = {"rbf": RBF, "gp": Kriging, "mlp": MLP, "carts": CartEnsemble}


def _fold_predict(model, X, y, trn, tst):
    with threadpool_limits(1):
        model.fit(X[trn], y[trn])
        return model.predict(X[tst])


def _parallel(n_jobs: int | None) -> Parallel:
    """The fold workers: :func:`_backend`'s kind, no memmapping (the arrays are small)."""
    return Parallel(n_jobs=n_jobs, backend=_backend(), max_nbytes=None)


def _backend() -> str:
    """Worker processes (most of an mlp or carts fit is Python-level work, which threads serialize), except in a
    process that multiprocessing started itself (a worker of a process pool, as the benchmarks run several searches
    at once): such a process ends without running exit handlers, so joblib could not remove its worker pool's
    temporary folders; there the folds run in threads."""
    return "loky" if multiprocessing.parent_process() is None else "threading"


def _ready() -> int:
    return os.getpid()


def start_workers(n_jobs: int | None = 2) -> list[int]:
    """Start the ``n_jobs`` fold worker processes and wait until they are ready. A worker imports the predictors
    (torch included) once, which takes seconds; joblib then keeps the workers for later fits (until they idle for
    five minutes). The search calls this in a background thread while it evaluates its initial design, so that
    its first adaptive-switching fit does not wait for the workers. Returns the process ids that answered (none
    for ``n_jobs`` 1)."""
    if n_jobs is None or int(n_jobs) <= 1:
        return []
    return _parallel(int(n_jobs))(delayed(_ready)() for _ in range(2 * int(n_jobs)))


CRITERIA = ("pooled", "mean_std")
SLOW_FIRST = ("mlp", "carts", "gp", "rbf")  # the members by fit time on a few hundred archs, slowest first


class AdaptiveSwitching(RegressorMixin, BaseEstimator):
    """k-fold model selection over ``pool`` by out-of-fold Kendall tau, winner refitted on all data.

    Parameters: ``pool`` (names among rbf, gp, mlp, carts), ``pool_params`` (optional dict name -> constructor
    arguments), ``n_splits``, ``criterion`` (``"pooled"``: Kendall tau of all out-of-fold predictions together;
    ``"mean_std"``: the original's mean minus std of the per-fold taus), ``n_jobs`` (fold fits run in that many
    worker processes, default 2; 1 = sequential in this process; the result is the same whatever the number),
    ``random_state``. The workers are processes, not threads: most of an mlp or carts fit on a few hundred archs
    is Python-level work (the optimiser's steps, one small tree after another), which threads run one at a time.
    In the search's 5-fold step on two cores (``benchmarks/search_step.py``, workers started beforehand with
    :func:`start_workers`) the fit took 1.54 s at 100 archs and 3.65 s at 340, against 2.31 / 4.56 s in two
    threads.

    Fitted attributes: ``winner_`` (name), ``estimator_`` (the refitted winner), ``fold_scores_`` (dict name ->
    list of per-fold tau), ``scores_`` (dict name -> the criterion's score), ``n_splits_`` (folds actually used).
    """

    def __init__(self, pool: tuple[str, ...] = ("rbf", "gp", "carts", "mlp"), pool_params: dict | None = None,
                 n_splits: int = 10, criterion: str = "pooled", n_jobs: int | None = 2, random_state=None):
        self.pool = pool
        self.pool_params = pool_params
        self.n_splits = n_splits
        self.criterion = criterion
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _members(self, rng: np.random.RandomState) -> dict[str, Any]:
        names = [self.pool] if isinstance(self.pool, str) else list(self.pool)
        if not names:
            raise ConfigError("the adaptive-switching pool is empty; give at least one of rbf, gp, mlp, carts")
        params = dict(self.pool_params or {})
        members = {}
        for name in names:
            if name not in POOL_MODELS:
                raise ConfigError(f"unknown predictor '{name}' in the adaptive-switching pool; "
                                  f"choose among {', '.join(POOL_MODELS)}")
            if name in members:
                raise ConfigError(f"predictor '{name}' appears twice in the adaptive-switching pool")
            kw = dict(params.pop(name, {}) or {})
            kw["random_state"] = int(rng.randint(SEED_MAX))
            members[name] = _build(POOL_MODELS[name], name, kw)
        if params:
            raise ConfigError(f"pool_params names {', '.join(map(str, params))}, which is not in the pool {names}")
        return members

    def fit(self, X: Any, y: Any) -> "AdaptiveSwitching":
        X, y = check_training_data(X, y)
        self.n_features_in_ = X.shape[1]
        self._fit(X, y, check_random_state(self.random_state))
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)

    def _fit(self, X, y, rng):
        members = self._members(rng)
        k = int(self.n_splits)
        if k < 2:
            raise ConfigError(f"adaptive switching needs n_splits >= 2, got {self.n_splits!r}")
        if self.criterion not in CRITERIA:
            raise ConfigError(f"adaptive switching criterion must be one of {', '.join(CRITERIA)}, "
                              f"got {self.criterion!r}")
        n = len(X)
        self.n_splits_ = min(k, n // 2)
        self.fold_scores_ = {name: [] for name in members}
        if self.n_splits_ >= 2:
            folds = list(KFold(self.n_splits_, shuffle=True, random_state=int(rng.randint(SEED_MAX))).split(X))
            # the slow members first, so that the two workers finish together (the order changes no result)
            order = sorted(members, key=lambda m: SLOW_FIRST.index(m) if m in SLOW_FIRST else len(SLOW_FIRST))
            tasks = [(name, trn, tst) for name in order for trn, tst in folds]
            run = _parallel(self.n_jobs)
            # BLAS and torch thread counts pinned to 1 for the fits that run in this process (n_jobs=1); the
            # worker processes pin their own in _fold_predict and the fits
            with threadpool_limits(1), _threads(1), quiet_optimizer():
                preds = run(delayed(_fold_predict)(clone(members[name]), X, y, trn, tst)
                            for name, trn, tst in tasks)
            oof = {name: np.empty(n) for name in members}
            for (name, _, tst), p in zip(tasks, preds):
                self.fold_scores_[name].append(float(kendall_tau(p, y[tst])))
                oof[name][tst] = p
            if self.criterion == "pooled":
                self.scores_ = {name: float(kendall_tau(oof[name], y)) for name in members}
            else:
                self.scores_ = {name: float(np.mean(s) - np.std(s)) for name, s in self.fold_scores_.items()}
            names = list(members)
            self.winner_ = names[int(np.argmax([self.scores_[m] for m in names]))]
        else:
            self.scores_ = {name: float("nan") for name in members}
            self.winner_ = next(iter(members))
        self.estimator_ = clone(members[self.winner_]).fit(X, y)


def _build(cls, name, kw):
    try:
        return cls(**kw)
    except TypeError as err:
        raise ConfigError(f"bad parameters for '{name}' in the adaptive-switching pool: {err}") from None
