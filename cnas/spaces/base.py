"""What every search space shares: the resolution gene, integer vectors, sampling and the initial design.

A space subclasses :class:`SearchSpace` and gives its genes' upper bounds (:meth:`SearchSpace.gene_bounds`; the
resolution gene is appended here when the resolution varies), ``validate``, ``encode``, ``repair`` and ``decode``.
It also declares what its networks support (the flags a space refuses read these): exit genes (``exit_key``),
latency tables, int8 quantization and the supernet widths (``width_mults``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnas.errors import ArchError, ConfigError
from cnas.spaces.geometry import N_EXITS, Arch, arch_key


def as_rng(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, np.integer)):
        return True
    return isinstance(v, (float, np.floating)) and float(v).is_integer()


class SearchSpace:
    """Resolutions ``range(lr, ur + 1, rstep)`` and the generic parts of a space's integer encoding."""

    exit_key: str | None = None
    exit_values: tuple = ()
    requires_exit = False  # True: every arch needs at least one exit (NACHOS)
    #: what the space's networks support
    exit_heads = True  # early-exit heads can be placed on its networks (cnas.train of a t/b arch)
    latency_tables = True  # cnas.latency tables time its operations
    int8 = True  # --quantize
    width_mults: tuple[float, ...] = (1.0,)  # supernet widths (--width_mult)

    def __init__(self, name: str, lr: int = 224, ur: int = 224, rstep: int = 4):
        for flag, val in (("--lr", lr), ("--ur", ur), ("--rstep", rstep)):
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool):
                raise ConfigError(f"{flag} must be an integer, got {val!r}")
        if lr <= 0 or ur <= 0:
            raise ConfigError(f"resolutions must be positive, got --lr {lr} --ur {ur}")
        if lr > ur:
            raise ConfigError(f"--lr {lr} is larger than --ur {ur}: the lower resolution must not exceed the upper")
        if rstep <= 0:
            raise ConfigError(f"--rstep must be positive, got {rstep}")
        self.name = name
        self.lr, self.ur, self.rstep = int(lr), int(ur), int(rstep)
        self.resolutions: tuple[int, ...] = tuple(range(self.lr, self.ur + 1, self.rstep))
        self.fixed_resolution = len(self.resolutions) == 1
        xu = list(self.gene_bounds())
        if not self.fixed_resolution:
            xu.append(len(self.resolutions) - 1)
        self.n_var = len(xu)
        self.xl = np.zeros(self.n_var, dtype=np.int64)
        self.xu = np.asarray(xu, dtype=np.int64)

    def gene_bounds(self) -> list[int]:
        """The upper bound (largest index) of every gene but the resolution's, in encoding order."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, lr={self.lr}, ur={self.ur}, rstep={self.rstep})"

    # ------------------------------------------------------------------ resolution
    @property
    def default_resolution(self) -> int:
        return self.resolutions[0]

    def with_resolution(self, arch: Arch) -> Arch:
        """``arch`` as it is stored and crosses files: with its ``r`` (the space's own when it has one fixed
        resolution), keys sorted."""
        if self.fixed_resolution:
            arch = {**arch, "r": self.resolutions[0]}
        return dict(sorted(arch.items()))

    @property
    def resolution_column(self) -> int | None:
        """Where the resolution's index sits in an encoding (the last gene), None when the resolution is fixed."""
        return None if self.fixed_resolution else self.n_var - 1

    def resolution(self, arch: Arch) -> int:
        """The input resolution of ``arch`` (its ``r``, or the space's fixed resolution)."""
        return int(arch.get("r", self.default_resolution))

    def _res_text(self) -> str:
        if self.fixed_resolution:
            return f"fixed at {self.lr}"
        return f"{self.lr}..{self.ur} step {self.rstep}"

    def _validate_resolution(self, arch: dict, out: Arch) -> Arch:
        """``out`` with ``arch``'s ``r`` checked (and kept when the resolution varies), keys sorted."""
        if "r" in arch:
            r = arch["r"]
            if not is_int(r) or int(r) not in self.resolutions:
                raise ArchError(f"field 'r' = {r!r} is not a resolution of this space ({self._res_text()})")
            if not self.fixed_resolution:
                out["r"] = int(r)
        elif not self.fixed_resolution:
            raise ArchError(f"architecture is missing the field 'r' (this space varies the resolution: "
                            f"{self._res_text()})")
        return dict(sorted(out.items()))

    # ------------------------------------------------------------------ encoding
    def encode_many(self, archs: Sequence[Arch]) -> np.ndarray:
        if len(archs) == 0:
            return np.zeros((0, self.n_var), dtype=np.int64)
        return np.stack([self.encode(a) for a in archs])

    def _as_int_vector(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 1 or x.shape[0] != self.n_var:
            raise ArchError(f"an encoding of {self.name} has {self.n_var} genes, got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
            raise ArchError(f"an encoding must hold finite numbers, got {x!r}")
        xi = np.rint(x).astype(np.int64)
        bad = np.flatnonzero((xi < self.xl) | (xi > self.xu))
        if bad.size:
            g = int(bad[0])
            raise ArchError(f"gene {g} = {x[g]!r} is outside its bounds [{self.xl[g]}, {self.xu[g]}]")
        return xi

    def decode_many(self, X: Any) -> list[Arch]:
        return [self.decode(row) for row in np.asarray(X)]

    # ------------------------------------------------------------------ sampling
    def sample_encodings(self, n: int, rng: Any = None) -> np.ndarray:
        """``n`` canonical vectors drawn uniformly per gene."""
        X = as_rng(rng).integers(self.xl, self.xu + 1, size=(int(n), self.n_var))
        return self.repair(X) if n else X.astype(np.int64)

    def sample(self, n: int, rng: Any = None) -> list[Arch]:
        """``n`` random archs, uniform per gene as the original samples."""
        return self.decode_many(self.sample_encodings(n, rng))

    def smallest(self) -> Arch:
        return self.decode(self.xl)

    def largest(self) -> Arch:
        return self.decode(self.xu)

    def initial_design(self, n: int, rng: Any = None) -> list[Arch]:
        """The smallest and the largest arch followed by ``n - 2`` distinct random ones."""
        n = int(n)
        if n < 0:
            raise ConfigError(f"--n_doe must not be negative, got {n}")
        rng = as_rng(rng)
        design = [self.smallest(), self.largest()][:n]
        seen = {self.key(a) for a in design}
        attempts = 0
        while len(design) < n:
            attempts += 1
            if attempts > 100:
                raise ConfigError(f"could not draw {n} distinct archs from {self.name}")
            for arch in self.sample(2 * (n - len(design)), rng):
                k = self.key(arch)
                if k not in seen and len(design) < n:
                    seen.add(k)
                    design.append(arch)
        return design

    # ------------------------------------------------------------------ helpers
    def key(self, arch: Arch) -> str:
        """The identity of ``arch``'s canonical form (:func:`cnas.spaces.geometry.arch_key`)."""
        return arch_key(self.validate(arch))

    def exit_mask(self, arch: Arch) -> list[bool]:
        """Which of the 4 positions after stages 1..4 carry an exit (all False without exit genes)."""
        return [False] * N_EXITS

    # implemented by each space
    def validate(self, arch: Any) -> Arch:
        raise NotImplementedError

    def encode(self, arch: Arch) -> np.ndarray:
        raise NotImplementedError

    def repair(self, x: Any) -> np.ndarray:
        raise NotImplementedError

    def decode(self, x: Any) -> Arch:
        raise NotImplementedError
