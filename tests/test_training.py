import io
import math

import pytest
import torch
import torch.nn as nn

from cnas.errors import CheckpointError, ConfigError
from cnas.training.robustness import sigma_grid, top1_robust, weight_robustness
from cnas.training.sam import SAM, frozen_bn_stats
from cnas.training.trainer import TrainConfig, TrainingDiverged, evaluate, make_optimizer, make_scheduler, train

torch.set_num_threads(1)


class Batches:
    """A tiny seeded loader whose order depends on (seed, epoch) only."""

    def __init__(self, x, y, bs, seed=0):
        self.x, self.y, self.bs, self.seed, self.epoch = x, y, bs, seed, 0
        self.dataset = x

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return math.ceil(len(self.x) / self.bs)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        idx = torch.randperm(len(self.x), generator=g)
        for i in range(0, len(idx), self.bs):
            j = idx[i:i + self.bs]
            yield self.x[j], self.y[j]


def toy(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))


def test_cosine_decays_once_over_the_run():
    opt = torch.optim.SGD(net().parameters(), lr=0.1)
    cfg = TrainConfig(epochs=4, lr=0.1, lr_min=0.001, warmup_epochs=1)
    sched = make_scheduler(opt, cfg, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[9]  # warm-up rises
    after = lrs[10:]
    assert all(a >= b for a, b in zip(after, after[1:]))  # then decays monotonically, no oscillation
    assert after[-1] == pytest.approx(0.001, rel=0.05)
    assert max(lrs) == pytest.approx(0.1, rel=0.02)


@pytest.mark.parametrize("optim", ["SGD", "SAM"])
def test_training_learns_and_is_deterministic(optim):
    x, y = toy()
    tr, va = Batches(x[:192], y[:192], 32), Batches(x[192:], y[192:], 64)
    cfg = TrainConfig(epochs=4, lr=0.1, optim=optim, rho=0.05, adaptive=False)
    m1, m2 = net(), net()
    r1 = train(m1, tr, va, cfg)
    r2 = train(m2, tr, va, cfg)
    assert r1.history == r2.history
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert evaluate(m1, va)["acc"] > 0.85
    assert r1.history[-1]["train_loss"] < r1.history[0]["train_loss"]


def test_best_epoch_weights_are_restored():
    x, y = toy()
    tr, va = Batches(x[:192], y[:192], 32), Batches(x[192:], y[192:], 64)
    m = net()
    r = train(m, tr, va, TrainConfig(epochs=3, lr=0.05))
    best = min(range(3), key=lambda i: r.history[i]["val_loss"])
    assert r.best_epoch == best
    assert evaluate(m, va)["loss"] == pytest.approx(r.history[best]["val_loss"], rel=1e-5)


def test_sam_removes_its_perturbation():
    m = net()
    before = [p.detach().clone() for p in m.parameters()]
    opt = SAM(m.parameters(), torch.optim.SGD, rho=0.5, adaptive=True, lr=0.0)
    x, y = toy(32)
    nn.functional.cross_entropy(m(x), y).backward()
    opt.first_step(zero_grad=True)
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters()))
    with frozen_bn_stats(m):
        bn = m[1]
        rm = bn.running_mean.clone()
        nn.functional.cross_entropy(m(x), y).backward()
        assert torch.equal(bn.running_mean, rm)
    opt.second_step(zero_grad=True)
    for a, b in zip(before, m.parameters()):
        assert torch.allclose(a, b)
    assert m[1].momentum == 0.1


def test_divergence_is_reported():
    x, y = toy()
    tr = Batches(x, y, 32)
    bad = lambda out, yy: out.sum() * float("nan")  # noqa: E731
    with pytest.raises(TrainingDiverged):
        train(net(), tr, None, TrainConfig(epochs=1), loss_fn=bad)


def test_a_climbing_training_loss_is_reported_once():
    x, y = toy()
    tr, va = Batches(x[:192], y[:192], 32), Batches(x[192:], y[192:], 64)
    scale = {"f": 1.0}
    climbing = lambda out, yy: nn.functional.cross_entropy(out, yy) * scale["f"]  # noqa: E731

    def grow(epoch, model):
        scale["f"] = 3.0 ** epoch

    lines = []
    train(net(), tr, va, TrainConfig(epochs=3, lr=0.05), loss_fn=climbing, on_epoch_start=grow, log=lines.append)
    rises = [m for m in lines if "training loss rose" in m]
    assert len(rises) == 1 and "epoch 1" in rises[0] and "epoch 2" in rises[0] and "grad_clip" in rises[0]
    assert lines.index(rises[0]) == 2  # after the log line of the epoch it is about
    with pytest.warns(RuntimeWarning, match="training loss rose") as caught:
        train(net(), tr, va, TrainConfig(epochs=2, lr=0.05), loss_fn=climbing, on_epoch_start=grow)
    assert caught[0].filename == __file__  # points at the caller of train()
    lines.clear()
    train(net(), tr, va, TrainConfig(epochs=3, lr=0.05), loss_fn=climbing, on_epoch_start=grow, log=lines.append,
          check_rise=False)  # a loss that grows by design
    assert not any("training loss rose" in m for m in lines)
    lines.clear()
    train(net(), tr, va, TrainConfig(epochs=3, lr=0.05), log=lines.append)  # a run that learns says nothing
    assert not any("training loss rose" in m for m in lines)


