"""Early-exit networks (EDANAS ``t`` and NACHOS ``b`` archs), their exit policies, and :func:`build_network`.

An :class:`EENetwork` wraps a static OFA subnet (its ``backbone``, modules shared, not copied) and adds one exit
head after each stage i in 1..4 that :func:`cnas.spaces.exit_mask` marks, at the last block of that stage; the
final exit is the subnet's own ``final_expand_layer -> global average pool -> feature_mix_layer -> classifier``.
An exit head is ``[MaxPool2d(p, stride=p) if p > 1], ReLU, Conv3x3(C, 32), ReLU, Conv3x3(32, 64), ReLU,
Conv3x3(64, 128), ReLU, Flatten, Linear(128·h'·h', n_classes [+1])``, with ``p`` from
:func:`cnas.complexity.exit_pool_sizes`.

Exit policies (per sample, vectorised over the batch):

* EDANAS score margin: ``m_i = p(1) - p(2)`` of the softmax of exit i; leave at the first i with ``m_i >= eps_i``;
  default ``eps = [t for t in arch['t'] if t != 1] + [1]``.
* NACHOS cumulative confidence: binary heads give ``n_classes + 1`` logits, ``c_i = sigmoid(last logit)``, the
  final exit has ``c = 1``; ``q_1 = c_1``, ``q_i = c_i · prod_{k<i}(1 - c_k)``, ``D_i = sum_{j<=i} q_j``; leave at
  the first i with ``D_i >= eps_i``.
In both the final exit takes every sample that did not leave earlier.

Deviations from the original (EarlyExits ``utils_ee.py``, ``evaluators.py``):

* Exits are placed on the network the config describes (stage-aware ks/e).
* The pool size never exceeds the feature map (the original could build MaxPool(4) on a 2x2 map and crash):
  ``exit_pool_sizes`` already guarantees it; :class:`EENetwork` halves any given size that does not fit.
* Exit decisions are vectorised over the batch (the original looped over samples in Python); with batch 1,
  :meth:`EENetwork.predict` stops computing at the exit taken.
* NACHOS nets have a default threshold (0.5 per intermediate exit) so they can be evaluated before tuning; the
  original had none and crashed in ``sm_eval`` without ``--tune_epsilon``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnas.complexity import exit_pool_sizes
from cnas.errors import ArchError, ConfigError
from cnas.models.ofa_net import build_supernet, get_subnet
from cnas.spaces import geometry, get_space
from cnas.spaces.geometry import DEFAULT_BINARY_THRESHOLD, default_thresholds, exit_mask  # noqa: F401 (re-export)

HEAD_WIDTHS = geometry.EXIT_HEAD_WIDTHS

__all__ = [
    "EENetwork", "build_network", "make_exit_head", "score_margin", "score_margin_exits",
    "cumulative_confidence_exits", "exit_probabilities", "default_thresholds", "validate_arch",
]


# ---------------------------------------------------------------- exit policies (plain functions)
def _eps_tensor(eps: Sequence[float] | torch.Tensor, n_exits: int, ref: torch.Tensor) -> torch.Tensor:
    eps = torch.as_tensor(eps, dtype=ref.dtype, device=ref.device).flatten()
    if eps.numel() == n_exits - 1:
        eps = torch.cat([eps, eps.new_ones(1)])
    if eps.numel() != n_exits:
        raise ConfigError(f"got {eps.numel()} exit thresholds for {n_exits} exits: give {n_exits - 1} or {n_exits}")
    return eps


def _first_hit(hit: torch.Tensor) -> torch.Tensor:
    """Index of the first True per row of ``hit`` (B, n-1), or n-1 (the final exit) when there is none."""
    full = torch.cat([hit, hit.new_ones(hit.shape[0], 1)], dim=1)
    return full.to(torch.int8).argmax(dim=1)  # argmax returns the first maximal index


def score_margin(logits: torch.Tensor) -> torch.Tensor:
    """``p(1) - p(2)``: the gap between the two largest softmax probabilities, per sample."""
    if logits.shape[-1] < 2:
        return logits.new_ones(logits.shape[:-1])
    top2 = F.softmax(logits, dim=-1).topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def score_margin_exits(logits_list: Sequence[torch.Tensor], eps: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """EDANAS policy: per sample, the index of the first exit i with score margin ``>= eps[i]`` (the last exit
    when none). ``logits_list`` holds the class logits of every exit (final last); ``eps`` has one threshold
    per exit or per intermediate exit. Returns a ``(B,)`` long tensor."""
    n = len(logits_list)
    ref = logits_list[-1]
    eps_t = _eps_tensor(eps, n, ref)
    if n == 1:
        return torch.zeros(ref.shape[0], dtype=torch.long, device=ref.device)
    m = torch.stack([score_margin(lg) for lg in logits_list[:-1]], dim=1)
    return _first_hit(m >= eps_t[:-1]).long()


def exit_probabilities(conf_list: Sequence[torch.Tensor]) -> torch.Tensor:
    """NACHOS exit probabilities ``q`` (B, n): ``q_i = c_i · prod_{k<i}(1 - c_k)``, the last exit's confidence
    taken as 1 (whatever is given), so each row sums to 1."""
    c = torch.stack(list(conf_list), dim=1)
    c = torch.cat([c[:, :-1], torch.ones_like(c[:, -1:])], dim=1)
    survive = torch.cumprod(1 - c, dim=1)
    before = torch.cat([torch.ones_like(c[:, :1]), survive[:, :-1]], dim=1)
    return c * before


def cumulative_confidence_exits(conf_list: Sequence[torch.Tensor], eps: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """NACHOS policy: per sample, the first exit i with ``D_i = sum_{j<=i} q_j >= eps[i]`` (the last exit when
    none). ``conf_list`` holds the ``(B,)`` confidences of every exit (final last; its value is ignored)."""
    n = len(conf_list)
    ref = conf_list[-1]
    eps_t = _eps_tensor(eps, n, ref)
    if n == 1:
        return torch.zeros(ref.shape[0], dtype=torch.long, device=ref.device)
    d = torch.cumsum(exit_probabilities(conf_list), dim=1)
    return _first_hit(d[:, :-1] >= eps_t[:-1]).long()


# ---------------------------------------------------------------- arch helpers
def validate_arch(arch: dict) -> dict:
    """Canonical form of an arch of any space (its keys tell which), keeping its ``r`` if it has one."""
    if not isinstance(arch, dict):
        raise ArchError(f"an architecture must be a JSON object with ks, e, d; got {type(arch).__name__}")
    out = get_space(geometry.space_of(arch), 224, 224).validate({k: v for k, v in arch.items() if k != "r"})
    if "r" in arch:
        r = arch["r"]
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ArchError(f"field 'r' = {r!r} is not a positive integer resolution")
        out["r"] = int(r)
    return dict(sorted(out.items()))


def make_exit_head(channels: int, size: int, pool: int, n_out: int) -> nn.Sequential:
    """An exit head for a ``channels x size x size`` feature map (see the module docstring), shaped by
    :class:`cnas.spaces.geometry.ExitHead`."""
    shape = geometry.ExitHead(int(channels), int(size), int(pool), int(n_out))
    layers: list[nn.Module] = []
    if shape.pool > 1:
        layers.append(nn.MaxPool2d(shape.pool, stride=shape.pool))
    k = geometry.EXIT_HEAD_KERNEL
    for cin, cout in shape.convs:
        layers += [nn.ReLU(), nn.Conv2d(cin, cout, k, padding=k // 2)]
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(shape.linear_in, shape.n_out)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- the network
class EENetwork(nn.Module):
    """An early-exit network on a static OFA MobileNetV3 subnet.

    Args:
        subnet: the static subnet extracted for ``arch`` (:func:`cnas.models.get_subnet`); it becomes
            ``self.backbone`` and its modules are shared, not copied (train it as a single-exit net first, then
            wrap it, as the original's two-stage training does).
        arch: the arch dict (``t`` or ``b`` with at least one exit).
        n_classes: classes of every exit (binary heads add one confidence logit).
        resolution: input resolution (default ``arch['r']``); fixes the heads' linear layers.
        binary: binary (NACHOS) heads; default True iff the arch has ``b``.
        pool_sizes: pool size per intermediate exit; default :func:`cnas.complexity.exit_pool_sizes`.

    Attributes:
        n_exits: number of exits including the final one.
        exit_positions: the stage (1..4) after which each intermediate exit sits, then 5 for the final exit.
        exit_blocks: index in ``backbone.blocks`` of the block each exit reads (``blocks[0]`` is the fixed block).
        binary, n_classes, resolution, pool_sizes, arch; policy: the exit policy's name.
        heads: ``nn.ModuleList`` of the intermediate exit heads (the final exit's modules live in the backbone).
        thresholds: the exit thresholds :meth:`predict` uses by default (one per exit, final last).

    ``forward(x)`` returns the list of every exit's raw outputs, final last, in train and eval mode alike:
    ``(B, n_classes + 1)`` for binary intermediate heads (last column: confidence logit), ``(B, n_classes)``
    otherwise. :meth:`split` turns them into class logits and confidences.

    For cost measurement per exit: :meth:`backbone_up_to` (first_conv + blocks up to exit i, as an
    ``nn.Sequential`` sharing the modules), :meth:`exit_head` (head i; for the final exit final_expand, pool,
    feature_mix, flatten, classifier) and :meth:`forward_features_to_exit`.
    """

    def __init__(self, subnet: nn.Module, arch: dict, n_classes: int, resolution: int | None = None,
                 binary: bool | None = None, pool_sizes: Sequence[int] | None = None):
        super().__init__()
        arch = validate_arch(arch)
        mask = exit_mask(arch)
        if not any(mask):
            raise ArchError("the architecture has no early exit (every t is 1 / no b is 1): use the static subnet")
        if len(subnet.blocks) != 1 + sum(arch["d"]):
            raise ArchError(f"the subnet has {len(subnet.blocks) - 1} blocks but arch d = {arch['d']} needs "
                            f"{sum(arch['d'])}: extract it for this arch")
        r = resolution if resolution is not None else arch.get("r")
        if r is None:
            raise ArchError("the architecture has no resolution 'r': pass resolution= (e.g. 32)")
        self.resolution = int(r)
        self.arch = arch
        self.n_classes = int(n_classes)
        self.binary = geometry.binary_heads(arch) if binary is None else bool(binary)
        self.backbone = subnet
        stages = geometry.exit_stages(arch)
        self.exit_positions = geometry.exit_positions(arch)
        self.exit_blocks = geometry.exit_blocks(arch)
        self.n_exits = len(self.exit_positions)
        self.width_mult = geometry.width_of_stem(subnet.first_conv.conv.out_channels)
        if pool_sizes is None:
            pool_sizes = exit_pool_sizes(arch, self.resolution, self.n_classes, self.binary, self.width_mult)
        if len(pool_sizes) != len(stages):
            raise ConfigError(f"got {len(pool_sizes)} pool sizes for {len(stages)} intermediate exits")
        # geometry fits each pool to its map (never below 1x1); the channels are read off the subnet's block
        specs = geometry.exit_heads(arch, self.resolution, self.n_classes, pool_sizes, self.binary)
        specs = [sp._replace(channels=int(subnet.blocks[sp.block].conv.out_channels)) for sp in specs]
        heads = [make_exit_head(sp.channels, sp.size, sp.pool, sp.n_out) for sp in specs]
        self.pool_sizes = [sp.pool for sp in specs]
        param = next(subnet.parameters(), None)
        self.heads = nn.ModuleList(heads).to(param.device if param is not None else "cpu")
        self.thresholds = default_thresholds(arch)

    @property
    def policy(self) -> str:
        """The exit policy's name: ``cumulative_confidence`` (binary heads) or ``score_margin``."""
        return geometry.exit_policy(self.binary)

    # ------------------------------------------------------------ pieces
    def _final(self, h: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        h = b.feature_mix_layer(b.global_avg_pool(b.final_expand_layer(h)))
        return b.classifier(torch.flatten(h, 1))

    def backbone_up_to(self, i: int) -> nn.Sequential:
        """``first_conv`` and ``blocks[: exit_blocks[i] + 1]`` of the backbone (modules shared, not copied)."""
        b = self.backbone
        return nn.Sequential(b.first_conv, *list(b.blocks)[: self.exit_blocks[self._index(i)] + 1])

    def exit_head(self, i: int) -> nn.Module:
        """The head of exit ``i``: an intermediate head, or for the final exit final_expand, global pool,
        feature_mix, flatten and classifier (shared modules)."""
        i = self._index(i)
        if i < self.n_exits - 1:
            return self.heads[i]
        b = self.backbone
        return nn.Sequential(b.final_expand_layer, b.global_avg_pool, b.feature_mix_layer, nn.Flatten(), b.classifier)

    def forward_features_to_exit(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """The feature map exit ``i`` reads (only the backbone up to that exit runs)."""
        return self.backbone_up_to(i)(x)

    def _index(self, i: int) -> int:
        if not -self.n_exits <= i < self.n_exits:
            raise IndexError(f"exit {i} out of range for {self.n_exits} exits")
        return i % self.n_exits

    # ------------------------------------------------------------ forward and prediction
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = self.backbone
        outs = []
        h = b.first_conv(x)
        k = 0
        for idx, block in enumerate(b.blocks):
            h = block(h)
            if k < len(self.heads) and idx == self.exit_blocks[k]:
                outs.append(self.heads[k](h))
                k += 1
        outs.append(self._final(h))
        return outs

    def split(self, outputs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """``(class logits per exit, confidences per exit)``; confidences (``sigmoid`` of the last logit, 1 for the
        final exit) only for binary heads, else None."""
        if not self.binary:
            return list(outputs), None
        logits = [o[:, : self.n_classes] for o in outputs[:-1]] + [outputs[-1]]
        conf = [torch.sigmoid(o[:, self.n_classes]) for o in outputs[:-1]]
        conf.append(torch.ones_like(outputs[-1][:, 0]))
        return logits, conf

    def exit_indices(self, outputs: Sequence[torch.Tensor], thresholds: Sequence[float] | None = None) -> torch.Tensor:
        """The exit each sample takes given all exits' outputs (the policy of this net's kind)."""
        eps = self.thresholds if thresholds is None else thresholds
        logits, conf = self.split(outputs)
        if self.binary:
            return cumulative_confidence_exits(conf, eps)
        return score_margin_exits(logits, eps)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, thresholds: Sequence[float] | None = None,
                early_stop: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, exit_index)``: per sample the class logits ``(B, n_classes)`` of the exit its policy takes,
        and that exit's index in ``0..n_exits-1``. Runs without gradients. With a batch of one and
        ``early_stop``, the backbone stops at the exit taken."""
        eps = self.thresholds if thresholds is None else thresholds
        if early_stop and x.shape[0] == 1:
            return self._predict_one(x, _eps_tensor(eps, self.n_exits, x))
        outs = self(x)
        idx = self.exit_indices(outs, eps)
        logits, _ = self.split(outs)
        stacked = torch.stack(logits, dim=0)  # (n_exits, B, C)
        return stacked[idx, torch.arange(x.shape[0], device=x.device)], idx

    def _predict_one(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.backbone
        h = b.first_conv(x)
        k = 0
        survive = x.new_ones(1)
        reached = x.new_zeros(1)
        for idx, block in enumerate(b.blocks):
            h = block(h)
            if k < len(self.heads) and idx == self.exit_blocks[k]:
                out = self.heads[k](h)
                if self.binary:
                    logits, c = out[:, : self.n_classes], torch.sigmoid(out[:, self.n_classes])
                    reached = reached + c * survive
                    survive = survive * (1 - c)
                    hit = bool(reached[0] >= eps[k])
                else:
                    logits = out
                    hit = bool(score_margin(out)[0] >= eps[k])
                if hit:
                    return logits, torch.full((1,), k, dtype=torch.long, device=x.device)
                k += 1
        return self._final(h), torch.full((1,), self.n_exits - 1, dtype=torch.long, device=x.device)


# ---------------------------------------------------------------- builder
def build_network(arch: dict, n_classes: int, supernet: nn.Module | None = None, resolution: int | None = None,
                  width_mult: float = 1.0) -> nn.Module:
    """The network of ``arch``: an :class:`EENetwork` when it has an exit (some ``t != 1``, or ``b``), else the
    static OFA subnet (an EDANAS arch with every ``t == 1`` is a single-exit net).

    Weights come from ``supernet`` (stage-aware extraction) when given, else from a fresh randomly initialised
    supernet of ``width_mult`` (seed torch for reproducibility). ``resolution`` (default ``arch['r']``) is
    needed for early-exit nets only. A resnet50 arch gets its static ResNet (from an OFA ResNet-50 supernet).
    """
    arch = validate_arch(arch)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ConfigError(f"n_classes must be a positive integer, got {n_classes!r}")
    if supernet is None:
        supernet = build_supernet(n_classes, width_mult=width_mult, space=geometry.space_of(arch))
    else:
        have = supernet.classifier.out_features
        if have != n_classes:
            raise ConfigError(f"the supernet has a {have}-class classifier but n_classes = {n_classes}: "
                              f"load it with load_supernet(path, n_classes={n_classes})")
    subnet = get_subnet(supernet, arch)
    if any(geometry.exit_mask(arch)):
        return EENetwork(subnet, arch, n_classes, resolution=resolution)
    return subnet
