"""Loading OFA supernet weights (MobileNetV3, and ResNet-50 for the ``resnet50`` space): official OFA checkpoints
and cnas's own supernet files.

Files read (see ``supernets/README.md``):

* official OFA checkpoints ``ofa_mbv3_d234_e346_k357_w1.0`` / ``..._w1.2`` (ImageNet, 1000 classes), either
  ``{"state_dict": {...}}`` or a bare state dict, with the current ``.conv.`` key layout or the older
  ``.mobile_inverted_conv.`` one (a ``module.`` prefix from DataParallel is dropped too);
* cnas supernet files written by :func:`save_supernet`: ``{"state_dict": {...}, "meta": {...}}``;
* for ``space="resnet50"``: a checkpoint of OFA's ResNet-50 supernet (``OFAResNets`` with d 0,1,2, e 0.2,0.25,0.35,
  w 0.65,0.8,1.0, e.g. ``ofa_resnet50``) in the same layouts, ``{"state_dict": ...}`` of the dynamic network's keys
  (``input_stem.0.conv.conv.weight``, ``blocks.0.conv1.conv.conv.weight``, ``classifier.linear.linear.weight``).

Everything is read with ``torch.load(path, map_location="cpu", weights_only=True)``: no code in a checkpoint runs.
Nothing is ever downloaded.

Deviations from the original (``NasSearchSpace ofa/evaluator.py``):

* The original always keeps the first ``n_classes`` rows of the ImageNet classifier, which ties, say, CIFAR-10
  class 0 to ImageNet's "tench". cnas by default (``head="reinit"``) keeps the classifier only when
  ``n_classes`` equals the checkpoint's class count and otherwise leaves the fresh, randomly initialised
  ``n_classes``-way classifier (seed torch for reproducibility); ``head="slice"`` restores the original's slicing.
* The original loads with ofa's ``load_state_dict``, which renames keys but silently keeps the random init of any
  key the file lacks and raises bare ``ValueError``/``AssertionError``/size errors. cnas applies the same key
  renames but checks every key and shape and raises :class:`CheckpointError` with one line naming the file.
"""

from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path

import torch
import torch.nn as nn

from cnas.errors import ArchError, CheckpointError, ConfigError
from cnas.fileio import atomic_torch_save, load_torch_file
from cnas.layout import PICK_SUBNET
from cnas.models.early_exit import build_network
from cnas.models.ofa_net import build_supernet
from cnas.models.ofa_resnet import is_resnet_supernet, supernet_classes
from cnas.spaces import DEPTHS, EXPANSIONS, KERNELS, space_for_arch
from cnas.spaces import resnet_geometry as R
from cnas.spaces.geometry import (
    BASE_STAGE_WIDTH,
    MAX_RESOLUTION,
    PLAIN,
    RESNET50,
    WIDTH_MULTS,
    as_resolution,
    make_divisible,
)

HEAD_MODES = ("reinit", "slice")
FORMAT = "cnas-supernet"
FORMAT_VERSION = 1
_CLS_W, _CLS_B = "classifier.linear.weight", "classifier.linear.bias"
_RESNET_CLS = ("classifier.linear.linear.weight", "classifier.linear.linear.bias")
#: what a supernet of each family is called in messages, and the choices its cnas file records
_FAMILY = {PLAIN: "OFA MobileNetV3", RESNET50: "OFA ResNet-50"}
_FAMILY_NAME = {PLAIN: "OFA MobileNetV3 d234/e346/k357", RESNET50: "OFA ResNet-50 d012/e0.2,0.25,0.35/w0.65,0.8,1.0"}
_CHOICES = {PLAIN: {"ks_list": list(KERNELS), "expand_ratio_list": list(EXPANSIONS), "depth_list": list(DEPTHS)},
            RESNET50: {"depth_list": list(R.DEPTHS), "expand_ratio_list": list(R.EXPANSIONS),
                       "width_mult_list": list(R.WIDTH_MULTS)}}
