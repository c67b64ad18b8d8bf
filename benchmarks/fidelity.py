"""Evaluation fidelity: can the candidate evaluation tell architectures apart?

    python benchmarks/fidelity.py [--dataset digits|fashion_mnist] [--n_archs 100] [--seeds 0 1] [--epochs 0]
                                  [--supernet FILE] [--val_images N] [--ee 8] [--protocol default|original]
                                  [--lr R --ur R --rstep S] [--train_sizes N ...] [--cache FILE.json]

The defaults are the dataset's protocol (``benchmarks/_protocol.py``): weights inherited from its supernet,
batch-norm statistics re-estimated on 512 training images, no further training; digits at 32 px on its whole
validation split, Fashion-MNIST at 28 px on 3000 validation images. ``--epochs N`` fine-tunes N epochs first;
``--supernet none`` trains from scratch; ``--protocol original`` uses the original's recipe (batch 128, lr 0.01, no
warm-up, no label smoothing, no BN re-estimation).

Evaluates a fixed sample of archs (the smallest, the largest and random ones), each with several seeds (the seed
draws the batch-norm images and, when training, the batches and the initialization), and prints: the repeat
standard deviation of the top1 error (pooled over archs), the standard deviation across archs (of the per-arch
means), their ratio, the binomial standard error of an error rate measured on the validation images used, the
fraction of runs that failed to learn (error above 80 %; chance is 90 %), the cost per candidate, and the k-fold
Kendall tau of each predictor on the archive (first-seed results, as a search sees them; ``--train_sizes N ...``
adds each predictor fitted on N random archs and scored on all the others, the archive sizes a search works
with). Two diagnostics say how much rank signal there is to learn: the Kendall tau between each arch's validation
error and its error on the test split (does the ranking reproduce on other images? the ceiling of any predictor)
and between the validation error and the MACs. With ``--ee N`` it also evaluates N EDANAS archs and reports the
same spread figures for their measured ``avg_macs``. ``--lr``/``--ur`` make the resolution a gene of the plain
archs (drawn per arch, part of the predictors' encoding; the same splits also score ``as`` after a least-squares
line in the resolution, as a search with ``--r_trend true`` fits it, and a ranking by the resolution alone, the
rule a predictor has to beat). ``--cache`` keeps every evaluation by (arch, seed): a re-run prints the same
figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone
from sklearn.model_selection import KFold

from _protocol import add_protocol_args, check_protocol, describe, eval_kwargs
from cnas import complexity
from cnas.evaluation import EvalSettings, evaluate_arch
from cnas.spaces import get_space
from cnas.surrogates import LinearTrend, get_predictor, kendall_tau

FAIL_ERROR = 80.0


def spread(values: np.ndarray) -> tuple[float, float]:
    """(pooled repeat std, std of the per-arch means) of an (archs, seeds) array."""
    repeat = float(np.sqrt(np.mean(np.var(values, axis=1, ddof=1)))) if values.shape[1] > 1 else float("nan")
    return repeat, float(np.std(values.mean(axis=1), ddof=1))


PREDICTORS = ("rbf", "gp", "carts", "mlp", "as")


def mean_tau(y: np.ndarray, splits, score) -> float:
    """Mean Kendall tau over (train, test) index splits of ``score(train, test)`` against ``y[test]``."""
    return float(np.mean([kendall_tau(score(tr, te), y[te]) for tr, te in splits]))


def fitted(X: np.ndarray, y: np.ndarray, name: str, seed: int):
    """A score function that fits predictor ``name`` on the train indices and predicts the test ones."""
    params = {"n_splits": 5} if name == "as" else {}
    return lambda tr, te: get_predictor(name, random_state=seed, **params).fit(X[tr], y[tr]).predict(X[te])


def random_splits(n_archs: int, n_train: int, repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``repeats`` random splits into ``n_train`` archs to fit on and all the others to rank."""
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(n_archs) for _ in range(repeats)]
    return [(p[:n_train], p[n_train:]) for p in perms]


