"""The shape of the OFA MobileNetV3 networks cnas searches, in one place (pure: no torch, no files, no state).

Everything that follows from an arch dict and the supernet's layout lives here, and the rest of cnas reads it:
the gene values of the three spaces, which space an arch belongs to (:func:`space_of`, which also tells the
``resnet50`` space's archs apart: their shape lives in :mod:`cnas.spaces.resnet_geometry`), channel widths for a
width multiplier, strides, feature-map sizes for a resolution, the blocks an arch activates (stage-aware
``ks``/``e``), where each stage ends in a static subnet, the exit positions, the exit heads' shapes and the exit
policy of each kind of head. :mod:`cnas.complexity` counts from it, :mod:`cnas.models` builds from it and
``tests/test_geometry.py`` checks it against networks built by ``ofa``.

The network (ofa's ``OFAMobileNetV3``; widths at multiplier ``w`` are ``make_divisible(base · w, 8)``)::

    first_conv          3x3 conv stride 2, 3 -> stem (16), BN, h-swish         map r -> ceil(r / 2)
    blocks[0]           MBConv e=1, 3x3 depthwise, stride 1, stem -> first block (16), identity shortcut
    stage i = 0..4      d[i] MBConv blocks to STAGE_BASE_WIDTHS[i] (24/40/80/112/160); the first has stride
                        STAGE_STRIDES[i] and takes the previous width, the others keep width and map;
                        SE in stages 1, 3, 4; kernel ks and expansion e per block
    final_expand_layer  1x1 conv -> 960, BN, h-swish
    global_avg_pool, feature_mix_layer (1x1 conv -> 1280, no BN, h-swish), classifier Linear(1280, n_classes)

An arch is ``{"d": [5], "ks": [Σd], "e": [Σd]}`` (+ ``"r"``), with ``ks``/``e`` listed stage by stage, and one
exit gene list for the early-exit spaces: ``"t"`` (EDANAS thresholds, ``eemobilenetv3``) or ``"b"`` (NACHOS
branch flags, ``cbnmobilenetv3``). Exits may sit after stages 1..4 (at the last block of the stage); the final
exit is the network's own tail.
"""

from __future__ import annotations

import json
import numbers
from functools import lru_cache
from typing import Any, Mapping, NamedTuple, Sequence

from cnas.errors import ArchError

# ---------------------------------------------------------------- genes of the search spaces
N_STAGES = 5
MAX_DEPTH = 4
N_EXITS = N_STAGES - 1  # exit positions after stages 1..4
DEPTHS = (2, 3, 4)
KERNELS = (3, 5, 7)
EXPANSIONS = (3, 4, 6)
THRESHOLDS = (0.1, 0.2, 1)  # EDANAS: 1 means "no exit here"
BRANCHES = (0, 1)  # NACHOS: 1 means "an exit is placed here"

# ---------------------------------------------------------------- the spaces and their exit genes
PLAIN = "mobilenetv3"
EDANAS = "eemobilenetv3"
NACHOS = "cbnmobilenetv3"
#: OFA's ResNet-50 space (arch keys ``d``, ``e``, ``w``; see :mod:`cnas.spaces.resnet_geometry`).
RESNET50 = "resnet50"
#: The spaces of the OFA MobileNetV3 supernet (this module's shape).
MOBILENETV3_SPACES = (PLAIN, EDANAS, NACHOS)
SPACE_NAMES = MOBILENETV3_SPACES + (RESNET50,)
#: The key of each space's exit genes (None: no exits).
EXIT_KEYS: dict[str, str | None] = {PLAIN: None, EDANAS: "t", NACHOS: "b", RESNET50: None}
#: The allowed values of each space's exit genes.
EXIT_VALUES: dict[str, tuple] = {PLAIN: (), EDANAS: THRESHOLDS, NACHOS: BRANCHES, RESNET50: ()}
#: The key only a ResNet-50 arch has (its width genes).
RESNET_KEY = "w"
#: The space whose exit genes an arch key holds.
SPACE_OF_EXIT_KEY: dict[str, str] = {k: name for name, k in EXIT_KEYS.items() if k is not None}

