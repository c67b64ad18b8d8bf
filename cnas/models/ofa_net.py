"""The OFA MobileNetV3 supernet (built with the ``ofa`` package) and stage-aware subnet extraction."""

from __future__ import annotations

import torch.nn as nn
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

from cnas.spaces import DEPTHS, EXPANSIONS, KERNELS, MAX_DEPTH, stage_layers


def build_supernet(n_classes: int, width_mult: float = 1.0, dropout_rate: float = 0.0) -> OFAMobileNetV3:
    """An untrained OFA MobileNetV3 supernet (d234, e346, k357) with an ``n_classes``-way classifier."""
    return OFAMobileNetV3(
        n_classes=n_classes,
        dropout_rate=dropout_rate,
        width_mult=width_mult,
        ks_list=list(KERNELS),
        expand_ratio_list=list(EXPANSIONS),
        depth_list=list(DEPTHS),
    )


def set_active_arch(supernet: OFAMobileNetV3, arch: dict) -> None:
    """Activate ``arch`` in ``supernet``, mapping each stage's ks/e to that stage's own blocks.

    Deviation from the original: it passed the Σd-long ks/e lists to ``set_active_subnet`` which assigns them to
    the blocks in order, so whenever a stage had depth < 4 the active network differed from the config
    (reference section 12). Here the lists are padded per stage to 4 entries (the padding blocks are inactive).
    """
    ks20, e20 = [], []
    for layers in stage_layers(arch):
        pad = layers[-1]
        layers = layers + [pad] * (MAX_DEPTH - len(layers))
        ks20 += [k for k, _ in layers]
        e20 += [e for _, e in layers]
    supernet.set_active_subnet(ks=ks20, e=e20, d=list(arch["d"]))


def get_subnet(supernet: OFAMobileNetV3, arch: dict, preserve_weight: bool = True) -> nn.Module:
    """A static MobileNetV3 for ``arch`` with weights inherited from ``supernet`` (which is left unchanged)."""
    set_active_arch(supernet, arch)
    return supernet.get_active_subnet(preserve_weight=preserve_weight)
