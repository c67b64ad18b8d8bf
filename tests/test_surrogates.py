"""cnas.surrogates: API contract, robustness and rank quality of the predictors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from scipy.interpolate import RBFInterpolator
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from cnas.errors import ConfigError, UsageError
from cnas.spaces import get_space
from cnas.surrogates import PREDICTORS, AdaptiveSwitching, get_predictor, kendall_tau, rank_quality

SPACE = get_space("mobilenetv3", 128, 224, 4)
NAMES = ["rbf", "gp", "mlp", "carts", "as"]
# small settings that keep the contract tests fast; the quality tests use the defaults
FAST = {
    "rbf": {},
    "gp": {},
    "mlp": {"max_epochs": 20, "n_hidden": 32},
    "carts": {"n_estimators": 40},
    "as": {"pool": ("rbf", "gp", "carts"), "pool_params": {"carts": {"n_estimators": 30}}, "n_splits": 3,
           "n_jobs": 1},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def structured(X: np.ndarray) -> np.ndarray:
    """A clearly structured target: linear in the scaled genes plus a depth x expansion interaction."""
    Xs = X / SPACE.xu
    w = np.linspace(-1.0, 1.0, X.shape[1])
    return Xs @ w + 0.5 * Xs[:, 0] * Xs[:, 5] + 0.3 * Xs[:, 9] * Xs[:, -1]


def data(n: int, seed: int = 0):
    X = SPACE.sample_encodings(n, np.random.default_rng(seed))
    return X, structured(X)


def fast(name: str, **kw):
    return get_predictor(name, **{**FAST[name], **kw})


# ---------------------------------------------------------------------------------------------- API contract
def test_registry_names():
    assert set(PREDICTORS) == set(NAMES)


def test_unknown_name_and_parameter_raise_config_error():
    with pytest.raises(ConfigError, match="unknown surrogate predictor 'krr'"):
        get_predictor("krr")
    with pytest.raises(ConfigError, match="no parameter 'n_trees'"):
        get_predictor("carts", n_trees=10)
    with pytest.raises(ConfigError, match="pool"):
        get_predictor("as", pool=("rbf", "svm")).fit(*data(30))


@pytest.mark.parametrize("name", NAMES)
def test_fit_predict_clone_and_determinism(name):
    X, y = data(60)
    Xq = SPACE.sample_encodings(25, np.random.default_rng(5))
    model = fast(name, random_state=3)
    assert model.fit(X, y) is model
    p = model.predict(Xq)
    assert p.shape == (25,) and p.dtype == np.float64 and np.all(np.isfinite(p))
    assert model.predict(Xq[:1]).shape == (1,)
    assert model.predict(np.zeros((0, SPACE.n_var))).shape == (0,)
    # clone: same parameters, unfitted; same seed gives the same predictions
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    assert not hasattr(twin, "n_features_in_")
    np.testing.assert_array_equal(twin.fit(X, y).predict(Xq), p)
    # set_params round trip
    model.set_params(random_state=4)
    assert model.get_params()["random_state"] == 4


@pytest.mark.parametrize("name", NAMES)
def test_fitted_predictors_pickle(name):
    X, y = data(30)
    model = fast(name, random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


@pytest.mark.parametrize("name", NAMES)
def test_cross_val_score_runs(name):
    X, y = data(45)
    scores = cross_val_score(fast(name, random_state=0), X, y, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


@pytest.mark.parametrize("name", ["mlp", "carts", "as"])
def test_different_seeds_give_different_models(name):
    X, y = data(40)
    Xq = SPACE.sample_encodings(10, np.random.default_rng(1))
    kw = {"pool": ("carts",), "pool_params": {"carts": {"n_estimators": 20}}, "n_splits": 2} if name == "as" else {}
    a = fast(name, random_state=0, **kw).fit(X, y).predict(Xq)
    b = fast(name, random_state=1, **kw).fit(X, y).predict(Xq)
    assert not np.allclose(a, b)


def test_mlp_leaves_torch_state_alone():
    X, y = data(30)
    torch.manual_seed(123)
    before = torch.get_rng_state().clone()
    threads = torch.get_num_threads()
    fast("mlp", random_state=0, n_threads=1).fit(X, y)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.get_num_threads() == threads


# ---------------------------------------------------------------------------------------------- robustness
@pytest.mark.parametrize("name", NAMES)
def test_bad_targets_and_inputs_raise_usage_error(name):
    X, y = data(20)
    model = fast(name, random_state=0)
    for bad in (np.nan, np.inf, -np.inf):
        yb = y.copy()
        yb[3] = bad
        with pytest.raises(UsageError, match="NaN or infinite"):
            model.fit(X, yb)
    Xb = X.astype(float)
    Xb[0, 0] = np.nan
    with pytest.raises(UsageError, match="NaN or infinite"):
        model.fit(Xb, y)
    with pytest.raises(UsageError, match="20 rows but y has 19"):
        model.fit(X, y[:-1])
    with pytest.raises(UsageError, match="0 samples"):
        model.fit(X[:0], y[:0])
    with pytest.raises(UsageError, match="2-D"):
        model.fit(X[0], y[:1])
    model.fit(X, y)
    with pytest.raises(UsageError, match="46"):
        model.predict(X[:, :45])


@pytest.mark.parametrize("name", NAMES)
def test_constant_targets_predict_the_constant(name):
    X, _ = data(30)
    model = fast(name, random_state=0).fit(X, np.full(30, 7.25))
    np.testing.assert_allclose(model.predict(SPACE.sample_encodings(5, np.random.default_rng(9))), 7.25)


@pytest.mark.parametrize("name", NAMES)
def test_duplicate_rows(name):
    X, y = data(40)
    Xd = np.concatenate([X, X[:10], X[:10]])
    yd = np.concatenate([y, y[:10] + 0.1, y[:10] - 0.3])
    p = fast(name, random_state=0).fit(Xd, yd).predict(X[:10])
    assert np.all(np.isfinite(p))


def test_rbf_interpolates_merged_duplicates():
    X, y = data(40)
    Xd = np.concatenate([X, X[:5]])
    yd = np.concatenate([y, y[:5] + 1.0])
    p = get_predictor("rbf").fit(Xd, yd).predict(X[:5])
    np.testing.assert_allclose(p, y[:5] + 0.5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 2, 3, 12])
def test_fewer_samples_than_genes(name, n):
    X, y = data(n, seed=n)
    p = fast(name, random_state=0).fit(X, y).predict(SPACE.sample_encodings(7, np.random.default_rng(2)))
    assert p.shape == (7,) and np.all(np.isfinite(p))


def test_rbf_and_gp_interpolate_with_fewer_samples_than_genes():
    X, y = data(12)
    np.testing.assert_allclose(get_predictor("rbf").fit(X, y).predict(X), y, atol=1e-6)
    gp = get_predictor("gp", random_state=0).fit(X, y)
    assert rank_quality(gp.predict(X), y).tau > 0.9


def test_rbf_is_the_original_model_when_well_posed():
    """Full-rank archive without duplicates: the same values as scipy's cubic RBF with a linear tail on the
    min-max scaled genes (the original's pySOT model)."""
    X, y = data(120)
    Xq = SPACE.sample_encodings(50, np.random.default_rng(4))
    lo, span = X.min(0), X.max(0) - X.min(0)
    ref = RBFInterpolator((X - lo) / span, y, kernel="cubic", degree=1)((Xq - lo) / span)
    model = get_predictor("rbf").fit(X, y)
    assert model.rank_ == SPACE.n_var
    np.testing.assert_allclose(model.predict(Xq), ref, rtol=1e-6, atol=1e-8)


def test_rbf_and_gp_reproduce_a_linear_target():
    X = SPACE.sample_encodings(150, np.random.default_rng(0))
    w = np.random.default_rng(1).normal(size=SPACE.n_var)
    Xq = SPACE.sample_encodings(100, np.random.default_rng(2))
    for name in ("rbf", "gp"):
        p = get_predictor(name, random_state=0).fit(X, X @ w).predict(Xq)
        np.testing.assert_allclose(p, Xq @ w, atol=1e-3 * np.abs(Xq @ w).max())


def test_large_archives_stay_usable():
    X, y = data(3000)
    Xq = SPACE.sample_encodings(200, np.random.default_rng(3))
    yq = structured(Xq)
    rbf = get_predictor("rbf", random_state=0).fit(X, y)
    assert rbf.n_samples_fit_ == 3000
    assert rank_quality(rbf.predict(Xq), yq).tau > 0.8
    gp = get_predictor("gp", random_state=0).fit(X, y)
    assert gp.n_samples_opt_ == 500 and gp.n_samples_fit_ == 3000
    assert rank_quality(gp.predict(Xq), yq).tau > 0.8
    # beyond max_samples a seeded random subset is used
    small = get_predictor("rbf", max_samples=300, random_state=0).fit(X, y)
    assert small.n_samples_fit_ == 300
    np.testing.assert_array_equal(small.predict(Xq), clone(small).fit(X, y).predict(Xq))


# ---------------------------------------------------------------------------------------------- carts
def test_carts_trees_only_split_on_their_gene_subsets():
    X, y = data(80)
    model = get_predictor("carts", n_estimators=25, max_features=0.3, random_state=0).fit(X, y)
    assert len(model.trees_) == 25
    for tree, mask in zip(model.trees_, model.feature_masks_):
        assert mask.sum() == round(0.3 * SPACE.n_var)
        used = tree.feature[tree.feature >= 0]
        assert np.all(mask[used])
    # the batch prediction is the mean of the per-tree predictions
    Xq = SPACE.sample_encodings(9, np.random.default_rng(1))
    Xs = np.ascontiguousarray(model._scale(Xq.astype(float)), dtype=np.float32)
    per_tree = np.mean([t.predict(Xs).reshape(-1) for t in model.trees_], axis=0)
    np.testing.assert_allclose(model.predict(Xq), per_tree)


def test_carts_result_does_not_depend_on_threads():
    X, y = data(60)
    a = get_predictor("carts", n_estimators=30, n_jobs=1, random_state=0).fit(X, y).predict(X[:10])
    b = get_predictor("carts", n_estimators=30, n_jobs=2, random_state=0).fit(X, y).predict(X[:10])
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [0.0, 1.5, 0, 47, "half"])
def test_carts_bad_max_features(bad):
    with pytest.raises(ConfigError, match="max_features"):
        get_predictor("carts", max_features=bad).fit(*data(20))


