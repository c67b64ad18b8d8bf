"""Radial basis function interpolation: cubic kernel with a linear polynomial tail (the original's ``rbf``).

The original used pySOT's cubic RBF with a linear tail; :class:`scipy.interpolate.RBFInterpolator` with
``kernel='cubic', degree=1`` solves the same interpolation system.

Deviations from the original, all for robustness:

- duplicate encodings are merged (their targets averaged): the interpolation system is singular otherwise;
- the linear tail lives in the affine span of the training encodings (coordinates from an SVD of the centred,
  scaled genes). When the encodings span every gene this is a rotation, distances are unchanged and the model is
  exactly the original one; with fewer samples than genes (the original asserted) or genes that never vary,
  the tail would be rank deficient and the system singular, and the projection keeps it solvable.
  Queries are projected onto the same span (the unseen directions carry no information anyway);
- beyond ``max_samples`` unique encodings (default 3000, where a fit still takes about half a second on 2
  cores) a uniform random subset of that size is interpolated.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import RBFInterpolator

from cnas.errors import ConfigError
from cnas.surrogates._base import SurrogateBase, unique_capped


class RBF(SurrogateBase):
    """Cubic RBF interpolant with a linear tail.

    Parameters: ``kernel`` and ``degree`` as in :class:`~scipy.interpolate.RBFInterpolator` (the original's
    model is ``'cubic'``, ``1``), ``smoothing`` (0 interpolates exactly), ``max_samples`` (random subset beyond
    it; None: never subsample), ``random_state`` (only used to draw that subset).
    Fitted: ``n_samples_fit_`` (unique encodings interpolated), ``rank_`` (dimension of their affine span).
    """

    def __init__(self, kernel: str = "cubic", degree: int = 1, smoothing: float = 0.0,
                 max_samples: int | None = 3000, random_state=None):
        self.kernel = kernel
        self.degree = degree
        self.smoothing = smoothing
        self.max_samples = max_samples
        self.random_state = random_state

    def _fit(self, X, y, rng):
        if self.max_samples is not None and int(self.max_samples) < 2:
            raise ConfigError(f"rbf max_samples must be at least 2 (or None), got {self.max_samples!r}")
        X, y = unique_capped(X, y, self.max_samples, rng)
        self.n_samples_fit_ = len(X)
        self.center_ = X.mean(axis=0)
        _, s, vt = np.linalg.svd(X - self.center_, full_matrices=False)
        tol = (s[0] if s.size else 0.0) * max(X.shape) * np.finfo(float).eps * 10
        rank = int(np.sum(s > tol))
        self.basis_ = vt[:rank].T  # (n_genes, rank)
        self.rank_ = rank
        if rank == 0:  # a single unique encoding after merging: predict its mean target
            self.model_ = None
            self.mean_ = float(np.mean(y))
            return
        Z = (X - self.center_) @ self.basis_
        try:
            self.model_ = RBFInterpolator(Z, y, kernel=self.kernel, degree=self.degree, smoothing=self.smoothing)
        except np.linalg.LinAlgError:  # numerically singular despite the projection: smooth a little
            self.model_ = RBFInterpolator(Z, y, kernel=self.kernel, degree=self.degree,
                                          smoothing=max(float(self.smoothing), 1e-8))

    def _predict(self, X):
        if self.model_ is None:
            return np.full(len(X), self.mean_)
        return self.model_((X - self.center_) @ self.basis_)
