"""``python -m cnas.post_search``: pick networks from a finished search and copy them out for fine-tuning.

    python -m cnas.post_search --expr results/run/iter_30.stats --save results/picks -n 3 --prefer trade-off
    python -m cnas.post_search --expr results/run/iter_30.stats -n 2 --prefer macs --n_exits 2
    python -m cnas.post_search --expr old_run/iter_10 --get_archive --n_classes 10     # a run of the original

Selection (all objectives minimized; values and constraints from the run's objective set,
:class:`cnas.objectives.ObjectiveSet`, built from its ``config.json``):

* only feasible archs (``--include_infeasible`` to keep all), only those with ``--n_exits K`` exits if given,
  rows with a missing (non-finite) objective value are left out with a note;
* one objective: the ``n`` best, folders ``net-<first_obj>_<rank>``;
* ``--prefer trade-off`` (two or more objectives): the ``n`` points of the non-dominated front with the highest
  trade-off value ``mu`` (pymoo's high trade-off decision making): for front point i and its neighbours j within
  ``--radius`` (Euclidean, on objectives normalized to [0, 1] over the front; the ``min(2 m, |front| - 1)``
  nearest ones when the radius holds fewer, as pymoo's ``NeighborFinder`` with ``n_min_neigbors='auto'``),
  ``mu_i = min_j sum(max(0, F_j - F_i)) / sum(max(0, F_i - F_j))`` (the least sacrifice per unit of gain);
  rank 0 has the highest ``mu``;
* ``--prefer <objective>``: the ``n`` front points lowest in that objective (any registered objective that can be
  computed for the run), rank 0 the lowest;
* the most accurate arch (lowest first objective) is always included: when it is not among the ``n`` picks it
  is added as rank ``n``, as the original appended it.

Output in ``--save``: per pick ``net-<prefer>_<rank>[_nExits-K]/`` holding a copy of the candidate's folder
(``net.subnet``, ``net.stats``, ``ckpt.pth`` when the search kept weights) and ``pick.json`` (where it came from,
its objective values, the run's evaluation settings that fine-tuning starts from); with ``--supernet_path``,
picks without ``ckpt.pth`` also get ``inherited.pth`` (the subnet's weights extracted from the supernet);
``results.csv`` (one row per pick with that pick's own values); ``front.png`` (archive, front, picks);
and a printed table.

Deviations from the original (``post_search.py``), and why:

* Normalization and radius: pymoo's ``HighTradeoffPoints`` measures neighbourhoods on the raw objectives (top1 in
  % next to MACs in millions, so the 0.125 radius meant "nearest neighbours only") and ignores the ``epsilon`` it
  is given; pymoo 0.6 also dropped ``n_survive`` (it returns only the upper-tail outliers of ``mu``). cnas
  computes the same ``mu`` on normalized objectives with the radius honoured and ranks by it; the minimum number
  of neighbours excludes the point itself (pymoo counted it, so a 2-point front had no neighbours).
* Alignment: the original sorted by f1 and dropped rows with negative values without dropping the same rows of
  the arch list, so picks could get another arch's folder; here values, archs and folders stay one record.
* ``--n_exits`` counts exits with :func:`cnas.spaces.exit_mask` (EDANAS ``t`` and NACHOS ``b``; the original
  raised KeyError for EDANAS).
* ``--get_archive`` reads net folders without rewriting their stats files, and a duplicate arch keeps its latest
  evaluation (the original took whichever folder the glob listed last).
* ``results.csv`` has one row per pick with that pick's stats (the original wrote the last pick's on every row);
  it is written by default (``--save_stats_csv false`` skips it).
* Exact objectives of archs imported from the original system are counted by cnas (stage-aware ks/e),
  since that is the network cnas fine-tunes and exports; a note says how many stored values differ.
* Folder suffix ``_nExits-K`` instead of ``_nExits:K`` (a colon breaks Windows paths and scp).
* Empty archive, unknown objective, ``-n`` larger than the front: one line and exit code 2.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from cnas import archive as arc
from cnas.cli import ArgumentParser, str2bool
from cnas.errors import ArchError, CheckpointError, ConfigError, StatsFileError, run_cli
from cnas.fileio import FolderLock, atomic_write_bytes, atomic_write_json, atomic_write_text
from cnas.latency_table import FULL_CALLS
from cnas.layout import CKPT, INHERITED, PICK_RECORD, PICK_STATS, PICK_SUBNET, pick_folder_name
from cnas.objectives import OBJECTIVES, ObjectiveSet, parse_objectives
from cnas.problems import non_dominated
from cnas.spaces import EDANAS, NACHOS, PLAIN, RESNET50, exit_mask, get_space, space_of
from cnas.spaces.geometry import MAX_RESOLUTION

TRADE_OFF = "trade-off"
DEFAULT_RADIUS = 0.125
PICK_TEMP = ".part-"  # .<pick folder>.part-<pid>: a pick being written


# ---------------------------------------------------------------- loading a run
@dataclass
class Run:
    """A search's archive with everything selection needs."""

    save: Path
    oset: ObjectiveSet  # the run's objectives and constraints
    space: object  # the run's search space
    entries: list[arc.Entry]
    source: str  # where the entries came from
    config: dict | None  # the run's config.json record (None for a run of the original system)
    notes: list[str]
    search_space: str = "mobilenetv3"

    @property
    def objectives(self) -> list[str]:
        return self.oset.names

    @property
    def n_classes(self) -> int:
        return self.oset.n_classes


