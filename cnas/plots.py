"""PNG plots of a search: the archive with this iteration's candidates (predicted and measured), the
non-dominated front, and the hypervolume curve. matplotlib with the Agg backend (no screen needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnas.fileio import _atomic
from cnas.objectives import OBJECTIVES
from cnas.problems import non_dominated


def plot_iteration(folder: Path, it: int, objectives: list[str], F_archive: np.ndarray, F_new: np.ndarray,
                   F_predicted: np.ndarray | None, hv_history: list[float]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name):
        path = folder / name
        _atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110), "wb")
        plt.close(fig)
        written.append(path)

    def label(n):
        return OBJECTIVES[n].label()

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    if len(objectives) >= 2:
        x, y = 1, 0
        ax.scatter(F_archive[:, x], F_archive[:, y], s=12, c="0.6", label="archive")
        nd = non_dominated(F_archive)
        front = F_archive[nd][np.argsort(F_archive[nd][:, x])]
        ax.step(front[:, x], front[:, y], where="post", c="C0", lw=1.5, label="front")
        if F_predicted is not None and len(F_predicted):
            ax.scatter(F_predicted[:, x], F_predicted[:, y], marker="x", c="C1", label="candidates (predicted)")
        if len(F_new):
            ax.scatter(F_new[:, x], F_new[:, y], s=24, facecolors="none", edgecolors="C3",
                       label="candidates (measured)")
        ax.set_xlabel(label(objectives[x]))
        ax.set_ylabel(label(objectives[y]))
    else:
        ax.plot(np.arange(len(F_archive)), F_archive[:, 0], ".", c="0.6", label="archive (evaluation order)")
        ax.plot(np.arange(len(F_archive)), np.minimum.accumulate(F_archive[:, 0]), c="C0", label="best so far")
        ax.set_xlabel("evaluated archs")
        ax.set_ylabel(label(objectives[0]))
    ax.set_title(f"iteration {it}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save(fig, f"iter_{it}.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(len(hv_history)), hv_history, marker="o")
    ax.set_xlabel("iteration")
    ax.set_ylabel("normalized hypervolume")
    ax.grid(alpha=0.3)
    save(fig, "hv.png")
    return written
