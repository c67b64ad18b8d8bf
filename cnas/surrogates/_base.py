"""Shared plumbing of the surrogate predictors: input checks, gene scaling, duplicate merging, subsampling.

Every predictor is a scikit-learn regressor (``fit`` returns self, ``predict`` returns a 1-D float array,
constructor arguments stored unchanged, ``random_state``), so ``sklearn.base.clone``, ``KFold`` and
``cross_val_score`` work on it.

Common behaviour (deviations from the original, which asserted ``n > n_var`` and crashed or went singular on
degenerate archives):

- inputs are integer genes; each model sees them min-max scaled per column with the bounds seen in ``fit``
  (a column constant in ``fit`` is shifted but not scaled), so the same scaling applies to fit and predict;
- a constant (or single-sample) target is remembered and predicted as that constant, whatever the model;
- fitting runs with one BLAS thread (BLAS threads competing for busy cores made GP fits several times slower);
- NaN or infinite inputs or targets, mismatched lengths and wrong shapes raise :class:`cnas.errors.UsageError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from cnas.errors import UsageError

SEED_MAX = 2**31 - 1


def as_matrix(X: Any, what: str = "X") -> np.ndarray:
    """``X`` as a finite 2-D float array, or a UsageError naming the problem."""
    try:
        A = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise UsageError(f"{what} must be a 2-D array of numbers (one encoding per row): {err}") from None
    if A.ndim == 1 and A.size == 0:
        A = A.reshape(0, 0)
    if A.ndim != 2:
        raise UsageError(f"{what} must be a 2-D array (one encoding per row), got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise UsageError(f"{what} holds NaN or infinite values; drop or repair those rows before fitting")
    return A


def as_target(y: Any, n: int) -> np.ndarray:
    """``y`` as a finite 1-D float array of length ``n`` (an (n, 1) column is accepted)."""
    try:
        t = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise UsageError(f"targets y must be numbers: {err}") from None
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise UsageError(f"targets y must be 1-D (one value per encoding), got shape {t.shape}")
    if t.shape[0] != n:
        raise UsageError(f"X has {n} rows but y has {t.shape[0]} values; give one target per encoding")
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise UsageError(
            f"targets hold {bad.size} NaN or infinite value(s) (first at row {int(bad[0])}: {t[bad[0]]!r}); "
            "drop the failed evaluations before fitting"
        )
    return t


def check_training_data(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    A = as_matrix(X)
    if A.shape[0] == 0:
        raise UsageError("cannot fit a predictor on 0 samples; evaluate some architectures first")
    if A.shape[1] == 0:
        raise UsageError("X has 0 columns; give the integer encodings of the architectures")
    return A, as_target(y, A.shape[0])


def merge_duplicates(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of ``X`` with the mean target of each (interpolating models go singular on duplicates)."""
    U, inverse = np.unique(X, axis=0, return_inverse=True)
    if len(U) == len(X):
        return X, y
    inverse = inverse.ravel()
    sums = np.bincount(inverse, weights=y, minlength=len(U))
    counts = np.bincount(inverse, minlength=len(U))
    return U, sums / counts


def subsample(n: int, max_n: int | None, rng: np.random.RandomState) -> np.ndarray | None:
    """Sorted indices of a uniform random subset of size ``max_n``, or None when ``n <= max_n``."""
    if max_n is None or n <= max_n:
        return None
    return np.sort(rng.choice(n, size=int(max_n), replace=False))


def is_constant(y: np.ndarray) -> bool:
    return len(y) < 2 or float(np.ptp(y)) <= 1e-12 * max(1.0, float(np.max(np.abs(y))))


class SurrogateBase(RegressorMixin, BaseEstimator):
    """Base class: subclasses implement ``_fit(Xs, y, rng)`` and ``_predict(Xs)`` on scaled genes."""

    def fit(self, X: Any, y: Any) -> "SurrogateBase":
        X, y = check_training_data(X, y)
        self.n_features_in_ = X.shape[1]
        self.x_min_ = X.min(axis=0)
        span = X.max(axis=0) - self.x_min_
        self.x_scale_ = np.where(span > 0, span, 1.0)
        self.constant_: float | None = float(y[0]) if is_constant(y) else None
        if self.constant_ is None:
            with threadpool_limits(1):  # BLAS threads competing for busy cores slow GP fits down
                self._fit(self._scale(X), y, check_random_state(self.random_state))
        return self

    def _scale(self, X: np.ndarray) -> np.ndarray:
        return (X - self.x_min_) / self.x_scale_

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        A = as_matrix(X)
        if A.shape[0] == 0:
            return np.zeros(0)
        if A.shape[1] != self.n_features_in_:
            raise UsageError(
                f"X has {A.shape[1]} genes per row but the predictor was fitted on {self.n_features_in_}; "
                "encode the candidates with the same search space"
            )
        if self.constant_ is not None:
            return np.full(A.shape[0], self.constant_)
        return np.asarray(self._predict(self._scale(A)), dtype=np.float64).reshape(-1)

    # subclasses
    def _fit(self, X: np.ndarray, y: np.ndarray, rng: np.random.RandomState) -> None:  # pragma: no cover
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


def unique_capped(X: np.ndarray, y: np.ndarray, max_n: int | None,
                  rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Duplicates merged (:func:`merge_duplicates`), then at most ``max_n`` rows (:func:`subsample`)."""
    X, y = merge_duplicates(X, y)
    idx = subsample(len(X), max_n, rng)
    return (X, y) if idx is None else (X[idx], y[idx])
