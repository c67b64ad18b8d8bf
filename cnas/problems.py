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

from typing import Callable

import numpy as np
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from cnas.objectives import ObjectiveSet

Predict = Callable[[np.ndarray], np.ndarray]


class CanonicalRepair(Repair):
    """Round, clip to the per-gene bounds, and canonicalize (space.repair)."""

    def __init__(self, space):
        super().__init__()
        self.space = space

    def _do(self, problem, X, **kwargs):
        X = np.clip(np.rint(np.asarray(X, dtype=float)), self.space.xl, self.space.xu).astype(np.int64)
        return self.space.repair(X) if len(X) else X


class SameArch(DuplicateElimination):
    """Two individuals are duplicates when their canonical encodings are equal.

    The same decisions as pymoo's ``ElementwiseDuplicateElimination`` with ``np.array_equal`` on ``X`` (which this
    class was): within a population an individual is a duplicate when an equal one comes *after* it (the last of
    equal individuals stays), against other populations when any of theirs is equal. Rows are compared through a
    set of their values instead of pair by pair in Python (quadratic: most of NSGA-II's own time on the surrogate
    problem)."""

    def _do(self, pop, other, is_duplicate):
        rows = [tuple(x) for x in np.atleast_2d(pop.get("X")).tolist()]
        if other is None:
            seen: set = set()
            for i in range(len(rows) - 1, -1, -1):
                if rows[i] in seen:
                    is_duplicate[i] = True
                else:
                    seen.add(rows[i])
        else:
            seen = {tuple(x) for x in np.atleast_2d(other.get("X")).tolist()}
            for i, r in enumerate(rows):
                if r in seen:
                    is_duplicate[i] = True
        return is_duplicate