# Alternative spellings between ofa's dynamic and static layer layouts (the renames of ofa's own load_state_dict).
_ALIASES = (
    (".bn.bn.", ".bn."),
    (".conv.conv.weight", ".conv.weight"),
    (".linear.linear.", ".linear."),
    (".linear.", ".linear.linear."),
    (".bn.", ".bn.bn."),
    (".conv.weight", ".conv.conv.weight"),
)


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path}: {problem}")


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, meta)`` of a supernet file; ``meta`` is ``{}`` for official OFA checkpoints.

    Raises :class:`CheckpointError` for a missing file, one torch cannot read with ``weights_only=True``, or
    one that holds no state dict of tensors.
    """
    path = Path(path)
    if not path.exists():
        raise _fail(path, "file not found (official OFA weights go in supernets/, see supernets/README.md)")
    if not path.is_file():
        raise _fail(path, "is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        m = re.search(r"Unsupported global: [^\s]+(?: [^\s]+)?", str(exc))
        why = m.group(0).rstrip(".,") if m else type(exc).__name__
        raise _fail(path, f"not a torch checkpoint readable with weights_only=True: corrupt, truncated or holding "
                          f"Python objects ({why})") from None
    meta: dict = {}
    if isinstance(obj, dict) and "state_dict" in obj:
        meta = obj.get("meta") or {}
        if not isinstance(meta, dict):
            raise _fail(path, f"'meta' must be a dict, found {type(meta).__name__}")
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise _fail(path, f"holds no state dict (found {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise _fail(path, f"holds {len(bad)} entries that are not named tensors, e.g. {bad[0]!r}")
    return obj, meta


def width_from_name(path: str | os.PathLike) -> float | None:
    """The width multiplier written in an OFA file name (``..._w1.2`` -> 1.2), or None."""
    m = re.search(r"_w(\d+(?:\.\d+)?)(?![\d])", Path(path).name)
    return float(m.group(1)) if m else None


def _find(sd: dict[str, torch.Tensor], suffix: str) -> torch.Tensor | None:
    for key, val in sd.items():
        if key.endswith(suffix):
            return val
    return None


def _family(space: str | None) -> str:
    """The supernet family of a search space name (the three MobileNetV3 spaces share one supernet)."""
    return RESNET50 if space == RESNET50 else PLAIN


def file_family(sd: dict[str, torch.Tensor]) -> str | None:
    """``"resnet50"`` or ``"mobilenetv3"`` by the keys of a supernet state dict (None: neither)."""
    if _find(sd, "first_conv.conv.weight") is not None and _find(sd, "final_expand_layer.conv.weight") is not None:
        return PLAIN
    if any("input_stem.0." in k for k in sd) and any(".conv1." in k for k in sd):
        return RESNET50
    return None


def check_supernet_family(path: str | os.PathLike, space: str) -> None:
    """Refuse, in one line, a supernet file whose keys show the other family than ``space``'s (MobileNetV3 or
    ResNet-50). Reads only the keys (memory-mapped), so it costs milliseconds; a file it cannot read this way is
    left to :func:`load_supernet`."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):  # load_supernet words the problem
        return
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    found = file_family(sd) if isinstance(sd, dict) else None
    family = _family(space)
    if found is not None and found != family:
        raise _fail(path, f"holds an {_FAMILY[found]} supernet, not the {space} space's ({_FAMILY[family]}); "
                          "give a supernet of that space")


def _shapes_fit_width(sd: dict[str, torch.Tensor], width: float) -> bool:
    stem = _find(sd, "first_conv.conv.weight")
    expand = _find(sd, "final_expand_layer.conv.weight")
    if stem is None or expand is None:
        return False
    return (stem.shape[0] == make_divisible(BASE_STAGE_WIDTH[0] * width)
            and expand.shape[0] == make_divisible(BASE_STAGE_WIDTH[-2] * width))


