"""Fine-tuning of a picked network (``python -m cnas.train --model_path <picked folder>``).

A picked folder (written by ``python -m cnas.post_search``) holds ``net.subnet``, ``net.stats``, ``pick.json``
and, when the search kept weights, ``ckpt.pth``. Fine-tuning trains that network to convergence and writes, beside
the search's files and never over them:

* ``net.finetuned.stats``: ``test_top1`` (test error in %, the figure to report), ``top1`` (validation error),
  ``params``/``macs``/``activations``/``tiny_ml``; early-exit nets add ``exits_ratio``/``avg_macs`` (validation)
  and ``test_exits_ratio``/``test_avg_macs`` with the re-tuned ``epsilon``; plus ``init``, ``epochs``,
  ``best_epoch`` and the ``recipe``;
* ``ckpt.finetuned.pth``: ``{"state_dict", "arch", "n_classes", "resolution", "dataset", "thresholds"}`` (what
  ``python -m cnas.export`` reads);
* ``train_state.pth``: the trainer's epoch checkpoint; re-running the same command after an interruption resumes
  from it (delete it to start over; different settings are refused).

Weights start from ``ckpt.pth``, else ``inherited.pth`` (post-search ``--supernet_path``), else
``--supernet_path`` (stage-aware extraction + BN re-calibration), else a random initialisation (with a warning).
Dataset and search settings (dataset, data path, classes, validation split, seed, early-exit method, budgets)
come from the run's evaluation settings saved in ``pick.json``; the training recipe defaults to the original's
fine-tuning: 200 epochs, batch 128, SAM (rho 2, adaptive), lr 0.1 -> 0 cosine, momentum 0.9,
weight decay 5e-5, label smoothing 0.1, seed 42. Every flag of ``python -m cnas.train`` overrides them.

Early-exit nets are trained as the search trained them (backbone on the final exit, then the exits) and their
thresholds are re-tuned on the validation split (``--tune_epsilon`` defaults to true here), then applied to the
test split.

Deviations from the original's fine-tuning and why: the cosine schedule decays once over the run (the original
stepped it every batch, so the learning rate oscillated); label smoothing 0.1 is applied (the original parsed it
and used plain cross-entropy); the best epoch and the thresholds are chosen on a validation split held out of
the training set, and the test split is only measured (the original selected on test when ``val_split`` was 0);
training resumes after an interruption; the search's ``net.stats`` is kept (the original wrote over it).
An interruption during the exit stage of an early-exit net repeats that (short) stage only.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from cnas import complexity
from cnas.errors import ArchError, CheckpointError, ConfigError
from cnas.evaluation import EvalSettings, _round, resolve_arch
from cnas.fileio import atomic_torch_save, atomic_write_json, load_torch_file, read_json

STATS_NAME = "net.finetuned.stats"
CKPT_NAME = "ckpt.finetuned.pth"
STATE_NAME = "train_state.pth"
PICK_FILE = "pick.json"

#: The original's fine-tuning recipe, with label smoothing actually applied.
FINETUNE_DEFAULTS = dict(epochs=200, batch_size=128, optim="SAM", rho=2.0, adaptive=True, lr=0.1, lr_min=0.0,
                         momentum=0.9, weight_decay=5e-5, nesterov=False, label_smoothing=0.1, warmup_epochs=0.0,
                         seed=42, eval_test=True, tune_epsilon=True, resolution=32, pretrained=True,
                         bn_recalibrate=True)
#: Settings of the search's evaluation that describe the training recipe, not the task: not carried over.
RECIPE_KEYS = {"epochs", "batch_size", "optim", "rho", "adaptive", "lr", "lr_min", "momentum", "weight_decay",
               "nesterov", "label_smoothing", "warmup_epochs", "grad_clip", "seed", "eval_test", "tune_epsilon",
               "save_ckpt", "device", "num_threads", "progress", "amp", "num_workers", "pretrained"}


def finetune_settings(folder: str | Path, *layers: dict) -> EvalSettings:
    """The settings for fine-tuning the pick in ``folder``: EvalSettings defaults <- the original's fine-tuning
    recipe <- the search's task settings from ``pick.json`` <- ``layers`` (config file, then flags)."""
    from cnas.cli import build_settings

    carried = {}
    pick = Path(folder) / PICK_FILE
    if pick.is_file():
        rec = read_json(pick, "pick file", ConfigError)
        ev = rec.get("evaluation") or {}
        carried = {k: v for k, v in ev.items() if k not in RECIPE_KEYS and v is not None}
        if rec.get("n_classes") and "n_classes" not in carried:
            carried["n_classes"] = int(rec["n_classes"])
    return build_settings(EvalSettings, FINETUNE_DEFAULTS, carried, *layers).validate()


