"""Post-search selection: trade-off and preferred-objective rules, feasibility, n_exits, files and CSV rows,
original-system imports and bad input.

Search folders are built in the real file format by the search loop with a fake executor (training replaced by
a deterministic function of the arch), or written by hand in the original system's layout.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import FakeExecutor

from cnas import complexity
from cnas.config import SearchConfig
from cnas.engine import Search
from cnas.errors import ConfigError, run_cli
from cnas.evaluation import EvalSettings
from cnas.post_search import main, select, tradeoff_scores
from cnas.spaces import exit_mask, get_space


def make_run(tmp_path, name="run", ev=None, **kw):
    base = dict(save=str(tmp_path / name), sec_obj="macs", n_doe=12, iterations=1, n_iter=4, pop_size=12,
                n_gens=3, first_predictor="rbf", seed=1, plots=False, progress=False)
    base.update(kw)
    Search(SearchConfig(**base), ev or EvalSettings(), log=lambda m: None, executor=FakeExecutor(ckpt=True)).run()
    return tmp_path / name


def cli(*args):
    """``python -m cnas.post_search`` in-process: (exit code, stdout lines)."""
    lines = []
    try:
        code = run_cli(lambda argv: main(argv, log=lines.append), list(map(str, args)), prog="cnas.post_search")
    except SystemExit as exc:
        code = exc.code
    return code, "\n".join(lines)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("ps"))


# ---------------------------------------------------------------- the selection rules
def test_tradeoff_prefers_the_knee_and_is_scale_free():
    F = np.array([[0.0, 1.0], [0.05, 0.6], [0.1, 0.15], [0.6, 0.1], [1.0, 0.0]])
    mu = tradeoff_scores(F)
    assert int(np.argmax(mu)) == 2  # the knee: big gain in f2 for little loss in f1
    scaled = F * np.array([100.0, 1e6])  # % error next to MACs: normalization makes units irrelevant
    np.testing.assert_allclose(tradeoff_scores(scaled), mu)


def test_tradeoff_radius_is_honoured():
    # a concave front: far points offer better deals than the nearest ones, so the radius changes mu
    x = np.linspace(0, 1, 11)
    F = np.column_stack([x, 1 - x ** 2])
    narrow, wide = tradeoff_scores(F, 0.05), tradeoff_scores(F, 2.0)
    assert not np.allclose(narrow, wide)
    # with a radius covering everything, mu_i is the minimum over all other points
    Fn = (F - F.min(0)) / (F.max(0) - F.min(0))
    i = 5
    d = np.delete(Fn, i, 0) - Fn[i]
    with np.errstate(divide="ignore"):
        expect = np.min(np.maximum(0, d).sum(1) / np.maximum(0, -d).sum(1))
    assert wide[i] == pytest.approx(expect)


def test_select_prefer_objective_and_most_accurate_always_in():
    F = np.array([[10.0, 5.0], [12.0, 3.0], [15.0, 1.0], [11.0, 9.0], [20.0, 2.0]])  # rows 3, 4 dominated
    picks, front = select(F, 2, "macs", prefer_values=F[:, 1])
    assert sorted(front.tolist()) == [0, 1, 2]
    assert picks == [2, 1, 0]  # the two lowest in macs, then the most accurate (row 0) appended
    picks, _ = select(F, 3, "macs", prefer_values=F[:, 1])
    assert picks == [2, 1, 0]  # already in: not repeated
    picks, _ = select(F, 1, "trade-off")
    assert 0 in picks and len(picks) <= 2


def test_n_larger_than_front_is_an_error():
    F = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0]])
    with pytest.raises(ConfigError, match="larger than the non-dominated front"):
        select(F, 3, "trade-off")


# ---------------------------------------------------------------- the command on a cnas search folder
def test_picks_files_csv_and_plot(run_dir, tmp_path):
    out = tmp_path / "picks"
    code, text = cli("--expr", run_dir / "iter_1.stats", "--save", out, "-n", "2", "--prefer", "macs")
    assert code == 0, text
    st = json.loads((run_dir / "iter_1.stats").read_text())
    by_arch = {json.dumps(e["arch"], sort_keys=True): e for e in st["entries"]}
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders[:2] == ["net-macs_0", "net-macs_1"]
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == len(folders)
    for _, row in csv.iterrows():
        pick = out / row["pick"]
        arch = json.loads((pick / "net.subnet").read_text())
        entry = by_arch[json.dumps(arch, sort_keys=True)]
        src = run_dir / entry["folder"]
        # the copy is the candidate's own folder: stats and weights of that arch
        assert json.loads((pick / "net.stats").read_text()) == json.loads((src / f"{entry['name']}.stats").read_text())
        assert (pick / "ckpt.pth").read_bytes() == (src / "ckpt.pth").read_bytes()
        # each CSV row holds its own pick's values (the original repeated the last pick's)
        assert row["top1"] == pytest.approx(entry["stats"]["top1"])
        assert row["macs"] == pytest.approx(complexity.count(arch, 10)["macs"])
        assert row["test_top1"] == pytest.approx(entry["stats"]["test_top1"])
        rec = json.loads((pick / "pick.json").read_text())
        assert rec["source"]["folder"] == entry["folder"] and rec["evaluation"]["dataset"] == "digits"
    assert csv["top1"].nunique() == len(csv)
    # the picks are the lowest-macs front points, plus the most accurate arch
    macs = csv["macs"].tolist()
    assert macs[0] <= macs[1]
    all_top1 = [row[1] for row in st["archive"]]
    assert csv["top1"].min() == pytest.approx(min(all_top1))
    assert (out / "front.png").stat().st_size > 1000
    assert "net-macs_0" in text and "front of" in text


def test_tradeoff_picks_are_front_points_and_rerun_needs_overwrite(run_dir, tmp_path):
    out = tmp_path / "picks"
    code, _ = cli("--expr", run_dir / "iter_1.stats", "--save", out, "-n", "3")
    assert code == 0
    csv = pd.read_csv(out / "results.csv")
    F = csv[["top1", "macs"]].to_numpy()
    st = json.loads((run_dir / "iter_1.stats").read_text())
    A = np.array([[r[1], r[2]] for r in st["archive"]])
    for f in F:  # no archive member dominates a pick
        assert not np.any(np.all(A <= f, axis=1) & np.any(A < f, axis=1))
    assert list(csv["pick"][:3]) == ["net-trade-off_0", "net-trade-off_1", "net-trade-off_2"]
    code, text = cli("--expr", run_dir / "iter_1.stats", "--save", out, "-n", "3")  # the same picks: kept
    assert code == 0 and "pick folder(s) that an earlier run" in text
    rec = json.loads((out / "net-trade-off_1" / "pick.json").read_text())
    rec["arch"] = json.loads((out / "net-trade-off_2" / "net.subnet").read_text())  # another selection's folder
    (out / "net-trade-off_1" / "pick.json").write_text(json.dumps(rec))
    code, _ = cli("--expr", run_dir / "iter_1.stats", "--save", out, "-n", "3")
    assert code == 2
    code, _ = cli("--expr", run_dir / "iter_1.stats", "--save", out, "-n", "3", "--overwrite")
    assert code == 0


def test_a_killed_post_search_is_completed_by_the_same_command(run_dir, tmp_path, monkeypatch):
    import cnas.post_search as ps

    whole = tmp_path / "whole"
    assert cli("--expr", run_dir / "iter_1.stats", "--save", whole, "-n", "3")[0] == 0
    out = tmp_path / "picks"
    real, calls = ps._write_pick, []

    def killed_on_the_second(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            real(*args, **kw)  # the folder is written, the kill comes before its rename
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kw)

    monkeypatch.setattr(ps, "_write_pick", killed_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        cli("--expr", run_dir / "iter_1.stats", "--save", out, "-n", "3")
    monkeypatch.setattr(ps, "_write_pick", real)
    assert (out / "net-trade-off_0" / "pick.json").exists() and not (out / "net-trade-off_1").exists()
    assert list(out.glob(".net-trade-off_1.part-*"))
    # a pick folder half-written by an earlier version (no pick.json) is replaced too
    (out / "net-trade-off_2").mkdir()
    (out / "net-trade-off_2" / "net.subnet").write_text("{")
    code, text = cli("--expr", run_dir / "iter_1.stats", "--save", out, "-n", "3")
    assert code == 0 and "kept 1 pick folder(s)" in text
    assert not list(out.glob(".*part-*")) and not (out / ".lock").exists()
    for name in ("net-trade-off_0", "net-trade-off_1", "net-trade-off_2"):
        for f in ("net.subnet", "net.stats", "ckpt.pth", "pick.json"):
            assert (out / name / f).read_bytes() == (whole / name / f).read_bytes(), (name, f)
    assert (out / "results.csv").read_text() == (whole / "results.csv").read_text()


def test_only_feasible_by_default(run_dir, tmp_path):
    run = tmp_path / "run"  # the same run, with a MACs limit in its config.json
    shutil.copytree(run_dir, run)
    rec = json.loads((run / "config.json").read_text())
    rec["evaluation"]["mmax"] = 8.0
    (run / "config.json").write_text(json.dumps(rec))
    out = tmp_path / "picks"
    code, text = cli("--expr", run / "iter_1.stats", "--save", out, "-n", "2", "--prefer", "top1")
    assert code == 0
    csv = pd.read_csv(out / "results.csv")
    assert (csv["macs"] <= 8.0).all()
    st = json.loads((run / "iter_1.stats").read_text())
    assert any(r[2] > 8.0 for r in st["archive"])  # there were infeasible archs to leave out
    assert "infeasible" in text
    code, _ = cli("--expr", run / "iter_1.stats", "--save", tmp_path / "all", "-n", "1", "--prefer", "top1",
                  "--include_infeasible")
    best = min(r[1] for r in st["archive"])
    assert code == 0 and pd.read_csv(tmp_path / "all" / "results.csv")["top1"].min() == pytest.approx(best)


@pytest.mark.parametrize("space", ["eemobilenetv3", "cbnmobilenetv3"])
def test_n_exits_for_both_early_exit_spaces(tmp_path, space):
    run = make_run(tmp_path, search_space=space, n_doe=16)
    st = json.loads((run / "iter_1.stats").read_text())
    counts = [sum(exit_mask(r[0])) for r in st["archive"]]
    k = max(set(counts), key=counts.count)
    out = tmp_path / "picks"
    code, text = cli("--expr", run / "iter_1.stats", "--save", out, "-n", "1", "--n_exits", k)
    assert code == 0, text
    picks = sorted(p for p in out.iterdir() if p.is_dir())
    assert picks and all(p.name.endswith(f"_nExits-{k}") for p in picks)
    for p in picks:
        assert sum(exit_mask(json.loads((p / "net.subnet").read_text()))) == k


# ---------------------------------------------------------------- runs of the original system
def write_original_run(root, n=6, with_iter_stats=False):
    """iter_0/net_i/net_i.subnet + .stats with the original's keys, no config.json, no 'r' in the archs."""
    space = get_space("mobilenetv3", 32, 32)
    archs = [space.smallest(), space.largest()] + space.sample(n - 2, 7)
    rows = []
    for i, a in enumerate(archs):
        a = {k: v for k, v in a.items() if k != "r"}
        d = root / "iter_0" / f"net_{i}"
        d.mkdir(parents=True)
        c = complexity.count(a, 10, 32)
        top1 = round(30.0 - 0.8 * sum(a["d"]) + 0.1 * i, 2)
        stats = {"top1": top1, "macs": round(c["macs"] * 1.01, 2), "params": round(c["params"] + 1.0, 2)}
        (d / f"net_{i}.subnet").write_text(json.dumps(a))
        (d / f"net_{i}.stats").write_text(json.dumps(stats))
        rows.append([a, top1, stats["macs"]])
    if with_iter_stats:
        (root / "iter_0.stats").write_text(json.dumps({"archive": rows, "hv": 0.5}))
    return archs, rows


