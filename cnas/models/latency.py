"""Timing on the user's own device: the torch module of each latency-table operation, the backends that run a
module (torch, onnxruntime), and the timer shared by table builds and end-to-end measurements.

A table operation (:class:`cnas.latency_table.LatencyOp`) is built from ``ofa``'s layers with the parameters the
static OFA subnet gives the same part (``tests/test_latency.py`` compares the configs with extracted subnets),
and an exit head with :func:`cnas.models.early_exit.make_exit_head`. Every timing runs in eval mode under
``torch.inference_mode`` with garbage collection paused and denormals flushed: ``warmup`` untimed calls, then
``repeats`` calls each timed on its own (``time.perf_counter``; on CUDA synchronized after each call).
"""

from __future__ import annotations

import contextlib
import gc
import io
import statistics
import time
import warnings
from typing import Callable, Iterator

import torch
import torch.nn as nn
from ofa.utils.layers import ConvLayer, IdentityLayer, LinearLayer, MBConvLayer, ResidualBlock
from ofa.utils.pytorch_modules import MyGlobalAvgPool2d

from cnas.errors import ConfigError
from cnas.latency_table import (BLOCK, FEATURE_MIX, FINAL_EXPAND, HEAD, LOGITS, POOL, STEM, LatencyOp)
from cnas.models.early_exit import build_network, make_exit_head
from cnas.spaces import geometry as G

#: Every figure of a timing is in milliseconds.
DECIMALS = 5


def op_module(op: LatencyOp) -> nn.Module:
    """The module that runs ``op`` (weights randomly initialised: latency does not depend on them)."""
    cin = op.input[-1]
    if op.kind == STEM:
        return ConvLayer(cin, op.output[-1], kernel_size=G.STEM_KERNEL, stride=G.STEM_STRIDE, act_func="h_swish")
    if op.kind == BLOCK:
        expand = op.expand // cin if op.expand % cin == 0 else op.expand / cin  # 1: no 1x1 expansion conv
        conv = MBConvLayer(cin, op.output[-1], kernel_size=op.kernel, stride=op.stride, expand_ratio=expand,
                           mid_channels=None if expand == 1 else op.expand, act_func="h_swish" if op.hs else "relu", use_se=bool(op.se))
        return ResidualBlock(conv, IdentityLayer(cin, cin) if op.idskip else None)
    if op.kind == FINAL_EXPAND:
        return ConvLayer(cin, op.output[-1], kernel_size=1, act_func="h_swish")
    if op.kind == POOL:
        return MyGlobalAvgPool2d(keep_dim=True)
    if op.kind == FEATURE_MIX:
        return ConvLayer(cin, op.output[-1], kernel_size=1, bias=False, use_bn=False, act_func="h_swish")
    if op.kind == LOGITS:
        return nn.Sequential(nn.Flatten(), LinearLayer(cin, op.output[0], dropout_rate=0))
    if op.kind == HEAD:
        return make_exit_head(cin, op.input[0], op.pool, op.output[0])
    raise ValueError(f"no module for latency op kind {op.kind!r}")


def op_input(op: LatencyOp, batch: int = 1) -> torch.Tensor:
    h, w, c = op.input
    return torch.randn(batch, c, h, w)