def settings_for(args, seed: int, eval_test: bool) -> EvalSettings:
    kw = {**eval_kwargs(args), "resolution": None, "seed": seed, "eval_test": eval_test}
    if args.protocol == "original":
        return EvalSettings(**kw, batch_size=128, lr=0.01, warmup_epochs=0, label_smoothing=0.0,
                            bn_recalibrate=False)
    return EvalSettings(**kw, warmup_ee_epochs=args.warmup_ee_epochs)


class Cache:
    """Evaluations by (arch, seed, key), read from and written to ``--cache`` (only for the same settings)."""

    def __init__(self, path: str | None, args):
        self.path, self.tag, self.data = path, repr(settings_for(args, 0, False)), {}
        if path and Path(path).is_file():
            stored = json.loads(Path(path).read_text())
            if stored.get("settings") == self.tag:
                self.data = stored["stats"]

    def get(self, arch: dict, seed: int, args, eval_test: bool) -> dict:
        k = json.dumps([arch, seed], sort_keys=True)
        hit = self.data.get(k)
        if hit is None or (eval_test and "test_top1" not in hit):
            t = time.perf_counter()
            stats = evaluate_arch(arch, settings_for(args, seed, eval_test=eval_test))
            hit = {key: stats[key] for key in ("top1", "test_top1", "avg_macs") if key in stats}
            hit["seconds"] = time.perf_counter() - t
            self.data[k] = hit
        return hit

    def save(self) -> None:
        if self.path:
            from cnas.fileio import atomic_write_json

            atomic_write_json(self.path, {"settings": self.tag, "stats": self.data})


def run(archs: list[dict], args, key: str, cache: Cache) -> tuple[np.ndarray, np.ndarray, float]:
    """(values (archs, seeds), test error of the first seed (archs,), seconds per candidate as a search measures it:
    the mean over the evaluations that did not also measure the test split, as measured when evaluated)."""
    values = np.zeros((len(archs), len(args.seeds)))
    test = np.full(len(archs), np.nan)
    seconds = []
    for i, arch in enumerate(archs):
        for j, seed in enumerate(args.seeds):
            stats = cache.get(arch, seed, args, eval_test=j == 0 and key == "top1")
            values[i, j] = stats[key]
            if "test_top1" not in stats or key != "top1":
                seconds.append(stats["seconds"])
            if j == 0 and "test_top1" in stats:
                test[i] = stats["test_top1"]
        if not args.quiet:
            print(f"  {key} arch {i + 1}/{len(archs)}: {np.round(values[i], 2).tolist()}", flush=True)
        if (i + 1) % 10 == 0:
            cache.save()
    cache.save()
    return values, test, float(np.mean(seconds)) if seconds else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n_archs", type=int, default=100, help="plain archs (0: only the --ee part)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    add_protocol_args(ap)
    ap.add_argument("--protocol", choices=["default", "original"], default="default")
    ap.add_argument("--ee", type=int, default=0, help="also this many EDANAS archs (avg_macs spread)")
    ap.add_argument("--warmup_ee_epochs", type=int, default=EvalSettings.warmup_ee_epochs,
                    help="epochs of exit training (early-exit archs)")
    ap.add_argument("--lr", type=int, default=None, help="lowest resolution: with --ur, the resolution is a gene of "
                                                         "the plain archs (default --resolution: fixed)")
    ap.add_argument("--ur", type=int, default=None, help="highest resolution (default --resolution)")
    ap.add_argument("--rstep", type=int, default=4, help="resolution step (4)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--train_sizes", type=int, nargs="*", default=[],
                    help="also each predictor fitted on N random archs and scored on all the others (how rank "
                         "quality grows with the archive a search has)")
    ap.add_argument("--repeats", type=int, default=5, help="random splits per --train_sizes entry")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", action="store_true", help="no per-arch lines")
    ap.add_argument("--cache", default=None, help="JSON file of evaluations by (arch, seed), read first and "
                                                  "updated as it goes (same settings only)")
    args = ap.parse_args()
    check_protocol(args, "fidelity.py")
    torch.set_num_threads(args.threads)
    cache = Cache(args.cache, args)
    if args.n_archs > 0:
        plain(args, cache)
    if args.ee:
        r = args.resolution
        ee = get_space("eemobilenetv3", r, r)
        ee_archs = [dict(a, r=r) for a in ee.sample(args.ee, 1) if any(ee.exit_mask(a))]
        avg, _, cost_ee = run(ee_archs, args, "avg_macs", cache)
        rep, across = spread(avg)
        print(f"\navg_macs (EDANAS, {len(ee_archs)} archs): repeat std {rep:.3f}, across-arch std {across:.3f}, "
              f"ratio {rep / across:.3f}; cost {cost_ee:.1f} s per candidate")


