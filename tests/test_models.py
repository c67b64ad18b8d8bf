"""Tests of cnas.models: supernet loading, stage-aware extraction, BN recalibration, early-exit networks."""

import pickle

import pytest
import torch
import torch.nn as nn

from cnas.complexity import count, exit_pool_sizes
from cnas.errors import ArchError, CheckpointError, ConfigError, DataError
from cnas.models import (
    EENetwork,
    build_network,
    build_supernet,
    cumulative_confidence_exits,
    exit_probabilities,
    get_subnet,
    load_supernet,
    recalibrate_bn,
    save_supernet,
    score_margin,
    score_margin_exits,
    set_active_arch,
    subnet_stage_layers,
)
from cnas.models.ofa_net import feature_sizes
from cnas.spaces import stage_layers

R = 32
# depths < 4 in several stages: the original's in-order ks/e mapping would build a different net
ARCH = {
    "d": [2, 3, 4, 2, 3],
    "ks": [3, 5, 7, 3, 5, 3, 5, 7, 3, 5, 7, 3, 3, 5],
    "e": [3, 4, 6, 3, 4, 3, 4, 6, 3, 4, 6, 6, 6, 3],
}
T_ARCH = {**ARCH, "t": [0.1, 1, 0.2, 0.2], "r": R}
B_ARCH = {**ARCH, "b": [1, 1, 0, 1], "r": R}
BLOCK_KEY = "blocks.5.conv.depth_conv.conv.conv.weight"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def imagenet_sd():
    torch.manual_seed(0)
    return {k: v.clone() for k, v in build_supernet(1000).state_dict().items()}


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, imagenet_sd):
    d = tmp_path_factory.mktemp("supernets")
    torch.save({"state_dict": imagenet_sd}, d / "ofa_mbv3_d234_e346_k357_w1.0")
    old = {k.replace(".conv.", ".mobile_inverted_conv.", 1) if k.startswith("blocks.") else k: v
           for k, v in imagenet_sd.items()}
    assert any(".mobile_inverted_conv." in k for k in old)
    torch.save(old, d / "old_layout.pth")  # a bare state dict in the older key layout
    return d


@pytest.fixture(scope="module")
def supernet10():
    torch.manual_seed(1)
    return build_supernet(10)


def _x(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, R, R, generator=g)


# ---------------------------------------------------------------- checkpoints
def test_load_official_layout_inherits_weights_and_reinitialises_head(ckpt_dir, imagenet_sd):
    torch.manual_seed(5)
    net = load_supernet(ckpt_dir / "ofa_mbv3_d234_e346_k357_w1.0", n_classes=10)
    sd = net.state_dict()
    assert net.width_mult == 1.0
    for key in (BLOCK_KEY, "first_conv.conv.weight", "final_expand_layer.bn.running_var", "feature_mix_layer.conv.weight"):
        assert torch.equal(sd[key], imagenet_sd[key]), key
    assert sd["classifier.linear.weight"].shape == (10, 1280)
    assert not torch.equal(sd["classifier.linear.weight"], imagenet_sd["classifier.linear.weight"][:10])


def test_load_slice_head_keeps_first_rows_and_same_count_keeps_all(ckpt_dir, imagenet_sd):
    path = ckpt_dir / "ofa_mbv3_d234_e346_k357_w1.0"
    net = load_supernet(path, n_classes=10, head="slice")
    assert torch.equal(net.state_dict()["classifier.linear.weight"], imagenet_sd["classifier.linear.weight"][:10])
    assert torch.equal(net.state_dict()["classifier.linear.bias"], imagenet_sd["classifier.linear.bias"][:10])
    full = load_supernet(path, n_classes=1000)
    assert torch.equal(full.state_dict()["classifier.linear.weight"], imagenet_sd["classifier.linear.weight"])
    with pytest.raises(CheckpointError, match="n_classes <= its 1000"):
        load_supernet(path, n_classes=1001, head="slice")
    with pytest.raises(ConfigError, match="head="):
        load_supernet(path, n_classes=10, head="keep")


def test_load_old_key_layout_bare_state_dict(ckpt_dir, imagenet_sd):
    net = load_supernet(ckpt_dir / "old_layout.pth", n_classes=10, head="slice")
    sd = net.state_dict()
    for key in imagenet_sd:
        want = imagenet_sd[key][:10] if key.startswith("classifier.") else imagenet_sd[key]
        assert torch.equal(sd[key], want), key


