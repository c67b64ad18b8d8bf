"""Speed and rank quality of the surrogate predictors (``cnas.surrogates``).

Synthetic archive tasks over the 46-gene MobileNetV3 encoding (resolutions 128..224 step 4), archives of 100,
300 and 1000 archs, a held-out set of 1000 archs:

- ``linear_sine``: a linear function of the scaled genes plus a sine of another linear function, plus noise
  (the kind of target on which the original's rbf/gp reached tau 0.82, carts 0.28 and its mlp below 0);
- ``additive``: a sum of random per-gene lookup tables (a non-linear effect per gene), plus noise;
- ``capacity``: an error-like target, minus the log of the network's work (sum over *present* layers of
  kernel^2 * expansion * stage width, times resolution^2): depth gates the layer genes and the resolution
  multiplies everything (interactions), plus noise.

Noise is Gaussian with a standard deviation of 10% of the noise-free target's. For each predictor the script
prints fit time, predict time for 40 and for 10,000 archs, Kendall tau and RMSE on the held-out set; then
original-like baselines on the smallest archive size (5000 CARTs predicted one tree at a time in Python, and a
DACE-like Kriging: ordinary least-squares trend, no nugget), adaptive switching fit time with 1 and 2 fold
workers, and, for each ``iter_X.stats`` file given on the command line, the same figures by 5-fold
cross-validation on its archive (target: the first objective).

``--as-every K`` (K > 1) scores instead what the search's ``--as_every K`` does: on every task and size n, and on
every archive given, adaptive switching's choice made K - 1 iterations earlier (on all but the last
``--n-iter`` x (K - 1) archs, 5 folds as the search's default) refitted on all n, against a fresh cross-validated
choice on all n: the held-out Kendall tau of both (on a real archive by 5-fold cross-validation), how often the
two choices agree, and the fit time of each.

    python benchmarks/surrogates.py [--sizes 100 300 1000] [--tasks ...] [--predictors ...] [iter_X.stats ...]
    python benchmarks/surrogates.py --as-every 3 [--sizes 100 340] [--seeds 0 1 2] [iter_X.stats ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnas.errors import StatsFileError, UsageError, run_cli  # noqa: E402
from cnas.fileio import read_json  # noqa: E402
from cnas.spaces import EXPANSIONS, KERNELS, get_space, space_for_arch  # noqa: E402
from cnas.spaces.geometry import stage_widths  # noqa: E402
from cnas.surrogates import PREDICTORS, get_predictor, rank_quality  # noqa: E402
from cnas.surrogates.adaptive import start_workers  # noqa: E402

SPACE = get_space("mobilenetv3", 128, 224, 4)
STAGE_WIDTH = np.array(stage_widths(), dtype=float)  # OFA MobileNetV3 stage output widths
TASKS = ("linear_sine", "additive", "capacity")


# ---------------------------------------------------------------------------------------------- tasks
def _noise_free(task: str, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The noise-free target; ``rng`` (seeded per task) draws the task's fixed coefficients."""
    Xs = X / SPACE.xu
    if task == "linear_sine":
        w, v = rng.uniform(-1, 1, X.shape[1]), rng.uniform(-1, 1, X.shape[1])
        return Xs @ w + 0.5 * np.sin(3.0 * (Xs @ v))
    if task == "additive":
        tables = rng.normal(size=(X.shape[1], int(SPACE.xu.max()) + 1))
        return tables[np.arange(X.shape[1]), X].sum(axis=1)
    if task == "capacity":
        ks, es = np.asarray(KERNELS, float), np.asarray(EXPANSIONS, float)
        work = np.zeros(len(X))
        for i in range(5):
            o = 9 * i
            depth = 2 + X[:, o]
            for j in range(4):
                present = j < depth
                work += present * ks[X[:, o + 1 + j]] ** 2 * es[X[:, o + 5 + j]] * STAGE_WIDTH[i]
        res = SPACE.resolutions[0] + SPACE.rstep * X[:, -1]
        return 30.0 - 4.0 * np.log(work * (res / 224.0) ** 2)
    raise ValueError(task)


def make_task(task: str, n_train: int, n_test: int, seed: int):
    rng = np.random.default_rng(seed)
    X = SPACE.sample_encodings(n_train + n_test, rng)
    f = _noise_free(task, X, np.random.default_rng([seed, TASKS.index(task)]))
    y = f + 0.1 * f.std() * rng.normal(size=len(f))
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


