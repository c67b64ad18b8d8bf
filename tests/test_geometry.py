"""cnas.spaces.geometry agrees with the networks ofa and cnas.models build (widths, strides, map sizes, blocks,
exit heads), for both official width multipliers; and it stays free of torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from cnas.errors import ArchError
from cnas.models import EENetwork, build_network, build_supernet, get_subnet
from cnas.spaces import SPACES, geometry as G, get_space

torch.set_num_threads(1)

MIXED = {  # depths < 4 in several stages: a stage-blind mapping of ks/e would build another net
    "d": [2, 3, 4, 2, 3],
    "ks": [3, 5, 7, 3, 5, 3, 5, 7, 3, 5, 7, 3, 3, 5],
    "e": [3, 4, 6, 3, 4, 3, 4, 6, 3, 4, 6, 6, 6, 3],
}


@pytest.fixture(scope="module", params=G.WIDTH_MULTS)
def supernet(request):
    torch.manual_seed(0)
    return request.param, build_supernet(10, width_mult=request.param)


def _archs():
    plain = get_space("mobilenetv3")
    return [plain.smallest(), plain.largest(), MIXED]


def test_geometry_imports_no_torch():
    code = "import sys, cnas.spaces.geometry, cnas.complexity; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_widths_and_blocks_match_the_built_subnet(supernet):
    w, net = supernet
    widths = G.widths(w)
    assert net.first_conv.conv.out_channels == widths.stem
    conv = net.final_expand_layer.conv  # conv weights are (out, in, k, k)
    assert tuple(conv.weight.shape[:2]) == (widths.final_expand, widths.stages[-1])
    assert tuple(net.feature_mix_layer.conv.weight.shape[:2]) == (widths.feature_mix, widths.final_expand)
    assert net.classifier.linear.in_features == widths.feature_mix
    for arch in _archs():
        sub = get_subnet(net, arch)
        spec = G.blocks(arch, w)
        assert len(spec) == len(sub.blocks) == 1 + sum(arch["d"])
        assert sub.first_conv.conv.out_channels == widths.stem and sub.first_conv.conv.stride == (G.STEM_STRIDE,) * 2
        for b, block in zip(spec, sub.blocks):
            conv = block.conv
            got = (conv.in_channels, conv.out_channels, conv.kernel_size, conv.expand_ratio, conv.stride,
                   conv.use_se, conv.act_func)
            assert got == (b.cin, b.cout, b.kernel, b.expand, b.stride, b.se, b.act), (arch, b)
            assert conv.depth_conv.conv.out_channels == b.mid
            assert (block.shortcut is not None) == b.residual
            if b.se:
                assert conv.depth_conv.se.fc.reduce.out_channels == G.se_channels(b.mid)
        ends = G.stage_end_blocks(arch)
        assert [sub.blocks[i].conv.out_channels for i in ends] == list(widths.stages)
        assert all(sub.blocks[i + 1].conv.stride > 1 or sub.blocks[i + 1].conv.in_channels !=
                   sub.blocks[i + 1].conv.out_channels for i in ends[:-1])  # each stage ends where the next begins


@pytest.fixture(scope="module")
def mixed_subnet():
    torch.manual_seed(0)
    return get_subnet(build_supernet(10), MIXED).eval()


@pytest.mark.parametrize("r", [1, 7, 31, 32, 33, 57, 64, 96, 224])
def test_feature_sizes_match_a_forward_pass(mixed_subnet, r):
    sub = mixed_subnet
    seen = {}
    hooks = [sub.blocks[i].register_forward_hook(lambda m, i_, o, i=i: seen.__setitem__(i, o.shape))
             for i in range(len(sub.blocks))]
    with torch.no_grad():
        stem = sub.first_conv(torch.zeros(1, G.INPUT_CHANNELS, r, r))
        sub(torch.zeros(1, G.INPUT_CHANNELS, r, r))
    for h in hooks:
        h.remove()
    h0, hs = G.stage_sizes(r)
    assert stem.shape[2] == h0 == seen[0][2]
    assert tuple(seen[i][2] for i in G.stage_end_blocks(MIXED)) == hs == G.feature_sizes(r)


@pytest.mark.parametrize("w", G.WIDTH_MULTS)
@pytest.mark.parametrize("extra", [{"t": [0.1, 1, 0.2, 0.2]}, {"b": [1, 1, 1, 1]}, {"b": [0, 0, 1, 0]}])
def test_exit_heads_match_the_eenetwork(w, extra):
    torch.manual_seed(0)
    arch, r = {**MIXED, **extra, "r": 32}, 32
    net = build_network(arch, 10, resolution=r, width_mult=w)
    assert isinstance(net, EENetwork)
    specs = G.exit_heads(arch, r, 10, net.pool_sizes, width_mult=w)
    assert net.exit_blocks == [s.block for s in specs] + [G.stage_end_blocks(arch)[-1]]
    assert net.exit_positions == G.exit_positions(arch) == [s.stage + 1 for s in specs] + [G.N_STAGES]
    assert net.policy == G.exit_policy(G.binary_heads(arch))
    assert net.thresholds == G.default_thresholds(arch)
    for spec, head in zip(specs, net.heads):
        convs = [m for m in head if isinstance(m, nn.Conv2d)]
        assert [(c.in_channels, c.out_channels) for c in convs] == spec.convs
        assert convs[0].in_channels == net.backbone.blocks[spec.block].conv.out_channels
        lin = [m for m in head if isinstance(m, nn.Linear)][0]
        assert (lin.in_features, lin.out_features) == (spec.linear_in, spec.n_out)
        pools = [m for m in head if isinstance(m, nn.MaxPool2d)]
        assert (pools[0].kernel_size if pools else 1) == spec.pool and spec.side >= 1
        x = torch.zeros(1, spec.channels, spec.size, spec.size)
        assert head(x).shape == (1, spec.n_out)


def test_space_of_and_exit_keys():
    assert tuple(SPACES) == G.SPACE_NAMES
    for name, cls in SPACES.items():
        assert cls.exit_key == G.EXIT_KEYS[name] and tuple(cls.exit_values) == G.EXIT_VALUES[name]
        space = get_space(name, 32, 32)
        for arch in space.sample(5, 0) + [space.smallest(), space.largest()]:
            assert G.space_of(arch) == name
            assert G.exit_key(arch) == G.EXIT_KEYS[name]
            assert G.has_exit_genes(arch) == (name in (G.EDANAS, G.NACHOS))
            assert G.exit_mask(arch) == space.exit_mask(arch)
    assert G.space_of({"t": [1] * 4, "b": [1] * 4}) == G.EDANAS
    with pytest.raises(ArchError, match="JSON object"):
        G.space_of([1, 2])


def test_helpers():
    assert G.widths(1.0) == (16, 16, (24, 40, 80, 112, 160), 960, 1280)
    assert G.stage_widths(1.2) == (32, 48, 96, 136, 192)
    with pytest.raises(ValueError):
        G.widths(0)
    assert G.supernet_setting(MIXED)["ks"][:8] == [3, 5, 5, 5, 7, 3, 5, 5]
    assert [G.fit_pool(4, s) for s in (1, 2, 3, 4)] == [1, 2, 2, 4]
    assert G.exit_blocks({**MIXED, "b": [0, 1, 0, 1]}) == [5, 11, 14]
    assert G.exit_policy(True) == "cumulative_confidence" and G.exit_policy(False) == "score_margin"


def test_as_resolution_is_the_one_check_of_an_input_resolution():
    from cnas.spaces.geometry import MAX_RESOLUTION, as_resolution

    assert as_resolution(32) == 32 and as_resolution(32.0) == 32 and as_resolution(MAX_RESOLUTION) == MAX_RESOLUTION
    for bad in (0, -4, MAX_RESOLUTION + 1, 32.5, True, "32", None, [32]):
        assert as_resolution(bad) is None
