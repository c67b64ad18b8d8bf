"""Int8 quantization of a single-exit network with PyTorch's own tooling (``torch.ao.quantization``, FX graph mode).

Post-training quantization (PTQ): :func:`prepare` inserts observers (``get_default_qconfig_mapping(backend)``:
per-channel symmetric int8 weights, per-tensor affine uint8 activations, conv + batch norm folded), :func:`calibrate`
runs training images through them, :func:`convert` turns the observed network into int8 kernels.
Quantization-aware training (QAT): :func:`prepare` with ``qat=True`` inserts fake-quantization modules
(``get_default_qat_qconfig_mapping``) that training then adapts to, before the same :func:`convert`.

OFA's ``Hswish`` and ``Hsigmoid`` are written as ``x * relu6(x + 3) / 6`` and ``relu6(x + 3) / 6``; FX would
leave the division in float between a dequantize and a quantize. :func:`standard_activations` replaces them by
``nn.Hardswish`` / ``nn.Hardsigmoid`` (the same functions, to the bit on float inputs), which have int8 kernels.

The int8 network runs on the CPU (the quantized kernels of the ``x86``/``fbgemm`` or ``qnnpack`` engine);
:func:`to_torchscript` gives the deployable file. :func:`serialized_size` is the size in bytes of a module's state
dict as ``torch.save`` writes it (weights, biases, scales and zero points).
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from typing import Iterable

import torch
import torch.nn as nn
from ofa.utils.pytorch_modules import Hsigmoid, Hswish

#: Quantized engines of torch (``x86`` is fbgemm's successor and the default on x86 CPUs).
BACKENDS = ("x86", "fbgemm", "qnnpack")


@contextlib.contextmanager
def _quiet():
    """torch marks torch.ao.quantization (and TorchScript) deprecated in favour of torchao and warns per call:
    nothing a user of cnas can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*(quantize_per_tensor|reduce_range|TorchScript|torch\.jit).*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # scales and zero points are constants
        yield


def set_engine(backend: str) -> None:
    """Select torch's quantized engine ``backend`` (one of :data:`BACKENDS` that this torch build supports)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown quantization backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"this torch build has no {backend} quantized engine (it has "
                           f"{', '.join(e for e in torch.backends.quantized.supported_engines if e != 'none')})")
    torch.backends.quantized.engine = backend


def standard_activations(model: nn.Module) -> nn.Module:
    """Replace OFA's ``Hswish``/``Hsigmoid`` modules of ``model`` by ``nn.Hardswish``/``nn.Hardsigmoid`` (in
    place; the functions are the same). Returns ``model``."""
    for name, child in model.named_children():
        if isinstance(child, Hswish):
            setattr(model, name, nn.Hardswish())
        elif isinstance(child, Hsigmoid):
            setattr(model, name, nn.Hardsigmoid())
        else:
            standard_activations(child)
    return model


def prepare(model: nn.Module, example: torch.Tensor, backend: str = "x86", qat: bool = False) -> nn.Module:
    """A copy of the float ``model`` on the CPU, ready for calibration (``qat=False``: observers, eval mode) or
    quantization-aware training (``qat=True``: fake quantization, train mode). ``example``: an input batch."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    set_engine(backend)
    net = standard_activations(copy.deepcopy(model).cpu().float())
    example = (example.detach().cpu().float(),)
    with _quiet():
        if qat:
            return prepare_qat_fx(net.train(), get_default_qat_qconfig_mapping(backend), example)
        return prepare_fx(net.eval(), get_default_qconfig_mapping(backend), example)


def _images(batch) -> torch.Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return x.detach().cpu().float().contiguous()


@torch.no_grad()
def calibrate(observed: nn.Module, loader: Iterable) -> int:
    """Run every batch of ``loader`` (``(images, labels)`` or images) through the observers of ``observed`` (in
    eval mode, on the CPU). Returns the number of images."""
    observed.eval()
    n = 0
    with _quiet():
        for batch in loader:
            x = _images(batch)
            observed(x)
            n += x.shape[0]
    if n == 0:
        raise ValueError("calibration got no images: pass a non-empty loader")
    return n


def convert(observed: nn.Module) -> nn.Module:
    """The int8 network of a calibrated (or quantization-aware trained) ``observed`` network, in eval mode."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet():
        return convert_fx(copy.deepcopy(observed).cpu().eval()).eval()


def to_torchscript(qmodel: nn.Module, example: torch.Tensor) -> bytes:
    """The TorchScript file (bytes) of the int8 network ``qmodel``, traced on ``example`` (any batch size runs)."""
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(qmodel.eval(), _images(example), check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
    return buf.getvalue()


def load_torchscript(data: bytes) -> torch.jit.ScriptModule:
    with _quiet():
        return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()


def serialized_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the stored weights, biases, scales and zero points."""
    buf = io.BytesIO()
    with _quiet():
        torch.save(model.state_dict(), buf)
    return buf.tell()


__all__ = ["BACKENDS", "set_engine", "standard_activations", "prepare", "calibrate", "convert", "to_torchscript",
           "load_torchscript", "serialized_size"]
