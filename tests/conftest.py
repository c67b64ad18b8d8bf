"""Shared test doubles: a fake "training" that is a deterministic function of the arch, and an executor that
writes real net folders with it, so that the search loop and post-search are tested on real files in seconds."""

from pathlib import Path

import numpy as np

from cnas import complexity
from cnas.executors import TaskResult
from cnas.fileio import atomic_write_json


def fake_stats(arch: dict) -> dict:
    """Stats in the real format: a top1 error that falls with depth, expansion and kernel; exact counts."""
    c = complexity.count(arch, 10)
    top1 = 40.0 - 1.2 * sum(arch["d"]) - 0.3 * float(np.mean(arch["e"])) - 0.15 * float(np.mean(arch["ks"]))
    stats = {"top1": round(top1, 4), "params": c["params"], "macs": c["macs"], "activations": c["activations"],
             "test_top1": round(top1 + 1.0, 4)}
    if "exit_costs" in c:
        stats["avg_macs"] = round(0.6 * c["exit_costs"][0] + 0.4 * c["exit_costs"][-1], 4)
    return stats


class FakeExecutor:
    """Writes ``net_Y.subnet`` and ``net_Y.stats`` (and a ``ckpt.pth`` stand-in with ``ckpt=True``) per task.
    ``fail(arch)`` makes a task fail; ``crash_after`` simulates a kill after that many tasks."""

    def __init__(self, fail=lambda arch: False, crash_after=None, ckpt=False):
        self.calls, self.fail, self.crash_after, self.ckpt = 0, fail, crash_after, ckpt

    def map(self, fn, items, labels=None):
        out = []
        for i, task in enumerate(items):
            if self.crash_after is not None and self.calls >= self.crash_after:
                raise KeyboardInterrupt("simulated kill")
            self.calls += 1
            atomic_write_json(f"{task.out_dir}/{task.name}.subnet", task.arch)
            if self.fail(task.arch):
                out.append(TaskResult(i, False, error="RuntimeError: simulated OOM"))
                continue
            stats = fake_stats(task.arch)
            atomic_write_json(f"{task.out_dir}/{task.name}.stats", stats)
            if self.ckpt:
                (Path(task.out_dir) / "ckpt.pth").write_bytes(b"weights of " + task.name.encode())
            out.append(TaskResult(i, True, value=stats))
        return out

    def close(self):
        pass
