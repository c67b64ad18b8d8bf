"""Out-of-distribution robustness: the error of a trained network under the 15 common corruptions of ImageNet-C /
CIFAR-10-C at 5 severities, and their mean (the mean corruption error).

The corrupted images come from one of two sources:

* **computed on the fly** from a split of the run's own dataset (validation by default, or test): its images at
  the network's resolution, before normalization (uint8, H x W x 3), are corrupted with the ``imagecorruptions``
  package (installed from its maintained fork ``imagecorruptions-imaug``: ``pip install -e '.[ood]'``), then
  normalized with the dataset's own mean and std. Corruptions need at least 32 x 32 pixels. A fixed,
  class-balanced subset of ``n_images`` images is used (all of the split when it is smaller), and the random
  numbers of each (corruption, severity) come from the seed, so a seed gives the same corrupted images; the
  corrupted set is computed once per process and reused by every network at that resolution;
* **read from files** in CIFAR-10-C / CIFAR-100-C's layout (``--ood_data DIR``): ``DIR/<corruption>.npy``, uint8
  ``(5 n, H, W, 3)`` with the 5 severities stacked in order, and ``DIR/labels.npy`` (``5 n`` labels, or ``n``). The
  images are resized to the network's resolution (bilinear) and normalized with the dataset's mean and std.

Stats (errors in %, of the final exit): ``mCE2`` in the original's layout, ``{corruption: {"1": error, ..., "5":
error, "mean": mean over severities}, ..., "mean": mean over corruptions}``, ``mce`` (the mean corruption error
over the 75 sets; unnormalized: no reference network's errors exist for arbitrary data), ``ood_clean_top1`` (the
error on the same images uncorrupted), ``ood_source``, ``ood_images`` and ``ood_seconds``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cnas.errors import ConfigError, DataError

#: The 15 common corruptions (noise, blur, weather, digital), in ImageNet-C's order.
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
SEVERITIES = (1, 2, 3, 4, 5)
#: The smallest image side the corruptions are defined for (``imagecorruptions`` refuses smaller images).
MIN_SIDE = 32
INSTALL_HINT = "pip install -e '.[ood]' (the imagecorruptions-imaug package)"


def corrupt_fn():
    """``imagecorruptions.corrupt``, or a :class:`ConfigError` naming the install command."""
    try:
        from imagecorruptions import corrupt
    except Exception as exc:  # ImportError, or the unmaintained 1.1.2 release failing on pkg_resources
        raise ConfigError(f"--ood_eval computes the corruptions with the imagecorruptions package, which does not "
                          f"import here ({type(exc).__name__}: {exc}); {INSTALL_HINT}") from None
    return corrupt


# ---------------------------------------------------------------- images of a split
def split_images(loader: Any, mean: Sequence[float], std: Sequence[float], n: int | None = None,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``loader`` (a split at the network's resolution, without augmentation) as uint8
    ``(N, H, W, 3)`` before normalization, and their labels; ``n``: a fixed class-balanced subset of that many."""
    from cnas.data import subset_loader

    if n:
        loader = subset_loader(loader, n, seed=seed, augment=False if hasattr(loader, "augment") else None)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    images, labels = [], []
    for x, y in loader:
        x = x.detach().float().cpu()
        images.append(((x * s + m) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
        labels.append(y.detach().cpu().numpy())
    if not images:
        raise DataError("the split chosen for --ood_eval holds no images")
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels).astype(np.int64)


def corrupt_images(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``images`` (uint8 ``(N, H, W, 3)``, H and W >= 32) with corruption ``name`` at ``severity``; numpy's
    global random state is seeded from ``(seed, corruption, severity)`` for the call and restored after it."""
    if name not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}; the 15 are {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ConfigError(f"severity must be one of {list(SEVERITIES)}, got {severity!r}")
    if images.ndim != 4 or images.shape[-1] != 3 or min(images.shape[1:3]) < MIN_SIDE:
        raise ConfigError(f"corruptions need uint8 (N, H, W, 3) images of at least {MIN_SIDE} x {MIN_SIDE} pixels, "
                          f"got shape {tuple(images.shape)}")
    corrupt = corrupt_fn()
    state = np.random.get_state()
    np.random.seed(np.random.SeedSequence([int(seed), CORRUPTIONS.index(name), int(severity)]).generate_state(1)[0])
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = np.stack([np.asarray(corrupt(np.ascontiguousarray(im), severity=int(severity),
                                               corruption_name=name), dtype=np.uint8) for im in images])
    finally:
        np.random.set_state(state)
    return out


_CACHE: dict[tuple, dict] = {}


def corrupted_set(images: np.ndarray, seed: int, key: tuple | None = None) -> dict[tuple[str, int], np.ndarray]:
    """Every ``(corruption, severity)`` of ``images`` (:func:`corrupt_images`); with ``key`` the set is kept in
    memory (one at a time) and returned again for the same key."""
    if key is not None and key in _CACHE:
        return _CACHE[key]
    out = {(name, s): corrupt_images(images, name, s, seed) for name in CORRUPTIONS for s in SEVERITIES}
    if key is not None:
        _CACHE.clear()
        _CACHE[key] = out
    return out


# ---------------------------------------------------------------- CIFAR-10-C / CIFAR-100-C files
def read_corruption_folder(folder: str | Path, n_classes: int | None = None) -> tuple[dict, np.ndarray]:
    """The arrays of a CIFAR-10-C-style folder: ``({(corruption, severity): uint8 (n, H, W, 3)}, labels (n,))``
    (memory-mapped). Raises :class:`DataError` (one line) for a missing folder or file, an array of another
    shape or type, labels that do not fit, or labels outside ``n_classes``."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"--ood_data {root} is not a folder (it needs labels.npy and one <corruption>.npy per "
                        "corruption, as CIFAR-10-C ships them)")

    def load(name: str) -> np.ndarray:
        p = root / f"{name}.npy"
        if not p.is_file():
            raise DataError(f"--ood_data {root} has no {p.name} (CIFAR-10-C's layout: labels.npy and "
                            f"{', '.join(c + '.npy' for c in CORRUPTIONS[:2])}, ... for the 15 corruptions)")
        try:
            return np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"--ood_data: {p} is not a readable .npy array ({exc})") from None

    labels = np.asarray(load("labels"))
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"--ood_data: {root / 'labels.npy'} must be a 1-d array of integer labels, got "
                        f"{labels.dtype} {labels.shape}")
    out = {}
    n = None
    for name in CORRUPTIONS:
        arr = load(name)
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] % len(SEVERITIES):
            raise DataError(f"--ood_data: {root / (name + '.npy')} must be uint8 (5 n, H, W, 3) (5 severities "
                            f"stacked), got {arr.dtype} {arr.shape}")
        per = arr.shape[0] // len(SEVERITIES)
        if n is None:
            n = per
        elif per != n:
            raise DataError(f"--ood_data: {name}.npy holds {per} images per severity, {CORRUPTIONS[0]}.npy {n}")
        for k, s in enumerate(SEVERITIES):
            out[(name, s)] = arr[k * n:(k + 1) * n]
    if labels.size == n * len(SEVERITIES):
        full = labels.reshape(len(SEVERITIES), n)
        if not (full == full[0]).all():
            raise DataError("--ood_data: labels.npy differs between the severities")
        labels = full[0]
    elif labels.size != n:
        raise DataError(f"--ood_data: labels.npy holds {labels.size} labels for {n} images per severity")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or (n_classes is not None and labels.max() >= n_classes):
        raise DataError(f"--ood_data: labels.npy holds labels outside 0..{(n_classes or 1) - 1} (the data has "
                        f"{n_classes} classes)")
    return out, labels


