"""Objectives: each one registered once, and the objective set that turns archive entries into F, G and
feasibility for the search, post-search and the plots alike (pure core: no files, no training).

Every objective is minimized. ``top1`` is an error in %; ``params``, ``macs``, ``activations`` and ``avg_macs`` are
in millions. An objective is either *exact* (computed from the architecture in closed form by
:mod:`cnas.complexity`, for any arch, instantly) or *measured* (read from a trained network's stats; the search
predicts it with a surrogate for archs it has not trained). An objective may answer to a constraint flag
(``--pmax``, ``--mmax``, ``--amax``, ``--top1min``); when two objectives answer to the same flag (``macs`` and
``avg_macs`` to ``--mmax``), the limit applies to the one the search optimizes, else to the first registered.

``latency`` and ``avg_latency`` are in ms and come from a latency lookup table of the target device
(``--latency_table``, :mod:`cnas.latency_table`): ``latency`` is exact (summed over the ops the arch runs, as
instantly as MACs), ``avg_latency`` weights each exit's latency with the measured exit ratios; both answer to
``--lmax``. Objectives marked ``uses_table`` get the archs as a third argument of ``compute``/``read``.

Adding an objective is one :func:`register` call: its name, unit, how its values are computed from counts or read
from stats, and the flag whose limit bounds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from cnas.complexity import count_many, tiny_ml
from cnas.errors import ConfigError
from cnas.spaces.geometry import arch_key

Counts = list[dict]  # cnas.complexity.count_many's output, one dict per arch
Stats = list[dict]  # measured stats, one dict per arch


@dataclass(frozen=True)
class Objective:
    """One objective. Exactly one of ``compute`` (exact) and ``read`` (measured) is set."""

    name: str
    unit: str
    description: str
    compute: Callable[[Counts, "ObjectiveSet"], np.ndarray] | None = None
    read: Callable[[Stats, "ObjectiveSet"], np.ndarray] | None = None
    limit_flag: str | None = None  # the constraint flag whose value bounds it
    bound: Callable[[float], float] = float  # the flag's value -> the largest allowed objective value
    early_exit_only: bool = False
    first: bool = False  # may be the first objective (--first_obj)
    measure: tuple[str, ...] = ()  # evaluation settings switched on when it is an objective (e.g. eval_robust)
    uses_table: bool = False  # from the latency table (--latency_table): compute/read also get the archs
    direction: str = "min"

    @property
    def exact(self) -> bool:
        return self.compute is not None

    def label(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name


OBJECTIVES: dict[str, Objective] = {}


def register(obj: Objective) -> Objective:
    if (obj.compute is None) == (obj.read is None):
        raise ValueError(f"objective {obj.name}: give exactly one of compute (exact) and read (measured)")
    OBJECTIVES[obj.name] = obj
    return obj


def stat_values(stats: Stats, key: str) -> np.ndarray:
    """``stats[i][key]`` as floats (the first element of a list; NaN where missing)."""
    out = []
    for st in stats:
        v = st.get(key, np.nan)
        v = v[0] if isinstance(v, list) and v else v
        out.append(np.nan if v is None or isinstance(v, list) else float(v))
    return np.asarray(out, float)


def _count_key(key: str) -> Callable[[Counts, "ObjectiveSet"], np.ndarray]:
    return lambda counts, oset: np.fromiter((c[key] for c in counts), float, len(counts))


def _stat_key(key: str) -> Callable[[Stats, "ObjectiveSet"], np.ndarray]:
    return lambda stats, oset: stat_values(stats, key)


def robust_value(top1, robustness, alpha: float, alpha_norm: float):
    """FlatNAS ``top1_robust``: ``alpha * top1 + alpha_norm * (1 - alpha) * robustness`` (robustness: the accuracy
    drop in % at the first sigma)."""
    return alpha * top1 + alpha_norm * (1 - alpha) * robustness


def alpha_norm_of(top1: np.ndarray, robustness: np.ndarray) -> float:
    """``mean(top1) / mean(robustness)`` over the archive (1 when robustness is all zero or empty)."""
    top1, robustness = np.asarray(top1, float), np.asarray(robustness, float)
    if top1.size == 0 or not np.isfinite(robustness).all() or robustness.mean() <= 0:
        return 1.0
    return float(top1.mean() / robustness.mean())


def _tiny_ml(counts: Counts, oset: "ObjectiveSet") -> np.ndarray:
    p, m, a = (_count_key(k)(counts, oset) for k in ("params", "macs", "activations"))
    return np.atleast_1d(tiny_ml(p, m, a, **oset.tiny_ml_kw))


def _table(oset: "ObjectiveSet"):
    if oset.latency_table is None:
        raise ConfigError("the latency objectives need --latency_table FILE (a latency lookup table of the target "
                          "device: python -m cnas.latency build --save FILE)")
    return oset.latency_table


def _latency(oset: "ObjectiveSet", archs: Sequence[dict]) -> np.ndarray:
    """Table-predicted latency (ms) of each arch (its ``r``)."""
    return np.asarray(_table(oset).predict_many(archs, oset.n_classes, getattr(oset, "width_mult", 1.0)), float)


def _avg_latency(oset: "ObjectiveSet", stats: Stats, archs: Sequence[dict]) -> np.ndarray:
    """``sum_i exits_ratio[i] * latency of exit i`` with the measured exit ratios (NaN without them)."""
    table, out = _table(oset), []
    for st, arch in zip(stats, archs):
        ratios = st.get("exits_ratio")
        ok = isinstance(ratios, list) and ratios and all(isinstance(r, (int, float)) for r in ratios)
        out.append(table.avg_latency(arch, ratios, oset.n_classes, getattr(oset, "width_mult", 1.0)) if ok
                   else np.nan)
    return np.asarray(out, float)


def _top1_robust(stats: Stats, oset: "ObjectiveSet") -> np.ndarray:
    return robust_value(stat_values(stats, "top1"), stat_values(stats, "robustness"), oset.alpha, oset.alpha_norm)


register(Objective("top1", "% error", "validation top-1 error", read=_stat_key("top1"), limit_flag="top1min",
                   bound=lambda acc: 100.0 * (1.0 - acc), first=True))
register(Objective("top1_robust", "% error", "FlatNAS: alpha * top1 + alpha_norm * (1 - alpha) * robustness",
                   read=_top1_robust, first=True, measure=("eval_robust",)))
register(Objective("params", "M", "trainable parameters", compute=_count_key("params"), limit_flag="pmax"))
register(Objective("macs", "M", "multiply-accumulates of one inference (final exit for early-exit nets)",
                   compute=_count_key("macs"), limit_flag="mmax"))
register(Objective("activations", "M", "activation values of one inference (the original's definition)",
                   compute=_count_key("activations"), limit_flag="amax"))
register(Objective("tiny_ml", "", "the original's weighted, penalized sum of params, MACs and activations",
                   compute=_tiny_ml))
register(Objective("avg_macs", "M", "average MACs per sample with early exits (measured exit ratios)",
                   read=_stat_key("avg_macs"), limit_flag="mmax", early_exit_only=True))
register(Objective("latency", "ms", "latency of one inference on the device of the latency table (final exit for "
                                    "early-exit nets, every head on the way included)",
                   compute=lambda counts, oset, archs: _latency(oset, archs), limit_flag="lmax", uses_table=True))
register(Objective("avg_latency", "ms", "average latency per sample with early exits: measured exit ratios times "
                                        "the latency table's latency to each exit",
                   read=lambda stats, oset, archs: _avg_latency(oset, stats, archs), limit_flag="lmax",
                   early_exit_only=True, uses_table=True))
register(Objective("top1_int8", "% error", "validation top-1 error of the network quantized to int8 (--quantize)",
                   read=_stat_key("top1_int8"), first=True, measure=("quantize",)))
register(Objective("size_int8", "KB", "size of the int8 network's weights, scales and zero points (1 KB = 1024 "
                                      "bytes)", read=lambda stats, oset: stat_values(stats, "size_int8_bytes") / 1024,
                   limit_flag="smax", measure=("quantize",)))
register(Objective("mce", "% error", "mean error under the 15 corruptions x 5 severities (--ood_eval)",
                   read=_stat_key("mce"), measure=("ood_eval",)))

FIRST_OBJECTIVES = tuple(n for n, o in OBJECTIVES.items() if o.first)
#: values every objective set computes besides its own objectives (the summary, plots and post-search show them)
ALWAYS = ("params", "macs", "activations")


def parse_objectives(first_obj: str, sec_obj: str | list[str] | None, space_has_exits: bool) -> list[str]:
    """The objective list ``[first, *secondary]`` from the flags; ``sec_obj`` may be ``"macs,activations"``."""
    if first_obj not in FIRST_OBJECTIVES:
        raise ConfigError(f"--first_obj must be one of {', '.join(FIRST_OBJECTIVES)}, got {first_obj!r}")
    if sec_obj is None or sec_obj == "" or sec_obj == []:
        names: list[str] = []
    elif isinstance(sec_obj, str):
        names = [s.strip() for s in sec_obj.split(",") if s.strip()]
    else:
        names = [str(s).strip() for s in sec_obj]
    for n in names:
        if n not in OBJECTIVES:
            raise ConfigError(f"unknown objective '{n}' in --sec_obj; choose from {', '.join(OBJECTIVES)}")
        if n == first_obj:
            raise ConfigError(f"--sec_obj {n} repeats --first_obj")
        if OBJECTIVES[n].early_exit_only and not space_has_exits:
            raise ConfigError(f"--sec_obj {n} needs an early-exit space (--search_space eemobilenetv3 or "
                              "cbnmobilenetv3)")
    if len(set(names)) != len(names):
        raise ConfigError(f"--sec_obj lists an objective twice: {','.join(names)}")
    if "top1_robust" in names and first_obj == "top1_robust":
        raise ConfigError("top1_robust cannot be both objectives")
    return [first_obj, *names]


@dataclass(frozen=True)
class Constraint:
    """``values[objective] <= bound``; ``name`` is the limited quantity (``macs`` for ``--mmax``)."""

    name: str
    flag: str
    objective: str
    limit: float
    bound: float


def constraints_for(objectives: Sequence[str], limits: dict[str, float | None]) -> list[Constraint]:
    """The constraints that the given flag values (``{"pmax": 2.0, "mmax": None, ...}``; None or absent: off)
    put on a search of ``objectives``. ``--mmax`` of 1e10 or more means no limit (the original's default)."""
    out = []
    for flag, limit in limits.items():
        if limit is None or (flag == "mmax" and limit >= 1e10) or (flag == "top1min" and not limit):
            continue
        answering = [o for o in OBJECTIVES.values() if o.limit_flag == flag]
        if not answering:
            raise ValueError(f"no objective answers to --{flag}")
        target = next((o for o in answering if o.name in objectives), answering[0])
        out.append(Constraint(answering[0].name, flag, target.name, float(limit), float(target.bound(limit))))
    return out


@dataclass
class ObjectiveSet:
    """The objectives of one search and its constraints: archive entries (arch + measured stats) -> F, G and
    feasibility. ``alpha_norm`` (FlatNAS) is updated from the archive as the search goes."""

    names: list[str]
    n_classes: int
    tiny_ml_kw: dict = field(default_factory=dict)
    constraints: list[Constraint] = field(default_factory=list)
    penalty_mode: bool = False  # the original's penalty instead of constraints (no G; everything is feasible)
    alpha: float = 0.5
    alpha_norm: float = 1.0
    width_mult: float = 1.0  # the supernet's width: exact objectives count the networks at it
    _cache: dict = field(default_factory=dict, repr=False)
    latency_table: object = None  # a cnas.latency_table.LatencyTable (--latency_table), for latency, avg_latency

    @classmethod
    def from_settings(cls, names: Sequence[str], ev, n_classes: int, constraint_mode: str = "native",
                      space=None) -> "ObjectiveSet":
        """From the evaluation settings (``pmax``, ``mmax``, ``amax``, ``top1min``, ``alpha``, ``alpha_norm``, the
        tiny_ml weights and ``width_mult``)."""
        # complexity limits first, then accuracy's (the order of G's columns)
        flags = sorted(OBJECTIVES.values(), key=lambda o: o.first)
        limits = {o.limit_flag: getattr(ev, o.limit_flag, None) for o in flags if o.limit_flag}
        if constraint_mode != "native":  # the penalty mode keeps only --mmax (for avg_macs' phi penalty)
            limits = {"mmax": limits.get("mmax")}
        oset = cls(list(names), int(n_classes), ev.tiny_ml_kwargs(), constraints_for(names, limits),
                   constraint_mode != "native", float(ev.alpha), float(ev.alpha_norm),
                   float(getattr(ev, "width_mult", 1.0)))
        return oset.with_latency_table(getattr(ev, "latency_table", None), space)

    def with_latency_table(self, path: str | None, space=None) -> "ObjectiveSet":
        """Attach the latency table ``path`` (``--latency_table``; None: none). Refused in one line when an
        objective or a constraint of the set needs a table and none is given, when ``space`` has no latency
        tables (resnet50), or when the table lacks an entry that an arch of ``space`` (a search space, at its
        resolutions) needs."""
        from cnas.latency_table import load_table

        needing = [n for n in dict.fromkeys([*self.names, *self.constraint_targets]) if OBJECTIVES[n].uses_table]
        if space is not None and not space.latency_tables and (needing or path is not None):
            what = f"the objective {needing[0]}" if needing and needing[0] in self.names else "--latency_table"
            raise ConfigError(f"{what} reads a latency table, and latency tables time the operations of the "
                              f"MobileNetV3 spaces; the {space.name} space has none (choose --sec_obj macs, params "
                              "or activations, and drop --latency_table / --lmax)")
        if path is None:
            if needing:
                flag = next((f"--{c.flag}" for c in self.constraints if c.objective in needing), None)
                what = f"the objective {needing[0]}" if needing[0] in self.names else flag
                raise ConfigError(f"{what} needs --latency_table FILE, a latency lookup table of the target device "
                                  "(build one with: python -m cnas.latency build --save FILE --lr R --ur R)")
            self.latency_table = None
            return self
        self.latency_table = load_table(path)
        if space is not None:
            self.latency_table.require(space.name, space.resolutions, self.n_classes,
                                       getattr(self, "width_mult", 1.0))
        self._cache.clear()
        return self

    # ------------------------------------------------------------ which values
    @property
    def constraint_targets(self) -> list[str]:
        return [c.objective for c in self.constraints]

    @property
    def predicted(self) -> list[str]:
        """Measured objectives that the search predicts (its objectives and constraint targets)."""
        out = [n for n in self.names if not OBJECTIVES[n].exact]
        out += [n for n in self.constraint_targets if not OBJECTIVES[n].exact and n not in out]
        return out

    def _exact_names(self, extra: Iterable[str] = ()) -> list[str]:
        wanted = [*ALWAYS, *self.names, *self.constraint_targets, *extra]
        return list(dict.fromkeys(n for n in wanted if OBJECTIVES[n].exact))

    def exact_values(self, archs: Sequence[dict], extra: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """Closed-form values of the exact objectives for ``archs`` (archs carry their ``r``), uncached."""
        counts = count_many(archs, self.n_classes, width_mult=self.width_mult)
        return {n: self._compute(n, counts, archs) for n in self._exact_names(extra)}

    def _compute(self, name: str, counts: Counts, archs: Sequence[dict]) -> np.ndarray:
        obj = OBJECTIVES[name]
        return obj.compute(counts, self, archs) if obj.uses_table else obj.compute(counts, self)

    def _read(self, name: str, stats: Stats, archs: Sequence[dict]) -> np.ndarray:
        obj = OBJECTIVES[name]
        return obj.read(stats, self, archs) if obj.uses_table else obj.read(stats, self)

    def cached_exact(self, archs: Sequence[dict]) -> dict[str, np.ndarray]:
        """:meth:`exact_values` with each arch counted once per objective set (the archive is read often)."""
        keys = [arch_key(a) for a in archs]
        missing = {k: a for k, a in zip(keys, archs) if k not in self._cache}
        if missing:
            vals = self.exact_values(list(missing.values()))
            for i, k in enumerate(missing):
                self._cache[k] = {name: float(v[i]) for name, v in vals.items()}
        names = self._exact_names()
        return {n: np.fromiter((self._cache[k][n] for k in keys), float, len(keys)) for n in names}

    def values(self, entries, extra: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """Every value the objectives and constraints need for archive entries (``.arch``, ``.stats``)."""
        extra = list(extra)
        vals = self.cached_exact([e.arch for e in entries])
        more = [n for n in extra if OBJECTIVES[n].exact and n not in vals]
        if more:
            vals.update(self.exact_values([e.arch for e in entries], more))
        stats = [e.stats for e in entries]
        for n in dict.fromkeys(["top1", *self.names, *self.constraint_targets, *extra]):
            if not OBJECTIVES[n].exact:
                vals[n] = self._read(n, stats, [e.arch for e in entries])
        return vals

    # ------------------------------------------------------------ F, G, feasibility
    def F_of(self, vals: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(vals.values()))) if vals else 0
        return np.column_stack([vals[n] for n in self.names]) if n else np.zeros((0, len(self.names)))

    def F(self, entries) -> np.ndarray:
        return self.F_of(self.values(entries)) if len(entries) else np.zeros((0, len(self.names)))

    def G_of(self, vals: dict[str, np.ndarray]) -> np.ndarray:
        """pymoo inequality constraints ``g <= 0``, one column per constraint (none in penalty mode)."""
        n = len(next(iter(vals.values()))) if vals else 0
        if self.penalty_mode or not self.constraints:
            return np.zeros((n, 0))
        return np.column_stack([vals[c.objective] - c.bound for c in self.constraints])

    def feasible_of(self, vals: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(vals.values()))) if vals else 0
        ok = np.ones(n, dtype=bool)
        if not self.penalty_mode:
            for c in self.constraints:
                ok &= vals[c.objective] <= c.bound
        return ok

    def feasible(self, entries) -> np.ndarray:
        return self.feasible_of(self.values(entries)) if len(entries) else np.zeros(0, bool)

    @property
    def phi_penalized(self) -> dict[str, float]:
        """Penalty mode: the predicted objectives that a limit bounds (``avg_macs`` under ``--mmax``), with their
        limit. The surrogate problem replaces each value ``c`` by the original's
        ``phi * c + (1 - phi) * max(0, c - limit) * penalty``, ``phi`` the population's feasible share."""
        if not self.penalty_mode:
            return {}
        return {c.objective: c.limit for c in self.constraints
                if c.objective in self.names and not OBJECTIVES[c.objective].exact}

    def update_alpha_norm(self, entries) -> None:
        """FlatNAS: re-express ``top1_robust`` with ``mean(top1) / mean(robustness)`` over ``entries``."""
        if "top1_robust" not in self.names or not entries:
            return
        stats = [e.stats for e in entries]
        top1, rob = stat_values(stats, "top1"), stat_values(stats, "robustness")
        ok = np.isfinite(rob) & np.isfinite(top1)
        self.alpha_norm = alpha_norm_of(top1[ok], rob[ok])


__all__ = ["Objective", "OBJECTIVES", "register", "FIRST_OBJECTIVES", "parse_objectives", "Constraint",
           "constraints_for", "ObjectiveSet", "robust_value", "alpha_norm_of", "stat_values"]
