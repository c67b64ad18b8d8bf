"""An ensemble of regression trees, each grown on a random subset of genes (the original's ``carts``).

The original grew 5000 CARTs, each on a bootstrap sample and a random subset of the genes, and predicted by
looping over the trees in Python (slow: ``benchmarks/surrogates.py`` times a baseline like it). cnas keeps the
idea and makes it fast:

- ``n_estimators`` defaults to 300: on the synthetic archives of ``benchmarks/surrogates.py`` more trees do
  not raise Kendall tau measurably, and prediction cost is linear in the tree count;
- each tree is a :class:`~sklearn.tree.DecisionTreeRegressor` fitted on all genes with the genes outside its
  subset set to 0 (a constant column is never split on, so the tree only uses its subset) and with the
  bootstrap expressed as sample weights (no copies). Every tree then reads the same float32 matrix, and
  prediction is one compiled ``Tree.predict`` call per tree on the whole batch (a few ms for 40 archs);
- ``n_jobs`` grows the trees in threads (the tree builder releases the GIL); the result does not depend on it,
  because each tree's subset, bootstrap and seed are drawn up front from ``random_state``.
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sklearn import config_context
from sklearn.tree import DecisionTreeRegressor

from cnas.errors import ConfigError
from cnas.surrogates._base import SEED_MAX, SurrogateBase


def _grow(X, y, mask, weight, seed, min_samples_leaf):
    # X is float32, C-contiguous and finite (checked by SurrogateBase.fit), the form the tree builder takes, and
    # the parameters are checked once per ensemble: scikit-learn's per-tree input and parameter validation is
    # skipped (over a third of a carts fit on archives of 30 to 340 archs); the tree is the same
    tree = DecisionTreeRegressor(min_samples_leaf=min_samples_leaf, random_state=seed)
    with config_context(skip_parameter_validation=True, assume_finite=True):
        tree.fit(X * mask, y, sample_weight=weight, check_input=False)
    return tree.tree_


class CartEnsemble(SurrogateBase):
    """Bagged regression trees on random gene subsets; the prediction is the mean over the trees.

    Parameters: ``n_estimators`` (trees), ``max_features`` (fraction of genes per tree, or an int count),
    ``bootstrap`` (resample the archive per tree), ``min_samples_leaf``, ``n_jobs`` (threads for fitting),
    ``random_state``.
    """

    def __init__(self, n_estimators: int = 300, max_features: float | int = 0.5, bootstrap: bool = True,
                 min_samples_leaf: int = 1, n_jobs: int | None = 1, random_state=None):
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.min_samples_leaf = min_samples_leaf
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _n_features(self, n_genes: int) -> int:
        mf = self.max_features
        if isinstance(mf, (int, np.integer)) and not isinstance(mf, bool):
            k = int(mf)
        elif isinstance(mf, (float, np.floating)) and 0.0 < mf <= 1.0:
            k = int(round(mf * n_genes))
        else:
            raise ConfigError(f"carts max_features must be a fraction in (0, 1] or a gene count, got {mf!r}")
        if not 1 <= k <= n_genes:
            raise ConfigError(f"carts max_features gives {k} genes per tree; it must be between 1 and {n_genes}")
        return k

    def _fit(self, X, y, rng):
        n_trees = int(self.n_estimators)
        if n_trees < 1:
            raise ConfigError(f"carts n_estimators must be at least 1, got {self.n_estimators!r}")
        n, d = X.shape
        k = self._n_features(d)
        DecisionTreeRegressor(min_samples_leaf=self.min_samples_leaf)._validate_params()  # once, not per tree
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        jobs = []
        for _ in range(n_trees):
            mask = np.zeros(d, dtype=np.float32)
            mask[rng.choice(d, size=k, replace=False)] = 1.0
            weight = np.bincount(rng.randint(0, n, size=n), minlength=n).astype(np.float64) if self.bootstrap else None
            jobs.append((mask, weight, int(rng.randint(SEED_MAX))))
        run = Parallel(n_jobs=self.n_jobs, prefer="threads")
        self.trees_ = run(delayed(_grow)(X32, y, m, w, s, self.min_samples_leaf) for m, w, s in jobs)
        self.feature_masks_ = np.stack([m for m, _, _ in jobs]).astype(bool)

    def _predict(self, X):
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        total = np.zeros(len(X32))
        for tree in self.trees_:
            total += tree.predict(X32).reshape(-1)
        return total / len(self.trees_)