def test_a_tiny_last_batch_is_skipped_and_the_schedule_kept():
    x, y = toy(n=192 + 2)  # batches of 32: six full ones and one of 2
    sizes = []

    def loss(out, yy):
        sizes.append(len(yy))
        return nn.functional.cross_entropy(out, yy)

    cfg = TrainConfig(epochs=2, lr=0.05, lr_min=0.001)
    res = train(net(), Batches(x, y, 32), None, cfg, loss_fn=loss)
    assert sizes == [32] * 12  # the 2-image batches never stepped
    assert res.history[-1]["lr"] == pytest.approx(0.001)  # the cosine still ends at lr_min
    sizes.clear()
    x, y = toy(n=192 + 16)  # a last batch of half the size is trained on
    train(net(), Batches(x, y, 32), None, cfg, loss_fn=loss)
    assert sorted(set(sizes)) == [16, 32] and len(sizes) == 14


def interrupted_run(cfg, ck):
    """``(loaders, weights of an uninterrupted run)``; then the same run killed at its third validation (after
    epoch 2), leaving its state in ``ck``."""
    x, y = toy()
    tr, va = Batches(x[:192], y[:192], 32, seed=3), Batches(x[192:], y[192:], 64)
    full = net()
    train(full, tr, va, cfg)
    calls = {"n": 0}

    def crashing_eval(model):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return evaluate(model, va)

    with pytest.raises(KeyboardInterrupt):
        train(net(), tr, va, cfg, eval_fn=crashing_eval, checkpoint_path=str(ck))
    return tr, va, full


def test_resume_gives_the_uninterrupted_result(tmp_path):
    cfg = TrainConfig(epochs=4, lr=0.1)
    ck = tmp_path / "train_state.pth"
    tr, va, full = interrupted_run(cfg, ck)
    resumed = net(seed=99)  # fresh weights: everything must come from the checkpoint
    r = train(resumed, tr, va, cfg, checkpoint_path=str(ck))
    assert len(r.history) == 4
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b)


@pytest.mark.parametrize("optim", ["SGD", "SAM"])
def test_resume_is_exact_with_the_whole_optimizer_state(tmp_path, optim):
    """Killed after epoch 2 of 4 and resumed: bit-identical weights; the state holds every momentum buffer
    (SAM's are its base SGD's)."""
    cfg = TrainConfig(epochs=4, lr=0.1, optim=optim, rho=0.05)
    ck = tmp_path / "train_state.pth"
    tr, va, full = interrupted_run(cfg, ck)
    state = torch.load(ck, weights_only=True)["optimizer"]["state"]
    n_params = len(list(net().parameters()))
    assert len(state) == n_params and all("momentum_buffer" in s for s in state.values())
    resumed = net(seed=99)
    train(resumed, tr, va, cfg, checkpoint_path=str(ck))
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_sam_state_dict_round_trip_keeps_the_base_optimizer():
    x, y = toy(32)

    def step(m, opt):
        nn.functional.cross_entropy(m(x), y).backward()
        opt.first_step(zero_grad=True)
        nn.functional.cross_entropy(m(x), y).backward()
        opt.second_step(zero_grad=True)

    a = net()
    opt_a = SAM(a.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    step(a, opt_a)
    b = net()
    b.load_state_dict(a.state_dict())
    opt_b = SAM(b.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    buf = io.BytesIO()  # through a file, as on resume
    torch.save(opt_a.state_dict(), buf)
    buf.seek(0)
    opt_b.load_state_dict(torch.load(buf, weights_only=True))
    assert opt_b.param_groups is opt_b.base_optimizer.param_groups
    step(a, opt_a)
    step(b, opt_b)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_resuming_with_another_recipe_is_refused(tmp_path):
    x, y = toy()
    ck = tmp_path / "train_state.pth"
    train(net(), Batches(x, y, 32), None, TrainConfig(epochs=1), checkpoint_path=str(ck))
    with pytest.raises(ConfigError, match="other settings.*lr: 0.05 -> 0.1"):
        train(net(), Batches(x, y, 32), None, TrainConfig(epochs=1, lr=0.1), checkpoint_path=str(ck))
    train(net(), Batches(x, y, 32), None, TrainConfig(epochs=1, progress=True), checkpoint_path=str(ck))


def test_corrupt_training_checkpoint_is_one_clear_error(tmp_path):
    ck = tmp_path / "train_state.pth"
    ck.write_bytes(b"not a torch file")
    x, y = toy()
    with pytest.raises(CheckpointError, match="train_state.pth"):
        train(net(), Batches(x, y, 32), None, TrainConfig(epochs=1), checkpoint_path=str(ck))


def test_bad_config():
    with pytest.raises(ConfigError, match="--optim"):
        make_optimizer(net().parameters(), TrainConfig(optim="adam").validate())


def test_sigma_grid_and_top1_robust():
    assert sigma_grid(0.05, 0.05, 0.05) == [0.05]
    assert sigma_grid(0.0, 0.1, 0.05) == [0.0, 0.05, 0.1]
    assert top1_robust(10.0, 4.0, alpha=0.5, alpha_norm=2.0) == 9.0
    with pytest.raises(ConfigError):
        sigma_grid(0.2, 0.1)


def test_weight_robustness_is_seeded_and_restores_weights():
    x, y = toy()
    va = Batches(x, y, 64)
    m = net()
    train(m, va, None, TrainConfig(epochs=2, lr=0.1))
    before = [p.detach().clone() for p in m.parameters()]
    r1 = weight_robustness(m, va, [0.0, 0.5], n_draws=5, seed=1)
    r2 = weight_robustness(m, va, [0.0, 0.5], n_draws=5, seed=1)
    assert r1 == r2
    assert r1[0] == 0.0 and r1[1] > 0.0
    for a, b in zip(before, m.parameters()):
        assert torch.equal(a, b)
