"""Datasets and loaders: scikit-learn digits (default), CIFAR-10/100, SVHN, CINIC-10 and ImageNet-style folders.

Public API
----------
``get_dataset_info(name) -> DatasetInfo``
    Class count, normalization and on-disk layout of a dataset name (no files read, except digits, whose
    statistics come from its bundled images).
``load_data(name="digits", data_root=None, resolution=32, val_split=0.2, ...) -> Loaders``
    ``Loaders(train, val, test, n_classes, ...)``; ``val`` is ``None`` when there is no validation split.
``TensorLoader``
    Batch iterator over an in-memory uint8 image tensor: yields ``(float32 normalized images (B,3,R,R),
    int64 labels)``, shuffles with its own seeded ``torch.Generator``, augments whole batches with torch ops.
``DeviceLoader``
    The same interface around an ordinary ``torch.utils.data.DataLoader`` (folder datasets).
``subset_loader(loader, n, seed=0)``
    A fixed, class-balanced subset of ``n`` samples of a loader's data (e.g. for BN re-calibration).
``stratified_split(labels, fraction, seed)``
    The seeded per-class split used for every validation / test carve-out.

Datasets (``name``; ``data_root`` is the local folder given with ``--data``; nothing is ever downloaded)
-----------------------------------------------------------------------------------------------------
=============  =======  =========================================================================================
digits         10       scikit-learn's bundled 8x8 handwritten digits (1,797 images); ``data_root`` is ignored
cifar10        10       ``cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta) in or at ``data_root``
cifar100       100      ``cifar-100-python/`` (train, test, meta) in or at ``data_root``
svhn           10       ``train_32x32.mat`` and ``test_32x32.mat`` (scipy.io.loadmat; label 10 is digit 0)
fashion_mnist  10       the four IDX files (``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``, gzipped or
                        not) at ``data_root`` or in torchvision's ``FashionMNIST/raw/``; default ``data_root``: Debian's
                        ``dataset-fashion-mnist`` package folder ``/usr/share/datasets/fashion-mnist`` when it exists
mnist, kmnist  10       the same four IDX files (torchvision's ``MNIST/raw/``, ``KMNIST/raw/``)
cinic10        10       ``train/`` and ``test/`` class folders (``valid/`` is not used, see below)
imagenet       1000     ``train/`` and ``val/`` (or ``test/``) class folders
imagenette     10       same layout
tinyimagenet   200      same layout; ``val/`` may also be the official ``images/`` + ``val_annotations.txt``
folder         any      same layout, any number of classes, ImageNet normalization
=============  =======  =========================================================================================

Normalization and training augmentation follow the original per dataset:

* cifar10: at 32 px random crop (padding 4) + flip; at other resolutions RandomResizedCrop (scale 0.08-1,
  ratio 3/4-4/3) + flip, test images resized. cifar100, svhn: random crop with padding r/8 + flip (svhn flips
  digits, as the original did). cinic10: resize, flip, crop with padding r/8. tinyimagenet: resize, rotation
  of up to 20 degrees, flip. imagenet / imagenette / folder: RandomResizedCrop(0.08-1) + flip; test
  Resize(r * 256/224) + CenterCrop(r).
* fashion_mnist: random crop with padding r/8 + flip; mnist, kmnist: random crop with padding r/8 (no flip).
* digits: no augmentation by default (``augment=True`` means "the dataset's default", which for digits is
  none: the proxy trainings are short and the digits are centred); ``augment="crop"`` enables random shifts
  of up to r/8 pixels (no flip: digits are not mirror-symmetric).

``augment`` accepts ``True`` (the dataset's default), ``False``/``"none"``, or a policy name for the in-memory
datasets: ``"crop"``, ``"crop_flip"``, ``"rrc_flip"``.

Splits
------
* digits: a FIXED stratified 60/20/20 split with seed 0, independent of the run's ``seed`` and of
  ``val_split`` (which digits ignores): 1,078 train / 360 val / 359 test images, every class within one
  image of its share. Normalization uses the mean/std of the (resized) training split.
* every other dataset: the dataset's own test set is the test set; ``val_split`` (a fraction in [0, 1)) carves
  a stratified, seeded validation subset out of the TRAINING set with ``split_seed`` (default 0, independent of
  ``seed``, so every candidate of a search sees the same split). The validation subset uses the TEST
  transforms. With ``val_split=0`` the validation loader is ``None``: callers must say that they select on
  nothing or on the training set; cnas never substitutes the test set.

Deviations from the original
----------------------------
* ``--data`` is honoured; the original ignored it and read hard-coded ``~/datasets/<name>`` folders.
* Validation never silently becomes the test set, and cifar's forced 20 % split (which discarded 20 % of the
  training data when ``val_split`` was 0 and validated on test) is not copied.
* svhn honours the resolution (the original always produced 32 px); cifar10 without augmentation does not
  crash (the original raised NameError); tinyimagenet's no-augmentation branch works (the original normalized
  before ToTensor); ``imagenet`` is supported (the original asserted False). ImageNet16 is not
  provided; use ``folder`` for other image sets.
* Speed: cifar, svhn and digits are held as uint8 tensors and augmented a whole batch at a time with
  ``grid_sample`` (crop with zero padding, flip and resize in one bilinear resampling), instead of a
  per-sample PIL pipeline in DataLoader workers. Random crops at a resolution other than the stored one are
  cropped and resized in one step; shifts are drawn in whole output pixels, so at 32 px the crops are exact
  pixel copies, as torchvision's. Test/val resizing uses ``interpolate`` (with antialiasing when shrinking,
  like PIL's resize); augmented batches that shrink images are resampled without antialiasing.
* cinic10's ``valid/`` folder is not used: validation comes from ``val_split`` like every other dataset. For
  an ImageNet-style folder with both ``val/`` and ``test/``, ``test/`` is the test set.
* Randomness is seeded: shuffling and augmentation of the in-memory loaders draw from the loader's own
  generator; folder datasets seed each sample's transform from (seed, epoch, index), so results do not
  depend on ``num_workers`` or on the global torch RNG.

Errors: a missing path, a wrong layout, an unreadable pickle/mat/image, an unknown dataset name or a class
count that disagrees with ``n_classes`` raise :class:`cnas.errors.DataError`; bad argument values
(resolution, batch size, val_split, augmentation policy) raise :class:`cnas.errors.ConfigError`.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cnas.errors import ConfigError, DataError

__all__ = [
    "DatasetInfo",
    "Loaders",
    "ImageTensors",
    "TensorLoader",
    "DeviceLoader",
    "DATASETS",
    "DIGITS_SPLIT_SEED",
    "get_dataset_info",
    "load_data",
    "subset_loader",
    "stratified_split",
    "loader_labels",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIGITS_SPLIT_SEED = 0  # the fixed digits split; never the run's seed
DIGITS_TEST_FRACTION = 0.2
DIGITS_VAL_FRACTION = 0.25  # of the remaining 80 %: 20 % of all images
AUGMENT_POLICIES = ("none", "crop", "crop_flip", "rrc_flip")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------------------------- dataset table
@dataclass(frozen=True)
class DatasetInfo:
    """What cnas knows about a dataset name before reading any files.

    ``n_classes`` is ``None`` for ``folder`` (counted from the class folders). ``mean``/``std`` are per RGB
    channel on the [0, 1] scale. ``kind`` is ``"memory"`` (uint8 tensors, :class:`TensorLoader`) or
    ``"folder"`` (ImageFolder, :class:`DeviceLoader`). ``native_resolution`` is the stored image size (None for
    folders). ``layout`` describes what ``data_root`` must hold; ``train_augment`` the default augmentation.
    """

    name: str
    n_classes: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    kind: str
    native_resolution: int | None
    layout: str
    train_augment: str


#: The four files of the MNIST family (each may also be gzipped, ``.gz``).
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_LAYOUT = ("the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
              "t10k-labels-idx1-ubyte (or .gz), or torchvision's <Name>/raw/ folder")
IDX_DATASETS = {"fashionmnist": "FashionMNIST", "mnist": "MNIST", "kmnist": "KMNIST"}  # torchvision's folder names
#: Where Debian's dataset-fashion-mnist package installs Fashion-MNIST: the default --data for fashion_mnist.
DEFAULT_ROOTS = {"fashionmnist": Path("/usr/share/datasets/fashion-mnist")}

_INFOS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        "cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "memory", 32,
        "cifar-10-batches-py/ with data_batch_1..5, test_batch, batches.meta",
        "32 px: crop (padding 4) + flip; other sizes: RandomResizedCrop(0.08-1) + flip"),
    "cifar100": DatasetInfo(
        "cifar100", 100, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "memory", 32,
        "cifar-100-python/ with train, test, meta", "crop (padding r/8) + flip"),
    "svhn": DatasetInfo(
        "svhn", 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), "memory", 32,
        "train_32x32.mat and test_32x32.mat", "crop (padding r/8) + flip"),
    "fashionmnist": DatasetInfo(
        "fashionmnist", 10, (0.2860,) * 3, (0.3530,) * 3, "memory", 28, IDX_LAYOUT, "crop (padding r/8) + flip"),
    "mnist": DatasetInfo("mnist", 10, (0.1307,) * 3, (0.3081,) * 3, "memory", 28, IDX_LAYOUT, "crop (padding r/8)"),
    "kmnist": DatasetInfo("kmnist", 10, (0.1918,) * 3, (0.3483,) * 3, "memory", 28, IDX_LAYOUT, "crop (padding r/8)"),
    "cinic10": DatasetInfo(
        "cinic10", 10, (0.4789, 0.4723, 0.4305), (0.2421, 0.2383, 0.2587), "folder", None,
        "train/ and test/ with one folder per class", "resize, flip, crop (padding r/8)"),
    "tinyimagenet": DatasetInfo(
        "tinyimagenet", 200, (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262), "folder", None,
        "train/ and val/ (or test/) with one folder per class", "resize, rotation 20 degrees, flip"),
    "imagenet": DatasetInfo(
        "imagenet", 1000, IMAGENET_MEAN, IMAGENET_STD, "folder", None,
        "train/ and val/ (or test/) with one folder per class", "RandomResizedCrop(0.08-1) + flip"),
    "imagenette": DatasetInfo(
        "imagenette", 10, IMAGENET_MEAN, IMAGENET_STD, "folder", None,
        "train/ and val/ (or test/) with one folder per class", "RandomResizedCrop(0.08-1) + flip"),
    "folder": DatasetInfo(
        "folder", None, IMAGENET_MEAN, IMAGENET_STD, "folder", None,
        "train/ and val/ (or test/) with one folder per class", "RandomResizedCrop(0.08-1) + flip"),
}
DATASETS = ("digits",) + tuple(_INFOS)


def _canonical_name(name: str) -> str:
    if not isinstance(name, str):
        raise DataError(f"dataset name {name!r} is not a string; use one of {', '.join(DATASETS)}")
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)} "
                        "(any train/ + val/ class-folder tree works as 'folder')")
    return key


def get_dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (case-insensitive; '-' and '_' ignored). Unknown -> DataError.

    For digits, mean/std are those of the fixed training split at its native 8x8 size; :func:`load_data`
    normalizes with the training split's statistics at the requested resolution (``Loaders.mean``/``std``),
    which differ from these by a few thousandths after bilinear up-sampling.
    """
    key = _canonical_name(name)
    if key == "digits":
        return _digits_info()
    return _INFOS[key]