def _objective_set(config: dict | None, archs: list[dict], first_obj: str | None, sec_obj: str | None,
                   n_classes: int | None, resolution: int, latency_table: str | None = None):
    """``(objective set, space, search space name)`` of the run, from its ``config.json`` (or, for a run of the
    original system, top1 / macs on the space its archs belong to)."""
    from cnas.config import SearchConfig  # these import torch: only when a run is loaded
    from cnas.data import get_dataset_info
    from cnas.evaluation import EvalSettings

    if config is not None:
        names = {f.name for f in fields(SearchConfig)}
        unknown = sorted(set(config["search"]) - names)
        if unknown:
            raise StatsFileError(f"the run's config.json has unknown search setting(s) {', '.join(unknown)}; it was "
                                 "not written by this cnas (restore it)")
        cfg = SearchConfig(**config["search"])
        ev = EvalSettings.from_dict(dict(config["evaluation"]))
        if n_classes is not None:
            ev.n_classes = n_classes
    else:  # a run of the original system: defaults top1 / macs, n_classes from the flag
        spaces = {space_of(a) for a in archs}  # an early-exit space when any arch has exit genes
        space = next((s for s in (EDANAS, NACHOS, RESNET50) if s in spaces), PLAIN)
        cfg = SearchConfig(search_space=space, lr=resolution, ur=resolution, sec_obj="macs")
        ev = EvalSettings(n_classes=n_classes or 10)
    if first_obj is not None:
        cfg.first_obj = first_obj
    if sec_obj is not None:
        cfg.sec_obj = None if sec_obj.strip().lower() in ("", "none") else sec_obj
    cfg.validate()
    space = get_space(cfg.search_space, cfg.lr, cfg.ur, cfg.rstep)
    objectives = parse_objectives(cfg.first_obj, cfg.sec_obj, space.exit_key is not None)
    ev.search_space = cfg.search_space
    if latency_table is not None:  # --latency_table: for runs without one, or to select on another device's
        ev.latency_table = latency_table
    ev.validate()
    n = ev.n_classes or get_dataset_info(ev.dataset).n_classes
    if n is None:
        raise ConfigError(f"the run's dataset {ev.dataset} needs --n_classes")
    oset = ObjectiveSet.from_settings(objectives, ev, int(n), cfg.constraint_mode, space=space)
    return oset, space, cfg.search_space


