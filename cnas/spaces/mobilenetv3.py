"""The Once-For-All MobileNetV3 search spaces: plain, EDANAS early exit (``t``) and NACHOS branches (``b``).

An architecture is the original's JSON dict::

    {"ks": [Σd ints], "e": [Σd ints], "d": [5 ints], "r": int (variable resolution only),
     "t": [4 thresholds] (eemobilenetv3) | "b": [4 flags] (cbnmobilenetv3)}

``ks[j]``/``e[j]`` belong to the j-th *present* layer, stage by stage: stage i owns the ``d[i]`` entries that
follow the entries of stages ``0..i-1``.

Integer encoding (same layout and length as the original): per stage i, at offset 9i,
``[idx(d_i), idx(ks) x 4, idx(e) x 4]`` with the genes of absent layers set to 0 (canonical: one vector per
arch), then the 4 exit genes (early-exit spaces), then the resolution index when the resolution varies.
Lengths: 45/46 (plain), 49/50 (early exit), fixed/variable resolution.

Deviations from the original (see ``docs``/README): per-gene bounds (the resolution gene spans every
resolution, branch genes 0..1), decode rounds instead of truncating, decode is the exact inverse of encode for
every layout, a ``cbnmobilenetv3`` vector with no exit is repaired by switching on the last exit (after stage 4)
instead of receiving a penalty, and the initial design really holds the smallest and largest archs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnas.errors import ArchError
from cnas.spaces.base import SearchSpace, as_rng, is_int
from cnas.spaces.geometry import (  # noqa: F401  (the gene values and arch helpers live in geometry)
    BRANCHES,
    DEPTHS,
    EDANAS,
    EXIT_KEYS,
    EXIT_VALUES,
    EXPANSIONS,
    KERNELS,
    MAX_DEPTH,
    N_EXITS,
    N_STAGES,
    NACHOS,
    RESNET50,
    RESNET_KEY,
    SPACE_OF_EXIT_KEY,
    THRESHOLDS,
    WIDTH_MULTS,
    Arch,
    arch_key,
    exit_mask,
    stage_layers,
)

STAGE_GENES = 1 + 2 * MAX_DEPTH  # depth gene + 4 kernel genes + 4 expansion genes


class MobileNetV3Space(SearchSpace):
    """OFA MobileNetV3 (d234, e346, k357) with optional early-exit genes and resolution gene."""

    width_mults = WIDTH_MULTS

    def __init__(self, name: str, lr: int = 224, ur: int = 224, rstep: int = 4):
        super().__init__(name, lr, ur, rstep)
        n_exit = N_EXITS if self.exit_key else 0
        self._exit_slice = slice(N_STAGES * STAGE_GENES, N_STAGES * STAGE_GENES + n_exit)

    def gene_bounds(self) -> list[int]:
        xu = []
        for _ in range(N_STAGES):
            xu += [len(DEPTHS) - 1] + [len(KERNELS) - 1] * MAX_DEPTH + [len(EXPANSIONS) - 1] * MAX_DEPTH
        return xu + [len(self.exit_values) - 1] * (N_EXITS if self.exit_key else 0)

    # ------------------------------------------------------------------ validation
    def validate(self, arch: Any) -> Arch:
        """Check ``arch`` against the space and return its canonical form (sorted keys, plain ints/floats).

        Raises :class:`ArchError` naming the offending field.
        """
        if not isinstance(arch, dict):
            raise ArchError(f"an architecture must be a JSON object with ks, e, d; got {type(arch).__name__}")
        for key in ("ks", "e", "d"):
            if key not in arch:
                raise ArchError(f"architecture is missing the field '{key}'")
        allowed = {"ks", "e", "d", "r"} | ({self.exit_key} if self.exit_key else set())
        extra = sorted(set(arch) - allowed)
        if extra:
            other = {**SPACE_OF_EXIT_KEY, RESNET_KEY: RESNET50}
            hint = "".join(f" ('{k}' belongs to {other[k]})" for k in extra if k in other)
            raise ArchError(f"architecture has field(s) {extra} that the {self.name} space does not know{hint}")
        d = _int_list(arch["d"], "d", N_STAGES, DEPTHS)
        n_layers = sum(d)
        ks = _int_list(arch["ks"], "ks", n_layers, KERNELS, length_note=f"sum(d) = {n_layers}")
        e = _int_list(arch["e"], "e", n_layers, EXPANSIONS, length_note=f"sum(d) = {n_layers}")
        out: Arch = {"d": d, "e": e, "ks": ks}
        if self.exit_key:
            if self.exit_key not in arch:
                raise ArchError(f"architecture is missing the field '{self.exit_key}' that {self.name} needs")
            out[self.exit_key] = self._exit_list(arch[self.exit_key])
            if self.requires_exit and not any(out[self.exit_key]):
                raise ArchError("field 'b' has no exit (all 0): cbnmobilenetv3 archs need at least one b = 1")
        return self._validate_resolution(arch, out)

    def _exit_list(self, values: Any) -> list:
        key = self.exit_key
        if not isinstance(values, (list, tuple)) or len(values) != N_EXITS:
            raise ArchError(f"field '{key}' must be a list of {N_EXITS} values, got {values!r}")
        out = []
        for v in values:
            idx = self._exit_index(v)
            if idx is None:
                raise ArchError(f"field '{key}' holds {v!r}, allowed values are {list(self.exit_values)}")
            out.append(self.exit_values[idx])
        return out

    def _exit_index(self, v: Any) -> int | None:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            return None
        for i, allowed in enumerate(self.exit_values):
            if abs(float(v) - float(allowed)) < 1e-9:
                return i
        return None

    # ------------------------------------------------------------------ encoding
    def encode(self, arch: Arch) -> np.ndarray:
        """Canonical integer vector of ``arch`` (validated first)."""
        arch = self.validate(arch)
        x = np.zeros(self.n_var, dtype=np.int64)
        pos = 0
        for i, depth in enumerate(arch["d"]):
            o = i * STAGE_GENES
            x[o] = DEPTHS.index(depth)
            for j in range(depth):
                x[o + 1 + j] = KERNELS.index(arch["ks"][pos + j])
                x[o + 1 + MAX_DEPTH + j] = EXPANSIONS.index(arch["e"][pos + j])
            pos += depth
        if self.exit_key:
            x[self._exit_slice] = [self._exit_index(v) for v in arch[self.exit_key]]
        if not self.fixed_resolution:
            x[-1] = self.resolutions.index(arch["r"])
        return x

    def repair(self, x: Any) -> np.ndarray:
        """Canonical form of an integer vector: rounds, zeroes the genes of absent layers and switches on the
        last exit of a ``cbnmobilenetv3`` vector that has none. Works on one vector or a 2-D batch."""
        x = np.asarray(x)
        if x.ndim == 2:
            return np.stack([self.repair(row) for row in x]) if len(x) else x.astype(np.int64)
        xi = self._as_int_vector(x).copy()
        for i in range(N_STAGES):
            o = i * STAGE_GENES
            depth = DEPTHS[xi[o]]
            xi[o + 1 + depth : o + 1 + MAX_DEPTH] = 0
            xi[o + 1 + MAX_DEPTH + depth : o + STAGE_GENES] = 0
        if self.requires_exit and not xi[self._exit_slice].any():
            xi[self._exit_slice.stop - 1] = 1
        return xi

    def decode(self, x: Any) -> Arch:
        """The arch dict of an integer vector (rounded, bounds checked; absent-layer genes ignored)."""
        xi = self.repair(x)
        d, ks, e = [], [], []
        for i in range(N_STAGES):
            o = i * STAGE_GENES
            depth = DEPTHS[xi[o]]
            d.append(depth)
            ks += [KERNELS[k] for k in xi[o + 1 : o + 1 + depth]]
            e += [EXPANSIONS[k] for k in xi[o + 1 + MAX_DEPTH : o + 1 + MAX_DEPTH + depth]]
        arch: Arch = {"d": d, "e": e, "ks": ks}
        if self.exit_key:
            arch[self.exit_key] = [self.exit_values[k] for k in xi[self._exit_slice]]
        if not self.fixed_resolution:
            arch["r"] = self.resolutions[xi[-1]]
        return dict(sorted(arch.items()))

    # ------------------------------------------------------------------ sampling
    def sample_encodings(self, n: int, rng: Any = None) -> np.ndarray:
        """``n`` canonical vectors drawn uniformly per gene (cbn: only vectors with at least one exit)."""
        rng = as_rng(rng)
        X = rng.integers(self.xl, self.xu + 1, size=(int(n), self.n_var))
        if self.requires_exit:
            while True:  # each redraw succeeds with probability 15/16
                empty = ~X[:, self._exit_slice].any(axis=1)
                if not empty.any():
                    break
                X[empty, self._exit_slice] = rng.integers(0, 2, size=(int(empty.sum()), N_EXITS))
        return self.repair(X) if n else X.astype(np.int64)

    def smallest(self) -> Arch:
        x = self.xl.copy()
        if self.exit_key == EXIT_KEYS[EDANAS]:
            x[self._exit_slice] = 0  # lowest threshold everywhere: every exit present, easiest to take
        return self.decode(x)

    def exit_mask(self, arch: Arch) -> list[bool]:
        """Which of the 4 positions after stages 1..4 carry an exit (all False for the plain space)."""
        return exit_mask(arch) if self.exit_key else [False] * N_EXITS


class EEMobileNetV3Space(MobileNetV3Space):
    """EDANAS: one threshold gene per exit position; threshold 1 means no exit."""

    exit_key = EXIT_KEYS[EDANAS]
    exit_values = EXIT_VALUES[EDANAS]


class CBNMobileNetV3Space(MobileNetV3Space):
    """NACHOS: one binary gene per exit position; 1 places an exit (at least one is required)."""

    exit_key = EXIT_KEYS[NACHOS]
    exit_values = EXIT_VALUES[NACHOS]
    requires_exit = True


def _int_list(values: Any, key: str, length: int, allowed: tuple, length_note: str = "") -> list[int]:
    if not isinstance(values, (list, tuple)):
        raise ArchError(f"field '{key}' must be a list, got {values!r}")
    if len(values) != length:
        note = f" ({length_note})" if length_note else ""
        raise ArchError(f"field '{key}' must hold {length} values{note}, got {len(values)}")
    out = []
    for v in values:
        if not is_int(v) or int(v) not in allowed:
            raise ArchError(f"field '{key}' holds {v!r}, allowed values are {list(allowed)}")
        out.append(int(v))
    return out