def infer_width(path: str | os.PathLike, sd: dict[str, torch.Tensor], meta: dict | None = None) -> float:
    """The width multiplier of a supernet state dict: from its tensor shapes, trying the file name's ``_wX``,
    ``meta["width_mult"]`` and the official widths (1.0, 1.2) in that order."""
    candidates = [width_from_name(path), (meta or {}).get("width_mult"), *WIDTH_MULTS]
    for width in candidates:
        if isinstance(width, (int, float)) and width > 0 and _shapes_fit_width(sd, float(width)):
            return float(width)
    raise _fail(Path(path), f"its tensor shapes match no known width {list(WIDTH_MULTS)}; pass width_mult explicitly")


def _normalise(sd: dict[str, torch.Tensor], model_keys: set[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    out: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, val in sd.items():
        k = key[len("module."):] if key.startswith("module.") else key
        k = k.replace(".mobile_inverted_conv.", ".conv.")
        if k not in model_keys:
            for a, b in _ALIASES:
                if a in k and k.replace(a, b) in model_keys:
                    k = k.replace(a, b)
                    break
            else:
                unexpected.append(key)
                continue
        out[k] = val
    return out, unexpected


def load_supernet(
    path: str | os.PathLike,
    n_classes: int,
    width_mult: float | None = None,
    head: str = "reinit",
    return_meta: bool = False,
    space: str = PLAIN,
) -> nn.Module | tuple[nn.Module, dict]:
    """An OFA MobileNetV3 supernet (d234, e346, k357, dropout 0) with the weights of ``path``; with
    ``space="resnet50"`` an OFA ResNet-50 supernet (``OFAResNets``).

    Args:
        path: an official OFA checkpoint or a cnas supernet file (see the module docstring).
        n_classes: classes of the returned supernet's classifier.
        width_mult: the supernet width; by default inferred from the tensor shapes (the file name's ``_w1.2`` and
            ``meta["width_mult"]`` are tried first).
        head: what to do with the checkpoint's classifier when its class count differs from ``n_classes``.
            ``"reinit"`` (default): keep the fresh randomly initialised classifier (a different label set gets a
            new head; seed torch first for reproducibility). ``"slice"``: keep the first ``n_classes`` rows, as
            the original does (needs ``n_classes`` <= the checkpoint's classes). With equal counts the
            classifier is always loaded.
        return_meta: also return the file's ``meta`` dict (``{}`` for official OFA checkpoints).
        space: the search space whose supernet the file must hold (the MobileNetV3 spaces share one;
            ``resnet50``: a ResNet-50 supernet, whose widths are its own, so ``width_mult`` stays None or 1.0).

    Raises:
        CheckpointError: missing, unreadable or incompatible file (unknown keys, missing keys, wrong shapes);
            one line naming the file and the problem.
    """
    if head not in HEAD_MODES:
        raise ConfigError(f"head={head!r} is not one of {list(HEAD_MODES)}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ConfigError(f"n_classes must be a positive integer, got {n_classes!r}")
    path = Path(path)
    sd, meta = read_checkpoint(path)
    family = _family(space)
    found = file_family(sd)
    if found is not None and found != family:
        raise _fail(path, f"holds an {_FAMILY[found]} supernet, not the {space} space's ({_FAMILY[family]}); "
                          "give a supernet of that space")
    if family == RESNET50:
        if width_mult not in (None, 1.0):
            raise ConfigError(f"width_mult {width_mult} is a MobileNetV3 supernet width; the ResNet-50 supernet's "
                              "widths are its w genes")
        width, where = 1.0, ""
        net = build_supernet(n_classes, space=RESNET50)
        cls_w, cls_b = _RESNET_CLS
    else:
        width = float(width_mult) if width_mult is not None else infer_width(path, sd, meta)
        where = f" for width {width}"
        net = build_supernet(n_classes, width_mult=width)
        cls_w, cls_b = _CLS_W, _CLS_B
    own = net.state_dict()
    sd, unexpected = _normalise(sd, set(own))
    if unexpected:
        raise _fail(path, f"{len(unexpected)} keys unknown to the {_FAMILY_NAME[family]} supernet, "
                          f"e.g. {unexpected[0]!r}")
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    if missing:
        raise _fail(path, f"{len(missing)} supernet keys are missing, e.g. {missing[0]!r}")
    if cls_w in sd and cls_b in sd and sd[cls_w].ndim == 2:
        ckpt_classes = sd[cls_w].shape[0]
        if ckpt_classes != n_classes:
            if head == "slice":
                if n_classes > ckpt_classes:
                    raise _fail(path, f"head='slice' needs n_classes <= its {ckpt_classes} classes, got {n_classes}")
                sd[cls_w], sd[cls_b] = sd[cls_w][:n_classes], sd[cls_b][:n_classes]
            else:
                del sd[cls_w], sd[cls_b]
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in sd.items() if v.shape != own[k].shape]
    if wrong:
        k, got, want = wrong[0]
        raise _fail(path, f"{len(wrong)} tensors have the wrong shape{where}, e.g. {k!r} is {list(got)}, "
                          f"expected {list(want)}")
    full = {k: sd.get(k, v) for k, v in own.items()}
    nn.Module.load_state_dict(net, full, strict=True)  # keys and shapes already checked; bypass ofa's renaming
    if return_meta:
        return net, dict(meta)
    return net


#: The end of :func:`check_supernet_file`'s message about another width (``{found}``: the file's width).
SEARCH_WIDTH_HINT = "; pass --width_mult {found:.1f} to use it (counts and networks follow the supernet's width)"


def check_supernet_file(path: str | os.PathLike, n_classes: int, flag: str = "--supernet_path",
                        width_mult: float | None = 1.0, same_classes: bool = True,
                        width_hint: str = SEARCH_WIDTH_HINT, space: str | None = PLAIN) -> dict:
    """Open the supernet file ``path`` as :func:`load_supernet` would and refuse, with one line naming ``flag``,
    what does not fit: a missing path, a folder, an empty, truncated or unreadable file, a file that is no
    MobileNetV3 d234/e346/k357 supernet (keys, shapes), one of another width than ``width_mult`` (None: any
    official width), a cnas supernet of another search space (its recorded kernel, expansion and depth choices)
    or, with ``same_classes``, a cnas supernet trained for another class count than ``n_classes`` (an official
    1000-class ImageNet head is always replaced); ``width_hint`` ends the message about another width.
    ``space``: the search space whose supernet it must be (``resnet50``: OFA's ResNet-50 supernet, refused for the
    MobileNetV3 ones and the other way round; None: the family its keys show). Nothing is kept and torch's random
    state is left as it was.
    Returns the file's ``meta`` (``{}`` for an official checkpoint)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{flag} {p} does not exist; train one with python -m cnas.supernet or put the "
                              "official OFA weights there (see supernets/README.md)")
    if not p.is_file():
        raise CheckpointError(f"{flag} {p} is a folder, not a supernet checkpoint file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{flag} {p} is an empty file; train the supernet again (python -m cnas.supernet)")
    sd, meta = read_checkpoint(p)
    if meta and meta.get("format") not in (None, FORMAT):
        raise CheckpointError(f"{flag} {p} holds a {meta.get('format')!r} file, not a supernet")
    found = file_family(sd)
    family = _family(space) if space is not None else (found or PLAIN)
    if found is not None and found != family:
        want = "--search_space resnet50" if found == RESNET50 else "a MobileNetV3 --search_space"
        raise CheckpointError(f"{flag} {p} is an {_FAMILY[found]} supernet, not one of the {space} space; give "
                              f"that space's supernet, or search it with {want}")
    for key, want in _CHOICES[family].items():
        if key in meta and list(meta[key] or []) != want:
            raise CheckpointError(f"{flag} {p} is a supernet of another space ({key} {meta[key]}, cnas's spaces "
                                  f"use {want}); train one with python -m cnas.supernet")
    if family == RESNET50:
        if found is None:
            raise CheckpointError(f"{flag} {p} holds no OFA ResNet-50 supernet weights (no input_stem or blocks); "
                                  "give a checkpoint of OFA's ResNet-50 supernet")
        _check_classes(p, flag, meta, n_classes, same_classes)
        with torch.random.fork_rng(devices=[]):
            load_supernet(p, n_classes, space=RESNET50)  # every key and shape against the network
        return meta
    if _find(sd, "first_conv.conv.weight") is None or _find(sd, "final_expand_layer.conv.weight") is None:
        raise CheckpointError(f"{flag} {p} holds no MobileNetV3 supernet weights (no first_conv or "
                              "final_expand_layer); give a cnas.supernet checkpoint or the official OFA weights")
    width = infer_width(p, sd, meta)
    if width_mult is not None and width != float(width_mult):
        raise CheckpointError(f"{flag} {p} is a width-{width:.1f} supernet, not width {float(width_mult):.1f}"
                              f"{width_hint.format(found=width)}")
    _check_classes(p, flag, meta, n_classes, same_classes)
    with torch.random.fork_rng(devices=[]):
        load_supernet(p, n_classes, width_mult=width)  # every key and shape against the network
    return meta


def _check_classes(p: Path, flag: str, meta: dict, n_classes: int, same_classes: bool) -> None:
    classes = meta.get("n_classes")
    if same_classes and meta and classes is not None and classes != n_classes:
        raise CheckpointError(f"{flag} {p} was trained for {classes} classes but the data has {n_classes}; "
                              "train a supernet on this data (python -m cnas.supernet)")


def save_supernet(path: str | os.PathLike, supernet: nn.Module, meta: dict | None = None) -> Path:
    """Write ``supernet`` atomically in cnas's format ``{"state_dict": ..., "meta": {...}}``.

    ``meta`` (plain JSON-like values only, so that ``weights_only=True`` reads it back) is stored together with
    ``format``, ``version``, ``n_classes``, the supernet's choices (``ks_list``, ``expand_ratio_list`` and
    ``depth_list``; a ResNet-50 supernet: ``depth_list``, ``expand_ratio_list``, ``width_mult_list``) and, for a
    MobileNetV3 supernet, ``width_mult``. :func:`load_supernet` with ``return_meta=True`` returns it.
    """
    family = RESNET50 if is_resnet_supernet(supernet) else PLAIN
    info = {"format": FORMAT, "version": FORMAT_VERSION, "n_classes": supernet_classes(supernet)}
    if family == PLAIN:
        info["width_mult"] = float(supernet.width_mult)
    else:
        info["search_space"] = RESNET50
    info.update(_CHOICES[family])
    info.update(meta or {})
    state = {k: v.detach().cpu() for k, v in supernet.state_dict().items()}
    return atomic_torch_save(path, {"state_dict": state, "meta": info})



# ---------------------------------------------------------------- trained networks (not supernets)
NET_REQUIRED = ("state_dict", "arch", "n_classes")


def save_net_checkpoint(path: str | os.PathLike, model: nn.Module, arch: dict, n_classes: int, resolution: int,
                        dataset: str | None = None, mean=None, std=None, **extra) -> Path:
    """Write the cnas checkpoint of a trained network atomically.

    The file holds ``{"state_dict", "arch", "n_classes", "resolution", "dataset", "thresholds"}`` (``thresholds``:
    the model's exit thresholds, ``[]`` for a single-exit net), ``mean``/``std`` (the input normalization) when
    given, and every ``extra`` item (plain values only, so that :func:`load_net_checkpoint` reads it back with
    ``weights_only=True``).
    """
    ck = {"state_dict": model.state_dict(), "arch": arch, "n_classes": int(n_classes), "resolution": int(resolution),
          "dataset": dataset, "thresholds": [float(t) for t in getattr(model, "thresholds", [])]}
    if mean is not None:
        ck["mean"] = [float(v) for v in mean]
    if std is not None:
        ck["std"] = [float(v) for v in std]
    ck.update(extra)
    return atomic_torch_save(path, ck)


def _same_arch(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "r"} == {k: v for k, v in b.items() if k != "r"}


def load_net_checkpoint(path: str | os.PathLike, model: nn.Module | None = None, arch: dict | None = None,
                        n_classes: int | None = None) -> tuple[nn.Module, dict]:
    """The network of a cnas checkpoint written by :func:`save_net_checkpoint`, and its metadata (every item but
    ``state_dict``; ``resolution`` filled from the arch's ``r`` when the file has none).

    Read with ``weights_only=True``. ``model``: load the weights (and exit thresholds) into this network;
    by default the network of the checkpoint's arch is built (:func:`cnas.models.build_network`). ``arch`` and
    ``n_classes``: what the checkpoint must have been saved for (the resolution ``r`` may differ).

    Raises:
        CheckpointError: missing or unreadable file, not a cnas network checkpoint, saved for another arch or
            class count, or weights that do not fit the network; one line naming the file.
    """
    path = Path(path)
    ck = load_torch_file(path, what="checkpoint")
    if not isinstance(ck, dict) or not set(NET_REQUIRED) <= set(ck):
        raise _fail(path, f"not a cnas network checkpoint (needs {', '.join(NET_REQUIRED)})")
    if not isinstance(ck["arch"], dict):
        raise _fail(path, f"'arch' must be a dict, found {type(ck['arch']).__name__}")
    if arch is not None and not _same_arch(ck["arch"], arch):
        raise CheckpointError(f"checkpoint {path} was saved for another arch than {PICK_SUBNET}; delete it or "
                              f"restore the pick's {PICK_SUBNET}")
    classes = ck["n_classes"]
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise _fail(path, f"'n_classes' must be a positive integer, found {classes!r}")
    if n_classes is not None and classes != n_classes:
        raise CheckpointError(f"checkpoint {path} has a {classes}-class head but the data has {n_classes} "
                              "classes; pass the search's --dataset/--n_classes")
    meta = {k: v for k, v in ck.items() if k != "state_dict"}
    r = ck.get("resolution") or ck["arch"].get("r")
    if as_resolution(r) is None:
        raise _fail(path, f"'resolution' (or the arch's 'r') must be an integer in [1, {MAX_RESOLUTION}], "
                          f"found {r!r}")
    meta["resolution"] = r = as_resolution(r)
    thresholds = ck.get("thresholds") or []
    if not isinstance(thresholds, (list, tuple)) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in thresholds):
        raise _fail(path, f"'thresholds' must be a list of numbers, found {thresholds!r}")
    sd = ck["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise _fail(path, "'state_dict' is not a dict of named tensors")
    if model is None:
        try:
            space_for_arch(ck["arch"], lr=r, ur=r).validate({**ck["arch"], "r": r})
        except ArchError as exc:
            raise _fail(path, f"its arch is not valid ({exc})") from None
        width = ck.get("width_mult", 1.0)
        if isinstance(width, bool) or not isinstance(width, (int, float)) or float(width) not in WIDTH_MULTS:
            raise _fail(path, f"'width_mult' must be one of {list(WIDTH_MULTS)}, found {width!r}")
        model = build_network(ck["arch"], classes, resolution=r, width_mult=float(width))
        fits = "its arch"
    else:
        fits = "the network"
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unknown = [k for k in sd if k not in own]
    shaped = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unknown or shaped:
        parts = [f"{len(v)} {what} (e.g. {v[0]!r})" for v, what in ((missing, "missing keys"),
                 (unknown, "unknown keys"), (shaped, "tensors of another shape")) if v]
        raise CheckpointError(f"checkpoint {path} does not fit {fits}: {', '.join(parts)}")
    try:  # torch's strict loading (ofa's override renames keys and asserts on unknown ones)
        nn.Module.load_state_dict(model, sd, strict=True)
    except (RuntimeError, ValueError, KeyError, AssertionError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"checkpoint {path} does not fit {fits} ({why[:200]})") from None
    if hasattr(model, "thresholds") and thresholds:
        n = len(model.thresholds)
        if len(thresholds) not in (n - 1, n):
            raise _fail(path, f"holds {len(thresholds)} exit thresholds for a network with {n} exits")
        model.thresholds = [float(t) for t in thresholds]
    return model, meta
