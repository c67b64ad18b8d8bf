"""What a trained supernet is worth: short fine-tunes from random init against fine-tunes from inherited weights.

    python benchmarks/supernet_value.py [--supernet supernets/digits.pth] [--n_archs 20] [--ft_epochs 1]
                                        [--long_epochs 5] [--seed 0] [--threads 1] [--out FILE.json]

For ``--n_archs`` random archs of the mobilenetv3 space at 32 px on the bundled digits data, with
:func:`cnas.evaluation.evaluate_arch` and its default training settings (SGD, lr 0.05, warm-up, label smoothing):

(a) validation accuracy after ``--ft_epochs`` epochs from random initialisation;
(b) the same from the weights inherited from the supernet (BN re-calibrated first);
(c) the inherited accuracy without any training (``epochs=0``, BN re-calibrated);
(d) the accuracy after ``--long_epochs`` epochs from the inherited weights;

and Kendall's tau between (c) and (d) (scipy.stats.kendalltau): how well the untrained inherited accuracy ranks
the archs as a longer fine-tune does. The supernet is trained with ``python -m cnas.supernet``'s defaults when the
file is missing (a few minutes). One line per arch, then a summary; ``--out`` also writes everything as JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from cnas.evaluation import EvalSettings, evaluate_arch
from cnas.fileio import atomic_write_json
from cnas.spaces import get_space
from cnas.training.progressive import SupernetConfig, train_supernet


def accuracy(arch: dict, epochs: int, supernet: str | None, seed: int) -> float:
    st = EvalSettings(dataset="digits", resolution=32, epochs=epochs, supernet_path=supernet, seed=seed,
                      eval_test=False)
    return 100.0 - evaluate_arch(arch, st)["top1"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--supernet", default="supernets/digits.pth")
    p.add_argument("--n_archs", type=int, default=20)
    p.add_argument("--ft_epochs", type=int, default=1)
    p.add_argument("--long_epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    path = Path(a.supernet)
    if not path.exists():
        print(f"{path} is missing: training it with cnas.supernet's defaults")
        train_supernet(SupernetConfig(save=str(path), progress=False), log=print)
    archs = get_space("mobilenetv3", 32, 32).sample(a.n_archs, np.random.default_rng(a.seed))
    rows = []
    t0 = time.perf_counter()
    print(f"{'#':>3} {'scratch':>8} {'inherit':>8} {'0 ep':>8} {str(a.long_epochs) + ' ep':>8}  (val acc %, "
          f"{a.ft_epochs} epoch fine-tunes)")
    for i, arch in enumerate(archs):
        row = {"arch": arch,
               "scratch": accuracy(arch, a.ft_epochs, None, a.seed),
               "inherited": accuracy(arch, a.ft_epochs, str(path), a.seed),
               "inherited_0": accuracy(arch, 0, str(path), a.seed),
               "inherited_long": accuracy(arch, a.long_epochs, str(path), a.seed)}
        rows.append(row)
        print(f"{i:>3} {row['scratch']:>8.2f} {row['inherited']:>8.2f} {row['inherited_0']:>8.2f} "
              f"{row['inherited_long']:>8.2f}", flush=True)

    def col(k):
        return [r[k] for r in rows]

    tau, pval = kendalltau(col("inherited_0"), col("inherited_long"))
    tau_ft, _ = kendalltau(col("inherited"), col("inherited_long"))
    summary = {
        "n_archs": len(rows), "ft_epochs": a.ft_epochs, "long_epochs": a.long_epochs, "seed": a.seed,
        "supernet": str(path),
        "scratch_mean": statistics.mean(col("scratch")), "scratch_median": statistics.median(col("scratch")),
        "inherited_mean": statistics.mean(col("inherited")),
        "inherited_median": statistics.median(col("inherited")),
        "inherited_0_mean": statistics.mean(col("inherited_0")),
        "inherited_long_mean": statistics.mean(col("inherited_long")),
        "kendall_tau_0_vs_long": float(tau), "kendall_p": float(pval),
        "kendall_tau_ft_vs_long": float(tau_ft),
        "seconds": time.perf_counter() - t0,
    }
    print(f"(a) {a.ft_epochs}-epoch fine-tune from random init:  mean {summary['scratch_mean']:.2f}%  "
          f"median {summary['scratch_median']:.2f}%")
    print(f"(b) {a.ft_epochs}-epoch fine-tune from the supernet: mean {summary['inherited_mean']:.2f}%  "
          f"median {summary['inherited_median']:.2f}%")
    print(f"    inherited, 0 epochs: mean {summary['inherited_0_mean']:.2f}%; after {a.long_epochs} epochs: "
          f"mean {summary['inherited_long_mean']:.2f}%")
    print(f"Kendall tau (0 epochs vs {a.long_epochs} epochs, inherited): {tau:.3f} (p = {pval:.3g}); "
          f"({a.ft_epochs} epoch vs {a.long_epochs}): {tau_ft:.3f}")
    print(f"{summary['seconds']:.0f} s")
    if a.out:
        atomic_write_json(a.out, {"summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
