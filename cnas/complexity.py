"""Exact, instant complexity counts of OFA MobileNetV3 archs, their early-exit networks and OFA ResNet-50 archs
(pure core).

Everything here is closed form from the arch config: no torch import, no module built. The counts equal, to
the unit, what is measured on the torch modules cnas builds (``tests/test_complexity.py`` checks it):

- ``params``: trainable parameters (BN weight and bias included, running statistics excluded);
- ``macs``: multiply-accumulates of every ``Conv2d`` and ``Linear`` (grouped convs counted per group, biases,
  pooling, activations, SE products and residual adds excluded) = ``torch.utils.flop_counter.FlopCounterMode``
  total / 2 on the extracted static subnet;
- ``activations``: sum of the output sizes (batch 1) of every ``Conv2d``, ``Linear``, ``BatchNorm2d``,
  ``Flatten``, ``AvgPool2d`` and ``MaxPool2d`` module the forward pass runs, as the original counted them (its
  ``get_net_info``). In the static OFA MobileNetV3 this covers the SE's two 1x1 ``Conv2d`` (outputs
  ``mid/4``-ish and ``mid`` values at 1x1) but not the SE's means and product, nor ``MyGlobalAvgPool2d``
  (not an ``AvgPool2d``); the static net flattens with ``view``, not a ``Flatten`` module.

All three are returned in **millions**, unrounded (the stats files round to 2 decimals).

ResNet-50 archs (``resnet50``, keys ``d``/``e``/``w``) are counted the same way on ofa's static ``ResNets``
(layout in :mod:`cnas.spaces.resnet_geometry`): the activations include the stem's ``MaxPool2d`` and the
``AvgPool2d`` of every downsampling shortcut (also the 1x1 one of stage 1), not ``MyGlobalAvgPool2d``; the widths
are the arch's ``w`` genes, so ``width_mult`` must stay 1.0.

Every count takes the supernet's width multiplier ``width_mult`` (default 1.0: stage widths 16/16/24/40/80/112/160,
head 960/1280; 1.2, OFA's ``ofa_mbv3_d234_e346_k357_w1.2``: 24/24/32/48/96/136/192, head 1152/1536); the widths
come from :mod:`cnas.spaces.geometry`.

Deviations from the original, and why:

- MACs are conv + linear multiply-accumulates. The original traced the net with ``torchprofile``, which also
  counts some element-wise work and comes out 0.5-1 % higher; the conv + linear count
  is what OFA and torch's ``FlopCounterMode`` report, and it can be computed without tracing.
- The original profiled every candidate by extracting the subnet, deep-copying it and running a forward pass
  per arch; the closed form is a few table look-ups per arch (``benchmarks/complexity.py`` times both), so the
  search can count every individual exactly.
- Counts are of the network the config describes: ``ks``/``e`` are mapped stage by stage,
  whereas the original counted a misaligned network whenever a stage had depth < 4.
- Exit heads: the original's pool rule compared analytic head costs that included max-pool work
  (``C·H·W``) and could pick MaxPool(4) on a 2x2 map, which crashed. Here head costs are conv + linear MACs
  like the backbone's, the rule is made deterministic, and a pool size is only taken when it leaves at least
  a 1x1 map (:func:`exit_pool_sizes`).
- The original's search took the resolution as ``arch.get('r', 32)``, so a fixed resolution other than 32
  was silently counted at 32; here the resolution is the caller's or the arch's, and a missing one is an error.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

import numpy as np

from cnas.errors import ArchError, ConfigError
from cnas.spaces import geometry as G
from cnas.spaces import get_space
from cnas.spaces import resnet_geometry as R
from cnas.spaces.geometry import stage_sizes

__all__ = ["exit_pool_sizes", "count", "count_many", "tiny_ml", "stage_sizes", "POOL_SIZES"]

# The network's shape comes from cnas.spaces.geometry (these two names stay importable from here).
POOL_SIZES = G.EXIT_POOL_SIZES  # candidate max-pool sizes before an exit head (1 = no pooling)


# A cost is a tuple of exact integers (params, macs, activations).
def _conv_bn(cin: int, cout: int, k: int, h_out: int, groups: int = 1, bn: bool = True) -> tuple[int, int, int]:
    w = k * k * (cin // groups) * cout
    params = w + (2 * cout if bn else 0)
    macs = w * h_out * h_out
    acts = cout * h_out * h_out * (2 if bn else 1)
    return params, macs, acts


def _add(*costs: tuple[int, int, int]) -> tuple[int, int, int]:
    p = m = a = 0
    for c in costs:
        p += c[0]
        m += c[1]
        a += c[2]
    return p, m, a


@lru_cache(maxsize=65536)
def _mbconv(cin: int, cout: int, k: int, e: int, stride: int, se: bool, h_in: int) -> tuple[int, int, int]:
    """One OFA MBConv block: 1x1 expand + BN, kxk depthwise + BN (+ SE), 1x1 project + BN."""
    h_out = G.conv_out_size(h_in, stride)
    parts = []
    mid = G.mid_channels(cin, e)
    if e != 1:
        parts.append(_conv_bn(cin, mid, 1, h_in))
    parts.append(_conv_bn(mid, mid, k, h_out, groups=mid))
    if se:
        red = G.se_channels(mid)
        # two 1x1 convs with bias on the pooled 1x1 map
        parts.append((2 * mid * red + red + mid, 2 * mid * red, red + mid))
    parts.append(_conv_bn(mid, cout, 1, h_out))
    return _add(*parts)


@lru_cache(maxsize=1024)
def _tables(resolution: int, width_mult: float = 1.0):
    """Per-resolution cost tables: stem (+ first block), per stage {(position 0 or 1, k, e): cost}, tail."""
    h0, hs = stage_sizes(resolution)
    w = G.widths(width_mult)
    first = G.first_block(width_mult)
    stem = _add(_conv_bn(G.INPUT_CHANNELS, w.stem, G.STEM_KERNEL, h0),
                _mbconv(first.cin, first.cout, first.kernel, first.expand, first.stride, first.se, h0))
    stages = []
    h_in = h0
    for s, spec in enumerate(G.stage_specs(width_mult)):
        table = {}
        for k in G.KERNELS:
            for e in G.EXPANSIONS:
                table[(0, k, e)] = _mbconv(spec.cin, spec.cout, k, e, spec.stride, spec.se, h_in)
                table[(1, k, e)] = _mbconv(spec.cout, spec.cout, k, e, 1, spec.se, hs[s])
        stages.append(table)
        h_in = hs[s]
    tail = _add(
        _conv_bn(w.stages[-1], w.final_expand, 1, hs[-1]),
        _conv_bn(w.final_expand, w.feature_mix, 1, 1, bn=False),
    )
    return stem, stages, tail, hs


def _linear(n_in: int, n_out: int) -> tuple[int, int, int]:
    return n_in * n_out + n_out, n_in * n_out, n_out


@lru_cache(maxsize=16384)
def _head(channels: int, h: int, pool: int, n_out: int) -> tuple[int, int, int]:
    """An exit head on a ``channels x h x h`` map: [MaxPool(pool)], 3 x (ReLU, 3x3 conv with bias), ReLU,
    Flatten, Linear(128·h'·h', n_out), with h' = floor(h / pool)."""
    shape = G.ExitHead(channels, h, pool, n_out)
    hp = shape.side
    acts = channels * hp * hp if pool > 1 else 0  # MaxPool2d output
    params = macs = 0
    for cin, cout in shape.convs:
        w = G.EXIT_HEAD_KERNEL * G.EXIT_HEAD_KERNEL * cin * cout
        params += w + cout
        macs += w * hp * hp
        acts += cout * hp * hp
    flat = shape.linear_in
    acts += flat  # Flatten output
    lp, lm, la = _linear(flat, n_out)
    return params + lp, macs + lm, acts + la


