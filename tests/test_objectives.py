"""The objective registry and the objective set: values, constraints (which objective a limit bounds),
feasibility, the penalty mode, FlatNAS's alpha_norm, and a new objective added by one registration."""

import json

import numpy as np
import pytest
from conftest import FakeExecutor, fake_stats

from cnas import complexity
from cnas.archive import Entry
from cnas.config import SearchConfig
from cnas.engine import Search
from cnas.evaluation import EvalSettings
from cnas.objectives import OBJECTIVES, Objective, ObjectiveSet, constraints_for, register
from cnas.problems import SurrogateProblem
from cnas.spaces import get_space

SPACE = get_space("mobilenetv3", 32, 32)
EE = get_space("eemobilenetv3", 32, 32)


def entries(space, n, seed=0, **extra):
    archs = [space.with_resolution(a) for a in space.sample(n, seed)]
    return [Entry(a, {**fake_stats(a), **extra}, 0, f"net_{i}") for i, a in enumerate(archs)]


def test_a_limit_bounds_the_objective_the_search_optimizes():
    by = {c.flag: c for c in constraints_for(["top1", "avg_macs"], {"mmax": 5.0, "pmax": 2.5, "top1min": 0.9})}
    assert by["mmax"].objective == "avg_macs" and by["mmax"].name == "macs" and by["mmax"].bound == 5.0
    assert by["pmax"].objective == "params"
    assert by["top1min"].objective == "top1" and by["top1min"].bound == pytest.approx(10.0)  # 90 % acc = 10 % err
    by = {c.flag: c for c in constraints_for(["top1", "params"], {"mmax": 5.0})}
    assert by["mmax"].objective == "macs"  # avg_macs is not searched: the limit bounds the final exit's MACs
    assert constraints_for(["top1", "macs"], {"mmax": 1e10, "pmax": None, "top1min": 0.0}) == []


def test_feasibility_and_G_agree_with_the_limits():
    ev = EvalSettings(pmax=3.6, top1min=0.81)
    oset = ObjectiveSet.from_settings(["top1", "macs"], ev, 10)
    es = entries(SPACE, 30)
    vals = oset.values(es)
    want = (vals["params"] <= 3.6) & (vals["top1"] <= 19.0)
    assert 0 < want.sum() < len(es)  # the limits cut through this sample
    assert np.array_equal(oset.feasible(es), want)
    G = oset.G_of(vals)
    assert G.shape == (len(es), 2) and np.array_equal((G <= 0).all(1), want)
    assert oset.predicted == ["top1"]


def test_penalty_mode_has_no_constraints_and_penalizes_avg_macs():
    ev = EvalSettings(pmax=2.3, mmax=3.0)
    oset = ObjectiveSet.from_settings(["top1", "avg_macs"], ev, 10, constraint_mode="penalty")
    es = entries(EE, 20)
    assert oset.feasible(es).all() and oset.G_of(oset.values(es)).shape == (20, 0)
    assert oset.phi_penalized == {"avg_macs": 3.0}
    avg = np.array([e.stats["avg_macs"] for e in es])
    problem = SurrogateProblem(EE, oset, {"top1": lambda X: np.zeros(len(X)), "avg_macs": lambda X: avg[:len(X)]})
    X = EE.encode_many([e.arch for e in es])
    out = {}
    problem._evaluate(X.astype(float), out)
    phi = float(np.mean(avg <= 3.0))
    assert problem.last_phi == pytest.approx(phi) and "G" not in out
    expect = phi * avg + (1 - phi) * np.maximum(0.0, avg - 3.0) * ev.penalty
    assert np.allclose(out["F"][:, 1], expect)
    # native mode: the same limit is a constraint instead, and nothing is penalized
    native = ObjectiveSet.from_settings(["top1", "avg_macs"], ev, 10)
    assert native.phi_penalized == {} and {c.objective for c in native.constraints} == {"params", "avg_macs"}


def test_top1_robust_and_alpha_norm():
    ev = EvalSettings(alpha=0.25)
    oset = ObjectiveSet.from_settings(["top1_robust", "macs"], ev, 10)
    es = entries(SPACE, 6)
    for i, e in enumerate(es):
        e.stats["robustness"] = [1.0 + i, 9.0]
    top1 = np.array([e.stats["top1"] for e in es])
    rob = np.arange(1.0, 7.0)
    assert np.allclose(oset.F(es)[:, 0], 0.25 * top1 + 1.0 * 0.75 * rob)
    oset.update_alpha_norm(es)
    assert oset.alpha_norm == pytest.approx(top1.mean() / rob.mean())
    assert np.allclose(oset.F(es)[:, 0], 0.25 * top1 + oset.alpha_norm * 0.75 * rob)
    assert OBJECTIVES["top1_robust"].measure == ("eval_robust",)


def test_a_new_objective_is_one_registration(tmp_path):
    register(Objective("double_macs", "M", "twice the MACs (a test objective)", limit_flag="dmax",
                       compute=lambda counts, oset: np.array([2 * c["macs"] for c in counts])))
    try:
        oset = ObjectiveSet(["top1", "double_macs"], 10, constraints=constraints_for(["double_macs"], {"dmax": 8.0}))
        es = entries(SPACE, 10)
        macs = np.array([complexity.count(e.arch, 10)["macs"] for e in es])
        assert np.allclose(oset.F(es)[:, 1], 2 * macs)
        assert np.array_equal(oset.feasible(es), 2 * macs <= 8.0)
        cfg = SearchConfig(save=str(tmp_path / "run"), sec_obj="double_macs", n_doe=6, iterations=1, n_iter=2,
                           pop_size=8, n_gens=2, first_predictor="rbf", plots=False, progress=False)
        s = Search(cfg, EvalSettings(), log=lambda m: None, executor=FakeExecutor())
        s.run()
        st = json.loads((tmp_path / "run" / "iter_1.stats").read_text())
        assert st["objectives"] == ["top1", "double_macs"]
        for arch, top1, dm in st["archive"]:
            assert dm == pytest.approx(2 * complexity.count(arch, 10)["macs"])
    finally:
        OBJECTIVES.pop("double_macs")


def test_constrained_search_records_feasibility(tmp_path):
    cfg = SearchConfig(save=str(tmp_path / "run"), sec_obj="macs", n_doe=10, iterations=2, n_iter=3, pop_size=12,
                       n_gens=3, first_predictor="rbf", plots=False, progress=False)
    s = Search(cfg, EvalSettings(pmax=3.6, top1min=0.81), log=lambda m: None, executor=FakeExecutor())
    archive = s.run()
    st = json.loads((tmp_path / "run" / "iter_2.stats").read_text())
    ok = [complexity.count(e.arch, 10)["params"] <= 3.6 and e.stats["top1"] <= 19.0 for e in archive.entries]
    assert st["n_feasible"] == sum(ok) and 0 < sum(ok) < len(ok)
    assert "top1" in st["surrogates"]  # the accuracy limit is predicted


def test_registration_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        register(Objective("nothing", "", "neither computed nor read"))
    assert "nothing" not in OBJECTIVES
