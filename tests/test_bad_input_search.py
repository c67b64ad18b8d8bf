"""Bad input to ``cnas.search`` and ``cnas.post_search``: each case exits with code 2, prints exactly one line
``cnas.<name>: error: ...`` on stderr (no traceback) and leaves every file and folder as it was.

Each case is a function that prepares its folder (a copy of a tiny finished search built with the fake executor of
conftest.py, possibly damaged) and returns the command's arguments; nothing here trains a network: every case is
refused before the first candidate.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import FakeExecutor

from cnas import post_search, search
from cnas.config import SearchConfig
from cnas.engine import Search
from cnas.errors import run_cli
from cnas.evaluation import EvalSettings
from cnas.fileio import FolderLock

TINY = ["--n_doe", "6", "--iterations", "2", "--n_iter", "2", "--sec_obj", "macs", "--first_predictor", "rbf",
        "--pop_size", "10", "--n_gens", "2", "--seed", "1", "--quiet"]
TINY_SETTINGS = dict(sec_obj="macs", n_doe=6, iterations=1, n_iter=2, pop_size=10, n_gens=2, first_predictor="rbf",
                     seed=1, plots=False, progress=False)


def _build(save: Path, **kw) -> Path:
    Search(SearchConfig(save=str(save), **{**TINY_SETTINGS, **kw}), EvalSettings(), log=lambda m: None,
           executor=FakeExecutor(ckpt=True)).run()
    return save


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Finished tiny searches (iterations 0 and 1): a plain one and an early-exit one."""
    base = tmp_path_factory.mktemp("runs")
    return {"plain": _build(base / "plain"), "ee": _build(base / "ee", search_space="eemobilenetv3")}


class Ctx:
    """A case's working folder: ``run`` is a copy of the plain search (``ee`` of the early-exit one on demand)."""

    def __init__(self, root: Path, runs: dict):
        self.root, self.runs = root, runs
        self.run = root / "run"
        shutil.copytree(runs["plain"], self.run)
        self.held: list[FolderLock] = []

    def ee(self) -> Path:
        dst = self.root / "ee"
        if not dst.exists():
            shutil.copytree(self.runs["ee"], dst)
        return dst

    def stats(self, it: int = 1, run: Path | None = None) -> dict:
        return json.loads(((run or self.run) / f"iter_{it}.stats").read_text())

    def write_stats(self, d: dict, it: int = 1) -> str:
        (self.run / f"iter_{it}.stats").write_text(json.dumps(d))
        return str(self.run / f"iter_{it}.stats")

    def edit_stats(self, fn, it: int = 1) -> str:
        d = self.stats(it)
        fn(d)
        return self.write_stats(d, it)

    def edit_config(self, fn, run: Path | None = None) -> None:
        p = (run or self.run) / "config.json"
        d = json.loads(p.read_text())
        fn(d)
        p.write_text(json.dumps(d))

    def file(self, name: str, text: str = "") -> str:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return str(p)

    def yaml(self, text: str) -> list[str]:
        return ["--config", self.file("settings.yaml", text)]


def _resume(c: Ctx, *extra) -> list[str]:
    return ["--resume", str(c.run / "iter_1.stats"), *extra]


def _set(d: dict, path: str, value) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def fresh(*extra):
    """A new search into ``<root>/new`` with ``extra`` flags."""
    return lambda c: ["--save", str(c.root / "new"), *TINY, *extra]


def stats_edit(path, value):
    def case(c):
        c.edit_stats(lambda d: _set(d, path, value))
        return _resume(c)
    return case


def stats_drop(key):
    def case(c):
        c.edit_stats(lambda d: d.pop(key))
        return _resume(c)
    return case


def config_edit(path, value):
    def case(c):
        c.edit_config(lambda d: _set(d, path, value))
        return _resume(c)
    return case


def _broken_json(c):
    (c.run / "iter_1.stats").write_text('{"archive": [')
    return _resume(c)


def _ee_stats_in_plain_folder(c):
    shutil.copy(c.ee() / "iter_1.stats", c.run / "iter_1.stats")
    return _resume(c)


def _ee_stats_with_the_plain_hash(c):
    d = c.stats(1, c.ee())
    d["settings_hash"] = c.stats(1)["settings_hash"]
    d["objectives"] = c.stats(1)["objectives"]
    c.write_stats(d)
    return _resume(c)