# ---------------------------------------------------------------- arch handling
@lru_cache(maxsize=None)
def _validator(name: str):
    # a fixed-resolution space: ``r`` is checked here, not by the space (any positive resolution may be counted)
    return get_space(name, 224, 224, 4)


def _resolution(arch: dict, resolution: Any) -> int:
    r = resolution if resolution is not None else arch.get("r")
    if r is None:
        raise ArchError("the architecture has no resolution 'r': pass one (e.g. --resolution 224)")
    if isinstance(r, bool) or not isinstance(r, (int, float, np.integer, np.floating)) or not float(r).is_integer() or r < 1:
        raise ArchError(f"resolution {r!r} is not a positive integer")
    return int(r)


_D, _K, _E = frozenset(G.DEPTHS), frozenset(G.KERNELS), frozenset(G.EXPANSIONS)
_T, _B = frozenset(G.EXIT_VALUES[G.EDANAS]), frozenset(G.EXIT_VALUES[G.NACHOS])
_KEYS = {frozenset(("d", "ks", "e")) | extra | r
         for extra in (frozenset({k}) if k else frozenset() for k in G.EXIT_KEYS.values())
         for r in (frozenset(), {"r"})}


def _plain_ints(values: Any, n: int, allowed: frozenset) -> bool:
    return (type(values) is list and len(values) == n
            and all(type(v) is int and v in allowed for v in values))


