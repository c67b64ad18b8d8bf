"""Wall time of one full surrogate step of the search: fit the predictor(s), NSGA-II (pop 40, 20 generations) on the
surrogate problem, subset selection of n_iter=8, on archives of 100, 340 and 1000 archs. Besides the wall
times it prints the step's CPU time in this process (all its threads, but not adaptive switching's fold worker
processes): on a shared machine the wall time includes waiting for the cores.

    python benchmarks/search_step.py [--sizes 100 340 1000] [--predictor as] [--sec_obj macs] [--as_every 1]

With ``--as_every K`` (the search's setting) it runs K consecutive steps on each archive, as K iterations of a
search do: the first cross-validates adaptive switching's choice, the next K - 1 refit that choice; it prints the
first, the median of the others, and the mean over the K steps (what an iteration costs on average).

Adaptive switching's fold workers are started first (a search starts them while it evaluates its initial design)
and their start-up time is printed apart. The archive holds random MobileNetV3 archs (46 genes, resolutions
128..224) with a synthetic error (additive, interaction and noise terms); MACs are exact. The aim is a step of seconds at 340 archs (the original's step took
minutes, most of them in its adaptive-switching fit); the measured figures are in the README's benchmark section.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from cnas.archive import Entry
from cnas.config import SearchConfig
from cnas.engine import Search
from cnas.evaluation import EvalSettings


def synthetic_top1(space, archs, rng):
    X = space.encode_many(archs).astype(float) / np.maximum(space.xu, 1)
    w = np.linspace(-1, 1, X.shape[1])
    return 30 - 8 * X @ w / X.shape[1] * 10 - 3 * X[:, 0] * X[:, 9] + rng.normal(0, 0.5, len(X))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 340, 1000])
    ap.add_argument("--predictor", default="as")
    ap.add_argument("--sec_obj", default="macs")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--as_every", type=int, default=1, help="the search's --as_every (default 1)")
    args = ap.parse_args()
    print(f"predictor {args.predictor}, objectives top1,{args.sec_obj}, pop 40, 20 generations, n_iter 8, "
          f"as_every {args.as_every}")
    print(f"{'archive':>8} {'step':>12} {'fit s':>8} {'NSGA-II s':>10} {'select s':>9} {'total s':>8} {'cpu s':>7}"
          " (cpu: this process)")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = SearchConfig(save=tmp, sec_obj=args.sec_obj, first_predictor=args.predictor, lr=128, ur=224,
                               plots=False, progress=False, as_every=args.as_every)
            s = Search(cfg, EvalSettings(), log=lambda m: None)
            t0 = time.perf_counter()
            s.proposer.prepare()  # what a search does before its initial design: start the fold workers
            s.proposer.wait_for_workers()
            if n == args.sizes[0] and args.predictor == "as":
                print(f"fold workers started in {time.perf_counter() - t0:.2f} s (a search overlaps this with "
                      "its initial design)")
            rng = np.random.default_rng(0)
            archs = [s.with_r(a) for a in s.space.sample(n, rng)]
            top1 = synthetic_top1(s.space, archs, rng)
            for i, (a, t) in enumerate(zip(archs, top1)):
                s.archive.add(Entry(a, {"top1": float(t)}, 0, f"net_{i}"))
            times = []
            for rep in range(args.repeats * args.as_every):
                c0, t0 = time.process_time(), time.perf_counter()
                entries = s.archive.entries
                predictors, _ = s.proposer.fit(entries, rep)
                t1 = time.perf_counter()
                Xc, Fc, _ = s.proposer.optimize(entries, predictors, rep)
                t2 = time.perf_counter()
                s.proposer.pick(Xc, Fc, entries, rep)
                t3 = time.perf_counter()
                times.append((t1 - t0, t2 - t1, t3 - t2, time.process_time() - c0))
            t = np.asarray(times).reshape(args.repeats, args.as_every, 4)
            rows = [("every" if args.as_every == 1 else "cv", np.median(t[:, 0], axis=0))]
            if args.as_every > 1:
                rows += [("refit", np.median(t[:, 1:].reshape(-1, 4), axis=0)),
                         (f"mean of {args.as_every}", np.median(t.mean(axis=1), axis=0))]
            for label, (fit, opt, sel, cpu) in rows:
                print(f"{n:>8} {label:>12} {fit:>8.2f} {opt:>10.2f} {sel:>9.2f} {fit + opt + sel:>8.2f} "
                      f"{cpu:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
