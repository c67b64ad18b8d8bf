"""``python -m cnas.export``: a trained picked network as a file a deployment tool loads (TorchScript or ONNX).

    python -m cnas.export results/picks/net-trade-off_0 --format torchscript
    python -m cnas.export results/picks/net-trade-off_0 --format onnx          # needs pip install cnas[onnx]

Weights: ``ckpt.finetuned.pth`` (after fine-tuning), else ``ckpt.pth`` (kept by the search), else
``inherited.pth``; ``--checkpoint`` names another. Input: a float tensor ``(B, 3, r, r)`` normalized as in
training (the mean/std that fine-tuning used, else the dataset's, are written to the sidecar
``<file>.json`` with the thresholds, outputs and the check's figures).

* A single-exit net exports as ``logits = f(x)`` for any batch size.
* An early-exit net exports with its exit policy and the checkpoint's thresholds and returns
  ``(logits, exit_index)``:

  - TorchScript (``net.torchscript.pt``): built for **batch 1** inference that stops at the exit taken, as
    :meth:`cnas.models.EENetwork.predict` does: the backbone segment before each exit and each head are traced
    (static graphs), and a scripted module runs them in order with the policy's data-dependent branch (the score
    margin ``p1 - p2 >= eps_i`` for EDANAS heads, the cumulative confidence ``D_i >= eps_i`` for NACHOS heads),
    so the work after the exit is skipped.
  - ONNX (``net.onnx``): the graph computes every exit and applies the same policy with tensor operations
    (any batch size; no compute saved), since data-dependent early returns do not map onto a portable ONNX
    graph. Use the TorchScript file where the saving matters.

Each export is checked before it is written: the exported bytes are loaded back (``torch.jit.load`` / onnxruntime) and
its outputs on random inputs are compared with the torch model's (``predict`` with early stop for an early-exit
net); a mismatch above ``--atol`` (a number >= 0) is an error and leaves nothing at ``--output``.
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path
from typing import Callable, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnas.cli import ArgumentParser
from cnas.data import get_dataset_info
from cnas.errors import CheckpointError, ConfigError, DataError, UsageError, run_cli
from cnas.fileio import atomic_write_bytes, atomic_write_json
from cnas.layout import EXPORT_WEIGHTS
from cnas.models import EENetwork
from cnas.models.checkpoint import load_net_checkpoint
from cnas.settings import Bound
from cnas.spaces.geometry import INPUT_CHANNELS

FORMATS = ("torchscript", "onnx")
#: The accepted ``--atol``: a finite number >= 0.
ATOL = Bound(lo=0)
SUFFIX = {"torchscript": "torchscript.pt", "onnx": "onnx"}


class ExportCheckFailed(UsageError):
    """The exported file, loaded back, does not give the torch model's outputs within ``--atol``."""


# ---------------------------------------------------------------- loading the trained network
def find_checkpoint(folder: str | Path, checkpoint: str | Path | None = None) -> Path:
    folder = Path(folder)
    if checkpoint is not None:
        return Path(checkpoint)
    for name in EXPORT_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder} holds no trained weights ({', '.join(EXPORT_WEIGHTS)}); fine-tune it first "
                          f"with python -m cnas.train --model_path {folder}")


def load_network(path: str | Path) -> tuple[nn.Module, dict]:
    """The network of a cnas checkpoint (:func:`cnas.models.checkpoint.load_net_checkpoint`) in eval mode, and
    the checkpoint's metadata that export uses."""
    model, ck = load_net_checkpoint(path)
    model.eval()
    meta = {k: ck.get(k) for k in ("arch", "n_classes", "resolution", "dataset", "thresholds", "mean", "std")}
    return model, meta


