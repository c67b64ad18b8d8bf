"""``python -m cnas.train``: train and measure one architecture (the original's train.py and ee_train.py in one).

    python -m cnas.train --model_path NET.subnet --output_path DIR [--dataset digits] [--epochs 5] ...

An arch with ``t`` or ``b`` keys is an early-exit arch (backbone first, then exits). Writes
``DIR/<name>.stats`` (name = the arch file's stem, e.g. ``net_3``) and, with ``--save_ckpt``, ``DIR/ckpt.pth``.
``--model_path`` may also be a folder picked by ``cnas.post_search``: the net is then fine-tuned
(:mod:`cnas.finetune`: the original's fine-tuning recipe, writing ``net.finetuned.stats`` beside ``net.stats``).

Bad input (flags, the config file, the arch, the output folder, the data, the supernet or the pick's
checkpoints) is refused with one line before anything is trained or written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cnas.cli import (
    ArgumentParser,
    add_config_arg,
    add_dataclass_args,
    build_settings,
    given_fields,
    load_config_file,
)
from cnas.errors import ArchError, ConfigError, run_cli
from cnas.evaluation import EvalSettings, evaluate_arch, preflight_classes, resolve_arch
from cnas.fileio import atomic_write_json, read_json
from cnas.finetune import check_finetune, finetune, finetune_layers
from cnas.layout import FINETUNED_STATS, PICK_SUBNET, SUBNET_SUFFIX
from cnas.spaces import space_for_arch
from cnas.training.trainer import check_device_here

ALIASES = {
    "epochs": ["n_epochs", "backbone_epochs"],
    "batch_size": ["trn_batch_size"],
    "weight_decay": ["wd"],
}


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnas.train", description=__doc__.split("\n")[0])
    p.add_argument("--model_path", required=True, help="arch JSON (.subnet), or a folder picked by "
                   "cnas.post_search to fine-tune")
    p.add_argument("--output_path", default=None, help="folder for the stats (default: the arch file's folder)")
    p.add_argument("--name", default=None, help="stats file name without .stats (default: the arch file's stem)")
    add_config_arg(p)
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    add_dataclass_args(p, EvalSettings, aliases=ALIASES)
    return p


def check_output_dir(path: Path, flag: str = "--output_path") -> None:
    """An output folder: an existing folder, or a path that can become one (no file on its way)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file; give a folder for the outputs")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"{flag} {path}: {blocker} is a file, not a folder")


def check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(f"--name {name!r} must be a plain file name (no folder), e.g. net_0")


def check_latency_table(arch: dict, r: int, n_classes: int, settings: EvalSettings):
    """``--latency_table``: the table, refused in one line before any training when it lacks an operation of the
    arch; None without one. (``--lmax``, like the other limits, bounds a search; here it is only reported.)"""
    if settings.latency_table is None:
        if settings.lmax is not None:
            raise ConfigError("--lmax needs --latency_table FILE, a latency lookup table of the target device "
                              "(build one with: python -m cnas.latency build --save FILE --lr R --ur R)")
        return None
    from cnas.latency_table import load_table

    table = load_table(settings.latency_table)
    space = settings.search_space or space_for_arch(arch, lr=r, ur=r).name
    table.require(space, [r], n_classes, float(settings.width_mult))
    return table


def add_latency(stats: dict, arch: dict, n_classes: int, table, settings: EvalSettings, path: Path) -> dict:
    """The table's predicted ``latency`` (ms; the final exit's path) and, for an early-exit net, ``avg_latency``
    (the measured exit ratios times each exit's latency), added to the stats file (rewritten atomically)."""
    w = float(settings.width_mult)
    stats = dict(stats, latency=round(table.predict(arch, n_classes, width_mult=w), 5))
    if stats.get("exits_ratio"):
        stats["avg_latency"] = round(table.avg_latency(arch, stats["exits_ratio"], n_classes, width_mult=w), 5)
    if path.parent.is_dir():
        atomic_write_json(path, stats)
    if settings.lmax is not None:
        key = "avg_latency" if "avg_latency" in stats else "latency"
        verdict = "within" if stats[key] <= settings.lmax else "over"
        print(f"{key} {stats[key]} ms: {verdict} --lmax {settings.lmax:g}")
    return stats


def main_from_args(args) -> int:
    """Fine-tune the folder picked by ``cnas.post_search`` that ``--model_path`` names (:mod:`cnas.finetune`)."""
    folder = Path(args.model_path)
    if not (folder / PICK_SUBNET).is_file():
        raise ArchError(f"--model_path {folder} is a folder without net.subnet: give a pick of cnas.post_search "
                        "or an arch file")
    if args.name:
        raise ConfigError("--name applies to arch files; a picked folder is fine-tuned into net.finetuned.stats")
    out = Path(args.output_path) if args.output_path else folder
    check_output_dir(out)
    file_cfg = load_config_file(args.config) if args.config else {}
    settings = build_settings(EvalSettings, *finetune_layers(folder), file_cfg,
                              given_fields(args, EvalSettings)).validate()
    check_device_here(settings.device)
    check_finetune(folder, settings, out)
    log = None if args.quiet else (lambda msg: print(msg, flush=True))
    stats = finetune(folder, settings, out, log=log, checked=True)
    keys = ["test_top1", "top1", "params", "macs", "activations", "test_avg_macs", "test_exits_ratio"]
    print(f"{out / FINETUNED_STATS}: " + ", ".join(f"{k} {stats[k]}" for k in keys if k in stats))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    model_path = Path(args.model_path)
    if model_path.is_dir():  # a pick of cnas.post_search: fine-tuning
        return main_from_args(args)
    if model_path.suffix != SUBNET_SUFFIX and model_path.suffix != ".json" and model_path.exists():
        raise ArchError(f"--model_path {model_path} is not an arch file (.subnet JSON)")
    arch = read_json(model_path, "arch file", ArchError)
    name = args.name or model_path.stem
    check_name(name)
    out_dir = Path(args.output_path) if args.output_path else model_path.parent
    check_output_dir(out_dir)
    file_cfg = load_config_file(args.config) if args.config else {}
    settings = build_settings(EvalSettings, file_cfg, given_fields(args, EvalSettings)).validate()
    check_device_here(settings.device)
    canon, r = resolve_arch(arch, settings)
    n_classes = preflight_classes(settings)  # the data and the supernet, before anything is trained or written
    table = check_latency_table(canon, r, n_classes, settings)
    log = None if args.quiet else (lambda msg: print(msg, flush=True))
    stats = evaluate_arch(arch, settings, out_dir, name, log=log)
    if table is not None:
        stats = add_latency(stats, canon, n_classes, table, settings, out_dir / f"{name}.stats")
    keys = ["top1", "test_top1", "params", "macs", "activations", "avg_macs", "exits_ratio", "top1_robust",
            "top1_int8", "size_int8_bytes", "mce", "latency", "avg_latency"]
    summary = ", ".join(f"{k} {stats[k]}" for k in keys if k in stats)
    print(f"{out_dir / (name + '.stats')}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="cnas.train"))