def _fast_valid(arch: dict) -> bool:
    """True for a well-formed arch of plain Python ints (the common case: decoded archs); anything else goes
    through the space's full validation, which also words the error."""
    if frozenset(arch) not in _KEYS:
        return False
    d = arch["d"]
    if not _plain_ints(d, G.N_STAGES, _D):
        return False
    n = d[0] + d[1] + d[2] + d[3] + d[4]
    if not (_plain_ints(arch["ks"], n, _K) and _plain_ints(arch["e"], n, _E)):
        return False
    space = G.space_of(arch)
    if space == G.EDANAS:
        t = arch["t"]
        return type(t) is list and len(t) == G.N_EXITS and all(type(v) in (int, float) and v in _T for v in t)
    if space == G.NACHOS:
        return _plain_ints(arch["b"], G.N_EXITS, _B) and any(arch["b"])
    return True


def _canonical(arch: Any) -> dict:
    if isinstance(arch, dict) and _fast_valid(arch):
        return arch
    if not isinstance(arch, dict):
        raise ArchError(f"an architecture must be a JSON object with ks, e, d; got {type(arch).__name__}")
    return _validator(G.space_of(arch)).validate({k: v for k, v in arch.items() if k != "r"})


def _n_classes(n_classes: Any) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ConfigError(f"n_classes must be a positive integer, got {n_classes!r}")
    return int(n_classes)


def _stage_costs(arch: dict, resolution: int, width_mult: float):
    """Cost tuples of the stem and of each stage, the tail and the stage output sizes."""
    stem, stages, tail, hs = _tables(resolution, width_mult)
    out, pos = [], 0
    ks, es = arch["ks"], arch["e"]
    for s, depth in enumerate(arch["d"]):
        table = stages[s]
        p = m = a = 0
        for j in range(depth):
            c = table[(0 if j == 0 else 1, ks[pos + j], es[pos + j])]
            p += c[0]
            m += c[1]
            a += c[2]
        out.append((p, m, a))
        pos += depth
    return stem, out, tail, hs


@lru_cache(maxsize=65536)
def _bottleneck(cin: int, cout: int, mid: int, stride: int, h_in: int) -> tuple[int, int, int]:
    """One OFA ResNet bottleneck block: 1x1 + BN, 3x3 (stride) + BN, 1x1 + BN, and a downsampling shortcut
    (AvgPool2d, then 1x1 conv + BN) when the stride or the width changes."""
    h_out = G.conv_out_size(h_in, stride)
    parts = [_conv_bn(cin, mid, 1, h_in), _conv_bn(mid, mid, R.BLOCK_KERNEL, h_out), _conv_bn(mid, cout, 1, h_out)]
    if stride != 1 or cin != cout:
        parts += [(0, 0, cin * h_out * h_out), _conv_bn(cin, cout, 1, h_out)]
    return _add(*parts)