def _same_arch(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "r"} == {k: v for k, v in b.items() if k != "r"}


def _load_init(model: torch.nn.Module, path: Path, arch: dict, n_classes: int) -> None:
    ck = load_torch_file(path, what="checkpoint")
    if not isinstance(ck, dict) or "state_dict" not in ck:
        raise CheckpointError(f"checkpoint {path} holds no 'state_dict'")
    if isinstance(ck.get("arch"), dict) and not _same_arch(ck["arch"], arch):
        raise CheckpointError(f"checkpoint {path} was saved for another arch than net.subnet; delete it or restore "
                              "the pick's net.subnet")
    if ck.get("n_classes") not in (None, n_classes):
        raise CheckpointError(f"checkpoint {path} has a {ck['n_classes']}-class head but the data has {n_classes} "
                              "classes; pass the search's --dataset/--n_classes")
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not fit the network of net.subnet ({first[:160]})") from None
    if hasattr(model, "thresholds") and ck.get("thresholds"):
        model.thresholds = [float(t) for t in ck["thresholds"]]


def _check_state(path: Path, cfg) -> None:
    if not path.is_file():
        return
    state = load_torch_file(path, what="training state")
    old = dict(state.get("config") or {}) if isinstance(state, dict) else {}
    new = asdict(cfg)
    diff = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in new.items() if k != "progress" and old.get(k) != v]
    if diff:
        raise ConfigError(f"{path} was written with other settings ({'; '.join(diff[:3])}); pass the same settings "
                          "to resume, or delete it to start over")