def _locked(c):
    c.held.append(FolderLock(c.run).acquire())
    return _resume(c, "--iterations", "2")


def _save_is_a_file(c):
    return ["--save", c.file("a_file"), *TINY]


def _save_under_a_file(c):
    return ["--save", str(Path(c.file("a_file")) / "sub"), *TINY]


def _supernet(text):
    return lambda c: ["--save", str(c.root / "new"), *TINY, "--n_epochs", "0", "--supernet_path",
                      c.file("net.pth", text)]


def _stats_as_later_iteration(c):
    shutil.copy(c.run / "iter_1.stats", c.run / "iter_2.stats")
    return ["--resume", str(c.run / "iter_2.stats")]


SEARCH_CASES = {
    # numeric settings: type, finiteness, range
    "pmax nan": (fresh("--pmax", "nan"), "--pmax"),
    "pmax inf": (fresh("--pmax", "inf"), "--pmax"),
    "pmax negative": (fresh("--pmax", "-1"), "--pmax"),
    "mmax nan": (fresh("--mmax", "nan"), "--mmax"),
    "amax zero": (fresh("--amax", "0"), "--amax"),
    "gpu nan": (fresh("--gpu", "nan"), "--gpu"),
    "gpu negative": (fresh("--gpu", "-1"), "--gpu"),
    "seed negative": (fresh("--seed", "-1"), "--seed"),
    "timeout zero": (fresh("--timeout", "0"), "--timeout"),
    "timeout nan": (fresh("--timeout", "nan"), "--timeout"),
    "timeout negative": (fresh("--timeout", "-5"), "--timeout"),
    "train_lr nan": (fresh("--train_lr", "nan"), "--lr"),
    "train_lr inf": (fresh("--train_lr", "inf"), "--lr"),
    "train_lr zero": (fresh("--train_lr", "0"), "--lr"),
    "val_split 1.5": (fresh("--val_split", "1.5"), "--val_split"),
    "val_split nan": (fresh("--val_split", "nan"), "--val_split"),
    "batch_size zero": (fresh("--batch_size", "0"), "--batch_size"),
    "batch_size negative": (fresh("--batch_size", "-1"), "--batch_size"),
    "n_classes zero": (fresh("--n_classes", "0"), "--n_classes"),
    "n_classes negative": (fresh("--n_classes", "-1"), "--n_classes"),
    "warmup_epochs nan": (fresh("--warmup_epochs", "nan"), "--warmup_epochs"),
    "momentum negative": (fresh("--momentum", "-1"), "--momentum"),
    "sigma_max nan": (fresh("--sigma_max", "nan"), "--sigma_max"),
    "top1min above 1": (fresh("--top1min", "2"), "--top1min"),
    "label_smoothing 1": (fresh("--label_smoothing", "1"), "--label_smoothing"),
    "n_epochs negative": (fresh("--n_epochs", "-1"), "--epochs"),
    "n_doe 1": (fresh("--n_doe", "1"), "--n_doe"),
    "n_doe not a number": (fresh("--n_doe", "ten"), "--n_doe"),
    "n_doe fraction": (fresh("--n_doe", "6.5"), "--n_doe"),
    "iterations negative": (fresh("--iterations", "-1"), "--iterations"),
    "n_iter zero": (fresh("--n_iter", "0"), "--n_iter"),
    "pop_size 1": (fresh("--pop_size", "1"), "--pop_size"),
    "as_folds 1": (fresh("--as_folds", "1"), "--as_folds"),
    "n_workers zero": (fresh("--n_workers", "0"), "--n_workers"),
    "resolution zero": (fresh("--lr", "0"), "--lr"),
    "resolutions reversed": (fresh("--lr", "40", "--ur", "32"), "resolution"),
    # names and choices
    "device banana": (fresh("--device", "banana"), "--device"),
    "device cuda:x": (fresh("--device", "cuda:x"), "--device"),
    "executor slurm": (fresh("--executor", "slurm"), "--executor"),
    "optim adam": (fresh("--optim", "adam"), "--optim"),
    "search_space resnet": (fresh("--search_space", "resnet"), "search space"),
    "sec_obj flops": (fresh("--sec_obj", "flops"), "flops"),
    "sec_obj avg_macs on a plain space": (fresh("--sec_obj", "avg_macs"), "early-exit"),
    "first_predictor svm": (fresh("--first_predictor", "svm"), "svm"),
    "pick random": (fresh("--pick", "random"), "--pick"),
    "constraint_mode soft": (fresh("--constraint_mode", "soft"), "--constraint_mode"),
    "unknown flag": (fresh("--no_such_flag", "1"), "unrecognized"),
    "bool flag not a bool": (fresh("--plots", "maybe"), "--plots"),
    # executor flags, checked before anything is written
    "gpu_list not ids": (fresh("--gpu_list", "a b"), "--gpu_list"),
    "gpu_list repeated": (fresh("--gpu_list", "0 0"), "--gpu_list"),
    "gpu_list missing device": (fresh("--gpu_list", "97"), "--gpu_list"),
    "ray_address with local executor": (fresh("--ray_address", "auto"), "--ray_address"),
    "ray_address malformed": (fresh("--executor", "ray", "--ray_address", "no such host!"), "--ray_address"),
    "gpu_list with ray": (fresh("--executor", "ray", "--gpu_list", "0"), "--gpu_list"),
    # evaluation pre-flight: data and supernet, before any candidate
    "n_epochs 0 without a supernet": (fresh("--n_epochs", "0"), "--n_epochs 0"),
    "data missing": (fresh("--dataset", "cifar10", "--data", "/nonexistent/cifar"), "--data"),
    "data is a file": (lambda c: ["--save", str(c.root / "new"), *TINY, "--dataset", "cifar10", "--data",
                                  c.file("cifar.txt", "x")], "--data"),
    "supernet missing": (lambda c: ["--save", str(c.root / "new"), *TINY, "--n_epochs", "0", "--supernet_path",
                                    str(c.root / "none.pth")], "--supernet_path"),
    "supernet empty": (_supernet(""), "--supernet_path"),
    "supernet not a torch file": (_supernet("not a checkpoint"), "net.pth"),
    # the output folder
    "save is a file": (_save_is_a_file, "is a file"),
    "save under a file": (_save_under_a_file, "is a file"),
    "save holds a search": (lambda c: ["--save", str(c.run), *TINY], "already holds a search"),
    # config files: checked as flags are
    "config missing": (lambda c: ["--save", str(c.root / "new"), *TINY, "--config", str(c.root / "no.yaml")],
                       "config file not found"),
    "config wrong type": (lambda c: ["--save", str(c.root / "new"), *c.yaml("n_doe: ten\n")], "n_doe"),
    "config float for int": (lambda c: ["--save", str(c.root / "new"), *c.yaml("n_doe: 6.5\n")], "n_doe"),
    "config bool for int": (lambda c: ["--save", str(c.root / "new"), *c.yaml("n_iter: true\n")], "n_iter"),
    "config nan learning rate": (lambda c: ["--save", str(c.root / "new"), *c.yaml("train_lr: .nan\n")], "lr"),
    "config inf limit": (lambda c: ["--save", str(c.root / "new"), *c.yaml("pmax: .inf\n")], "pmax"),
    "config negative iterations": (lambda c: ["--save", str(c.root / "new"), *c.yaml("iterations: -3\n")],
                                   "--iterations"),
    "config unknown key": (lambda c: ["--save", str(c.root / "new"), *c.yaml("n_dooe: 6\n")], "n_dooe"),
    "config not a mapping": (lambda c: ["--save", str(c.root / "new"), *c.yaml("- 1\n- 2\n")], "mapping"),
    "config not yaml": (lambda c: ["--save", str(c.root / "new"), *c.yaml("a: [1, 2\n")], "not valid YAML"),
    "config device banana": (lambda c: ["--save", str(c.root / "new"), *c.yaml("device: banana\n")], "--device"),
    # resume: the stats file as a whole
    "resume missing": (lambda c: ["--resume", str(c.root / "nowhere" / "iter_3.stats")], "no such file"),
    "resume unfinished iteration": (lambda c: ["--resume", str(c.run / "iter_5.stats")], "did not finish"),
    "resume not json": (_broken_json, "not valid JSON"),
    "resume rng_state broken": (stats_edit("rng_state.state", "x"), "rng_state"),
    "resume rng_state values": (stats_edit("rng_state.state.state", "not a number"), "rng_state"),
    "resume rng_state missing": (stats_drop("rng_state"), "rng_state"),
    "resume rng_state other generator": (stats_edit("rng_state.bit_generator", "MT19937"), "rng_state"),
    "resume ref_point short": (stats_edit("ref_point", [1.0]), "ref_point"),
    "resume ref_point nan": (stats_edit("ref_point", [float("nan"), 1.0]), "ref_point"),
    "resume ref_point text": (stats_edit("ref_point", ["a", "b"]), "ref_point"),
    "resume ref_point missing": (stats_drop("ref_point"), "ref_point"),
    "resume unknown key": (stats_edit("extra", 1), "unknown key"),
    "resume other format": (stats_edit("format", "cnas-iter-stats/9"), "format"),
    "resume objectives changed": (stats_edit("objectives", ["top1", "params"]), "objectives"),
    "resume written by another search": (stats_edit("settings_hash", "0123456789abcdef"), "another search"),
    "resume archive row": (stats_edit("archive", [[{"ks": []}]]), "archive row"),
    "resume entries not a list": (stats_edit("entries", {"a": 1}), "entries"),
    "resume entry malformed": (stats_edit("entries", [{"arch": {}}]), "entries"),
    "resume hv_history text": (stats_edit("hv_history", ["x"]), "hv_history"),
    "resume hv text": (stats_edit("hv", "high"), "'hv'"),
    "resume alpha_norm text": (stats_edit("alpha_norm", "x"), "'alpha_norm'"),
    "resume candidates not a list": (stats_edit("candidates", 3), "'candidates'"),
    "resume iteration mismatch": (_stats_as_later_iteration, "iteration"),
    "resume stats of another space": (_ee_stats_in_plain_folder, "another search"),
    "resume archs of another space": (_ee_stats_with_the_plain_hash, "search space"),
    # resume: config.json as a whole
    "resume config unknown key": (config_edit("extra", 1), "unknown key"),
    "resume config unknown setting": (config_edit("search.n_dooe", 1), "n_dooe"),
    "resume config wrong type": (config_edit("search.n_doe", "six"), "n_doe"),
    "resume config nan": (config_edit("evaluation.lr", float("nan")), "--lr"),
    "resume config part missing": (config_edit("evaluation", None), "evaluation"),
    "resume config settings changed": (config_edit("search.n_iter", 3), "settings differ"),
    "resume config objectives changed": (config_edit("objectives", ["top1", "params"]), "objectives"),
    # resume: flags and the folder
    "resume with other settings": (lambda c: _resume(c, "--n_iter", "5"), "settings differ"),
    "resume into another save": (lambda c: _resume(c, "--save", str(c.root / "other")), "differs"),
    "resume of a locked run": (_locked, "in use by"),
    "resume seed nan": (lambda c: _resume(c, "--seed", "nan"), "--seed"),
}