# ---------------------------------------------------------------- early-exit deployment modules
class _Stage(nn.Module):
    """Backbone segment up to an exit, then that exit's head: ``h -> (h', head(h'))``."""

    def __init__(self, segment: nn.Module, head: nn.Module):
        super().__init__()
        self.segment, self.head = segment, head

    def forward(self, h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.segment(h)
        return h, self.head(h)


def _stages(model) -> list[_Stage]:
    b = model.backbone
    blocks = list(b.blocks)
    out, start = [], 0
    for k in range(model.n_exits):
        end = model.exit_blocks[k] + 1
        seg = nn.Sequential(*([b.first_conv] if k == 0 else []), *blocks[start:end])
        head = model.heads[k] if k < model.n_exits - 1 else model.exit_head(k)
        out.append(_Stage(seg, head))
        start = end
    return out


class EarlyExitBatch1(nn.Module):
    """Batch-1 early-exit inference (scripted): runs the traced stages in order and returns at the first exit
    whose policy value reaches its threshold. Returns ``(logits (1, C), exit_index (1,))``."""

    def __init__(self, stages: List[nn.Module], thresholds: List[float], n_classes: int, binary: bool):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.register_buffer("eps", torch.tensor(thresholds, dtype=torch.float32))
        self.n_classes = n_classes
        self.binary = binary
        self.n_exits = len(stages)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = x
        logits = torch.zeros(1, self.n_classes, dtype=x.dtype, device=x.device)
        index = torch.full([1], self.n_exits - 1, dtype=torch.long, device=x.device)
        reached = torch.zeros(1, dtype=x.dtype, device=x.device)
        survive = torch.ones(1, dtype=x.dtype, device=x.device)
        done = False
        k = 0
        for stage in self.stages:
            if not done:
                h, out = stage(h)
                if k == self.n_exits - 1:
                    logits = out
                    done = True
                else:
                    if self.binary:
                        lg = out[:, : self.n_classes]
                        c = torch.sigmoid(out[:, self.n_classes])
                        reached = reached + c * survive
                        survive = survive * (1 - c)
                        hit = bool(reached[0] >= self.eps[k])
                    else:
                        lg = out
                        top2 = F.softmax(out, dim=-1).topk(2, dim=-1).values
                        hit = bool(top2[0, 0] - top2[0, 1] >= self.eps[k])
                    if hit:
                        logits = lg
                        index = torch.full([1], k, dtype=torch.long, device=x.device)
                        done = True
            k += 1
        return logits, index


class EarlyExitAllExits(nn.Module):
    """Every exit computed, then the exit policy as tensor operations (any batch; exportable to ONNX).
    Returns ``(logits (B, C), exit_index (B,))`` equal to :meth:`EENetwork.predict`."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.n_classes, self.binary, self.n_exits = model.n_classes, bool(model.binary), model.n_exits
        self.register_buffer("eps", torch.tensor(list(model.thresholds), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        outs = self.model(x)
        n, c = self.n_exits, self.n_classes
        logits = torch.stack([o[:, :c] for o in outs], dim=1)  # (B, n, C)
        if self.binary:
            # D_i = sum_{j<=i} c_j prod_{k<j} (1 - c_k), unrolled (ONNX has no cumprod; n - 1 <= 4)
            before, total, values = None, None, []
            for o in outs[:-1]:
                cj = torch.sigmoid(o[:, c])
                q = cj if before is None else cj * before
                before = (1 - cj) if before is None else before * (1 - cj)
                total = q if total is None else total + q
                values.append(total)
            value = torch.stack(values, dim=1)
        else:
            top2 = F.softmax(logits[:, :-1], dim=-1).topk(2, dim=-1).values  # (B, n-1, 2)
            value = top2[..., 0] - top2[..., 1]
        hit = (value >= self.eps[: n - 1]).to(x.dtype)
        hit = torch.cat([hit, torch.ones_like(hit[:, :1])], dim=1)  # the final exit takes the rest
        weight = torch.arange(n, 0, -1, dtype=x.dtype, device=x.device)  # the first hit weighs most
        index = torch.argmax(hit * weight, dim=1)
        picked = torch.gather(logits, 1, index.view(-1, 1, 1).expand(-1, 1, c)).squeeze(1)
        return picked, index


def deployable(model: nn.Module, fmt: str) -> nn.Module:
    """The module that gets exported: the net itself (single exit) or its early-exit inference wrapper."""
    if not isinstance(model, EENetwork):
        return model
    if fmt == "onnx":
        return EarlyExitAllExits(model).eval()
    stages = _stages(model)
    r = model.resolution
    h = torch.zeros(1, INPUT_CHANNELS, r, r)
    traced = []
    with torch.no_grad():
        for st in stages:
            st.eval()
            traced.append(torch.jit.trace(st, h, check_trace=False))
            h = st(h)[0]
    wrapper = EarlyExitBatch1(traced, [float(t) for t in model.thresholds], model.n_classes, bool(model.binary))
    return torch.jit.script(wrapper.eval())


# ---------------------------------------------------------------- export + check
def _reference(model: nn.Module, x: torch.Tensor, fmt: str) -> list[torch.Tensor]:
    with torch.no_grad():
        if isinstance(model, EENetwork):
            logits, idx = model.predict(x, early_stop=(fmt == "torchscript"))
            return [logits, idx]
        return [model(x)]


def export(folder: str | Path, fmt: str = "torchscript", output: str | Path | None = None,
           checkpoint: str | Path | None = None, atol: float = 1e-4, n_check: int = 8, seed: int = 0) -> dict:
    """Export the trained network of the picked ``folder``; returns the sidecar record (also written as
    ``<output>.json``) with ``max_abs_diff`` and ``exit_agreement`` of the check."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    ATOL("atol", atol)
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give a pick of cnas.post_search")
    out = Path(output) if output else folder / f"net.{SUFFIX[fmt]}"
    check_output_file(out)
    ck_path = find_checkpoint(folder, checkpoint)
    model, meta = load_network(ck_path)
    is_ee = isinstance(model, EENetwork)
    r = meta["resolution"]
    with warnings.catch_warnings():
        # torch 2.9+ marks torch.jit and the TorchScript-based ONNX exporter deprecated: nothing a user can act on
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        return _export(model, meta, ck_path, fmt, out, is_ee, r, atol, n_check, seed)


def check_output_file(out: Path) -> None:
    """``--output``: a file path (not a folder) whose folder is not a file."""
    if out.is_dir():
        raise ConfigError(f"--output {out} is a folder; give the export's file path, e.g. {out / 'net.onnx'}")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"--output {out}: {blocker} is a file, not a folder")