def plain(args, cache: Cache) -> None:
    lr, ur = args.lr or args.resolution, args.ur or args.resolution
    space = get_space("mobilenetv3", lr, ur, args.rstep)
    archs = [space.with_resolution(a) for a in space.initial_design(args.n_archs, 0)]  # each with its r
    where = f"resolution a gene, {lr}..{ur} step {args.rstep}" if lr != ur else f"{lr} px"
    print(f"protocol {args.protocol}: {describe(args)}; {where}; {len(archs)} archs x seeds {args.seeds}")
    top1, test, cost = run(archs, args, "top1", cache)
    rep, across = spread(top1)
    failed = float(np.mean(top1 > FAIL_ERROR))
    X = space.encode_many([{k: v for k, v in a.items() if k != "r"} for a in archs] if space.fixed_resolution
                          else archs)
    macs = np.array([complexity.count(a, 10, a["r"])["macs"] for a in archs])
    n_val = args.val_images or None
    p = top1.mean() / 100
    print(f"\ntop1 error: mean {top1.mean():.2f} %, range {top1.min():.2f}..{top1.max():.2f}")
    print(f"repeat std {rep:.3f}, across-arch std {across:.3f}, ratio repeat/across {rep / across:.3f} "
          f"(target <= 0.2)")
    if n_val:
        print(f"binomial standard error of an error rate near {p:.1%} on {n_val} validation images: "
              f"{100 * np.sqrt(p * (1 - p) / n_val):.2f} points (a fixed subset: the same for every arch and seed)")
    print(f"runs that failed to learn: {failed:.1%}; cost {cost:.2f} s per candidate (validation only, as in a "
          "search; the first seed also measured the test split)")
    print(f"rank signal: Kendall tau of validation vs test error {kendall_tau(top1[:, 0], test):.3f}, "
          f"validation error vs MACs {kendall_tau(top1[:, 0], macs):.3f}")
    y = top1[:, 0]
    rules = {}
    if lr != ur:
        minus_r = -np.array([a["r"] for a in archs], dtype=float)
        rules["resolution alone"] = lambda tr, te: minus_r[te]  # higher ranked better, nothing fitted
        as_trend = LinearTrend(get_predictor("as", random_state=0, n_splits=5), (space.resolution_column,))
        trended = {"as + r trend": lambda tr, te: clone(as_trend).fit(X[tr], y[tr]).predict(X[te])}
    else:
        trended = {}
    folds = list(KFold(n_splits=args.folds, shuffle=True, random_state=0).split(X))
    print(f"{args.folds}-fold Kendall tau on the archive (first seed; target as >= 0.6):")
    for name, score in [(n, fitted(X, y, n, 0)) for n in PREDICTORS] + list(trended.items()):
        print(f"  {name:<16} {mean_tau(y, folds, score):.3f}", flush=True)
    for name, rule in rules.items():
        print(f"  {name:<16} {mean_tau(y, folds, rule):.3f} (a rule, for comparison)")
    sizes = sorted({n for n in args.train_sizes if 2 <= n <= len(archs) - 2})
    if sizes:
        print(f"fitted on n archs, Kendall tau on all the others (mean of {args.repeats} random splits), "
              f"n = {', '.join(map(str, sizes))}:")
        splits = {n: random_splits(len(archs), n, args.repeats, 0) for n in sizes}
        for name, score in [(n, fitted(X, y, n, 0)) for n in PREDICTORS] + list(trended.items()) + \
                list(rules.items()):
            taus = [mean_tau(y, splits[n], score) for n in sizes]
            print(f"  {name:<16} {'  '.join(f'{t:.3f}' for t in taus)}", flush=True)

if __name__ == "__main__":
    main()
