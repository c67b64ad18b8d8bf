"""The resnet50 space (OFA's ResNet-50 supernet) end to end: genes, encoding, closed-form counts equal to the built
networks, weight inheritance from a checkpoint in OFA's layout, a tiny search that writes stats and resumes, the
post-search picks, and the flags the space refuses.

The supernet checkpoint is made here from a freshly built ``OFAResNets`` (10 classes, seeded), saved as OFA saves
it: ``{"state_dict": ...}`` of the dynamic network.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cnas import complexity as C
from cnas import post_search, profile, search
from cnas import train as train_cli
from cnas.errors import ArchError, CheckpointError, run_cli
from cnas.evaluation import EvalSettings, run_pipeline
from cnas.models import (
    build_network,
    build_supernet,
    get_subnet,
    load_supernet,
    save_supernet,
)
from cnas.models.checkpoint import check_supernet_file, load_net_checkpoint
from cnas.models.counting import measure_counts
from cnas.models.ofa_resnet import build_resnet_supernet, set_active_resnet
from cnas.spaces import get_space, space_of
from cnas.spaces import resnet_geometry as R

torch.set_num_threads(1)

# tiny candidates: one batch of training images, a small validation subset, no test split
FAST = ["--train_images", "48", "--val_images", "48", "--bn_recal_images", "48", "--eval_test", "false",
        "--num_threads", "1", "--first_predictor", "rbf", "--pop_size", "10", "--n_gens", "2", "--quiet"]


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return build_resnet_supernet(10)


@pytest.fixture(scope="module")
def ofa_ckpt(supernet, tmp_path_factory):
    """A ResNet-50 supernet checkpoint in OFA's layout (the dynamic net's state dict under ``state_dict``)."""
    path = tmp_path_factory.mktemp("supernets") / "ofa_resnet50_digits.pth"
    torch.save({"state_dict": supernet.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def mbv3_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mbv3") / "mbv3.pth"
    save_supernet(path, build_supernet(10), {"dataset": "digits"})
    return path


def _run(main, prog, argv, capsys):
    """``main(argv)`` as its entry point runs it: ``(exit code, stdout, stderr)``."""
    try:
        rc = run_cli(main, argv, prog=prog)
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------------------- space
def test_genes_and_encoding_round_trip():
    fixed, varying = get_space("resnet50", 32, 32), get_space("resnet50", 32, 40, 4)
    assert (fixed.n_var, varying.n_var) == (29, 30)
    assert fixed.xu.tolist() == [1] + [2] * 4 + [2] * 18 + [2] * 6
    for space in (fixed, varying):
        archs = space.sample(60, np.random.default_rng(0)) + [space.smallest(), space.largest()]
        for arch in archs:
            assert space_of(arch) == "resnet50" and set(arch) <= {"d", "e", "w", "r"}
            x = space.encode(arch)
            assert space.decode(x) == arch == space.validate(arch)
            assert np.array_equal(space.repair(x), x)  # canonical
            run = {b for idx in R.active_blocks(arch["d"]) for b in idx}
            assert all(arch["e"][b] == 0.2 for b in range(R.N_BLOCKS) if b not in run)
            assert arch["d"][0] in (0, 2)
        design = space.initial_design(8, np.random.default_rng(1))
        assert len({space.key(a) for a in design}) == 8
    assert fixed.smallest() == {"d": [0] * 5, "e": [0.2] * 18, "w": [0] * 6}
    assert fixed.largest() == {"d": [2] * 5, "e": [0.35] * 18, "w": [2] * 6}
    # OFA's own arch dicts are read into the one canonical arch of their network
    ofa = {"d": [1, 0, 0, 0, 0], "e": [0.35] * 18, "w": [2, 2, 2, 2, 2, 2]}
    canon = fixed.validate(ofa)
    assert canon["d"][0] == 0 and canon["e"][2:4] == [0.2, 0.2] and canon["e"][:2] == [0.35, 0.35]
    # a vector's genes of skipped blocks are zeroed by repair
    x = fixed.encode(fixed.largest())
    x[1] = 0  # stage 1 depth 0: blocks 2 and 3 skipped
    assert fixed.repair(x)[5 + 2: 5 + 4].tolist() == [0, 0]


@pytest.mark.parametrize("arch,needle", [
    ({"d": [0] * 5, "e": [0.2] * 18}, "missing the field 'w'"),
    ({"d": [0] * 5, "e": [0.2] * 17, "w": [0] * 6}, "'e' must hold 18"),
    ({"d": [0] * 5, "e": [0.3] * 18, "w": [0] * 6}, "0.2, 0.25, 0.35"),
    ({"d": [3, 0, 0, 0, 0], "e": [0.2] * 18, "w": [0] * 6}, "field 'd'"),
    ({"d": [0] * 5, "e": [0.2] * 18, "w": [0] * 5}, "field 'w'"),
    ({"d": [0] * 5, "e": [0.2] * 18, "w": [0] * 6, "ks": [3]}, "MobileNetV3"),
])
def test_bad_archs(arch, needle):
    with pytest.raises(ArchError, match=needle):
        get_space("resnet50", 32, 32).validate(arch)


def test_mobilenetv3_space_names_a_resnet_arch():
    with pytest.raises(ArchError, match="belongs to resnet50"):
        get_space("mobilenetv3", 32, 32).validate({"d": [2] * 5, "ks": [3] * 10, "e": [3] * 10, "w": [0] * 6})


# ------------------------------------------------------------------------------------------- counts
def measure(module: nn.Module, r: int) -> tuple[int, int, int]:
    return measure_counts(module, r)[:3]


def test_widths_are_the_supernets(supernet):
    mids, outs = R.stem_widths()
    assert list(mids) == supernet.input_stem[0].out_channel_list and list(outs) == supernet.input_stem[2].out_channel_list
    for s, idx in enumerate(supernet.grouped_block_index):
        assert list(R.stage_widths()[s]) == supernet.blocks[idx[0]].out_channel_list
        assert len(idx) == R.STAGE_BLOCKS[s]


def test_counts_equal_built_networks(supernet):
    space = get_space("resnet50", 32, 32)
    rng = np.random.default_rng(3)
    cases = [(space.smallest(), 32), (space.largest(), 33)]
    cases += [(a, int(rng.choice([32, 36, 40, 57, 64]))) for a in space.sample(10, rng)]
    cases += [(space.smallest(), 224)]
    for arch, r in cases:
        got = C.count(arch, 10, r)
        assert set(got) == {"params", "macs", "activations"}
        want = measure(get_subnet(supernet, arch), r)
        assert (round(got["params"] * 1e6), round(got["macs"] * 1e6), round(got["activations"] * 1e6)) == want, \
            (arch, r)
    # figures measured once on ofa's smallest subnet at 32 px, 10 classes
    small = C.count(space.smallest(), 10, 32)
    assert (round(small["params"] * 1e6), round(small["macs"] * 1e6)) == (5_223_570, 19_622_752)
    assert C.count_many([space.with_resolution(space.smallest())], 10)[0] == small
    assert C.exit_pool_sizes(space.smallest(), 32) == []


def test_subnet_output_equals_the_supernets(supernet):
    arch = get_space("resnet50", 32, 32).sample(1, 5)[0]
    sub = get_subnet(supernet, arch).eval()
    set_active_resnet(supernet, arch)
    supernet.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(supernet(x), sub(x))


# ------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_in_ofas_layout(supernet, ofa_ckpt, mbv3_ckpt, tmp_path):
    loaded = load_supernet(ofa_ckpt, 10, space="resnet50")
    own = supernet.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in loaded.state_dict().items())
    assert check_supernet_file(ofa_ckpt, 10, space="resnet50") == {}
    assert check_supernet_file(ofa_ckpt, 10, space=None) == {}  # the keys tell its family
    with pytest.raises(CheckpointError, match="OFA ResNet-50 supernet, not one of the mobilenetv3 space"):
        check_supernet_file(ofa_ckpt, 10)
    with pytest.raises(CheckpointError, match="OFA MobileNetV3 supernet, not one of the resnet50 space"):
        check_supernet_file(mbv3_ckpt, 10, space="resnet50")
    with pytest.raises(CheckpointError, match="not the resnet50 space's"):
        load_supernet(mbv3_ckpt, 10, space="resnet50")
    # a network checkpoint of a resnet50 arch rebuilds its network
    arch = {**get_space("resnet50", 32, 32).sample(1, 2)[0], "r": 32}
    net = build_network(arch, 10, supernet=loaded)
    from cnas.models.checkpoint import save_net_checkpoint
    save_net_checkpoint(tmp_path / "ckpt.pth", net, arch, 10, 32)
    again, _meta = load_net_checkpoint(tmp_path / "ckpt.pth", arch=arch, n_classes=10)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), again.eval()(x))


@pytest.mark.slow
def test_inherited_evaluation(ofa_ckpt):
    """--n_epochs 0 measures the supernet's sub-network as it is, batch norm re-estimated."""
    space = get_space("resnet50", 32, 32)
    arch = space.with_resolution(space.smallest())
    ev = EvalSettings(epochs=0, supernet_path=str(ofa_ckpt), val_images=48, bn_recal_images=48, eval_test=False,
                      search_space="resnet50")
    st = run_pipeline(arch, ev)
    assert st["inherited"] is True and 0 <= st["top1"] <= 100
    assert st["macs"] == round(C.count(arch, 10)["macs"], 2) == 19.62


