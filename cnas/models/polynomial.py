"""Functional constraint for homomorphic-encryption-friendly inference: ReLU replaced by a polynomial.

``OurReLU(x) = 0.01 x^2 + 0.5 x`` replaces every ``nn.ReLU``. As in the original, OFA's
h-swish / h-sigmoid are left as they are; unlike the original, the replacement is applied before training when
asked, so the network that is trained is the network that is measured.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class PolyReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.01 * x * x + 0.5 * x


def substitute_activation(model: nn.Module) -> int:
    """Replace every ``nn.ReLU`` in ``model`` in place; returns how many were replaced."""
    n = 0
    for name, child in list(model.named_children()):
        if isinstance(child, nn.ReLU):
            setattr(model, name, PolyReLU())
            n += 1
        else:
            n += substitute_activation(child)
    return n
