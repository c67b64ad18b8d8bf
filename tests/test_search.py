"""The search loop: files, resume equivalence, crash-and-resume, failure isolation, constraints, bad input.

Most tests inject an executor whose "training" is a deterministic function of the arch (so the loop's logic is
tested in seconds); one test runs the real command end to end on the bundled data.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import FakeExecutor, fake_stats

from cnas import complexity
from cnas.config import SearchConfig
from cnas.engine import Search
from cnas.errors import ConfigError
from cnas.evaluation import EvalSettings
from cnas.fileio import atomic_write_json


def config(tmp_path, name="run", **kw):
    base = dict(save=str(tmp_path / name), sec_obj="macs", n_doe=10, iterations=3, n_iter=4, pop_size=20,
                n_gens=5, first_predictor="rbf", seed=1, plots=False, progress=False)
    base.update(kw)
    return SearchConfig(**base)


def run(cfg, ev=None, executor=None, resume=None):
    s = Search(cfg, ev or EvalSettings(), log=lambda m: None, executor=executor or FakeExecutor())
    return s, s.run(resume=resume)


def archive_rows(save, it):
    return json.loads((save / f"iter_{it}.stats").read_text())["archive"]


def test_files_and_stats_keys(tmp_path):
    cfg = config(tmp_path, plots=True)
    s, archive = run(cfg)
    save = tmp_path / "run"
    assert len(archive) == 10 + 3 * 4
    cfgj = json.loads((save / "config.json").read_text())
    assert cfgj["search"]["sec_obj"] == "macs" and cfgj["objectives"] == ["top1", "macs"]
    for it in range(4):
        st = json.loads((save / f"iter_{it}.stats").read_text())
        for key in ("archive", "candidates", "first_surrogate", "sec_surrogate", "hv", "alpha_norm", "timing",
                    "n_failed", "settings_hash"):
            assert key in st
        assert len(st["archive"]) == 10 + 4 * it
    st = json.loads((save / "iter_3.stats").read_text())
    assert st["first_surrogate"]["model"] == "rbf" and "tau" in st["first_surrogate"]
    # archive rows are [arch, top1, macs] with the exact macs of that arch
    for arch, top1, macs in st["archive"]:
        assert macs == pytest.approx(complexity.count(arch, 10)["macs"])
        assert top1 == pytest.approx(fake_stats(arch)["top1"])
    assert (save / "plots" / "iter_3.png").exists() and (save / "plots" / "hv.png").exists()
    hv = [json.loads((save / f"iter_{i}.stats").read_text())["hv"] for i in range(4)]
    assert hv == sorted(hv) and hv[-1] > 0  # the archive only grows, so its hypervolume cannot fall


def test_no_duplicates_and_integer_archs(tmp_path):
    s, archive = run(config(tmp_path, iterations=4))
    keys = [json.dumps(a, sort_keys=True) for a in archive.archs()]
    assert len(keys) == len(set(keys))
    for a in archive.archs():
        # in bounds (validate raises otherwise), already canonical, and carrying the space's resolution
        assert s.space.with_resolution(s.space.validate(a)) == a


def test_search_beats_random_sampling(tmp_path):
    from cnas.problems import hypervolume, non_dominated

    s, archive = run(config(tmp_path, iterations=4, n_gens=10))
    F = s.F(archive.entries)
    rnd = [s.with_r(a) for a in s.space.sample(len(archive) - 10, 123)]
    design = archive.entries[:10]
    G = np.vstack([F[:10], [[fake_stats(a)["top1"], complexity.count(a, 10)["macs"]] for a in rnd]])
    hv_search = hypervolume(F[non_dominated(F)], s.ref_point)
    hv_random = hypervolume(G[non_dominated(G)], s.ref_point)
    assert len(design) == 10 and hv_search > hv_random


def test_hv_selection_picks_predicted_improvements():
    from cnas.problems import select_subset

    front = np.array([[10.0, 1.0], [5.0, 5.0], [2.0, 9.0]])
    cand = np.array([[11.0, 1.5],   # dominated by the front: adds nothing
                     [3.0, 2.0],    # dominates the front's middle: the largest gain
                     [4.0, 7.0],    # dominated by [3, 2]: adds nothing once [3, 2] is chosen
                     [1.0, 12.0],   # beyond the front's most accurate end
                     [12.0, 0.5]])  # beyond the front's cheapest end
    assert select_subset(cand, front, 1, 0, rule="hv").tolist() == [1]
    picked = select_subset(cand, front, 3, 0, rule="hv").tolist()
    assert 1 in picked and 0 not in picked and 2 not in picked
    # the original's rule only looks at the second objective's gaps
    assert len(select_subset(cand, front, 3, 0, rule="gaps")) == 3
    with pytest.raises(ValueError, match="rule"):
        select_subset(cand, front, 3, 0, rule="random")


def test_search_passes_pick_to_the_selection(tmp_path, monkeypatch):
    import cnas.engine
    from cnas.problems import select_subset

    rules = []

    def spy(*args, rule="gaps"):
        rules.append(rule)
        return select_subset(*args, rule=rule)

    monkeypatch.setattr(cnas.engine, "select_subset", spy)
    s, archive = run(config(tmp_path, pick="hv"))
    assert len(archive) == 10 + 3 * 4 and rules and set(rules) == {"hv"}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["search"]["pick"] == "hv"


def test_resume_gives_the_uninterrupted_archive(tmp_path):
    run(config(tmp_path, name="full"))
    run(config(tmp_path, name="part", iterations=1))
    run(config(tmp_path, name="part", iterations=3), resume=str(tmp_path / "part" / "iter_1.stats"))
    assert archive_rows(tmp_path / "full", 3) == archive_rows(tmp_path / "part", 3)


def test_as_every_cross_validates_every_k_iterations_and_resumes_in_step(tmp_path):
    """--as_every 3: iterations 1 and 4 cross-validate adaptive switching's choice, 2 and 3 refit it; a search
    resumed from iteration 2 makes the same choices and archive as one that ran through."""
    kw = {"first_predictor": "as", "as_every": 3, "as_folds": 3, "iterations": 5, "pop_size": 10, "n_gens": 3}
    run(config(tmp_path, name="full", **kw))
    surr = [json.loads((tmp_path / "full" / f"iter_{it}.stats").read_text())["surrogates"]["top1"]
            for it in range(1, 6)]
    assert [s["as_age"] for s in surr] == [0, 1, 2, 0, 1]
    assert all(("fold_tau" in s) == (s["as_age"] == 0) for s in surr)
    assert surr[1]["winner"] == surr[2]["winner"] == surr[0]["winner"] and surr[0]["model"] == "as"
    run(config(tmp_path, name="part", **{**kw, "iterations": 2}))
    run(config(tmp_path, name="part", **kw), resume=str(tmp_path / "part" / "iter_2.stats"))
    for it in (3, 4, 5):
        assert archive_rows(tmp_path / "full", it) == archive_rows(tmp_path / "part", it)
    # the default cross-validates every iteration and records no age, as before the setting existed
    run(config(tmp_path, name="every", first_predictor="as", as_folds=3, iterations=2, pop_size=10, n_gens=3))
    rec = json.loads((tmp_path / "every" / "iter_2.stats").read_text())["surrogates"]["top1"]
    assert "as_age" not in rec and "fold_tau" in rec


def test_crash_mid_iteration_reuses_finished_candidates(tmp_path):
    full_s, _ = run(config(tmp_path, name="full"))
    crash = FakeExecutor(crash_after=10 + 4 + 2)  # dies after 2 of iteration 2's 4 candidates
    with pytest.raises(KeyboardInterrupt):
        run(config(tmp_path, name="part"), executor=crash)
    assert (tmp_path / "part" / "iter_1.stats").exists() and not (tmp_path / "part" / "iter_2.stats").exists()
    again = FakeExecutor()
    run(config(tmp_path, name="part"), executor=again, resume=str(tmp_path / "part" / "iter_1.stats"))
    assert again.calls == 2 + 4  # only the in-flight candidates of iteration 2, then iteration 3
    assert archive_rows(tmp_path / "full", 3) == archive_rows(tmp_path / "part", 3)


def test_resume_a_run_of_the_original_system(tmp_path):
    """Original layout: iter_X/net_Y/net_Y.subnet (no 'r' at a fixed resolution) + .stats, no cnas stats files."""
    from cnas.spaces import get_space

    save = tmp_path / "orig"
    space = get_space("mobilenetv3", 32, 32)
    for j, arch in enumerate(space.initial_design(8, 5)):
        atomic_write_json(save / "iter_0" / f"net_{j}" / f"net_{j}.subnet", arch)
        if j != 3:  # one net without stats: a failure, kept apart
            atomic_write_json(save / "iter_0" / f"net_{j}" / f"net_{j}.stats", fake_stats(dict(arch, r=32)))
    s, archive = run(config(tmp_path, name="orig", iterations=2), resume=str(save / "iter_0"))
    assert len(archive) == 7 + 2 * 4 and len(archive.failed) == 1
    assert all(a["r"] == 32 for a in archive.archs())
    assert (save / "config.json").exists() and (save / "iter_2.stats").exists()


def test_failures_are_isolated(tmp_path):
    def fail(arch):
        return arch["d"][0] == 3

    s, archive = run(config(tmp_path), executor=FakeExecutor(fail=fail))
    assert all(a["d"][0] != 3 for a in archive.archs())
    assert archive.failed and all(f.arch["d"][0] == 3 for f in archive.failed)
    for e in archive.entries:  # every stat belongs to its own arch
        assert e.stats == fake_stats(e.arch)
    failed_dirs = list((tmp_path / "run" / "failed").iterdir())
    assert len(failed_dirs) == len(archive.failed)
    assert "simulated OOM" in (failed_dirs[0] / "error.txt").read_text()


def test_native_constraints_prefer_feasible(tmp_path):
    ev = EvalSettings(pmax=3.5)
    s, archive = run(config(tmp_path, iterations=3), ev=ev)
    params = np.array([complexity.count(a, 10)["params"] for a in archive.archs()[10:]])
    assert np.mean(params <= 3.5) >= 0.75  # new candidates respect the limit (the design need not)
    st = json.loads((tmp_path / "run" / "iter_3.stats").read_text())
    assert st["n_feasible"] == int(np.sum([complexity.count(a, 10)["params"] <= 3.5 for a in archive.archs()]))


def test_three_objectives_and_single_objective(tmp_path):
    s, archive = run(config(tmp_path, name="three", sec_obj="macs,activations", iterations=2))
    st = json.loads((tmp_path / "three" / "iter_2.stats").read_text())
    assert st["objectives"] == ["top1", "macs", "activations"] and len(st["archive"][0]) == 4
    s, archive = run(config(tmp_path, name="one", sec_obj=None, iterations=2))
    assert len(archive) == 18


def test_avg_macs_on_early_exit_space(tmp_path):
    s, archive = run(config(tmp_path, sec_obj="avg_macs", search_space="eemobilenetv3", iterations=2))
    st = json.loads((tmp_path / "run" / "iter_2.stats").read_text())
    assert st["sec_surrogate"]["name"] == "avg_macs"
    assert all("t" in a for a in archive.archs())


@pytest.mark.parametrize("kw,needle", [
    (dict(sec_obj="avg_macs"), "early-exit"),
    (dict(sec_obj="flops"), "unknown objective 'flops'"),
    (dict(first_predictor="svm"), "unknown predictor 'svm'"),
    (dict(search_space="resnet"), "unknown search space"),
    (dict(n_doe=1), "--n_doe"),
    (dict(pick="random"), "--pick must be gaps or hv"),
    (dict(as_criterion="median"), "--as_criterion must be pooled or mean_std"),
])
def test_bad_settings(tmp_path, kw, needle):
    with pytest.raises(ConfigError, match=needle):
        Search(config(tmp_path, **kw), EvalSettings(), log=lambda m: None, executor=FakeExecutor())


def test_refuses_to_overwrite_and_incompatible_resume(tmp_path):
    run(config(tmp_path, iterations=1))
    before = (tmp_path / "run" / "iter_1.stats").read_bytes()
    with pytest.raises(ConfigError, match="already holds a search"):
        run(config(tmp_path, iterations=1))
    with pytest.raises(ConfigError, match="settings differ"):
        run(config(tmp_path, iterations=2, n_iter=5), resume=str(tmp_path / "run" / "iter_1.stats"))
    assert (tmp_path / "run" / "iter_1.stats").read_bytes() == before


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cnas.search", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.mark.slow
def test_cli_end_to_end_and_resume(tmp_path):
    common = ["--save", "r", "--sec_obj", "macs", "--n_doe", "3", "--n_iter", "2", "--n_epochs", "1",
              "--first_predictor", "rbf", "--pop_size", "10", "--n_gens", "3", "--quiet", "--num_threads", "1"]
    res = cli(*common, "--iterations", "1", "--as_criterion", "mean_std", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "iter 1:" in res.stdout and (tmp_path / "r" / "summary.txt").exists()
    # a run written before --pick and --as_criterion existed (it behaved as gaps / mean_std) still resumes
    rec = json.loads((tmp_path / "r" / "config.json").read_text())
    assert rec["search"].pop("pick") == "gaps" and rec["search"].pop("as_criterion") == "mean_std"
    (tmp_path / "r" / "config.json").write_text(json.dumps(rec))
    res = cli("--resume", "r/iter_1.stats", "--iterations", "2", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    st = json.loads((tmp_path / "r" / "iter_2.stats").read_text())
    assert len(st["archive"]) == 3 + 2 + 2


@pytest.mark.parametrize("args,needle", [
    (["--sec_obj", "avg_macs"], "early-exit"),
    (["--resume", "nowhere/iter_3.stats"], "no such file"),
    (["--n_doe", "ten"], "--n_doe"),
    (["--config", "missing.yaml"], "config file not found"),
])
def test_cli_bad_input_one_line(tmp_path, args, needle):
    res = cli(*args, cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr


def test_cli_corrupt_stats_file(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "iter_2.stats").write_text("{truncated")
    res = cli("--resume", "r/iter_2.stats", cwd=tmp_path)
    assert res.returncode == 2 and "not valid JSON" in res.stderr


# ---------------------------------------------------------------- every stop is recoverable
def _rng_states(save, last):
    return [json.loads((save / f"iter_{i}.stats").read_text())["rng_state"] for i in range(last + 1)]


@pytest.mark.parametrize("how", ["same command", "resume iter_0", "resume iter_0.stats"])
def test_kill_during_the_initial_design_is_recoverable(tmp_path, how):
    run(config(tmp_path, name="full"))
    with pytest.raises(KeyboardInterrupt):  # killed after 3 of the 10 design candidates
        run(config(tmp_path, name="part"), executor=FakeExecutor(crash_after=3))
    part = tmp_path / "part"
    assert (part / "config.json").exists() and not (part / "iter_0.stats").exists()
    again = FakeExecutor()
    resume = {"same command": None, "resume iter_0": str(part / "iter_0"),
              "resume iter_0.stats": str(part / "iter_0.stats")}[how]
    run(config(tmp_path, name="part"), executor=again, resume=resume)
    assert again.calls == 7 + 3 * 4  # the design's unfinished candidates, then the iterations
    assert archive_rows(tmp_path / "full", 3) == archive_rows(part, 3)
    assert _rng_states(tmp_path / "full", 3) == _rng_states(part, 3)


def test_unfinished_design_with_other_settings_is_refused_unchanged(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(config(tmp_path), executor=FakeExecutor(crash_after=3))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "run").rglob("*"))
    with pytest.raises(ConfigError, match="settings differ"):
        run(config(tmp_path, n_iter=5))
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "run").rglob("*")) == before


def test_resume_of_an_unfinished_later_iteration_names_the_one_to_resume(tmp_path):
    from cnas.errors import StatsFileError

    run(config(tmp_path, iterations=1))
    with pytest.raises(StatsFileError, match="iter_1.stats"):
        run(config(tmp_path, iterations=3), resume=str(tmp_path / "run" / "iter_2.stats"))


def test_a_live_lock_keeps_a_second_process_out_and_a_stale_one_is_taken_over(tmp_path):
    from cnas.fileio import FolderLock, LockedError

    run(config(tmp_path, iterations=1))
    save = tmp_path / "run"
    lock = FolderLock(save).acquire()
    try:
        with pytest.raises(LockedError, match=f"process {os.getpid()}"):
            run(config(tmp_path, iterations=2), resume=str(save / "iter_1.stats"))
        with pytest.raises(LockedError):  # a fresh search is refused the same way
            FolderLock(save).acquire()
    finally:
        lock.release()
    (save / ".lock").write_text("999999999 somehost\n")  # a holder that died (kill -9) leaves its file
    run(config(tmp_path, iterations=2), resume=str(save / "iter_1.stats"))
    assert (save / "iter_2.stats").exists() and not (save / ".lock").exists()


def test_a_killed_plot_is_cleaned_and_redrawn(tmp_path):
    run(config(tmp_path, iterations=1, plots=True))
    plots = tmp_path / "run" / "plots"
    (plots / "iter_1.png").unlink()  # killed while drawing: only the temporary file is left
    (plots / ".iter_1.png.0a1b2c3d.tmp").write_bytes(b"\x89PNG half")
    run(config(tmp_path, iterations=2, plots=True), resume=str(tmp_path / "run" / "iter_1.stats"))
    assert (plots / "iter_1.png").stat().st_size > 1000 and (plots / "iter_2.png").exists()
    assert not list(plots.glob(".*.tmp"))


def test_files_get_the_umask_permissions(tmp_path):
    from cnas.fileio import atomic_write_json, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o077)
        atomic_write_json(tmp_path / "b.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".*.tmp"))


def test_nothing_is_written_before_the_checks_pass(tmp_path):
    from cnas.errors import UsageError

    cfg = config(tmp_path, timeout=30.0, gpu_list="7 7")  # a repeated GPU id: refused up front
    with pytest.raises(UsageError, match="--gpu_list"):
        run(cfg)
    assert not (tmp_path / "run").exists()
    run(config(tmp_path, iterations=1))  # the corrected command then starts normally
    assert (tmp_path / "run" / "iter_1.stats").exists()


def test_resolution_trend_is_fitted_and_recorded_only_where_the_resolution_varies(tmp_path):
    """--r_trend (default true): with the resolution as a gene, each surrogate record carries the fitted slope
    per resolution step; --r_trend false or a fixed resolution: none, and the search still runs."""
    def record(name, **kw):
        run(config(tmp_path, name=name, iterations=1, **kw))
        return json.loads((tmp_path / name / "iter_1.stats").read_text())["surrogates"]["top1"]

    varying = record("varying", lr=24, ur=32, rstep=4)
    assert isinstance(varying["r_trend"], float) and np.isfinite(varying["r_trend"])
    assert "r_trend" not in record("off", lr=24, ur=32, rstep=4, r_trend=False)
    assert "r_trend" not in record("fixed")
    # with the line fitted, a resumed search still gives the archive of one that ran through
    kw = {"lr": 24, "ur": 32, "rstep": 4}
    run(config(tmp_path, name="full", **kw))
    run(config(tmp_path, name="part", iterations=1, **kw))
    run(config(tmp_path, name="part", **kw), resume=str(tmp_path / "part" / "iter_1.stats"))
    assert archive_rows(tmp_path / "full", 3) == archive_rows(tmp_path / "part", 3)