# ------------------------------------------------------------------------------------------- search
@pytest.mark.slow
def test_search_from_scratch_writes_stats_and_resumes(tmp_path, capsys):
    save = tmp_path / "run"
    argv = ["--search_space", "resnet50", "--save", str(save), "--sec_obj", "macs", "--n_doe", "3", "--n_iter", "2",
            "--n_epochs", "1", *FAST]
    rc, out, err = _run(search.main, "cnas.search", [*argv, "--iterations", "1"], capsys)
    assert rc == 0, err
    assert "on resnet50" in out and "iter 1:" in out
    for it in (0, 1):
        rec = json.loads((save / f"iter_{it}.stats").read_text())
        for entry in rec["archive"]:
            assert space_of(entry[0]) == "resnet50"
    stats = json.loads((save / "iter_0" / "net_0" / "net_0.stats").read_text())
    arch = json.loads((save / "iter_0" / "net_0" / "net_0.subnet").read_text())
    assert arch == {"d": [0] * 5, "e": [0.2] * 18, "r": 32, "w": [0] * 6}  # the smallest first
    assert stats["macs"] == 19.62 and stats["history"] and stats["inherited"] is False
    rc, out, err = _run(search.main, "cnas.search", ["--resume", str(save / "iter_1.stats"), "--iterations", "2",
                                                       "--quiet"], capsys)
    assert rc == 0, err
    assert len(json.loads((save / "iter_2.stats").read_text())["archive"]) == 3 + 2 + 2