def _picks_of_another_selection(c):
    out = c.root / "picks"
    (out / "net-trade-off_0").mkdir(parents=True)
    (out / "net-trade-off_0" / "pick.json").write_text(json.dumps({"arch": {"ks": [3]}, "source": {}}))
    return ["--expr", str(c.run / "iter_1.stats"), "--save", str(out)]


def _swapped_net_folders(c):
    st = c.stats(1)
    a, b = st["entries"][0]["folder"], st["entries"][1]["folder"]
    fa, fb = c.run / a / f"{Path(a).name}.subnet", c.run / b / f"{Path(b).name}.subnet"
    ta, tb = fa.read_text(), fb.read_text()
    fa.write_text(tb)
    fb.write_text(ta)
    return ["--expr", str(c.run / "iter_1.stats")]


def ps(*extra):
    return lambda c: ["--expr", str(c.run / "iter_1.stats"), *extra]


def ps_stats(fn):
    def case(c):
        fn(c)
        return ["--expr", str(c.run / "iter_1.stats")]
    return case


def ps_config(path, value):
    def case(c):
        c.edit_config(lambda d: _set(d, path, value))
        return ["--expr", str(c.run / "iter_1.stats")]
    return case


POST_SEARCH_CASES = {
    "expr missing": (lambda c: ["--expr", str(c.root / "nowhere" / "iter_3.stats")], "no such file"),
    "no expr": (lambda c: [], "--expr"),
    "n zero": (ps("-n", "0"), "-n"),
    "n not a number": (ps("-n", "two"), "-n"),
    "n larger than the front": (ps("-n", "500"), "larger than"),
    "prefer banana": (ps("--prefer", "banana"), "--prefer"),
    "radius nan": (ps("--radius", "nan"), "--radius"),
    "radius negative": (ps("--radius", "-1"), "--radius"),
    "n_classes zero": (ps("--n_classes", "0"), "--n_classes"),
    "resolution zero": (ps("--resolution", "0"), "--resolution"),
    "n_exits 7": (ps("--n_exits", "7"), "--n_exits"),
    "n_exits on a plain run": (ps("--n_exits", "1"), "early-exit"),
    "sec_obj flops": (ps("--sec_obj", "flops"), "flops"),
    "first_obj flops": (ps("--first_obj", "flops"), "flops"),
    "save is a file": (lambda c: ["--expr", str(c.run / "iter_1.stats"), "--save", c.file("f")], "is a file"),
    "supernet missing": (ps("--supernet_path", "/nonexistent.pth"), "--supernet_path"),
    "picks of another selection": (_picks_of_another_selection, "already holds"),
    "stats not json": (ps_stats(lambda c: (c.run / "iter_1.stats").write_text("{")), "not valid JSON"),
    "stats without random state": (ps_stats(lambda c: c.edit_stats(lambda d: d.pop("rng_state"))), "rng_state"),
    "stats unknown key": (ps_stats(lambda c: c.edit_stats(lambda d: d.update(extra=1))), "unknown key"),
    "stats of another space": (ps_stats(lambda c: shutil.copy(c.ee() / "iter_1.stats", c.run / "iter_1.stats")),
                               "another search"),
    "stats archs of another space": (ps_stats(_ee_stats_with_the_plain_hash), "search space"),
    "stats pairs other net folders": (_swapped_net_folders, "another arch"),
    "config unknown key": (ps_config("extra", 1), "unknown key"),
    "config unknown search setting": (ps_config("search.n_dooe", 1), "n_dooe"),
    "config other search space": (ps_config("search.search_space", "eemobilenetv3"), "search space"),
    "config n_classes zero": (ps_config("evaluation.n_classes", 0), "--n_classes"),
    "config nan setting": (ps_config("evaluation.pmax", float("nan")), "--pmax"),
    "config wrong type": (ps_config("search.n_doe", "six"), "--n_doe"),
    "config not json": (ps_stats(lambda c: (c.run / "config.json").write_text("[")), "not valid JSON"),
    "folder without a search": (lambda c: ["--expr", str(Path(c.file("empty/x.txt")).parent)], "no iter_X.stats"),
}


