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


def write_supernet_files(d: Path) -> Path:
    """Supernet files in the real formats under ``d``: ``ok.pth`` (a cnas digits supernet), ``truncated.pth``,
    ``empty.pth``, ``text.pth``, ``wide.pth`` (width 1.2, official layout), ``classes.pth`` (5 classes),
    ``space.pth`` (another kernel set) and ``folder.pth`` (a folder)."""
    import torch

    from cnas.models import build_supernet, save_supernet

    torch.manual_seed(0)
    net = build_supernet(10)
    save_supernet(d / "ok.pth", net, {"dataset": "digits"})
    data = (d / "ok.pth").read_bytes()
    (d / "truncated.pth").write_bytes(data[: len(data) // 2])
    (d / "empty.pth").write_bytes(b"")
    (d / "text.pth").write_text("not a checkpoint\n")
    torch.save({"state_dict": build_supernet(1000, width_mult=1.2).state_dict()}, d / "wide.pth")
    save_supernet(d / "classes.pth", build_supernet(5))
    save_supernet(d / "space.pth", net, {"ks_list": [3, 5]})
    (d / "folder.pth").mkdir()
    return d
