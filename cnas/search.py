"""``python -m cnas.search``: constrained multi-objective NAS with surrogates (flags as the original's cnas.py).

    python -m cnas.search --sec_obj macs --search_space eemobilenetv3
    python -m cnas.search --resume results/run/iter_5.stats

Search flags are :class:`cnas.config.SearchConfig`'s; evaluation flags are :class:`cnas.evaluation.EvalSettings`'s
(``--n_epochs`` for training epochs and ``--train_lr`` for the learning rate, since ``--lr``/``--ur`` are the
lower/upper resolution as in the original). ``--config FILE.yaml`` holds any of them; flags override it. On
``--resume`` the run's own ``config.json`` is the base.
"""

from __future__ import annotations

import sys

from cnas import archive as arc
from cnas.cli import ArgumentParser, add_config_arg, add_dataclass_args, build_settings, given_fields, load_config_file, split_config
from cnas.config import LATER_EVAL_SETTINGS, LATER_SETTINGS, SearchConfig
from cnas.engine import Search
from cnas.errors import ConfigError, StatsFileError, run_cli
from cnas.evaluation import EvalSettings
from cnas.fileio import atomic_write_text
from cnas.problems import non_dominated

EVAL_RENAME = {"lr": "train_lr", "epochs": "n_epochs", "seed": "train_seed"}
EVAL_SKIP = {"search_space", "resolution", "progress"}


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnas.search", description=__doc__.split("\n")[0])
    p.add_argument("--resume", default=None, help="<save>/iter_X.stats (or <save>/iter_X) to continue from")
    add_config_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_dataclass_args(p, SearchConfig, title="search")
    add_dataclass_args(p, EvalSettings, rename=EVAL_RENAME, skip=EVAL_SKIP, title="evaluation of each candidate")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    base_s, base_e = {}, {}
    if args.resume:
        where = arc.resume_point(args.resume)
        store = arc.RunStore(where.save)
        rec = store.read_config()
        if rec is not None:
            base_s, base_e = rec.get("search", {}), rec.get("evaluation", {})
            # a run from before a setting existed had its old behaviour
            base_s, base_e = {**LATER_SETTINGS, **base_s}, {**LATER_EVAL_SETTINGS, **base_e}
            base_s["save"] = str(where.save)
            try:  # the record on its own: its settings known, typed and in range
                build_settings(SearchConfig, base_s).validate()
                build_settings(EvalSettings, {k: v for k, v in base_e.items() if k not in EVAL_SKIP}).validate()
            except ConfigError as exc:
                raise StatsFileError(f"{store.config_path}: {exc}; restore it or start a new --save") from None
    file_cfg = load_config_file(args.config) if args.config else {}
    known = set(split_config(file_cfg, SearchConfig)) | set(split_config(file_cfg, EvalSettings, EVAL_RENAME)) \
        | set(EVAL_RENAME.values())
    unknown = sorted(k for k in file_cfg if k not in known)
    if unknown:
        raise ConfigError(f"config file {args.config}: unknown setting(s) {', '.join(unknown)}")
    cfg = build_settings(SearchConfig, base_s, split_config(file_cfg, SearchConfig), given_fields(args, SearchConfig))
    ev_given = given_fields(args, EvalSettings, EVAL_RENAME, EVAL_SKIP)
    ev = build_settings(EvalSettings, {k: v for k, v in base_e.items() if k not in EVAL_SKIP},
                        split_config(file_cfg, EvalSettings, EVAL_RENAME), ev_given)
    if args.quiet:
        cfg.progress = False
    search = Search(cfg, ev, log=lambda m: print(m, flush=True))
    search.log(f"cnas search: {', '.join(search.objectives)} on {cfg.search_space} "
               f"({ev.dataset}, {search.n_classes} classes), saving to {search.save}")
    search.run(resume=args.resume, then=summary)
    return 0


def summary(search: Search, archive) -> None:
    F = search.F(archive.entries)
    feas = search.feasible(archive.entries)
    nd = [i for i in non_dominated(F) if feas[i]] if len(F) else []
    nd = sorted(nd, key=lambda i: F[i, 0])
    lines = [f"done: {len(archive)} archs evaluated ({int(feas.sum())} feasible, {len(archive.failed)} failed); "
             f"final hypervolume {search.hv_history[-1]:.4f}" if search.hv_history else "done"]
    lines.append("non-dominated feasible archs:")
    head = "  " + "  ".join(f"{n:>12}" for n in search.objectives) + "  folder"
    lines.append(head)
    for i in nd[:15]:
        e = archive.entries[i]
        lines.append("  " + "  ".join(f"{v:>12.3f}" for v in F[i]) + f"  {search.save / e.folder}")
    text = "\n".join(lines)
    print(text)
    atomic_write_text(search.save / "summary.txt", text + "\n")


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="cnas.search"))