class SurrogateProblem(Problem):
    """Minimize the objective set's objectives over the space's integer encodings: exact objectives counted, the
    others from ``predictors`` (name -> predict(X)); the set's constraints as pymoo's ``G``."""

    def __init__(self, space, objectives: ObjectiveSet, predictors: dict[str, Predict]):
        self.space, self.oset, self.predictors = space, objectives, predictors
        self.objectives = objectives.names
        self.last_phi: float | None = None
        n_constr = 0 if objectives.penalty_mode else len(objectives.constraints)
        super().__init__(n_var=space.n_var, n_obj=len(self.objectives), n_ieq_constr=n_constr,
                         xl=space.xl.astype(float), xu=space.xu.astype(float), vtype=int)

    def archs(self, X: np.ndarray) -> list[dict]:
        return [self.space.with_resolution(a) for a in self.space.decode_many(X)]

    def values(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Every value the objectives and constraints need, for canonical integer rows ``X``."""
        X = np.asarray(X, dtype=np.int64)
        vals = self.oset.exact_values(self.archs(X))
        for name, predict in self.predictors.items():
            vals[name] = np.asarray(predict(X), dtype=float).reshape(-1)
        return vals

    def _evaluate(self, X, out, *args, **kwargs):
        X = self.space.repair(np.clip(np.rint(X), self.space.xl, self.space.xu).astype(np.int64))
        vals = self.values(X)
        F = self.oset.F_of(vals)
        for name, limit in self.oset.phi_penalized.items():  # the penalty mode's feasibility-ratio penalty
            j = self.objectives.index(name)
            c = F[:, j]
            phi = float(np.mean(c <= limit))
            F[:, j] = phi * c + (1 - phi) * np.maximum(0.0, c - limit) * self.oset.tiny_ml_kw["penalty"]
            self.last_phi = phi
        out["F"] = F
        if self.n_ieq_constr:
            out["G"] = self.oset.G_of(vals)


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
    the archive front's, leave the most even gaps (minimum std of the sorted gaps), found exactly (the original
    searched for it with a genetic algorithm); it does not look at the first objective. ``rule="hv"``, and any
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


def _gap_subset(f2_cand: np.ndarray, f2_front: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The ``k`` candidates whose second-objective values, merged with the front's, leave the most even gaps: the
    exact minimum of :func:`_gap_std` over all subsets of exactly ``k`` (the original searched it with a genetic
    algorithm, which found a near-minimum in about 0.7 s per iteration; this takes milliseconds and is never
    worse). ``seed`` is accepted for the selection rules' common signature and changes nothing.

    Sorted, the chosen values and the front's form a chain from its lowest to its highest value. With ``m``
    values and ``R`` their range, the variance of the ``m - 1`` gaps is ``sum(g**2) / (m - 1) - (R / (m -
    1))**2``; for a given first and last value ``R`` is fixed, so a dynamic programme over the sorted values
    (state: the chain's first value, its last, how many candidates it holds; a chain may not skip a front value)
    gives the least ``sum(g**2)`` of every chain of exactly ``k`` candidates, and the least variance over its
    ends is the answer. Ties go to the chain found first in sorted order, so the result is deterministic."""
    f2_cand = np.asarray(f2_cand, dtype=float)
    front = np.asarray(f2_front, dtype=float).reshape(-1)
    n, m = len(f2_cand), len(front) + k
    if m < 2:  # a single value has no gaps: every subset scores 0
        return np.arange(k)
    vals = np.concatenate([front, f2_cand])
    is_cand = np.r_[np.zeros(len(front), dtype=bool), np.ones(n, dtype=bool)]
    order = np.argsort(vals, kind="stable")
    p, opt = vals[order], is_cand[order]
    N = len(p)
    mand = np.flatnonzero(~opt)
    starts = np.arange(mand[0] + 1 if len(mand) else N)  # nothing of the front may lie before the first value
    last_start = mand[-1] if len(mand) else 0  # ... nor after the last
    n_mand = np.cumsum(~opt)
    A = len(starts)
    D = np.full((A, N, k + 1), np.inf)
    P = np.full((A, N, k + 1), -1, dtype=np.int64)
    D[np.arange(A), starts, opt[starts].astype(int)] = 0.0
    for j in range(1, N):
        i = np.arange(j)
        ok = (n_mand[j - 1] - n_mand[i]) == 0  # no front value strictly between i and j
        i = i[ok]
        if not len(i):
            continue
        cost = D[:, i, :] + ((p[j] - p[i]) ** 2)[None, :, None]  # starts x predecessors x count
        if opt[j]:
            cost, tgt = cost[:, :, :-1], slice(1, k + 1)
        else:
            tgt = slice(0, k + 1)
        best, arg = cost.min(axis=1), cost.argmin(axis=1)
        cur = D[:, j, tgt]
        better = best < cur
        D[:, j, tgt] = np.where(better, best, cur)
        P[:, j, tgt] = np.where(better, i[arg], P[:, j, tgt])
    ends = np.arange(last_start, N)
    S2 = D[:, ends, k]  # starts x ends
    R = p[ends][None, :] - p[starts][:, None]
    var = S2 / (m - 1) - (R / (m - 1)) ** 2
    if not np.isfinite(var).any():  # cannot happen with n >= k; kept as a guard
        return np.arange(k)
    a, e = np.unravel_index(int(np.argmin(np.where(np.isfinite(var), var, np.inf))), var.shape)
    j, c, chain = int(ends[e]), k, []
    while True:
        chain.append(j)
        if j == starts[a] and c == int(opt[j]):
            break
        i = int(P[a, j, c])
        c -= int(opt[j])
        j = i
    picked = [int(order[q]) - len(front) for q in chain if opt[q]]
    return np.asarray(sorted(picked))


def _gap_std(X: np.ndarray, f2_cand: np.ndarray, f2_front: np.ndarray) -> np.ndarray:
    """For each boolean row of ``X``: the std of the gaps between the sorted second-objective values of the front
    and of the candidates the row selects (0 with fewer than two values). Rows that select equally many candidates
    (all of them, after the repair to exactly k) are computed together; each row's value is the one the
    row-by-row ``np.std(np.diff(np.sort(...)))`` gives."""
    res = np.zeros(len(X))
    counts = X.sum(axis=1)
    for m in np.unique(counts):
        rows = np.flatnonzero(counts == m)
        width = len(f2_front) + int(m)
        if width < 2:
            continue
        picked = np.broadcast_to(f2_cand, (len(rows), len(f2_cand)))[X[rows]].reshape(len(rows), int(m))
        vals = np.concatenate([np.broadcast_to(f2_front, (len(rows), len(f2_front))), picked], axis=1)
        vals.sort(axis=1)
        res[rows] = np.std(np.diff(vals, axis=1), axis=1)
    return res


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

