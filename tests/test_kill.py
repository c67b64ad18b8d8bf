"""A real ``kill -9`` of ``python -m cnas.search``, during the initial design and during a later iteration: the
same command (or ``--resume``) finishes the run with the archive of an uninterrupted one.

Candidates inherit the weights of a small untrained supernet the test writes (``--n_epochs 0``), so each costs
about a second; the kill comes as soon as the first candidate of the targeted iteration has written its stats.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cnas.models import build_supernet, save_supernet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def supernet(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sn") / "tiny.pth"
    save_supernet(path, build_supernet(10))
    return path


def command(save, supernet):
    return [sys.executable, "-m", "cnas.search", "--save", str(save), "--supernet_path", str(supernet),
            "--n_epochs", "0", "--sec_obj", "macs", "--n_doe", "5", "--iterations", "2", "--n_iter", "2",
            "--pop_size", "8", "--n_gens", "2", "--first_predictor", "rbf", "--plots", "false", "--quiet",
            "--num_threads", "1", "--bn_recal_images", "64"]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def final_archive(save):
    stats = json.loads((save / "iter_2.stats").read_text())
    return stats["archive"], stats["rng_state"], stats["hv_history"]


def kill_when(cmd, done, timeout=240):
    """Start ``cmd``, SIGKILL it as soon as ``done()`` holds; True when it was killed (not finished before)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    t0 = time.time()
    try:
        while proc.poll() is None and time.time() - t0 < timeout:
            if done():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return False


def test_kill_9_during_the_design_and_a_later_iteration(tmp_path, supernet):
    full = tmp_path / "full"
    r = subprocess.run(command(full, supernet), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr

    part = tmp_path / "part"
    assert kill_when(command(part, supernet), lambda: (part / "iter_0" / "net_1" / "net_1.stats").exists())
    assert not (part / "iter_0.stats").exists()  # killed inside the initial design
    assert kill_when(command(part, supernet), lambda: (part / "iter_1" / "net_0" / "net_0.stats").exists())
    assert (part / "iter_0.stats").exists() and not (part / "iter_1.stats").exists()
    resume = [sys.executable, "-m", "cnas.search", "--resume", str(part / "iter_0.stats"), "--quiet"]
    r = subprocess.run(resume, capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr
    assert final_archive(part) == final_archive(full)
    assert not list(part.rglob(".*.tmp"))


def test_kill_9_during_a_fine_tune(tmp_path):
    """``cnas.train --model_path <pick>`` killed after its first epoch's state file: the same command resumes it
    to the weights of an uninterrupted fine-tune, bit for bit (SAM, the recipe's optimizer)."""
    import shutil

    from test_finetune import make_pick, small

    pick = make_pick(tmp_path / "pick", small())
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(pick, a)
    shutil.copytree(pick, b)

    def cmd(folder):
        return [sys.executable, "-m", "cnas.train", "--model_path", str(folder), "--epochs", "3", "--batch_size",
                "256", "--bn_recal_images", "256", "--num_threads", "1", "--quiet"]

    r = subprocess.run(cmd(a), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr
    state = b / "train_state.pth"
    assert kill_when(cmd(b), lambda: state.exists())
    assert not (b / "ckpt.finetuned.pth").exists()
    r = subprocess.run(cmd(b), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr
    wa = torch.load(a / "ckpt.finetuned.pth", weights_only=True)["state_dict"]
    wb = torch.load(b / "ckpt.finetuned.pth", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_kill_9_during_a_post_search(tmp_path, supernet):
    """``cnas.post_search`` killed while it writes its picks (inheriting weights from the supernet, so each pick
    takes a moment): the same command completes them as an uninterrupted run writes them."""
    from conftest import FakeExecutor

    from cnas.config import SearchConfig
    from cnas.engine import Search
    from cnas.evaluation import EvalSettings

    run = tmp_path / "run"
    cfg = SearchConfig(save=str(run), sec_obj="macs", n_doe=12, iterations=1, n_iter=4, pop_size=12, n_gens=3,
                       first_predictor="rbf", plots=False, progress=False)
    Search(cfg, EvalSettings(), log=lambda m: None, executor=FakeExecutor()).run()

    def cmd(out):
        return [sys.executable, "-m", "cnas.post_search", "--expr", str(run / "iter_1.stats"), "--save", str(out),
                "-n", "4", "--supernet_path", str(supernet)]

    whole, part = tmp_path / "whole", tmp_path / "part"
    r = subprocess.run(cmd(whole), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr
    assert kill_when(cmd(part), lambda: (part / "net-trade-off_0" / "pick.json").exists())
    assert not (part / "results.csv").exists()
    r = subprocess.run(cmd(part), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in whole.iterdir() if p.is_dir())
    assert sorted(p.name for p in part.iterdir() if p.is_dir()) == names and len(names) >= 4
    for n in names:
        assert (part / n / "net.subnet").read_text() == (whole / n / "net.subnet").read_text()
        wa = torch.load(whole / n / "inherited.pth", weights_only=True)["state_dict"]
        wb = torch.load(part / n / "inherited.pth", weights_only=True)["state_dict"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not list(part.glob(".*"))
