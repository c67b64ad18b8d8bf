"""Latency lookup tables: the key of every operation a network of the space runs, the table file, and the
latency it predicts for an arch (no torch: tables are built and networks timed by :mod:`cnas.latency`).

A table is a YAML mapping in the layout of OFA's published latency tables (``ofa``'s ``MBv3LatencyTable`` reads
``table[key]["mean"]``), one entry per operation, in milliseconds::

    Conv-input:224x224x3-output:112x112x16:                       {mean: 0.81, std: 0.02, count: 100}
    expanded_conv-input:112x112x16-output:112x112x16-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0: {...}
    expanded_conv-input:112x112x16-output:56x56x24-expand:64-kernel:5-stride:2-idskip:0-se:0-hs:0: {...}
    Conv_1-input:7x7x160-output:7x7x960:                          {...}   final expand (1x1 conv, BN, h-swish)
    AvgPool2D-input:7x7x960-output:1x1x960:                       {...}   global average pool
    Conv_2-input:1x1x960-output:1x1x1280:                         {...}   feature mix (1x1 conv, h-swish)
    Logits-input:1x1x1280-output:10:                              {...}   classifier

``Conv`` is the stem (3x3 conv stride 2, BN, h-swish); ``expanded_conv`` one inverted-residual block with its
input and output shape (height x width x channels), ``expand`` = its *middle* channels (as OFA's keys have it,
e.g. 144 for 24 channels at expansion 6), kernel, stride, ``idskip`` (identity shortcut), ``se``
(squeeze-excite) and ``hs`` (h-swish rather than ReLU). cnas adds one key kind for early-exit heads:
``exit_head-input:HxWxC-output:N-pool:P`` (max-pool P, three 3x3 convs, linear to N outputs; see
:class:`cnas.spaces.geometry.ExitHead`). Every shape follows from :mod:`cnas.spaces.geometry` (the same block
enumeration :mod:`cnas.complexity` counts), so a key names exactly one module of the built network.

Each entry holds ``mean``, ``std`` and ``count`` (OFA's fields); tables that cnas builds add ``median``, and
cnas predicts with an entry's ``median`` when it has one (it is what ``cnas.latency measure`` reports for whole
networks, and it ignores the outliers a shared machine adds), else with its ``mean`` (OFA's tables). A table
built by cnas also has a ``_meta`` entry (device, backend, threads, batch, warm-up and repeats), which OFA's
reader never looks up.

The latency of an arch is the sum over the operations it runs. For an early-exit arch the latency of leaving
at exit i is the backbone up to that exit plus every head computed on the way (the final exit's is the whole
network with all its heads); ``latency`` is the final exit's, and ``avg_latency`` weights each exit's latency
by its measured exit ratio (as ``avg_macs`` weights MACs).

Calibration (cnas's tables only): an operation timed on its own is not quite the same work as inside the
network (caches, the calls between operations), so a cnas build also times a few whole reference networks per
resolution (``_meta.calibration``: ``[sum of their ops, measured]`` in ms) and stores the median ratio as that
resolution's ``_meta.scale``; predictions at a resolution are the sum of the ops times its scale (1 where there
is none, as for OFA's tables). ``raw=True`` gives the plain sum.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from cnas.errors import ConfigError
from cnas.spaces import geometry as G

META = "_meta"
#: The fields of a table's ``_meta`` entry that must match for a build to extend a table, and that
#: ``cnas.latency measure`` takes its defaults from.
META_FIELDS = ("device", "backend", "threads", "batch")
BACKENDS = ("torch", "onnxruntime")
#: Untimed and timed calls per operation or network of a normal and of a quick (test) timing.
FULL_CALLS = (10, 50)
QUICK_CALLS = (2, 5)

STEM, BLOCK, FINAL_EXPAND, POOL, FEATURE_MIX, LOGITS, HEAD = (
    "Conv", "expanded_conv", "Conv_1", "AvgPool2D", "Conv_2", "Logits", "exit_head")
KINDS = (STEM, BLOCK, FINAL_EXPAND, POOL, FEATURE_MIX, LOGITS, HEAD)


class LatencyOp(NamedTuple):
    """One timed operation: its kind, input shape ``(h, w, c)``, output shape (``(h, w, c)``, or ``(n,)`` for
    ``Logits`` and ``exit_head``) and, for blocks, middle channels, kernel, stride, identity shortcut, SE and
    h-swish; for heads the max-pool size."""

    kind: str
    input: tuple[int, ...]
    output: tuple[int, ...]
    expand: int = 0
    kernel: int = 0
    stride: int = 0
    idskip: int = 0
    se: int = 0
    hs: int = 0
    pool: int = 0

    @property
    def key(self) -> str:
        parts = [self.kind, "input:" + "x".join(map(str, self.input)), "output:" + "x".join(map(str, self.output))]
        if self.kind == BLOCK:
            parts += [f"expand:{self.expand}", f"kernel:{self.kernel}", f"stride:{self.stride}",
                      f"idskip:{self.idskip}", f"se:{self.se}", f"hs:{self.hs}"]
        elif self.kind == HEAD:
            parts.append(f"pool:{self.pool}")
        return "-".join(parts)


_KEY_RE = re.compile(r"^(?P<kind>[A-Za-z0-9_]+)-input:(?P<input>\d+(?:x\d+)*)-output:(?P<output>\d+(?:x\d+)*)"
                     r"(?P<rest>(?:-[a-z_]+:\d+)*)$")
_FIELDS = {BLOCK: ("expand", "kernel", "stride", "idskip", "se", "hs"), HEAD: ("pool",)}


def parse_key(key: str) -> LatencyOp:
    """The operation a table key names (the inverse of :attr:`LatencyOp.key`); ValueError for other text."""
    m = _KEY_RE.match(str(key))
    if not m or m["kind"] not in KINDS:
        raise ValueError(f"not a latency table key: {key!r}")
    fields = dict(f.split(":") for f in m["rest"].split("-")[1:])
    want = _FIELDS.get(m["kind"], ())
    if sorted(fields) != sorted(want):
        raise ValueError(f"latency table key {key!r} must have the fields {', '.join(want) or 'input, output'}")
    op = LatencyOp(m["kind"], tuple(map(int, m["input"].split("x"))), tuple(map(int, m["output"].split("x"))),
                   **{k: int(v) for k, v in fields.items()})
    if op.key != key:
        raise ValueError(f"latency table key {key!r} is not in canonical form ({op.key})")
    return op


# ---------------------------------------------------------------- the operations of a network
@lru_cache(maxsize=65536)
def _block_op(cin: int, cout: int, kernel: int, expand: int, stride: int, se: bool, act: str, h_in: int) -> LatencyOp:
    h_out = G.conv_out_size(h_in, stride)
    return LatencyOp(BLOCK, (h_in, h_in, cin), (h_out, h_out, cout), G.mid_channels(cin, expand), kernel, stride,
                     int(stride == 1 and cin == cout), int(se), int(act == "h_swish"))


def block_op(block: G.Block, h_in: int) -> LatencyOp:
    """The op of one block of a static subnet on an ``h_in``-sided input map."""
    return _block_op(block.cin, block.cout, block.kernel, block.expand, block.stride, block.se, block.act, int(h_in))


def stem_ops(resolution: int, width_mult: float = 1.0) -> list[LatencyOp]:
    """The stem conv and the fixed first block at ``resolution``."""
    w = G.widths(width_mult)
    h0 = G.conv_out_size(resolution, G.STEM_STRIDE)
    return [LatencyOp(STEM, (resolution, resolution, G.INPUT_CHANNELS), (h0, h0, w.stem)),
            block_op(G.first_block(width_mult), h0)]


def tail_ops(h: int, n_classes: int, width_mult: float = 1.0) -> list[LatencyOp]:
    """Final expand, global pool, feature mix and classifier on the last stage's ``h``-sided map."""
    w = G.widths(width_mult)
    c = w.stages[-1]
    return [LatencyOp(FINAL_EXPAND, (h, h, c), (h, h, w.final_expand)),
            LatencyOp(POOL, (h, h, w.final_expand), (1, 1, w.final_expand)),
            LatencyOp(FEATURE_MIX, (1, 1, w.final_expand), (1, 1, w.feature_mix)),
            LatencyOp(LOGITS, (1, 1, w.feature_mix), (int(n_classes),))]


