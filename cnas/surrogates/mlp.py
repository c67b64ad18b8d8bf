"""A small torch MLP regressor (the original's ``mlp``): 2 hidden layers of 300 units, Adam, smooth L1 loss, the
epoch with the lowest loss on a held-out split kept.

Deviations from the original, for speed and stability (its fit was slow and ranked worse than chance on
the linear-plus-sine target of ``benchmarks/surrogates.py``):

- targets are standardised (the original regressed raw errors in %, where smooth L1 acts like L1);
- mini-batches of ``batch_size`` with a cosine learning-rate decay over at most ``max_epochs`` epochs, and
  early stopping after ``patience`` epochs without a better held-out loss;
- the held-out split (``valid_fraction``) only chooses the epoch; with ``refit=True`` (default) the network is
  then retrained from the same initialisation on every sample for that many epochs, so small archives do not
  lose a fifth of their data (``refit=False`` keeps the held-out snapshot, as the original);
- archives of fewer than 10 samples skip the split and train for a fixed ``min(max_epochs, 100)`` epochs;
- torch runs with ``n_threads`` threads (1 by default: the network is tiny, and the search runs other work
  beside it), restored afterwards; initialisation, batch order and dropout masks are drawn from a private
  ``torch.Generator`` seeded from ``random_state``, so a seed fixes the result even when several fits run in
  threads at once (adaptive switching), and torch's global seed is left alone;
- the optimiser is a private Adam with the cosine decay built in (:class:`_Adam`): bit for bit what
  ``torch.optim.Adam(foreach=True)`` with ``CosineAnnealingLR`` computes (a test compares them), without their
  per-step Python cost and without the ``torch._dynamo`` import that ``torch.optim`` triggers on first use (one to
  two seconds of CPU once per process, which the first search step paid).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from cnas.errors import ConfigError
from cnas.surrogates._base import SEED_MAX, SurrogateBase


class _Net(nn.Module):
    """ReLU MLP whose initialisation and dropout masks come from ``generator`` (never torch's global RNG)."""

    def __init__(self, n_in: int, n_hidden: int, n_layers: int, dropout: float, generator: torch.Generator):
        super().__init__()
        widths = [n_in] + [n_hidden] * n_layers + [1]
        self.linears = nn.ModuleList(skip_init(nn.Linear, a, b) for a, b in zip(widths[:-1], widths[1:]))
        with torch.no_grad():
            for lin in self.linears:  # torch's default Linear initialisation, drawn from the generator
                bound = 1.0 / math.sqrt(lin.in_features)
                lin.weight.uniform_(-bound, bound, generator=generator)
                lin.bias.uniform_(-bound, bound, generator=generator)
        self.dropout = dropout
        self.generator = generator

    def forward(self, x):
        for lin in self.linears[:-1]:
            x = torch.relu(lin(x))
        if self.training and self.dropout > 0:
            keep = torch.rand(x.shape, generator=self.generator) >= self.dropout
            x = x * keep / (1.0 - self.dropout)
        return self.linears[-1](x).squeeze(-1)


class _Adam:
    """Adam (L2 weight decay) with a per-step cosine learning-rate decay to 0 over ``t_max`` steps: the same
    arithmetic as ``torch.optim.Adam(foreach=True)`` stepped with ``CosineAnnealingLR(T_max=t_max)`` (the same
    foreach kernels on the same operands, in the same order, and the scheduler's recursive learning-rate update),
    so a seed gives bit-for-bit the model those give, at a fraction of their per-step Python cost and without
    ``torch.optim``'s first-use import of ``torch._dynamo`` (seconds of CPU, once per process). The networks are
    tiny, so the per-step overhead, not the arithmetic, is what a fit spends its time on."""

    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(self, params: list, lr: float, weight_decay: float, t_max: int):
        self.params, self.base_lr, self.lr, self.weight_decay, self.t_max = params, lr, lr, weight_decay, t_max
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self.t = 0  # steps taken, which is also the scheduler's epoch counter

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        params = self.params
        grads = [p.grad for p in params]
        self.t += 1
        if self.weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        torch._foreach_lerp_(self.exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sqs, beta2)
        torch._foreach_addcmul_(self.exp_avg_sqs, grads, grads, 1 - beta2)
        t = float(self.t)
        step_size = [(self.lr / (1 - beta1**t)) * -1] * len(params)
        denom = torch._foreach_sqrt(self.exp_avg_sqs)
        torch._foreach_div_(denom, [(1 - beta2**t) ** 0.5] * len(params))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, self.exp_avgs, denom, step_size)
        self._decay()

    def _decay(self) -> None:
        """CosineAnnealingLR's recursive update after step ``t`` (eta_min 0)."""
        e, T, eta_min = self.t, self.t_max, 0.0
        if (e - 1 - T) % (2 * T) == 0:
            self.lr = self.lr + (self.base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
        else:
            self.lr = ((1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T))
                       * (self.lr - eta_min) + eta_min)


