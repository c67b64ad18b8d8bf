"""The closed-form counts of cnas.complexity equal what is measured on the torch modules, exactly.

Measured: params = numel of trainable parameters; MACs = FlopCounterMode total / 2; activations = output sizes
(batch 1) of every Conv2d, Linear, BatchNorm2d, Flatten, AvgPool2d, MaxPool2d module run by the forward pass.
Plain archs are measured on the extracted static OFA subnet, early-exit archs on cnas.models.build_network's
EENetwork (one supernet per class count, reused); the candidate exit heads the pool rule compares are built from
the layout cnas.complexity documents, on the meta device (shapes only: fast, and the counts do not depend on
values).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from cnas import complexity as C
from cnas.errors import ArchError, ConfigError
from cnas.models import build_supernet, get_subnet
from cnas.models.counting import COUNTED, measure_counts
from cnas.spaces import exit_mask, get_space

torch.set_num_threads(1)

SMALL_RES = (32, 36, 40, 48, 57, 64)
LARGE_RES = (96, 128, 160, 224)
CLASSES = (10, 100, 1000)
N_PER_SPACE = 100


@pytest.fixture(scope="module")
def supernets():
    torch.manual_seed(0)
    return {n: build_supernet(n) for n in CLASSES}


def measure(module: nn.Module, x: torch.Tensor) -> tuple[int, int, int, torch.Tensor]:
    """(params, MACs, activations, output) of one forward pass of ``module`` on ``x``."""
    return measure_counts(module, x)


def head(channels: int, pool: int, h: int, n_out: int) -> nn.Sequential:
    """The exit head as cnas.complexity documents it, on the meta device."""
    hp = h // pool
    layers = [nn.MaxPool2d(pool, stride=pool)] if pool > 1 else []
    cin = channels
    for cout in (32, 64, 128):
        layers += [nn.ReLU(), nn.Conv2d(cin, cout, 3, padding=1, device="meta")]
        cin = cout
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(128 * hp * hp, n_out, device="meta")]
    return nn.Sequential(*layers)


def sample(name: str, n: int, seed: int) -> list[tuple[dict, int, int]]:
    """(arch, resolution, n_classes) triples: mostly small resolutions, every 25th a large one."""
    rng = np.random.default_rng(seed)
    archs = get_space(name, 32, 32).sample(n, rng)
    out = []
    for i, arch in enumerate(archs):
        res = LARGE_RES if i % 25 == 24 else SMALL_RES
        out.append((arch, int(rng.choice(res)), int(CLASSES[i % 3])))
    return out


# ------------------------------------------------------------------------------------------- plain subnets
@pytest.mark.parametrize("seed", [0])
def test_plain_counts_equal_measured(supernets, seed):
    cases = sample("mobilenetv3", N_PER_SPACE, seed)
    cases += [(get_space("mobilenetv3").largest(), 32, 10), (get_space("mobilenetv3").smallest(), 224, 1000)]
    for arch, r, n in cases:
        subnet = get_subnet(supernets[n], arch)
        params, macs, acts, y = measure(subnet, torch.randn(1, 3, r, r))
        assert y.shape == (1, n)
        got = C.count(arch, n_classes=n, resolution=r)
        assert set(got) == {"params", "macs", "activations"}
        assert (round(got["params"] * 1e6), round(got["macs"] * 1e6), round(got["activations"] * 1e6)) == (
            params, macs, acts), (arch, r, n)


def test_known_figures():
    """Figures measured once on OFA's own subnets: largest and smallest at 32 and 64."""
    s = get_space("mobilenetv3")
    big, small = s.largest(), s.smallest()
    assert round(C.count(big, 10, 32)["params"] * 1e6) == 6_396_570
    assert round(C.count(big, 10, 32)["macs"] * 1e6) == 15_198_240
    assert round(C.count(big, 10, 64)["macs"] * 1e6) == 49_554_816
    assert round(C.count(small, 10, 32)["params"] * 1e6) == 2_142_602
    assert round(C.count(small, 10, 64)["macs"] * 1e6) == 11_189_952


# ------------------------------------------------------------------------------------------- early exits
class _HeadCosts(dict):
    """pool -> measured (params, MACs, activations) of the documented exit head, measured on first use."""

    def __init__(self, channels: int, h: int, n_out: int):
        super().__init__()
        self.args = channels, h, n_out

    def __missing__(self, pool: int):
        c, h, n_out = self.args
        assert h // pool >= 1
        self[pool] = measure(head(c, pool, h, n_out), torch.empty(1, c, h, h, device="meta"))[:3]
        return self[pool]

    def valid(self, pool: int) -> bool:
        return self.args[1] // pool >= 1


