"""One candidate end to end on the bundled digits data: train, measure, files, failures, determinism, CLI."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import write_supernet_files

from cnas import complexity
from cnas.errors import ConfigError
from cnas.evaluation import CandidateTask, EvalSettings, evaluate_arch, evaluate_candidate
from cnas.spaces import get_space
from cnas.training.trainer import TrainingDiverged

torch.set_num_threads(1)
FAST = dict(epochs=1, batch_size=64, lr=0.05, warmup_ee_epochs=1, eval_test=True)


def small(name="mobilenetv3", **extra):
    arch = get_space(name, 32, 32).smallest()
    arch.update(extra)
    arch["r"] = 32
    return arch


@pytest.mark.slow
def test_single_exit_stats_and_files(tmp_path):
    arch = small()
    stats = evaluate_arch(arch, EvalSettings(**FAST, save_ckpt=True), tmp_path, "net_0")
    on_disk = json.loads((tmp_path / "net_0.stats").read_text())
    assert on_disk == stats
    assert json.loads((tmp_path / "net_0.subnet").read_text()) == arch
    assert 0 <= stats["top1"] <= 100 and stats["top1_split"] == "val" and "test_top1" in stats
    counts = complexity.count(arch, 10, 32)
    assert stats["params"] == round(counts["params"], 2) and stats["macs"] == round(counts["macs"], 2)
    ck = torch.load(tmp_path / "ckpt.pth", weights_only=True)
    assert ck["arch"] == arch and ck["n_classes"] == 10


@pytest.mark.slow
def test_same_seed_same_stats(tmp_path):
    arch = small()
    a = evaluate_arch(arch, EvalSettings(**FAST, seed=3))
    b = evaluate_arch(arch, EvalSettings(**FAST, seed=3))
    a.pop("seconds"), b.pop("seconds")
    assert a == b


@pytest.mark.slow
def test_edanas_joint_exit_stats(tmp_path):
    arch = small("eemobilenetv3", t=[0.1, 1, 0.2, 1])
    stats = evaluate_arch(arch, EvalSettings(**FAST), tmp_path, "net_1")
    assert len(stats["exits_ratio"]) == 3 and abs(sum(stats["exits_ratio"]) - 1) < 0.02
    assert stats["cumulative_threshold"] is False
    assert stats["epsilon"][:2] == [0.1, 0.2]  # EDANAS thresholds come from the arch unless tuned
    costs = stats["exit_costs"]
    assert costs == sorted(costs)
    assert min(costs) - 0.01 <= stats["avg_macs"] <= max(costs) + 0.01
    assert set(stats["branch_scores"]) == {"0", "1", "2", "global"}


@pytest.mark.slow
def test_nachos_bernulli_with_tuning(tmp_path):
    arch = small("cbnmobilenetv3", b=[0, 1, 0, 1])
    settings = EvalSettings(**FAST, ee_epochs=1, tune_epsilon=True, support_set=True, mmax=5.0)
    stats = evaluate_arch(arch, settings, tmp_path, "net_2")
    assert stats["cumulative_threshold"] is True
    assert set(stats["ece_scores"]) == {"0", "1", "2"}
    assert len(stats["support_conf"]) == 3
    assert all(0.1 - 1e-9 <= e <= 0.9 + 1e-9 for e in stats["epsilon"][:-1])


@pytest.mark.slow
def test_bernulli_needs_binary_heads():
    with pytest.raises(ConfigError, match="bernulli"):
        evaluate_arch(small("eemobilenetv3", t=[0.1, 1, 1, 1]), EvalSettings(**FAST, method="bernulli"))


@pytest.mark.slow
def test_robustness_and_top1_robust():
    stats = evaluate_arch(small(), EvalSettings(**FAST, eval_robust=True, n_draws=2, sigma_min=0.1, sigma_max=0.1,
                                                alpha_norm=2.0))
    assert len(stats["robustness"]) == 1 and stats["robustness"][0] >= 0
    expected = round(0.5 * stats["top1"] + 2.0 * 0.5 * stats["robustness"][0], 2)
    assert stats["top1_robust"] == pytest.approx(expected, abs=0.02)


def test_divergence_leaves_no_stats_file(tmp_path):
    with pytest.raises(TrainingDiverged):
        evaluate_candidate(CandidateTask(small(), EvalSettings(**{**FAST, "lr": 1e12}), str(tmp_path), "net_9"))
    assert (tmp_path / "net_9.subnet").exists()
    assert not (tmp_path / "net_9.stats").exists()


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cnas.train", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.mark.slow
def test_cli_trains_an_arch_file(tmp_path):
    f = tmp_path / "net_4.subnet"
    f.write_text(json.dumps(small()))
    r = run_cli("--model_path", str(f), "--epochs", "1", "--batch_size", "64", "--quiet", "--num_threads", "1")
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "net_4.stats").read_text())
    assert "top1" in stats and "net_4.stats" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["--model_path", "missing.subnet"], "arch file not found"),
    (["--model_path", "{bad}", "--epochs", "-1"], "--epochs"),
    (["--model_path", "{bad}", "--optim", "adam"], "--optim"),
    (["--model_path", "{bad}", "--dataset", "cifar10"], "--data"),
    (["--model_path", "{bad}", "--adaptive", "maybe"], "--adaptive"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    f = tmp_path / "a.subnet"
    f.write_text(json.dumps(small()))
    args = [str(f) if a == "{bad}" else a for a in args]
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "a.stats").exists()


def test_cli_bad_arch_is_one_line(tmp_path):
    f = tmp_path / "bad.subnet"
    f.write_text(json.dumps({"ks": [3], "e": [3], "d": [2, 2, 2, 2, 2], "r": 32}))
    r = run_cli("--model_path", str(f))
    assert r.returncode == 2 and "'ks'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    f.write_text("{not json")
    r = run_cli("--model_path", str(f))
    assert r.returncode == 2 and "not valid JSON" in r.stderr


def test_zero_epochs_needs_inherited_weights():
    with pytest.raises(ConfigError, match="--n_epochs 0"):
        EvalSettings(epochs=0).validate()
    with pytest.raises(ConfigError, match="--n_epochs 0"):
        EvalSettings(epochs=0, supernet_path="supernets/digits.pth", pretrained=False).validate()
    EvalSettings(epochs=0, supernet_path="supernets/digits.pth").validate()


@pytest.mark.slow
def test_joint_exits_on_a_frozen_backbone_leave_it_unchanged(monkeypatch):
    import cnas.training.early_exit as early_exit
    from cnas.data import load_data
    from cnas.models import EENetwork, get_subnet
    from cnas.models.ofa_net import build_supernet
    from cnas.training.early_exit import EEConfig, exit_costs, train_exits
    from cnas.training.trainer import TrainConfig

    torch.manual_seed(0)
    arch = small("eemobilenetv3", t=[0.1, 1, 0.2, 1])
    loaders = load_data("digits", resolution=32, batch_size=64, seed=0)
    model = EENetwork(get_subnet(build_supernet(10), arch), arch, 10, resolution=32)
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    heads = {k: v.clone() for k, v in model.heads.state_dict().items()}
    selected = []
    real_train = early_exit.train

    def spy(*args, **kw):
        selected.append(args[3].select)
        return real_train(*args, **kw)

    monkeypatch.setattr(early_exit, "train", spy)
    ee = EEConfig(method="joint", warmup_ee_epochs=1, freeze_backbone=True)
    costs = exit_costs(complexity.count(arch, 10, 32))
    train_exits(model, loaders.train, loaders.val, TrainConfig(epochs=1), ee, costs)
    assert all(torch.equal(v, backbone[k]) for k, v in model.backbone.state_dict().items())  # weights and BN stats
    assert any(not torch.equal(v, heads[k]) for k, v in model.heads.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    # the frozen path keeps the last epoch; joint training of the whole net keeps the most accurate one
    train_exits(model, loaders.train, loaders.val, TrainConfig(epochs=1), EEConfig(method="joint",
                warmup_ee_epochs=1), costs)
    assert selected == ["last", "val_acc"]


def test_net_checkpoint_roundtrip_and_refusals(tmp_path):
    from cnas.errors import CheckpointError
    from cnas.models import build_network
    from cnas.models.checkpoint import load_net_checkpoint, save_net_checkpoint

    arch = small("eemobilenetv3", t=[0.1, 1, 0.2, 1])
    torch.manual_seed(0)
    model = build_network(arch, 10, resolution=32)
    model.thresholds = [0.3, 0.4, 1.0]
    path = save_net_checkpoint(tmp_path / "ck.pth", model, arch, 10, 32, dataset="digits", mean=(0.1,) * 3,
                               std=(0.2,) * 3, source="supernet")
    ck = torch.load(path, weights_only=True)
    assert {"state_dict", "arch", "n_classes", "resolution", "dataset", "thresholds", "mean", "std", "source"} == set(ck)
    loaded, meta = load_net_checkpoint(path)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert loaded.thresholds == [0.3, 0.4, 1.0] and meta["source"] == "supernet" and meta["resolution"] == 32
    assert "state_dict" not in meta
    with pytest.raises(CheckpointError, match="another arch"):
        load_net_checkpoint(path, arch=small("eemobilenetv3", t=[1, 0.1, 1, 1]))
    with pytest.raises(CheckpointError, match="100 classes"):
        load_net_checkpoint(path, n_classes=100)
    with pytest.raises(CheckpointError, match="does not fit the network"):
        load_net_checkpoint(path, build_network(small(), 10))
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a cnas network checkpoint"):
        load_net_checkpoint(tmp_path / "other.pth")


@pytest.mark.slow
def test_checkpoint_initialisation_and_bn_recal_images(tmp_path, monkeypatch):
    import cnas.evaluation
    from cnas.evaluation import Init, initialise, load_run_data, setup

    arch = small()
    evaluate_arch(arch, EvalSettings(**FAST, save_ckpt=True), tmp_path, "net")
    saved = torch.load(tmp_path / "ckpt.pth", weights_only=True)["state_dict"]
    sizes = []
    real = cnas.evaluation.subset_loader
    monkeypatch.setattr(cnas.evaluation, "subset_loader",
                        lambda loader, n, **kw: sizes.append(n) or real(loader, n, **kw))
    run = setup(arch, EvalSettings(**FAST, bn_recal_images=100))
    load_run_data(run)
    initialise(run, Init("checkpoint", str(tmp_path / "ckpt.pth"), label="ckpt.pth"))
    assert all(torch.equal(v, saved[k]) for k, v in run.backbone.state_dict().items())
    assert sizes == [100] and not run.init.inherited and run.init.describe() == "ckpt.pth"
    assert EvalSettings().bn_recal_images == 512
    with pytest.raises(ConfigError, match="bn_recal_images"):
        EvalSettings(bn_recal_images=0).validate()
    with pytest.raises(ConfigError, match="needs a file"):
        Init("checkpoint")


# ------------------------------------------------------------------------------------------------ preflight
@pytest.fixture(scope="module")
def supernet_files(tmp_path_factory):
    """Supernet files in the real formats: a cnas digits supernet, a truncated and an empty copy, a width-1.2 one,
    one of another class count and one of another space, a network checkpoint and a text file."""
    d = write_supernet_files(tmp_path_factory.mktemp("supernets"))
    torch.save({"state_dict": {"w": torch.zeros(2)}, "arch": small(), "n_classes": 10}, d / "net.pth")
    return d


def test_preflight_accepts_valid_settings_and_leaves_the_random_state(supernet_files):
    from cnas.evaluation import preflight

    state = torch.get_rng_state()
    assert preflight(EvalSettings(**FAST)) is None
    assert preflight(EvalSettings(**{**FAST, "epochs": 0, "supernet_path": str(supernet_files / "ok.pth")})) is None
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("name, needle", [
    ("missing.pth", "does not exist"), ("folder.pth", "is a folder"), ("empty.pth", "is an empty file"),
    ("truncated.pth", "not a torch checkpoint"), ("text.pth", "not a torch checkpoint"),
    ("wide.pth", "width-1.2"), ("classes.pth", "trained for 5 classes"), ("space.pth", "another space"),
    ("net.pth", "no MobileNetV3 supernet weights"),
])
def test_preflight_refuses_a_bad_supernet(supernet_files, name, needle):
    from cnas.errors import CheckpointError
    from cnas.evaluation import preflight

    with pytest.raises(CheckpointError, match=needle) as err:
        preflight(EvalSettings(**FAST, supernet_path=str(supernet_files / name)))
    assert "--supernet_path" in str(err.value) or name in str(err.value)
    assert "weights_only=False" not in str(err.value)


@pytest.mark.parametrize("kw, needle", [
    (dict(dataset="cifar10"), "pass --data"), (dict(dataset="cifar10", data="nowhere"), "does not exist"),
    (dict(dataset="cifar10", data="file"), "is a file"), (dict(dataset="cifar10", data="."), "holds no"),
    (dict(dataset="cifar10", data="bad"), "cannot read"), (dict(n_classes=7), "--n_classes 7"),
    (dict(dataset="banana"), "unknown dataset"),
])
def test_preflight_refuses_bad_data(tmp_path, monkeypatch, kw, needle):
    from cnas.errors import DataError
    from cnas.evaluation import preflight

    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    batches = tmp_path / "bad" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (batches / name).write_bytes(b"\x80\x04 truncated")
    with pytest.raises(DataError, match=needle):
        preflight(EvalSettings(**{**FAST, **kw}))


@pytest.mark.parametrize("kw", [dict(lr=float("nan")), dict(device="banana"), dict(momentum=-1.0),
                                dict(resolution=100000), dict(search_space="resnet"), dict(seed=-1),
                                dict(eval_robust=True, sigma_min=0.2, sigma_max=0.1), dict(warmup_epochs=float("inf"))])
def test_preflight_refuses_bad_settings(kw):
    from cnas.evaluation import preflight

    with pytest.raises(ConfigError):
        preflight(EvalSettings(**{**FAST, **kw}))
