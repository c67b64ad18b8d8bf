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
