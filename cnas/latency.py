"""``python -m cnas.latency``: latency lookup tables built on this machine, and end-to-end latency of a network.

    python -m cnas.latency build --save luts/cpu1.yaml [--lr 224 --ur 224] [--search_space eemobilenetv3]
                                 [--device cpu|cuda] [--backend torch|onnxruntime] [--threads 1] [--batch 1]
    python -m cnas.latency measure NET.subnet | PICK_DIR [--latency_table luts/cpu1.yaml] [--json]

``build`` times every operation that an arch of the space can run at the given resolutions (stem, first block,
each inverted-residual block configuration, final expand, pool, feature mix, classifier, and for the
early-exit spaces every exit head) and writes a table in the layout of OFA's published latency tables
(:mod:`cnas.latency_table`). It writes the table every few seconds, so an interrupted build is resumed by the
same command; an existing table is extended (other resolutions, spaces or class counts) when it was built
with the same device, backend, threads and batch. ``measure`` builds the arch's network (random weights), times
it end to end on the same backend, device, threads and batch (the table's, when one is given) and, with a
table, prints the latency the table predicts for it.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cnas.cli import ArgumentParser, add_dataclass_args, build_settings, given_fields
from cnas.errors import ArchError, ConfigError, run_cli
from cnas.fileio import read_json
from cnas.latency_table import BACKENDS, FULL_CALLS, META_FIELDS, QUICK_CALLS, LatencyTable, space_ops
from cnas.layout import PICK_RECORD, PICK_SUBNET
from cnas.settings import (POSITIVE_INT, NON_NEGATIVE_INT, OneOf, ResolutionSettings, Settings, count, setting)
from cnas.spaces import SPACES, get_space, space_of
from cnas.spaces.geometry import MAX_RESOLUTION, WIDTH_MULTS, as_resolution

PROG = "cnas.latency"
#: Warm-up and timed calls per operation (and per network) of a normal and of a ``--quick`` run.
FULL, QUICK = FULL_CALLS, QUICK_CALLS
#: Reference networks per resolution of a normal and of a ``--quick`` build's calibration.
CALIB = (8, 2)
#: Seconds between two writes of a table being built.
SAVE_EVERY = 5.0


def _width_check(name, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) not in WIDTH_MULTS:
        raise ConfigError(f"--{name} must be 1.0 or 1.2 (the official OFA MobileNetV3 widths), got {v!r}")


def _device_check(name, v) -> None:
    if not (isinstance(v, str) and (v == "cpu" or v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit()))):
        raise ConfigError(f"--{name} must be cpu, cuda or cuda:N, got {v!r}")


@dataclass
class TimingSettings(Settings):
    """Where and how operations and networks are timed (recorded in a table's ``_meta``)."""

    title = "timing"

    device: str = setting("cpu", help="cpu, cuda or cuda:N", check=_device_check)
    backend: str = setting("torch", help="torch (eager) or onnxruntime (the module exported to ONNX)",
                           check=OneOf(BACKENDS))
    threads: int = setting(1, help="intra-op CPU threads (torch.set_num_threads / onnxruntime)",
                           check=POSITIVE_INT)
    batch: int = setting(1, help="images per inference", check=count(1))
    warmup: int | None = setting(None, help=f"untimed calls before timing (default {FULL[0]}; --quick "
                                            f"{QUICK[0]})", check=NON_NEGATIVE_INT)
    repeats: int | None = setting(None, help=f"timed calls (default {FULL[1]}; --quick {QUICK[1]})",
                                  check=count(1))
    quick: bool = setting(False, help=f"few repeats ({QUICK[0]} warm-up, {QUICK[1]} timed): for tests, not for "
                                      "a table to search with")

    def calls(self) -> tuple[int, int]:
        base = QUICK if self.quick else FULL
        return (base[0] if self.warmup is None else self.warmup, base[1] if self.repeats is None else self.repeats)


@dataclass
class BuildSettings(TimingSettings, ResolutionSettings):
    """``cnas.latency build``: the table file, the space and classes it covers, and the timing."""

    save: str | None = setting(None, help="the table file to write (YAML; extended when it exists)")
    search_space: str = setting("mobilenetv3", help="mobilenetv3, or eemobilenetv3 / cbnmobilenetv3 to add "
                                                    "their exit heads", check=OneOf(tuple(SPACES)))
    n_classes: int = setting(10, help="classifier outputs", check=POSITIVE_INT)
    width_mult: float = setting(1.0, help="supernet width multiplier: 1.0 or 1.2", check=_width_check)
    calib_archs: int | None = setting(None, help=f"reference networks timed whole per resolution to calibrate "
                                                 f"the sums of their ops (the smallest, the largest, then random "
                                                 f"ones; 0: none; default {CALIB[0]}, --quick {CALIB[1]})",
                                      check=count(0))

    def validate(self):
        super().validate()
        if not self.save:
            raise ConfigError("--save FILE is required: the table to write (e.g. luts/cpu.yaml)")
        get_space(self.search_space, self.lr, self.ur, self.rstep)
        if self.ur > MAX_RESOLUTION:
            raise ConfigError(f"--ur must be at most {MAX_RESOLUTION}, got {self.ur}")
        return self


# ---------------------------------------------------------------- build
def table_meta(s: TimingSettings) -> dict:
    import torch

    warmup, repeats = s.calls()
    return {"device": s.device, "backend": s.backend, "threads": s.threads, "batch": s.batch, "warmup": warmup,
            "repeats": repeats, "unit": "ms", "torch": str(torch.__version__), "machine": _machine(),
            "build_seconds": 0.0}


def _machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _check_save(path: Path) -> None:
    if path.is_dir():
        raise ConfigError(f"--save {path} is a folder; give a file path (e.g. {path}/table.yaml)")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"--save {path}: {blocker} is a file, not a folder")


