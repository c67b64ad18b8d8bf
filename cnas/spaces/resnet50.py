"""The Once-For-All ResNet-50 search space (``resnet50``): depth, expansion and width genes of OFA's ResNet-50
supernet (``ofa_resnet50``; the network is described in :mod:`cnas.spaces.resnet_geometry`).

An architecture is OFA's own arch dict::

    {"d": [5 ints], "e": [18 expansions], "w": [6 width indices], "r": int (variable resolution only)}

``d[0]`` is the stem's depth (0 or 2; 1 is read as 0, the same network), ``d[1..4]`` each stage's extra blocks in
{0, 1, 2}; ``e[j]`` in {0.2, 0.25, 0.35} is the expansion of the supernet's block j (4, 4, 6, 4 blocks per stage);
``w[k]`` in {0, 1, 2} picks the width multiplier 0.65, 0.8 or 1.0 of the stem's middle and output convs
(``w[0]``, ``w[1]``) and of the four stages (``w[2..5]``).

Integer encoding: ``[idx(d[0]), idx(d[1..4]) x 4, idx(e) x 18, w x 6]`` then the resolution index when the
resolution varies: 29 / 30 genes, as the original's ResNet-50 space. The canonical form zeroes the expansion gene of
every block a stage's depth skips (and validation spells its ``e`` 0.2), so each network has exactly one arch and
one vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnas.errors import ArchError
from cnas.spaces import resnet_geometry as R
from cnas.spaces.base import SearchSpace, is_int
from cnas.spaces.geometry import RESNET_KEY, SPACE_OF_EXIT_KEY, Arch

_D0, _D, _E, _W = 0, slice(1, R.N_DEPTHS), slice(R.N_DEPTHS, R.N_DEPTHS + R.N_BLOCKS), \
    slice(R.N_DEPTHS + R.N_BLOCKS, R.N_DEPTHS + R.N_BLOCKS + R.N_WIDTHS)
#: genes before the resolution gene
N_GENES = R.N_DEPTHS + R.N_BLOCKS + R.N_WIDTHS
_KEYS = ("d", "e", RESNET_KEY)


class ResNet50Space(SearchSpace):
    """OFA ResNet-50 (d 0,1,2; e 0.2,0.25,0.35; w 0.65,0.8,1.0) with an optional resolution gene; no exits."""

    exit_heads = False
    latency_tables = False
    int8 = False
    width_mults = (1.0,)  # the widths are the arch's own w genes

    def gene_bounds(self) -> list[int]:
        return ([len(R.STEM_DEPTHS) - 1] + [len(R.DEPTHS) - 1] * R.N_STAGES + [len(R.EXPANSIONS) - 1] * R.N_BLOCKS
                + [len(R.WIDTH_MULTS) - 1] * R.N_WIDTHS)

    # ------------------------------------------------------------------ validation
    def validate(self, arch: Any) -> Arch:
        """Check ``arch`` against the space and return its canonical form (sorted keys, ``d[0]`` 0 or 2, the
        skipped blocks' ``e`` 0.2). Raises :class:`ArchError` naming the offending field."""
        if not isinstance(arch, dict):
            raise ArchError(f"a resnet50 architecture must be a JSON object with d, e, w; got {type(arch).__name__}")
        for key in _KEYS:
            if key not in arch:
                raise ArchError(f"architecture is missing the field '{key}' that {self.name} needs (d: 5 depths, "
                                f"e: {R.N_BLOCKS} expansions, w: {R.N_WIDTHS} width indices)")
        extra = sorted(set(arch) - {*_KEYS, "r"})
        if extra:
            owner = {**SPACE_OF_EXIT_KEY, "ks": "the MobileNetV3 spaces"}
            hint = "".join(f" ('{k}' belongs to {owner[k]})" for k in extra if k in owner)
            raise ArchError(f"architecture has field(s) {extra} that the {self.name} space does not know{hint}")
        d = _ints(arch["d"], "d", R.N_DEPTHS, R.DEPTHS)
        w = _ints(arch["w"], RESNET_KEY, R.N_WIDTHS, tuple(range(len(R.WIDTH_MULTS))))
        e = _expansions(arch["e"])
        d, e = R.canonical(d, e)
        return self._validate_resolution(arch, {"d": d, "e": e, RESNET_KEY: w})

    # ------------------------------------------------------------------ encoding
    def encode(self, arch: Arch) -> np.ndarray:
        """Canonical integer vector of ``arch`` (validated first)."""
        arch = self.validate(arch)
        x = np.zeros(self.n_var, dtype=np.int64)
        x[_D0] = R.STEM_DEPTHS.index(arch["d"][0])
        x[_D] = [R.DEPTHS.index(v) for v in arch["d"][1:]]
        x[_E] = [R.EXPANSIONS.index(v) for v in arch["e"]]
        x[_W] = arch[RESNET_KEY]
        if not self.fixed_resolution:
            x[-1] = self.resolutions.index(arch["r"])
        return x

    def repair(self, x: Any) -> np.ndarray:
        """Canonical form of an integer vector: rounds and zeroes the expansion genes of the blocks the depths
        skip. Works on one vector or a 2-D batch."""
        x = np.asarray(x)
        if x.ndim == 2:
            return np.stack([self.repair(row) for row in x]) if len(x) else x.astype(np.int64)
        xi = self._as_int_vector(x).copy()
        e = xi[_E]
        run = np.zeros(R.N_BLOCKS, dtype=bool)
        for idx in R.active_blocks(self._depths(xi)):
            run[idx] = True
        e[~run] = 0
        xi[_E] = e
        return xi

    @staticmethod
    def _depths(xi: np.ndarray) -> list[int]:
        return [R.STEM_DEPTHS[xi[_D0]]] + [R.DEPTHS[k] for k in xi[_D]]

    def decode(self, x: Any) -> Arch:
        """The arch dict of an integer vector (rounded, bounds checked; skipped blocks' genes ignored)."""
        xi = self.repair(x)
        arch: Arch = {"d": self._depths(xi), "e": [R.EXPANSIONS[k] for k in xi[_E]],
                      RESNET_KEY: [int(k) for k in xi[_W]]}
        if not self.fixed_resolution:
            arch["r"] = self.resolutions[xi[-1]]
        return dict(sorted(arch.items()))


def _ints(values: Any, key: str, length: int, allowed: tuple) -> list[int]:
    if not isinstance(values, (list, tuple)):
        raise ArchError(f"field '{key}' must be a list, got {values!r}")
    if len(values) != length:
        raise ArchError(f"field '{key}' must hold {length} values, got {len(values)}")
    out = []
    for v in values:
        if not is_int(v) or int(v) not in allowed:
            raise ArchError(f"field '{key}' holds {v!r}, allowed values are {list(allowed)}")
        out.append(int(v))
    return out


def _expansions(values: Any) -> list[float]:
    if not isinstance(values, (list, tuple)):
        raise ArchError(f"field 'e' must be a list, got {values!r}")
    if len(values) != R.N_BLOCKS:
        raise ArchError(f"field 'e' must hold {R.N_BLOCKS} values (one per block of the supernet), got {len(values)}")
    out = []
    for v in values:
        ok = not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))
        match = [a for a in R.EXPANSIONS if ok and abs(float(v) - a) < 1e-9]
        if not match:
            raise ArchError(f"field 'e' holds {v!r}, allowed values are {list(R.EXPANSIONS)}")
        out.append(match[0])
    return out
