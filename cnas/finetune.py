"""Fine-tuning of a picked network (``python -m cnas.train --model_path <picked folder>``).

A picked folder (written by ``python -m cnas.post_search``) holds ``net.subnet``, ``net.stats``, ``pick.json``
and, when the search kept weights, ``ckpt.pth``. Fine-tuning trains that network to convergence through the
search's evaluation pipeline (:func:`cnas.evaluation.run_pipeline`) with the fine-tuning recipe and writes, beside
the search's files and never over them:

* ``net.finetuned.stats``: ``test_top1`` (test error in %, the figure to report), ``top1`` (validation error),
  ``params``/``macs``/``activations``/``tiny_ml``; early-exit nets add ``exits_ratio``/``avg_macs`` (validation)
  and ``test_exits_ratio``/``test_avg_macs`` with the re-tuned ``epsilon``; plus ``init``, ``epochs``,
  ``best_epoch``, ``history`` and the ``recipe``;
* ``ckpt.finetuned.pth``: the network checkpoint of :func:`cnas.models.checkpoint.save_net_checkpoint` (what
  ``python -m cnas.export`` reads);
* ``train_state.pth``: the trainer's epoch checkpoint; re-running the same command after an interruption resumes
  from it (delete it to start over; different settings are refused).

Weights start from ``ckpt.pth``, else ``inherited.pth`` (post-search ``--supernet_path``; its batch-norm
statistics are re-estimated), else ``--supernet_path`` (stage-aware extraction + batch-norm re-estimation), else
a random initialisation (with a warning). Dataset and search settings (dataset, data path, classes, validation
split, early-exit method, budgets, measurements) come from the run's evaluation settings saved in ``pick.json``;
the training recipe (:data:`FINETUNE_RECIPE`: every :class:`~cnas.training.trainer.TrainConfig` field and the
few evaluation settings in :data:`RECIPE_KEYS`) defaults to the original's fine-tuning: 200 epochs, batch 128,
SAM (rho 2, adaptive), lr 0.1 -> 0 cosine, momentum 0.9, weight decay 5e-5, label smoothing 0.1, seed 42, batch
norm re-estimated on 2000 images. Every flag of ``python -m cnas.train`` overrides them.

Early-exit nets are trained as the search trains them (backbone on the final exit, then the exits) and their
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

import sys
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Callable

import torch

from cnas.errors import ArchError, CheckpointError, ConfigError
from cnas.evaluation import EvalSettings, Init, Outputs, preflight_classes, resolve_arch, run_pipeline
from cnas.fileio import read_json
from cnas.layout import CKPT, FINETUNE_STATE, FINETUNED_CKPT, FINETUNED_NAME, INHERITED, PICK_RECORD, PICK_SUBNET
from cnas.models import EENetwork, build_network
from cnas.models.checkpoint import load_net_checkpoint
from cnas.models.polynomial import substitute_activation
from cnas.spaces import SPACES, space_of
from cnas.training.trainer import TrainConfig, read_training_state

#: the pick's weight files, first found first used; True: batch-norm statistics of the supernet (re-estimated)
PICK_WEIGHTS = ((CKPT, False), (INHERITED, True))

#: The original's fine-tuning recipe, with label smoothing actually applied.
FINETUNE_RECIPE = replace(EvalSettings(), epochs=200, batch_size=128, optim="SAM", rho=2.0, adaptive=True, lr=0.1,
                          lr_min=0.0, momentum=0.9, weight_decay=5e-5, nesterov=False, label_smoothing=0.1,
                          warmup_epochs=0.0, seed=42, eval_test=True, tune_epsilon=True, resolution=32,
                          pretrained=True, bn_recalibrate=True, bn_recal_images=2000, train_images=0,
                          val_images=0)
#: Settings that belong to the recipe, not the task: every training-recipe field and these evaluation settings.
#: They come from :data:`FINETUNE_RECIPE` (then the flags), never from the search's ``pick.json``.
RECIPE_KEYS = frozenset(f.name for f in fields(TrainConfig)) | {
    "batch_size", "bn_recal_images", "train_images", "val_images", "eval_test", "tune_epsilon", "save_ckpt",
    "pretrained", "device", "num_threads", "num_workers"}
#: The recipe's values that the stats record.
RECORDED = ("optim", "lr", "lr_min", "rho", "adaptive", "momentum", "weight_decay", "label_smoothing",
            "warmup_epochs", "seed", "batch_size")


def finetune_layers(folder: str | Path) -> tuple[dict, dict]:
    """The two lowest layers of the fine-tuning settings of the pick in ``folder``: the recipe
    (:data:`FINETUNE_RECIPE`, every setting) and the task settings the search saved in ``pick.json`` (all but
    :data:`RECIPE_KEYS`; ``{}`` without the file). The recipe re-tunes exit thresholds only in spaces whose
    networks can have exits (not resnet50's)."""
    carried = {}
    pick = Path(folder) / PICK_RECORD
    if pick.is_file():
        rec = read_json(pick, "pick file", ConfigError)
        ev = rec.get("evaluation") or {}
        carried = {k: v for k, v in ev.items() if k not in RECIPE_KEYS and v is not None}
        if rec.get("n_classes") and "n_classes" not in carried:
            carried["n_classes"] = int(rec["n_classes"])
    recipe = asdict(FINETUNE_RECIPE)
    space = carried.get("search_space") or _arch_space(Path(folder) / PICK_SUBNET)
    if space in SPACES and not SPACES[space].exit_heads:
        recipe["tune_epsilon"] = False
    return recipe, carried


def _arch_space(path: Path) -> str | None:
    """The space of the arch file ``path`` by its keys (None when it cannot be read: the checks say why later)."""
    try:
        return space_of(read_json(path, "arch file", ArchError))
    except ArchError:
        return None


def finetune_settings(folder: str | Path, *layers: dict) -> EvalSettings:
    """The settings for fine-tuning the pick in ``folder``: the fine-tuning recipe <- the search's task settings
    from ``pick.json`` <- ``layers`` (e.g. a config file, then flags; later layers win)."""
    merged: dict = {}
    for layer in (*finetune_layers(folder), *layers):
        merged.update(layer)
    return EvalSettings.from_dict(merged).validate()


def finetune_init(folder: str | Path, settings: EvalSettings, warn: bool = True) -> Init:
    """Where fine-tuning starts: the pick's weights (:data:`PICK_WEIGHTS`), else the supernet of the settings,
    else a random initialisation (with a warning on stderr when ``warn``)."""
    folder = Path(folder)
    for name, supernet_stats in PICK_WEIGHTS:
        if (folder / name).is_file():
            return Init("checkpoint", str(folder / name), supernet_stats=supernet_stats, label=name)
    init = Init.for_settings(settings)
    if init.kind == "random" and warn:
        print(f"warning: {folder} has no ckpt.pth and no --supernet_path was given: training from a random "
              "initialisation", file=sys.stderr, flush=True)
    return init


def check_finetune(folder: str | Path, settings: EvalSettings, out_dir: str | Path | None = None) -> None:
    """Everything about fine-tuning the pick in ``folder`` that can be checked without training, so that bad input
    stops before any work: the settings, data and supernet (:func:`cnas.evaluation.preflight`), the pick's arch
    against them, the checkpoint it starts from (readable, saved for this arch and class count, weights that fit)
    and an earlier run's ``train_state.pth`` in ``out_dir`` (readable, the same recipe, the same network).
    Raises a :class:`~cnas.errors.UsageError` (one line). Torch's random state is left as it was."""
    folder = Path(folder)
    out = Path(out_dir) if out_dir is not None else folder
    arch, r = resolve_arch(read_json(folder / "net.subnet", "arch file", ArchError), settings)
    n_classes = preflight_classes(settings)
    init = finetune_init(folder, settings, warn=False)
    with torch.random.fork_rng(devices=[]):
        net = build_network(arch, n_classes, resolution=r, width_mult=settings.width_mult)
        if init.kind == "checkpoint":
            load_net_checkpoint(init.path, net, arch=arch, n_classes=n_classes)
    state_path = out / FINETUNE_STATE
    if state_path.exists():
        state = read_training_state(state_path, settings.train_config())
        backbone = net.backbone if isinstance(net, EENetwork) else net
        if settings.func_constr:
            substitute_activation(backbone)
        own = backbone.state_dict()
        saved = state["model"] if isinstance(state["model"], dict) else {}
        fits = set(saved) == set(own) and all(torch.is_tensor(v) and v.shape == own[k].shape for k, v in saved.items())
        if not fits:
            raise CheckpointError(f"{state_path} was written for another network than {folder / 'net.subnet'}; "
                                  "delete it to start over")


def finetune(folder: str | Path, settings: EvalSettings, out_dir: str | Path | None = None,
             log: Callable[[str], None] | None = None, device: str | None = None, checked: bool = False) -> dict:
    """Fine-tune the pick in ``folder`` (see the module docstring); returns the stats written to
    ``<out_dir>/net.finetuned.stats`` (``out_dir`` defaults to ``folder``). Bad input is refused first
    (:func:`check_finetune`; ``checked``: the caller did that already)."""
    folder = Path(folder)
    out = Path(out_dir) if out_dir is not None else folder
    if not checked:
        check_finetune(folder, settings, out)
    arch = read_json(folder / "net.subnet", "arch file", ArchError)
    settings.validate()
    init = finetune_init(folder, settings)
    extra = {"dataset": settings.dataset, "init": init.describe(), "epochs": settings.epochs,
             "recipe": {k: getattr(settings, k) for k in RECORDED}}
    outputs = Outputs(out, FINETUNED_NAME, subnet=False, ckpt=FINETUNED_CKPT, state=FINETUNE_STATE,
                      extra_stats=extra, report_test=True)
    return run_pipeline(arch, settings, init, outputs, device=device, log=log)


__all__ = ["finetune", "check_finetune", "finetune_settings", "finetune_layers", "finetune_init", "FINETUNE_RECIPE",
           "RECIPE_KEYS", "PICK_WEIGHTS"]