@pytest.mark.slow
def test_inherited_search_and_post_search(tmp_path, ofa_ckpt, capsys):
    save = tmp_path / "run"
    argv = ["--search_space", "resnet50", "--save", str(save), "--sec_obj", "macs", "--n_doe", "4", "--n_iter", "2",
            "--iterations", "1", "--n_epochs", "0", "--supernet_path", str(ofa_ckpt), *FAST]
    rc, _out, err = _run(search.main, "cnas.search", argv, capsys)
    assert rc == 0, err
    rc, _out, err = _run(post_search.main, "cnas.post_search",
                        ["--expr", str(save), "-n", "2", "--supernet_path", str(ofa_ckpt), "--prefer", "macs"], capsys)
    assert rc == 0, err
    picks = sorted((save / "post_search").glob("net-macs_*"))
    assert picks
    for pick in picks:
        rec = json.loads((pick / "pick.json").read_text())
        assert space_of(rec["arch"]) == "resnet50" and rec["evaluation"]["search_space"] == "resnet50"
        net, meta = load_net_checkpoint(pick / "inherited.pth", arch=rec["arch"], n_classes=10)
        assert meta["arch"] == rec["arch"]
        assert sum(p.numel() for p in net.parameters()) == round(C.count(rec["arch"], 10)["params"] * 1e6)
    first = json.loads((picks[0] / "pick.json").read_text())
    assert first["values"]["macs"] == min(json.loads((p / "pick.json").read_text())["values"]["macs"] for p in picks)
    assert (save / "post_search" / "results.csv").is_file()


