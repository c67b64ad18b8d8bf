"""Width 1.2 (OFA's ``ofa_mbv3_d234_e346_k357_w1.2``): closed-form counts equal the networks built at that width,
hand-derived figures of the w1.2 layout, and the width carried through evaluation, checkpoints, preflight and
the objective set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnas import complexity as C
from cnas.errors import CheckpointError, ConfigError
from cnas.evaluation import EvalSettings, preflight, run_pipeline
from cnas.models import EENetwork, build_network, build_supernet, save_supernet
from cnas.models.checkpoint import load_net_checkpoint, save_net_checkpoint
from cnas.objectives import ObjectiveSet
from cnas.spaces import exit_mask, get_space
from cnas.spaces import geometry as G
from test_complexity import measure, measure_eenet

torch.set_num_threads(1)
W = 1.2


@pytest.fixture(scope="module")
def wide():
    torch.manual_seed(0)
    return {n: build_supernet(n, width_mult=W) for n in (10, 1000)}


def _cases(name: str, n: int, seed: int):
    space = get_space(name, 32, 64, 4)
    rng = np.random.default_rng(seed)
    out = [(space.smallest(), 32, 10), (space.largest(), 64, 1000)]
    for arch in space.sample(n, rng):
        out.append((arch, arch["r"], 10))
    return out


def test_widths_at_1_2():
    w = G.widths(W)
    assert (w.stem, w.first_block, w.stages, w.final_expand, w.feature_mix) == (24, 24, (32, 48, 96, 136, 192),
                                                                                 1152, 1536)
    assert G.width_of_stem(24) == 1.2 and G.width_of_stem(16) == 1.0
    with pytest.raises(ValueError, match="no official width"):
        G.width_of_stem(20)


def test_plain_counts_equal_built_networks(wide):
    for arch, r, n in _cases("mobilenetv3", 12, 0):
        net = build_network(arch, n, supernet=wide[n], resolution=r)
        params, macs, acts, _ = measure(net, torch.randn(1, 3, r, r))
        got = C.count(arch, n, r, width_mult=W)
        assert (round(got["params"] * 1e6), round(got["macs"] * 1e6), round(got["activations"] * 1e6)) == (
            params, macs, acts), (arch, r, n)
        assert got != C.count(arch, n, r)  # another network than at width 1.0


@pytest.mark.parametrize("name,seed", [("eemobilenetv3", 1), ("cbnmobilenetv3", 2)])
def test_early_exit_counts_equal_built_networks(wide, name, seed):
    e6 = lambda v: [round(u * 1e6) for u in v]  # noqa: E731
    n_ee = 0
    for arch, r, n in _cases(name, 10, seed):
        net = build_network(arch, n, supernet=wide[n], resolution=r, width_mult=W)
        got = C.count(arch, n, r, width_mult=W)
        if not isinstance(net, EENetwork):
            assert not any(exit_mask(arch))
            continue
        n_ee += 1
        assert net.width_mult == W
        total, exits = measure_eenet(net, r)
        stages = [i for i, m in enumerate(exit_mask(arch)) if m]
        assert [c for _, _, (c, _) in exits[:-1]] == [G.stage_widths(W)[i] for i in stages]
        assert e6(got["backbone_macs"]) == [bk[1] for bk, _, _ in exits]
        assert e6(got["classifiers_params"]) == [hd[0] for _, hd, _ in exits]
        assert e6(got["classifiers_macs"]) == [hd[1] for _, hd, _ in exits]
        assert round(got["macs"] * 1e6) == exits[-1][0][1] + exits[-1][1][1]
        assert (round(got["params"] * 1e6), round(got["activations"] * 1e6)) == (total[0], total[2])
        assert got["pool_sizes"] == net.pool_sizes == C.exit_pool_sizes(arch, r, n, width_mult=W)
    assert n_ee >= 8


def test_hand_derived_figures_of_the_w1_2_layout():
    """Figures worked out by hand from the w1.2 widths (stem 24, stages 32/48/96/136/192, head 1152/1536)."""
    small = get_space("mobilenetv3").smallest()
    # classifier Linear(1536, n): going from 10 to 1000 classes adds 990 x (1536 + 1) params and 990 x 1536 MACs
    a, b = C.count(small, 10, 224, width_mult=W), C.count(small, 1000, 224, width_mult=W)
    assert round((b["params"] - a["params"]) * 1e6) == 990 * 1537
    assert round((b["macs"] - a["macs"]) * 1e6) == 990 * 1536
    # the stem (3x3 conv 3 -> 24, stride 2, BN) and fixed first block (depthwise 3x3 on 24 + BN, 1x1 24 -> 24 + BN)
    # at r = 224 (112 x 112 maps) plus everything after them: the stem's MACs are 3*3*3*24 * 112^2
    stem_macs = 3 * 3 * 3 * 24 * 112 * 112 + (3 * 3 * 24 + 24 * 24) * 112 * 112
    # the tail at 7 x 7: final expand 1x1 192 -> 1152 (+BN), feature mix 1152 -> 1536 on 1x1, classifier 1536 -> 10
    tail_macs = 192 * 1152 * 7 * 7 + 1152 * 1536 + 1536 * 10
    # the five stages of the smallest arch (d 2, k 3, e 3; SE in stages 2, 4, 5 with mid // 4 rounded to 8)
    sizes, cin, h, stage_macs = (56, 28, 14, 14, 7), 24, 112, 0
    for cout, s, se in zip((32, 48, 96, 136, 192), sizes, (False, True, False, True, True)):
        for j in range(2):
            c = cin if j == 0 else cout
            mid = G.make_divisible(c * 3)
            h_in = h if j == 0 else s
            red = G.make_divisible(mid // 4)
            stage_macs += c * mid * h_in * h_in + 9 * mid * s * s + (2 * mid * red if se else 0) + mid * cout * s * s
        cin, h = cout, s
    assert round(a["macs"] * 1e6) == stem_macs + stage_macs + tail_macs


def test_objective_set_counts_at_the_settings_width():
    archs = [dict(a, r=32) for a in get_space("mobilenetv3", 32, 32).sample(5, np.random.default_rng(3))]
    oset = ObjectiveSet.from_settings(["top1", "macs"], EvalSettings(width_mult=W), 10)
    assert oset.width_mult == W
    vals = oset.exact_values(archs)
    assert list(vals["macs"]) == [C.count(a, 10, width_mult=W)["macs"] for a in archs]
    assert list(vals["params"]) == [C.count(a, 10, width_mult=W)["params"] for a in archs]


def test_width_setting_is_checked_and_leaves_the_hash_alone():
    from cnas.config import SearchConfig, settings_hash

    assert settings_hash(SearchConfig(), EvalSettings(width_mult=1.0)) == settings_hash(SearchConfig(), EvalSettings())
    assert settings_hash(SearchConfig(), EvalSettings(width_mult=W)) != settings_hash(SearchConfig(), EvalSettings())
    for bad in (1.1, 0, True, "1.2"):
        with pytest.raises(ConfigError, match="--width_mult must be 1.0 or 1.2"):
            EvalSettings(width_mult=bad).validate()
    with pytest.raises(ConfigError, match="width"):
        C.count(get_space("mobilenetv3").smallest(), 10, 32, width_mult=-1)


@pytest.fixture(scope="module")
def wide_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("wide")
    torch.manual_seed(0)
    save_supernet(d / "digits_w1.2.pth", build_supernet(10, width_mult=W), {"dataset": "digits"})
    return d / "digits_w1.2.pth"


def test_preflight_takes_a_wide_supernet_only_at_width_1_2(wide_file):
    fast = dict(epochs=0, supernet_path=str(wide_file))
    preflight(EvalSettings(**fast, width_mult=W))
    with pytest.raises(CheckpointError, match=r"width-1.2 supernet, not width 1.0; pass --width_mult 1.2"):
        preflight(EvalSettings(**fast))


@pytest.mark.slow
def test_inherited_evaluation_and_checkpoint_at_width_1_2(wide_file, tmp_path):
    """A digits evaluation on a width-1.2 supernet: counts at 1.2, the checkpoint records the width and rebuilds
    the same network; training one epoch from random weights works at 1.2 too."""
    from cnas.evaluation import Outputs

    arch = dict(get_space("eemobilenetv3", 32, 32).smallest(), t=[1, 0.2, 1, 1], r=32)
    ev = EvalSettings(epochs=0, supernet_path=str(wide_file), width_mult=W, warmup_ee_epochs=1, seed=0)
    stats = run_pipeline(arch, ev, outputs=Outputs(tmp_path, ckpt="ckpt.pth"))
    c = C.count(arch, 10, 32, width_mult=W)
    assert stats["macs"] == round(c["macs"], 2) and stats["params"] == round(c["params"], 2)
    assert stats["width_mult"] == W
    net, meta = load_net_checkpoint(tmp_path / "ckpt.pth")
    assert meta["width_mult"] == W and isinstance(net, EENetwork) and net.width_mult == W
    plain = dict(get_space("mobilenetv3", 32, 32).smallest(), r=32)
    stats = run_pipeline(plain, EvalSettings(epochs=1, width_mult=W, seed=0, eval_test=False))
    assert stats["macs"] == round(C.count(plain, 10, 32, width_mult=W)["macs"], 2) and stats["top1"] < 90


def test_checkpoint_of_another_width_does_not_fit(tmp_path):
    arch = dict(get_space("mobilenetv3", 32, 32).smallest(), r=32)
    torch.manual_seed(0)
    net = build_network(arch, 10, width_mult=W)
    save_net_checkpoint(tmp_path / "ckpt.pth", net, arch, 10, 32, width_mult=W)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_net_checkpoint(tmp_path / "ckpt.pth", build_network(arch, 10))
    torch.save({"state_dict": net.state_dict(), "arch": arch, "n_classes": 10, "width_mult": 1.5},
               tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="'width_mult' must be one of"):
        load_net_checkpoint(tmp_path / "bad.pth")