def head_op(head: G.ExitHead) -> LatencyOp:
    """The op of an exit head."""
    return LatencyOp(HEAD, (head.size, head.size, head.channels), (head.n_out,), pool=head.pool)


class ExitPath(NamedTuple):
    """The ops of a network in the order they run, and for each exit the number of leading ops a sample that
    leaves there runs, heads passed on the way included (``ends[-1] == len(ops)``)."""

    ops: list[LatencyOp]
    ends: list[int]


def _mobilenetv3_only(space: str) -> None:
    if space not in G.MOBILENETV3_SPACES:
        raise ConfigError(f"latency tables time the operations of the MobileNetV3 spaces "
                          f"({', '.join(G.MOBILENETV3_SPACES)}); the {space} space has none (time a {space} network "
                          "end to end with: python -m cnas.latency measure NET.subnet)")


def arch_path(arch: Mapping, n_classes: int, resolution: int | None = None, width_mult: float = 1.0) -> ExitPath:
    """Every op ``arch``'s network runs at ``resolution`` (default ``arch['r']``), with its exits, on a supernet of
    ``width_mult``.

    Plain archs: stem, blocks, tail (one exit). Early-exit archs: the head of each intermediate exit runs right
    after the block it reads (pool sizes by :func:`cnas.complexity.exit_pool_sizes`), the final exit's tail last.
    """
    from cnas.complexity import exit_pool_sizes  # the exit heads' pool rule has its home there

    _mobilenetv3_only(G.space_of(arch))
    r = int(resolution if resolution is not None else arch["r"])
    h0, sizes = G.stage_sizes(r)
    ops = stem_ops(r, width_mult)
    heads = {}
    if any(G.exit_mask(arch)):
        wide = {"width_mult": width_mult} if width_mult != 1.0 else {}
        pools = exit_pool_sizes(dict(arch), r, n_classes, **wide)
        heads = {h.block: h for h in G.exit_heads(arch, r, n_classes, pools, width_mult=width_mult)}
    ends, h = [], h0
    for b in G.blocks(arch, width_mult)[1:]:
        ops.append(block_op(b, h))
        h = G.conv_out_size(h, b.stride)
        if b.index in heads:
            ops.append(head_op(heads[b.index]))
            ends.append(len(ops))
    ops += tail_ops(h, n_classes, width_mult)
    ends.append(len(ops))
    return ExitPath(ops, ends)


