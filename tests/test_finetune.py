"""Fine-tuning a picked folder (``python -m cnas.train --model_path <pick>``): files beside the search's, the
original's recipe as defaults, resume after an interruption, early-exit re-tuning, bad checkpoints."""

import json
import shutil
from dataclasses import asdict

import pytest
import torch

from cnas import complexity
from cnas.errors import run_cli
from cnas.evaluation import EvalSettings
from cnas.fileio import atomic_torch_save
from cnas.finetune import finetune, finetune_settings
from cnas.models import build_network
from cnas.spaces import get_space
from cnas.train import main as train_main

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit:FutureWarning")
FAST = ["--epochs", "2", "--optim", "SGD", "--batch_size", "64", "--num_threads", "1", "--quiet"]


def small(name="mobilenetv3", **extra):
    arch = get_space(name, 32, 32).smallest()
    arch.update(extra)
    arch["r"] = 32
    return arch


def make_pick(folder, arch, ckpt=True):
    """A folder as cnas.post_search writes it: net.subnet, net.stats, pick.json (and ckpt.pth)."""
    ev = EvalSettings(epochs=1, batch_size=64, save_ckpt=ckpt, warmup_ee_epochs=1)
    folder.mkdir(parents=True)
    (folder / "net.subnet").write_text(json.dumps(arch))
    (folder / "net.stats").write_text(json.dumps({"top1": 50.0}))
    if ckpt:  # weights as the search keeps them (untrained here: only their use is tested)
        torch.manual_seed(1)
        model = build_network(arch, 10, resolution=32)
        atomic_torch_save(folder / "ckpt.pth", {"state_dict": model.state_dict(), "arch": arch, "n_classes": 10,
                                                "resolution": 32, "dataset": "digits", "thresholds": []})
    (folder / "pick.json").write_text(json.dumps({"arch": arch, "n_classes": 10, "evaluation": asdict(ev)}))
    return folder


def cli(*args):
    try:
        return run_cli(train_main, [str(a) for a in args], prog="cnas.train")
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def pick(tmp_path_factory):
    return make_pick(tmp_path_factory.mktemp("ft") / "net-trade-off_0", small())


def without_seconds(d):
    return {k: v for k, v in d.items() if k != "seconds"}