# ---------------------------------------------------------------------------------------------- adaptive switching
def test_adaptive_switching_picks_argmax_of_pooled_out_of_fold_tau():
    from sklearn.model_selection import KFold

    X, y = data(60)
    model = fast("as", random_state=0).fit(X, y)
    assert set(model.scores_) == {"rbf", "gp", "carts"} and model.winner_ == max(model.scores_, key=model.scores_.get)
    # the winner's score is the Kendall tau of its out-of-fold predictions over all samples: recompute it with the
    # same folds (the fold seed is the switch's first draw after the members' seeds)
    rng = np.random.RandomState(0)
    seeds = {name: int(rng.randint(2**31 - 1)) for name in ("rbf", "gp", "carts")}
    folds = KFold(3, shuffle=True, random_state=int(rng.randint(2**31 - 1))).split(X)
    oof = np.empty(len(y))
    for trn, tst in folds:
        params = FAST["as"]["pool_params"].get(model.winner_, {})
        member = get_predictor(model.winner_, random_state=seeds[model.winner_], **params)
        oof[tst] = member.fit(X[trn], y[trn]).predict(X[tst])
    assert model.scores_[model.winner_] == pytest.approx(kendall_tau(oof, y))


def test_adaptive_switching_unknown_criterion():
    with pytest.raises(ConfigError, match="criterion"):
        get_predictor("as", criterion="median").fit(*data(20))


