"""A least-squares line in a few genes, with any predictor fitted to what the line leaves.

Where one gene has a large, steady effect, the predictors learn it slowly: on a Fashion-MNIST supernet searched
with the input resolution as a gene, the resolution alone ranks held-out archs at Kendall tau 0.59, while
adaptive switching fitted on 10 to 30 archs, the archive a short search has, ranks them at 0.21 to 0.36: with a
few archs spread over some 45 genes, the trees and kernels cannot tell the one strong gene from the many weak
ones. :class:`LinearTrend` fits ``y ~ a + b . X[:, columns]`` first (ordinary least squares, so the slope is
measured, not assumed) and the base predictor on the residual; its prediction is the line plus the base's
prediction. The search uses it for the resolution gene (``--r_trend``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from cnas.errors import UsageError
from cnas.surrogates._base import as_matrix, as_target


class LinearTrend(RegressorMixin, BaseEstimator):
    """``base`` (an unfitted scikit-learn regressor, cloned in :meth:`fit`) on the residual of a least-squares
    line in ``columns`` of the encoding. After ``fit``: ``coef_`` (the mean target, then one slope per column, per
    step of the gene's index), ``center_`` (the columns' means) and ``base_`` (the fitted base predictor)."""

    def __init__(self, base: Any = None, columns: tuple[int, ...] = (-1,)):
        self.base = base
        self.columns = columns

    def _genes(self, X: np.ndarray) -> np.ndarray:
        cols = list(self.columns)
        if not cols or any(not -X.shape[1] <= c < X.shape[1] for c in cols):
            raise UsageError(f"LinearTrend columns {cols} do not fit encodings of {X.shape[1]} genes")
        return X[:, cols]

    def _line(self, X: np.ndarray) -> np.ndarray:
        return self.coef_[0] + (self._genes(X) - self.center_) @ self.coef_[1:]

    def fit(self, X: Any, y: Any) -> "LinearTrend":
        if self.base is None:
            raise UsageError("LinearTrend needs a base predictor")
        X = as_matrix(X)
        y = as_target(y, X.shape[0])
        G = self._genes(X)
        self.center_ = G.mean(axis=0)  # centred, so a gene constant in fit gets slope 0 (minimum-norm solution)
        self.coef_ = np.linalg.lstsq(np.column_stack([np.ones(len(G)), G - self.center_]), y, rcond=None)[0]
        self.base_ = clone(self.base).fit(X, y - self._line(X))
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "base_")
        X = as_matrix(X)
        return self._line(X) + np.asarray(self.base_.predict(X), dtype=np.float64)