# ---------------------------------------------------------------- backends
@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` (None: unchanged) for the block, restored after it."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_backend(backend: str, device: str) -> None:
    """The backend and device can run here; :class:`ConfigError` naming the fix otherwise."""
    if backend not in ("torch", "onnxruntime"):
        raise ConfigError(f"--backend must be torch or onnxruntime, got {backend!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if backend == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ConfigError("--backend onnxruntime needs onnxruntime: pip install -e '.[onnx]'") from None
        if device != "cpu":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError(f"--backend onnxruntime --device {device}: this onnxruntime has no CUDA "
                                  "provider (pip install onnxruntime-gpu), or use --backend torch")


def make_runner(module: nn.Module, x: torch.Tensor, backend: str = "torch", device: str = "cpu",
                threads: int | None = None) -> Callable[[], object]:
    """A function that runs ``module`` on ``x`` once on ``backend`` and ``device`` (returns when the result is
    ready). onnxruntime runs the module exported to ONNX in memory, with ``threads`` intra-op threads."""
    module = module.eval()
    if backend == "torch":
        module = module.to(device)
        xd = x.to(device)
        if device.startswith("cuda"):
            def run():
                out = module(xd)
                torch.cuda.synchronize(device)
                return out
            return run
        return lambda: module(xd)
    import onnxruntime as ort

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript-based exporter is marked deprecated from torch 2.9: nothing a user can act on
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category)
        torch.onnx.export(module.cpu(), (x,), buf, input_names=["x"], dynamo=False)
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else \
        ["CPUExecutionProvider"]
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=providers)
    feed = {"x": x.numpy()}
    return lambda: sess.run(None, feed)


def time_runner(run: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Milliseconds of each of ``repeats`` timed calls of ``run`` after ``warmup`` untimed ones."""
    gc_was = gc.isenabled()
    gc.disable()
    # randomly initialised deep nets shrink activations by orders of magnitude: flushing denormals keeps the
    # arithmetic at the speed trained weights run at (a no-op where the CPU cannot flush)
    flushed = torch.set_flush_denormal(True)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                run()
            out = []
            clock = time.perf_counter
            for _ in range(repeats):
                t0 = clock()
                run()
                out.append((clock() - t0) * 1e3)
    finally:
        if flushed:
            torch.set_flush_denormal(False)
        if gc_was:
            gc.enable()
    return out


def summarize(samples: list[float]) -> dict:
    """``{mean, std, count, median}`` of timings in ms (OFA's table fields plus the median)."""
    n = len(samples)
    return {"mean": round(statistics.fmean(samples), DECIMALS),
            "std": round(statistics.pstdev(samples), DECIMALS) if n > 1 else 0.0,
            "count": n, "median": round(statistics.median(samples), DECIMALS)}


def spread(samples: list[float]) -> dict:
    """The median and the spread of repeated timings of one network: 10th/90th percentiles and the
    interquartile range relative to the median."""
    s = sorted(samples)
    q = statistics.quantiles(s, n=20, method="inclusive") if len(s) > 1 else [s[0]] * 19
    med = statistics.median(s)
    return {"median": round(med, DECIMALS), "mean": round(statistics.fmean(s), DECIMALS),
            "std": round(statistics.pstdev(s), DECIMALS) if len(s) > 1 else 0.0,
            "p10": round(q[1], DECIMALS), "p90": round(q[17], DECIMALS),
            "iqr_rel": round((q[14] - q[4]) / med, 5) if med > 0 else 0.0, "repeats": len(s)}


def time_op(op: LatencyOp, backend: str = "torch", device: str = "cpu", threads: int | None = None,
            batch: int = 1, warmup: int = 10, repeats: int = 50) -> dict:
    """A table entry for ``op``: ``{mean, std, count, median}`` in ms."""
    torch.manual_seed(0)
    run = make_runner(op_module(op), op_input(op, batch), backend, device, threads)
    return summarize(time_runner(run, warmup, repeats))


def network_runner(arch: dict, n_classes: int, backend: str = "torch", device: str = "cpu",
                   threads: int | None = None, batch: int = 1, resolution: int | None = None,
                   width_mult: float = 1.0):
    """A runner of the whole network of ``arch`` (every exit of an early-exit net computed)."""
    torch.manual_seed(0)
    r = int(resolution if resolution is not None else arch["r"])
    net = build_network(dict(arch), n_classes, resolution=r, width_mult=width_mult)
    return make_runner(net, torch.randn(batch, G.INPUT_CHANNELS, r, r), backend, device, threads)


def measure_network(arch: dict, n_classes: int, backend: str = "torch", device: str = "cpu",
                    threads: int | None = None, batch: int = 1, warmup: int = 10, repeats: int = 50,
                    resolution: int | None = None, width_mult: float = 1.0) -> dict:
    """End-to-end latency of the network of ``arch`` (random weights): :func:`spread` of ``repeats`` timed
    inferences after ``warmup``, in ms."""
    with torch_threads(threads):
        run = network_runner(arch, n_classes, backend, device, threads, batch, resolution, width_mult)
        return spread(time_runner(run, warmup, repeats))


__all__ = ["op_module", "op_input", "make_runner", "time_runner", "time_op", "summarize", "spread",
           "measure_network", "network_runner", "torch_threads", "check_backend"]
