"""Progress bars are drawn on a terminal only: a log file or pipe gets no carriage-return redraws."""

from __future__ import annotations

import io
import sys

import torch
import torch.nn as nn

from cnas.executors import _Progress
from cnas.progress import is_terminal, progress_bar
from cnas.training.trainer import TrainConfig, train


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_non_terminal_stream_gets_nothing():
    buf = io.StringIO()
    bar = progress_bar(range(50), file=buf, desc="x")
    assert list(bar) == list(range(50))  # a pass-through when disabled
    bar = progress_bar(total=10, file=buf)
    bar.set_postfix(done=1)
    bar.update(3)
    bar.refresh()
    bar.close()
    assert buf.getvalue() == ""


def test_terminal_stream_gets_a_bar():
    term = FakeTerminal()
    for _ in progress_bar(range(5), file=term, mininterval=0):
        pass
    assert "\r" in term.getvalue()


def test_default_stream_is_stderr_at_call_time(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    assert list(progress_bar(range(3))) == [0, 1, 2]
    assert buf.getvalue() == ""
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    list(progress_bar(range(3), mininterval=0))
    assert "\r" in term.getvalue()


def test_is_terminal_on_odd_streams():
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)
    assert not is_terminal(None)
    assert not is_terminal(object())
    assert is_terminal(FakeTerminal())


def test_training_progress_writes_no_carriage_returns_to_a_log(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    loader = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)]
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    train(model, loader, None, TrainConfig(epochs=2, progress=True, warmup_epochs=0))
    assert "\r" not in buf.getvalue()


def test_executor_progress_writes_no_carriage_returns_to_a_log(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    p = _Progress(20, enabled=True)
    for i in range(20):
        p.running_now(i % 3)
        p.finished(i % 4 != 0)
    p.close()
    assert "\r" not in buf.getvalue()
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    p = _Progress(3, enabled=True)
    p.finished(True)
    p.close()
    assert "\r" in term.getvalue()