# ---------------------------------------------------------------------------------------------- timing
def _time(fn, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls."""
    return _times(fn, repeat)[0]


def _times(fn, repeat: int = 1) -> tuple[float, float]:
    """Best wall time and best process CPU time (all threads) of ``repeat`` calls. On a shared machine the
    wall time includes waiting for the cores; the CPU time is the work itself."""
    wall = cpu = np.inf
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu


def measure(name: str, X, y, Xt, yt, X40, X10k, seed: int, **params) -> dict:
    model = get_predictor(name, random_state=seed, **params)
    fit_s, fit_cpu = _times(lambda: model.fit(X, y))
    p40 = _time(lambda: model.predict(X40), repeat=5)
    p10k = _time(lambda: model.predict(X10k), repeat=2)
    q = rank_quality(model.predict(Xt), yt)
    row = {"fit_s": fit_s, "fit_cpu": fit_cpu, "pred40_ms": 1e3 * p40, "pred10k_s": p10k, "tau": q.tau,
           "rmse": q.rmse}
    if name == "as":
        row["winner"] = model.winner_
    return row


HEADER = (f"{'task':<12} {'n':>5} {'predictor':<12} {'fit s':>8} {'fit cpu s':>9} {'pred 40 ms':>11} "
          f"{'pred 10k s':>11} {'tau':>7} {'rmse':>8}")


def fmt(task, n, name, r) -> str:
    extra = f"  winner={r['winner']}" if "winner" in r else ""
    return (f"{task:<12} {n:>5} {name:<12} {r['fit_s']:>8.3f} {r['fit_cpu']:>9.3f} {r['pred40_ms']:>11.2f} "
            f"{r['pred10k_s']:>11.3f} {r['tau']:>7.3f} {r['rmse']:>8.3f}{extra}")


# ---------------------------------------------------------------------------------------------- baseline
def original_like_carts(X, y, Xq, n_trees: int = 5000, seed: int = 0):
    """The original's scheme: n_trees CARTs, each on a bootstrap sample and a random half of the genes, and a
    prediction that loops over the trees in Python. Returns (fit s, predictor function)."""
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(seed)
    n, d = X.shape
    trees = []
    t = time.perf_counter()
    for _ in range(n_trees):
        cols = np.sort(rng.choice(d, d // 2, replace=False))
        rows = rng.integers(0, n, n)
        trees.append((cols, DecisionTreeRegressor().fit(X[rows][:, cols], y[rows])))
    fit_s = time.perf_counter() - t
    return fit_s, lambda Z: np.mean([tree.predict(Z[:, cols]) for cols, tree in trees], axis=0)


def dace_like_gp(X, y, Xq):
    """A pydacefit-like Kriging: ordinary least-squares linear trend, isotropic Gaussian correlation, no
    nugget (exact interpolation), hyper-parameters by maximum likelihood. Predictions for ``Xq``."""
    import warnings

    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel

    lo, span = X.min(0), np.maximum(X.max(0) - X.min(0), 1)
    A = np.c_[np.ones(len(X)), (X - lo) / span]
    Aq = np.c_[np.ones(len(Xq)), (Xq - lo) / span]
    beta = np.linalg.lstsq(A, y, rcond=None)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp = GaussianProcessRegressor(ConstantKernel() * RBF(1.0, (1e-2, 1e3)), alpha=1e-8, normalize_y=True)
        gp.fit(A[:, 1:], y - A @ beta)
    return Aq @ beta + gp.predict(Aq[:, 1:])


def baselines(tasks, n: int, n_test: int, X40, seed: int) -> None:
    print(f"\noriginal-like baselines on {n} archs (held-out tau; rbf is the original's model exactly):")
    for task in tasks:
        X, y, Xt, yt = make_task(task, n, n_test, seed)
        X, Xt = X.astype(float), Xt.astype(float)
        fit_s, predict = original_like_carts(X, y, X40, seed=seed)
        t = time.perf_counter()
        predict(X40.astype(float))
        pred_s = time.perf_counter() - t
        fast = get_predictor("carts", random_state=seed).fit(X, y)
        print(f"  {task:<12} carts 5000 trees, per-tree loop: fit {fit_s:.2f} s, predict 40 archs "
              f"{1e3 * pred_s:.1f} ms (cnas carts {1e3 * _time(lambda: fast.predict(X40), 5):.2f} ms), "
              f"tau {rank_quality(predict(Xt), yt).tau:.3f}; DACE-like gp tau "
              f"{rank_quality(dace_like_gp(X, y, Xt), yt).tau:.3f}", flush=True)


# ---------------------------------------------------------------------------------------------- real archives
def load_archive(path: str) -> tuple[np.ndarray, np.ndarray, object]:
    """Encodings and first-objective values of the archive in an ``iter_X.stats`` file."""
    stats = read_json(path, "stats file", StatsFileError)
    archive = stats.get("archive") if isinstance(stats, dict) else None
    if not isinstance(archive, list) or not archive:
        raise StatsFileError(f"{path} has no 'archive' list; give an iter_X.stats file written by a search")
    try:
        archs = [entry[0] for entry in archive]
        y = np.array([float(entry[1]) for entry in archive])
    except (TypeError, IndexError, ValueError) as err:
        raise StatsFileError(f"{path}: archive entries must be [arch, f1, f2, ...] ({err})") from None
    rs = [a.get("r") for a in archs if isinstance(a, dict) and "r" in a]
    space = space_for_arch(archs[0], lr=min(rs) if rs else None, ur=max(rs) if rs else None)
    return space.encode_many(archs), y, space


def bench_archive(path: str, names, seed: int) -> None:
    from sklearn.model_selection import KFold

    X, y, space = load_archive(path)
    rng = np.random.default_rng(seed)
    X40, X10k = space.sample_encodings(40, rng), space.sample_encodings(10_000, rng)
    print(f"\narchive {path}: {len(X)} archs, {X.shape[1]} genes ({space.name}); 5-fold CV tau / rmse")
    print(HEADER)
    for name in names:
        pred = np.zeros(len(y))
        for trn, tst in KFold(min(5, len(X)), shuffle=True, random_state=seed).split(X):
            pred[tst] = get_predictor(name, random_state=seed).fit(X[trn], y[trn]).predict(X[tst])
        q = rank_quality(pred, y)
        model = get_predictor(name, random_state=seed)
        fit_s, fit_cpu = _times(lambda: model.fit(X, y))
        r = {"fit_s": fit_s, "fit_cpu": fit_cpu, "pred40_ms": 1e3 * _time(lambda: model.predict(X40), 5),
             "pred10k_s": _time(lambda: model.predict(X10k)), "tau": q.tau, "rmse": q.rmse}
        print(fmt(Path(path).name[:12], len(X), name, r), flush=True)


# ---------------------------------------------------------------------------------------------- --as-every
def stale_vs_fresh(X, y, Xt, yt, lag: int, seed: int) -> dict:
    """Held-out tau of adaptive switching's fresh choice on (X, y) and of its choice made on all but the last
    ``lag`` rows, refitted on all of (X, y); the two fit times (the stale one: the refit alone)."""
    fresh = get_predictor("as", random_state=seed, n_splits=5)
    t_fresh = _time(lambda: fresh.fit(X, y))
    old = get_predictor("as", random_state=seed, n_splits=5).fit(X[: len(X) - lag], y[: len(y) - lag])
    refit = get_predictor(old.winner_, random_state=seed)
    t_refit = _time(lambda: refit.fit(X, y))
    pf, ps = fresh.predict(Xt), refit.predict(Xt)
    return {"fresh": fresh.winner_, "stale": old.winner_, "tau_fresh": rank_quality(pf, yt).tau,
            "tau_stale": rank_quality(ps, yt).tau, "fit_fresh": t_fresh, "fit_refit": t_refit, "pred_fresh": pf,
            "pred_stale": ps}


def as_every(args) -> None:
    lag = args.n_iter * (args.as_every - 1)
    print(f"adaptive switching's choice made {args.as_every - 1} iteration(s) of {args.n_iter} archs earlier, "
          f"refitted, vs a fresh choice (5 folds); held-out Kendall tau; torch threads 1; load average at start "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'task':<12} {'n':>5} {'seed':>4} {'fresh':>6} {'stale':>6} {'tau fresh':>9} {'tau stale':>9} "
          f"{'fit fresh s':>11} {'refit s':>8}")
    rows = []

    def show(task, n, seed, r):
        rows.append(r)
        print(f"{task:<12} {n:>5} {seed:>4} {r['fresh']:>6} {r['stale']:>6} {r['tau_fresh']:>9.3f} "
              f"{r['tau_stale']:>9.3f} {r['fit_fresh']:>11.2f} {r['fit_refit']:>8.2f}", flush=True)

    for task in args.tasks:
        for n in args.sizes:
            if n - lag < 4:
                raise UsageError(f"--sizes {n} leaves fewer than 4 archs for the earlier choice; use larger sizes")
            for seed in args.seeds:
                X, y, Xt, yt = make_task(task, n, args.n_test, seed)
                show(task, n, seed, stale_vs_fresh(X, y, Xt, yt, lag, seed))
    from sklearn.model_selection import KFold

    for path in args.stats:
        X, y, _ = load_archive(path)
        for seed in args.seeds:
            pf, ps = np.zeros(len(y)), np.zeros(len(y))
            agree, tf, tr = [], 0.0, 0.0
            for trn, tst in KFold(5, shuffle=True, random_state=seed).split(X):
                r = stale_vs_fresh(X[trn], y[trn], X[tst], y[tst], lag, seed)
                pf[tst], ps[tst] = r["pred_fresh"], r["pred_stale"]
                agree.append(r["fresh"] == r["stale"])
                tf, tr = tf + r["fit_fresh"] / 5, tr + r["fit_refit"] / 5
            r = {"fresh": "-", "stale": f"{sum(agree)}/5=", "tau_fresh": rank_quality(pf, y).tau,
                 "tau_stale": rank_quality(ps, y).tau, "fit_fresh": tf, "fit_refit": tr, "agree_folds": sum(agree)}
            show(Path(path).parent.name[:12] or "archive", len(X), seed, r)
    synth = [r for r in rows if "agree_folds" not in r]
    if synth:
        same = sum(r["fresh"] == r["stale"] for r in synth)
        print(f"synthetic: the same choice in {same} of {len(synth)}; mean tau fresh "
              f"{np.mean([r['tau_fresh'] for r in synth]):.3f}, stale {np.mean([r['tau_stale'] for r in synth]):.3f}; "
              f"mean fit {np.mean([r['fit_fresh'] for r in synth]):.2f} s fresh vs "
              f"{np.mean([r['fit_refit'] for r in synth]):.2f} s refit")


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stats", nargs="*", help="iter_X.stats files whose archives to benchmark on")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--predictors", nargs="+", default=list(PREDICTORS), choices=list(PREDICTORS))
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-baseline", action="store_true", help="skip the original-like 5000-CART baseline")
    ap.add_argument("--no-as-jobs", action="store_true", help="skip the adaptive-switching n_jobs comparison")
    ap.add_argument("--as-every", type=int, default=1, help="score the search's --as_every K instead (K > 1)")
    ap.add_argument("--n-iter", type=int, default=8, help="archs per search iteration, for --as-every (8)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds for --as-every")
    args = ap.parse_args(argv)
    if any(n < 2 for n in args.sizes):
        raise UsageError(f"--sizes must be at least 2, got {args.sizes}")
    torch.set_num_threads(1)
    if "as" in args.predictors:  # as a search does before its first fit: start the fold worker processes
        t = time.perf_counter()
        start_workers()
        print(f"adaptive switching's fold workers started in {time.perf_counter() - t:.2f} s")
    if args.as_every > 1:
        as_every(args)
        return 0
    rng = np.random.default_rng(args.seed + 1)
    X40, X10k = SPACE.sample_encodings(40, rng), SPACE.sample_encodings(10_000, rng)

    print(f"synthetic tasks on {SPACE.n_var} genes, held-out set of {args.n_test}; torch threads 1; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(HEADER)
    for task in args.tasks:
        for n in args.sizes:
            X, y, Xt, yt = make_task(task, n, args.n_test, args.seed)
            for name in args.predictors:
                print(fmt(task, n, name, measure(name, X, y, Xt, yt, X40, X10k, args.seed)), flush=True)

    if not args.no_baseline:
        baselines(args.tasks, min(args.sizes), args.n_test, X40, args.seed)

    if not args.no_as_jobs and "as" in args.predictors:
        print("\nadaptive switching fit time by fold workers (linear_sine; n_jobs=2: two worker processes; CPU: this "
              "process only):")
        for n in args.sizes:
            X, y, _, _ = make_task("linear_sine", n, 0, args.seed)
            for n_jobs in (1, 2):
                m = get_predictor("as", random_state=args.seed, n_jobs=n_jobs)
                wall, cpu = _times(lambda: m.fit(X, y))
                print(f"  n={n:<5} n_jobs={n_jobs}: fit {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)

    for path in args.stats:
        bench_archive(path, args.predictors, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="benchmarks/surrogates.py"))
