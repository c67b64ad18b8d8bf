"""``python -m cnas.profile NET.subnet``: params, MACs and activations of an architecture, computed exactly.

Reads an arch JSON file (the original's ``.subnet`` format), validates it against its search space (given by
``--search_space`` or guessed from its keys) and prints the counts of :mod:`cnas.complexity` in millions: a table,
or one JSON object with ``--json``. Early-exit archs also get one row per exit (backbone, head and total MACs).

Unlike the original, which counted a candidate by building it and tracing a forward pass, nothing is built: the
counts come from closed forms that equal the measured ones exactly (see :mod:`cnas.complexity`).
"""

from __future__ import annotations

import json

from cnas.cli import ArgumentParser
from cnas.complexity import count
from cnas.errors import ArchError, ConfigError, run_cli
from cnas.fileio import read_json
from cnas.settings import width_mult_check
from cnas.spaces import SPACES, get_space, space_of
from cnas.spaces.geometry import MAX_RESOLUTION, as_resolution, exit_positions

PROG = "cnas.profile"


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Exact params / MACs / activations (millions) of an arch.")
    p.add_argument("subnet", help="arch JSON file (e.g. net_0.subnet)")
    p.add_argument("--n_classes", type=int, default=10, help="classifier outputs (default 10)")
    p.add_argument("--resolution", type=int, default=None, help="input resolution (default: the arch's 'r')")
    p.add_argument("--search_space", choices=sorted(SPACES), default=None,
                   help="space to validate against (default: guessed from the arch's keys)")
    p.add_argument("--width_mult", type=float, default=1.0, help="supernet width multiplier: 1.0 or 1.2")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def profile(arch: object, n_classes: int = 10, resolution: int | None = None, search_space: str | None = None,
            width_mult: float = 1.0) -> dict:
    """Validate ``arch`` and return ``{arch, search_space, resolution, n_classes, width_mult, **count(...)}``."""
    width_mult_check("width_mult", width_mult)
    if not isinstance(arch, dict):
        raise ArchError(f"an architecture must be a JSON object with ks, e, d; got {type(arch).__name__}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ConfigError(f"--n_classes must be a positive integer, got {n_classes!r}")
    r = resolution if resolution is not None else arch.get("r")
    if r is None:
        raise ArchError("the architecture has no resolution 'r': pass --resolution R")
    if as_resolution(r) is None:
        raise ArchError(f"resolution {r!r} is not an integer in [1, {MAX_RESOLUTION}] (pixels per side); pass "
                        "--resolution R")
    r = int(r)
    name = search_space or space_of(arch)
    canonical = get_space(name, r, r).validate({**arch, "r": r})
    return {"arch": canonical, "search_space": name, "resolution": r, "n_classes": n_classes,
            "width_mult": float(width_mult), **count(canonical, n_classes=n_classes, resolution=r,
                                                     width_mult=float(width_mult))}


def _table(info: dict, path: str) -> str:
    lines = [
        f"{path}: {info['search_space']}, resolution {info['resolution']}, {info['n_classes']} classes, "
        f"width {info['width_mult']:.1f}",
        f"  params       {info['params']:12.4f} M",
        f"  MACs         {info['macs']:12.4f} M" + ("  (final path)" if "exit_costs" in info else ""),
        f"  activations  {info['activations']:12.4f} M",
    ]
    if "exit_costs" in info:
        positions = exit_positions(info["arch"])  # the stage after each exit, final (5) last
        lines.append("  exit  after stage  pool  backbone MACs  head MACs  total MACs  head params")
        pools = info["pool_sizes"] + ["-"]
        names = [str(k + 1) for k in range(len(positions) - 1)] + ["final"]
        for k, name in enumerate(names):
            lines.append(
                f"  {name:>5} {positions[k]:>12} {pools[k]!s:>5} {info['backbone_macs'][k]:14.4f} "
                f"{info['classifiers_macs'][k]:10.4f} {info['exit_costs'][k]:11.4f} "
                f"{info['classifiers_params'][k]:12.4f}"
            )
        lines.append("  (millions; params and activations cover the backbone and every exit head)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    arch = read_json(args.subnet, what="arch file", error=ArchError)
    info = profile(arch, n_classes=args.n_classes, resolution=args.resolution, search_space=args.search_space,
                   width_mult=args.width_mult)
    if args.json:
        print(json.dumps(info, sort_keys=True))
    else:
        print(_table(info, args.subnet))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, prog=PROG))
