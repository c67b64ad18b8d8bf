"""The file names of a candidate's net folder and of a picked network's folder: the one home of both layouts.

A search writes one net folder per evaluated candidate::

    <save>/iter_X/net_Y/net_Y.subnet    the arch (JSON)
    <save>/iter_X/net_Y/net_Y.stats     its measured stats (JSON)
    <save>/iter_X/net_Y/ckpt.pth        its trained weights (--save_ckpt)

``python -m cnas.post_search`` copies a chosen net folder into a pick folder, renaming the two JSON files, and adds
what fine-tuning and export need::

    <pick>/net.subnet, net.stats        the arch and the search's stats
    <pick>/ckpt.pth                     the search's weights, when it kept them
    <pick>/inherited.pth                else the subnet's weights extracted from the supernet (--supernet_path)
    <pick>/pick.json                    where the pick came from and the run's evaluation settings
    <pick>/net.finetuned.stats          after ``cnas.train --model_path <pick>``, with ckpt.finetuned.pth
    <pick>/train_state.pth              while that fine-tune runs (it resumes from it)

Names only: no module here reads or writes a file.
"""

from __future__ import annotations

from pathlib import Path

SUBNET_SUFFIX = ".subnet"
STATS_SUFFIX = ".stats"
#: weights a search keeps (--save_ckpt), in a net folder and in a pick folder
CKPT = "ckpt.pth"
#: a failed candidate's error message, beside its arch under ``<save>/failed/``
ERROR_FILE = "error.txt"

PICK_SUBNET = "net" + SUBNET_SUFFIX
PICK_STATS = "net" + STATS_SUFFIX
PICK_RECORD = "pick.json"
INHERITED = "inherited.pth"
#: the stem of the fine-tuned stats file (``net.finetuned.stats``)
FINETUNED_NAME = "net.finetuned"
FINETUNED_STATS = FINETUNED_NAME + STATS_SUFFIX
FINETUNED_CKPT = "ckpt.finetuned.pth"
FINETUNE_STATE = "train_state.pth"
#: the weights a pick can hold, most trained first: the order export looks for them
EXPORT_WEIGHTS = (FINETUNED_CKPT, CKPT, INHERITED)


def subnet_file(folder: str | Path, name: str) -> Path:
    """``<folder>/<name>.subnet``: a candidate's arch file."""
    return Path(folder) / f"{name}{SUBNET_SUFFIX}"


def stats_file(folder: str | Path, name: str) -> Path:
    """``<folder>/<name>.stats``: a candidate's measured stats."""
    return Path(folder) / f"{name}{STATS_SUFFIX}"


def pick_name(file_name: str) -> str:
    """The name a net folder's file gets in a pick folder: ``*.subnet`` -> ``net.subnet``, ``*.stats`` ->
    ``net.stats``, anything else unchanged."""
    suffix = Path(file_name).suffix
    return PICK_SUBNET if suffix == SUBNET_SUFFIX else PICK_STATS if suffix == STATS_SUFFIX else file_name


def pick_folder_name(prefer: str, rank: int, n_exits: int | None = None) -> str:
    """``net-<prefer>_<rank>`` (``_nExits-<n>`` with an exit count), the original's pick folder names."""
    return f"net-{prefer}_{rank}" + (f"_nExits-{n_exits}" if n_exits is not None else "")
