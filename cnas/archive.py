"""The archive of evaluated architectures and the run store: the one home of a search folder's layout, of the
typed ``iter_X.stats`` schema (:class:`IterRecord`), of net folders, of resuming and of importing the original
system's runs.

Layout of a search folder (compatible with the original where it matters)::

    <save>/config.json                 validated settings of the run
    <save>/iter_X/net_Y/net_Y.subnet   arch JSON
    <save>/iter_X/net_Y/net_Y.stats    measured stats (written atomically by the evaluation)
    <save>/iter_X/net_Y/ckpt.pth       trained weights (--save_ckpt)
    <save>/iter_X.stats                the archive and the iteration's record (written atomically, X >= 0)
    <save>/failed/it_X_net_Y/          archs whose evaluation failed: net_Y.subnet + error.txt
    <save>/.lock                       while a process works in the folder: its pid (:class:`FolderLock`)

A folder with ``config.json`` and no ``iter_X.stats`` is a search stopped during its initial design
(:meth:`RunStore.unfinished_design`): the same command, or ``--resume <save>/iter_0``, draws the design again from
the seed and reuses its finished net folders (:func:`resume_point`).

``iter_X.stats`` keeps the original's keys (``archive`` as ``[[arch, f1, f2, ...], ...]``, ``candidates``,
``first_surrogate``, ``sec_surrogate``, ``hv``, ``alpha_norm``) and adds what resuming and reading need:
``objectives``, ``iteration``, ``entries`` (each archive member's arch, iteration, net folder and stats), ``failed``,
``ref_point``, ``rng_state``, ``timing``, ``n_failed``, ``settings_hash``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from cnas.errors import ConfigError, StatsFileError
from cnas.fileio import FolderLock, atomic_write_json, atomic_write_text, read_json, remove_temp_files
from cnas.layout import ERROR_FILE, pick_name, stats_file, subnet_file
from cnas.spaces.geometry import arch_key

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

    key = staticmethod(arch_key)

    def add(self, entry: Entry) -> None:
        k = self.key(entry.arch)
        self.entries = [e for e in self.entries if self.key(e.arch) != k]
        self.entries.append(entry)

    def archs(self) -> list[dict]:
        return [e.arch for e in self.entries]


# ---------------------------------------------------------------- iteration stats files
@dataclass
class IterRecord:
    """One ``iter_X.stats``: the archive after iteration X and that iteration's record.

    A file of the original system has only ``archive`` (and perhaps ``hv``/``alpha_norm``): it reads with
    ``entries=None`` and the other fields empty."""

    iteration: int
    objectives: list[str]
    archive: list[list]  # [[arch, f1, f2, ...], ...] in the objectives' order (the original's key)
    entries: list[Entry] | None = None  # each archive member's arch, stats, iteration and folder
    candidates: list[list] = field(default_factory=list)  # this iteration's archs with their measured values
    surrogates: dict = field(default_factory=dict)  # predictor name, winner, n_train, rmse/rho/tau per objective
    hv: float = 0.0
    hv_history: list[float] = field(default_factory=list)
    ref_point: list[float] | None = None
    alpha_norm: float | None = None
    n_feasible: int = 0
    failed: list[Failure] = field(default_factory=list)
    timing: dict = field(default_factory=dict)
    settings_hash: str | None = None
    rng_state: dict | None = None

    def to_json(self) -> dict:
        first = self.surrogates.get(self.objectives[0], {}) if self.objectives else {}
        sec = self.surrogates.get(self.objectives[1], {}) if len(self.objectives) > 1 else {}
        return {"format": STATS_FORMAT, "iteration": self.iteration, "objectives": self.objectives,
                "archive": self.archive, "candidates": self.candidates, "first_surrogate": first,
                "sec_surrogate": sec, "surrogates": self.surrogates, "hv": self.hv, "hv_history": self.hv_history,
                "ref_point": self.ref_point, "alpha_norm": self.alpha_norm, "n_feasible": self.n_feasible,
                "n_failed": len(self.failed), "failed": [f.to_json() for f in self.failed], "timing": self.timing,
                "settings_hash": self.settings_hash, "rng_state": self.rng_state,
                "entries": None if self.entries is None else [e.to_json() for e in self.entries]}

    @classmethod
    def from_json(cls, d: dict, path: Path, iteration: int) -> "IterRecord":
        """Read and check a whole record: a cnas file (it has ``format``) must hold every field, each of its type
        (the random state one numpy accepts, a reference point of finite numbers, one per objective, archive rows
        of one arch and one number per objective) and no unknown key; the original's holds ``archive`` rows."""
        def bad(what: str) -> StatsFileError:
            return StatsFileError(f"{path}: {what}; the file is damaged (resume from an earlier iter_X.stats)")

        if not isinstance(d, dict) or "archive" not in d:
            raise StatsFileError(f"{path} is not an iteration stats file (no 'archive' key)")
        cnas_file = "format" in d
        if cnas_file:
            if d["format"] != STATS_FORMAT:
                raise StatsFileError(f"{path}: format {d['format']!r} is not {STATS_FORMAT!r}; this cnas cannot "
                                     "read it")
            unknown = sorted(set(d) - STATS_KEYS)
            if unknown:
                raise bad(f"unknown key(s) {', '.join(map(repr, unknown))}")
            missing = sorted(k for k in ("iteration", "objectives", "entries", "rng_state", "ref_point") if k not in d)
            if missing:
                raise bad(f"key(s) {', '.join(map(repr, missing))} missing")
        if not isinstance(d["archive"], list):
            raise StatsFileError(f"{path}: 'archive' must be a list of [arch, f1, f2, ...]")
        for i, row in enumerate(d["archive"]):
            if not isinstance(row, list) or not row or not isinstance(row[0], dict):
                raise StatsFileError(f"{path}: archive row {i} is not [arch, f1, ...]")
        objectives = d.get("objectives") or []
        if not isinstance(objectives, list) or not all(isinstance(o, str) for o in objectives):
            raise bad("'objectives' is not a list of names")
        if cnas_file:
            if not objectives:
                raise bad("'objectives' is empty")
            if d["iteration"] != iteration or isinstance(d["iteration"], bool):
                raise bad(f"'iteration' is {d['iteration']!r}, not the {iteration} of its name")
            for i, row in enumerate(d["archive"]):
                if len(row) != 1 + len(objectives) or not all(_number(v, nan_ok=True) for v in row[1:]):
                    raise bad(f"archive row {i} is not [arch, {', '.join(objectives)}]")
        rec = cls(int(d.get("iteration", iteration)) if isinstance(d.get("iteration", iteration), int) else iteration,
                  objectives, d["archive"])
        if _number(d.get("hv"), nan_ok=True):
            rec.hv = float(d["hv"])
        elif cnas_file:
            raise bad(f"'hv' is {d.get('hv')!r}, not a number")
        if _number(d.get("alpha_norm")):
            rec.alpha_norm = float(d["alpha_norm"])
        elif cnas_file and d.get("alpha_norm") is not None:
            raise bad(f"'alpha_norm' is {d.get('alpha_norm')!r}, not a finite number")
        if d.get("entries") is None and not cnas_file:
            return rec
        if not isinstance(d.get("entries"), list):
            raise bad("'entries' is not a list")
        try:
            rec.entries = [Entry.from_json(e) for e in d["entries"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StatsFileError(f"{path}: a malformed 'entries' item ({exc})") from None
        for i, e in enumerate(rec.entries):
            if not (isinstance(e.arch, dict) and isinstance(e.stats, dict)):
                raise bad(f"entry {i} does not hold an arch and its stats (JSON objects)")
        rng, ref = d.get("rng_state"), d.get("ref_point")
        check_rng_state(rng, bad)
        if not (isinstance(ref, list) and len(ref) == len(objectives) and all(_number(v) for v in ref)):
            raise bad(f"'ref_point' is not a list of {len(objectives)} finite numbers")
        hist = d.get("hv_history", [rec.hv])
        if not (isinstance(hist, list) and all(_number(v, nan_ok=True) for v in hist)):
            raise bad("'hv_history' is not a list of numbers")
        for key, kind in (("candidates", list), ("surrogates", dict), ("timing", dict), ("failed", list)):
            if d.get(key) is not None and not isinstance(d[key], kind):
                raise bad(f"{key!r} is not a {'list' if kind is list else 'mapping'}")
        if d.get("settings_hash") is not None and not isinstance(d["settings_hash"], str):
            raise bad("'settings_hash' is not a string")
        if d.get("n_feasible") is not None and not (isinstance(d["n_feasible"], int)
                                                    and not isinstance(d["n_feasible"], bool)):
            raise bad("'n_feasible' is not an integer")
        rec.rng_state, rec.ref_point, rec.hv_history = rng, [float(v) for v in ref], [float(v) for v in hist]
        rec.candidates = d.get("candidates") or []
        rec.surrogates = d.get("surrogates") or {}
        rec.n_feasible = int(d.get("n_feasible") or 0)
        rec.timing = d.get("timing") or {}
        rec.settings_hash = d.get("settings_hash")
        rec.failed = [Failure(f.get("arch", {}), int(f.get("iteration", iteration)), str(f.get("name", "")),
                              str(f.get("error", ""))) for f in d.get("failed") or [] if isinstance(f, dict)]
        return rec


#: the keys of a cnas ``iter_X.stats`` (what :meth:`IterRecord.to_json` writes)
STATS_KEYS = frozenset({"format", "iteration", "objectives", "archive", "candidates", "first_surrogate",
                        "sec_surrogate", "surrogates", "hv", "hv_history", "ref_point", "alpha_norm", "n_feasible",
                        "n_failed", "failed", "timing", "settings_hash", "rng_state", "entries"})


def _number(v: Any, nan_ok: bool = False) -> bool:
    """A real number (not a bool), finite unless ``nan_ok`` (an objective a failed measurement left NaN)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (nan_ok or math.isfinite(v))


def check_rng_state(state: Any, bad) -> None:
    """``state`` is a numpy ``default_rng`` state that numpy accepts; else ``bad(what)`` is raised."""
    import numpy as np

    if not (isinstance(state, dict) and isinstance(state.get("state"), dict) and "bit_generator" in state):
        raise bad("'rng_state' is missing or not a random generator state")
    gen = np.random.default_rng(0).bit_generator
    if state.get("bit_generator") != type(gen).__name__:
        raise bad(f"'rng_state' is a {state.get('bit_generator')!r} state, not {type(gen).__name__}")
    try:
        gen.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise bad(f"'rng_state' is not a valid random generator state ({' '.join(str(exc).split())[:120]})") \
            from None


#: the keys of a cnas ``config.json``
CONFIG_KEYS = frozenset({"search", "evaluation", "objectives", "n_classes", "settings_hash",
                         "imported_from"})  # imported_from: X of a run of the original system resumed at X


def check_config_record(rec: Any, path: Path) -> dict:
    """A whole ``config.json`` record: a mapping of the keys cnas writes, ``search`` and ``evaluation`` mappings,
    ``objectives`` a list of names, ``settings_hash`` a string, ``n_classes`` a positive integer. The settings'
    own values are checked by the settings classes that read them."""
    def bad(what: str) -> StatsFileError:
        return StatsFileError(f"{path}: {what}; it is not the config.json of a cnas search (restore it, or start "
                              "a new --save)")

    if not isinstance(rec, dict):
        raise bad("not a JSON object")
    unknown = sorted(set(rec) - CONFIG_KEYS)
    if unknown:
        raise bad(f"unknown key(s) {', '.join(map(repr, unknown))}")
    for part in ("search", "evaluation"):
        if not isinstance(rec.get(part), dict):
            raise bad(f"{part!r} is missing or not a mapping of settings")
    if "objectives" in rec and not (isinstance(rec["objectives"], list) and rec["objectives"]
                                    and all(isinstance(o, str) for o in rec["objectives"])):
        raise bad("'objectives' is not a list of names")
    if "settings_hash" in rec and not isinstance(rec["settings_hash"], str):
        raise bad("'settings_hash' is not a string")
    n = rec.get("n_classes")
    if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and n > 0):
        raise bad(f"'n_classes' is {n!r}, not a positive integer")
    return rec


def iter_stats_path(save: str | Path, iteration: int) -> Path:
    return Path(save) / f"iter_{iteration}.stats"


def write_iter_stats(save: str | Path, record: IterRecord) -> Path:
    return atomic_write_json(iter_stats_path(save, record.iteration), record.to_json(), indent=1)


def read_iter_stats(path: str | Path) -> IterRecord:
    """A cnas ``iter_X.stats`` (all fields) or the original's (``archive`` only): one clear error otherwise."""
    p = Path(path)
    return IterRecord.from_json(read_json(p, "stats file", StatsFileError), p, iteration_of(p))


def iteration_of(path: str | Path) -> int:
    """``X`` of ``<save>/iter_X.stats`` or ``<save>/iter_X``."""
    name = Path(path).name
    stem = name[: -len(".stats")] if name.endswith(".stats") else name
    m = _ITER_RE.match(stem)
    if not m:
        raise StatsFileError(f"{path} is not named iter_X.stats (or iter_X)")
    return int(m.group(1))


@dataclass(frozen=True)
class RunPath:
    """Where a ``--resume``/``--expr`` argument points: the search folder, its ``iter_X.stats`` (None when only
    net folders exist, as in a run of the original system given as ``<save>/iter_X``) and X (None: all)."""

    save: Path
    stats: Path | None
    iteration: int | None


def locate(expr: str | Path, flag: str = "--resume", folder_ok: bool = False) -> RunPath:
    """Resolve ``<save>/iter_X.stats``, ``<save>/iter_X`` (the original's form) or, with ``folder_ok``, the
    search folder itself (its latest ``iter_X.stats``, else all its net folders)."""
    p = Path(expr)
    if folder_ok and p.is_dir() and not _ITER_RE.match(p.name):
        its = sorted((iteration_of(f), f) for f in p.glob("iter_*.stats") if _ITER_RE.match(f.stem))
        if its:
            return RunPath(p, its[-1][1], its[-1][0])
        if any(p.glob("iter_*/net_*")):
            return RunPath(p, None, None)
        raise StatsFileError(f"{flag} {p}: no iter_X.stats and no iter_*/net_* folders in it")
    if p.suffix != ".stats" and not p.is_file() and p.with_name(p.name + ".stats").is_file():
        p = p.with_name(p.name + ".stats")
    if not p.exists():
        raise StatsFileError(f"{flag} {p}: no such file; give <save>/iter_X.stats (or <save>/iter_X)")
    return RunPath(p.parent, p if p.is_file() else None, iteration_of(p))


def latest_stats(save: str | Path) -> Path | None:
    """The ``iter_X.stats`` of ``save`` with the largest X (None: none)."""
    its = sorted((int(m.group(1)), f) for f in Path(save).glob("iter_*.stats") if (m := _ITER_RE.match(f.stem)))
    return its[-1][1] if its else None


def resume_point(expr: str | Path) -> RunPath:
    """What ``--resume`` continues: :func:`locate`'s answer, and for a cnas search (its ``config.json`` exists)
    killed before ``iter_0.stats`` was written, ``<save>/iter_0`` or ``<save>/iter_0.stats`` gives
    ``RunPath(save, None, 0)``: the initial design is evaluated again, reusing its finished candidates. A later
    iteration without its stats file did not finish: resume from the one before."""
    p = Path(expr)
    name = p.name[: -len(".stats")] if p.name.endswith(".stats") else p.name
    m = _ITER_RE.match(name)
    store = RunStore(p.parent)
    if m and not (p.parent / f"{name}.stats").is_file() and store.config_path.is_file() \
            and "imported_from" not in store.read_config():
        save, x = p.parent, int(m.group(1))
        latest = latest_stats(save)
        if x == 0 and latest is None:
            return RunPath(save, None, 0)
        fix = f"resume from {latest}" if latest is not None else f"run the same command again to continue {save}"
        raise StatsFileError(f"--resume {p}: iteration {x} did not finish (no {name}.stats); {fix}")
    return locate(expr, "--resume")


# ---------------------------------------------------------------- net folders (cnas's and the original's)
def _num(p: Path, rx: re.Pattern) -> int | None:
    m = rx.match(p.name)
    return int(m.group(1)) if m else None


def read_net_folder(folder: Path, name: str | None = None) -> tuple[dict | None, dict | None]:
    """``(arch, stats)`` of ``folder/<name>.subnet`` and ``.stats`` (name: the folder's); None for a file that is
    missing or unreadable."""
    name = name or folder.name

    def load(path: Path):
        if not path.is_file():
            return None
        try:
            v = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return v if isinstance(v, dict) else None

    return load(subnet_file(folder, name)), load(stats_file(folder, name))


def scan_net_folders(save: str | Path, max_iteration: int | None = None) -> tuple[list[Entry], list[Failure]]:
    """Rebuild an archive from ``<save>/iter_*/net_*/net_*.subnet`` (+ ``.stats``), as written by cnas or by the
    original system. Folders are visited in numeric (iteration, net) order and a duplicate arch keeps its latest
    evaluation (the original kept whichever the glob listed last). Nets without stats are returned as failures.
    """
    save = Path(save)
    entries: dict[str, Entry] = {}
    failures: list[Failure] = []
    iters = sorted((n, p) for p in save.glob("iter_*") if p.is_dir() and (n := _num(p, _ITER_RE)) is not None)
    for it, ipath in iters:
        if max_iteration is not None and it > max_iteration:
            continue
        nets = sorted((n, p) for p in ipath.glob("net_*") if p.is_dir() and (n := _num(p, _NET_RE)) is not None)
        for _, npath in nets:
            subnet = subnet_file(npath, npath.name)
            if not subnet.is_file():
                continue
            arch, stats = read_net_folder(npath)
            if arch is None:
                failures.append(Failure({}, it, npath.name, f"unreadable arch file {subnet}"))
                continue
            if stats is None:
                missing = stats_file(npath, npath.name)
                failures.append(Failure(arch, it, npath.name, f"no readable stats file {missing}"))
                continue
            e = Entry(arch, stats, it, npath.name, f"{ipath.name}/{npath.name}")
            entries.pop(Archive.key(arch), None)
            entries[Archive.key(arch)] = e
    return list(entries.values()), failures


def record_failure(save: str | Path, failure: Failure) -> Path:
    """Keep a failed arch under ``<save>/failed/it_X_net_Y/`` with its error (never overwrites a stats file)."""
    folder = Path(save) / "failed" / f"it_{failure.iteration}_{failure.name}"
    atomic_write_json(subnet_file(folder, failure.name), failure.arch, indent=None)
    atomic_write_text(folder / ERROR_FILE, failure.error.rstrip() + "\n")
    return folder


def copy_net_folder(src: Path, dst: Path) -> None:
    """Copy a candidate folder for post-search (``*.subnet`` -> ``net.subnet``, ``*.stats`` -> ``net.stats``)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if not f.is_file() or f.name.startswith("."):
            continue
        shutil.copy2(f, dst / pick_name(f.name))


def entries_from_original_archive(rows: Iterable[list], objectives: list[str]) -> list[Entry]:
    """Entries from an original-format ``archive`` list (``[arch, f1, f2, ...]``) when no net folders exist."""
    out = []
    for i, row in enumerate(rows):
        stats: dict[str, Any] = {}
        for name, v in zip(objectives, row[1:]):
            stats[name] = v
        out.append(Entry(row[0], stats, -1, f"net_{i}", ""))
    return out


# ---------------------------------------------------------------- the run store
class RunStore:
    """A search folder: its ``config.json``, ``iter_X.stats`` files, net folders and failures (see the module
    docstring for the layout). Every file is written atomically; nothing is overwritten that a later read needs."""

    def __init__(self, save: str | Path):
        self.save = Path(save)

    @property
    def config_path(self) -> Path:
        return self.save / "config.json"

    @property
    def plots(self) -> Path:
        return self.save / "plots"

    def iter_folder(self, iteration: int) -> Path:
        return self.save / f"iter_{iteration}"

    @staticmethod
    def net(iteration: int, j: int) -> tuple[str, str]:
        """``(name, folder relative to the search folder)`` of candidate ``j`` of an iteration."""
        return f"net_{j}", f"iter_{iteration}/net_{j}"

    def holds_search(self) -> bool:
        return self.save.exists() and (self.config_path.exists() or any(self.save.glob("iter_*")))

    def check_folder(self) -> None:
        """``--save`` can be a search folder: not a file, nor inside one."""
        for p in (self.save, *self.save.parents):
            if p.exists():
                if not p.is_dir():
                    raise ConfigError(f"--save {self.save}: {p} is a file, not a folder; choose another --save")
                break

    def unfinished_design(self) -> bool:
        """The folder holds a cnas search stopped before ``iter_0.stats`` was written (``config.json`` only; not
        a run of the original system that a resume imported)."""
        if not self.config_path.is_file() or latest_stats(self.save) is not None:
            return False
        rec = self.read_config()
        return "imported_from" not in rec

    def check_new(self) -> None:
        """Refuse a folder that already holds a search (one with an ``iter_X.stats``, or another system's net
        folders); an unfinished initial design (``config.json`` only) is :meth:`unfinished_design`'s."""
        latest = latest_stats(self.save) if self.save.is_dir() else None
        if latest is not None:
            raise ConfigError(f"--save {self.save} already holds a search; resume it with --resume {latest} or "
                              "choose another --save")
        imported = self.config_path.is_file() and "imported_from" in self.read_config()
        if self.save.is_dir() and (imported or not self.config_path.exists()) and any(self.save.glob("iter_*")):
            raise ConfigError(f"--save {self.save} already holds net folders (iter_*); resume them with --resume "
                              f"{self.save}/iter_X or choose another --save")

    def start(self, config_record: dict) -> None:
        """A new search: refuse a folder that already holds one, then write ``config.json`` (call it holding
        :meth:`lock`, so that the check and the write are one step for other cnas processes)."""
        self.check_new()
        if self.config_path.exists():
            raise ConfigError(f"--save {self.save} already holds a search; run the same command again to continue "
                              f"it or choose another --save")
        self.save.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config_path, config_record)

    def lock(self) -> FolderLock:
        """The folder's lock (``<save>/.lock``, the holder's pid): one process at a time works in a search."""
        return FolderLock(self.save, "--save")

    def clean(self) -> list[Path]:
        """Delete what killed atomic writes left behind (``.*.tmp`` in the folder, its plots, net and failure
        folders); call it holding :meth:`lock`."""
        folders = [self.save, self.plots, *self.save.glob("iter_*/net_*"), *self.save.glob("failed/*")]
        return [p for f in folders if f.is_dir() for p in remove_temp_files(f)]

    def read_config(self) -> dict | None:
        if not self.config_path.exists():
            return None
        rec = read_json(self.config_path, "config file", StatsFileError)
        return check_config_record(rec, self.config_path)

    def write_config(self, config_record: dict) -> None:
        atomic_write_json(self.config_path, config_record)

    def write(self, record: IterRecord) -> Path:
        return write_iter_stats(self.save, record)

    def finished(self, iteration: int, name: str, arch: dict) -> dict | None:
        """The stats of a candidate that finished before an interruption (its folder holds the same arch and a
        readable stats file), else None."""
        got_arch, stats = read_net_folder(self.iter_folder(iteration) / name, name)
        return stats if got_arch is not None and got_arch == arch and stats is not None else None

    def record_failure(self, failure: Failure) -> Path:
        return record_failure(self.save, failure)

    def import_original(self, iteration: int, canonical) -> tuple[list[Entry], list[Failure]]:
        """The archive of a run of the original system (net folders up to ``iteration``), each arch put in
        cnas's canonical form by ``canonical(arch)``."""
        entries, failures = scan_net_folders(self.save, iteration)
        entries = [Entry(canonical(e.arch), e.stats, e.iteration, e.name, e.folder) for e in entries]
        if not entries:
            raise StatsFileError(f"no evaluated nets found under {self.save}/iter_*/net_*/ up to iteration "
                                 f"{iteration}")
        return entries, failures
