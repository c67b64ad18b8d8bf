"""The archive of evaluated architectures and the on-disk formats of a search (one home for both).

Layout of a search folder (compatible with the original where it matters)::

    <save>/config.json                 validated settings of the run
    <save>/iter_X/net_Y/net_Y.subnet   arch JSON
    <save>/iter_X/net_Y/net_Y.stats    measured stats (written atomically by the evaluation)
    <save>/iter_X/net_Y/ckpt.pth       trained weights (--save_ckpt)
    <save>/iter_X.stats                the archive and the iteration's record (written atomically, X >= 0)
    <save>/failed/it_X_net_Y/          archs whose evaluation failed: net_Y.subnet + error.txt

``iter_X.stats`` keeps the original's keys (``archive`` as ``[[arch, f1, f2, ...], ...]``, ``candidates``,
``first_surrogate``, ``sec_surrogate``, ``hv``, ``alpha_norm``) and adds what resuming and reading need:
``objectives``, ``iteration``, ``entries`` (each archive member's arch, iteration, net folder and stats), ``failed``,
``ref_point``, ``rng_state``, ``timing``, ``n_failed``, ``settings_hash``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from cnas.errors import StatsFileError
from cnas.fileio import atomic_write_json, atomic_write_text, read_json

STATS_FORMAT = "cnas-iter-stats/1"
_NET_RE = re.compile(r"^net_(\d+)$")
_ITER_RE = re.compile(r"^iter_(\d+)$")


@dataclass
class Entry:
    arch: dict
    stats: dict
    iteration: int
    name: str  # net_Y
    folder: str = ""  # relative to the search folder, e.g. iter_0/net_3

    def to_json(self) -> dict:
        return {"arch": self.arch, "stats": self.stats, "iteration": self.iteration, "name": self.name,
                "folder": self.folder}

    @classmethod
    def from_json(cls, d: dict) -> "Entry":
        return cls(d["arch"], d["stats"], int(d["iteration"]), str(d["name"]), str(d.get("folder", "")))


@dataclass
class Failure:
    arch: dict
    iteration: int
    name: str
    error: str

    def to_json(self) -> dict:
        return {"arch": self.arch, "iteration": self.iteration, "name": self.name, "error": self.error}


@dataclass
class Archive:
    """Every evaluated arch with its stats (a duplicate arch keeps its latest evaluation)."""

    entries: list[Entry] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def key(arch: dict) -> str:
        import json

        return json.dumps(arch, sort_keys=True)

    def keys(self) -> set[str]:
        return {self.key(e.arch) for e in self.entries}

    def add(self, entry: Entry) -> None:
        k = self.key(entry.arch)
        self.entries = [e for e in self.entries if self.key(e.arch) != k]
        self.entries.append(entry)

    def archs(self) -> list[dict]:
        return [e.arch for e in self.entries]

    def stat(self, key: str, default: float = np.nan) -> np.ndarray:
        out = []
        for e in self.entries:
            v = e.stats.get(key, default)
            if isinstance(v, list):
                v = v[0] if v else default
            out.append(np.nan if v is None else float(v))
        return np.asarray(out, dtype=float)


# ---------------------------------------------------------------- iteration stats files
def iter_stats_path(save: str | Path, iteration: int) -> Path:
    return Path(save) / f"iter_{iteration}.stats"


def write_iter_stats(save: str | Path, iteration: int, payload: dict) -> Path:
    return atomic_write_json(iter_stats_path(save, iteration), {"format": STATS_FORMAT, **payload}, indent=1)


def read_iter_stats(path: str | Path) -> dict:
    """A cnas ``iter_X.stats`` (all keys) or the original's (``archive`` only): one clear error otherwise."""
    p = Path(path)
    d = read_json(p, "stats file", StatsFileError)
    if not isinstance(d, dict) or "archive" not in d:
        raise StatsFileError(f"{p} is not an iteration stats file (no 'archive' key)")
    if not isinstance(d["archive"], list):
        raise StatsFileError(f"{p}: 'archive' must be a list of [arch, f1, f2, ...]")
    for i, row in enumerate(d["archive"]):
        if not isinstance(row, list) or not row or not isinstance(row[0], dict):
            raise StatsFileError(f"{p}: archive row {i} is not [arch, f1, ...]")
    if "entries" in d:
        try:
            d["entries"] = [Entry.from_json(e) for e in d["entries"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise StatsFileError(f"{p}: a malformed 'entries' item ({exc})") from None
    return d


def iteration_of(path: str | Path) -> int:
    """``X`` of ``<save>/iter_X.stats`` or ``<save>/iter_X``."""
    name = Path(path).name
    stem = name[: -len(".stats")] if name.endswith(".stats") else name
    m = _ITER_RE.match(stem)
    if not m:
        raise StatsFileError(f"{path} is not named iter_X.stats (or iter_X)")
    return int(m.group(1))


# ---------------------------------------------------------------- net folders (cnas's and the original's)
def _num(p: Path, rx: re.Pattern) -> int | None:
    m = rx.match(p.name)
    return int(m.group(1)) if m else None


def scan_net_folders(save: str | Path, max_iteration: int | None = None) -> tuple[list[Entry], list[Failure]]:
    """Rebuild an archive from ``<save>/iter_*/net_*/net_*.subnet`` (+ ``.stats``), as written by cnas or by the
    original system. Folders are visited in numeric (iteration, net) order and a duplicate arch keeps its latest
    evaluation (the original kept whichever the glob listed last). Nets without stats are returned as failures.
    """
    import json

    save = Path(save)
    entries: dict[str, Entry] = {}
    failures: list[Failure] = []
    iters = sorted((n, p) for p in save.glob("iter_*") if p.is_dir() and (n := _num(p, _ITER_RE)) is not None)
    for it, ipath in iters:
        if max_iteration is not None and it > max_iteration:
            continue
        nets = sorted((n, p) for p in ipath.glob("net_*") if p.is_dir() and (n := _num(p, _NET_RE)) is not None)
        for _, npath in nets:
            subnet = npath / f"{npath.name}.subnet"
            if not subnet.is_file():
                continue
            try:
                arch = json.loads(subnet.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                failures.append(Failure({}, it, npath.name, f"unreadable arch file {subnet}"))
                continue
            stats_path = npath / f"{npath.name}.stats"
            stats = None
            if stats_path.is_file():
                try:
                    stats = json.loads(stats_path.read_text())
                except (json.JSONDecodeError, UnicodeDecodeError):
                    stats = None
            if not isinstance(stats, dict):
                failures.append(Failure(arch, it, npath.name, f"no readable stats file {stats_path}"))
                continue
            e = Entry(arch, stats, it, npath.name, f"{ipath.name}/{npath.name}")
            entries.pop(Archive.key(arch), None)
            entries[Archive.key(arch)] = e
    return list(entries.values()), failures


def record_failure(save: str | Path, failure: Failure) -> Path:
    """Keep a failed arch under ``<save>/failed/it_X_net_Y/`` with its error (never overwrites a stats file)."""
    folder = Path(save) / "failed" / f"it_{failure.iteration}_{failure.name}"
    atomic_write_json(folder / f"{failure.name}.subnet", failure.arch, indent=None)
    atomic_write_text(folder / "error.txt", failure.error.rstrip() + "\n")
    return folder


def copy_net_folder(src: Path, dst: Path) -> None:
    """Copy a candidate folder for post-search (``*.subnet`` -> ``net.subnet``, ``*.stats`` -> ``net.stats``)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if not f.is_file() or f.name.startswith("."):
            continue
        name = "net.subnet" if f.suffix == ".subnet" else "net.stats" if f.suffix == ".stats" else f.name
        shutil.copy2(f, dst / name)


def entries_from_original_archive(rows: Iterable[list], objectives: list[str]) -> list[Entry]:
    """Entries from an original-format ``archive`` list (``[arch, f1, f2, ...]``) when no net folders exist."""
    out = []
    for i, row in enumerate(rows):
        stats: dict[str, Any] = {}
        for name, v in zip(objectives, row[1:]):
            stats[name] = v
        out.append(Entry(row[0], stats, -1, f"net_{i}", ""))
    return out