def load_run(expr: str, get_archive: bool = False, first_obj: str | None = None, sec_obj: str | None = None,
             n_classes: int | None = None, resolution: int = 32, latency_table: str | None = None) -> Run:
    """Read a search (cnas's or the original's) for selection. See the module docstring."""
    where = arc.locate(expr, "--expr", folder_ok=True)
    save, it = where.save, where.iteration
    config = arc.RunStore(save).read_config()
    notes: list[str] = []
    rec = None
    if where.stats is not None and not get_archive:
        rec = arc.read_iter_stats(where.stats)
    if rec is None:
        entries, failures = arc.scan_net_folders(save, it)
        source = f"net folders {save}/iter_*/net_*" + (f" up to iteration {it}" if it is not None else "")
        if failures:
            notes.append(f"{len(failures)} net folder(s) without readable stats were left out")
    else:  # a cnas iter_X.stats has entries; the original's has archive rows [arch, f1, f2] only
        entries, source = list(rec.entries or []), str(where.stats)
    archs = [e.arch for e in entries] or [row[0] for row in (rec.archive if rec is not None else [])]
    if not archs:
        raise StatsFileError(f"the archive of {source} is empty: nothing to select")
    oset, space, space_name = _objective_set(config, archs, first_obj, sec_obj, n_classes, resolution, latency_table)
    if rec is not None and rec.entries is not None:
        _check_record(rec, where.stats, config, space, space_name, save)
    if not entries:
        entries = arc.entries_from_original_archive(rec.archive, oset.names)
        folders = {arc.Archive.key(e.arch): e for e in arc.scan_net_folders(save, it)[0]}
        for e in entries:  # find each row's net folder (and its full stats), as the original's glob did
            found = folders.get(arc.Archive.key(e.arch))
            if found is not None:
                e.folder, e.iteration, e.name = found.folder, found.iteration, found.name
                e.stats = {**found.stats, **e.stats}
    for e in entries:  # archs of the original system may lack r: the space's fixed one, else --resolution
        if "r" not in e.arch:
            e.arch = space.with_resolution(e.arch if space.fixed_resolution else {**e.arch, "r": int(resolution)})
    if rec is not None and rec.alpha_norm is not None:
        oset.alpha_norm = rec.alpha_norm
    else:
        oset.update_alpha_norm(entries)
    if config is None:
        _note_recounts(oset, entries, notes)
    return Run(save, oset, space, entries, source, config, notes, space_name)


def _check_record(rec: arc.IterRecord, path: Path, config: dict | None, space, space_name: str, save: Path) -> None:
    """A cnas stats file fits its folder: written by the search of its config.json (settings hash, objectives),
    every arch of the run's search space, and each net folder it names holds that arch (so a pick never gets
    another arch's stats or weights)."""
    if config is not None:
        if rec.settings_hash is not None and rec.settings_hash != config.get("settings_hash"):
            raise StatsFileError(f"{path} was written by another search than {save / 'config.json'} (settings "
                                 f"hash {rec.settings_hash} against {config.get('settings_hash')}); give a stats "
                                 "file of this folder")
        if config.get("objectives") not in (None, rec.objectives):
            raise StatsFileError(f"{path}: objectives {rec.objectives} differ from its config.json's "
                                 f"{config.get('objectives')}; give a stats file of this folder")
    for i, e in enumerate(rec.entries or []):
        try:
            space.validate({k: v for k, v in e.arch.items() if k != "r"} if space.fixed_resolution else e.arch)
        except ArchError as exc:
            raise StatsFileError(f"{path}: the arch of entry {i} is not of the run's search space {space_name} "
                                 f"({exc}); give a stats file of this folder") from None
        if e.folder:
            folder = save / e.folder
            got, _ = arc.read_net_folder(folder, e.name) if folder.is_dir() else (None, None)
            if got is not None and arc.Archive.key(got) != arc.Archive.key(e.arch):
                raise StatsFileError(f"{path}: entry {i} names {folder}, which holds another arch; the stats file "
                                     "does not belong to this folder's net folders")


