"""Latency lookup table vs. measured end-to-end latency on this machine, and MACs as the alternative predictor.

    .venv/bin/python benchmarks/latency.py [--n_archs 100] [--resolutions 160 224] [--threads 1]
        [--backend torch] [--device cpu] [--table results/bench_latency/lut.yaml] [--spread_runs 10] [--quick]

1. Builds (or resumes / extends) the latency table for the resolutions with ``cnas.latency build`` and prints
   the build time of each resolution, its calibration included (a resolution already in the table is not timed
   again: use a new --table for build times).
2. Samples ``--n_archs`` random archs of ``--search_space`` per resolution, and for each: the latency the table
   predicts, the measured end-to-end latency (median of ``--repeats`` timed inferences after the warm-up, the
   network built with random weights, archs measured in random order) and its MACs.
3. Prints, per resolution and over all archs, for the table's prediction (calibrated, and the raw sum of the
   ops): the share of archs whose prediction is within +-10 % of the measured latency, Kendall tau between predicted and measured, the mean bias ((predicted - measured) /
   measured) and the median absolute error; then the same for MACs turned into milliseconds by the least-squares
   line ``ms = a * MACs + b`` fitted on the measured archs themselves (per resolution, and one line over all
   archs): an in-sample fit, so it favours MACs.
4. The ceiling: with ``--remeasure 1`` (default) every arch is measured a second time, in another random order,
   and the second measurement is scored as a predictor of the first, with the same figures: no table can predict
   a measurement better than a measurement of the same network does.
5. The repeat spread: one arch (the median-MACs arch at the largest resolution) measured ``--spread_runs`` times
   as in step 2: the spread of its medians is the floor that this machine's noise sets for any predictor.

``--json FILE`` also writes every figure and every arch's values. ``--quick`` (few repeats) is for checking
that the script runs, not for figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from cnas import complexity
from cnas.errors import run_cli
from cnas.fileio import atomic_write_json
from cnas.latency import BuildSettings, build
from cnas.latency_table import FULL_CALLS as FULL
from cnas.latency_table import QUICK_CALLS as QUICK
from cnas.latency_table import LatencyTable
from cnas.models.latency import measure_network, torch_threads
from cnas.progress import progress_bar
from cnas.spaces import get_space


def figures(pred: np.ndarray, meas: np.ndarray) -> dict:
    rel = (pred - meas) / meas
    tau = kendalltau(pred, meas).statistic if len(pred) > 1 else float("nan")
    return {"n": len(pred), "within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "kendall_tau": float(tau),
            "mean_bias_pct": float(100 * rel.mean()), "median_abs_err_pct": float(100 * np.median(np.abs(rel)))}


def linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    a, b = np.polyfit(x, y, 1) if len(x) > 1 else (y[0] / x[0], 0.0)
    return float(a), float(b)


def line(name: str, f: dict) -> str:
    return (f"  {name:<28} n={f['n']:<4} within +-10 %: {100 * f['within_10pct']:5.1f} %   Kendall tau "
            f"{f['kendall_tau']:6.3f}   mean bias {f['mean_bias_pct']:+6.1f} %   median |error| "
            f"{f['median_abs_err_pct']:5.1f} %")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n_archs", type=int, default=100, help="random archs per resolution (default 100)")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[160, 224], help="input resolutions")
    ap.add_argument("--search_space", default="mobilenetv3")
    ap.add_argument("--n_classes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    ap.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--table", default="results/bench_latency/lut.yaml", help="table to build or extend")
    ap.add_argument("--repeats", type=int, default=None, help=f"timed inferences per arch (default {FULL[1]})")
    ap.add_argument("--warmup", type=int, default=None, help=f"untimed inferences first (default {FULL[0]})")
    ap.add_argument("--spread_runs", type=int, default=10, help="measurements of the one arch of the spread")
    ap.add_argument("--remeasure", type=int, default=1, choices=[0, 1],
                    help="measure every arch a second time, in another order, as the ceiling (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="few repeats everywhere (checks that the script runs)")
    ap.add_argument("--json", default=None, help="also write every figure and arch to this file")
    args = ap.parse_args(argv)
    base = QUICK if args.quick else FULL
    warmup = base[0] if args.warmup is None else args.warmup
    repeats = base[1] if args.repeats is None else args.repeats
    res = sorted(set(args.resolutions))
    out: dict = {"settings": vars(args) | {"warmup": warmup, "repeats": repeats}, "build_seconds": {}}

    # 1. the table, one resolution at a time (each one's build time)
    print(f"latency benchmark: {args.search_space}, resolutions {res}, {args.n_classes} classes, {args.backend} on "
          f"{args.device}, {args.threads} thread(s), batch {args.batch}; table {args.table}", flush=True)
    for r in res:
        s = BuildSettings(save=args.table, lr=r, ur=r, search_space=args.search_space, n_classes=args.n_classes,
                          device=args.device, backend=args.backend, threads=args.threads, batch=args.batch,
                          quick=args.quick)
        t0 = time.perf_counter()
        before = len(LatencyTable.read(args.table)) if Path(args.table).exists() else 0
        table = build(s, log=lambda m: None)
        took = time.perf_counter() - t0
        added = len(table) - before
        out["build_seconds"][r] = round(took, 1) if added else None
        print(f"table build at resolution {r}: " + (f"{added} ops timed in {took:.1f} s" if added else
                                                     "already in the table (not timed again)"), flush=True)
    table = LatencyTable.read(args.table)

    # 2. random archs, measured end to end in random order
    rng = np.random.default_rng(args.seed)
    space = get_space(args.search_space, res[0], res[0])
    archs = []
    for r in res:
        for a in space.sample(args.n_archs, rng):
            archs.append({**{k: v for k, v in a.items() if k != "r"}, "r": r})
    order = rng.permutation(len(archs))
    pred = np.array([table.predict(a, args.n_classes) for a in archs])
    raw = np.array([table.predict(a, args.n_classes, raw=True) for a in archs])
    macs = np.array([complexity.count(a, args.n_classes)["macs"] for a in archs])
    meas = np.zeros(len(archs))
    iqr = np.zeros(len(archs))
    t0 = time.perf_counter()
    with torch_threads(args.threads):
        for i in progress_bar(order, desc="measuring", unit="arch"):
            got = measure_network(archs[i], args.n_classes, args.backend, args.device, args.threads, args.batch,
                                  warmup, repeats)
            meas[i], iqr[i] = got["median"], got["iqr_rel"]
    print(f"measured {len(archs)} archs end to end in {time.perf_counter() - t0:.1f} s ({warmup} warm-up + "
          f"{repeats} timed inferences each; median relative IQR within an arch's repeats "
          f"{100 * float(np.median(iqr)):.1f} %)", flush=True)

    meas2 = None
    if args.remeasure:
        meas2 = np.zeros(len(archs))
        t0 = time.perf_counter()
        with torch_threads(args.threads):
            for i in progress_bar(rng.permutation(len(archs)), desc="measuring again", unit="arch"):
                meas2[i] = measure_network(archs[i], args.n_classes, args.backend, args.device, args.threads,
                                           args.batch, warmup, repeats)["median"]
        print(f"measured them again, in another order, in {time.perf_counter() - t0:.1f} s", flush=True)

    # 3. figures: the table, and MACs through a fitted line
    rs = np.array([a["r"] for a in archs])
    out["table"], out["table_raw"], out["macs_linear"], out["macs_fit"] = {}, {}, {}, {}
    out["scale"] = {r: table.scale(r) for r in res}
    print("\ntable-predicted vs measured end-to-end latency (calibrated: sum of the ops times the resolution's "
          "scale, " + ", ".join(f"{r}: x{table.scale(r):.3f}" for r in res) + "):")
    def per_resolution(key, predicted):
        """Figures of ``predicted`` against the measured latency, per resolution and over all archs."""
        for r in res:
            m = rs == r
            out[key][r] = figures(predicted[m], meas[m])
            print(line(f"resolution {r}", out[key][r]))
        out[key]["all"] = figures(predicted, meas)
        print(line("all archs", out[key]["all"]))

    per_resolution("table", pred)
    print("the same, raw sum of the ops (no calibration; what OFA's reader predicts from the table):")
    per_resolution("table_raw", raw)
    print("MACs as a predictor (ms = a * MACs + b, least squares on these archs, in sample):")
    for r in res:
        m = rs == r
        a, b = linear_fit(macs[m], meas[m])
        out["macs_fit"][r] = {"a_ms_per_mmac": a, "b_ms": b}
        out["macs_linear"][r] = figures(a * macs[m] + b, meas[m])
        print(line(f"resolution {r}", out["macs_linear"][r]))
    a, b = linear_fit(macs, meas)
    out["macs_fit"]["all"] = {"a_ms_per_mmac": a, "b_ms": b}
    out["macs_linear"]["all"] = figures(a * macs + b, meas)
    print(line("all archs (one line)", out["macs_linear"]["all"]))

    if meas2 is not None:
        print("the ceiling: the second measurement of the same archs as a predictor of the first:")
        out["remeasured"] = {}
        per_resolution("remeasured", meas2)

    # 4. the repeat spread of one arch
    big = np.flatnonzero(rs == res[-1])
    one = int(big[np.argsort(macs[big])[len(big) // 2]])
    runs = []
    with torch_threads(args.threads):
        for _ in range(args.spread_runs):
            runs.append(measure_network(archs[one], args.n_classes, args.backend, args.device, args.threads,
                                        args.batch, warmup, repeats)["median"])
    med = statistics.median(runs)
    dev = np.abs(np.asarray(runs) - med) / med
    out["spread"] = {"arch": archs[one], "medians_ms": runs, "median_ms": med,
                     "std_pct": float(100 * np.std(runs) / np.mean(runs)),
                     "range_pct": float(100 * (max(runs) - min(runs)) / med),
                     "within_10pct_of_median": float(np.mean(dev <= 0.10)),
                     "table_error_pct": float(100 * (table.predict(archs[one], args.n_classes) - med) / med)}
    sp = out["spread"]
    print(f"\nrepeat spread of one arch (resolution {res[-1]}, {macs[one]:.1f} M MACs), {args.spread_runs} "
          f"measurements: median {med:.3f} ms, std {sp['std_pct']:.1f} %, range {sp['range_pct']:.1f} %, "
          f"{100 * sp['within_10pct_of_median']:.0f} % of the measurements within +-10 % of their median; the "
          f"table predicts {sp['table_error_pct']:+.1f} % from that median")
    print("table build time per resolution: " + ", ".join(
        f"{r}: {'-' if v is None else f'{v:.1f} s'}" for r, v in out["build_seconds"].items()))
    if args.json:
        again = meas2 if meas2 is not None else [None] * len(archs)
        out["archs"] = [{"arch": a, "predicted_ms": float(p), "raw_sum_ms": float(q), "measured_ms": float(x),
                         "remeasured_ms": None if y is None else float(y), "macs": float(c)}
                        for a, p, q, x, y, c in zip(archs, pred, raw, meas, again, macs)]
        atomic_write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="benchmarks/latency.py"))  # a refused table or flag: one line, exit code 2