@functools.lru_cache(maxsize=1)
def _digits_info() -> DatasetInfo:
    images, labels = _digits_arrays()
    train_idx, _, _ = _digits_split(labels)
    m, s = _mean_std(torch.from_numpy(images[train_idx]).unsqueeze(1))
    return DatasetInfo("digits", 10, (m,) * 3, (s,) * 3, "memory", 8,
                       "nothing: bundled with scikit-learn (data_root is ignored)",
                       "none by default; augment='crop' shifts by up to r/8 pixels")


# --------------------------------------------------------------------------------------------- splits
def stratified_split(labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held-out): ``round(N * fraction)`` held out, shared among the classes in
    proportion to their sizes (``floor(n_c * fraction)`` each, the remainder to the classes with the largest
    fractional parts, ties broken by the seed), every class keeping at least one sample.

    Seeded with ``numpy.random.default_rng(seed)``; both index arrays are sorted. (scikit-learn's
    StratifiedShuffleSplit refuses classes with a single member and draws the remainder at random, hence this
    short deterministic version.)
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    exact = counts * float(fraction)
    k = np.minimum(np.floor(exact).astype(np.int64), counts - 1)
    left = int(round(len(labels) * float(fraction))) - int(k.sum())
    if left > 0:
        frac = exact - np.floor(exact)
        order = np.lexsort((rng.random(len(classes)), -frac))  # largest fractional part first, seeded ties
        order = order[(k[order] < counts[order] - 1)][:left]
        k[order] += 1
    held = [rng.permutation(np.flatnonzero(labels == c))[:kc] for c, kc in zip(classes, k) if kc > 0]
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


