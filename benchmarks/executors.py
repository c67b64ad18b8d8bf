"""Wall time of evaluating candidates through each executor, against calling the evaluation directly.

    python benchmarks/executors.py            # 8 candidates, 1 epoch from scratch on the bundled digits, 32 px
    python benchmarks/executors.py --n 4 --no-ray
    python benchmarks/executors.py --epochs 0 --supernet supernets/digits.pth   # the quickstart's protocol

The default protocol needs no supernet (random initialization, ``--epochs 1``); ``--epochs`` and ``--supernet``
are the flags of the other evaluation benchmarks (``benchmarks/_protocol.py``).

For each executor (local in-process, local worker processes, Ray on a local instance) with 1 and 2 workers it
prints: the start-up time (creating the executor, starting its workers and warming each: imports, data loading,
building the network, and with a supernet a 0-epoch evaluation; a search pays it once, as workers live across
iterations), the wall time
of ``map(evaluate_candidate, 8 tasks)`` on the started executor, the speed-up against the same executor with 1
worker, and two overheads against the direct loop:

* ``ovh/task``: (wall x workers - direct total) / tasks, the worker-seconds per task not spent evaluating
  (when the workers are as many as the cores, it also holds the slowdown of trainings sharing the machine);
* ``noop/task``: wall of mapping a no-op function over ``--noop`` items divided by their number, the pure
  dispatch latency of the executor.

Every run must produce the same stats as the direct loop (checked and printed). The direct loop and the
in-process executor use 1 torch thread, like each worker; a direct loop with 2 torch threads is printed for
reference (on a 2-core machine, that is the alternative to 2 workers).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np
import torch

from _protocol import add_protocol_args, check_protocol
from cnas.evaluation import CandidateTask, EvalSettings, evaluate_candidate, resolve_arch
from cnas.executors import get_executor
from cnas.spaces import get_space


def noop(item, device="cpu"):
    return item


def make_tasks(n: int, epochs: int, resolution: int, seed: int, out: str,
               supernet: str | None = None) -> list[CandidateTask]:
    space = get_space("mobilenetv3", lr=resolution, ur=resolution)
    archs = space.sample(n, np.random.default_rng(seed))
    settings = EvalSettings(dataset="digits", epochs=epochs, resolution=resolution, seed=seed,
                            supernet_path=supernet)
    return [CandidateTask(dict(a), settings, os.path.join(out, f"net_{i}"), f"net_{i}") for i, a in enumerate(archs)]


def key(stats: dict) -> tuple:
    return tuple(stats.get(k) for k in ("top1", "test_top1", "macs", "params", "best_epoch"))


def direct(tasks, threads: int) -> tuple[float, list]:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        out = [evaluate_candidate(t, device="cpu") for t in tasks]
        return time.perf_counter() - t0, out
    finally:
        torch.set_num_threads(old)


def warm(task: CandidateTask, device="cpu") -> int:
    """Imports, data loading and building the network of one evaluation, without training or measuring (a
    0-epoch evaluation needs inherited weights)."""
    from cnas.data import load_data
    from cnas.models import get_subnet
    from cnas.models.ofa_net import build_supernet

    s = task.settings
    arch, r = resolve_arch(task.arch, s)
    loaders = load_data(s.dataset, s.data, resolution=r, val_split=s.val_split, batch_size=s.batch_size,
                        seed=s.seed, n_classes=s.n_classes)
    get_subnet(build_supernet(loaders.n_classes), arch)
    return 0


def warm_up(run, tasks, n: int) -> None:
    """Warm ``n`` workers (``run(fn, tasks)`` maps fn over the tasks): with inherited weights a 0-epoch copy of a
    task (build, load data, measure; no training, no files), else :func:`warm`."""
    tasks = (tasks * n)[:n]
    if tasks[0].settings.supernet_path:
        run(evaluate_candidate, [CandidateTask(t.arch, dataclasses.replace(t.settings, epochs=0), None, t.name)
                                 for t in tasks])
    else:
        run(warm, tasks)


def run_executor(make, tasks, n_noop: int) -> dict:
    t0 = time.perf_counter()
    ex = make()
    n_workers = getattr(ex, "n_workers", None) or getattr(ex, "capacity", 1)
    warm_up(ex.map, tasks, max(1, n_workers))  # start and warm the workers
    startup = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        res = ex.map(evaluate_candidate, tasks, labels=[t.name for t in tasks])
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        ex.map(noop, list(range(n_noop)))
        noop_s = (time.perf_counter() - t0) / n_noop
    finally:
        ex.close()
    failed = [r.error for r in res if not r.ok]
    if failed:
        raise SystemExit(f"evaluation failed: {failed[0]}")
    return {"startup": startup, "wall": wall, "noop": noop_s, "stats": [key(r.value) for r in res],
            "workers": n_workers}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8, help="candidates")
    add_protocol_args(ap, epochs=1, supernet="none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noop", type=int, default=64, help="no-op items for the dispatch latency")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--no-threads2", action="store_true", help="skip the 2-thread direct reference")
    args = ap.parse_args(argv)
    check_protocol(args, "executors.py")

    torch.set_num_threads(1)  # the in-process executor runs in this process: 1 thread, like each worker
    out = tempfile.mkdtemp(prefix="cnas-bench-exec-")
    tasks = make_tasks(args.n, args.epochs, args.resolution, args.seed, out, args.supernet)
    src = f"inherited from {args.supernet}" if args.supernet else "random init"
    print(f"{args.n} candidates, {args.epochs} epoch(s), {src}, on digits at {args.resolution} px; "
          f"{os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}", flush=True)

    warm_up(lambda fn, ts: [fn(t) for t in ts], tasks, 1)  # as the executors' start-up does for each worker
    t_direct, ref = direct(tasks, 1)
    ref = [key(s) for s in ref]
    print(f"direct loop, 1 thread : {t_direct:7.1f} s  ({t_direct / args.n:.2f} s/candidate)", flush=True)
    if not args.no_threads2:
        t2, _ = direct(tasks, 2)
        print(f"direct loop, 2 threads: {t2:7.1f} s  (speed-up {t_direct / t2:.2f}x)", flush=True)

    rows = []

    def local(n):
        if n == 1:
            return lambda: get_executor("local", n_workers=1, progress=False)
        return lambda: get_executor("local", n_workers=n, progress=False)

    plans = []
    for n in args.workers:
        plans.append((f"local {'in-process' if n == 1 else f'{n} procs'}", n, local(n)))
    plans.append(("local 1 proc", 1, lambda: get_executor("local", n_workers=1, retries=1, progress=False)))
    ray_ex = None
    if not args.no_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray is not installed: skipping the Ray rows (pip install 'cnas[ray]')")
        else:
            t0 = time.perf_counter()
            ray_ex = get_executor("ray", n_workers=max(args.workers), progress=False)
            print(f"Ray local instance start ({max(args.workers)} CPUs): {time.perf_counter() - t0:.1f} s", flush=True)
            from cnas.executors import RayExecutor

            for n in args.workers:
                plans.append((f"ray {n} worker(s)", n, lambda n=n: RayExecutor(n_workers=n, progress=False)))
    try:
        for name, n, make in plans:
            r = run_executor(make, tasks, args.noop)
            r.update(name=name, n=n)
            rows.append(r)
            print(f"  {name:18s} done: {r['wall']:.1f} s", flush=True)
    finally:
        if ray_ex is not None:
            ray_ex.close()

    base = {}
    for r in rows:
        kind = r["name"].split()[0]
        if r["n"] == 1 and kind not in base:
            base[kind] = r["wall"]
    print()
    print(f"{'executor':18s} {'workers':>7s} {'start s':>8s} {'wall s':>8s} {'speed-up':>9s} {'ovh/task s':>11s} "
          f"{'noop/task ms':>13s} {'same stats':>10s}")
    for r in rows:
        kind = r["name"].split()[0]
        speed = base[kind] / r["wall"] if kind in base else float("nan")
        ovh = (r["wall"] * r["n"] - t_direct) / args.n
        same = "yes" if r["stats"] == ref else "NO"
        print(f"{r['name']:18s} {r['n']:7d} {r['startup']:8.1f} {r['wall']:8.1f} {speed:8.2f}x {ovh:11.2f} "
              f"{r['noop'] * 1000:13.1f} {same:>10s}")
    print(f"(speed-up: against the same executor with 1 worker; direct loop {t_direct:.1f} s; "
          f"load average now {os.getloadavg()[0]:.1f})")
    return 0 if all(r["stats"] == ref for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
