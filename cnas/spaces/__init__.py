"""Search spaces: configs, sampling and integer encodings (pure core: no torch, no files): the three OFA
MobileNetV3 spaces and OFA's ResNet-50 space."""

from __future__ import annotations

from cnas.errors import ConfigError
from cnas.spaces import geometry
from cnas.spaces.base import SearchSpace
from cnas.spaces.geometry import EDANAS, NACHOS, PLAIN, RESNET50, arch_key, space_of
from cnas.spaces.mobilenetv3 import (
    BRANCHES,
    DEPTHS,
    EXPANSIONS,
    KERNELS,
    MAX_DEPTH,
    N_EXITS,
    N_STAGES,
    THRESHOLDS,
    Arch,
    CBNMobileNetV3Space,
    EEMobileNetV3Space,
    MobileNetV3Space,
    exit_mask,
    stage_layers,
)
from cnas.spaces.resnet50 import ResNet50Space

SPACES: dict[str, type[SearchSpace]] = {
    PLAIN: MobileNetV3Space,
    EDANAS: EEMobileNetV3Space,
    NACHOS: CBNMobileNetV3Space,
    RESNET50: ResNet50Space,
}


def get_space(name: str, lr: int = 224, ur: int = 224, rstep: int = 4) -> SearchSpace:
    """The search space called ``name`` with resolutions ``range(lr, ur + 1, rstep)``."""
    if name not in SPACES:
        raise ConfigError(f"unknown search space '{name}'; choose one of {', '.join(SPACES)}")
    return SPACES[name](name, lr=lr, ur=ur, rstep=rstep)


def space_for_arch(arch: dict, lr: int | None = None, ur: int | None = None, rstep: int = 4) -> SearchSpace:
    """The space an arch dict belongs to, judged by its keys (:func:`cnas.spaces.geometry.space_of`).

    The resolution range defaults to the arch's own ``r`` (fixed), else 224.
    """
    name = space_of(arch)
    r = arch.get("r", 224) if isinstance(arch, dict) else 224
    lo = lr if lr is not None else r
    hi = ur if ur is not None else lo
    return get_space(name, lr=lo, ur=hi, rstep=rstep)


__all__ = [
    "SPACES", "get_space", "space_for_arch", "space_of", "arch_key", "geometry", "stage_layers", "exit_mask", "Arch",
    "SearchSpace", "MobileNetV3Space", "EEMobileNetV3Space", "CBNMobileNetV3Space", "ResNet50Space", "RESNET50", "DEPTHS", "KERNELS", "EXPANSIONS", "THRESHOLDS", "BRANCHES", "N_STAGES", "N_EXITS",
    "MAX_DEPTH",
]