def _snapshot(root: Path) -> dict:
    """Every path under ``root`` with its content's hash (folders as such), so any change shows."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _check(tmp_path, runs, capsys, monkeypatch, case, needle, main, prog):
    monkeypatch.chdir(tmp_path)
    c = Ctx(tmp_path, runs)
    argv = case(c)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as exc:
            run_cli(main, argv, prog=prog)
    finally:
        for lock in c.held:
            lock.release()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exc.value.code == 2
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    assert needle in lines[0], lines[0]
    if c.held:  # the test's own lock file is gone with its release; everything else is as it was
        before.pop("run/.lock", None)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("name", list(SEARCH_CASES))
def test_search_refuses(name, tmp_path, runs, capsys, monkeypatch):
    case, needle = SEARCH_CASES[name]
    _check(tmp_path, runs, capsys, monkeypatch, case, needle, search.main, "cnas.search")


@pytest.mark.parametrize("name", list(POST_SEARCH_CASES))
def test_post_search_refuses(name, tmp_path, runs, capsys, monkeypatch):
    case, needle = POST_SEARCH_CASES[name]
    _check(tmp_path, runs, capsys, monkeypatch, case, needle, lambda argv: post_search.main(argv, log=print),
           "cnas.post_search")


def test_the_table_is_large_enough():
    assert len(SEARCH_CASES) + len(POST_SEARCH_CASES) >= 60


def test_lock_release_is_clean(tmp_path):
    lock = FolderLock(tmp_path).acquire()
    assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())
    lock.release()
    assert not (tmp_path / ".lock").exists()