def test_adaptive_switching_mean_minus_std_as_the_original():
    X, y = data(60)
    model = fast("as", random_state=0, criterion="mean_std").fit(X, y)
    assert isinstance(model, AdaptiveSwitching)
    assert set(model.fold_scores_) == {"rbf", "gp", "carts"}
    assert all(len(s) == 3 for s in model.fold_scores_.values())
    score = {m: np.mean(s) - np.std(s) for m, s in model.fold_scores_.items()}
    assert model.winner_ == max(score, key=score.get)
    assert model.scores_ == pytest.approx(score)
    Xq = SPACE.sample_encodings(10, np.random.default_rng(1))
    np.testing.assert_array_equal(model.predict(Xq), model.estimator_.predict(Xq))
    assert model.estimator_.n_features_in_ == SPACE.n_var


def test_adaptive_switching_prefers_a_better_ranker():
    """On a smooth target rbf/gp rank far better than a one-tree stump ensemble: the switch must not pick it."""
    X, y = data(60)
    model = get_predictor("as", pool=("carts", "rbf"), pool_params={"carts": {"n_estimators": 1,
                          "max_features": 1}}, n_splits=4, random_state=0).fit(X, y)
    assert model.winner_ == "rbf"


def test_adaptive_switching_does_not_depend_on_workers():
    X, y = data(50)
    kw = {"pool": ("mlp", "carts"), "pool_params": {"mlp": FAST["mlp"], "carts": FAST["carts"]}, "n_splits": 4}
    a = get_predictor("as", random_state=1, n_jobs=1, **kw).fit(X, y)
    b = get_predictor("as", random_state=1, n_jobs=2, **kw).fit(X, y)
    assert a.fold_scores_ == b.fold_scores_ and a.winner_ == b.winner_
    np.testing.assert_array_equal(a.predict(X[:5]), b.predict(X[:5]))