def open_table(s: BuildSettings) -> LatencyTable:
    """The table ``--save`` holds (to extend or resume), or a new one; refused when it was built otherwise."""
    path = Path(s.save)
    _check_save(path)
    meta = table_meta(s)
    if not path.exists():
        return LatencyTable(meta=meta, path=path)
    table = LatencyTable.read(path, flag="--save")
    if not table.meta:
        raise ConfigError(f"--save {path} is a table without cnas's _meta (e.g. one of OFA's): cnas does not know "
                          "how it was timed, so it does not add to it; choose another --save")
    differ = [f"--{k} {table.meta.get(k)} (given {meta[k]})" for k in META_FIELDS if table.meta.get(k) != meta[k]]
    if differ:
        raise ConfigError(f"--save {path} was built with {', '.join(differ)}; give the same flags to extend or "
                          "resume it, or choose another --save")
    return table


def build(s: BuildSettings, log=print, progress: bool = True) -> LatencyTable:
    """Time every op ``s`` asks for that the table lacks, writing the table as it goes."""
    from cnas.models.latency import check_backend, time_op, torch_threads
    from cnas.progress import progress_bar

    s.validate()
    check_backend(s.backend, s.device)
    table = open_table(s)
    space = get_space(s.search_space, s.lr, s.ur, s.rstep)
    ops = space_ops(s.search_space, space.resolutions, s.n_classes, s.width_mult)
    todo = [op for op in ops if op.key not in table]
    warmup, repeats = s.calls()
    log(f"{PROG} build: {len(ops)} operations of {s.search_space} at resolution(s) "
        f"{', '.join(map(str, space.resolutions))} ({s.n_classes} classes); {len(ops) - len(todo)} already in "
        f"{s.save}, {len(todo)} to time ({s.backend} on {s.device}, {s.threads} thread(s), batch {s.batch}, "
        f"{warmup} warm-up + {repeats} timed calls each)")
    t_start = last = time.perf_counter()
    done_before = float(table.meta.get("build_seconds") or 0.0)

    def save():
        table.meta["build_seconds"] = round(done_before + time.perf_counter() - t_start, 2)
        table.write(s.save)

    bar = progress_bar(todo, desc="timing", unit="op") if progress else todo
    with torch_threads(s.threads):
        for op in bar:
            table.add(op.key, time_op(op, s.backend, s.device, s.threads, s.batch, warmup, repeats))
            if time.perf_counter() - last > SAVE_EVERY:
                save()
                last = time.perf_counter()
        calibrate(table, s, space.resolutions, warmup, repeats, log)
    save()
    scales = table.meta.get("scale") or {}
    log(f"wrote {s.save}: {len(table)} entries ({len(todo)} timed in {time.perf_counter() - t_start:.1f} s; "
        f"build time so far {table.meta['build_seconds']:.1f} s); calibration "
        + (", ".join(f"{r}: x{scales[r]:.3f}" for r in space.resolutions if r in scales) or "none"))
    return table


