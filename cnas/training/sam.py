"""Sharpness-aware minimization (SAM, Foret et al. 2021) and its adaptive variant (ASAM, Kwon et al. 2021).

One SAM step costs two forward/backward passes: the first gradient moves the weights to the (approximately) worst
point within a ball of radius ``rho``; the gradient there updates the original weights with the base optimizer.
Perturbation: ``e = rho * g / ||g||`` (SAM) or ``e = rho * w^2 * g / || |w| * g ||`` (ASAM).
The original's defaults are ASAM with rho = 2.0 around SGD (momentum 0.9, no nesterov); batch-norm running
statistics are not updated by the second pass (see :func:`frozen_bn_stats`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn


class SAM(torch.optim.Optimizer):
    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD, rho: float = 2.0,
                 adaptive: bool = True, **kwargs):
        if rho < 0:
            raise ValueError(f"rho must be non-negative, got {rho}")
        defaults = dict(rho=rho, adaptive=adaptive, **kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    def _grad_norm(self) -> torch.Tensor:
        norms = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad * p.abs() if group["adaptive"] else p.grad
                norms.append(g.norm(p=2))
        if not norms:
            return torch.tensor(0.0)
        return torch.stack([n.to(norms[0].device) for n in norms]).norm(p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e_w = (p.pow(2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e_w)
                self.state[p]["e_w"] = e_w
        if zero_grad:
            self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                e_w = self.state[p].pop("e_w", None)
                if e_w is not None:
                    p.sub_(e_w)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad(set_to_none=True)

    def step(self, closure=None):
        if closure is None:
            raise RuntimeError("SAM needs a closure that re-evaluates the loss (or call first_step/second_step)")
        closure = torch.enable_grad()(closure)
        self.first_step(zero_grad=True)
        closure()
        self.second_step()

    def state_dict(self) -> dict:
        """The base optimizer's state (its momentum buffers) and the shared param groups (with ``rho`` and
        ``adaptive``): everything a resumed run needs. SAM's own state, the perturbation ``e_w``, exists only
        between :meth:`first_step` and :meth:`second_step`."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups  # shared again, as after __init__


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Batch norm layers normalise with batch statistics but leave their running statistics unchanged."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in saved:
            m.momentum = mom
