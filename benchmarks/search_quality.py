"""Hypervolume against the number of trained archs on the bundled digits data: cnas's surrogate search, random
search and NSGA-II without surrogates, at the same budget, over a few seeds (objectives top1 and MACs).

    python benchmarks/search_quality.py [--budget 40] [--seeds 0 1 2 3 4 5] [--epochs 0]
                                        [--supernet supernets/digits.pth] [--n_doe 8] [--pick gaps|hv]
                                        [--cache FILE.json]

Every arch is really evaluated with cnas's candidate evaluation (``cnas.evaluation.evaluate_arch``, digits at
32 px). The defaults are the README quickstart's protocol: weights inherited from ``supernets/digits.pth`` (built by
``python -m cnas.supernet``), batch-norm statistics re-estimated, ``--epochs 0`` epochs of further training;
``--supernet none`` trains from scratch. Evaluations are cached by arch, so an arch met by several methods or seeds
is evaluated once (the evaluation is deterministic); ``--cache`` keeps that cache between runs. The hypervolume
uses one reference point for all methods and seeds: the worst error and the largest MACs among every arch any of
them evaluated. Besides the curves of the mean over seeds it prints, per seed, after how many evaluations cnas
reached that seed's final random-search hypervolume (2 means random search never improved on the smallest and
largest arch that both start from).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _protocol import add_protocol_args, check_protocol
from cnas.config import SearchConfig
from cnas.engine import Search
from cnas.evaluation import EvalSettings, evaluate_arch
from cnas.executors import TaskResult
from cnas.problems import hypervolume, non_dominated
from cnas.spaces import get_space


class Evaluator:
    def __init__(self, settings: EvalSettings):
        self.settings, self.cache, self.seconds, self.trained = settings, {}, 0.0, 0

    def __call__(self, arch: dict) -> dict:
        key = json.dumps(arch, sort_keys=True)
        if key not in self.cache:
            t = time.perf_counter()
            self.cache[key] = evaluate_arch(arch, self.settings)
            self.seconds += time.perf_counter() - t
            self.trained += 1
        return self.cache[key]


class CachedExecutor:
    """An executor for the search that evaluates in-process through the shared cache (and writes the files)."""

    def __init__(self, ev: Evaluator, trace: list):
        self.ev, self.trace = ev, trace

    def map(self, fn, items, labels=None):
        from cnas.fileio import atomic_write_json

        out = []
        for i, task in enumerate(items):
            stats = self.ev(task.arch)
            atomic_write_json(Path(task.out_dir) / f"{task.name}.subnet", task.arch)
            atomic_write_json(Path(task.out_dir) / f"{task.name}.stats", stats)
            self.trace.append((stats["top1"], stats["macs"]))
            out.append(TaskResult(i, True, value=stats))
        return out

    def close(self):
        pass


def run_cnas(ev: Evaluator, seed: int, budget: int, n_doe: int, n_iter: int, predictor: str,
             pick: str = "gaps") -> list:
    trace: list = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SearchConfig(save=tmp + "/run", sec_obj="macs", n_doe=n_doe, n_iter=n_iter,
                           iterations=(budget - n_doe) // n_iter, first_predictor=predictor, seed=seed, plots=False,
                           progress=False, patience=0, pick=pick)
        Search(cfg, ev.settings, log=lambda m: None, executor=CachedExecutor(ev, trace)).run()
    return trace


def run_random(ev: Evaluator, seed: int, budget: int) -> list:
    space = get_space("mobilenetv3", 32, 32)
    return [(s["top1"], s["macs"]) for s in (ev(dict(a, r=32)) for a in space.initial_design(budget, seed))]


def run_nsga2(ev: Evaluator, seed: int, budget: int, pop: int) -> list:
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.optimize import minimize

    from cnas.problems import CanonicalRepair, SameArch

    space = get_space("mobilenetv3", 32, 32)
    trace: list = []
    repair = CanonicalRepair(space)

    class TrueProblem(Problem):
        def __init__(self):
            super().__init__(n_var=space.n_var, n_obj=2, xl=space.xl.astype(float), xu=space.xu.astype(float),
                             vtype=int)

        def _evaluate(self, X, out, *args, **kwargs):
            F = []
            for x in repair._do(self, X):
                if len(trace) >= budget:  # budget spent: the rest are not trained
                    F.append([100.0, 1e9])
                    continue
                s = ev(dict(space.decode(x), r=32))
                trace.append((s["top1"], s["macs"]))
                F.append([s["top1"], s["macs"]])
            out["F"] = np.asarray(F, float)

    X0 = space.encode_many(space.initial_design(pop, seed)).astype(float)
    algo = NSGA2(pop_size=pop, sampling=X0, repair=repair, crossover=SBX(prob=0.9, eta=15, vtype=float, repair=repair),
                 mutation=PM(eta=20, vtype=float, repair=repair), eliminate_duplicates=SameArch())
    minimize(TrueProblem(), algo, ("n_gen", budget // pop + 2), seed=seed, verbose=False)
    return trace[:budget]


def hv_curve(trace: list, ref: np.ndarray) -> np.ndarray:
    F = np.asarray(trace, float)
    return np.array([hypervolume(F[: n][non_dominated(F[: n])], ref) for n in range(1, len(F) + 1)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    add_protocol_args(ap)
    ap.add_argument("--n_doe", type=int, default=8)
    ap.add_argument("--n_iter", type=int, default=4)
    ap.add_argument("--pop", type=int, default=8, help="population of NSGA-II without surrogates")
    ap.add_argument("--predictor", default="as")
    ap.add_argument("--pick", default="gaps", choices=["gaps", "hv"], help="cnas's candidate selection (--pick)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the curves as JSON here")
    ap.add_argument("--cache", default=None,
                    help="JSON file of measured stats by arch, read first and written at the end (re-runs with the "
                         "same evaluation settings skip the trainings)")
    args = ap.parse_args()
    check_protocol(args, "search_quality.py")
    torch.set_num_threads(args.threads)
    settings = EvalSettings(epochs=args.epochs, supernet_path=args.supernet, eval_test=False)
    ev = Evaluator(settings)
    cache_key = repr(settings)  # before the searches fill in the space name
    if args.cache and Path(args.cache).is_file():
        cached = json.loads(Path(args.cache).read_text())
        if cached.get("settings") == cache_key:
            ev.cache.update(cached["stats"])
    traces: dict[str, list] = {"cnas": [], "random": [], "nsga2": []}
    t0 = time.perf_counter()
    for seed in args.seeds:
        traces["cnas"].append(run_cnas(ev, seed, args.budget, args.n_doe, args.n_iter, args.predictor, args.pick))
        traces["random"].append(run_random(ev, seed, args.budget))
        traces["nsga2"].append(run_nsga2(ev, seed, args.budget, args.pop))
        print(f"seed {seed} done: {ev.trained} distinct archs evaluated so far, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    every = np.asarray([p for v in traces.values() for t in v for p in t], float)
    ref = every.max(axis=0)
    curves = {k: [hv_curve(t, ref) for t in v] for k, v in traces.items()}
    mean = {k: np.mean([c[: args.budget] for c in v], axis=0) for k, v in curves.items()}
    src = f"inherited from {args.supernet}" if args.supernet else "random init"
    print(f"\nnormalized hypervolume (top1 error, MACs) after n evaluated archs; digits 32 px, {args.epochs} epoch(s), "
          f"{src}; mean of seeds {args.seeds}")
    marks = [n for n in (8, 16, 24, 32, 40, 60, 80, 100) if n <= args.budget]
    print(f"{'method':<8}" + "".join(f"{'n=' + str(n):>9}" for n in marks))
    for k, m in mean.items():
        print(f"{k:<8}" + "".join(f"{m[n - 1]:>9.4f}" for n in marks))
    per_seed = []
    for c, r in zip(curves["cnas"], curves["random"]):
        hit = np.flatnonzero(c[: args.budget] >= r[: args.budget][-1])
        per_seed.append(str(int(hit[0]) + 1) if len(hit) else f">{args.budget}")
    print(f"per seed {args.seeds}: cnas reaches that seed's final random-search hypervolume after "
          f"{', '.join(per_seed)} evaluations")
    final_random = mean["random"][-1]
    reach = np.flatnonzero(mean["cnas"] >= final_random)
    need = int(reach[0]) + 1 if len(reach) else None
    print(f"cnas reaches random search's final hypervolume ({final_random:.4f}) after "
          f"{need if need else 'more than ' + str(args.budget)} of {args.budget} evaluations"
          + (f" ({need / args.budget:.0%})" if need else ""))
    print(f"{ev.trained} distinct archs evaluated in {ev.seconds:.0f} s ({ev.seconds / max(1, ev.trained):.1f} s each)"
          + (f", {len(ev.cache) - ev.trained} read from {args.cache}" if len(ev.cache) > ev.trained else ""))
    if args.cache:
        Path(args.cache).write_text(json.dumps({"settings": cache_key, "stats": ev.cache}))
    if args.out:
        Path(args.out).write_text(json.dumps({k: [c.tolist() for c in v] for k, v in curves.items()}))


if __name__ == "__main__":
    main()
