"""The int8 measurement of a trained single-exit network: quantize it (post-training, or after quantization-aware
training) with :mod:`cnas.models.quantized`, measure the int8 network's error and size, and keep its TorchScript
file.

Post-training quantization calibrates the activation ranges on ``calib_images`` training images (a fixed,
class-balanced subset, without augmentation, chosen with the seed). Quantization-aware training fine-tunes a copy
with fake quantization for ``qat_epochs`` epochs of SGD (the evaluation's recipe with learning rate ``qat_lr``, no
warm-up, the last epoch kept) before the conversion. The float network is never changed. The int8 network is
measured on the CPU (where torch's int8 kernels run), on the same splits as the float one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
import torch.nn as nn

from cnas.data import subset_loader
from cnas.models import quantized as Q
from cnas.training.trainer import TrainConfig, evaluate, train


@dataclass
class Int8Result:
    """The measured stats of the int8 network, the network itself and its TorchScript file."""

    stats: dict
    qmodel: nn.Module
    torchscript: bytes


def _first_images(loader) -> torch.Tensor:
    for batch in loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return x.detach().cpu().float().contiguous()
    raise ValueError("the calibration subset of the training split is empty")


def quantize_and_measure(model: nn.Module, train_loader: Any, select_loader: Any, test_loader: Any | None,
                         cfg: TrainConfig, *, qat_epochs: int = 0, qat_lr: float = 0.005, calib_images: int = 512,
                         backend: str = "x86", seed: int = 0, device: torch.device | str = "cpu",
                         log: Callable[[str], None] | None = None) -> Int8Result:
    """Quantize a copy of the float single-exit ``model`` to int8 and measure it.

    Stats: ``top1_int8`` (error % on ``select_loader``, the split that ``top1`` is measured on),
    ``test_top1_int8`` (when ``test_loader`` is given), ``size_int8_bytes`` and ``size_fp32_bytes`` (the
    serialized state dicts of the int8 and the float network), ``quantization`` (method, backend, calibration
    images, QAT epochs) and ``int8_seconds`` (the whole step)."""
    t0 = time.perf_counter()
    calib = subset_loader(train_loader, calib_images, seed=seed, augment=False)
    example = _first_images(calib)
    if qat_epochs > 0:
        observed = Q.prepare(model, example, backend, qat=True)
        qcfg = replace(cfg, epochs=int(qat_epochs), lr=float(qat_lr), lr_min=0.0, warmup_epochs=0.0, select="last",
                       channels_last=False, amp=False)
        train(observed, train_loader, None, qcfg, device=device, log=log)
        observed = observed.cpu()
        n_calib = 0
    else:
        observed = Q.prepare(model, example, backend)
        n_calib = Q.calibrate(observed, calib)
    qmodel = Q.convert(observed)
    cpu = torch.device("cpu")
    stats: dict[str, Any] = {
        "top1_int8": (1 - evaluate(qmodel, select_loader, cpu, amp=False, channels_last=False)["acc"]) * 100}
    if test_loader is not None:
        stats["test_top1_int8"] = (1 - evaluate(qmodel, test_loader, cpu, amp=False, channels_last=False)["acc"]) * 100
    stats["size_int8_bytes"] = Q.serialized_size(qmodel)
    stats["size_fp32_bytes"] = Q.serialized_size(model)
    stats["quantization"] = {"method": "qat" if qat_epochs > 0 else "ptq", "backend": backend,
                             "calib_images": n_calib, "qat_epochs": int(qat_epochs)}
    data = Q.to_torchscript(qmodel, example)
    stats["int8_seconds"] = time.perf_counter() - t0
    return Int8Result(stats, qmodel, data)


__all__ = ["Int8Result", "quantize_and_measure"]