def calibrate(table: LatencyTable, s: BuildSettings, resolutions, warmup: int, repeats: int, log=print) -> None:
    """Time ``s.calib_archs`` whole reference networks at each resolution that has no calibration yet and store
    ``[sum of their ops, measured]`` and the median ratio measured / sum (the resolution's scale) in ``_meta``."""
    import numpy as np

    from cnas.models.latency import measure_network

    n = s.calib_archs if s.calib_archs is not None else CALIB[1 if s.quick else 0]
    cal = table.meta.setdefault("calibration", {})
    scale = table.meta.setdefault("scale", {})
    for r in resolutions:
        if n == 0 or r in scale:
            continue
        space = get_space("mobilenetv3", r, r)
        archs = [space.with_resolution(a) for a in space.initial_design(n, np.random.default_rng(r))]
        pairs = []
        for a in archs:
            raw = table.predict(a, s.n_classes, width_mult=s.width_mult, raw=True)
            got = measure_network(a, s.n_classes, s.backend, s.device, s.threads, s.batch, warmup, repeats,
                                  width_mult=s.width_mult)
            pairs.append([round(raw, 5), got["median"]])
        cal[r] = pairs
        scale[r] = round(float(np.median([m / p for p, m in pairs if p > 0])), 5)


# ---------------------------------------------------------------- measure
def read_target(target: str, n_classes: int | None, resolution: int | None,
                width_mult: float | None = None) -> tuple[dict, int, int, str, float]:
    """``(arch with r, resolution, n_classes, label, width_mult)`` from an arch file or a pick folder
    (``net.subnet``, and the classes and width of its ``pick.json``); given values win, else 10 classes, 1.0."""
    from cnas.models.early_exit import validate_arch

    p = Path(target)
    if p.is_dir():
        sub = p / PICK_SUBNET
        if not sub.is_file():
            raise ArchError(f"{p} is a folder without net.subnet; give an arch file or a folder picked by "
                            "cnas.post_search")
        pick = read_json(p / PICK_RECORD, "pick file", ArchError) if (p / PICK_RECORD).is_file() else {}
        if n_classes is None and isinstance(pick, dict) and isinstance(pick.get("n_classes"), int):
            n_classes = pick["n_classes"]
        ev = pick.get("evaluation") if isinstance(pick, dict) else None
        if width_mult is None and isinstance(ev, dict) and ev.get("width_mult") in WIDTH_MULTS:
            width_mult = float(ev["width_mult"])
        p = sub
    arch = read_json(p, "arch file", ArchError)
    if not isinstance(arch, dict):
        raise ArchError(f"{p}: an architecture must be a JSON object with ks, e, d; got {type(arch).__name__}")
    r = resolution if resolution is not None else arch.get("r")
    if r is None:
        raise ArchError(f"{p}: the architecture has no resolution 'r': pass --resolution R")
    if as_resolution(r) is None:
        raise ArchError(f"{p}: resolution {r!r} is not an integer in [1, {MAX_RESOLUTION}]; pass --resolution R")
    arch = validate_arch({**arch, "r": int(r)})
    return arch, int(r), int(n_classes or 10), str(target), float(width_mult or 1.0)


