"""The OFA MobileNetV3 supernet (built with the ``ofa`` package), stage-aware subnet extraction and BN
recalibration; :func:`build_supernet` and :func:`get_subnet` also serve the ResNet-50 space
(:mod:`cnas.models.ofa_resnet`).

A static subnet returned by :func:`get_subnet` is ofa's ``MobileNetV3``: ``first_conv``, ``blocks`` (``blocks[0]``
is the fixed first block, then the ``d[i]`` blocks of each stage in order), ``final_expand_layer``,
``global_avg_pool``, ``feature_mix_layer`` and ``classifier``.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable

import torch
import torch.nn as nn
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
from ofa.imagenet_classification.elastic_nn.utils import set_running_statistics

from cnas.errors import ArchError, DataError
from cnas.models.ofa_resnet import (
    build_resnet_supernet,
    get_resnet_subnet,
    is_resnet_supernet,
)
from cnas.spaces import geometry
from cnas.spaces.geometry import BASE_STAGE_WIDTH, DEPTHS, EXPANSIONS, KERNELS, N_STAGES  # noqa: F401 (re-export)

#: Widths of the official OFA MobileNetV3 checkpoints (``..._w1.0``, ``..._w1.2``).
WIDTHS = geometry.WIDTH_MULTS


def build_supernet(n_classes: int, width_mult: float = 1.0, dropout_rate: float = 0.0,
                   space: str = geometry.PLAIN) -> nn.Module:
    """An untrained OFA MobileNetV3 supernet (d234, e346, k357) with an ``n_classes``-way classifier; for
    ``space="resnet50"`` OFA's ResNet-50 supernet (:func:`cnas.models.ofa_resnet.build_resnet_supernet`, width 1.0).

    Weights get torch's default initialisation: seed torch (``torch.manual_seed``) for reproducible nets.
    """
    if space == geometry.RESNET50:
        return build_resnet_supernet(n_classes, dropout_rate=dropout_rate)
    return OFAMobileNetV3(
        n_classes=n_classes,
        dropout_rate=dropout_rate,
        width_mult=width_mult,
        ks_list=list(KERNELS),
        expand_ratio_list=list(EXPANSIONS),
        depth_list=list(DEPTHS),
    )


def stage_widths(width_mult: float = 1.0) -> list[int]:
    """Output channels of stages 1..5 at ``width_mult`` (24/40/80/112/160 at 1.0)."""
    return list(geometry.stage_widths(width_mult))


def feature_sizes(resolution: int) -> list[int]:
    """Spatial side of the feature map after stages 1..5 for a square ``resolution`` input."""
    return list(geometry.feature_sizes(resolution))


def exit_block_indices(arch: dict) -> list[int]:
    """Index in a static subnet's ``blocks`` of the last block of stages 1..5 (``blocks[0]`` is the fixed block)."""
    return geometry.stage_end_blocks(arch)


def set_active_arch(supernet: OFAMobileNetV3, arch: dict) -> None:
    """Activate ``arch`` in ``supernet``, mapping each stage's ks/e to that stage's own blocks.

    Deviation from the original: it passed the Σd-long ks/e lists to ``set_active_subnet`` which assigns them to
    the blocks in order, so whenever a stage had depth < 4 the active network differed from the config.
    Here the lists are padded per stage to 4 entries (:func:`cnas.spaces.geometry.supernet_setting`; the
    padding blocks are inactive).
    """
    supernet.set_active_subnet(**geometry.supernet_setting(arch))


def get_subnet(supernet: nn.Module, arch: dict, preserve_weight: bool = True) -> nn.Module:
    """A static MobileNetV3 for ``arch`` with weights inherited from ``supernet`` (a static ResNet for a resnet50
    arch and an OFA ResNet-50 supernet).

    The supernet's weights are not modified (its active sub-network becomes ``arch``); the subnet owns copies.
    Its eval output equals the supernet's output with ``arch`` active.
    """
    resnet_arch = geometry.space_of(arch) == geometry.RESNET50
    if resnet_arch != is_resnet_supernet(supernet):
        kind = "a ResNet-50" if is_resnet_supernet(supernet) else "a MobileNetV3"
        raise ArchError(f"a {geometry.space_of(arch)} arch cannot be extracted from {kind} supernet; give the "
                        "supernet of the arch's space")
    if resnet_arch:
        return get_resnet_subnet(supernet, arch, preserve_weight)
    set_active_arch(supernet, arch)
    return supernet.get_active_subnet(preserve_weight=preserve_weight)


def subnet_stage_layers(subnet: nn.Module) -> list[list[tuple[int, int]]]:
    """Per stage, the (kernel, expansion) of each block of a static subnet (the inverse of building it).

    Stages are told apart by the stride-2 / channel-changing first block of each stage, so this reads the
    network itself rather than any config: used to check that extraction matches the arch.
    """
    stages: list[list[tuple[int, int]]] = []
    for block in subnet.blocks[1:]:
        conv = block.conv
        if conv.stride != 1 or conv.in_channels != conv.out_channels or not stages:
            stages.append([])
        stages[-1].append((int(conv.kernel_size), int(conv.expand_ratio)))
    if len(stages) != N_STAGES:  # stage 4 (stride 1, 80 -> 112) is detected by its channel change
        raise AssertionError(f"found {len(stages)} stages in the subnet, expected {N_STAGES}")
    return stages


def _batches(loader: Iterable, n_batches: int | None) -> Iterable[tuple[torch.Tensor, Any]]:
    it = iter(loader) if n_batches is None else itertools.islice(loader, int(n_batches))
    for item in it:
        if isinstance(item, (tuple, list)):
            yield item[0], None
        else:
            yield item, None


def recalibrate_bn(model: nn.Module, loader: Iterable, n_batches: int | None = None) -> nn.Module:
    """Reset and re-estimate the BatchNorm running statistics of ``model`` from ``loader`` (in place).

    Uses ofa's ``set_running_statistics``: each BN's running mean/var becomes the sample-weighted average over
    the batches of the per-batch mean and (biased) variance, i.e. a cumulative average rather than an
    exponential one. ``loader`` yields ``(images, labels)`` pairs or bare image tensors; only the first
    ``n_batches`` are used when given. Weights are not touched. Returns ``model``.
    """
    if n_batches is not None and int(n_batches) < 1:
        raise DataError(f"n_batches must be at least 1, got {n_batches}")
    seen = 0

    def counted():
        nonlocal seen
        for pair in _batches(loader, n_batches):
            seen += 1
            yield pair

    set_running_statistics(model, counted())
    if seen == 0:
        raise DataError("recalibrate_bn got no batches from its loader: pass a non-empty data loader")
    return model