def test_adaptive_switching_fold_workers_are_processes():
    import os

    from cnas.surrogates.adaptive import start_workers

    pids = start_workers(2)
    assert pids and os.getpid() not in pids
    assert start_workers(1) == []


def test_adaptive_switching_workers_leave_thread_settings_alone():
    """After the fold workers (and the winner's refit in this process): the torch and BLAS thread counts are what
    they were before."""
    from threadpoolctl import threadpool_info

    X, y = data(40)
    kw = {"pool": ("mlp", "gp"), "pool_params": {"mlp": FAST["mlp"]}, "n_splits": 4, "n_jobs": 2}
    torch.set_num_threads(2)
    blas = [p["num_threads"] for p in threadpool_info()]
    try:
        get_predictor("as", random_state=0, **kw).fit(X, y)
        assert torch.get_num_threads() == 2
        assert [p["num_threads"] for p in threadpool_info()] == blas
    finally:
        torch.set_num_threads(1)


def test_mlp_training_is_torch_optim_adam_with_cosine_decay():
    """The MLP's own Adam step and cosine decay give bit-for-bit the network that torch.optim.Adam(foreach=True)
    stepped with CosineAnnealingLR gives (how the MLP trained before; the arithmetic is the same)."""
    from cnas.surrogates.mlp import _Net

    X, y = data(50)
    m = get_predictor("mlp", n_hidden=16, batch_size=16, random_state=0)
    Xt = torch.as_tensor(X / SPACE.xu, dtype=torch.float32)
    yt = torch.as_tensor((y - y.mean()) / y.std(), dtype=torch.float32)
    init = _Net(X.shape[1], 16, 2, 0.1, torch.Generator().manual_seed(3)).state_dict()
    ours, _ = m._train(init, Xt, yt, 7, seed=5)

    gen = torch.Generator().manual_seed(5)
    net = _Net(X.shape[1], 16, 2, 0.1, gen)
    net.load_state_dict(init)
    opt = torch.optim.Adam(net.parameters(), lr=m.lr, weight_decay=m.weight_decay, foreach=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7 * 4)
    for _ in range(7):
        net.train()
        order = torch.randperm(50, generator=gen)
        for i in range(0, 50, 16):
            b = order[i : i + 16]
            opt.zero_grad(set_to_none=True)
            torch.nn.SmoothL1Loss()(net(Xt[b]), yt[b]).backward()
            opt.step()
            sched.step()
    for k, v in net.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k