def space_ops(space: str, resolutions: Iterable[int], n_classes: int, width_mult: float = 1.0) -> list[LatencyOp]:
    """Every op that some arch of ``space`` (a name from :data:`cnas.spaces.geometry.SPACE_NAMES`) runs at one
    of ``resolutions``: what a table needs for a search of that space (ordered, no repeats)."""
    if space not in G.SPACE_NAMES:
        raise ConfigError(f"unknown search space '{space}'; choose one of {', '.join(G.SPACE_NAMES)}")
    _mobilenetv3_only(space)
    out: dict[str, LatencyOp] = {}
    n_out = G.head_outputs(n_classes, space == G.NACHOS)
    for r in resolutions:
        r = int(r)
        h0, sizes = G.stage_sizes(r)
        for op in stem_ops(r, width_mult):
            out.setdefault(op.key, op)
        h_in = h0
        for s, spec in enumerate(G.stage_specs(width_mult)):
            for first in (True, False):
                cin, stride, h = (spec.cin, spec.stride, h_in) if first else (spec.cout, 1, sizes[s])
                for k in G.KERNELS:
                    for e in G.EXPANSIONS:
                        op = _block_op(cin, spec.cout, k, e, stride, spec.se, spec.act, h)
                        out.setdefault(op.key, op)
            h_in = sizes[s]
        for op in tail_ops(sizes[-1], n_classes, width_mult):
            out.setdefault(op.key, op)
        if space != G.PLAIN:
            for s in range(G.N_EXITS):
                pools = sorted({G.fit_pool(p, sizes[s]) for p in G.EXIT_POOL_SIZES})
                for p in pools:
                    op = head_op(G.ExitHead(G.stage_widths(width_mult)[s], sizes[s], p, n_out))
                    out.setdefault(op.key, op)
    return list(out.values())


