"""Torch modules: the OFA MobileNetV3 supernet, stage-aware subnets, early-exit networks and exit policies."""

from cnas.models.checkpoint import load_supernet, read_checkpoint, save_supernet
from cnas.models.early_exit import (
    EENetwork,
    build_network,
    cumulative_confidence_exits,
    default_thresholds,
    exit_probabilities,
    make_exit_head,
    score_margin,
    score_margin_exits,
)
from cnas.models.ofa_net import (
    build_supernet,
    exit_block_indices,
    feature_sizes,
    get_subnet,
    recalibrate_bn,
    set_active_arch,
    subnet_stage_layers,
)

__all__ = [
    "build_supernet", "get_subnet", "set_active_arch", "subnet_stage_layers", "exit_block_indices", "feature_sizes",
    "recalibrate_bn", "load_supernet", "save_supernet", "read_checkpoint", "EENetwork", "build_network",
    "make_exit_head", "score_margin", "score_margin_exits", "cumulative_confidence_exits", "exit_probabilities",
    "default_thresholds",
]