def _resnet_count(arch: dict, n_classes: int, resolution: int) -> dict:
    """The static OFA ResNet-50 subnet of ``arch``: stem, max pool, bottleneck blocks, classifier."""
    h_stem, h, _ = R.sizes(resolution)
    stem = R.stem(arch)
    parts = [_conv_bn(R.INPUT_CHANNELS, stem.mid, R.STEM_KERNEL, h_stem)]
    if stem.residual:
        parts.append(_conv_bn(stem.mid, stem.mid, R.STEM_KERNEL, h_stem))
    parts += [_conv_bn(stem.mid, stem.out, R.STEM_KERNEL, h_stem), (0, 0, stem.out * h * h)]  # + MaxPool2d
    width = stem.out
    for b in R.blocks(arch):
        parts.append(_bottleneck(b.cin, b.cout, b.mid, b.stride, h))
        h, width = G.conv_out_size(h, b.stride), b.cout
    total = _add(*parts, _linear(width, n_classes))
    return {"params": total[0] / 1e6, "macs": total[1] / 1e6, "activations": total[2] / 1e6}


def _exits(arch: dict, resolution: int, n_classes: int, binary: bool | None, width_mult: float):
    """Per exit (present intermediate ones, then the final one): (backbone cost, head cost, pool size)."""
    stem, stages, tail, hs = _stage_costs(arch, resolution, width_mult)
    w = G.widths(width_mult)
    cum = [stem]
    for c in stages:
        cum.append(_add(cum[-1], c))  # cum[i + 1]: backbone up to the end of stage i
    if binary is None:
        binary = G.binary_heads(arch)
    n_out = G.head_outputs(n_classes, binary)
    final_head = _add(tail, _linear(w.feature_mix, n_classes))
    final = (cum[-1], final_head, 1)
    positions = G.exit_stages(arch)
    chosen = []
    next_cost = cum[-1][1] + final_head[1]
    for i in reversed(positions):
        backbone = cum[i + 1]
        h, c = hs[i], w.stages[i]  # the exit reads stage i's output map
        pool = 1
        head = _head(c, h, pool, n_out)
        while backbone[1] + head[1] >= next_cost:
            larger = [p for p in POOL_SIZES if p > pool and G.pool_fits(h, p)]
            if not larger:
                break
            pool = larger[0]
            head = _head(c, h, pool, n_out)
        chosen.append((backbone, head, pool))
        next_cost = backbone[1] + head[1]
    return chosen[::-1] + [final]


# ---------------------------------------------------------------- public API
def exit_pool_sizes(arch: dict, resolution: int | None = None, n_classes: int = 10, binary: bool | None = None,
                    width_mult: float = 1.0) -> list[int]:
    """Max-pool size of each present exit head (in order after stages 1..4); 1 means no pooling.

    Rule (the original's, made deterministic and safe): from the last present exit back to the first, with
    ``cost(i, p)`` = backbone MACs up to exit i's block + MACs of its head with pool p, and the "next" cost =
    the chosen cost of the next present exit (for the last one: the whole final path), start at p = 1 and,
    while ``cost(i, p) >= next``, move to the next larger p in (2, 4) that leaves at least a 1x1 map.

    ``resolution`` defaults to ``arch['r']``; ``binary`` (one extra confidence logit per head) defaults to True
    for NACHOS archs (key ``b``); ``width_mult`` is the supernet's. Raises :class:`ArchError` on a malformed arch
    or a missing resolution.
    """
    r = _resolution(arch if isinstance(arch, dict) else {}, resolution)
    arch = _canonical(arch)
    if not G.has_exit_genes(arch):
        return []
    return [pool for _, _, pool in _exits(arch, r, _n_classes(n_classes), binary, _width(width_mult))[:-1]]


def _width(width_mult: Any) -> float:
    try:
        G.widths(width_mult)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return float(width_mult)


def _count(arch: dict, n_classes: int, r: int, width_mult: float) -> dict:
    if G.space_of(arch) == G.RESNET50:
        if width_mult != 1.0:
            raise ConfigError(f"--width_mult {width_mult:g} is a MobileNetV3 supernet width; a resnet50 arch's "
                              "widths are its own w genes (drop --width_mult)")
        return _resnet_count(arch, n_classes, r)
    if not G.has_exit_genes(arch):
        stem, stages, tail, _ = _stage_costs(arch, r, width_mult)
        total = _add(stem, *stages, tail, _linear(G.widths(width_mult).feature_mix, n_classes))
        return {"params": total[0] / 1e6, "macs": total[1] / 1e6, "activations": total[2] / 1e6}
    exits = _exits(arch, r, n_classes, None, width_mult)
    backbone = [b for b, _, _ in exits]
    heads = [h for _, h, _ in exits]
    params = backbone[-1][0] + sum(h[0] for h in heads)
    acts = backbone[-1][2] + sum(h[2] for h in heads)
    return {
        "params": params / 1e6,
        "macs": (backbone[-1][1] + heads[-1][1]) / 1e6,
        "activations": acts / 1e6,
        "backbone_macs": [b[1] / 1e6 for b in backbone],
        "classifiers_macs": [h[1] / 1e6 for h in heads],
        "backbone_params": [b[0] / 1e6 for b in backbone],
        "classifiers_params": [h[0] / 1e6 for h in heads],
        "exit_costs": [(b[1] + h[1]) / 1e6 for b, h in zip(backbone, heads)],
        "pool_sizes": [p for _, _, p in exits[:-1]],
    }


