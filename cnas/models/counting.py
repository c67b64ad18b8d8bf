"""Counting a built network by running it: the measurement the closed-form counts of :mod:`cnas.complexity` are
checked against (by the tests and ``benchmarks/complexity.py``).

params = the trainable parameters' element count; MACs = torch's ``FlopCounterMode`` total / 2 (convolutions and
linear layers); activations = the summed output sizes of the :data:`COUNTED` layers for one image.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

#: The layers whose outputs count as activations (as the closed form counts them).
COUNTED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.Flatten, nn.AvgPool2d, nn.MaxPool2d)


def measure_counts(module: nn.Module, x: torch.Tensor | int) -> tuple[int, int, int, object]:
    """(params, MACs, activations, output) of one forward pass of ``module`` in eval mode on ``x`` (a tensor, or
    a resolution ``r`` for one random ``1 x 3 x r x r`` image)."""
    if isinstance(x, int):
        x = torch.randn(1, 3, x, x)
    acts = [0]

    def hook(mod, inp, out):
        acts[0] += out.numel()

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, COUNTED)]
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            y = module(x)
    finally:
        for h in handles:
            h.remove()
    flops = fc.get_total_flops()
    if flops % 2:
        raise AssertionError(f"FlopCounterMode counted an odd number of flops ({flops}): not all multiply-adds")
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return params, flops // 2, acts[0], y
