"""Closed-form complexity counts vs. extracting the subnet and measuring it, on the same archs.

    .venv/bin/python benchmarks/complexity.py [--space eemobilenetv3] [--n 40] [--resolution 32] [--n_classes 10]

Per arch (medians): the closed form (:func:`cnas.complexity.count`), "measure" (extract the static subnet and
run one forward pass under FlopCounterMode with activation hooks) and "original style" (extract, deep-copy,
forward with hooks, as the original's ``get_net_info`` did; its trace-based MAC counter is replaced by
FlopCounterMode). Early-exit archs are measured on their backbone + final path only (the heads are cheap to
build but not part of the timing). Then the time to count 1000 archs with ``count_many``.
Every measured count is checked against the closed form.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn

from cnas import complexity as C
from cnas.models import build_supernet, get_subnet
from cnas.models.counting import measure_counts
from cnas.spaces import get_space



def measure(net: nn.Module, r: int) -> tuple[int, int, int]:
    return measure_counts(net, r)[:3]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default="mobilenetv3")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--n_classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = get_space(args.space, 32, 32)
    archs = space.sample(args.n, args.seed)
    r, n = args.resolution, args.n_classes
    supernet = build_supernet(n)

    t0 = time.perf_counter()
    C.count(archs[0], n, r)  # builds this resolution's cost tables
    cold = time.perf_counter() - t0

    closed, meas, orig = [], [], []
    for arch in archs:
        t0 = time.perf_counter()
        got = C.count(arch, n, r)
        closed.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        m = measure(get_subnet(supernet, arch), r)
        meas.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        sub = copy.deepcopy(get_subnet(supernet, arch))
        measure(sub, r)
        orig.append(time.perf_counter() - t0)

        if "t" not in arch and "b" not in arch:
            assert (round(got["params"] * 1e6), round(got["macs"] * 1e6), round(got["activations"] * 1e6)) == m
        else:
            assert round(got["macs"] * 1e6) == m[1]

    print(f"space {args.space}, resolution {r}, {n} classes, {len(archs)} archs, 1 thread")
    print(f"{'arch':>4} {'closed form ms':>15} {'extract+measure ms':>19} {'original style ms':>18} {'speed-up':>9}")
    for i, (a, b, c) in enumerate(zip(closed, meas, orig)):
        print(f"{i:>4} {a * 1e3:15.4f} {b * 1e3:19.2f} {c * 1e3:18.2f} {b / a:9.0f}x")
    med = [statistics.median(v) for v in (closed, meas, orig)]
    print(f"median {med[0] * 1e3:13.4f} {med[1] * 1e3:19.2f} {med[2] * 1e3:18.2f} {med[1] / med[0]:9.0f}x "
          f"(vs original style {med[2] / med[0]:.0f}x)")
    print(f"first call at this resolution (builds the cost tables): {cold * 1e3:.2f} ms")

    many = space.sample(1000, args.seed + 1)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        C.count_many(many, n, r)
        best = min(best, time.perf_counter() - t0)
    print(f"count_many of 1000 archs: {best * 1e3:.1f} ms (best of 5), {best:.4f} s; "
          f"{best * 1e3:.4f} us per arch = {med[1] / (best / 1000):.0f}x faster than extract+measure, "
          f"{med[2] / (best / 1000):.0f}x faster than the original style (medians above)")
    sp_var = get_space(args.space, 32, 224, 4)
    many = sp_var.sample(1000, args.seed + 2)
    t0 = time.perf_counter()
    C.count_many(many, n)
    print(f"count_many of 1000 archs over resolutions 32..224 (first call, cold tables): "
          f"{(time.perf_counter() - t0) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