def measure(target: str, table: LatencyTable | None, s: TimingSettings, n_classes: int | None = None,
            resolution: int | None = None, width_mult: float | None = None) -> dict:
    """End-to-end latency of the network ``target`` names, and what ``table`` predicts for it."""
    from cnas.models.latency import check_backend, measure_network

    arch, r, n, label, width_mult = read_target(target, n_classes, resolution, width_mult)
    predicted = exits = None
    if table is not None:  # before any timing: a missing key is refused at once
        exits = table.exit_latencies(arch, n, width_mult=width_mult)
        predicted = exits[-1]
    check_backend(s.backend, s.device)
    warmup, repeats = s.calls()
    got = measure_network(arch, n, s.backend, s.device, s.threads, s.batch, warmup, repeats, width_mult=width_mult)
    out = {"target": label, "arch": arch, "resolution": r, "n_classes": n, "width_mult": width_mult,
           "search_space": space_of(arch),
           "device": s.device, "backend": s.backend, "threads": s.threads, "batch": s.batch, "measured": got}
    if table is not None:
        out.update({"latency_table": table.path, "predicted": round(predicted, 5),
                    "error": round((predicted - got["median"]) / got["median"], 5) if got["median"] > 0 else None})
        if len(exits) > 1:
            out["exit_latencies"] = [round(v, 5) for v in exits]
    return out


def timing_from(given: dict, table: LatencyTable | None) -> TimingSettings:
    """The timing flags given, else the table's (its device, backend, threads and batch), else the defaults."""
    base = {k: table.meta[k] for k in META_FIELDS if table is not None and k in table.meta}
    return build_settings(TimingSettings, base, given).validate()


# ---------------------------------------------------------------- the command
def parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", metavar="build|measure")
    b = sub.add_parser("build", help="time every operation of the space and write the table",
                       description="Build (or extend, or resume) a latency lookup table on this machine.")
    add_dataclass_args(b, BuildSettings, title="table")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    m = sub.add_parser("measure", help="end-to-end latency of one network (and the table's prediction)",
                       description="Time the network of an arch file or a pick folder end to end.")
    m.add_argument("target", help="arch JSON (.subnet) or a folder picked by cnas.post_search")
    m.add_argument("--latency_table", default=None, help="table to compare with (its device, backend, threads "
                                                         "and batch become the defaults)")
    m.add_argument("--n_classes", type=int, default=None, help="classes (default: the pick's, else 10)")
    m.add_argument("--resolution", type=int, default=None, help="input resolution (default: the arch's 'r')")
    m.add_argument("--width_mult", type=float, default=None, help="supernet width multiplier: 1.0 or 1.2 (default: "
                                                                  "the pick's, else 1.0)")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    add_dataclass_args(m, TimingSettings)
    return p


def _fmt(d: dict) -> str:
    m = d["measured"]
    lines = [f"{d['target']}: {d['search_space']}, resolution {d['resolution']}, {d['n_classes']} classes; "
             f"{d['backend']} on {d['device']}, {d['threads']} thread(s), batch {d['batch']}",
             f"  measured   {m['median']:10.3f} ms median (p10 {m['p10']:.3f}, p90 {m['p90']:.3f}, "
             f"{m['repeats']} repeats)"]
    if "predicted" in d:
        err = "" if d["error"] is None else f" ({100 * d['error']:+.1f} %)"
        lines.append(f"  predicted  {d['predicted']:10.3f} ms by {d['latency_table']}{err}")
        if "exit_latencies" in d:
            lines.append("  per exit   " + ", ".join(f"{v:.3f}" for v in d["exit_latencies"]) + " ms (final last, "
                         "heads on the way included)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "build":
        s = build_settings(BuildSettings, given_fields(args, BuildSettings))
        build(s, progress=not args.quiet)
        return 0
    if args.command == "measure":
        if args.n_classes is not None and args.n_classes < 1:
            raise ConfigError(f"--n_classes must be a positive integer, got {args.n_classes}")
        if args.width_mult is not None:
            _width_check("width_mult", args.width_mult)
        table = LatencyTable.read(args.latency_table) if args.latency_table else None
        s = timing_from(given_fields(args, TimingSettings), table)
        out = measure(args.target, table, s, args.n_classes, args.resolution, args.width_mult)
        print(json.dumps(out, sort_keys=True) if args.json else _fmt(out))
        return 0
    raise ConfigError("give a command: build or measure (see python -m cnas.latency --help)")


if __name__ == "__main__":
    sys.exit(run_cli(main, prog=PROG))