def test_adaptive_switching_tiny_archives_skip_cv():
    X, y = data(3)
    model = fast("as", random_state=0).fit(X, y)
    assert model.n_splits_ < 2 and model.winner_ == "rbf"
    assert all(s == [] for s in model.fold_scores_.values())
    model = fast("as", random_state=0, n_splits=10).fit(*data(9))
    assert model.n_splits_ == 4


def test_adaptive_switching_bad_settings():
    with pytest.raises(ConfigError, match="n_splits"):
        get_predictor("as", n_splits=1).fit(*data(20))
    with pytest.raises(ConfigError, match="empty"):
        get_predictor("as", pool=()).fit(*data(20))
    with pytest.raises(ConfigError, match="not in the pool"):
        get_predictor("as", pool=("rbf",), pool_params={"gp": {}}).fit(*data(20))


# ---------------------------------------------------------------------------------------------- rank quality
def test_rank_quality_flattens_before_rmse():
    target = np.array([1.0, 2.0, 3.0, 4.0])
    pred = (target + np.array([1.0, -1.0, 1.0, -1.0])).reshape(-1, 1)  # (N, 1) as the original had
    q = rank_quality(pred, target)
    assert q.rmse == pytest.approx(1.0)  # the original's broadcast (N,1)-(N,) gave a different number
    assert q.rho == pytest.approx(0.6) and q.tau == pytest.approx(1 / 3)
    rmse, rho, tau = rank_quality(target[::-1], target)
    assert rho == pytest.approx(-1.0) and tau == pytest.approx(-1.0) and rmse == pytest.approx(math.sqrt(5))


def test_rank_quality_edge_cases():
    assert math.isnan(rank_quality([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]).tau)
    assert rank_quality([2.0], [1.0]).rmse == pytest.approx(1.0)
    with pytest.raises(UsageError, match="3 predictions for 2 targets"):
        rank_quality([1, 2, 3], [1, 2])
    with pytest.raises(UsageError, match="NaN"):
        rank_quality([1, np.nan], [1, 2])


# ---------------------------------------------------------------------------------------------- rank quality bars
TAU_BAR = {"rbf": 0.9, "gp": 0.9, "mlp": 0.75, "carts": 0.55, "as": 0.9}


@pytest.mark.parametrize("name", NAMES)
def test_each_predictor_ranks_a_structured_target(name):
    """Default settings (3 folds for as), 120 archs, 400 held out: Kendall tau above a per-model bar (the
    original's carts reached 0.28 and its mlp below 0 on a comparable task)."""
    X, y = data(120, seed=0)
    Xq = SPACE.sample_encodings(400, np.random.default_rng(7))
    kw = {"n_splits": 3} if name == "as" else {}
    model = get_predictor(name, random_state=0, **kw).fit(X, y)
    q = rank_quality(model.predict(Xq), structured(Xq))
    assert q.tau > TAU_BAR[name], q


# ---------------------------------------------------------------------------------------------- the surrogate step
def test_same_arch_decides_as_pairwise_array_equal():
    """cnas.problems.SameArch (a set of encodings) marks exactly the individuals that pymoo's pairwise
    ElementwiseDuplicateElimination with np.array_equal marks, within a population and against others."""
    from pymoo.core.duplicate import ElementwiseDuplicateElimination
    from pymoo.core.population import Population

    from cnas.problems import SameArch

    class Pairwise(ElementwiseDuplicateElimination):
        def is_equal(self, a, b):
            return np.array_equal(a.X, b.X)

    rng = np.random.default_rng(0)
    for _ in range(20):
        pool = rng.integers(0, 3, size=(6, 4)).astype(float)
        pop = Population.new(X=pool[rng.integers(0, 6, 15)])
        other = Population.new(X=pool[rng.integers(0, 6, 4)].astype(np.int64))
        for args in ((), (other,)):
            a = SameArch().do(pop, *args, return_indices=True)[1]
            b = Pairwise().do(pop, *args, return_indices=True)[1]
            assert a == b