# ---------------------------------------------------------------- measuring
@torch.no_grad()
def _error(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, resolution: int, mean, std,
           device: torch.device, batch_size: int) -> float:
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    y = torch.as_tensor(labels, device=device)
    wrong = 0
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).to(device).permute(0, 3, 1, 2).float()
        if x.shape[-1] != resolution or x.shape[-2] != resolution:
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                              antialias=resolution < min(x.shape[-2:]))
        out = model(((x / 255.0) - m) / s)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        wrong += (out.argmax(1) != y[i:i + batch_size]).sum().item()
    return 100.0 * wrong / len(images)


def measure_ood(model: torch.nn.Module, sets: dict, clean: np.ndarray | None, labels: np.ndarray, resolution: int,
                mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu",
                batch_size: int = 256) -> dict:
    """The OOD stats (see the module docstring) of ``model`` on the corrupted ``sets`` (``{(corruption,
    severity): uint8 images}``) with ``labels``; ``clean``: the uncorrupted images (None: not measured)."""
    t0 = time.perf_counter()
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        table: dict[str, Any] = {}
        for name in CORRUPTIONS:
            errs = {str(s): _error(model, sets[(name, s)], labels, resolution, mean, std, device, batch_size)
                    for s in SEVERITIES}
            table[name] = {**errs, "mean": float(np.mean(list(errs.values())))}
        table["mean"] = float(np.mean([table[name]["mean"] for name in CORRUPTIONS]))
        stats: dict[str, Any] = {"mCE2": table, "mce": table["mean"]}
        if clean is not None:
            stats["ood_clean_top1"] = _error(model, clean, labels, resolution, mean, std, device, batch_size)
    finally:
        model.train(was_training)
    stats["ood_images"] = int(len(labels))
    stats["ood_seconds"] = time.perf_counter() - t0
    return stats


def round_table(table: dict, decimals: int = 2) -> dict:
    """``mCE2`` with every error rounded (for the stats file)."""
    return {k: (round_table(v, decimals) if isinstance(v, dict) else round(float(v), decimals))
            for k, v in table.items()}


__all__ = ["CORRUPTIONS", "SEVERITIES", "MIN_SIDE", "corrupt_fn", "split_images", "corrupt_images", "corrupted_set",
           "read_corruption_folder", "measure_ood", "round_table"]
