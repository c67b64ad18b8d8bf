"""The surrogate problem that NSGA-II optimizes, its integer operators, subset selection and hypervolume.

Integer genes stay integers: per-gene bounds from the space, SBX/PM followed by rounding, and a repair that maps
every vector to its canonical form (genes of absent layers zero, a NACHOS vector without exit gets its last exit),
so duplicates are found on the architecture itself. Exact objectives (params, MACs, activations, tiny_ml) are
counted in closed form for every individual; the others come from surrogates.

Constraints (``constraint_mode='native'``, the default) are pymoo inequality constraints ``g <= 0`` with pymoo's
feasibility-first selection: ``params <= pmax``, ``macs <= mmax`` (``avg_macs <= mmax`` when avg_macs is an
objective), ``activations <= amax``, predicted accuracy ``>= top1min``. ``constraint_mode='penalty'`` reproduces
the original: no constraints, ``tiny_ml``'s static penalty, and for avg_macs the ``phi`` feasibility ratio
``f = phi * c + (1 - phi) * max(0, c - mmax) * penalty``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from pymoo.core.duplicate import ElementwiseDuplicateElimination
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from cnas import complexity
from cnas.objectives import OBJECTIVES

Predict = Callable[[np.ndarray], np.ndarray]


class CanonicalRepair(Repair):
    """Round, clip to the per-gene bounds, and canonicalize (space.repair)."""

    def __init__(self, space):
        super().__init__()
        self.space = space

    def _do(self, problem, X, **kwargs):
        X = np.clip(np.rint(np.asarray(X, dtype=float)), self.space.xl, self.space.xu).astype(np.int64)
        return self.space.repair(X) if len(X) else X


class SameArch(ElementwiseDuplicateElimination):
    """Two individuals are duplicates when their canonical encodings are equal."""

    def is_equal(self, a, b):
        return np.array_equal(a.X, b.X)


def exact_values(names: Sequence[str], archs: Sequence[dict], n_classes: int, tiny_ml_kw: dict) -> dict[str, np.ndarray]:
    """Closed-form values of the exact objectives ``names`` for ``archs`` (archs carry their ``r``)."""
    counts = complexity.count_many(archs, n_classes)
    out = {}
    for key in ("params", "macs", "activations"):
        out[key] = np.fromiter((c[key] for c in counts), float, len(counts))
    if "tiny_ml" in names:
        out["tiny_ml"] = np.atleast_1d(complexity.tiny_ml(out["params"], out["macs"], out["activations"], **tiny_ml_kw))
    return {k: v for k, v in out.items() if k in names or k in ("params", "macs", "activations")}


class SurrogateProblem(Problem):
    """Minimize ``objectives`` over the space's integer encodings; predicted objectives via ``predictors``."""

    def __init__(self, space, objectives: Sequence[str], predictors: dict[str, Predict], n_classes: int,
                 fixed_r: int | None, tiny_ml_kw: dict, limits: dict[str, float] | None = None,
                 constraint_mode: str = "native", penalty: float = 1e10):
        self.space, self.objectives = space, list(objectives)
        self.predictors, self.n_classes, self.fixed_r = predictors, n_classes, fixed_r
        self.tiny_ml_kw, self.limits = tiny_ml_kw, dict(limits or {})
        self.constraint_mode, self.penalty = constraint_mode, penalty
        self.constraint_names = list(self.limits) if constraint_mode == "native" else []
        self.last_phi: float | None = None
        super().__init__(n_var=space.n_var, n_obj=len(self.objectives), n_ieq_constr=len(self.constraint_names),
                         xl=space.xl.astype(float), xu=space.xu.astype(float), vtype=int)

    def archs(self, X: np.ndarray) -> list[dict]:
        archs = self.space.decode_many(X)
        if self.fixed_r is not None:
            for a in archs:
                a["r"] = self.fixed_r
        return archs

    def values(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Every value the objectives and constraints need, for canonical integer rows ``X``."""
        X = np.asarray(X, dtype=np.int64)
        vals = exact_values(self.objectives, self.archs(X), self.n_classes, self.tiny_ml_kw)
        for name, predict in self.predictors.items():
            vals[name] = np.asarray(predict(X), dtype=float).reshape(-1)
        return vals

    def _evaluate(self, X, out, *args, **kwargs):
        X = self.space.repair(np.clip(np.rint(X), self.space.xl, self.space.xu).astype(np.int64))
        vals = self.values(X)
        F = np.column_stack([vals[n] for n in self.objectives])
        if self.constraint_mode == "penalty" and "avg_macs" in self.objectives and "macs" in self.limits:
            j = self.objectives.index("avg_macs")
            c, mmax = F[:, j], self.limits["macs"]
            phi = float(np.mean(c <= mmax))
            F[:, j] = phi * c + (1 - phi) * np.maximum(0.0, c - mmax) * self.penalty
            self.last_phi = phi
        out["F"] = F
        if self.constraint_names:
            out["G"] = np.column_stack([self._g(name, vals) for name in self.constraint_names])

    def _g(self, name: str, vals: dict[str, np.ndarray]) -> np.ndarray:
        limit = self.limits[name]
        if name == "top1":  # accuracy >= top1min (a fraction)  <=>  error <= 100 (1 - top1min)
            return vals["top1"] - 100.0 * (1.0 - limit)
        key = "avg_macs" if name == "macs" and "avg_macs" in vals else name
        return vals[key] - limit


def constraint_limits(pmax, mmax, amax, top1min) -> dict[str, float]:
    """Which native constraints are on: only the limits the user gave (mmax >= 1e10 means none)."""
    out = {}
    if pmax is not None:
        out["params"] = float(pmax)
    if mmax is not None and mmax < 1e10:
        out["macs"] = float(mmax)
    if amax is not None:
        out["activations"] = float(amax)
    if top1min:
        out["top1"] = float(top1min)
    return out


def feasible_mask(values: dict[str, np.ndarray], limits: dict[str, float]) -> np.ndarray:
    """Feasibility of measured values under the native limits."""
    n = len(next(iter(values.values()))) if values else 0
    ok = np.ones(n, dtype=bool)
    for name, limit in limits.items():
        if name == "top1":
            ok &= values["top1"] <= 100.0 * (1.0 - limit)
        else:
            key = "avg_macs" if name == "macs" and "avg_macs" in values else name
            ok &= values[key] <= limit
    return ok


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Indices of the first non-dominated front of ``F`` (minimization)."""
    if len(F) == 0:
        return np.zeros(0, dtype=int)
    return NonDominatedSorting().do(np.asarray(F, float), only_non_dominated_front=True)


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of ``F`` w.r.t. ``1.01 * ref``, normalized by the volume of that box (0..1)."""
    F = np.asarray(F, float)
    ref = 1.01 * np.asarray(ref, float)
    if len(F) == 0 or np.any(ref <= 0):
        return 0.0
    F = F[np.all(F < ref, axis=1)]
    if len(F) == 0:
        return 0.0
    return float(HV(ref_point=ref)(F) / np.prod(ref))


def select_subset(F_cand: np.ndarray, F_front: np.ndarray, k: int, seed: int, rule: str = "gaps") -> np.ndarray:
    """Pick ``k`` of the candidates (rows of predicted objective values) given the archive's measured front.

    ``rule="gaps"`` with two objectives: the original's rule, the subset whose second-objective values, together with
    the archive front's, leave the most even gaps (minimum std of the sorted gaps), searched with a pymoo GA over
    binary masks repaired to exactly ``k`` ones; it does not look at the first objective. ``rule="hv"``, and any
    rule with three or more objectives: greedy hypervolume contribution over the archive's front, on objectives
    normalized over candidates and front (each pick is the candidate whose predicted values add the most
    hypervolume to the front plus the picks so far)."""
    if rule not in ("gaps", "hv"):
        raise ValueError(f"rule must be 'gaps' or 'hv', got {rule!r}")
    n = len(F_cand)
    if n <= k:
        return np.arange(n)
    if F_cand.shape[1] == 2 and rule == "gaps":
        return _gap_subset(F_cand[:, 1], np.asarray(F_front)[:, 1] if len(F_front) else np.zeros(0), k, seed)
    return _greedy_hv_subset(F_cand, F_front, k)


def _gap_subset(f2_cand: np.ndarray, f2_front: np.ndarray, k: int, seed: int) -> np.ndarray:
    from pymoo.algorithms.soo.nonconvex.ga import GA
    from pymoo.core.problem import Problem as P
    from pymoo.operators.crossover.pntx import TwoPointCrossover
    from pymoo.operators.mutation.bitflip import BitflipMutation
    from pymoo.operators.sampling.rnd import BinaryRandomSampling
    from pymoo.optimize import minimize

    n = len(f2_cand)

    class ExactlyK(Repair):
        def _do(self, problem, X, **kwargs):
            X = np.asarray(X, dtype=bool).copy()
            rng = np.random.default_rng(int(X.sum()) + seed)
            for row in X:
                on = np.flatnonzero(row)
                if len(on) > k:
                    row[rng.choice(on, len(on) - k, replace=False)] = False
                elif len(on) < k:
                    off = np.flatnonzero(~row)
                    row[rng.choice(off, k - len(on), replace=False)] = True
            return X

    class Gaps(P):
        def __init__(self):
            super().__init__(n_var=n, n_obj=1, xl=0, xu=1, vtype=bool)

        def _evaluate(self, X, out, *args, **kwargs):
            X = np.asarray(X, dtype=bool)
            res = np.empty(len(X))
            for i, row in enumerate(X):
                vals = np.sort(np.concatenate([f2_front, f2_cand[row]]))
                res[i] = np.std(np.diff(vals)) if len(vals) > 1 else 0.0
            out["F"] = res

    algo = GA(pop_size=100, sampling=BinaryRandomSampling(), crossover=TwoPointCrossover(),
              mutation=BitflipMutation(), repair=ExactlyK(), eliminate_duplicates=True)
    res = minimize(Gaps(), algo, ("n_gen", 60), seed=seed, verbose=False)
    X = np.atleast_2d(res.X)[0].astype(bool)
    return np.flatnonzero(X)


def _greedy_hv_subset(F_cand: np.ndarray, F_front: np.ndarray, k: int) -> np.ndarray:
    both = np.vstack([F_cand, F_front]) if len(F_front) else F_cand
    lo, hi = both.min(0), both.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    C = (F_cand - lo) / span
    base = list((F_front - lo) / span) if len(F_front) else []
    ref = np.full(F_cand.shape[1], 1.1)
    chosen: list[int] = []
    for _ in range(k):
        cur = HV(ref_point=ref)(np.array(base)) if base else 0.0
        best, best_gain = None, -1.0
        for i in range(len(C)):
            if i in chosen:
                continue
            gain = HV(ref_point=ref)(np.array(base + [C[i]])) - cur
            if gain > best_gain:
                best, best_gain = i, gain
        chosen.append(best)
        base.append(C[best])
    return np.asarray(sorted(chosen))


def objective_units(names: Sequence[str]) -> list[str]:
    return [OBJECTIVES[n].unit for n in names]