@pytest.mark.slow
def test_finetune_writes_beside_the_search_files_and_resumes(pick, tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(pick, a)
    shutil.copytree(pick, b)
    search_stats = (a / "net.stats").read_bytes()
    assert cli("--model_path", a, *FAST) == 0
    assert (a / "net.stats").read_bytes() == search_stats  # never overwritten
    st = json.loads((a / "net.finetuned.stats").read_text())
    counts = complexity.count(small(), 10, 32)
    assert 0 <= st["test_top1"] <= 100 and 0 <= st["top1"] <= 100 and st["top1_split"] == "val"
    assert st["params"] == round(counts["params"], 2) and st["macs"] == round(counts["macs"], 2)
    assert st["init"] == "ckpt.pth" and st["epochs"] == 2 and st["dataset"] == "digits"
    # the original's fine-tuning recipe where no flag overrides it
    assert st["recipe"]["lr"] == 0.1 and st["recipe"]["rho"] == 2.0 and st["recipe"]["label_smoothing"] == 0.1
    ck = torch.load(a / "ckpt.finetuned.pth", weights_only=True)
    old = torch.load(a / "ckpt.pth", weights_only=True)
    assert ck["arch"] == small() and ck["n_classes"] == 10
    assert any(not torch.equal(ck["state_dict"][k], old["state_dict"][k]) for k in old["state_dict"]
               if k.endswith("weight"))

    # interrupted right after the first epoch's checkpoint, then the same command again
    import cnas.training.trainer as trainer

    real_save = trainer.atomic_torch_save
    calls = []

    def killed_after_first(path, obj):
        real_save(path, obj)
        calls.append(path)
        raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(trainer, "atomic_torch_save", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        cli("--model_path", b, *FAST)
    monkeypatch.setattr(trainer, "atomic_torch_save", real_save)
    assert len(calls) == 1 and (b / "train_state.pth").exists() and not (b / "net.finetuned.stats").exists()
    assert cli("--model_path", b, *FAST) == 0
    resumed = json.loads((b / "net.finetuned.stats").read_text())
    assert without_seconds(resumed) == without_seconds(st)

    # other settings on top of an existing training state: refused, one line
    assert cli("--model_path", b, *FAST[:-2], "--epochs", "3") == 2


@pytest.mark.slow
def test_early_exit_from_random_init_retunes_exits(tmp_path, capsys):
    arch = small("cbnmobilenetv3", b=[0, 1, 0, 1])
    folder = make_pick(tmp_path / "net-trade-off_1", arch, ckpt=False)
    settings = finetune_settings(folder, {"epochs": 1, "optim": "SGD", "batch_size": 64, "warmup_ee_epochs": 1,
                                          "mmax": 5.0})
    assert settings.tune_epsilon and settings.dataset == "digits"
    st = finetune(folder, settings)
    assert "random initialisation" in capsys.readouterr().err
    assert st["init"] == "random"
    for key in ("exits_ratio", "test_exits_ratio"):
        assert len(st[key]) == 3 and abs(sum(st[key]) - 1) < 0.02
    costs = st["exit_costs"]
    assert min(costs) - 0.01 <= st["test_avg_macs"] <= max(costs) + 0.01
    assert all(0.1 - 1e-9 <= e <= 0.9 + 1e-9 for e in st["epsilon"][:-1])
    ck = torch.load(folder / "ckpt.finetuned.pth", weights_only=True)
    assert ck["thresholds"] == st["epsilon"]
    assert json.loads((folder / "net.stats").read_text()) == {"top1": 50.0}
    from cnas.export import export  # what fine-tuning writes is what export reads

    rec = export(folder, "torchscript", n_check=4)
    assert rec["checkpoint"].endswith("ckpt.finetuned.pth") and rec["exit_agreement"] == 1.0
    assert rec["early_exit"]["thresholds"] == st["epsilon"]


def test_incompatible_checkpoint_is_one_line(pick, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(pick, other)
    (other / "net.subnet").write_text(json.dumps(get_space("mobilenetv3", 32, 32).largest() | {"r": 32}))
    assert cli("--model_path", other, *FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ckpt.pth" in err[0] and "another arch" in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("--model_path", empty) == 2
    assert "without net.subnet" in capsys.readouterr().err


def test_recipe_covers_the_training_fields_and_the_pick_gives_the_task(tmp_path):
    from dataclasses import fields

    from cnas.finetune import FINETUNE_RECIPE, RECIPE_KEYS
    from cnas.training.trainer import TrainConfig

    assert {f.name for f in fields(TrainConfig)} <= RECIPE_KEYS
    folder = make_pick(tmp_path / "p", small(), ckpt=False)
    rec = json.loads((folder / "pick.json").read_text())
    rec["evaluation"].update(select="last", channels_last=True, bn_recal_images=512, lr=0.5, mmax=7.0,
                             val_split=0.3)
    (folder / "pick.json").write_text(json.dumps(rec))
    s = finetune_settings(folder, {"epochs": 3})
    assert (s.select, s.channels_last, s.bn_recal_images, s.lr) == ("val_loss", None, 2000, 0.1)  # the recipe's
    assert (s.mmax, s.val_split, s.n_classes, s.epochs) == (7.0, 0.3, 10, 3)  # the task's, then the layer's
    assert FINETUNE_RECIPE.bn_recal_images == 2000 and EvalSettings().bn_recal_images == 512


def test_the_library_module_does_not_import_the_cli():
    import subprocess
    import sys

    code = "import sys, cnas.finetune; assert 'cnas.cli' not in sys.modules, sorted(sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_resumed_sam_finetune_equals_an_uninterrupted_one(pick, tmp_path, monkeypatch):
    """The recipe's SAM: killed after its first epoch's state file, then the same command again; the weights
    equal those of an uninterrupted fine-tune bit for bit (the state holds SAM's base SGD momentum)."""
    import cnas.training.trainer as trainer

    args = ["--epochs", "2", "--batch_size", "256", "--bn_recal_images", "256", "--num_threads", "1", "--quiet"]
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(pick, a)
    shutil.copytree(pick, b)
    assert cli("--model_path", a, *args) == 0
    real_save = trainer.atomic_torch_save

    def killed(path, obj):
        real_save(path, obj)
        raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(trainer, "atomic_torch_save", killed)
    with pytest.raises(KeyboardInterrupt):
        cli("--model_path", b, *args)
    monkeypatch.setattr(trainer, "atomic_torch_save", real_save)
    state = torch.load(b / "train_state.pth", weights_only=True)
    assert len(state["history"]) == 1 and state["config"]["optim"] == "SAM"
    assert state["optimizer"]["state"] and all("momentum_buffer" in s for s in state["optimizer"]["state"].values())
    assert cli("--model_path", b, *args) == 0
    done_a = torch.load(a / "ckpt.finetuned.pth", weights_only=True)["state_dict"]
    done_b = torch.load(b / "ckpt.finetuned.pth", weights_only=True)["state_dict"]
    assert done_a.keys() == done_b.keys()
    assert all(torch.equal(done_a[k], done_b[k]) for k in done_a)
    st_a, st_b = (json.loads((f / "net.finetuned.stats").read_text()) for f in (a, b))
    assert without_seconds(st_a) == without_seconds(st_b)