# ---------------------------------------------------------------- the network
CHANNEL_DIVISOR = 8
#: Width multipliers of the official OFA MobileNetV3 checkpoints (``..._w1.0``, ``..._w1.2``).
WIDTH_MULTS = (1.0, 1.2)
INPUT_CHANNELS = 3
#: The largest input resolution (pixels per side) that cnas accepts: beyond any image set it is built for.
MAX_RESOLUTION = 4096
STEM_KERNEL, STEM_STRIDE = 3, 2
FIRST_BLOCK_KERNEL, FIRST_BLOCK_STRIDE, FIRST_BLOCK_EXPANSION = 3, 1, 1
#: Channels at width 1.0 of the stem, first block, stages 1..5, final expand and feature mix (ofa's order).
BASE_STAGE_WIDTH = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
STAGE_BASE_WIDTHS = BASE_STAGE_WIDTH[2:7]
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_SE = (False, True, False, True, True)
STAGE_ACTS = ("relu", "relu", "h_swish", "h_swish", "h_swish")
FIRST_BLOCK_ACT = "relu"
SE_REDUCTION = 4

# ---------------------------------------------------------------- exit heads and policies
#: Output channels of the three 3x3 convs (padding 1, with bias) of an exit head.
EXIT_HEAD_WIDTHS = (32, 64, 128)
EXIT_HEAD_KERNEL = 3
#: Candidate max-pool sizes in front of an exit head (1 = no pooling).
EXIT_POOL_SIZES = (1, 2, 4)
SCORE_MARGIN = "score_margin"
CUMULATIVE_CONFIDENCE = "cumulative_confidence"
#: Default NACHOS threshold of each intermediate exit (before any tuning).
DEFAULT_BINARY_THRESHOLD = 0.5

Arch = dict[str, Any]


def as_resolution(r) -> int | None:
    """``r`` as an input resolution (whole pixels per side, 1 to :data:`MAX_RESOLUTION`; an integral float such
    as JSON's ``32.0`` counts), or None when it is not one. Every place that reads an arch's ``r`` or a
    ``--resolution`` checks it with this."""
    if isinstance(r, bool) or not isinstance(r, numbers.Real):
        return None
    if isinstance(r, float) and not r.is_integer():
        return None
    r = int(r)
    return r if 1 <= r <= MAX_RESOLUTION else None


def arch_key(arch: Mapping) -> str:
    """The identity of a stored arch: its JSON text with sorted keys (canonical archs of the same network have
    the same key; the archive, the objective cache and the initial design all compare archs by it)."""
    return json.dumps(arch, sort_keys=True)


# ---------------------------------------------------------------- which space
def space_of(arch: Mapping) -> str:
    """The name of the space ``arch`` belongs to, from its keys: ``t`` -> eemobilenetv3, ``b`` ->
    cbnmobilenetv3, ``w`` (ResNet-50 width genes) -> resnet50, none of them -> mobilenetv3 (``t`` wins when both
    are present; validation then rejects ``b``).

    Raises :class:`ArchError` when ``arch`` is not a mapping.
    """
    if not isinstance(arch, Mapping):
        raise ArchError(f"an architecture must be a JSON object with ks, e, d; got {type(arch).__name__}")
    for name in (EDANAS, NACHOS):
        if EXIT_KEYS[name] in arch:
            return name
    return RESNET50 if RESNET_KEY in arch else PLAIN


def exit_key(arch: Mapping) -> str | None:
    """The key of ``arch``'s exit genes (``t``/``b``), None for a plain arch."""
    return EXIT_KEYS[space_of(arch)]


def has_exit_genes(arch: Mapping) -> bool:
    """True for an arch of an early-exit space (even one whose genes place no exit)."""
    return EXIT_KEYS[space_of(arch)] is not None


