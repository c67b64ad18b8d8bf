"""Torch modules: the OFA MobileNetV3 supernet, stage-aware subnets and early-exit networks."""

from cnas.models.ofa_net import build_supernet, get_subnet, set_active_arch

__all__ = ["build_supernet", "get_subnet", "set_active_arch"]