def test_width_inferred_from_file_name_and_shapes(tmp_path):
    torch.manual_seed(2)
    sd = build_supernet(1000, width_mult=1.2).state_dict()
    named = tmp_path / "ofa_mbv3_d234_e346_k357_w1.2"
    plain = tmp_path / "weights.pth"
    torch.save({"state_dict": sd}, named)
    torch.save(sd, plain)
    for path in (named, plain):
        net = load_supernet(path, n_classes=10)
        assert net.width_mult == 1.2
        assert torch.equal(net.state_dict()[BLOCK_KEY], sd[BLOCK_KEY])
    with pytest.raises(CheckpointError, match="wrong shape for width 1.0"):
        load_supernet(plain, n_classes=10, width_mult=1.0)


def _one_line_error(path, **kw):
    with pytest.raises(CheckpointError) as info:
        load_supernet(path, n_classes=10, **kw)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_checkpoint_errors_name_file_and_problem(tmp_path, imagenet_sd):
    assert "not found" in _one_line_error(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(bytes(range(256)) * 8)
    assert "not a torch checkpoint" in _one_line_error(junk)

    wrong = dict(imagenet_sd)
    wrong[BLOCK_KEY] = torch.zeros(3, 1, 7, 7)
    torch.save({"state_dict": wrong}, tmp_path / "wrong_shape.pth")
    msg = _one_line_error(tmp_path / "wrong_shape.pth")
    assert "wrong shape" in msg and BLOCK_KEY in msg

    missing = {k: v for k, v in imagenet_sd.items() if k != BLOCK_KEY}
    torch.save(missing, tmp_path / "missing.pth")
    assert "missing" in _one_line_error(tmp_path / "missing.pth")

    extra = {**imagenet_sd, "blocks.99.conv.weird.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pth")
    assert "unknown" in _one_line_error(tmp_path / "extra.pth")

    torch.save({"state_dict": [1, 2, 3]}, tmp_path / "list.pth")
    assert "no state dict" in _one_line_error(tmp_path / "list.pth")

    with open(tmp_path / "pickle.pth", "wb") as fh:  # arbitrary pickle: refused by weights_only=True
        pickle.dump({"state_dict": {"x": ValueError("boom")}}, fh, protocol=2)
    assert "weights_only" in _one_line_error(tmp_path / "pickle.pth")


def test_cnas_format_roundtrip_with_meta(tmp_path):
    torch.manual_seed(3)
    net = build_supernet(10)
    path = save_supernet(tmp_path / "sn" / "supernet.pth", net, meta={"dataset": "cifar10", "epochs": 3})
    loaded, meta = load_supernet(path, n_classes=10, return_meta=True)
    assert meta["dataset"] == "cifar10" and meta["epochs"] == 3
    assert meta["format"] == "cnas-supernet" and meta["width_mult"] == 1.0 and meta["n_classes"] == 10
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    _, no_meta = load_supernet(path, n_classes=10, return_meta=True)
    assert no_meta == meta


# ---------------------------------------------------------------- subnets
def test_subnet_is_stage_aware_and_matches_supernet_output(supernet10):
    sub = get_subnet(supernet10, ARCH)
    assert subnet_stage_layers(sub) == stage_layers(ARCH)
    assert [len(s) for s in subnet_stage_layers(sub)] == ARCH["d"]
    # in block order (the original) stage 2's first block would get ks[4] = 5, e[4] = 4: stage-aware gives (7, 6)
    assert subnet_stage_layers(sub)[1][0] == (7, 6)
    sub.eval()
    supernet10.eval()
    set_active_arch(supernet10, ARCH)
    x = _x(3)
    with torch.no_grad():
        assert torch.equal(sub(x), supernet10(x))


def test_recalibrate_bn_sets_stats_to_the_data(supernet10):
    sub = get_subnet(supernet10, ARCH)
    bn = sub.first_conv.bn
    assert torch.equal(bn.running_mean, supernet10.first_conv.bn.running_mean)
    x1 = _x(4, seed=1) * 2 + 3
    x2 = _x(4, seed=2) - 5
    recalibrate_bn(sub, [(x1, torch.zeros(4)), (x2, torch.zeros(4))], n_batches=1)
    with torch.no_grad():
        y = sub.first_conv.conv(x1)
    assert torch.allclose(bn.running_mean, y.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, y.var(dim=(0, 2, 3), unbiased=False), rtol=1e-4, atol=1e-6)
    recalibrate_bn(sub, [x1, x2])  # bare tensors, both batches: the average of the two batch estimates
    with torch.no_grad():
        y2 = sub.first_conv.conv(x2)
    want = (y.mean(dim=(0, 2, 3)) + y2.mean(dim=(0, 2, 3))) / 2
    assert torch.allclose(bn.running_mean, want, atol=1e-5)
    with pytest.raises(DataError):
        recalibrate_bn(sub, [])


# ---------------------------------------------------------------- exit policies
def test_score_margin_policy_on_hand_made_logits():
    confident = torch.tensor([10.0, 0.0, 0.0])
    flat = torch.zeros(3)
    first = torch.stack([confident, flat, flat])  # sample 0 is confident at exit 0
    second = torch.stack([flat, confident, flat])  # sample 1 at exit 1; sample 2 nowhere
    final = torch.zeros(3, 3)
    logits = [first, second, final]
    assert score_margin_exits(logits, [0.5, 0.5, 1]).tolist() == [0, 1, 2]
    assert score_margin_exits(logits, [0.5, 0.5]).tolist() == [0, 1, 2]  # final threshold implied
    assert score_margin_exits(logits, [1, 1, 1]).tolist() == [2, 2, 2]  # thresholds of 1 force the final exit
    assert score_margin_exits(logits, [0, 0]).tolist() == [0, 0, 0]
    with pytest.raises(ConfigError):
        score_margin_exits(logits, [0.5])


def test_cumulative_confidence_policy_on_hand_made_confidences():
    c1 = torch.tensor([0.9, 0.1, 0.1])
    c2 = torch.tensor([0.0, 0.5, 0.1])
    conf = [c1, c2, torch.ones(3)]
    q = exit_probabilities(conf)
    assert torch.allclose(q.sum(dim=1), torch.ones(3))
    assert torch.allclose(q[1], torch.tensor([0.1, 0.45, 0.45]))
    # D: sample 0 -> 0.9 at exit 0; sample 1 -> 0.1, 0.55; sample 2 -> 0.1, 0.19
    assert cumulative_confidence_exits(conf, [0.5, 0.5]).tolist() == [0, 1, 2]
    assert cumulative_confidence_exits(conf, [1, 1, 1]).tolist() == [2, 2, 2]
    assert cumulative_confidence_exits(conf, [0.95, 0.5]).tolist() == [1, 1, 2]


# ---------------------------------------------------------------- early-exit networks
def test_build_network_kinds(supernet10):
    assert not isinstance(build_network(ARCH, 10, supernet10), EENetwork)
    assert not isinstance(build_network({**ARCH, "t": [1, 1, 1, 1]}, 10, supernet10), EENetwork)
    assert isinstance(build_network(T_ARCH, 10, supernet10), EENetwork)
    assert isinstance(build_network(B_ARCH, 10, supernet10), EENetwork)
    with pytest.raises(ConfigError, match="n_classes"):
        build_network(ARCH, 100, supernet10)
    with pytest.raises(ArchError, match="resolution"):
        build_network({k: v for k, v in T_ARCH.items() if k != "r"}, 10, supernet10)
    with pytest.raises(ArchError):
        build_network({**ARCH, "d": [1, 3, 4, 2, 3]}, 10, supernet10)


def test_eenetwork_t_shapes_and_attributes(supernet10):
    net = build_network(T_ARCH, 10, supernet10).eval()
    assert net.n_exits == 4 and not net.binary
    assert net.exit_positions == [1, 3, 4, 5]
    assert net.exit_blocks == [2, 9, 11, 14]
    assert net.thresholds == [0.1, 0.2, 0.2, 1.0]
    assert len(net.heads) == 3 and isinstance(net.heads, nn.ModuleList)
    assert net.pool_sizes == exit_pool_sizes(T_ARCH, R, 10, False)
    outs = net(_x(2))
    assert [tuple(o.shape) for o in outs] == [(2, 10)] * 4
    net.train()
    assert [tuple(o.shape) for o in net(_x(2))] == [(2, 10)] * 4


def test_eenetwork_b_shapes_binary_heads(supernet10):
    net = build_network(B_ARCH, 10, supernet10).eval()
    assert net.binary and net.n_exits == 4 and net.exit_positions == [1, 2, 4, 5]
    outs = net(_x(3))
    assert [tuple(o.shape) for o in outs] == [(3, 11)] * 3 + [(3, 10)]
    logits, conf = net.split(outs)
    assert [tuple(lg.shape) for lg in logits] == [(3, 10)] * 4
    assert torch.equal(conf[-1], torch.ones(3)) and all(((c > 0) & (c < 1)).all() for c in conf[:-1])


def test_params_match_closed_form_count(supernet10):
    for arch in (T_ARCH, B_ARCH):
        net = build_network(arch, 10, supernet10)
        n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
        assert n_params == round(count(arch, 10, R)["params"] * 1e6)


def test_pool_guard_on_32px(supernet10):
    arch = {**ARCH, "t": [0.1, 0.1, 0.1, 0.1], "r": R}
    sizes = feature_sizes(R)
    assert sizes[:4] == [8, 4, 2, 2]
    net = EENetwork(get_subnet(supernet10, arch), arch, 10, pool_sizes=[4, 4, 4, 4]).eval()
    assert net.pool_sizes == [4, 4, 2, 2]  # MaxPool(4) on a 2x2 map would fail
    assert [tuple(o.shape) for o in net(_x(2))] == [(2, 10)] * 5
    for p, h in zip(exit_pool_sizes(arch, R, 10), sizes):
        assert h // p >= 1


def test_forward_is_deterministic_and_seeded(supernet10):
    net = build_network(B_ARCH, 10, supernet10).eval()
    x = _x(2)
    with torch.no_grad():
        a, b = net(x), net(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    torch.manual_seed(7)
    n1 = build_network(T_ARCH, 10).eval()
    torch.manual_seed(7)
    n2 = build_network(T_ARCH, 10).eval()
    with torch.no_grad():
        assert all(torch.equal(u, v) for u, v in zip(n1(x), n2(x)))


@pytest.mark.parametrize("arch", [T_ARCH, B_ARCH])
def test_predict_picks_policy_exit_and_early_stop_agrees(supernet10, arch):
    net = build_network(arch, 10, supernet10)
    recalibrate_bn(net, [_x(4, seed=s) for s in range(2)])  # realistic stats: outputs differ between samples
    net.eval()
    x = _x(4, seed=3)
    with torch.no_grad():
        outs = net(x)
    logits, conf = net.split(outs)
    n = net.n_exits
    first = conf[0] if net.binary else score_margin(logits[0])
    mid = first.sort().values
    # half leave at exit 0, the rest at exit 1; the threshold lies midway between two samples, so the few ulps by
    # which a batch of 1 and a batch of 4 differ cannot move a sample across it
    mixed = [((mid[1] + mid[2]) / 2).item()] + [0.0] * (n - 2)
    assert set(net.predict(x, thresholds=mixed)[1].tolist()) == {0, 1}
    for eps in (None, [0.0] * (n - 1), [1.0] * n, [0.3] * (n - 1), mixed):
        got, idx = net.predict(x, thresholds=eps)
        assert torch.equal(idx, net.exit_indices(outs, eps))
        for s in range(4):
            assert torch.equal(got[s], logits[idx[s]][s])
            one, one_idx = net.predict(x[s : s + 1], thresholds=eps, early_stop=True)
            assert one_idx.item() == idx[s].item()
            assert torch.allclose(one[0], got[s], rtol=1e-4, atol=1e-4)  # batch size changes rounding
    assert net.predict(x, thresholds=[0.0] * (n - 1))[1].tolist() == [0] * 4
    assert net.predict(x, thresholds=[1.0] * n)[1].tolist() == [n - 1] * 4


def test_per_exit_pieces_compose_to_forward(supernet10):
    net = build_network(B_ARCH, 10, supernet10).eval()
    x = _x(2)
    with torch.no_grad():
        outs = net(x)
        for i in range(net.n_exits):
            feats = net.forward_features_to_exit(x, i)
            assert torch.allclose(net.exit_head(i)(feats), outs[i], atol=1e-6)
            assert torch.equal(net.backbone_up_to(i)(x), feats)
    assert feats.shape[-1] == feature_sizes(R)[-1]
    with pytest.raises(IndexError):
        net.exit_head(net.n_exits)