def binary_heads(arch: Mapping) -> bool:
    """True when ``arch``'s exit heads are binary (NACHOS: one extra confidence logit per head)."""
    return space_of(arch) == NACHOS


# ---------------------------------------------------------------- channel widths
def make_divisible(v: float, divisor: int = CHANNEL_DIVISOR, min_val: int | None = None) -> int:
    """ofa's channel rounding: nearest multiple of ``divisor`` (at least ``min_val``, default ``divisor``),
    never more than 10 % below ``v``."""
    if min_val is None:
        min_val = divisor
    new_v = max(min_val, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Widths(NamedTuple):
    """Channels of a supernet at one width multiplier."""

    stem: int
    first_block: int
    stages: tuple[int, ...]
    final_expand: int
    feature_mix: int


def _check_width(width_mult: Any) -> float:
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
        raise ValueError(f"width multiplier must be a positive number, got {width_mult!r}")
    return float(width_mult)


@lru_cache(maxsize=None)
def _widths(width_mult: float) -> Widths:
    w = [make_divisible(base * width_mult) for base in BASE_STAGE_WIDTH]
    return Widths(w[0], w[1], tuple(w[2:7]), w[7], w[8])


def widths(width_mult: float = 1.0) -> Widths:
    """Stem, first block, stage 1..5, final expand and feature mix channels at ``width_mult``
    (16, 16, (24, 40, 80, 112, 160), 960, 1280 at 1.0)."""
    return _widths(_check_width(width_mult))


def width_of_stem(channels: int) -> float:
    """The official width multiplier (:data:`WIDTH_MULTS`) whose stem has ``channels`` channels (16 -> 1.0,
    24 -> 1.2): how a built network tells its supernet's width. Raises ValueError for another count."""
    for w in WIDTH_MULTS:
        if widths(w).stem == int(channels):
            return w
    raise ValueError(f"a {channels}-channel stem belongs to no official width {list(WIDTH_MULTS)}")


def stage_widths(width_mult: float = 1.0) -> tuple[int, ...]:
    """Output channels of stages 1..5 at ``width_mult``."""
    return widths(width_mult).stages


def mid_channels(cin: int, expand: int) -> int:
    """Channels inside an MBConv block of input width ``cin`` and expansion ``expand`` (``cin`` when 1)."""
    return int(cin) if expand == 1 else make_divisible(round(cin * expand))


def se_channels(mid: int) -> int:
    """Channels of the squeeze-and-excitation bottleneck of a block with ``mid`` channels."""
    return make_divisible(mid // SE_REDUCTION)


# ---------------------------------------------------------------- feature-map sizes
def conv_out_size(h: int, stride: int) -> int:
    """Output side of an odd-kernel conv with padding ``k // 2`` on an ``h``-sided map: ``ceil(h / stride)``."""
    return (int(h) - 1) // int(stride) + 1


def stage_sizes(resolution: int) -> tuple[int, tuple[int, ...]]:
    """``(h0, (h1..h5))``: the map side after the stem (and first block) and after each of the 5 stages, for a
    square ``resolution`` input."""
    h = h0 = conv_out_size(resolution, STEM_STRIDE)
    sizes = []
    for s in STAGE_STRIDES:
        h = conv_out_size(h, s)
        sizes.append(h)
    return h0, tuple(sizes)


def feature_sizes(resolution: int) -> tuple[int, ...]:
    """Map side after stages 1..5 for a square ``resolution`` input."""
    return stage_sizes(resolution)[1]


# ---------------------------------------------------------------- blocks of an arch
class StageSpec(NamedTuple):
    """One stage of the supernet: input and output channels, stride of its first block, SE, activation."""

    cin: int
    cout: int
    stride: int
    se: bool
    act: str


def stage_specs(width_mult: float = 1.0) -> tuple[StageSpec, ...]:
    """The 5 stages at ``width_mult`` (a stage's first block maps ``cin -> cout`` with ``stride``, the others
    ``cout -> cout`` with stride 1)."""
    w = widths(width_mult)
    cins = (w.first_block,) + w.stages[:-1]
    return tuple(StageSpec(c, o, s, se, a) for c, o, s, se, a in zip(cins, w.stages, STAGE_STRIDES, STAGE_SE, STAGE_ACTS))


class Block(NamedTuple):
    """One block of a static subnet (``blocks[index]``); ``stage`` is -1 for the fixed first block."""

    index: int
    stage: int
    cin: int
    cout: int
    kernel: int
    expand: int
    stride: int
    se: bool
    act: str

    @property
    def mid(self) -> int:
        return mid_channels(self.cin, self.expand)

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.cin == self.cout


def stage_layers(arch: Mapping) -> list[list[tuple[int, int]]]:
    """Per stage, the (kernel, expansion) of each present layer: stage i owns the ``d[i]`` entries of
    ``ks``/``e`` that follow those of stages ``0..i-1``."""
    out, pos = [], 0
    for depth in arch["d"]:
        out.append([(int(arch["ks"][pos + j]), int(arch["e"][pos + j])) for j in range(depth)])
        pos += depth
    return out


def first_block(width_mult: float = 1.0) -> Block:
    """The fixed first block (``blocks[0]``) at ``width_mult``."""
    w = widths(width_mult)
    return Block(0, -1, w.stem, w.first_block, FIRST_BLOCK_KERNEL, FIRST_BLOCK_EXPANSION, FIRST_BLOCK_STRIDE,
                 False, FIRST_BLOCK_ACT)


def blocks(arch: Mapping, width_mult: float = 1.0) -> list[Block]:
    """Every block of the static subnet of ``arch`` at ``width_mult``, ``blocks[0]`` first."""
    out = [first_block(width_mult)]
    for s, (spec, layers) in enumerate(zip(stage_specs(width_mult), stage_layers(arch))):
        for j, (k, e) in enumerate(layers):
            out.append(Block(len(out), s, spec.cin if j == 0 else spec.cout, spec.cout, k, e,
                             spec.stride if j == 0 else 1, spec.se, spec.act))
    return out


def supernet_setting(arch: Mapping) -> dict[str, list[int]]:
    """The ``ks``/``e``/``d`` lists for ofa's ``set_active_subnet`` that activate exactly ``arch``.

    ofa assigns the ``ks``/``e`` lists to the supernet's blocks in order, 4 per stage, so each stage's entries
    are padded to 4 with its last layer's values (the padding blocks are inactive).
    """
    ks, es = [], []
    for layers in stage_layers(arch):
        layers = layers + [layers[-1]] * (MAX_DEPTH - len(layers))
        ks += [k for k, _ in layers]
        es += [e for _, e in layers]
    return {"ks": ks, "e": es, "d": [int(d) for d in arch["d"]]}


def stage_end_blocks(arch: Mapping) -> list[int]:
    """Index in a static subnet's ``blocks`` of the last block of stages 1..5 (``blocks[0]`` is the fixed one)."""
    out, pos = [], 0
    for depth in arch["d"]:
        pos += int(depth)
        out.append(pos)
    return out


# ---------------------------------------------------------------- exits
def exit_mask(arch: Mapping) -> list[bool]:
    """Which of the 4 positions after stages 1..4 carry an exit: ``t != 1`` (EDANAS) or ``b == 1`` (NACHOS);
    all False for a plain arch."""
    space = space_of(arch)
    if space == EDANAS:
        return [abs(float(t) - 1.0) > 1e-9 for t in arch["t"]]
    if space == NACHOS:
        return [bool(b) for b in arch["b"]]
    return [False] * N_EXITS


def exit_stages(arch: Mapping) -> list[int]:
    """The (0-based) stages after which ``arch``'s intermediate exits sit, in order."""
    return [i for i, m in enumerate(exit_mask(arch)) if m]


def exit_positions(arch: Mapping) -> list[int]:
    """The stage (1..4) after which each intermediate exit sits, then 5 for the final exit."""
    return [i + 1 for i in exit_stages(arch)] + [N_STAGES]


def exit_blocks(arch: Mapping) -> list[int]:
    """Index in a static subnet's ``blocks`` of the block each exit reads (intermediate exits, then the final)."""
    ends = stage_end_blocks(arch)
    return [ends[i] for i in exit_stages(arch)] + [ends[-1]]


def head_outputs(n_classes: int, binary: bool) -> int:
    """Outputs of an intermediate exit head: the classes, plus one confidence logit for binary heads."""
    return int(n_classes) + (1 if binary else 0)


def pooled_size(size: int, pool: int) -> int:
    """Map side after ``MaxPool2d(pool, stride=pool)`` (no pooling for 1)."""
    return int(size) // int(pool)


def pool_fits(size: int, pool: int) -> bool:
    """True when pooling a ``size``-sided map by ``pool`` leaves at least a 1x1 map."""
    return pooled_size(size, pool) >= 1


def fit_pool(pool: int, size: int) -> int:
    """``pool`` (at least 1), halved until it leaves at least a 1x1 map of a ``size``-sided input."""
    pool = max(1, int(pool))
    while pool > 1 and not pool_fits(size, pool):
        pool //= 2
    return pool


class ExitHead(NamedTuple):
    """Shape of an exit head on a ``channels x size x size`` map: ``[MaxPool2d(pool)]``, then per width of
    :data:`EXIT_HEAD_WIDTHS` ReLU + 3x3 conv (padding 1, bias), then ReLU, Flatten, ``Linear(linear_in,
    n_out)``. ``stage``/``block``: where it reads (-1 when not placed on an arch)."""

    channels: int
    size: int
    pool: int
    n_out: int
    stage: int = -1
    block: int = -1

    @property
    def side(self) -> int:
        return pooled_size(self.size, self.pool)

    @property
    def convs(self) -> list[tuple[int, int]]:
        """``(cin, cout)`` of each conv."""
        cins = (self.channels,) + EXIT_HEAD_WIDTHS[:-1]
        return list(zip(cins, EXIT_HEAD_WIDTHS))

    @property
    def linear_in(self) -> int:
        return EXIT_HEAD_WIDTHS[-1] * self.side * self.side


def exit_heads(arch: Mapping, resolution: int, n_classes: int, pool_sizes: Sequence[int],
               binary: bool | None = None, width_mult: float = 1.0) -> list[ExitHead]:
    """The intermediate exit heads of ``arch`` at ``resolution``, with ``pool_sizes`` (one per exit, each
    fitted to its map by :func:`fit_pool`); ``binary`` defaults to :func:`binary_heads`."""
    stages = exit_stages(arch)
    if len(pool_sizes) != len(stages):
        raise ValueError(f"got {len(pool_sizes)} pool sizes for {len(stages)} intermediate exits")
    binary = binary_heads(arch) if binary is None else bool(binary)
    sizes, chans, ends = feature_sizes(resolution), stage_widths(width_mult), stage_end_blocks(arch)
    n_out = head_outputs(n_classes, binary)
    return [ExitHead(chans[i], sizes[i], fit_pool(p, sizes[i]), n_out, i, ends[i]) for i, p in zip(stages, pool_sizes)]


def exit_policy(binary: bool) -> str:
    """The exit policy of a net with binary (NACHOS: cumulative confidence) or plain heads (EDANAS: score
    margin)."""
    return CUMULATIVE_CONFIDENCE if binary else SCORE_MARGIN


def default_thresholds(arch: Mapping) -> list[float]:
    """Default thresholds, one per exit (final last, always 1): EDANAS ``[t != 1] + [1]``; NACHOS 0.5 each."""
    if space_of(arch) == EDANAS:
        return [float(t) for t in arch["t"] if abs(float(t) - 1.0) > 1e-9] + [1.0]
    return [DEFAULT_BINARY_THRESHOLD] * sum(exit_mask(arch)) + [1.0]