# ---------------------------------------------------------------- the table
def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def build_command(path: str | Path, meta: Mapping | None, resolutions: Sequence[int], space: str,
                  n_classes: int, width_mult: float = 1.0) -> str:
    """The ``cnas.latency build`` command that adds what a search of ``space`` at ``resolutions`` needs to the
    table ``path`` (with the device, backend, threads and batch it was built with)."""
    res = sorted({int(r) for r in resolutions})
    step = min((b - a for a, b in zip(res, res[1:])), default=4)
    cmd = f"python -m cnas.latency build --save {path} --lr {res[0]} --ur {res[-1]}"
    if len(res) > 1:
        cmd += f" --rstep {step}"
    cmd += f" --search_space {space} --n_classes {n_classes}" + (f" --width_mult {width_mult}" if width_mult != 1.0 else "")
    for k in META_FIELDS:
        if meta and meta.get(k) is not None:
            cmd += f" --{k} {meta[k]}"
    return cmd


class LatencyTable:
    """A latency lookup table: ``entries`` (key -> ``{mean, std, count[, median]}``, milliseconds) and ``meta``
    (how it was built; empty for OFA's tables). ``path`` names it in messages."""

    def __init__(self, entries: dict[str, dict] | None = None, meta: dict | None = None, path: str | Path = "table"):
        self.entries: dict[str, dict] = dict(entries or {})
        self.meta: dict = dict(meta or {})
        self.path = str(path)
        self._ms: dict[str, float] = {}

    # ------------------------------------------------------------ files
    @classmethod
    def read(cls, path: str | Path, flag: str = "--latency_table") -> "LatencyTable":
        """Read a table file (cnas's or OFA's layout). A missing or malformed file raises :class:`ConfigError`
        naming it and the fix."""
        import yaml

        p = Path(path)
        build = f"build one with python -m cnas.latency build --save {p}"
        if not p.is_file():
            raise ConfigError(f"{flag} {p}: no such file ({'it is a folder; ' if p.is_dir() else ''}{build})")
        try:
            data = yaml.safe_load(p.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{flag} {p} is not a YAML latency table (unreadable{where}); {build}") from None
        if not isinstance(data, dict) or not data:
            raise ConfigError(f"{flag} {p} is not a latency table (a YAML mapping of key: {{mean, std, count}}); "
                              f"{build}")
        meta = data.pop(META, None) or {}
        if not isinstance(meta, dict):
            raise ConfigError(f"{flag} {p}: its {META} entry is not a mapping; rebuild it ({build})")
        entries = {}
        for key, v in data.items():
            if not isinstance(v, dict) or not _number(v.get("mean")) or v["mean"] < 0:
                raise ConfigError(f"{flag} {p}: entry {key!r} has no latency (a mapping with a non-negative "
                                  f"'mean' in ms); rebuild it ({build})")
            if "median" in v and not (_number(v["median"]) and v["median"] >= 0):
                raise ConfigError(f"{flag} {p}: entry {key!r} has a bad 'median' {v['median']!r}; rebuild it "
                                  f"({build})")
            entries[str(key)] = v
        return cls(entries, meta, p)

    def to_yaml(self) -> str:
        import yaml

        data = {META: self.meta} if self.meta else {}
        data.update(self.entries)
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=200)

    def write(self, path: str | Path | None = None) -> Path:
        """Write the table atomically (``path`` defaults to the one it was read from)."""
        from cnas.fileio import atomic_write_text

        return atomic_write_text(Path(path or self.path), self.to_yaml())

    # ------------------------------------------------------------ look-ups
    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def ms(self, key: str) -> float:
        """The latency of one key (its ``median`` when it has one, else its ``mean``); KeyError when absent."""
        v = self._ms.get(key)
        if v is None:
            e = self.entries[key]
            v = self._ms[key] = float(e["median"] if "median" in e else e["mean"])
        return v

    def add(self, key: str, entry: dict) -> None:
        self.entries[key] = entry
        self._ms.pop(key, None)

    def missing(self, ops: Iterable[LatencyOp]) -> list[LatencyOp]:
        return [op for op in ops if op.key not in self.entries]

    def require(self, space: str, resolutions: Sequence[int], n_classes: int, width_mult: float = 1.0,
                flag: str = "--latency_table") -> None:
        """Raise :class:`ConfigError` naming the first key a search of ``space`` at ``resolutions`` needs that the
        table lacks, and the command that adds it."""
        gone = self.missing(space_ops(space, resolutions, n_classes, width_mult))
        if gone:
            raise ConfigError(f"{flag} {self.path} has no entry {gone[0].key} ({len(gone)} key(s) of {space} at "
                              f"resolution(s) {', '.join(map(str, sorted(set(resolutions))))} with {n_classes} "
                              f"classes missing); add them with: "
                              f"{build_command(self.path, self.meta, resolutions, space, n_classes, width_mult)}")

    def scale(self, resolution: int) -> float:
        """The calibration factor of ``resolution`` (1 without one)."""
        v = (self.meta.get("scale") or {}).get(int(resolution))
        return float(v) if _number(v) and v > 0 else 1.0

    def _path_ms(self, arch: Mapping, n_classes: int, resolution: int | None = None,
                 width_mult: float = 1.0, raw: bool = False) -> list[float]:
        path = arch_path(arch, n_classes, resolution, width_mult)
        try:
            ms = [self.ms(op.key) for op in path.ops]
        except KeyError as exc:
            r = int(resolution if resolution is not None else arch["r"])
            space = G.space_of(arch)
            raise ConfigError(f"latency table {self.path} has no entry {exc.args[0]}; add it with: "
                              f"{build_command(self.path, self.meta, [r], space, n_classes, width_mult)}") from None
        cum, total = [], 0.0
        for v in ms:
            total += v
            cum.append(total)
        k = 1.0 if raw else self.scale(path.ops[0].input[0])
        return [k * cum[end - 1] for end in path.ends]

    def exit_latencies(self, arch: Mapping, n_classes: int, resolution: int | None = None,
                       width_mult: float = 1.0) -> list[float]:
        """Milliseconds of leaving at each exit (intermediate ones, then the final), heads on the way included."""
        return self._path_ms(arch, n_classes, resolution, width_mult)

    def predict(self, arch: Mapping, n_classes: int, resolution: int | None = None, width_mult: float = 1.0,
                raw: bool = False) -> float:
        """Milliseconds of one inference of ``arch`` (the final exit's path for an early-exit arch); ``raw``: the
        plain sum of its ops, without the resolution's calibration."""
        return self._path_ms(arch, n_classes, resolution, width_mult, raw)[-1]

    def predict_many(self, archs: Sequence[Mapping], n_classes: int, width_mult: float = 1.0) -> list[float]:
        return [self.predict(a, n_classes, width_mult=width_mult) for a in archs]

    def avg_latency(self, arch: Mapping, exits_ratio: Sequence[float], n_classes: int,
                    width_mult: float = 1.0) -> float:
        """``sum_i exits_ratio[i] * latency of exit i``; NaN when the ratios do not fit the arch's exits."""
        lat = self.exit_latencies(arch, n_classes, width_mult=width_mult)
        if len(exits_ratio) != len(lat):
            return float("nan")
        return float(sum(float(r) * v for r, v in zip(exits_ratio, lat)))


@lru_cache(maxsize=16)
def _cached(path: str, mtime_ns: int, size: int) -> LatencyTable:
    return LatencyTable.read(path)


def load_table(path: str | Path) -> LatencyTable:
    """:meth:`LatencyTable.read`, cached per file version (a search and its post-search read a table once)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return LatencyTable.read(p)
    return _cached(str(p), st.st_mtime_ns, st.st_size)


__all__ = ["LatencyOp", "LatencyTable", "ExitPath", "parse_key", "block_op", "stem_ops", "tail_ops", "head_op",
           "arch_path", "space_ops", "build_command", "load_table", "META", "META_FIELDS", "BACKENDS", "KINDS",
           "FULL_CALLS", "QUICK_CALLS"]