def _note_recounts(oset: ObjectiveSet, entries: list[arc.Entry], notes: list[str]) -> None:
    try:
        vals = oset.exact_values([e.arch for e in entries])
    except ArchError:
        return
    differ = 0
    for i, e in enumerate(entries):
        for k in ("params", "macs"):
            v = e.stats.get(k)
            if isinstance(v, (int, float)) and abs(float(v) - vals[k][i]) > 0.02 * max(1.0, abs(vals[k][i])):
                differ += 1
                break
    if differ:
        notes.append(f"{differ} imported arch(s) have stored params/macs that differ from cnas's count; cnas's "
                     "stage-aware count is used (the original mapped ks/e in block order)")


# ---------------------------------------------------------------- selection
def tradeoff_scores(F: np.ndarray, radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """pymoo's high trade-off value ``mu`` of each row of ``F`` (a non-dominated set, minimized), computed on
    objectives normalized to [0, 1] with neighbours within ``radius``; higher is a stronger trade-off."""
    from scipy.spatial import cKDTree

    F = np.asarray(F, float)
    n, m = F.shape
    if n == 1:
        return np.zeros(1)
    lo, hi = F.min(0), F.max(0)
    Fn = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
    tree = cKDTree(Fn)
    k_min = min(2 * m, n - 1)
    mu = np.full(n, -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(n):
            nb = [j for j in tree.query_ball_point(Fn[i], radius) if j != i]
            if len(nb) < k_min:
                nb = [j for j in np.atleast_1d(tree.query(Fn[i], k=k_min + 1)[1]).tolist() if j != i][:k_min]
            if not nb:
                continue
            diff = Fn[nb] - Fn[i]
            ratio = np.maximum(0, diff).sum(1) / np.maximum(0, -diff).sum(1)
            ratio = ratio[~np.isnan(ratio)]
            if len(ratio):
                mu[i] = ratio.min()
    return mu


def select(F: np.ndarray, n: int, prefer: str, prefer_values: np.ndarray | None = None,
           radius: float = DEFAULT_RADIUS) -> tuple[list[int], np.ndarray]:
    """``(picked row indices in rank order, front indices)`` for candidate values ``F`` (see the module doc).
    ``prefer_values``: the preferred objective's values when ``prefer`` is not ``trade-off``."""
    F = np.asarray(F, float)
    if len(F) == 0:
        raise StatsFileError("no candidate archs are left to select from (see the notes above)")
    if F.shape[1] == 1:
        order = np.argsort(F[:, 0], kind="stable")
        if n > len(order):
            raise ConfigError(f"-n {n} is larger than the {len(order)} candidate archs; ask for at most {len(order)}")
        return [int(i) for i in order[:n]], order
    front = np.asarray(sorted(non_dominated(F), key=lambda i: (F[i, 0], tuple(F[i, 1:]))), dtype=int)
    if n > len(front):
        raise ConfigError(f"-n {n} is larger than the non-dominated front ({len(front)} archs); "
                          f"ask for at most {len(front)}")
    if prefer == TRADE_OFF:
        mu = tradeoff_scores(F[front], radius)
        order = np.lexsort((np.arange(len(front)), -mu))  # highest mu first, ties in front order
    else:
        vals = np.asarray(prefer_values, float)[front]
        order = np.argsort(vals, kind="stable")
    picks = [int(front[i]) for i in order[:n]]
    best = int(front[0])  # the front sorted by the first objective: the most accurate
    if best not in picks:
        picks.append(best)
    return picks, front


def _prefer_values(run: Run, prefer: str, entries: list[arc.Entry]) -> np.ndarray:
    if prefer in run.objectives:
        return run.oset.F(entries)[:, run.objectives.index(prefer)]
    out = run.oset.values(entries, extra=[prefer])[prefer]
    if not np.isfinite(out).any():
        raise ConfigError(f"--prefer {prefer}: no arch of this run has a measured {prefer}; "
                          f"choose trade-off or one of {', '.join(run.objectives)}")
    return out


# ---------------------------------------------------------------- writing the picks
def _write_pick(run: Run, entry: arc.Entry, dst: Path, values: dict, rank: int, prefer: str,
                supernet: Callable[[], object] | None) -> dict:
    src = run.save / entry.folder if entry.folder else None
    if src is not None and src.is_dir():
        arc.copy_net_folder(src, dst)
    else:
        dst.mkdir(parents=True, exist_ok=True)
        atomic_write_json(dst / PICK_STATS, entry.stats)
    atomic_write_json(dst / PICK_SUBNET, entry.arch, indent=None)
    evaluation = dict((run.config or {}).get("evaluation") or {}) or None
    if evaluation is not None:
        evaluation.setdefault("n_classes", run.n_classes)
    record = {"arch": entry.arch, "rank": rank, "prefer": prefer, "values": values,
              "source": {"search": str(run.save.resolve()), "folder": entry.folder or None,
                         "iteration": entry.iteration, "name": entry.name},
              "n_classes": run.n_classes, "evaluation": evaluation}
    if supernet is not None and not (dst / CKPT).exists():
        from cnas.models import build_network
        from cnas.models.checkpoint import save_net_checkpoint

        model = build_network(entry.arch, run.n_classes, supernet=supernet(), resolution=entry.arch["r"])
        save_net_checkpoint(dst / INHERITED, model, entry.arch, run.n_classes, entry.arch["r"],
                            dataset=(evaluation or {}).get("dataset"), source="supernet",
                            width_mult=run.oset.width_mult)
        record["inherited"] = INHERITED
    atomic_write_json(dst / PICK_RECORD, record)
    return record


def _csv_value(v):
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return v


def _plot(path: Path, objectives: list[str], F_all: np.ndarray, ok: np.ndarray, front: np.ndarray,
          F_cand: np.ndarray, picks: list[int], labels: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label(n):
        return OBJECTIVES[n].label()

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    if len(objectives) >= 2:
        x, y = 1, 0
        ax.scatter(F_all[ok, x], F_all[ok, y], s=12, c="0.6", label="archive")
        if (~ok).any():
            ax.scatter(F_all[~ok, x], F_all[~ok, y], s=12, marker="x", c="0.8", label="left out")
        fr = F_cand[front][np.argsort(F_cand[front][:, x])]
        ax.step(fr[:, x], fr[:, y], where="post", c="C0", lw=1.5, label="front")
        P = F_cand[picks]
        ax.scatter(P[:, x], P[:, y], s=60, facecolors="none", edgecolors="C3", lw=2, label="picks")
        for (px, py), text in zip(P[:, [x, y]], labels):
            ax.annotate(text, (px, py), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel(label(objectives[x]))
        ax.set_ylabel(label(objectives[y]))
    else:
        order = np.arange(len(F_cand))
        ax.plot(order, F_cand[:, 0], ".", c="0.6", label="archive")
        ax.scatter(np.asarray(picks), F_cand[picks, 0], s=60, facecolors="none", edgecolors="C3", label="picks")
        ax.set_xlabel("arch (archive order)")
        ax.set_ylabel(label(objectives[0]))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------- the command
def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnas.post_search", description=__doc__.split("\n")[0])
    p.add_argument("--expr", required=True, help="<save>/iter_X.stats of a finished search (or <save>/iter_X, "
                                                 "or <save>, with --get_archive)")
    p.add_argument("--save", default=None, help="output folder (default: <save>/post_search)")
    p.add_argument("-n", "--n", type=int, default=1, help="number of picks (default: 1)")
    p.add_argument("--prefer", default=TRADE_OFF, help="trade-off, or an objective name: the n front points "
                                                       "lowest in it (default: trade-off)")
    p.add_argument("--first_obj", default=None, help="first objective (default: the run's)")
    p.add_argument("--sec_obj", default=None, help="second objective(s), comma-separated, or none "
                                                   "(default: the run's)")
    p.add_argument("--n_exits", type=int, default=None, help="keep only early-exit archs with K exits "
                                                             "(intermediate exits, 0..4)")
    p.add_argument("--get_archive", action="store_true", help="rebuild the archive from the net folders "
                                                              "(also those of the original system)")
    p.add_argument("--save_stats_csv", type=str2bool, nargs="?", const=True, default=True, metavar="BOOL",
                   help="write results.csv (default: true)")
    p.add_argument("--supernet_path", default=None, help="OFA supernet: picks without ckpt.pth get "
                                                         "inherited.pth with the subnet's weights")
    p.add_argument("--radius", type=float, default=DEFAULT_RADIUS, help="trade-off neighbourhood radius on "
                                                                        "normalized objectives (default: 0.125)")
    p.add_argument("--include_infeasible", action="store_true", help="also pick archs that break the run's "
                                                                     "constraints")
    p.add_argument("--n_classes", type=int, default=None, help="classes (runs of the original system without "
                                                               "config.json; default 10)")
    p.add_argument("--resolution", type=int, default=32, help="resolution of archs without 'r' (runs of the "
                                                              "original system; default 32)")
    p.add_argument("--overwrite", action="store_true", help="replace pick folders that already exist in --save")
    p.add_argument("--latency_table", default=None, help="latency lookup table (python -m cnas.latency build) for "
                                                         "--prefer latency and the picks' latency (default: the run's)")
    p.add_argument("--measure_latency", type=str2bool, nargs="?", const=True, default=True, metavar="BOOL",
                   help="with a latency table built by cnas: time every pick end to end on its device, backend, "
                        "threads and batch and record it beside the predicted latency (default: true)")
    p.add_argument("--latency_repeats", type=int, default=FULL_CALLS[1], help="timed inferences per pick, after "
                   f"{FULL_CALLS[0]} untimed ones (default: {FULL_CALLS[1]})")
    return p


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> int:
    args = parser().parse_args(argv)
    if args.n < 1:
        raise ConfigError(f"-n must be at least 1, got {args.n}")
    if args.prefer != TRADE_OFF and args.prefer not in OBJECTIVES:
        raise ConfigError(f"unknown --prefer {args.prefer!r}; choose trade-off or one of {', '.join(OBJECTIVES)}")
    if not (math.isfinite(args.radius) and args.radius > 0):
        raise ConfigError(f"--radius must be a positive number, got {args.radius}")
    if args.n_classes is not None and args.n_classes < 1:
        raise ConfigError(f"--n_classes must be a positive integer, got {args.n_classes}")
    if not 1 <= args.resolution <= MAX_RESOLUTION:
        raise ConfigError(f"--resolution must be an integer in [1, {MAX_RESOLUTION}], got {args.resolution}")
    if args.n_exits is not None and not 0 <= args.n_exits <= 4:
        raise ConfigError(f"--n_exits must be in 0..4 (intermediate exits), got {args.n_exits}")
    if args.latency_repeats < 1:
        raise ConfigError(f"--latency_repeats must be a positive integer, got {args.latency_repeats}")
    run = load_run(args.expr, args.get_archive, args.first_obj, args.sec_obj, args.n_classes, args.resolution,
                   args.latency_table)
    oset, objectives = run.oset, run.objectives
    prefer = args.prefer
    if len(objectives) < 2:
        if prefer not in (TRADE_OFF, objectives[0]):
            raise ConfigError(f"--prefer {prefer}: this is a single-objective run ({objectives[0]}); pass "
                              f"--sec_obj {prefer} to pick along a front, or leave --prefer out")
        prefer = objectives[0]
    entries = run.entries
    F_all = oset.F(entries)
    keep = np.all(np.isfinite(F_all), axis=1)
    if (~keep).any():
        run.notes.append(f"{int((~keep).sum())} arch(s) without a value for every objective were left out")
    if not args.include_infeasible:
        feas = oset.feasible(entries)
        if (keep & ~feas).any():
            run.notes.append(f"{int((keep & ~feas).sum())} infeasible arch(s) were left out "
                             "(--include_infeasible keeps them)")
        keep &= feas
    if args.n_exits is not None:
        if run.space.exit_key is None:
            raise ConfigError(f"--n_exits needs an early-exit run; this one searched {run.search_space}")
        if not 0 <= args.n_exits <= 4:
            raise ConfigError(f"--n_exits must be in 0..4 (intermediate exits), got {args.n_exits}")
        n_ex = np.asarray([sum(exit_mask(e.arch)) for e in entries])
        keep &= n_ex == args.n_exits
    cand = [e for e, k in zip(entries, keep) if k]
    if not cand:
        raise StatsFileError(f"no arch of {run.source} is left to select from"
                             + (f" ({'; '.join(run.notes)})" if run.notes else ""))
    F = F_all[keep]
    pv = _prefer_values(run, prefer, cand) if prefer != TRADE_OFF and len(objectives) > 1 else None
    picks, front = select(F, args.n, prefer, pv, args.radius)

    out = Path(args.save) if args.save else run.save / "post_search"
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"--save {out}: {p} is a file, not a folder; choose another --save")
            break
    names = [pick_folder_name(prefer, rank, args.n_exits) for rank in range(len(picks))]
    # a pick folder of the same pick (a killed run's) is kept; one of another pick needs --overwrite
    done = {nm for nm, i in zip(names, picks) if _same_pick(out / nm, cand[i])}
    existing = [nm for nm in names if (out / nm).exists() and nm not in done and _complete(out / nm)]
    if existing and not args.overwrite:
        raise ConfigError(f"--save {out} already holds {existing[0]}; choose another --save or pass --overwrite")
    supernet = None  # a loader of the supernet, when one is given
    if args.supernet_path and not Path(args.supernet_path).is_file():
        raise CheckpointError(f"--supernet_path {args.supernet_path}: no such file (see supernets/README.md)")
    if args.supernet_path:
        from cnas.models import load_supernet

        cache: dict = {}

        def supernet():
            if "net" not in cache:
                cache["net"] = load_supernet(args.supernet_path, run.n_classes, width_mult=run.oset.width_mult,
                                             space=run.search_space)
            return cache["net"]

        if any(not _has_ckpt(run, cand[i]) for i in picks):
            supernet()  # a bad file stops here, before any pick is written

    latencies = _pick_latencies(run, [cand[i] for i in picks], args, log)

    mu = None
    if prefer == TRADE_OFF:
        mu = dict(zip(front.tolist(), tradeoff_scores(F[front], args.radius).tolist()))
    rows = []
    lock = FolderLock(out, "--save").acquire()
    try:
        for tmp in out.glob(f".net-*{PICK_TEMP}*"):  # folders of a killed run, never renamed into place
            shutil.rmtree(tmp, ignore_errors=True)
        for rank, (i, nm) in enumerate(zip(picks, names)):
            e = cand[i]
            values = {o: float(F[i, j]) for j, o in enumerate(objectives)}
            if prefer not in values and pv is not None:
                values[prefer] = float(pv[i])
            if mu is not None:
                values[TRADE_OFF] = mu[i] if math.isfinite(mu[i]) else None
            values.update(latencies[rank])
            if nm not in done or args.overwrite:
                _write_pick_folder(run, e, out / nm, values, rank, prefer, supernet)
            rows.append(_csv_row(nm, rank, e, values))
        _write_summary(out, rows, args, objectives, F_all, keep, front, F, picks, names)
    finally:
        lock.release()
    for note in run.notes:
        log(f"note: {note}")
    log(f"{len(cand)} candidate archs from {run.source}; front of {len(front)}; {len(picks)} pick(s) in {out}")
    if done and not args.overwrite:
        log(f"kept {len(done)} pick folder(s) that an earlier run of the same selection had written")
    table = _table(rows)
    show = ["pick", *objectives] + ([prefer] if prefer not in objectives else [])
    show += [c for c in ("latency", "latency_measured") if c not in show] + ["source"]
    show = [c for c in show if c in table.columns]
    log(table[show].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def _pick_latencies(run: Run, entries: list[arc.Entry], args, log) -> list[dict]:
    """Per pick, with a latency table: the latency it predicts (``latency``, ms) and, unless
    ``--measure_latency false``, the measured end-to-end latency (``latency_measured``: the median, with
    ``latency_measured_p10``/``_p90``) on the device, backend, threads and batch the table was built with. Empty
    dicts without a table; a table without cnas's ``_meta`` (one of OFA's) is not measured (a note says so)."""
    table = run.oset.latency_table
    if table is None:
        return [{} for _ in entries]
    w = getattr(run.oset, "width_mult", 1.0)
    out = [{"latency": round(table.predict(e.arch, run.n_classes, width_mult=w), 5)} for e in entries]
    if not args.measure_latency:
        return out
    meta = table.meta
    if not all(k in meta for k in ("device", "backend", "threads", "batch")):
        run.notes.append(f"the latency table {table.path} does not say how it was timed (no _meta): the picks' "
                         "latency was not measured")
        return out
    from cnas.models.latency import check_backend, measure_network

    check_backend(meta["backend"], meta["device"])
    reps = int(args.latency_repeats)
    for rec, e in zip(out, entries):
        got = measure_network(e.arch, run.n_classes, meta["backend"], meta["device"], int(meta["threads"]),
                              int(meta["batch"]), warmup=min(FULL_CALLS[0], reps), repeats=reps, width_mult=w)
        rec.update({"latency_measured": got["median"], "latency_measured_p10": got["p10"],
                    "latency_measured_p90": got["p90"]})
    return out


def _complete(folder: Path) -> bool:
    """A pick folder that a run finished (it has ``pick.json``; a folder without it was left by a killed run of
    an earlier version and is replaced)."""
    return (folder / PICK_RECORD).is_file()


def _same_pick(folder: Path, entry: arc.Entry) -> bool:
    """``folder`` is a finished pick of ``entry`` (its ``pick.json`` names the same arch and source)."""
    if not _complete(folder):
        return False
    try:
        rec = json.loads((folder / PICK_RECORD).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return False
    return (isinstance(rec, dict) and isinstance(rec.get("arch"), dict)
            and arc.Archive.key(rec["arch"]) == arc.Archive.key(entry.arch)
            and (rec.get("source") or {}).get("folder") == (entry.folder or None))


def _has_ckpt(run: Run, entry: arc.Entry) -> bool:
    return bool(entry.folder) and (run.save / entry.folder / CKPT).is_file()


def _write_pick_folder(run: Run, entry: arc.Entry, dst: Path, values: dict, rank: int, prefer: str,
                       supernet) -> None:
    """Write the pick into a hidden temporary folder, then rename it into place (a kill leaves no half-written
    pick folder; an existing one, with ``--overwrite``, is replaced only once the new one is complete)."""
    tmp = dst.with_name(f".{dst.name}{PICK_TEMP}{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    _write_pick(run, entry, tmp, values, rank, prefer, supernet)
    if dst.exists():
        old = dst.with_name(f".{dst.name}{PICK_TEMP}old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dst)


def _csv_row(nm: str, rank: int, e: arc.Entry, values: dict) -> dict:
    row = {"pick": nm, "rank": rank, "source": e.folder or "", "iteration": e.iteration, **values}
    for k, v in e.stats.items():
        if k not in row:
            row[k] = _csv_value(v)
    row["arch"] = json.dumps(e.arch, sort_keys=True)
    return row


def _table(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows)


def _write_summary(out: Path, rows: list[dict], args, objectives, F_all, keep, front, F, picks, names) -> None:
    if args.save_stats_csv:
        atomic_write_text(out / "results.csv", _table(rows).to_csv(index=False))
    _plot(out / "front.png", objectives, F_all, keep, front, F, picks, names)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="cnas.post_search"))
