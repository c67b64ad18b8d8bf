"""Bad input to ``cnas.train`` (an arch file, or a picked folder to fine-tune), ``cnas.export``, ``cnas.profile``
and ``cnas.supernet``: each case exits with code 2, prints exactly one line ``cnas.<name>: error: ...`` on stderr
(no traceback) and leaves every file and folder as it was.

Each case is a function that prepares its working folder (arch files, a picked folder with its checkpoint, written
here in the real formats) and returns the command's arguments. Nothing trains: every case is refused before the
first training step. Checkpoints are written by the test (supernets once per module) and read back with
``weights_only=True`` like every cnas checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path, PurePosixPath

import pytest
import torch
from conftest import write_supernet_files

from cnas import export, profile, supernet, train
from cnas.errors import run_cli
from cnas.evaluation import EvalSettings
from cnas.fileio import atomic_torch_save
from cnas.models import build_network
from cnas.spaces import get_space

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit:FutureWarning")
R = 32


def arch_of(name="mobilenetv3", largest=False, **extra):
    space = get_space(name, R, R)
    return {**(space.largest() if largest else space.smallest()), "r": R, **extra}


def net_checkpoint(path: Path, arch: dict, override: dict | None = None) -> Path:
    """A network checkpoint as the search and fine-tuning write it (random weights), with ``override`` items."""
    torch.manual_seed(0)
    model = build_network(arch, 10, resolution=R)
    ck = {"state_dict": model.state_dict(), "arch": arch, "n_classes": 10, "resolution": R, "dataset": "digits",
          "thresholds": [float(t) for t in getattr(model, "thresholds", [])]}
    ck.update(override or {})
    atomic_torch_save(path, ck)
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Files the cases only read: supernets (a cnas digits one; truncated, empty, text, width 1.2, another class
    count, another space), a network checkpoint, a pickle with a disallowed global, and a picked folder."""
    d = write_supernet_files(tmp_path_factory.mktemp("shared"))
    net_checkpoint(d / "net.pth", arch_of())
    torch.save({"state_dict": {}, "path": PurePosixPath("x")}, d / "global.pth")
    pick = d / "pick"
    pick.mkdir()
    (pick / "net.subnet").write_text(json.dumps(arch_of()))
    (pick / "net.stats").write_text(json.dumps({"top1": 50.0}))
    (pick / "pick.json").write_text(json.dumps({"arch": arch_of(), "n_classes": 10,
                                                "evaluation": asdict(EvalSettings(epochs=1))}))
    net_checkpoint(pick / "ckpt.pth", arch_of())
    return d


