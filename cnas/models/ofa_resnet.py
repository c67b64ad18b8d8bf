"""The OFA ResNet-50 supernet (ofa's ``OFAResNets``, the supernet of OFA's ``ofa_resnet50``) and its sub-networks.

A static subnet returned by :func:`get_resnet_subnet` is ofa's ``ResNets``: ``input_stem`` (2 or 3 convs),
``max_pooling``, ``blocks`` (the bottleneck blocks the depths run, in order), ``global_avg_pool`` and
``classifier``; its layout is :mod:`cnas.spaces.resnet_geometry`'s.
"""

from __future__ import annotations

from ofa.imagenet_classification.elastic_nn.networks import OFAResNets
from torch import nn

from cnas.spaces import resnet_geometry as R


def build_resnet_supernet(n_classes: int, dropout_rate: float = 0.0) -> OFAResNets:
    """An untrained OFA ResNet-50 supernet (d 0,1,2; e 0.2,0.25,0.35; w 0.65,0.8,1.0) with an ``n_classes``-way
    classifier. Weights get torch's default initialisation: seed torch for reproducible nets."""
    return OFAResNets(n_classes=n_classes, dropout_rate=dropout_rate, depth_list=list(R.DEPTHS),
                      expand_ratio_list=list(R.EXPANSIONS), width_mult_list=list(R.WIDTH_MULTS))


def is_resnet_supernet(supernet: nn.Module) -> bool:
    return isinstance(supernet, OFAResNets)


def set_active_resnet(supernet: OFAResNets, arch: dict) -> None:
    """Activate ``arch`` (OFA's own ``d``/``e``/``w`` dict) in ``supernet``."""
    supernet.set_active_subnet(**R.supernet_setting(arch))


def get_resnet_subnet(supernet: OFAResNets, arch: dict, preserve_weight: bool = True) -> nn.Module:
    """A static ResNet for ``arch`` with weights inherited from ``supernet`` (ofa's ``get_active_subnet``); the
    supernet's weights are not modified, the subnet owns copies and its eval output equals the supernet's with
    ``arch`` active."""
    set_active_resnet(supernet, arch)
    return supernet.get_active_subnet(preserve_weight=preserve_weight)


def supernet_classes(supernet: nn.Module) -> int:
    """The class count of an OFA supernet's classifier (ResNet-50 or MobileNetV3)."""
    return int(supernet.classifier.out_features)


__all__ = ["build_resnet_supernet", "get_resnet_subnet", "is_resnet_supernet", "set_active_resnet",
           "supernet_classes"]