def _balanced_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices, as equal per class as the class sizes allow (round robin over seeded per-class orders)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    lab = labels[order]
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(lab):
        pos = np.flatnonzero(lab == c)
        rank[pos] = np.arange(len(pos))
    pick = np.lexsort((lab, rank))[:n]  # by rank within class, then by class
    return np.sort(order[pick])


# --------------------------------------------------------------------------------------------- digits
@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images.astype(np.float32) / 16.0)  # 0..16 grey levels -> [0, 1]
    return images, d.target.astype(np.int64)


def _digits_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rest, test = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    tr, va = stratified_split(labels[rest], DIGITS_VAL_FRACTION, DIGITS_SPLIT_SEED + 1)
    return rest[tr], rest[va], test


@functools.lru_cache(maxsize=2)
def _digits_tensors(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 (N, 1, r, r), resized once with bilinear interpolation."""
    images, labels = _digits_arrays()
    x = torch.from_numpy(images).unsqueeze(1)
    out = torch.empty((len(x), 1, resolution, resolution), dtype=torch.uint8)
    for i in range(0, len(x), 256):  # chunks keep the float peak small at large resolutions
        chunk = x[i:i + 256]
        if resolution != chunk.shape[-1]:
            chunk = F.interpolate(chunk, size=(resolution, resolution), mode="bilinear", align_corners=False,
                                  antialias=resolution < chunk.shape[-1])
        out[i:i + 256] = (chunk.clamp(0, 1) * 255).round().to(torch.uint8)
    return out, torch.from_numpy(labels)


def _mean_std(images: torch.Tensor) -> tuple[float, float]:
    x = images.double()
    if images.dtype == torch.uint8:
        x = x / 255.0
    return float(x.mean()), float(x.std())


# --------------------------------------------------------------------------------------------- file readers
_PICKLE_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Reads CIFAR batch pickles but refuses any class other than numpy arrays (no code execution)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core") or module.startswith("numpy._core"):
            for mod in (module.replace("numpy.core", "numpy._core"), module.replace("numpy._core", "numpy.core")):
                try:
                    return getattr(importlib.import_module(mod), name)
                except (ImportError, AttributeError):
                    continue
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(fh, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, ImportError, MemoryError) as err:
        raise DataError(f"cannot read {path} as a CIFAR pickle ({type(err).__name__}: {err}); "
                        "replace it with the file from the official python-version archive") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not the dict of a CIFAR batch; "
                        "replace it with the file from the official python-version archive")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = _read_pickle(path)
    if "data" not in d or label_key not in d:
        raise DataError(f"{path} lacks the keys 'data' and '{label_key}' of a CIFAR batch (has {sorted(d)}); "
                        "replace it with the file from the official python-version archive")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise DataError(f"{path}: expected 'data' as N x 3072 uint8 and {len(data)} labels, got "
                        f"{data.dtype} {data.shape} and {labels.shape}; the file is not a CIFAR batch")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _label_names(path: Path, key: str) -> list[str] | None:
    if not path.is_file():
        return None
    names = _read_pickle(path).get(key)
    if names is None:
        return None
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def _find_dir(root: Path, sub: str, marker: str, name: str, layout: str) -> Path:
    for cand in (root / sub, root):
        if (cand / marker).is_file():
            return cand
    raise DataError(f"--data {root} holds no {layout}; point --data at the folder that contains {sub}/ "
                    f"(dataset '{name}' is read from local files only)")


def _require_file(path: Path, name: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path} is missing; dataset '{name}' needs it (copy the complete dataset folder)")
    return path


def _read_cifar(root: Path, name: str) -> dict:
    info = _INFOS[name]
    if name == "cifar10":
        d = _find_dir(root, "cifar-10-batches-py", "data_batch_1", name, info.layout)
        parts = [_cifar_batch(_require_file(d / f"data_batch_{i}", name), "labels") for i in range(1, 6)]
        test = _cifar_batch(_require_file(d / "test_batch", name), "labels")
        names = _label_names(d / "batches.meta", "label_names")
    else:
        d = _find_dir(root, "cifar-100-python", "train", name, info.layout)
        parts = [_cifar_batch(d / "train", "fine_labels")]
        test = _cifar_batch(_require_file(d / "test", name), "fine_labels")
        names = _label_names(d / "meta", "fine_label_names")
    n_classes = len(names) if names else info.n_classes
    return dict(train=(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])),
                test=test, n_classes=n_classes, source=d)


def _svhn_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        m = loadmat(str(_require_file(path, "svhn")))
    except DataError:
        raise
    except Exception as err:  # scipy raises several unrelated types for a corrupt file
        raise DataError(f"cannot read {path} as a MATLAB file ({type(err).__name__}: {err}); "
                        "replace it with the official SVHN cropped-digits file") from None
    if "X" not in m or "y" not in m:
        raise DataError(f"{path} lacks the variables 'X' and 'y' of SVHN's cropped digits; "
                        "replace it with the official SVHN cropped-digits file")
    x, y = np.asarray(m["X"]), np.asarray(m["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DataError(f"{path}: expected 'X' of shape 32x32x3xN and N labels, got {x.shape} and {len(y)} "
                        "labels; replace it with the official SVHN cropped-digits file")
    y = y.astype(np.int64)
    y[y == 10] = 0  # SVHN stores the digit 0 as label 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), y


def _read_svhn(root: Path) -> dict:
    if not (root / "train_32x32.mat").is_file() and (root / "svhn" / "train_32x32.mat").is_file():
        root = root / "svhn"
    if not (root / "train_32x32.mat").is_file():
        raise DataError(f"--data {root} holds no train_32x32.mat; point --data at the folder with "
                        "train_32x32.mat and test_32x32.mat (SVHN cropped digits)")
    return dict(train=_svhn_file(root / "train_32x32.mat"), test=_svhn_file(root / "test_32x32.mat"),
                n_classes=10, source=root)


def _idx_array(path: Path, name: str, ndim: int) -> np.ndarray:
    """An IDX file (unsigned bytes; ``ndim`` 3 for images, 1 for labels), gzipped or not."""
    import gzip

    how = f"replace it with the original file of {name} (its four IDX files, gzipped or not)"
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"cannot read {path} ({type(err).__name__}: {err}); {how}") from None
    if len(raw) < 4 + 4 * ndim or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] != ndim:
        raise DataError(f"{path} is not an IDX file of unsigned bytes with {ndim} dimension(s); {how}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise DataError(f"{path} holds {len(body)} bytes of data where its header announces {dims}: the file is "
                        f"truncated or damaged; {how}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims).copy()


def _idx_file(folder: Path, stem: str) -> Path | None:
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


def idx_folder(root: Path, name: str) -> Path:
    """The folder holding ``name``'s IDX files: ``root`` itself, or torchvision's ``<Name>/raw`` (or ``raw``)."""
    stem = IDX_FILES["train"][0]
    for cand in (root, root / IDX_DATASETS[name] / "raw", root / "raw"):
        if _idx_file(cand, stem) is not None:
            return cand
    hint = (" (apt-get install dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist)"
            if name == "fashionmnist" else "")
    raise DataError(f"--data {root} holds no {stem}[.gz]; dataset '{name}' reads {IDX_LAYOUT}{hint}")


def _read_idx(root: Path, name: str) -> dict:
    folder = idx_folder(root, name)
    out: dict[str, Any] = {}
    for split, (images, labels) in IDX_FILES.items():
        paths = [_idx_file(folder, stem) for stem in (images, labels)]
        for stem, path in zip((images, labels), paths):
            if path is None:
                raise DataError(f"{folder / stem}[.gz] is missing; dataset '{name}' needs all four IDX files "
                                f"({', '.join(s for pair in IDX_FILES.values() for s in pair)})")
        x, y = _idx_array(paths[0], name, 3), _idx_array(paths[1], name, 1)
        if len(x) != len(y):
            raise DataError(f"{paths[0]} holds {len(x)} images but {paths[1]} {len(y)} labels; the files belong "
                            f"to different sets (replace them with the original files of {name})")
        out[split] = (np.ascontiguousarray(x[:, None]), y.astype(np.int64))
    return dict(train=out["train"], test=out["test"], n_classes=10, source=folder)


def _stamp(path: Path) -> tuple:
    try:
        return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(path.iterdir()) if p.is_file())
    except OSError:
        return ()


@functools.lru_cache(maxsize=2)
def _read_memory_dataset(name: str, root: str, stamp: tuple) -> dict:
    """Cached per (name, folder, file stamps): a search evaluates many candidates in one process."""
    path = Path(root)
    d = (_read_svhn(path) if name == "svhn" else _read_idx(path, name) if name in IDX_DATASETS
         else _read_cifar(path, name))
    out = {}
    for split in ("train", "test"):
        x, y = d[split]
        if len(y) and (y.min() < 0 or y.max() >= d["n_classes"]):
            raise DataError(f"{d['source']}: {split} labels span {y.min()}..{y.max()}, outside 0..{d['n_classes'] - 1} "
                            f"of {d['n_classes']} classes; the files are corrupt or belong to another dataset")
        out[split] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
    out["n_classes"], out["source"] = d["n_classes"], d["source"]
    return out


# --------------------------------------------------------------------------------------------- tensor loader
class ImageTensors(torch.utils.data.Dataset):
    """An in-memory image set: ``images`` uint8 (N, C, H, W) with C in {1, 3}, ``labels`` int64 (N,)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, 1|3, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def _resample(x: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, out: int) -> torch.Tensor:
    """Bilinear-sample each image's box (x0, y0, w, h in source pixels; may leave the image: zero padding)
    onto an ``out`` x ``out`` grid, mirrored where ``flips``. One ``grid_sample`` for the whole batch.

    Equals resize-then-pad-then-crop: a box shifted by whole output pixels gives exactly the resized image
    shifted with zero fill (bit-exact copies when ``out`` is the stored size)."""
    _, _, h, w = x.shape
    j = (torch.arange(out, device=x.device, dtype=x.dtype) + 0.5) / out
    sx = boxes[:, 0:1] + j[None] * boxes[:, 2:3] - 0.5
    sy = boxes[:, 1:2] + j[None] * boxes[:, 3:4] - 0.5
    sx = torch.where(flips[:, None], sx.flip(1), sx)
    gx = (2 * sx + 1) / w - 1
    gy = (2 * sy + 1) / h - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    out_img = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Inside the image, edges are clamped as interpolate/PIL do; points off the image are padding: zero.
    inside_x = (sx >= -0.5) & (sx <= w - 0.5)
    inside_y = (sy >= -0.5) & (sy <= h - 0.5)
    if bool(inside_x.all()) and bool(inside_y.all()):
        return out_img
    return out_img * (inside_y[:, None, :, None] & inside_x[:, None, None, :]).to(x.dtype)


class TensorLoader:
    """Batches of ``(images float32 (B, 3, R, R) normalized, labels int64 (B,))`` from uint8 tensors.

    ``augment`` is a policy: ``"none"``; ``"crop"`` (random shift of up to ``resolution // 8`` output pixels
    with zero padding, like RandomCrop(padding=r/8) after a resize); ``"crop_flip"`` (the same plus a
    horizontal flip with probability 1/2); ``"rrc_flip"`` (RandomResizedCrop scale 0.08-1, ratio 3/4-4/3,
    10 tries then the whole image, plus flip). Augmentation and resizing run on whole batches on ``device``;
    their random numbers and the shuffling come from one ``torch.Generator`` seeded with ``seed`` (on the
    CPU, so a seed gives the same batches on every device). Each pass continues the generator, so epochs
    differ and a fresh loader with the same seed repeats them. The uint8 images are moved to ``device`` once;
    nothing is pinned. ``len()`` is the number of batches, ``.dataset`` the :class:`ImageTensors`.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, mean: Sequence[float], std: Sequence[float],
                 batch_size: int = 128, shuffle: bool = False, augment: str = "none", resolution: int | None = None,
                 seed: int = 0, drop_last: bool = False, device: str | torch.device = "cpu",
                 channels_last: bool = False):
        if augment not in AUGMENT_POLICIES:
            raise ConfigError(f"augmentation policy {augment!r} is unknown; use one of {', '.join(AUGMENT_POLICIES)}")
        _check_positive("batch_size", batch_size)
        self.device = torch.device(device)
        self.dataset = ImageTensors(images.to(self.device), labels.to(self.device))
        self.batch_size, self.shuffle, self.augment = int(batch_size), bool(shuffle), augment
        self.resolution = int(resolution or images.shape[-1])
        _check_positive("resolution", self.resolution)
        self.seed, self.drop_last, self.channels_last = int(seed), bool(drop_last), bool(channels_last)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.generator = torch.Generator().manual_seed(self.seed)
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], device=self.device).view(1, 3, 1, 1)
        self._shift = torch.tensor([m / s for m, s in zip(self.mean, self.std)], device=self.device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass depend on (seed, epoch) only, so an interrupted training resumes exactly."""
        self.generator.manual_seed(int(np.random.SeedSequence([self.seed, int(epoch)]).generate_state(1)[0]))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size].to(self.device)
            yield self._batch(self.dataset.images[idx]), self.dataset.labels[idx]

    def _batch(self, raw: torch.Tensor) -> torch.Tensor:
        x = raw.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        r = self.resolution
        if self.augment == "none":
            if x.shape[-1] != r or x.shape[-2] != r:
                x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False,
                                  antialias=r < min(x.shape[-2:]))
        else:
            boxes, flips = self._draw(x.shape[0], x.shape[-2], x.shape[-1])
            x = _resample(x, boxes.to(self.device), flips.to(self.device), r)
        x = x * self._scale - self._shift
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = x.contiguous()
        return x

    def _draw(self, b: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        g, r = self.generator, self.resolution
        if self.augment == "rrc_flip":
            boxes = _random_resized_boxes(b, h, w, g)
        else:
            pad = r // 8
            k = torch.randint(-pad, pad + 1, (b, 2), generator=g).double()
            boxes = torch.stack([k[:, 0] * w / r, k[:, 1] * h / r,
                                 torch.full((b,), float(w), dtype=torch.float64),
                                 torch.full((b,), float(h), dtype=torch.float64)], dim=1)
        flips = torch.rand(b, generator=g) < 0.5
        if self.augment == "crop":
            flips = torch.zeros(b, dtype=torch.bool)
        return boxes.float(), flips

    def with_indices(self, indices: Sequence[int] | torch.Tensor, **overrides: Any) -> "TensorLoader":
        """A loader over ``indices`` of this one's data with the same settings, except ``overrides``."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.device)
        kw = dict(mean=self.mean, std=self.std, batch_size=self.batch_size, shuffle=self.shuffle,
                  augment=self.augment, resolution=self.resolution, seed=self.seed, drop_last=self.drop_last,
                  device=self.device, channels_last=self.channels_last)
        kw.update(overrides)
        return TensorLoader(self.dataset.images[idx], self.dataset.labels[idx], **kw)

    def __repr__(self) -> str:
        return (f"TensorLoader(n={len(self.dataset)}, batch_size={self.batch_size}, resolution={self.resolution}, "
                f"augment={self.augment!r}, shuffle={self.shuffle}, device={self.device})")


def _random_resized_boxes(b: int, h: int, w: int, g: torch.Generator, scale=(0.08, 1.0),
                          ratio=(3 / 4, 4 / 3), tries: int = 10) -> torch.Tensor:
    """torchvision's RandomResizedCrop box sampling, vectorized: the first of ``tries`` valid boxes per image,
    else the whole image cropped to the nearest allowed aspect ratio (centered)."""
    area = h * w * (scale[0] + (scale[1] - scale[0]) * torch.rand(b, tries, generator=g, dtype=torch.float64))
    logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(b, tries, generator=g,
                                                                                       dtype=torch.float64)
    ar = torch.exp(logr)
    cw = torch.sqrt(area * ar).round()
    ch = torch.sqrt(area / ar).round()
    ok = (cw > 0) & (ch > 0) & (cw <= w) & (ch <= h)
    u = torch.rand(b, tries, 2, generator=g, dtype=torch.float64)
    x0 = torch.floor(u[..., 0] * (w - cw + 1))
    y0 = torch.floor(u[..., 1] * (h - ch + 1))
    first = torch.where(ok.any(1), ok.double().argmax(1), torch.full((b,), -1))
    if w / h < ratio[0]:
        fw, fh = w, round(w / ratio[0])
    elif w / h > ratio[1]:
        fw, fh = round(h * ratio[1]), h
    else:
        fw, fh = w, h
    fallback = torch.tensor([(w - fw) // 2, (h - fh) // 2, fw, fh], dtype=torch.float64)
    pick = first.clamp(min=0)
    rows = torch.arange(b)
    boxes = torch.stack([x0[rows, pick], y0[rows, pick], cw[rows, pick], ch[rows, pick]], dim=1)
    return torch.where((first >= 0)[:, None], boxes, fallback[None].expand(b, 4))


# --------------------------------------------------------------------------------------------- folder datasets
class _AnnotatedFolder(torch.utils.data.Dataset):
    """tinyimagenet's official val/: images/<file> with classes listed in val_annotations.txt."""

    def __init__(self, root: Path, class_to_idx: dict[str, int]):
        from torchvision.datasets.folder import default_loader

        self.loader = default_loader
        self.samples, self.targets = [], []
        ann = root / "val_annotations.txt"
        for line_no, line in enumerate(ann.read_text().splitlines(), 1):
            parts = line.split("\t")
            if not line.strip():
                continue
            if len(parts) < 2 or parts[1] not in class_to_idx:
                raise DataError(f"{ann} line {line_no}: {line[:60]!r} names no class folder of train/; "
                                "fix the annotation file or use class folders under val/")
            self.samples.append((str(root / "images" / parts[0]), class_to_idx[parts[1]]))
            self.targets.append(class_to_idx[parts[1]])
        self.classes = sorted(class_to_idx, key=class_to_idx.get)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, target = self.samples[i]
        return self.loader(path), target


def _image_folder(path: Path, name: str):
    from torchvision.datasets import ImageFolder

    try:
        ds = ImageFolder(str(path))
    except (FileNotFoundError, OSError) as err:
        raise DataError(f"{path} is not a class-folder tree ({err}); dataset '{name}' needs one sub-folder per "
                        f"class holding image files ({', '.join(IMAGE_EXTENSIONS[:3])}, ...)") from None
    try:
        ds.loader(ds.samples[0][0])
    except Exception as err:
        raise DataError(f"cannot read image {ds.samples[0][0]} ({type(err).__name__}); "
                        "replace or remove the file") from None
    return ds


def _read_folders(root: Path, name: str) -> tuple[Any, Any, list[str]]:
    info = _INFOS[name]
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(f"--data {root} has no train/ folder; dataset '{name}' needs {info.layout}")
    order = ("test", "val", "valid") if name == "cinic10" else ("test", "val")
    test_dir = next((root / d for d in order if (root / d).is_dir()), None)
    if test_dir is None:
        raise DataError(f"--data {root} has no {'/ or '.join(order)}/ folder for the test set; "
                        f"dataset '{name}' needs {info.layout}")
    train = _image_folder(train_dir, name)
    if (test_dir / "val_annotations.txt").is_file() and (test_dir / "images").is_dir():
        test = _AnnotatedFolder(test_dir, train.class_to_idx)
    else:
        test = _image_folder(test_dir, name)
        extra = sorted(set(test.classes) - set(train.classes))
        if extra:
            raise DataError(f"{test_dir} has class folders that train/ lacks ({', '.join(extra[:5])}); "
                            "both must hold the same class folder names")
        remap = [train.class_to_idx[c] for c in test.classes]
        test.samples = [(p, remap[t]) for p, t in test.samples]
        test.targets = [t for _, t in test.samples]
        test.imgs, test.classes, test.class_to_idx = test.samples, train.classes, train.class_to_idx
    return train, test, list(train.classes)


class _TransformSubset(torch.utils.data.Dataset):
    """``indices`` of a PIL-returning dataset with ``transform``; each random transform is seeded from
    (seed, epoch, index) inside a forked RNG, so results do not depend on workers or the global RNG."""

    def __init__(self, base: Any, indices: np.ndarray, transform: Any, seed: int, random: bool):
        self.base, self.indices, self.transform = base, np.asarray(indices, dtype=np.int64), transform
        self.seed, self.epoch, self.random = int(seed), 0, bool(random)
        targets = np.asarray(base.targets, dtype=np.int64)
        self.targets = targets[self.indices].tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        img, target = self.base[int(self.indices[i])]
        if not self.random:
            return self.transform(img), target
        with torch.random.fork_rng(devices=[]):
            s = np.random.SeedSequence([self.seed, self.epoch, int(i)]).generate_state(1, np.uint64)[0]
            torch.random.default_generator.manual_seed(int(s))
            return self.transform(img), target


def _folder_transforms(name: str, r: int, mean, std, augment: bool):
    from torchvision import transforms as T

    norm = [T.ToTensor(), T.Normalize(mean, std)]
    if name in ("cinic10", "tinyimagenet"):
        test = T.Compose([T.Resize(r), T.CenterCrop(r)] + norm)
        if not augment:
            return test, test
        if name == "cinic10":
            aug = [T.RandomHorizontalFlip(), T.RandomCrop(r, padding=r // 8)]
        else:
            aug = [T.RandomRotation(20), T.RandomHorizontalFlip()]
        return T.Compose([T.Resize(r), T.CenterCrop(r)] + aug + norm), test
    test = T.Compose([T.Resize(int(round(r * 256 / 224))), T.CenterCrop(r)] + norm)
    if not augment:
        return test, test
    return T.Compose([T.RandomResizedCrop(r, scale=(0.08, 1.0)), T.RandomHorizontalFlip()] + norm), test


class DeviceLoader:
    """A ``torch.utils.data.DataLoader`` (``.loader``) whose batches are moved to ``device`` (and made
    channels_last if asked). Sets the dataset's epoch before each pass so seeded transforms change per epoch.
    ``len()``, ``.dataset`` and ``.batch_size`` are the DataLoader's."""

    def __init__(self, loader: torch.utils.data.DataLoader, device: str | torch.device = "cpu",
                 channels_last: bool = False):
        self.loader, self.device, self.channels_last = loader, torch.device(device), bool(channels_last)
        self._epoch = 0

    @property
    def dataset(self):
        return self.loader.dataset

    @property
    def batch_size(self) -> int:
        return self.loader.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass (order and transforms) depend on (seed, epoch) only, for exact resume."""
        self._epoch = int(epoch)
        gen = self.loader.generator
        if gen is not None:
            seed = getattr(self.loader.dataset, "seed", 0)
            gen.manual_seed(int(np.random.SeedSequence([seed, self._epoch]).generate_state(1)[0]))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if hasattr(self.loader.dataset, "epoch"):
            self.loader.dataset.epoch = self._epoch
        self._epoch += 1
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)

    def with_indices(self, indices: Sequence[int], **overrides: Any) -> "DeviceLoader":
        ds = self.loader.dataset
        sub = _TransformSubset(ds.base, ds.indices[np.asarray(indices, dtype=np.int64)], ds.transform,
                               overrides.pop("seed", ds.seed), ds.random)
        return _make_device_loader(sub, overrides.pop("batch_size", self.batch_size),
                                   overrides.pop("shuffle", False), sub.seed, overrides.pop("drop_last", False),
                                   self.loader.num_workers, self.device, self.channels_last)


def _make_device_loader(ds, batch_size, shuffle, seed, drop_last, num_workers, device, channels_last) -> DeviceLoader:
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                                     num_workers=num_workers, pin_memory=False,
                                     generator=torch.Generator().manual_seed(seed) if shuffle else None)
    return DeviceLoader(dl, device, channels_last)


# --------------------------------------------------------------------------------------------- load_data
@dataclass
class Loaders:
    """What :func:`load_data` returns. ``val`` is ``None`` without a validation split (never the test set).
    ``mean``/``std`` are the normalization actually applied; ``sizes`` the image counts per split;
    ``val_source`` says where validation came from (``None`` if there is none)."""

    train: Any
    val: Any | None
    test: Any
    n_classes: int
    info: DatasetInfo
    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    sizes: dict[str, int] = field(default_factory=dict)
    val_source: str | None = None

    def describe(self) -> str:
        """One line for logs, e.g. ``cifar10 @32px: train 40000, val 10000 (20% of train, ...), test 10000``."""
        val = f"val {self.sizes.get('val', 0)} ({self.val_source})" if self.val is not None else "no val"
        return (f"{self.info.name} @{self.resolution}px, {self.n_classes} classes: train {self.sizes['train']}, "
                f"{val}, test {self.sizes['test']}")


def _check_positive(flag: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{flag} must be a positive integer, got {value!r}")


def _policy(name: str, augment: bool | str, resolution: int) -> str:
    if augment is False or augment is None:
        return "none"
    if augment is True:
        if name == "digits":
            return "none"
        if name == "cifar10":
            return "crop_flip" if resolution == 32 else "rrc_flip"
        if name in ("mnist", "kmnist"):  # digits and characters are not mirror-symmetric
            return "crop"
        return "crop_flip"
    if isinstance(augment, str) and augment in AUGMENT_POLICIES:
        return augment
    raise ConfigError(f"augment={augment!r} is not understood; use True (the dataset's default), False, or one of "
                      f"{', '.join(AUGMENT_POLICIES)}")


def load_data(name: str = "digits", data_root: str | os.PathLike | None = None, resolution: int = 32,
              val_split: float = 0.2, batch_size: int = 128, seed: int = 0, augment: bool | str = True,
              n_classes: int | None = None, num_workers: int = 0, device: str | torch.device = "cpu",
              eval_batch_size: int | None = None, drop_last: bool = False, channels_last: bool = False,
              split_seed: int = 0) -> Loaders:
    """Build train / val / test loaders for dataset ``name`` read from ``data_root``.

    ``resolution``: output image size (square). ``val_split``: fraction of the TRAINING set held out for
    validation (stratified, seeded with ``split_seed``; test transforms); 0 -> ``val is None``; ignored by
    digits, which always uses its fixed 60/20/20 split. ``seed``: shuffling and augmentation of the training
    loader. ``augment``: True (dataset default), False, or a policy name (in-memory datasets). ``n_classes``:
    if given, must equal the dataset's class count (DataError otherwise). ``num_workers``: DataLoader workers
    for folder datasets (in-memory datasets ignore it). ``eval_batch_size``: val/test batch, default twice
    ``batch_size`` as in the original. ``drop_last``: for the training loader only. ``device`` and
    ``channels_last``: where and in which memory format batches come out.
    """
    key = _canonical_name(name)
    _check_positive("--resolution", resolution)
    _check_positive("--batch_size", batch_size)
    eval_bs = 2 * batch_size if eval_batch_size is None else eval_batch_size
    _check_positive("eval_batch_size", eval_bs)
    if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
        raise ConfigError(f"num_workers must be a non-negative integer, got {num_workers!r}")
    try:
        vs = float(val_split)
    except (TypeError, ValueError):
        vs = float("nan")
    if not 0.0 <= vs < 1.0:
        raise ConfigError(f"--val_split {val_split!r} must be a fraction in [0, 1), e.g. 0.2; 0 means no validation")
    if n_classes is not None:
        _check_positive("--n_classes", n_classes)
    policy = _policy(key, augment, resolution)
    info = get_dataset_info(key)
    r = int(resolution)
    common = dict(device=device, channels_last=channels_last)

    if key == "digits":
        images, labels = _digits_tensors(r)
        tr, va, te = _digits_split(labels.numpy())
        m, s = _mean_std(images[torch.from_numpy(tr)])
        mean, std = (m,) * 3, (s,) * 3
        _check_classes(key, "scikit-learn digits", 10, n_classes)
        mk = functools.partial(TensorLoader, mean=mean, std=std, resolution=r, **common)
        train = mk(images[tr], labels[tr], batch_size=batch_size, shuffle=True, augment=policy, seed=seed,
                   drop_last=drop_last)
        val = mk(images[va], labels[va], batch_size=eval_bs)
        test = mk(images[te], labels[te], batch_size=eval_bs)
        return Loaders(train, val, test, 10, info, r, mean, std,
                       {"train": len(tr), "val": len(va), "test": len(te)},
                       f"fixed stratified 60/20/20 digits split, seed {DIGITS_SPLIT_SEED}")

    if (data_root is None or str(data_root) == "") and key in DEFAULT_ROOTS and DEFAULT_ROOTS[key].is_dir():
        data_root = DEFAULT_ROOTS[key]
    if data_root is None or str(data_root) == "":
        raise DataError(f"dataset '{key}' is read from local files: pass --data PATH to a folder holding "
                        f"{info.layout} (nothing is downloaded)")
    root = Path(data_root).expanduser()
    if not root.exists():
        raise DataError(f"--data {root} does not exist; point it at a folder holding {info.layout}")
    if not root.is_dir():
        raise DataError(f"--data {root} is a file, not a folder; point it at a folder holding {info.layout}")

    if info.kind == "memory":
        d = _read_memory_dataset(key, str(root.resolve()), _stamp(root) + _stamp(root / "cifar-10-batches-py")
                                 + _stamp(root / "cifar-100-python") + _stamp(root / "svhn") + _stamp(root / "raw")
                                 + _stamp(root / IDX_DATASETS.get(key, "-") / "raw"))
        nc = d["n_classes"]
        _check_classes(key, str(d["source"]), nc, n_classes)
        (xtr, ytr), (xte, yte) = d["train"], d["test"]
        tr, va = _val_indices(ytr.numpy(), vs, split_seed, root)
        mk = functools.partial(TensorLoader, mean=info.mean, std=info.std, resolution=r, **common)
        train = mk(xtr[tr] if len(va) else xtr, ytr[tr] if len(va) else ytr, batch_size=batch_size, shuffle=True,
                   augment=policy, seed=seed, drop_last=drop_last)
        val = mk(xtr[va], ytr[va], batch_size=eval_bs) if len(va) else None
        test = mk(xte, yte, batch_size=eval_bs)
        sizes = {"train": len(tr), "val": len(va), "test": len(yte)}
    else:
        if isinstance(augment, str) and augment not in ("none",):
            raise ConfigError(f"augment={augment!r} names a tensor policy; folder dataset '{key}' takes True or False")
        base_train, base_test, classes = _read_folders(root, key)
        nc = len(classes)
        if info.n_classes is not None and nc != info.n_classes:
            raise DataError(f"{root / 'train'} holds {nc} class folders but '{key}' has {info.n_classes} classes; "
                            "use --dataset folder for another class set")
        _check_classes(key, str(root), nc, n_classes)
        tr, va = _val_indices(np.asarray(base_train.targets), vs, split_seed, root)
        t_train, t_test = _folder_transforms(key, r, info.mean, info.std, policy != "none")
        aug = policy != "none"
        train = _make_device_loader(_TransformSubset(base_train, tr, t_train, seed, aug), batch_size, True, seed,
                                    drop_last, num_workers, device, channels_last)
        val = (_make_device_loader(_TransformSubset(base_train, va, t_test, 0, False), eval_bs, False, 0, False,
                                   num_workers, device, channels_last) if len(va) else None)
        test = _make_device_loader(_TransformSubset(base_test, np.arange(len(base_test)), t_test, 0, False), eval_bs,
                                   False, 0, False, num_workers, device, channels_last)
        sizes = {"train": len(tr), "val": len(va), "test": len(base_test)}
    src = f"{vs:.0%} of train, stratified, split seed {split_seed}" if val is not None else None
    return Loaders(train, val, test, nc, info, r, tuple(info.mean), tuple(info.std), sizes, src)


def _check_classes(name: str, where: str, has: int, wanted: int | None) -> None:
    if wanted is not None and int(wanted) != has:
        raise DataError(f"--n_classes {wanted} does not match dataset '{name}' at {where}, which has {has} classes; "
                        f"pass --n_classes {has} or leave it out")


def _val_indices(labels: np.ndarray, fraction: float, split_seed: int, root: Path) -> tuple[np.ndarray, np.ndarray]:
    if fraction == 0:
        return np.arange(len(labels)), np.zeros(0, dtype=np.int64)
    tr, va = stratified_split(labels, fraction, split_seed)
    if len(va) == 0 or len(tr) == 0:
        raise DataError(f"--val_split {fraction} leaves {len(tr)} training and {len(va)} validation images out of "
                        f"{len(labels)} in {root}; use a larger --val_split or 0 for no validation")
    return tr, va


# --------------------------------------------------------------------------------------------- subsets
def loader_labels(loader: Any) -> np.ndarray:
    """The labels of every sample a :class:`TensorLoader` or :class:`DeviceLoader` iterates, in index order."""
    ds = loader.dataset
    if isinstance(ds, ImageTensors):
        return ds.labels.cpu().numpy()
    if hasattr(ds, "targets"):
        return np.asarray(ds.targets, dtype=np.int64)
    raise TypeError(f"cannot read labels from {type(ds).__name__}")


def subset_loader(loader: Any, n: int, seed: int = 0, batch_size: int | None = None,
                  augment: bool | str | None = None, shuffle: bool = False, loader_seed: int | None = None) -> Any:
    """A loader over a fixed, class-balanced subset of ``n`` of ``loader``'s samples (all of them if fewer).

    Classes get ``n // n_classes`` samples each (one more for some, fewer where a class is short), chosen with
    ``seed``; the same arguments always pick the same samples. The new loader keeps ``loader``'s transforms
    (pass ``augment`` to change the policy of a :class:`TensorLoader`), batch size unless ``batch_size``, is
    not shuffled unless ``shuffle``, and never drops the last batch. ``loader_seed`` seeds the new loader's
    shuffling and augmentation (default ``seed``), so a fixed subset can be shuffled by each run's own seed.
    Intended for BN re-calibration and for fixed training / validation subsets.
    """
    _check_positive("subset size n", n)
    labels = loader_labels(loader)
    idx = _balanced_indices(labels, min(int(n), len(labels)), seed)
    over: dict[str, Any] = dict(shuffle=shuffle, drop_last=False, seed=seed if loader_seed is None else loader_seed)
    if batch_size is not None:
        _check_positive("batch_size", batch_size)
        over["batch_size"] = batch_size
    if augment is not None:
        if not isinstance(loader, TensorLoader):
            raise ConfigError("augment can only be changed for in-memory (TensorLoader) subsets")
        over["augment"] = augment if isinstance(augment, str) else (loader.augment if augment else "none")
    return loader.with_indices(idx, **over)
