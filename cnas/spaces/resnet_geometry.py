"""The shape of the OFA ResNet-50 networks cnas searches, in one place (pure: no torch, no files, no state).

The ``resnet50`` space is the supernet of OFA's ``ofa_resnet50`` (``ofa_resnet50_d=0,1,2_e=0.2,0.25,0.35_w=0.65,
0.8,1.0``): ofa's ``OFAResNets`` with ``depth_list=[0, 1, 2]``, ``expand_ratio_list=[0.2, 0.25, 0.35]`` and
``width_mult_list=[0.65, 0.8, 1.0]``. Its static sub-networks (ofa's ``ResNets``) are::

    input_stem[0]   3x3 conv stride 2, 3 -> stem mid (w[0]), BN, ReLU               map r -> ceil(r / 2)
    input_stem[1]   3x3 conv, mid -> mid, BN, ReLU, identity shortcut               only when d[0] = 2
    input_stem[-1]  3x3 conv, mid -> stem out (w[1]), BN, ReLU
    max_pooling     MaxPool2d(3, stride 2, padding 1)                               map h -> ceil(h / 2)
    stage i = 0..3  BASE_DEPTHS[i] + d[i + 1] bottleneck blocks of width STAGE_WIDTHS[i][w[i + 2]]; the first
                    has stride STAGE_STRIDES[i] and takes the previous width
    global_avg_pool, classifier Linear(width of stage 4, n_classes) with bias

A bottleneck block of width ``cout`` and expansion ``e``: 1x1 conv ``cin -> mid`` + BN + ReLU, 3x3 conv ``mid ->
mid`` (the block's stride) + BN + ReLU, 1x1 conv ``mid -> cout`` + BN, plus the shortcut, then ReLU; ``mid =
make_divisible(round(cout * e), 8)``. The shortcut of a stage's first block is ``AvgPool2d(stride, stride,
ceil_mode=True)`` + 1x1 conv ``cin -> cout`` + BN (OFA's ``avgpool_conv``, also at stride 1, where the pool is
1x1); the other blocks have an identity shortcut. Convs have no bias.

An arch is ``{"d": [5], "e": [18], "w": [6]}`` (+ ``"r"``), OFA's own arch dict: ``d[0]`` the stem's depth,
``d[1..4]`` the extra blocks of each stage (0..2 on top of 2, 2, 4, 2); ``e[j]`` the expansion of the supernet's
block j (stages of 4, 4, 6, 4 blocks: a stage of depth ``d`` runs its first ``BASE + d`` blocks and skips the
rest); ``w`` indices into :data:`WIDTH_MULTS`: ``w[0]`` the stem's middle width, ``w[1]`` its output width, ``w[2..5]``
the stages'. OFA runs the stem's residual conv only at ``d[0] = 2`` (the largest depth), so ``d[0]`` 0 and 1 are
the same network; and the ``e`` of a skipped block changes nothing. The canonical arch (:func:`canonical`) spells
them ``d[0] = 0`` and ``e = 0.2``, so one network has one arch.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import NamedTuple

from cnas.spaces.geometry import (
    CHANNEL_DIVISOR,
    INPUT_CHANNELS,
    conv_out_size,
    make_divisible,
)

# ---------------------------------------------------------------- genes
#: Extra blocks per stage (on top of :data:`BASE_DEPTHS`), and the stem's depth values OFA uses.
DEPTHS = (0, 1, 2)
#: The stem runs its residual conv only at the largest depth: 0 and 1 build the same stem (canonical: 0).
STEM_DEPTHS = (0, 2)
EXPANSIONS = (0.2, 0.25, 0.35)
#: Width multipliers that the ``w`` genes index.
WIDTH_MULTS = (0.65, 0.8, 1.0)
N_STAGES = 4
N_DEPTHS = N_STAGES + 1  # the stem, then the stages
N_WIDTHS = N_STAGES + 2  # stem middle, stem output, then the stages

# ---------------------------------------------------------------- the network
BASE_DEPTHS = (2, 2, 4, 2)
STAGE_BLOCKS = tuple(b + max(DEPTHS) for b in BASE_DEPTHS)  # (4, 4, 6, 4) blocks in the supernet
N_BLOCKS = sum(STAGE_BLOCKS)  # 18
STEM_BASE_WIDTH = 64
STAGE_BASE_WIDTHS = (256, 512, 1024, 2048)
STAGE_STRIDES = (1, 2, 2, 2)
STEM_KERNEL, STEM_STRIDE = 3, 2
BLOCK_KERNEL = 3
POOL_KERNEL, POOL_STRIDE, POOL_PADDING = 3, 2, 1
#: The largest value of each gene (the supernet's own network).
MAX_EXPANSION, MAX_WIDTH_INDEX = max(EXPANSIONS), len(WIDTH_MULTS) - 1

__all__ = [
    "BASE_DEPTHS", "DEPTHS", "EXPANSIONS", "INPUT_CHANNELS", "N_BLOCKS", "N_DEPTHS", "N_STAGES", "N_WIDTHS",
    "STAGE_BASE_WIDTHS", "STAGE_BLOCKS", "STAGE_STRIDES", "STEM_DEPTHS", "WIDTH_MULTS", "Block", "Stem",
    "active_blocks", "blocks", "canonical", "mid_channels", "sizes", "stage_widths", "stem", "stem_widths",
    "supernet_setting",
]


@cache
def stem_widths() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(middle widths, output widths)`` of the stem, one per width multiplier: ((24, 24, 32), (40, 48, 64))."""
    out = tuple(make_divisible(STEM_BASE_WIDTH * w, CHANNEL_DIVISOR) for w in WIDTH_MULTS)
    mid = tuple(make_divisible(c // 2, CHANNEL_DIVISOR) for c in out)
    return mid, out


@cache
def stage_widths() -> tuple[tuple[int, ...], ...]:
    """Per stage, its width at each width multiplier ((168, 208, 256), (336, 408, 512), (664, 816, 1024),
    (1328, 1640, 2048))."""
    return tuple(tuple(make_divisible(base * w, CHANNEL_DIVISOR) for w in WIDTH_MULTS) for base in STAGE_BASE_WIDTHS)


def mid_channels(cout: int, expand: float) -> int:
    """Middle channels of a bottleneck block of width ``cout`` and expansion ``expand`` (ofa's rounding)."""
    return make_divisible(round(cout * expand), CHANNEL_DIVISOR)


class Stem(NamedTuple):
    """The input stem of a static subnet: middle and output widths, and whether its residual conv runs."""

    mid: int
    out: int
    residual: bool


class Block(NamedTuple):
    """One bottleneck block of a static subnet; ``index`` is its block in the supernet (the index of its ``e``)."""

    index: int
    stage: int
    cin: int
    cout: int
    mid: int
    stride: int
    expand: float

    @property
    def downsample(self) -> bool:
        """The shortcut is AvgPool2d + 1x1 conv + BN (else identity)."""
        return self.stride != 1 or self.cin != self.cout


def stem(arch: Mapping) -> Stem:
    mids, outs = stem_widths()
    return Stem(mids[int(arch["w"][0])], outs[int(arch["w"][1])], int(arch["d"][0]) == max(DEPTHS))


def active_blocks(d: list[int] | tuple[int, ...]) -> list[list[int]]:
    """Per stage, the supernet block indices a depth list ``d`` (5 entries, the stem's first) runs."""
    out, start = [], 0
    for s in range(N_STAGES):
        out.append(list(range(start, start + BASE_DEPTHS[s] + int(d[s + 1]))))
        start += STAGE_BLOCKS[s]
    return out


def blocks(arch: Mapping) -> list[Block]:
    """Every bottleneck block of the static subnet of ``arch``, in order."""
    widths = stage_widths()
    cin = stem(arch).out
    out = []
    for s, idx in enumerate(active_blocks(arch["d"])):
        cout = widths[s][int(arch["w"][s + 2])]
        for j, b in enumerate(idx):
            e = float(arch["e"][b])
            out.append(Block(b, s, cin, cout, mid_channels(cout, e), STAGE_STRIDES[s] if j == 0 else 1, e))
            cin = cout
    return out


def sizes(resolution: int) -> tuple[int, int, tuple[int, ...]]:
    """``(stem map, pooled map, (stage 1..4 maps))``: the sides for a square ``resolution`` input."""
    h_stem = conv_out_size(resolution, STEM_STRIDE)
    h = h_pool = (h_stem + 2 * POOL_PADDING - POOL_KERNEL) // POOL_STRIDE + 1
    out = []
    for s in STAGE_STRIDES:
        h = conv_out_size(h, s)
        out.append(h)
    return h_stem, h_pool, tuple(out)


def canonical(d: list[int], e: list[float]) -> tuple[list[int], list[float]]:
    """The canonical ``d``/``e`` of a network: ``d[0]`` 1 becomes 0 (the same stem) and the ``e`` of every block
    that the depths skip becomes the smallest expansion."""
    d = [0 if i == 0 and v != max(DEPTHS) else int(v) for i, v in enumerate(d)]
    run = {b for idx in active_blocks(d) for b in idx}
    return d, [float(v) if b in run else EXPANSIONS[0] for b, v in enumerate(e)]


def supernet_setting(arch: Mapping) -> dict[str, list]:
    """The ``d``/``e``/``w`` lists for ofa's ``OFAResNets.set_active_subnet`` that activate exactly ``arch``."""
    return {"d": [int(v) for v in arch["d"]], "e": [float(v) for v in arch["e"]], "w": [int(v) for v in arch["w"]]}