def test_get_archive_imports_an_original_run(tmp_path):
    run = tmp_path / "old"
    write_original_run(run)
    before = {p: p.read_bytes() for p in run.rglob("*.stats")}
    out = tmp_path / "picks"
    code, text = cli("--expr", run / "iter_0", "--get_archive", "--save", out, "-n", "2", "--prefer", "macs")
    assert code == 0, text
    assert {p: p.read_bytes() for p in run.rglob("*.stats")} == before  # nothing rewritten
    csv = pd.read_csv(out / "results.csv")
    for _, row in csv.iterrows():
        pick = out / row["pick"]
        arch = json.loads((pick / "net.subnet").read_text())
        assert arch["r"] == 32  # filled in so the pick can be fine-tuned
        src = run / row["source"]
        assert json.loads((pick / "net.stats").read_text()) == json.loads(next(src.glob("*.stats")).read_text())
        assert row["macs"] == pytest.approx(complexity.count(arch, 10)["macs"])  # cnas's own count
    assert "differ from cnas's count" in text


def test_original_iter_stats_rows(tmp_path):
    run = tmp_path / "old"
    archs, rows = write_original_run(run, with_iter_stats=True)
    out = tmp_path / "picks"
    code, text = cli("--expr", run / "iter_0.stats", "--save", out, "-n", "1", "--prefer", "top1")
    assert code == 0, text
    csv = pd.read_csv(out / "results.csv")
    assert csv["top1"].iloc[0] == pytest.approx(min(r[1] for r in rows))
    assert (out / csv["pick"].iloc[0] / "net.stats").exists()