def _export(model, meta, ck_path, fmt, out, is_ee, r, atol, n_check, seed) -> dict:
    """Export in memory, load the bytes back and compare their outputs with the torch model's; only an export
    that passed is written to ``out`` (atomically), then its sidecar."""
    module = deployable(model, fmt)
    g = torch.Generator().manual_seed(seed)
    batch = 1 if (is_ee and fmt == "torchscript") else 2
    xs = [torch.randn(batch, INPUT_CHANNELS, r, r, generator=g) for _ in range(n_check)]
    if fmt == "torchscript":
        data, run = _export_torchscript(module, xs[0], is_ee)
    else:
        data, run = _export_onnx(module, xs[0], is_ee)
    diff, agree = 0.0, 0
    for x in xs:
        ref = _reference(model, x, fmt)
        got = run(x)
        diff = max(diff, float((got[0] - ref[0]).abs().max()))
        if is_ee:
            agree += int(torch.equal(got[1].long().view(-1), ref[1].long().view(-1)))
    if not diff <= atol or (is_ee and agree < len(xs)):
        decisions = f", {agree}/{len(xs)} exit decisions equal" if is_ee else ""
        raise ExportCheckFailed(f"the exported {fmt} model differs from the torch model (max |diff| {diff:.2e} "
                                f"against --atol {atol:g}{decisions}); nothing was written to {out}")
    norm = {"mean": meta["mean"], "std": meta["std"]} if meta.get("mean") and meta.get("std") else None
    if norm is None and meta.get("dataset"):
        try:
            info = get_dataset_info(meta["dataset"])
            norm = {"mean": list(info.mean), "std": list(info.std)}
        except DataError:
            norm = None
    record = {
        "format": fmt, "file": out.name, "checkpoint": str(ck_path), "arch": meta["arch"],
        "n_classes": meta["n_classes"], "resolution": r, "dataset": meta.get("dataset"), "normalization": norm,
        "input": {"name": "input", "shape": [1 if (is_ee and fmt == "torchscript") else "B", INPUT_CHANNELS, r, r]},
        "outputs": ["logits", "exit_index"] if is_ee else ["logits"],
        "early_exit": None if not is_ee else {
            "policy": model.policy,
            "thresholds": list(model.thresholds), "early_stop": fmt == "torchscript"},
        "max_abs_diff": diff, "exit_agreement": (agree / len(xs)) if is_ee else None,
    }
    atomic_write_bytes(out, data)
    atomic_write_json(out.with_name(out.name + ".json"), record)
    return record


def _export_torchscript(module: nn.Module, x: torch.Tensor, is_ee: bool) -> tuple[bytes, Callable]:
    """The TorchScript file's bytes and a function running them loaded back."""
    if not isinstance(module, torch.jit.ScriptModule):
        with torch.no_grad():
            module = torch.jit.trace(module, x, check_trace=False)
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    data = buf.getvalue()
    loaded = torch.jit.load(io.BytesIO(data))

    def run(inp):
        with torch.no_grad():
            y = loaded(inp)
        return list(y) if isinstance(y, (tuple, list)) else [y]

    return data, run


def _export_onnx(module: nn.Module, x: torch.Tensor, is_ee: bool) -> tuple[bytes, Callable]:
    """The ONNX file's bytes and a function running them in onnxruntime."""
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("--format onnx needs the onnx extra: pip install 'cnas[onnx]' (onnx, onnxruntime)") from None
    names = ["logits", "exit_index"] if is_ee else ["logits"]
    axes = {"input": {0: "batch"}, **{n: {0: "batch"} for n in names}}
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, (x,), buf, dynamo=False, input_names=["input"], output_names=names,
                          dynamic_axes=axes, opset_version=17)
    data = buf.getvalue()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])

    def run(inp):
        return [torch.from_numpy(v) for v in sess.run(None, {"input": inp.numpy()})]

    return data, run


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnas.export", description=__doc__.split("\n")[0])
    p.add_argument("folder", help="a picked folder (cnas.post_search), ideally fine-tuned")
    p.add_argument("--format", default="torchscript", help="torchscript (default) or onnx")
    p.add_argument("--output", default=None, help="output file (default: <folder>/net.torchscript.pt or net.onnx)")
    p.add_argument("--checkpoint", default=None, help="weights to export (default: ckpt.finetuned.pth, else "
                                                      "ckpt.pth, else inherited.pth in the folder)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest accepted |difference| to the torch model")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    rec = export(args.folder, args.format, args.output, args.checkpoint, args.atol)
    ee = rec["early_exit"]
    extra = f", {ee['policy']} exits at thresholds {ee['thresholds']}" if ee else ""
    print(f"{Path(args.folder) / rec['file'] if not args.output else args.output}: {rec['format']}, input "
          f"{rec['input']['shape']}, outputs {', '.join(rec['outputs'])}{extra}; checked against torch: max |diff| "
          f"{rec['max_abs_diff']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="cnas.export"))
