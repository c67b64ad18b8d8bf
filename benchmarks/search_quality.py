"""Search quality: cnas against random search, NSGA-II without surrogates and Optuna's NSGA-II and TPE samplers,
with the same evaluation function and the same budget of distinct evaluated archs, over several seeds
(objectives: top1 error and MACs).

    python benchmarks/search_quality.py [--dataset digits|fashion_mnist] [--budget 40] [--seeds 0 1 2 3 4 5]
        [--methods cnas random nsga2 optuna_nsga2 optuna_tpe] [--n_doe 8] [--n_iter 4] [--pop 8] [--r_trend true|false]
        [--lr R --ur R --rstep S] [--mmax M] [--jobs 1] [--cache FILE.json] [--out FILE.json]

Every arch is really evaluated with cnas's candidate evaluation (``cnas.evaluation.evaluate_arch``; the protocol
flags of ``benchmarks/_protocol.py``: by default weights inherited from the dataset's supernet, batch-norm
statistics re-estimated, no further training). The methods:

* ``cnas``: the search itself (``cnas.engine.Search``; ``--predictor``, ``--pick``), ``--n_doe`` initial archs then
  ``--n_iter`` per iteration;
* ``random``: cnas's initial design of ``--budget`` archs (the smallest, the largest, then uniform samples);
* ``nsga2``: pymoo's NSGA-II on the true objectives (population ``--pop``), the same integer operators and repair;
* ``optuna_nsga2``, ``optuna_tpe``: Optuna's ``NSGAIISampler`` (population ``--pop``) and multi-objective
  ``TPESampler`` (``--n_doe`` start-up trials), one ``suggest_int`` per gene of the same encoding, decoded to the
  canonical arch; with ``--mmax`` Optuna's own ``constraints_func``. A trial that proposes an arch already
  evaluated is told its value again and does not count against the budget (Optuna cannot be told not to propose
  it), so Optuna, like the others, gets ``--budget`` distinct archs.

Evaluations are cached by arch (the evaluation is deterministic), so an arch met by several methods or seeds is
trained once; ``--cache`` keeps the cache between runs, and a re-run from a full cache prints the same figures
(the wall-time table excepted: it adds the proposal time measured in the run). ``--jobs 2`` runs the
(method, seed) pairs in 2 processes of 1 torch thread each.

Printed: the normalized hypervolume after n evaluations (mean over seeds, and per seed at the end), the number of
evaluations cnas needs to reach each baseline's final mean hypervolume, the hypervolume against wall time (the
evaluations' measured seconds plus each method's own proposal time), and the **test error at matched MACs**: for
a few MACs budgets, the arch each method would report (the lowest validation error within the budget) and its error
on the test split, mean over seeds. The hypervolume uses one reference point for all methods and seeds: the worst
error and the largest MACs among every arch any of them evaluated (feasible ones only with ``--mmax``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from _protocol import add_protocol_args, check_protocol, describe, eval_kwargs
from cnas.config import SearchConfig
from cnas.engine import Search
from cnas.evaluation import EvalSettings, evaluate_arch
from cnas.executors import TaskResult
from cnas.problems import hypervolume, non_dominated
from cnas.spaces import get_space
from cnas.spaces.geometry import arch_key

METHODS = ("cnas", "random", "nsga2", "optuna_nsga2", "optuna_tpe")


class Evaluator:
    """Evaluates archs through a cache by arch; ``stats['seconds']`` is the measured cost of the evaluation."""

    def __init__(self, settings: EvalSettings, cache: dict | None = None):
        self.settings, self.cache, self.trained = settings, dict(cache or {}), 0

    def __call__(self, arch: dict) -> dict:
        key = arch_key(arch)
        if key not in self.cache:
            t = time.perf_counter()
            stats = evaluate_arch(arch, self.settings)
            self.cache[key] = {"arch": arch, "top1": stats["top1"], "macs": stats["macs"],
                               "seconds": time.perf_counter() - t}
            self.trained += 1
        return self.cache[key]

    def test_error(self, arch: dict) -> float:
        """The test error of ``arch`` (measured once, kept in the cache)."""
        entry = self(arch)
        if "test_top1" not in entry:
            stats = evaluate_arch(arch, replace(self.settings, eval_test=True))
            entry["test_top1"] = stats["test_top1"]
        return entry["test_top1"]


class Trace:
    """What a method evaluated, in order: (top1, macs, seconds since the method started) per distinct arch."""

    def __init__(self, budget: int):
        self.budget, self.points, self.archs, self._seen = budget, [], [], set()
        self.clock = self.proposal = 0.0  # seconds: evaluations + proposals, and proposals alone

    def full(self) -> bool:
        return len(self.points) >= self.budget

    def spend(self, seconds: float) -> None:
        """Count ``seconds`` of the method's own proposal time (not an evaluation's)."""
        self.clock += seconds
        self.proposal += seconds

    def add(self, arch: dict, entry: dict, proposal_seconds: float = 0.0) -> bool:
        """Record ``arch`` unless already seen; False when it was a repeat (or the budget is spent)."""
        key = arch_key(arch)
        self.spend(proposal_seconds)
        if key in self._seen or self.full():
            return False
        self._seen.add(key)
        self.clock += entry["seconds"]
        self.points.append((entry["top1"], entry["macs"], self.clock))
        self.archs.append(arch)
        return True


class CachedExecutor:
    """An executor for the search that evaluates in-process through the shared cache (and writes the files); the
    time between two batches is the search's own proposal time."""

    def __init__(self, ev: Evaluator, trace: Trace):
        self.ev, self.trace, self.last = ev, trace, time.perf_counter()

    def map(self, fn, items, labels=None):
        from cnas.fileio import atomic_write_json

        proposal, out = time.perf_counter() - self.last, []
        for i, task in enumerate(items):
            entry = self.ev(task.arch)
            stats = {"top1": entry["top1"], "macs": entry["macs"]}
            atomic_write_json(Path(task.out_dir) / f"{task.name}.subnet", task.arch)
            atomic_write_json(Path(task.out_dir) / f"{task.name}.stats", stats)
            self.trace.add(task.arch, entry, proposal if i == 0 else 0.0)
            out.append(TaskResult(i, True, value=stats))
        self.last = time.perf_counter()
        return out

    def close(self):
        pass


