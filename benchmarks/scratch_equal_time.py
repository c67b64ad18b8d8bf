"""A trained supernet against training from scratch for the same wall time.

    python benchmarks/scratch_equal_time.py [--dataset fashion_mnist]
        [--supernet supernets/fashion_mnist.pth] [--seconds S] [--epochs 3] [--grad_clip 2] [--threads 2]
        [--seed 0] [--out FILE.json]

Takes the smallest, the middle and the largest sub-network that ``python -m cnas.supernet`` measured (their archs
and resolutions are in the checkpoint's ``meta``) and trains each of them from a random initialization with
cnas's candidate training (:func:`cnas.evaluation.evaluate_arch`: SGD, lr 0.05, warm-up, label smoothing, the
epoch of lowest validation loss kept, gradient norm clipped at ``--grad_clip``) for about ``--seconds`` of wall
time each. The default budget is the supernet's own training time divided by the three archs, so the three
scratch runs together cost what the supernet cost, while the supernet holds every sub-network of the space.

The budget is met by training ``--epochs`` epochs on a class-balanced subset of the training split whose size is
set from a timed estimate (training steps of the arch at its resolution, plus one validation pass per epoch);
each line prints the seconds actually spent. Validation accuracy is measured on the whole validation split, as
the supernet's figures are. Prints one line per arch, side by side with the supernet's inherited accuracy.

The figures in the README were measured with ``--grad_clip 2``. It was added when the largest sub-network
(20 blocks, expansion 6, kernel 7) failed from scratch on 25,410 images; the cause turned out to be the last
training batch of each epoch, 2 images, whose batch-norm statistics gave gradient norms of 1.2·10^5 and
5.8·10^6. The trainer now skips such a batch, and the net trains without clipping as well (on 6,402 images, which end in
the same 2-image batch, it failed at the first validation with a NaN loss before, and reaches 79.2 % now).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cnas.data import load_data
from cnas.evaluation import EvalSettings, evaluate_arch
from cnas.fileio import atomic_write_json
from cnas.models import build_network, read_checkpoint
from cnas.spaces.geometry import INPUT_CHANNELS

BATCH = 64


def seconds_per_image(arch: dict, r: int, n_classes: int, train: bool, steps: int = 8) -> float:
    """Measured seconds per image of a training step (forward, backward, SGD) or of an evaluation forward."""
    net = build_network(arch, n_classes, resolution=r).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    batch = BATCH if train else 256
    x = torch.randn(batch, INPUT_CHANNELS, r, r).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, n_classes, (batch,))
    net.train(train)

    def step():
        if train:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
        else:
            with torch.no_grad():
                net(x)

    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / (steps * batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--data", default=None)
    ap.add_argument("--supernet", default="supernets/fashion_mnist.pth")
    ap.add_argument("--seconds", type=float, default=None,
                    help="wall time per arch (default: the supernet's training time / 3)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of every scratch run")
    ap.add_argument("--grad_clip", type=float, default=2.0, help="largest gradient norm (0: no clipping)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    _, meta = read_checkpoint(args.supernet)
    if "accuracy" not in meta or "seconds" not in meta:
        raise SystemExit(f"{args.supernet} was not written by python -m cnas.supernet (no accuracy/seconds in meta)")
    budget = args.seconds or float(meta["seconds"]) / 3
    loaders = load_data(args.dataset, args.data, resolution=28)
    n_classes, n_train, n_val = loaders.n_classes, loaders.sizes["train"], loaders.sizes["val"]
    clip = f"gradient norm clipped at {args.grad_clip:g}" if args.grad_clip else "gradient norm not clipped"
    print(f"supernet {args.supernet}: trained in {meta['seconds']:.0f} s; scratch budget {budget:.0f} s per arch, "
          f"{args.epochs} epochs, {clip}, {n_val} validation images, {args.threads} threads")
    rows = []
    for name, m in meta["accuracy"].items():
        arch, r = m["arch"], int(m["r"])
        train_s = seconds_per_image(arch, r, n_classes, train=True)
        eval_s = seconds_per_image(arch, r, n_classes, train=False)
        per_epoch_fixed = eval_s * n_val + 2 * train_s * 512  # validation + batch-norm re-estimation
        images = int((budget / args.epochs - per_epoch_fixed) / train_s)
        images = max(BATCH * 10, min(n_train, images))
        st = EvalSettings(dataset=args.dataset, data=args.data, resolution=r, epochs=args.epochs,
                          supernet_path=None, train_images=images, val_images=0, seed=args.seed, eval_test=False,
                          num_threads=args.threads, grad_clip=args.grad_clip or None)
        t = time.perf_counter()
        stats = evaluate_arch(arch, st)
        wall = time.perf_counter() - t
        acc = 100.0 - float(stats["top1"])
        row = {"name": name, "arch": arch, "r": r, "macs": stats["macs"], "supernet_val_acc": 100 * m["val_acc"],
               "scratch_val_acc": acc, "scratch_seconds": wall, "train_images": images, "epochs": args.epochs,
               "grad_clip": args.grad_clip}
        rows.append(row)
        print(f"  {name:<8} {r} px, {stats['macs']:5.2f} M MACs: inherited {row['supernet_val_acc']:.1f} %, "
              f"from scratch {acc:.1f} % after {wall:.0f} s ({args.epochs} epochs of {images} images)", flush=True)
    if args.out:
        atomic_write_json(args.out, {"supernet": args.supernet, "budget_s": budget, "rows": rows})


if __name__ == "__main__":
    main()