def measure_eenet(net, r: int):
    """One forward of an EENetwork: totals (params, MACs, activations) and, per exit (final last), the measured
    backbone (params, MACs) up to it, its head's (params, MACs) and its input map (channels, size)."""
    b = net.backbone
    maps = {}
    hooks = [b.blocks[j].register_forward_hook(lambda m, i, o, j=j: maps.__setitem__(j, o.shape))
             for j in net.exit_blocks]
    acts = [0]
    hooks += [m.register_forward_hook(lambda m, i, o: acts.__setitem__(0, acts[0] + o.numel()))
              for m in net.modules() if isinstance(m, COUNTED)]
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        outs = net(torch.randn(1, 3, r, r))
    for h in hooks:
        h.remove()
    assert len(outs) == net.n_exits
    flops = fc.get_flop_counts()

    def macs(*names):
        total = sum(sum(flops.get("EENetwork." + nm, {}).values()) for nm in names)
        assert total % 2 == 0
        return total // 2

    def params(*mods):
        return sum(p.numel() for m in mods for p in m.parameters() if p.requires_grad)

    exits = []
    for i, j in enumerate(net.exit_blocks):
        blocks = [f"backbone.blocks.{k}" for k in range(j + 1)]
        backbone = (params(b.first_conv, *b.blocks[: j + 1]), macs("backbone.first_conv", *blocks))
        if i < net.n_exits - 1:
            hd = (params(net.heads[i]), macs(f"heads.{i}"))
        else:
            hd = (params(b.final_expand_layer, b.feature_mix_layer, b.classifier),
                  macs("backbone.final_expand_layer", "backbone.feature_mix_layer", "backbone.classifier"))
        exits.append((backbone, hd, (maps[j][1], maps[j][2])))
    total = (params(net), fc.get_total_flops() // 2, acts[0])
    return total, exits


def pool_rule(backbone_macs: list[int], heads: list[_HeadCosts], final_cost: int) -> list[int]:
    """The documented pool rule (:func:`cnas.complexity.exit_pool_sizes`) applied to measured costs."""
    next_cost, pools = final_cost, []
    for bm, hc in zip(reversed(backbone_macs), reversed(heads)):
        p = 1
        while bm + hc[p][1] >= next_cost:
            larger = [q for q in (2, 4) if q > p and hc.valid(q)]
            if not larger:
                break
            p = larger[0]
        pools.append(p)
        next_cost = bm + hc[p][1]
    return pools[::-1]


@pytest.mark.parametrize("name,seed", [("eemobilenetv3", 1), ("cbnmobilenetv3", 2)])
def test_early_exit_counts_equal_measured(supernets, name, seed):
    """On cnas.models.build_network's EENetwork: totals, per-exit backbone and head costs, and the pool sizes
    re-derived from measured head costs (documented heads, every candidate pool measured on torch)."""
    from cnas.models import EENetwork, build_network

    space = get_space(name, 32, 32)
    cases = sample(name, N_PER_SPACE, seed)
    cases += [(space.largest(), 224, 10), (space.smallest(), 224, 1000), (space.smallest(), 32, 1000)]
    seen_pools = set()
    n_ee = 0
    for arch, r, n in cases:
        net = build_network(arch, n, supernet=supernets[n], resolution=r)
        got = C.count(arch, n_classes=n, resolution=r)
        e6 = lambda v: [round(u * 1e6) for u in v]  # noqa: E731
        if not isinstance(net, EENetwork):  # an EDANAS arch with every t = 1 is a single-exit net
            assert not any(exit_mask(arch)) and got["pool_sizes"] == [] and len(got["exit_costs"]) == 1
            params, macs, acts, _ = measure(net, torch.randn(1, 3, r, r))
            assert e6([got["params"], got["macs"], got["activations"]]) == [params, macs, acts]
            continue
        n_ee += 1
        total, exits = measure_eenet(net, r)
        stages = [i for i, m in enumerate(exit_mask(arch)) if m]
        assert [c for _, _, (c, _) in exits[:-1]] == [(24, 40, 80, 112)[i] for i in stages]
        assert [h for _, _, (_, h) in exits[:-1]] == [C.stage_sizes(r)[1][i] for i in stages]
        # the counts
        assert e6(got["backbone_params"]) == [bk[0] for bk, _, _ in exits]
        assert e6(got["backbone_macs"]) == [bk[1] for bk, _, _ in exits]
        assert e6(got["classifiers_params"]) == [hd[0] for _, hd, _ in exits]
        assert e6(got["classifiers_macs"]) == [hd[1] for _, hd, _ in exits]
        assert e6(got["exit_costs"]) == [bk[1] + hd[1] for bk, hd, _ in exits]
        assert round(got["macs"] * 1e6) == exits[-1][0][1] + exits[-1][1][1]
        assert round(got["params"] * 1e6) == total[0]
        assert round(got["activations"] * 1e6) == total[2]
        assert round((got["backbone_macs"][-1] + sum(got["classifiers_macs"])) * 1e6) == total[1]  # every head runs
        # the pool rule, re-derived from measured costs of the documented heads
        heads = [_HeadCosts(c, h, n + ("b" in arch)) for _, _, (c, h) in exits[:-1]]
        pools = pool_rule([bk[1] for bk, _, _ in exits[:-1]], heads, exits[-1][0][1] + exits[-1][1][1])
        assert got["pool_sizes"] == pools == net.pool_sizes == C.exit_pool_sizes(arch, r, n), (arch, r, n)
        assert [hc[p][:2] for hc, p in zip(heads, pools)] == [hd for _, hd, _ in exits[:-1]]  # as built
        assert all(h // p >= 1 for (_, _, (_, h)), p in zip(exits, pools))
        seen_pools.update(pools)
    assert seen_pools == {1, 2, 4}  # the rule is exercised in every branch
    assert n_ee >= 80


def test_plain_count_equals_final_path_of_ee():
    space = get_space("eemobilenetv3", 32, 32)
    for arch in space.sample(20, 5):
        plain = {k: v for k, v in arch.items() if k != "t"}
        ee, pl = C.count(arch, 10, 64), C.count(plain, 10, 64)
        assert ee["macs"] == pytest.approx(pl["macs"], abs=1e-12)
        assert ee["backbone_params"][-1] + ee["classifiers_params"][-1] == pytest.approx(pl["params"], abs=1e-12)
        assert ee["params"] >= pl["params"]


@pytest.mark.parametrize("r", list(range(1, 41)))
def test_pool_guard_on_tiny_maps(r):
    """At small resolutions (r = 32: stages 3 and 4 are 2x2) no pool empties the map; heads run on torch."""
    space = get_space("cbnmobilenetv3", 32, 32)
    arch = dict(space.largest(), b=[1, 1, 1, 1])
    hs = C.stage_sizes(r)[1]
    for n in (10, 1000):
        pools = C.exit_pool_sizes(arch, resolution=r, n_classes=n)
        assert len(pools) == 4
        for i, p in enumerate(pools):
            assert p in (1, 2, 4) and hs[i] // p >= 1
            hm = head((24, 40, 80, 112)[i], p, hs[i], n + 1)
            assert hm(torch.empty(1, (24, 40, 80, 112)[i], hs[i], hs[i], device="meta")).shape == (1, n + 1)


def test_stage_sizes_match_torch(supernets):
    space = get_space("mobilenetv3")
    subnet = get_subnet(supernets[10], space.smallest())
    for r in (1, 7, 31, 32, 33, 65, 224):
        h0, hs = C.stage_sizes(r)
        x = subnet.eval().first_conv(torch.zeros(1, 3, r, r))
        assert x.shape[2] == h0 == math.ceil(r / 2)
        sizes, pos = [], 1
        x = subnet.blocks[0](x)
        for d in space.smallest()["d"]:
            for block in subnet.blocks[pos:pos + d]:
                x = block(x)
            pos += d
            sizes.append(x.shape[2])
        assert tuple(sizes) == hs


def test_binary_default_and_override():
    arch_b = get_space("cbnmobilenetv3", 32, 32).sample(1, 3)[0]
    arch_t = dict({k: v for k, v in arch_b.items() if k != "b"}, t=[0.1 if b else 1 for b in arch_b["b"]])
    assert exit_mask(arch_t) == exit_mask(arch_b)
    for r in (64, 224):
        # NACHOS heads have one more output; the choice of pool may differ, but binary=... reproduces either
        assert C.exit_pool_sizes(arch_b, r) == C.exit_pool_sizes(arch_t, r, binary=True)
        assert C.exit_pool_sizes(arch_t, r) == C.exit_pool_sizes(arch_b, r, binary=False)


def test_resolution_from_arch():
    space = get_space("eemobilenetv3", 32, 224, 4)
    arch = space.sample(1, 7)[0]
    assert C.count(arch) == C.count({k: v for k, v in arch.items() if k != "r"}, resolution=arch["r"])
    assert C.exit_pool_sizes(arch) == C.exit_pool_sizes(arch, resolution=arch["r"])
    # an explicit resolution overrides the arch's
    assert C.count(arch, resolution=32) == C.count({k: v for k, v in arch.items() if k != "r"}, resolution=32)


def test_count_many_equals_count():
    archs = get_space("cbnmobilenetv3", 32, 224, 4).sample(50, 11)
    assert C.count_many(archs, 100) == [C.count(a, 100) for a in archs]
    assert C.count_many(archs, 100, resolution=40) == [C.count(a, 100, 40) for a in archs]
    assert C.count_many([], 10) == []


# ------------------------------------------------------------------------------------------- bad input
ARCH = {"d": [2] * 5, "ks": [3] * 10, "e": [3] * 10}


@pytest.mark.parametrize("arch,kwargs", [
    (ARCH, {}),  # no resolution anywhere
    (ARCH, {"resolution": 0}),
    (ARCH, {"resolution": 32.5}),
    (ARCH, {"resolution": "32"}),
    (dict(ARCH, r=-4), {}),
    (dict(ARCH, d=[2, 2, 2, 2]), {"resolution": 32}),
    (dict(ARCH, ks=[3] * 9), {"resolution": 32}),
    (dict(ARCH, e=[3] * 9 + [5]), {"resolution": 32}),
    (dict(ARCH, t=[0.1, 0.3, 1, 1]), {"resolution": 32}),
    (dict(ARCH, b=[0, 0, 0, 0]), {"resolution": 32}),
    (dict(ARCH, t=[1, 1, 1, 1], b=[1, 1, 1, 1]), {"resolution": 32}),
    ([1, 2, 3], {"resolution": 32}),
])
def test_bad_input_raises_arch_error(arch, kwargs):
    with pytest.raises(ArchError):
        C.count(arch, **kwargs)
    kw = dict(kwargs)
    with pytest.raises(ArchError):
        C.exit_pool_sizes(arch, **kw)
    with pytest.raises(ArchError):
        C.count_many([arch], **kw)


@pytest.mark.parametrize("n_classes", [0, -3, 2.5, True, "10"])
def test_bad_n_classes_raises_config_error(n_classes):
    with pytest.raises(ConfigError):
        C.count(ARCH, n_classes=n_classes, resolution=32)
    with pytest.raises(ConfigError):
        C.count_many([ARCH], n_classes=n_classes, resolution=32)


# ------------------------------------------------------------------------------------------- tiny_ml
def test_tiny_ml():
    assert C.tiny_ml(1.0, 40.0, 2.0) == pytest.approx(1.0 + 1.0 + 2.0)
    # over pmax: penalty on the excess only
    assert C.tiny_ml(3.0, 0.0, 0.0) == pytest.approx(3.0 + 1e10 * 1.0)
    assert C.tiny_ml(0.0, 0.0, 6.0) == pytest.approx(6.0 + 1e10 * 1.0)
    assert C.tiny_ml(0.0, 50.0, 0.0, mmax=40) == pytest.approx((50.0 + 1e10 * 10) / 40)
    assert C.tiny_ml(1, 2, 3, wp=0, wm=0, wa=0) == 0
    assert C.tiny_ml(2.0, 0.0, 5.0) == pytest.approx(7.0)  # at the limits: no penalty
    v = C.tiny_ml(np.array([1.0, 3.0]), np.array([40.0, 40.0]), np.array([2.0, 2.0]))
    assert v.shape == (2,) and v[0] == pytest.approx(4.0) and v[1] > 1e9
    assert isinstance(C.tiny_ml(1.0, 1.0, 1.0), float)


# ------------------------------------------------------------------------------------------- the EENetwork
@pytest.mark.parametrize("name,seed", [("eemobilenetv3", 3), ("cbnmobilenetv3", 4)])
def test_eenetwork_cost_pieces(supernets, name, seed):
    """EENetwork.backbone_up_to(i) / exit_head(i) (what avg_macs code may measure) agree with the counts."""
    from cnas.models import EENetwork, build_network

    cases = [c for c in sample(name, 6, seed) if any(exit_mask(c[0]))][:4]
    for arch, r, n in cases:
        net = build_network(arch, n, supernet=supernets[n], resolution=r)
        assert isinstance(net, EENetwork)
        got = C.count(arch, n_classes=n, resolution=r)
        x = torch.randn(1, 3, r, r)
        for i in range(net.n_exits):
            bp, bm, _, feat = measure(net.backbone_up_to(i), x)
            hp, hm, _, _ = measure(net.exit_head(i), feat)
            assert (round(got["backbone_params"][i] * 1e6), round(got["backbone_macs"][i] * 1e6)) == (bp, bm)
            assert (round(got["classifiers_params"][i] * 1e6), round(got["classifiers_macs"][i] * 1e6)) == (hp, hm)