def finetune(folder: str | Path, settings: EvalSettings, out_dir: str | Path | None = None,
             log: Callable[[str], None] | None = None, device: str | None = None) -> dict:
    """Fine-tune the pick in ``folder`` (see the module docstring); returns the stats written to
    ``<out_dir>/net.finetuned.stats`` (``out_dir`` defaults to ``folder``)."""
    from cnas.data import load_data, subset_loader
    from cnas.models import build_network, load_supernet, recalibrate_bn
    from cnas.spaces import exit_mask
    from cnas.training.trainer import evaluate, train

    t0 = time.perf_counter()
    say = log or (lambda msg: None)
    folder = Path(folder)
    out = Path(out_dir) if out_dir is not None else folder
    arch = read_json(folder / "net.subnet", "arch file", ArchError)
    settings.validate()
    arch, r = resolve_arch(arch, settings)
    dev = torch.device(device or settings.device)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    loaders = load_data(settings.dataset, settings.data, resolution=r, val_split=settings.val_split,
                        batch_size=settings.batch_size, seed=settings.seed, n_classes=settings.n_classes,
                        num_workers=settings.num_workers, device=dev, channels_last=dev.type == "cuda")
    n_classes = loaders.n_classes
    val = loaders.val
    select_loader = val if val is not None else loaders.test
    is_ee = any(exit_mask(arch))

    torch.manual_seed(settings.seed)
    supernet, init = None, None
    for name in ("ckpt.pth", "inherited.pth"):
        if (folder / name).is_file():
            init = name
            break
    if init is None and settings.supernet_path and settings.pretrained:
        supernet, init = load_supernet(settings.supernet_path, n_classes), f"supernet {settings.supernet_path}"
    model = build_network(arch, n_classes, supernet=supernet, resolution=r)
    if init in ("ckpt.pth", "inherited.pth"):
        _load_init(model, folder / init, arch, n_classes)
    if (init == "inherited.pth" or supernet is not None) and settings.bn_recalibrate:  # supernet BN statistics
        recalibrate_bn(model.backbone if is_ee else model,
                       subset_loader(loaders.train, 2000, seed=settings.seed, augment=False))
    if init is None:
        init = "random"
        import sys

        print(f"warning: {folder} has no ckpt.pth and no --supernet_path was given: training from a random "
              "initialisation", file=sys.stderr, flush=True)
    model.to(dev)
    cfg = settings.train_config()
    say(f"fine-tuning {folder} from {init}: {loaders.describe()}; {cfg.epochs} epochs {cfg.optim} lr {cfg.lr}")
    state_path = out / STATE_NAME
    _check_state(state_path, cfg)
    out.mkdir(parents=True, exist_ok=True)
    backbone = model.backbone if is_ee else model
    res = train(backbone, loaders.train, val, cfg, device=dev, checkpoint_path=str(state_path), log=log)

    counts = complexity.count(arch, n_classes, r)
    stats: dict = {}
    if is_ee:
        from cnas.training.early_exit import EEConfig, exit_costs, measure_exits, train_exits

        method = settings.method or ("bernulli" if "b" in arch else "joint")
        ee = EEConfig(method=method, warmup_ee_epochs=settings.warmup_ee_epochs, ee_epochs=settings.ee_epochs,
                      w_alpha=settings.w_alpha, w_beta=settings.w_beta, w_gamma=settings.w_gamma,
                      mmax=settings.tiny_ml_kwargs()["mmax"], top1min=settings.top1min,
                      tune_epsilon=settings.tune_epsilon, support_set=False)
        backbone_err = (1 - evaluate(model.backbone, select_loader, dev)["acc"]) * 100
        costs = exit_costs(counts)
        train_exits(model, loaders.train, select_loader, cfg, ee, costs, dev, log=log)
        ee_stats = measure_exits(model, select_loader, costs, ee, dev,
                                 test_loader=loaders.test if val is not None else None)
        if val is None:
            ee_stats.update(test_top1=ee_stats["top1"], test_exits_ratio=ee_stats["exits_ratio"],
                            test_avg_macs=ee_stats["avg_macs"])
        stats.update({"backbone_top1": backbone_err, "backbone_macs": counts["backbone_macs"],
                      "classifiers_macs": counts["classifiers_macs"], "exit_costs": costs, **ee_stats})
    else:
        stats["top1"] = (1 - evaluate(model, select_loader, dev)["acc"]) * 100
        stats["test_top1"] = stats["top1"] if val is None else (1 - evaluate(model, loaders.test, dev)["acc"]) * 100
    stats.update({k: counts[k] for k in ("params", "macs", "activations")})
    stats["tiny_ml"] = complexity.tiny_ml(counts["params"], counts["macs"], counts["activations"],
                                          **settings.tiny_ml_kwargs())
    if settings.eval_robust:
        from cnas.training.robustness import sigma_grid, top1_robust, weight_robustness

        sigmas = sigma_grid(settings.sigma_min, settings.sigma_max, settings.sigma_step)
        base = evaluate(backbone, select_loader, dev)["acc"]
        stats["robustness"] = weight_robustness(backbone, select_loader, sigmas, settings.n_draws, settings.seed,
                                                dev, base_acc=base)
        stats["top1_robust"] = top1_robust(stats["top1"], stats["robustness"][0], settings.alpha,
                                           settings.alpha_norm)
    stats.update({
        "top1_split": "val" if val is not None else "test", "n_classes": n_classes, "resolution": r,
        "dataset": settings.dataset, "init": init, "epochs": cfg.epochs,
        "best_epoch": res.best_epoch + 1 if res.history else 0,
        "recipe": {k: getattr(cfg, k) for k in ("optim", "lr", "lr_min", "rho", "adaptive", "momentum",
                                                 "weight_decay", "label_smoothing", "warmup_epochs", "seed")}
        | {"batch_size": settings.batch_size},
        "seconds": time.perf_counter() - t0,
    })
    stats = {k: _round(v) if k not in ("epsilon", "branch_scores", "ece_scores", "recipe") else v
             for k, v in stats.items()}
    atomic_torch_save(out / CKPT_NAME, {
        "state_dict": model.state_dict(), "arch": arch, "n_classes": n_classes, "resolution": r,
        "dataset": settings.dataset, "thresholds": list(getattr(model, "thresholds", [])),
        "mean": [float(v) for v in loaders.mean], "std": [float(v) for v in loaders.std],
    })
    atomic_write_json(out / STATS_NAME, stats)
    return stats


def main_from_args(args) -> int:
    """``python -m cnas.train --model_path <picked folder>`` (``args`` from :func:`cnas.train.parser`)."""
    from cnas.cli import given_fields, load_config_file

    folder = Path(args.model_path)
    if not (folder / "net.subnet").is_file():
        raise ArchError(f"--model_path {folder} is a folder without net.subnet: give a pick of cnas.post_search "
                        "or an arch file")
    if args.name:
        raise ConfigError("--name applies to arch files; a picked folder is fine-tuned into net.finetuned.stats")
    file_cfg = load_config_file(args.config) if args.config else {}
    settings = finetune_settings(folder, file_cfg, given_fields(args, EvalSettings))
    log = None if args.quiet else (lambda msg: print(msg, flush=True))
    out = Path(args.output_path) if args.output_path else folder
    stats = finetune(folder, settings, out, log=log or (lambda m: None))
    keys = ["test_top1", "top1", "params", "macs", "activations", "test_avg_macs", "test_exits_ratio"]
    print(f"{out / STATS_NAME}: " + ", ".join(f"{k} {stats[k]}" for k in keys if k in stats))
    return 0


__all__ = ["finetune", "finetune_settings", "main_from_args", "FINETUNE_DEFAULTS", "STATS_NAME", "CKPT_NAME",
           "STATE_NAME"]
