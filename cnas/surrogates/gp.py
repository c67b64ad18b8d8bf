"""Kriging: a linear trend plus a Gaussian-correlation Gaussian process (the original's ``gp``).

The original used pydacefit (universal Kriging, ``regr_linear`` + ``corr_gauss``, hyper-parameters by maximum
likelihood); that library does not run on numpy 2. cnas builds the same kind of model from scikit-learn:

1. the linear trend ``b0 + x @ b`` is fitted by least squares on the scaled genes, with a ridge penalty chosen by
   leave-one-out cross-validation among near-zero and larger values (:class:`~sklearn.linear_model.RidgeCV`).
   DACE estimates the trend by generalised least squares jointly with the correlation; fitting it first and
   modelling the residuals is the usual two-step equivalent. The ridge keeps the trend sane with fewer samples
   than genes, where ordinary least squares (and the original, which asserted) has no unique answer;
2. the residuals are modelled by :class:`~sklearn.gaussian_process.GaussianProcessRegressor` with kernel
   ``C * RBF(length_scale) + WhiteKernel``: the RBF kernel is the Gaussian correlation
   ``exp(-sum theta_j d_j^2)`` with ``theta = 1 / (2 l^2)``; isotropic by default (one ``theta`` for every gene,
   as the original's scalar ``theta``), anisotropic with ``anisotropic=True`` (46 ``theta``, slower and not
   better on archives of a few hundred archs). The white-noise term is a nugget fitted by maximum likelihood
   (DACE interpolates exactly; evaluated accuracies are noisy, and the nugget can shrink to 1e-10).
   Targets are standardised before the fit.

Scalability: the hyper-parameters are fitted by maximum likelihood on at most ``max_opt_samples`` (default
500) unique encodings, then the process is conditioned with those hyper-parameters fixed on at most
``max_samples`` (default 3000) encodings, one Cholesky factorisation; beyond that a uniform random subset is
used. Duplicate encodings are merged (targets averaged).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF as RBFKernel
from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel
from sklearn.linear_model import RidgeCV

from cnas.errors import ConfigError
from cnas.surrogates._base import SEED_MAX, SurrogateBase, is_constant, subsample, unique_capped

TREND_ALPHAS = (1e-8, 1e-4, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@contextmanager
def quiet_optimizer():
    """A context that silences the GP hyper-parameter optimiser's convergence warnings. ``catch_warnings`` is
    process-wide, not per thread: fits that run in threads at once are wrapped in one such context as a whole
    (adaptive switching does), so that one fit ending cannot restore the filters under another."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*(bound|convergence|Predicted variances).*")
        yield


class Kriging(SurrogateBase):
    """Linear trend + Gaussian-correlation GP, hyper-parameters by maximum likelihood.

    Parameters: ``anisotropic`` (one length scale per gene), ``nugget`` (fit a white-noise term),
    ``n_restarts`` (extra random starts of the likelihood optimiser), ``max_opt_samples`` and ``max_samples``
    (see the module docstring; None: no limit), ``random_state``.
    Fitted: ``trend_`` (the ridge trend), ``gp_`` (the residual process, None when the trend explains the
    targets), ``kernel_``, ``n_samples_fit_`` (unique encodings conditioned on), ``n_samples_opt_`` (used for
    the likelihood).
    """

    def __init__(self, anisotropic: bool = False, nugget: bool = True, n_restarts: int = 0,
                 max_opt_samples: int | None = 500, max_samples: int | None = 3000, random_state=None):
        self.anisotropic = anisotropic
        self.nugget = nugget
        self.n_restarts = n_restarts
        self.max_opt_samples = max_opt_samples
        self.max_samples = max_samples
        self.random_state = random_state

    def _kernel(self, n_genes: int):
        ls = np.ones(n_genes) if self.anisotropic else 1.0
        k = ConstantKernel(1.0, (1e-3, 1e3)) * RBFKernel(ls, (1e-2, 1e3))
        if self.nugget:
            k = k + WhiteKernel(1e-3, (1e-10, 1.0))
        return k

    def _fit(self, X, y, rng):
        for name in ("max_opt_samples", "max_samples"):
            v = getattr(self, name)
            if v is not None and int(v) < 2:
                raise ConfigError(f"gp {name} must be at least 2 (or None), got {v!r}")
        X, y = unique_capped(X, y, self.max_samples, rng)
        self.n_samples_fit_ = len(X)
        self.trend_ = RidgeCV(alphas=TREND_ALPHAS).fit(X, y)  # penalty by efficient leave-one-out
        resid = y - self.trend_.predict(X)
        self.gp_ = None
        self.n_samples_opt_ = 0
        if is_constant(resid) or len(X) < 2:
            return
        with quiet_optimizer():
            opt = subsample(len(X), self.max_opt_samples, rng)
            Xo, ro = (X, resid) if opt is None else (X[opt], resid[opt])
            self.n_samples_opt_ = len(Xo)
            gp = GaussianProcessRegressor(self._kernel(X.shape[1]), normalize_y=True,
                                          n_restarts_optimizer=int(self.n_restarts),
                                          random_state=int(rng.randint(SEED_MAX)))
            gp.fit(Xo, ro)
            if opt is not None:  # condition on every sample with the fitted hyper-parameters
                gp = GaussianProcessRegressor(gp.kernel_, normalize_y=True, optimizer=None).fit(X, resid)
        self.gp_ = gp

    @property
    def kernel_(self):
        """The fitted kernel (None when the trend alone explains the targets)."""
        return None if getattr(self, "gp_", None) is None else self.gp_.kernel_

    def _predict(self, X):
        p = self.trend_.predict(X)
        if self.gp_ is not None:
            p = p + self.gp_.predict(X)
        return p