def count(arch: dict, n_classes: int = 10, resolution: int | None = None, width_mult: float = 1.0) -> dict:
    """Params, MACs and activations (millions, unrounded) of the network ``arch`` describes.

    Plain archs: the extracted static OFA subnet (ResNet-50 archs too). Early-exit archs (``t`` or ``b``): the early-exit network;
    ``params`` and ``activations`` cover the backbone and every head, ``macs`` the final path (backbone +
    final_expand + feature_mix + classifier), as in the original's stats; also per exit (the final one last):
    ``backbone_macs``/``backbone_params`` (cumulative backbone up to the exit), ``classifiers_macs``/
    ``classifiers_params`` (the head; the final exit's head is final_expand + feature_mix + classifier),
    ``exit_costs`` (backbone + head MACs) and ``pool_sizes`` (intermediate exits only).

    An EDANAS arch whose thresholds are all 1 has no intermediate exit: it gets the early-exit keys with the
    final exit only (its counts equal the plain subnet's, which is what ``build_network`` returns for it).

    ``resolution`` overrides ``arch['r']``; one of them is required (:class:`ArchError` otherwise).
    ``width_mult``: the supernet's width multiplier (1.0 or 1.2 for OFA's checkpoints).
    """
    r = _resolution(arch if isinstance(arch, dict) else {}, resolution)
    return _count(_canonical(arch), _n_classes(n_classes), r, _width(width_mult))


def count_many(archs: Iterable[dict], n_classes: int = 10, resolution: int | None = None,
               width_mult: float = 1.0) -> list[dict]:
    """:func:`count` for many archs (cost tables are shared, so a batch of 1000 takes milliseconds)."""
    n, w = _n_classes(n_classes), _width(width_mult)
    out = []
    for arch in archs:
        r = _resolution(arch if isinstance(arch, dict) else {}, resolution)
        out.append(_count(_canonical(arch), n, r, w))
    return out


#: tiny_ml's limits and weights where none are given: the original's (2 M params, no MACs limit, 5 M activations)
TINY_ML_DEFAULTS = {"pmax": 2.0, "mmax": 1e10, "amax": 5.0, "wp": 1.0, "wm": 1 / 40, "wa": 1.0, "penalty": 1e10}


def tiny_ml(params, macs, activations, pmax: float = TINY_ML_DEFAULTS["pmax"], mmax: float = TINY_ML_DEFAULTS["mmax"],
            amax: float = TINY_ML_DEFAULTS["amax"], wp: float = TINY_ML_DEFAULTS["wp"],
            wm: float = TINY_ML_DEFAULTS["wm"], wa: float = TINY_ML_DEFAULTS["wa"],
            penalty: float = TINY_ML_DEFAULTS["penalty"]):
    """The original's TinyML objective (all inputs in millions; scalars or arrays; defaults
    :data:`TINY_ML_DEFAULTS`)::

        wp·(P + penalty·max(0, P − pmax)) + wm·(M + penalty·max(0, M − mmax)) + wa·(A + penalty·max(0, A − amax))
    """
    p, m, a = (np.asarray(v, dtype=float) for v in (params, macs, activations))
    val = (wp * (p + penalty * np.maximum(0.0, p - pmax))
           + wm * (m + penalty * np.maximum(0.0, m - mmax))
           + wa * (a + penalty * np.maximum(0.0, a - amax)))
    return float(val) if val.ndim == 0 else val