# ---------------------------------------------------------------- bad input: one line, exit 2
def test_bad_input_is_one_line_exit_2(run_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "iter_0.stats").write_text(json.dumps({"archive": []}))
    cases = [
        (["--expr", empty / "iter_0.stats"], "empty"),
        (["--expr", run_dir / "iter_1.stats", "--prefer", "flops"], "unknown --prefer"),
        (["--expr", run_dir / "iter_1.stats", "--sec_obj", "flops"], "flops"),
        (["--expr", run_dir / "iter_1.stats", "-n", "500"], "larger than the non-dominated front"),
        (["--expr", run_dir / "iter_1.stats", "--n_exits", "2"], "early-exit"),
        (["--expr", tmp_path / "nowhere" / "iter_3.stats"], "no such file"),
    ]
    for args, needle in cases:
        code, _ = cli(*args, "--save", tmp_path / "out")
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0], (args, err)


def test_module_entry_point(run_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "cnas.post_search", "--expr", str(run_dir / "iter_1.stats"), "--save",
                        str(tmp_path / "p"), "-n", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p" / "net-trade-off_0" / "net.subnet").exists()


def test_supernet_weights_for_picks_without_checkpoint(tmp_path):
    import torch

    from cnas.models import build_network, build_supernet, save_supernet

    run = tmp_path / "old"
    write_original_run(run, n=3)
    torch.manual_seed(0)
    sn = tmp_path / "supernet.pth"
    save_supernet(sn, build_supernet(10))
    out = tmp_path / "picks"
    code, text = cli("--expr", run / "iter_0", "--get_archive", "--save", out, "-n", "1", "--prefer", "top1",
                     "--supernet_path", sn)
    assert code == 0, text
    pick = out / "net-top1_0"
    ck = torch.load(pick / "inherited.pth", weights_only=True)
    arch = json.loads((pick / "net.subnet").read_text())
    assert ck["arch"] == arch and not (pick / "ckpt.pth").exists()
    build_network(arch, 10, resolution=32).load_state_dict(ck["state_dict"])  # fits the pick's network
    code, _ = cli("--expr", run / "iter_0", "--get_archive", "--save", tmp_path / "x", "--supernet_path",
                  tmp_path / "missing.pth")
    assert code == 2