class _threads:
    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(int(self.n))

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


class MLP(SurrogateBase):
    """MLP regressor (``n_layers`` hidden layers of ``n_hidden`` ReLU units, dropout before the output).

    Parameters: ``n_hidden``, ``n_layers``, ``dropout``, ``lr``, ``weight_decay``, ``batch_size``,
    ``max_epochs``, ``patience``, ``valid_fraction``, ``refit``, ``n_threads``, ``random_state``.
    """

    def __init__(self, n_hidden: int = 300, n_layers: int = 2, dropout: float = 0.1, lr: float = 1e-3,
                 weight_decay: float = 1e-4, batch_size: int = 64, max_epochs: int = 150, patience: int = 10,
                 valid_fraction: float = 0.2, refit: bool = True, n_threads: int | None = 1, random_state=None):
        self.n_hidden = n_hidden
        self.n_layers = n_layers
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.valid_fraction = valid_fraction
        self.refit = refit
        self.n_threads = n_threads
        self.random_state = random_state

    def _check(self):
        if int(self.n_hidden) < 1 or int(self.n_layers) < 1:
            raise ConfigError(f"mlp needs n_hidden >= 1 and n_layers >= 1, got {self.n_hidden}, {self.n_layers}")
        if int(self.max_epochs) < 1 or int(self.batch_size) < 1:
            raise ConfigError(
                f"mlp needs max_epochs >= 1 and batch_size >= 1, got {self.max_epochs}, {self.batch_size}")
        if not 0.0 < float(self.valid_fraction) < 1.0:
            raise ConfigError(f"mlp valid_fraction must be in (0, 1), got {self.valid_fraction!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"mlp dropout must be in [0, 1), got {self.dropout!r}")

    def _train(self, init_state, X, y, epochs, Xv=None, yv=None, seed=0):
        """Train from ``init_state`` for ``epochs``; returns (network, epoch): with a held-out set, the network
        at its best held-out epoch, stopping after ``patience`` epochs without improvement."""
        gen = torch.Generator().manual_seed(seed)
        net = _Net(X.shape[1], int(self.n_hidden), int(self.n_layers), float(self.dropout), gen)
        net.load_state_dict(init_state)
        n = len(X)
        bs = min(int(self.batch_size), n)
        steps_per_epoch = math.ceil(n / bs)
        opt = _Adam(list(net.parameters()), float(self.lr), float(self.weight_decay),
                    t_max=max(1, epochs * steps_per_epoch))
        best, best_state, best_epoch, since = math.inf, None, epochs, 0
        for epoch in range(1, epochs + 1):
            net.training = True  # only _Net.forward reads the mode (dropout); its Linear children do not
            order = torch.randperm(n, generator=gen)
            for i in range(0, n, bs):
                b = order[i : i + bs]
                opt.zero_grad()
                F.smooth_l1_loss(net.forward(X[b]), y[b]).backward()
                opt.step()
            if Xv is None:
                continue
            net.training = False
            with torch.no_grad():
                v = float(F.smooth_l1_loss(net.forward(Xv), yv))
            if v < best - 1e-7:
                best, best_epoch, since = v, epoch, 0
                best_state = {k: t.clone() for k, t in net.state_dict().items()}
            else:
                since += 1
                if self.patience is not None and since >= int(self.patience):
                    break
        if Xv is not None:
            net.load_state_dict(best_state)
        opt.zero_grad()
        net.eval()
        net.generator = None  # only needed for training; keeps the fitted model picklable
        return net, best_epoch

    def _fit(self, X, y, rng):
        self._check()
        self.y_mean_ = float(y.mean())
        self.y_std_ = float(y.std()) or 1.0
        yt = (y - self.y_mean_) / self.y_std_
        seed = int(rng.randint(SEED_MAX))
        n = len(X)
        with _threads(self.n_threads):
            gen = torch.Generator().manual_seed(seed)
            init = _Net(X.shape[1], int(self.n_hidden), int(self.n_layers), float(self.dropout), gen).state_dict()
            Xt = torch.as_tensor(X, dtype=torch.float32)
            Yt = torch.as_tensor(yt, dtype=torch.float32)
            if n < 10:
                self.net_, self.best_epoch_ = self._train(init, Xt, Yt, min(int(self.max_epochs), 100), seed=seed)
                return
            perm = rng.permutation(n)
            n_val = max(2, int(round(float(self.valid_fraction) * n)))
            val, trn = perm[:n_val], perm[n_val:]
            net, epoch = self._train(init, Xt[trn], Yt[trn], int(self.max_epochs), Xt[val], Yt[val], seed=seed)
            self.best_epoch_ = epoch
            if self.refit:
                net, _ = self._train(init, Xt, Yt, epoch, seed=seed + 1)
            self.net_ = net

    def _predict(self, X):
        with _threads(self.n_threads), torch.no_grad():
            out = self.net_(torch.as_tensor(X, dtype=torch.float32)).double().numpy()
        return out * self.y_std_ + self.y_mean_