def make_space(args):
    return get_space("mobilenetv3", args.lr, args.ur, args.rstep)


def feasible(entry: dict, mmax: float | None) -> bool:
    return mmax is None or entry["macs"] <= mmax


def run_cnas(ev: Evaluator, args, seed: int) -> Trace:
    trace = Trace(args.budget)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SearchConfig(save=tmp + "/run", sec_obj="macs", n_doe=args.n_doe, n_iter=args.n_iter,
                           iterations=-(-(args.budget - args.n_doe) // args.n_iter), first_predictor=args.predictor,
                           seed=seed, plots=False, progress=False, patience=0, pick=args.pick, lr=args.lr,
                           ur=args.ur, rstep=args.rstep, r_trend=args.r_trend == "true")
        Search(cfg, ev.settings, log=lambda m: None, executor=CachedExecutor(ev, trace)).run()
    return trace


def run_random(ev: Evaluator, args, seed: int) -> Trace:
    space, trace = make_space(args), Trace(args.budget)
    t = time.perf_counter()
    archs = [space.with_resolution(a) for a in space.initial_design(args.budget, seed)]
    proposal = time.perf_counter() - t
    for i, a in enumerate(archs):
        trace.add(a, ev(a), proposal if i == 0 else 0.0)
    return trace


def run_nsga2(ev: Evaluator, args, seed: int) -> Trace:
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.optimize import minimize

    from cnas.problems import CanonicalRepair, SameArch

    space, trace = make_space(args), Trace(args.budget)
    repair = CanonicalRepair(space)
    last = [time.perf_counter()]

    class TrueProblem(Problem):
        def __init__(self):
            super().__init__(n_var=space.n_var, n_obj=2, n_ieq_constr=1 if args.mmax else 0,
                             xl=space.xl.astype(float), xu=space.xu.astype(float), vtype=int)

        def _evaluate(self, X, out, *a, **kw):
            proposal = time.perf_counter() - last[0]
            F, G = [], []
            for i, x in enumerate(repair._do(self, X)):
                if trace.full():  # budget spent: the rest are not trained
                    F.append([100.0, 1e9])
                    G.append([0.0])
                    continue
                arch = space.with_resolution(space.decode(x))
                entry = ev(arch)
                trace.add(arch, entry, proposal if i == 0 else 0.0)
                F.append([entry["top1"], entry["macs"]])
                G.append([entry["macs"] - args.mmax] if args.mmax else [0.0])
            out["F"] = np.asarray(F, float)
            if args.mmax:
                out["G"] = np.asarray(G, float)
            last[0] = time.perf_counter()

    X0 = space.encode_many(space.initial_design(args.pop, seed)).astype(float)
    algo = NSGA2(pop_size=args.pop, sampling=X0, repair=repair,
                 crossover=SBX(prob=0.9, eta=15, vtype=float, repair=repair),
                 mutation=PM(eta=20, vtype=float, repair=repair), eliminate_duplicates=SameArch())
    minimize(TrueProblem(), algo, ("n_gen", 4 * args.budget // args.pop + 2), seed=seed, verbose=False)
    return trace


def run_optuna(ev: Evaluator, args, seed: int, kind: str) -> Trace:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, trace = make_space(args), Trace(args.budget)
    constraints = (lambda t: [t.user_attrs["macs"] - args.mmax]) if args.mmax else None
    if kind == "optuna_nsga2":
        sampler = optuna.samplers.NSGAIISampler(population_size=args.pop, seed=seed, constraints_func=constraints)
    else:
        sampler = optuna.samplers.TPESampler(n_startup_trials=args.n_doe, multivariate=True, seed=seed,
                                             constraints_func=constraints)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    names = [f"g{i:02d}" for i in range(space.n_var)]
    for _ in range(20 * args.budget):  # repeats do not count; stop if the sampler only repeats
        if trace.full():
            break
        t = time.perf_counter()
        trial = study.ask()
        x = np.array([trial.suggest_int(n, int(lo), int(hi)) for n, lo, hi in zip(names, space.xl, space.xu)])
        proposal = time.perf_counter() - t
        arch = space.with_resolution(space.decode(x))
        entry = ev(arch)
        trace.add(arch, entry, proposal)
        trial.set_user_attr("macs", entry["macs"])
        t = time.perf_counter()
        study.tell(trial, [entry["top1"], entry["macs"]])
        trace.spend(time.perf_counter() - t)
    return trace


def run_method(ev: Evaluator, args, method: str, seed: int) -> Trace:
    if method == "cnas":
        return run_cnas(ev, args, seed)
    if method == "random":
        return run_random(ev, args, seed)
    if method == "nsga2":
        return run_nsga2(ev, args, seed)
    return run_optuna(ev, args, seed, method)


def _job(payload):
    """One (method, seed) in a worker process: (method, seed, trace, new cache entries)."""
    args, settings, cache, method, seed = payload
    torch.set_num_threads(1)
    ev = Evaluator(settings, cache)
    before = set(ev.cache)
    trace = run_method(ev, args, method, seed)
    return method, seed, trace, {k: v for k, v in ev.cache.items() if k not in before}


def hv_curve(points: np.ndarray, ref: np.ndarray, ok: np.ndarray) -> np.ndarray:
    out = np.zeros(len(points))
    for n in range(1, len(points) + 1):
        F = points[:n, :2][ok[:n]]
        out[n - 1] = hypervolume(F[non_dominated(F)], ref) if len(F) else 0.0
    return out


def reported(trace: Trace, budget_macs: float, mmax: float | None) -> dict | None:
    """The arch a user of the method would report under a MACs budget: the lowest validation error among the
    evaluated archs within it."""
    best = None
    for arch, (top1, macs, _) in zip(trace.archs, trace.points):
        if macs <= budget_macs and (mmax is None or macs <= mmax) and (best is None or top1 < best[0]):
            best = (top1, arch)
    return None if best is None else {"top1": best[0], "arch": best[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=40, help="distinct archs each method evaluates")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    add_protocol_args(ap)
    ap.add_argument("--lr", type=int, default=None, help="lowest resolution of the searched space "
                                                         "(default --resolution: resolution fixed)")
    ap.add_argument("--ur", type=int, default=None, help="highest resolution (default --resolution)")
    ap.add_argument("--rstep", type=int, default=4)
    ap.add_argument("--mmax", type=float, default=None, help="MACs limit (M) for every method")
    ap.add_argument("--n_doe", type=int, default=8)
    ap.add_argument("--n_iter", type=int, default=4)
    ap.add_argument("--pop", type=int, default=8, help="population of both NSGA-IIs without surrogates")
    ap.add_argument("--predictor", default="as")
    ap.add_argument("--r_trend", choices=["true", "false"], default="true",
                    help="cnas's --r_trend: a least-squares line in the resolution gene before each surrogate")
    ap.add_argument("--pick", default="gaps", choices=["gaps", "hv"], help="cnas's candidate selection (--pick)")
    ap.add_argument("--matched", type=int, default=3, help="MACs budgets for the test-error table")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (with --jobs 1)")
    ap.add_argument("--jobs", type=int, default=1, help="processes (each 1 torch thread)")
    ap.add_argument("--out", default=None, help="write the traces and curves as JSON here")
    ap.add_argument("--cache", default=None,
                    help="JSON file of measured stats by arch, read first and written at the end (re-runs with the "
                         "same evaluation settings skip the trainings)")
    args = ap.parse_args()
    check_protocol(args, "search_quality.py")
    if "optuna_nsga2" in args.methods or "optuna_tpe" in args.methods:
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise SystemExit("search_quality.py: error: the Optuna methods need optuna: pip install -e '.[bench]' "
                             "(or leave them out with --methods)")
    args.lr = args.lr or args.resolution
    args.ur = args.ur or args.resolution
    settings = EvalSettings(**{**eval_kwargs(args), "eval_test": False, "resolution": None, "mmax": args.mmax})
    cache_key = repr(settings)
    cache: dict = {}
    if args.cache and Path(args.cache).is_file():
        stored = json.loads(Path(args.cache).read_text())
        if stored.get("settings") == cache_key:
            cache.update(stored["stats"])
    ev = Evaluator(settings, cache)
    n_cached = len(ev.cache)
    print(f"{describe(args)}; resolutions {args.lr}..{args.ur}; budget {args.budget}; seeds {args.seeds}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    pairs = [(m, s) for s in args.seeds for m in args.methods]
    traces: dict[str, dict[int, Trace]] = {m: {} for m in args.methods}
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            for method, seed, trace, new in pool.map(_job, [(args, settings, ev.cache, m, s) for m, s in pairs]):
                traces[method][seed] = trace
                ev.cache.update(new)
                print(f"  {method} seed {seed} done, {time.perf_counter() - t0:.0f} s", flush=True)
    else:
        torch.set_num_threads(args.threads)
        for method, seed in pairs:
            traces[method][seed] = run_method(ev, args, method, seed)
            print(f"  {method} seed {seed} done, {len(ev.cache) - n_cached} archs evaluated, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    report(args, ev, traces, cache_key, n_cached, time.perf_counter() - t0)


def report(args, ev: Evaluator, traces: dict, cache_key: str, n_cached: int, seconds: float) -> None:
    pts = {m: {s: np.asarray(t.points, float) for s, t in v.items()} for m, v in traces.items()}
    ok = {m: {s: (p[:, 1] <= args.mmax) if args.mmax else np.ones(len(p), bool) for s, p in v.items()}
          for m, v in pts.items()}
    every = np.concatenate([p[:, :2][ok[m][s]] for m, v in pts.items() for s, p in v.items()])
    ref = every.max(axis=0)
    curves = {m: {s: hv_curve(p, ref, ok[m][s]) for s, p in v.items()} for m, v in pts.items()}
    B = args.budget
    pad = {m: [np.pad(c, (0, B - len(c)), mode="edge") for c in v.values()] for m, v in curves.items()}
    mean = {m: np.mean(v, axis=0) for m, v in pad.items()}
    print(f"\nnormalized hypervolume (top1 error, MACs) after n evaluated archs; mean of seeds {args.seeds}")
    marks = sorted({n for n in (args.n_doe, 10, 20, 30, 40, 50, 60, 80, 100) if n <= B} | {B})
    print(f"{'method':<13}" + "".join(f"{'n=' + str(n):>8}" for n in marks))
    for m, c in mean.items():
        print(f"{m:<13}" + "".join(f"{c[n - 1]:>8.4f}" for n in marks))
    print(f"\nfinal hypervolume per seed {args.seeds}:")
    for m, v in pad.items():
        print(f"{m:<13}" + "".join(f"{c[-1]:>8.4f}" for c in v) + f"   mean {np.mean([c[-1] for c in v]):.4f}"
              f" std {np.std([c[-1] for c in v], ddof=1) if len(v) > 1 else 0:.4f}")
    if "cnas" in mean:
        print("\nevaluations cnas needs to reach each baseline's final mean hypervolume "
              "(and per seed, that seed's final):")
        for m in mean:
            if m == "cnas":
                continue
            hit = np.flatnonzero(mean["cnas"] >= mean[m][-1])
            need = f"{int(hit[0]) + 1} of {B} ({(int(hit[0]) + 1) / B:.0%})" if len(hit) else f"more than {B}"
            per = []
            for c, r in zip(pad["cnas"], pad[m]):
                h = np.flatnonzero(c >= r[-1])
                per.append(str(int(h[0]) + 1) if len(h) else f">{B}")
            print(f"  {m:<13} {mean[m][-1]:.4f}: {need}; per seed {', '.join(per)}")
    # hypervolume against wall time: each method's own clock (evaluation seconds + proposal seconds)
    ends = [p[-1, 2] for v in pts.values() for p in v.values()]
    tmarks = np.linspace(0, float(np.median(ends)), 6)[1:]
    print("\nnormalized hypervolume against wall time (the evaluations' measured seconds plus the method's own "
          "proposal time; mean of seeds):")
    print(f"{'method':<13}" + "".join(f"{f't={t:.0f}s':>9}" for t in tmarks) + f"{'total s':>9}{'proposal s':>11}")
    for m, v in pts.items():
        row, tot, prop = [], [], []
        for s, p in v.items():
            idx = np.searchsorted(p[:, 2], tmarks, side="right") - 1
            row.append([curves[m][s][i] if i >= 0 else 0.0 for i in idx])
            tot.append(p[-1, 2])
            prop.append(traces[m][s].proposal)
        print(f"{m:<13}" + "".join(f"{x:>9.4f}" for x in np.mean(row, axis=0))
              + f"{np.mean(tot):>9.0f}{np.mean(prop):>11.1f}")
    matched_table(args, ev, traces, every)
    new = len(ev.cache) - n_cached
    secs = [e["seconds"] for e in ev.cache.values()]
    print(f"\n{len(ev.cache)} distinct archs ({new} evaluated in this run, {n_cached} read from the cache); "
          f"{np.mean(secs):.2f} s per evaluation (as measured when evaluated); run {seconds:.0f} s")
    if args.cache:
        from cnas.fileio import atomic_write_json

        atomic_write_json(args.cache, {"settings": cache_key, "stats": ev.cache})
    if args.out:
        Path(args.out).write_text(json.dumps({m: {str(s): {"points": t.points, "archs": t.archs}
                                                  for s, t in v.items()} for m, v in traces.items()}))


def matched_table(args, ev: Evaluator, traces: dict, every: np.ndarray) -> None:
    lo, hi = float(every[:, 1].min()), float(every[:, 1].max())
    budgets = np.geomspace(lo, hi, args.matched + 2)[1:-1] if args.matched else []
    if not len(budgets):
        return
    print("\ntest error (%) of the arch each method reports under a MACs budget (its lowest validation error "
          "within the budget), mean over seeds [validation error in brackets]:")
    print(f"{'method':<13}" + "".join(f"{f'<= {b:.1f} M':>20}" for b in budgets))
    for m, v in traces.items():
        cells = []
        for b in budgets:
            picks = [reported(t, b, args.mmax) for t in v.values()]
            picks = [p for p in picks if p is not None]
            if not picks:
                cells.append(f"{'-':>20}")
                continue
            test = np.mean([ev.test_error(p["arch"]) for p in picks])
            val = np.mean([p["top1"] for p in picks])
            cells.append(f"{f'{test:.2f} [{val:.2f}]':>20}")
        print(f"{m:<13}" + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