def test_gap_scores_of_a_population_are_the_row_by_row_ones():
    from cnas.problems import _gap_std

    rng = np.random.default_rng(1)
    f2_cand, f2_front = rng.normal(size=30), np.round(rng.normal(size=5), 1)
    X = np.zeros((40, 30), dtype=bool)
    for row in X:
        row[rng.choice(30, rng.integers(0, 9), replace=False)] = True
    for front in (f2_front, np.zeros(0)):
        want = [np.std(np.diff(np.sort(np.concatenate([front, f2_cand[r]])))) if len(front) + r.sum() > 1 else 0.0
                for r in X]
        np.testing.assert_array_equal(_gap_std(X, f2_cand, front), want)


def test_gap_subset_is_the_exact_minimum_over_all_subsets():
    import itertools

    from cnas.problems import _gap_std, _gap_subset

    rng = np.random.default_rng(3)
    for _ in range(60):
        n = int(rng.integers(2, 10))
        k = int(rng.integers(1, n))
        f2_cand = np.round(rng.normal(size=n), int(rng.integers(1, 3)))  # rounding makes ties
        front = np.round(rng.normal(size=int(rng.integers(0, 5))), 1)
        picked = _gap_subset(f2_cand, front, k)
        assert len(set(picked.tolist())) == k and picked.min() >= 0 and picked.max() < n

        def score(sub):
            row = np.zeros((1, n), dtype=bool)
            row[0, list(sub)] = True
            return _gap_std(row, f2_cand, front)[0]

        best = min(score(s) for s in itertools.combinations(range(n), k))
        assert score(picked) == pytest.approx(best, abs=1e-12)
        assert np.array_equal(picked, _gap_subset(f2_cand, front, k))  # deterministic


# ---------------------------------------------------------------------------------------------- LinearTrend
def _one_strong_gene(n, seed):
    """Encodings of the resolution-varying space whose target is dominated by the last gene (the resolution's
    index), plus weak effects of a few others and noise."""
    rng = np.random.default_rng(seed)
    X = SPACE.sample_encodings(n, rng).astype(float)
    y = -2.0 * X[:, -1] + 0.2 * X[:, :6].sum(axis=1) + 0.3 * rng.normal(size=n)
    return X, y


def test_linear_trend_learns_a_strong_gene_from_few_archs():
    """Fitted on 12 archs, the trees alone rank unseen ones poorly; with the line in the strong gene first they
    rank them well, and the line's slope is the gene's effect."""
    from cnas.surrogates import LinearTrend

    X, y = _one_strong_gene(212, 0)
    plain, trend = [], []
    for rep in range(4):
        p = np.random.default_rng(rep).permutation(len(y))
        tr, te = p[:12], p[12:]
        base = get_predictor("carts", random_state=0, **FAST["carts"])
        plain.append(kendall_tau(clone(base).fit(X[tr], y[tr]).predict(X[te]), y[te]))
        m = LinearTrend(base, (SPACE.resolution_column,)).fit(X[tr], y[tr])
        trend.append(kendall_tau(m.predict(X[te]), y[te]))
    assert np.mean(trend) > 0.85 and np.mean(trend) > np.mean(plain) + 0.15, (plain, trend)
    m = LinearTrend(get_predictor("rbf"), (-1,)).fit(X, y)
    assert m.coef_[1] == pytest.approx(-2.0, abs=0.15) and m.base_ is not None


def test_linear_trend_contract_and_a_constant_gene():
    from cnas.surrogates import LinearTrend

    X, y = _one_strong_gene(30, 1)
    m = LinearTrend(get_predictor("gp"), (-1,))
    assert clone(m).get_params()["columns"] == (-1,)
    Xc = X.copy()
    Xc[:, -1] = 2.0  # one resolution only: the line is flat, not extrapolated from a split intercept
    fitted = m.fit(Xc, y)
    assert fitted.coef_[1] == 0.0
    Xq = X[:5].copy()
    Xq[:, -1] = 0.0
    base = clone(get_predictor("gp")).fit(Xc, y - y.mean())
    np.testing.assert_allclose(fitted.predict(Xq), y.mean() + base.predict(Xq), rtol=1e-6, atol=1e-6)
    with pytest.raises(UsageError, match="columns"):
        LinearTrend(get_predictor("gp"), (X.shape[1],)).fit(X, y)
    with pytest.raises(UsageError, match="base"):
        LinearTrend(None).fit(X, y)