# ------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("flags,needle", [
    (["--width_mult", "1.2"], "--width_mult 1.2 is a MobileNetV3 supernet width"),
    (["--latency_table", "luts/x.yaml"], "--latency_table: latency tables time the operations of the MobileNetV3"),
    (["--lmax", "5"], "--lmax: latency tables"),
    (["--sec_obj", "latency"], "the objective latency reads a latency table"),
    (["--quantize"], "--quantize"),
    (["--first_obj", "top1_int8"], "no int8 path"),
    (["--tune_epsilon"], "--tune_epsilon sets up early exits; the resnet50 space has none"),
    (["--method", "joint"], "--method sets up early exits"),
    (["--support_set"], "--support_set sets up early exits"),
    (["--sec_obj", "avg_macs"], "early-exit space"),
])
def test_search_refuses_what_the_space_lacks(tmp_path, capsys, flags, needle):
    save = tmp_path / "run"
    argv = ["--search_space", "resnet50", "--save", str(save), "--sec_obj", "macs", *flags]
    rc, _out, err = _run(search.main, "cnas.search", argv, capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("cnas.search: error: ") and needle in err, err
    assert not save.exists()


def test_search_refuses_a_mobilenetv3_supernet(tmp_path, capsys, mbv3_ckpt):
    save = tmp_path / "run"
    argv = ["--search_space", "resnet50", "--save", str(save), "--supernet_path", str(mbv3_ckpt), "--n_epochs", "0"]
    rc, _out, err = _run(search.main, "cnas.search", argv, capsys)
    assert rc == 2 and "OFA MobileNetV3 supernet, not one of the resnet50 space" in err and err.count("\n") == 1
    assert not save.exists()


def test_tools_refuse(tmp_path, capsys, mbv3_ckpt):
    arch = tmp_path / "net.subnet"
    arch.write_text(json.dumps({"d": [0] * 5, "e": [0.2] * 18, "w": [0] * 6, "r": 32}))
    rc, out, err = _run(profile.main, "cnas.profile", [str(arch), "--width_mult", "1.2"], capsys)
    assert rc == 2 and "--width_mult 1.2 is a MobileNetV3 supernet width" in err
    rc, out, err = _run(profile.main, "cnas.profile", [str(arch), "--json"], capsys)
    assert rc == 0 and json.loads(out)["macs"] == pytest.approx(19.622752)
    rc, out, err = _run(train_cli.main, "cnas.train", ["--model_path", str(arch), "--output_path", str(tmp_path / "o"),
                                                       "--supernet_path", str(mbv3_ckpt), "--epochs", "0"], capsys)
    assert rc == 2 and "not the resnet50 space's" in err and err.count("\n") == 1
    rc, out, err = _run(train_cli.main, "cnas.train", ["--model_path", str(arch), "--quantize"], capsys)
    assert rc == 2 and "no int8 path" in err
    from cnas import latency
    rc, out, err = _run(latency.main, "cnas.latency", ["build", "--save", str(tmp_path / "t.yaml"), "--search_space",
                                                       "resnet50", "--lr", "32", "--ur", "32", "--quick"], capsys)
    assert rc == 2 and "latency tables time the operations of the MobileNetV3 spaces" in err
    assert not (tmp_path / "t.yaml").exists() and not (tmp_path / "o").exists()