def _stamps(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


class Ctx:
    """A case's working folder (also the current directory): ``pick()`` copies the picked folder into it."""

    def __init__(self, root: Path, shared: Path):
        self.root, self.shared = root, shared

    def sn(self, name: str) -> str:
        return str(self.shared / name)

    def file(self, name: str, content: str | bytes = "") -> str:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
        return str(p)

    def arch(self, arch=None, name: str = "a.subnet") -> str:
        return self.file(name, arch if isinstance(arch, str) else json.dumps(arch if arch is not None else arch_of()))

    def pick(self) -> Path:
        dst = self.root / "pick"
        if not dst.exists():
            shutil.copytree(self.shared / "pick", dst)
        return dst


# ------------------------------------------------------------------------------------------------ cnas.train
def tr(*extra, arch=None):
    """cnas.train on an arch file in the working folder (the outputs would go beside it)."""
    return lambda c: ["--model_path", c.arch(arch), "--epochs", "1", "--quiet", *extra]


def tr_sn(name, *extra):
    return lambda c: ["--model_path", c.arch(), "--epochs", "1", "--quiet", "--supernet_path", c.sn(name), *extra]


def ft(*extra, prepare=None):
    """cnas.train fine-tuning a copy of the picked folder (``prepare(c, folder)`` damages it first)."""
    def case(c):
        folder = c.pick()
        if prepare is not None:
            prepare(c, folder)
        return ["--model_path", str(folder), "--epochs", "1", "--quiet", *extra]
    return case


def _cifar_bad(c):
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        c.file(f"cifar/cifar-10-batches-py/{name}", b"\x80\x04 truncated")
    return str(c.root / "cifar")


def _state(config: dict) -> dict:
    return {"model": {}, "optimizer": {}, "scheduler": {}, "history": [], "best_epoch": 0, "best_score": 0.0,
            "best_state": None, "rng": torch.get_rng_state(), "config": config}


def _ckpt(**override):
    return lambda c, folder: net_checkpoint(folder / "ckpt.pth", arch_of(), override)


def _other_weights(c, folder):
    """The pick's checkpoint with the weights of another arch (its arch entry unchanged)."""
    weights = build_network(arch_of(largest=True), 10, resolution=R).state_dict()
    net_checkpoint(folder / "ckpt.pth", arch_of(), {"state_dict": weights})


TRAIN_CASES = {
    # numeric settings: type, finiteness, range
    "resolution nan": (tr("--resolution", "nan"), "--resolution"),
    "resolution fraction": (tr("--resolution", "32.5"), "--resolution"),
    "resolution absurd": (tr("--resolution", "100000", arch={k: v for k, v in arch_of().items() if k != "r"}),
                          "--resolution"),
    "arch r fraction": (tr(arch=arch_of(r=32.5)), "'r'"),
    "arch r nan": (tr(arch=json.dumps(arch_of()).replace(f'"r": {R}', '"r": NaN')), "'r'"),
    "arch r string": (tr(arch=arch_of(r="32")), "'r'"),
    "arch r zero": (tr(arch=arch_of(r=0)), "'r'"),
    "lr nan": (tr("--lr", "nan"), "--lr"),
    "lr inf": (tr("--lr", "inf"), "--lr"),
    "lr zero": (tr("--lr", "0"), "--lr"),
    "device banana": (tr("--device", "banana"), "--device"),
    "device meta": (tr("--device", "meta"), "--device"),
    "momentum negative": (tr("--momentum", "-1"), "--momentum"),
    "momentum nan": (tr("--momentum", "nan"), "--momentum"),
    "num_threads negative": (tr("--num_threads", "-1"), "--num_threads"),
    "warmup_epochs nan": (tr("--warmup_epochs", "nan"), "--warmup_epochs"),
    "sigma_min nan": (tr("--sigma_min", "nan"), "--sigma_min"),
    "sigma_max nan": (tr("--sigma_max", "nan"), "--sigma_max"),
    "sigma range reversed": (tr("--eval_robust", "--sigma_min", "0.2", "--sigma_max", "0.1"), "--sigma_min"),
    "epochs negative": (tr("--epochs", "-1"), "--epochs"),
    "epochs fraction": (tr("--epochs", "2.5"), "--epochs"),
    "batch_size zero": (tr("--batch_size", "0"), "--batch_size"),
    "val_split 1.5": (tr("--val_split", "1.5"), "--val_split"),
    "n_classes zero": (tr("--n_classes", "0"), "--n_classes"),
    "n_classes not the data's": (tr("--n_classes", "7"), "--n_classes 7"),
    "seed negative": (tr("--seed", "-1"), "--seed"),
    "top1min above 1": (tr("--top1min", "2"), "--top1min"),
    "label_smoothing 1": (tr("--label_smoothing", "1"), "--label_smoothing"),
    "rho negative": (tr("--rho", "-1"), "--rho"),
    "bn_recal_images zero": (tr("--bn_recal_images", "0"), "--bn_recal_images"),
    # names and choices
    "optim adam": (tr("--optim", "adam"), "--optim"),
    "select unknown": (tr("--select", "best"), "--select"),
    "method unknown": (tr("--method", "early"), "--method"),
    "method bernulli on an EDANAS arch": (tr("--method", "bernulli", arch=arch_of("eemobilenetv3", t=[0.1, 1, 1, 1])),
                                          "bernulli"),
    "search_space unknown": (tr("--search_space", "resnet"), "--search_space"),
    "unknown flag": (tr("--bogus", "3"), "unrecognized"),
    "bool not a bool": (tr("--eval_test", "maybe"), "--eval_test"),
    # paths: output, arch file, config file
    "output_path a file": (lambda c: tr("--output_path", c.file("out.txt", "x"))(c), "--output_path"),
    "output_path under a file": (lambda c: tr("--output_path", str(Path(c.file("out.txt", "x")) / "sub"))(c),
                                 "is a file"),
    "name with a folder": (tr("--name", "../elsewhere"), "--name"),
    "model_path missing": (lambda c: ["--model_path", str(c.root / "nowhere.subnet")], "not found"),
    "model_path not an arch file": (lambda c: ["--model_path", c.file("notes.txt", "x")], "not an arch file"),
    "arch not JSON": (tr(arch='{"ks": ['), "not valid JSON"),
    "arch a list": (tr(arch=[1, 2, 3]), "JSON object"),
    "arch missing d": (tr(arch={"ks": [3] * 10, "e": [3] * 10, "r": R}), "'d'"),
    "arch kernel 9": (tr(arch=arch_of(ks=[9] * 10)), "ks"),
    "config missing": (lambda c: tr("--config", str(c.root / "none.yaml"))(c), "config file not found"),
    "config not YAML": (lambda c: tr("--config", c.file("s.yaml", "lr: [1,"))(c), "not valid YAML"),
    "config unknown key": (lambda c: tr("--config", c.file("s.yaml", "lrr: 0.1\n"))(c), "lrr"),
    "config lr nan": (lambda c: tr("--config", c.file("s.yaml", "lr: .nan\n"))(c), "--lr"),
    "config batch_size float": (lambda c: tr("--config", c.file("s.yaml", "batch_size: 2.5\n"))(c), "batch_size"),
    # data
    "dataset unknown": (tr("--dataset", "banana"), "unknown dataset"),
    "dataset without --data": (tr("--dataset", "cifar10"), "pass --data"),
    "data missing": (lambda c: tr("--dataset", "cifar10", "--data", str(c.root / "nowhere"))(c), "does not exist"),
    "data a file": (lambda c: tr("--dataset", "cifar10", "--data", c.file("data.txt", "x"))(c), "is a file"),
    "data malformed": (lambda c: tr("--dataset", "cifar10", "--data", _cifar_bad(c))(c), "cannot read"),
    # the supernet
    "n_epochs 0 without a supernet": (tr("--n_epochs", "0"), "--n_epochs 0"),
    "supernet missing": (tr_sn("missing.pth"), "does not exist"),
    "supernet a folder": (tr_sn("folder.pth"), "is a folder"),
    "supernet empty": (tr_sn("empty.pth"), "empty file"),
    "supernet truncated": (tr_sn("truncated.pth"), "not a torch checkpoint"),
    "supernet a text file": (tr_sn("text.pth"), "not a torch checkpoint"),
    "supernet of width 1.2": (tr_sn("wide.pth"), "width-1.2"),
    "supernet of another class count": (tr_sn("classes.pth"), "5 classes"),
    "supernet of another space": (tr_sn("space.pth"), "another space"),
    "supernet is a network checkpoint": (tr_sn("net.pth"), "keys"),
    "supernet with a disallowed global": (tr_sn("global.pth"), "PurePosixPath"),
    # fine-tuning a picked folder
    "pick with --name": (ft("--name", "x"), "--name"),
    "pick lr nan": (ft("--lr", "nan"), "--lr"),
    "pick output_path a file": (lambda c: ft("--output_path", c.file("out.txt", "x"))(c), "--output_path"),
    "pick without net.subnet": (lambda c: ["--model_path", str(Path(c.file("empty/x.txt")).parent)],
                                "without net.subnet"),
    "pick.json not JSON": (ft(prepare=lambda c, f: (f / "pick.json").write_text("{")), "not valid JSON"),
    "pick ckpt truncated": (ft(prepare=lambda c, f: (f / "ckpt.pth").write_bytes((f / "ckpt.pth").read_bytes()[:999])),
                            "ckpt.pth"),
    "pick ckpt of another arch": (ft(prepare=lambda c, f: net_checkpoint(f / "ckpt.pth", arch_of(largest=True))),
                                  "another arch"),
    "pick ckpt n_classes a string": (ft(prepare=_ckpt(n_classes="10")), "n_classes"),
    "pick ckpt weights of another network": (ft(prepare=_other_weights), "does not fit"),
    "pick ckpt with a disallowed global": (ft(prepare=lambda c, f: shutil.copy(c.sn("global.pth"), f / "ckpt.pth")),
                                           "PurePosixPath"),
    "pick train state corrupt": (ft(prepare=lambda c, f: (f / "train_state.pth").write_bytes(b"PK\x03\x04")),
                                 "train_state.pth"),
    "pick train state of another recipe": (ft(prepare=lambda c, f: torch.save(_state({"epochs": 99}),
                                                                              f / "train_state.pth")),
                                           "other settings"),
}


# ------------------------------------------------------------------------------------------------ cnas.export
def ex(*extra, prepare=None):
    def case(c):
        folder = c.pick()
        if prepare is not None:
            prepare(c, folder)
        return [str(folder), *extra]
    return case


EXPORT_CASES = {
    "atol nan": (ex("--atol", "nan"), "--atol"),
    "atol negative": (ex("--atol", "-1"), "--atol"),
    "atol inf": (ex("--atol", "inf"), "--atol"),
    "atol not a number": (ex("--atol", "tiny"), "--atol"),
    "format unknown": (ex("--format", "tflite"), "--format"),
    "output a folder": (lambda c: ex("--output", str(Path(c.file("outdir/x.txt")).parent))(c), "is a folder"),
    "output under a file": (lambda c: ex("--output", str(Path(c.file("out.txt", "x")) / "net.pt"))(c), "is a file"),
    "folder missing": (lambda c: [str(c.root / "nowhere")], "is not a folder"),
    "folder without weights": (lambda c: [str(Path(c.file("empty/x.txt")).parent)], "no trained weights"),
    "checkpoint missing": (lambda c: ex("--checkpoint", str(c.root / "none.pth"))(c), "not found"),
    "checkpoint empty": (lambda c: ex("--checkpoint", c.sn("empty.pth"))(c), "cannot be read"),
    "checkpoint truncated": (lambda c: ex("--checkpoint", c.sn("truncated.pth"))(c), "cannot be read"),
    "checkpoint with a disallowed global": (lambda c: ex("--checkpoint", c.sn("global.pth"))(c), "PurePosixPath"),
    "checkpoint is a supernet": (lambda c: ex("--checkpoint", c.sn("ok.pth"))(c), "not a cnas network checkpoint"),
    "n_classes a string": (ex(prepare=_ckpt(n_classes="ten")), "n_classes"),
    "n_classes zero": (ex(prepare=_ckpt(n_classes=0)), "n_classes"),
    "resolution nan": (ex(prepare=_ckpt(resolution=float("nan"))), "resolution"),
    "arch not valid": (ex(prepare=_ckpt(arch=arch_of(ks=[9] * 10))), "arch"),
    "state dict of another arch": (ex(prepare=_other_weights), "does not fit"),
    "state dict not tensors": (ex(prepare=_ckpt(state_dict={"w": [1, 2]})), "state_dict"),
    "thresholds not numbers": (ex(prepare=_ckpt(thresholds=["high"])), "thresholds"),
}


# ------------------------------------------------------------------------------------------------ cnas.profile
def pr(*extra, arch=None):
    return lambda c: [c.arch(arch), *extra]


PROFILE_CASES = {
    "resolution absurd": (pr("--resolution", "100000"), "resolution"),
    "resolution zero": (pr("--resolution", "0"), "resolution"),
    "resolution nan": (pr("--resolution", "nan"), "--resolution"),
    "arch r absurd": (pr(arch=arch_of(r=10 ** 9)), "resolution"),
    "arch r fraction": (pr(arch=arch_of(r=32.5)), "resolution"),
    "n_classes zero": (pr("--n_classes", "0"), "--n_classes"),
    "search_space unknown": (pr("--search_space", "resnet"), "--search_space"),
    "unknown flag (no usage block)": (pr("--jsn"), "unrecognized"),
    "missing arch argument": (lambda c: [], "required"),
    "arch file missing": (lambda c: [str(c.root / "none.subnet")], "not found"),
    "arch not JSON": (pr(arch="{"), "not valid JSON"),
    "arch genes out of the space": (pr(arch=arch_of(e=[5] * 10)), "e"),
}


# ------------------------------------------------------------------------------------------------ cnas.supernet
def sn(*extra, save=lambda c: str(c.root / "s.pth")):
    return lambda c: ["--save", save(c), "--quiet", "--epochs_full", "1", "--epochs_kernel", "0",
                      "--epochs_depth", "0", "--epochs_expand", "0", "--max_steps_per_epoch", "1", *extra]


def sn_init(name, *extra):
    return lambda c: sn("--init", c.sn(name), *extra)(c)


SUPERNET_CASES = {
    "init with a disallowed global": (sn_init("global.pth"), "PurePosixPath"),
    "init missing": (sn_init("missing.pth"), "--init"),
    "init truncated": (sn_init("truncated.pth"), "not a torch checkpoint"),
    "init a text file": (sn_init("text.pth"), "not a torch checkpoint"),
    "init a network checkpoint": (sn_init("net.pth"), "keys"),
    "init of another space": (sn_init("space.pth"), "another space"),
    "init of another width than given": (sn_init("ok.pth", "--width_mult", "1.2"), "width-1"),
    "device banana": (sn("--device", "banana"), "--device"),
    "train_lr nan": (sn("--train_lr", "nan"), "--train_lr"),
    "seed negative": (sn("--seed", "-1"), "--seed"),
    "width_mult 1.1": (sn("--width_mult", "1.1"), "--width_mult"),
    "ur absurd": (sn("--ur", "100000"), "--ur"),
    "val_split zero": (sn("--val_split", "0"), "--val_split"),
    "n_subnets 1": (sn("--n_subnets", "1"), "--n_subnets"),
    "every phase 0 epochs": (sn("--epochs_full", "0"), "0 epochs"),
    "kd_temperature zero": (sn("--kd_temperature", "0"), "--kd_temperature"),
    "save a folder": (sn(save=lambda c: str(Path(c.file("sdir/x.txt")).parent)), "is a folder"),
    "save under a file": (sn(save=lambda c: str(Path(c.file("f.txt", "x")) / "s.pth")), "is a file"),
    "dataset without --data": (sn("--dataset", "cifar10"), "pass --data"),
    "unknown flag": (sn("--bogus", "3"), "unrecognized"),
}


# ------------------------------------------------------------------------------------------------ the check
def _snapshot(root: Path) -> dict:
    """Every path under ``root`` with its content's hash (folders as such), so any change shows."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def _check(tmp_path, shared, capsys, monkeypatch, case, needle, main, prog):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    c = Ctx(work, shared)
    argv = case(c)
    before, shared_before = _snapshot(work), _stamps(shared)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv, prog=prog)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exc.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err and "weights_only=False" not in err and "usage:" not in err
    assert needle in lines[0], lines[0]
    assert _snapshot(work) == before
    assert _stamps(shared) == shared_before


@pytest.mark.parametrize("name", list(TRAIN_CASES))
def test_train_refuses(name, tmp_path, shared, capsys, monkeypatch):
    _check(tmp_path, shared, capsys, monkeypatch, *TRAIN_CASES[name], train.main, "cnas.train")


@pytest.mark.parametrize("name", list(EXPORT_CASES))
def test_export_refuses(name, tmp_path, shared, capsys, monkeypatch):
    _check(tmp_path, shared, capsys, monkeypatch, *EXPORT_CASES[name], export.main, "cnas.export")


@pytest.mark.parametrize("name", list(PROFILE_CASES))
def test_profile_refuses(name, tmp_path, shared, capsys, monkeypatch):
    _check(tmp_path, shared, capsys, monkeypatch, *PROFILE_CASES[name], profile.main, "cnas.profile")


@pytest.mark.parametrize("name", list(SUPERNET_CASES))
def test_supernet_refuses(name, tmp_path, shared, capsys, monkeypatch):
    _check(tmp_path, shared, capsys, monkeypatch, *SUPERNET_CASES[name], supernet.main, "cnas.supernet")


def test_the_table_is_large_enough():
    assert len(TRAIN_CASES) + len(EXPORT_CASES) + len(PROFILE_CASES) + len(SUPERNET_CASES) >= 45
