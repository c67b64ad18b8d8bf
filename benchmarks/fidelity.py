"""Evaluation fidelity: can the candidate evaluation tell architectures apart on the bundled digits data?

    python benchmarks/fidelity.py [--n_archs 100] [--seeds 0 1] [--epochs 0] [--supernet supernets/digits.pth]
                                  [--ee 8] [--protocol default|original]

The defaults are the README quickstart's protocol: weights inherited from the digits supernet (built by
``python -m cnas.supernet``), batch-norm statistics re-estimated on 512 training images, no further training.
``--epochs N`` fine-tunes N epochs first; ``--supernet none`` trains from scratch; ``--protocol original`` uses the
original's recipe (batch 128, lr 0.01, no warm-up, no label smoothing, no BN re-estimation).

Evaluates a fixed sample of archs (the smallest, the largest and random ones at 32 px), each with several seeds
(the seed draws the batch-norm images and, when training, the batches and the initialization), and prints: the
repeat standard deviation of the top1 error (pooled over archs), the standard deviation across archs (of the
per-arch means), their ratio, the fraction of runs that failed to learn (error above 80 %, chance is 90 %), the cost
per candidate, and the k-fold Kendall tau of each predictor on the archive (first-seed results, as a search sees
them). Two diagnostics say how much rank signal there is to learn: the Kendall tau between each arch's validation
error and its error on the 359 test images (does the ranking reproduce on other images?) and between the
validation error and the MACs. With ``--ee N`` it also evaluates N EDANAS archs and reports the same spread figures
for their measured ``avg_macs``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.model_selection import KFold

from _protocol import add_protocol_args, check_protocol
from cnas import complexity
from cnas.evaluation import EvalSettings, evaluate_arch
from cnas.spaces import get_space
from cnas.surrogates import get_predictor, kendall_tau

FAIL_ERROR = 80.0


def spread(values: np.ndarray) -> tuple[float, float]:
    """(pooled repeat std, std of the per-arch means) of an (archs, seeds) array."""
    repeat = float(np.sqrt(np.mean(np.var(values, axis=1, ddof=1)))) if values.shape[1] > 1 else float("nan")
    return repeat, float(np.std(values.mean(axis=1), ddof=1))


def kfold_tau(X: np.ndarray, y: np.ndarray, name: str, k: int, seed: int) -> float:
    taus = []
    for tr, te in KFold(n_splits=k, shuffle=True, random_state=seed).split(X):
        params = {"n_splits": 5} if name == "as" else {}
        model = get_predictor(name, random_state=seed, **params).fit(X[tr], y[tr])
        taus.append(kendall_tau(model.predict(X[te]), y[te]))
    return float(np.mean(taus))


def settings_for(args, seed: int, eval_test: bool) -> EvalSettings:
    if args.protocol == "original":
        return EvalSettings(epochs=args.epochs, seed=seed, batch_size=128, lr=0.01, warmup_epochs=0,
                            label_smoothing=0.0, bn_recalibrate=False, eval_test=eval_test,
                            supernet_path=args.supernet)
    return EvalSettings(epochs=args.epochs, seed=seed, eval_test=eval_test, supernet_path=args.supernet,
                        warmup_ee_epochs=args.warmup_ee_epochs)


def run(archs: list[dict], args, key: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(values (archs, seeds), test error of the first seed (archs,), seconds per evaluation)."""
    values = np.zeros((len(archs), len(args.seeds)))
    test = np.full(len(archs), np.nan)
    t0 = time.perf_counter()
    for i, arch in enumerate(archs):
        for j, seed in enumerate(args.seeds):
            stats = evaluate_arch(arch, settings_for(args, seed, eval_test=j == 0))
            values[i, j] = stats[key]
            if j == 0 and "test_top1" in stats:
                test[i] = stats["test_top1"]
        if not args.quiet:
            print(f"  {key} arch {i + 1}/{len(archs)}: {np.round(values[i], 2).tolist()}", flush=True)
    return values, test, (time.perf_counter() - t0) / values.size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n_archs", type=int, default=100, help="plain archs (0: only the --ee part)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    add_protocol_args(ap)
    ap.add_argument("--protocol", choices=["default", "original"], default="default")
    ap.add_argument("--ee", type=int, default=0, help="also this many EDANAS archs (avg_macs spread)")
    ap.add_argument("--warmup_ee_epochs", type=int, default=EvalSettings.warmup_ee_epochs,
                    help="epochs of exit training (early-exit archs)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", action="store_true", help="no per-arch lines")
    args = ap.parse_args()
    check_protocol(args, "fidelity.py")
    torch.set_num_threads(args.threads)
    if args.n_archs > 0:
        plain(args)
    if args.ee:
        ee = get_space("eemobilenetv3", 32, 32)
        ee_archs = [dict(a, r=32) for a in ee.sample(args.ee, 1) if any(ee.exit_mask(a))]
        avg, _, cost_ee = run(ee_archs, args, "avg_macs")
        rep, across = spread(avg)
        print(f"\navg_macs (EDANAS, {len(ee_archs)} archs): repeat std {rep:.3f}, across-arch std {across:.3f}, "
              f"ratio {rep / across:.3f}; cost {cost_ee:.1f} s per candidate")


def plain(args) -> None:
    space = get_space("mobilenetv3", 32, 32)
    archs = [dict(a, r=32) for a in space.initial_design(args.n_archs, 0)]
    src = f"inherited from {args.supernet}" if args.supernet else "random init"
    print(f"protocol {args.protocol}, {args.epochs} epoch(s), {src}, {len(archs)} archs x seeds {args.seeds}")
    top1, test, cost = run(archs, args, "top1")
    rep, across = spread(top1)
    failed = float(np.mean(top1 > FAIL_ERROR))
    X = space.encode_many([{k: v for k, v in a.items() if k != "r"} for a in archs])
    macs = np.array([complexity.count(a, 10, 32)["macs"] for a in archs])
    print(f"\ntop1 error: mean {top1.mean():.2f} %, range {top1.min():.2f}..{top1.max():.2f}")
    print(f"repeat std {rep:.3f}, across-arch std {across:.3f}, ratio repeat/across {rep / across:.3f} "
          f"(target <= 0.2)")
    print(f"runs that failed to learn: {failed:.1%}; cost {cost:.2f} s per candidate")
    print(f"rank signal: Kendall tau of validation vs test error {kendall_tau(top1[:, 0], test):.3f}, "
          f"validation error vs MACs {kendall_tau(top1[:, 0], macs):.3f}")
    print(f"{args.folds}-fold Kendall tau on the archive (first seed; target as >= 0.6):")
    for name in ("rbf", "gp", "carts", "mlp", "as"):
        print(f"  {name:<6} {kfold_tau(X, top1[:, 0], name, args.folds, 0):.3f}", flush=True)


if __name__ == "__main__":
    main()
