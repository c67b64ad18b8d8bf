"""Out-of-distribution robustness: the 15 corruptions x 5 severities on tiny images (seeded, numpy's state left
alone), the images of a split recovered before normalization, CIFAR-10-C-style .npy folders (tiny ones written
here) and the mCE2 / mce stats of an evaluation; bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnas.data import load_data
from cnas.errors import ConfigError, DataError
from cnas.evaluation import EvalSettings, preflight, resolve_arch, run_pipeline
from cnas.models import build_network
from cnas.objectives import OBJECTIVES
from cnas.spaces import get_space
from cnas.training import ood

torch.set_num_threads(1)
ARCH = dict(get_space("mobilenetv3", 32, 32).smallest(), r=32)


def tiny_images(n=3, side=32, seed=0):
    rng = np.random.default_rng(seed)
    base = np.zeros((n, side, side, 3), np.uint8)
    base[:, side // 4: 3 * side // 4, side // 4: 3 * side // 4] = 200  # a bright square on black, plus noise
    return np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_every_corruption_and_severity_on_tiny_images():
    x = tiny_images()
    state = np.random.get_state()
    sets = ood.corrupted_set(x, seed=3)
    assert set(sets) == {(c, s) for c in ood.CORRUPTIONS for s in ood.SEVERITIES} and len(sets) == 75
    for (name, s), y in sets.items():
        assert y.shape == x.shape and y.dtype == np.uint8, name
        assert not np.array_equal(y, x), (name, s)  # every corruption changes the images
    for name in ood.CORRUPTIONS:  # severity 5 moves the images further than severity 1, on average
        d1 = np.abs(sets[(name, 1)].astype(int) - x).mean()
        d5 = np.abs(sets[(name, 5)].astype(int) - x).mean()
        assert d5 >= 0.9 * d1, name
    assert np.array_equal(ood.corrupt_images(x, "gaussian_noise", 2, seed=3), sets[("gaussian_noise", 2)])
    assert not np.array_equal(ood.corrupt_images(x, "gaussian_noise", 2, seed=4), sets[("gaussian_noise", 2)])
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1])  # numpy's global state untouched


def test_corruptions_refuse_small_or_bad_input():
    with pytest.raises(ConfigError, match="at least 32"):
        ood.corrupt_images(tiny_images(side=16), "fog", 1, 0)
    with pytest.raises(ConfigError, match="unknown corruption"):
        ood.corrupt_images(tiny_images(), "rain", 1, 0)
    with pytest.raises(ConfigError, match="severity"):
        ood.corrupt_images(tiny_images(), "fog", 6, 0)


def test_split_images_are_the_loaders_images_before_normalization():
    loaders = load_data("digits", None, resolution=32, batch_size=64, seed=0)
    images, labels = ood.split_images(loaders.val, loaders.mean, loaders.std)
    assert images.dtype == np.uint8 and images.shape == (len(labels), 32, 32, 3) and len(labels) == 360
    x, y = next(iter(loaders.val))
    m = torch.tensor(loaders.mean).view(1, 3, 1, 1)
    s = torch.tensor(loaders.std).view(1, 3, 1, 1)
    back = (torch.from_numpy(images[: len(y)]).permute(0, 3, 1, 2).float() / 255 - m) / s
    assert (back - x).abs().max() <= 0.5 / 255 / min(loaders.std) + 1e-5
    assert np.array_equal(labels[: len(y)], y.numpy())
    sub, sub_labels = ood.split_images(loaders.val, loaders.mean, loaders.std, n=50, seed=1)
    assert len(sub) == 50 and np.bincount(sub_labels, minlength=10).min() == 5  # class-balanced


def write_c_folder(d, n=4, side=32, n_classes=10, labels_per_severity=False):
    """A CIFAR-10-C-style folder: one (5 n, side, side, 3) uint8 array per corruption, labels.npy."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, n_classes, n)
    for name in ood.CORRUPTIONS:
        np.save(d / f"{name}.npy", rng.integers(0, 256, (5 * n, side, side, 3)).astype(np.uint8))
    np.save(d / "labels.npy", labels if labels_per_severity else np.tile(labels, 5))
    return d


def test_read_corruption_folder(tmp_path):
    d = write_c_folder(tmp_path / "c10c")
    sets, labels = ood.read_corruption_folder(d, n_classes=10)
    assert len(sets) == 75 and labels.shape == (4,)
    assert sets[("fog", 2)].shape == (4, 32, 32, 3)
    full = np.load(d / "fog.npy")
    assert np.array_equal(sets[("fog", 3)], full[8:12])
    sets, labels = ood.read_corruption_folder(write_c_folder(tmp_path / "one", labels_per_severity=True), 10)
    assert labels.shape == (4,)


@pytest.mark.parametrize("break_it, needle", [
    (lambda d: (d / "frost.npy").unlink(), "has no frost.npy"),
    (lambda d: np.save(d / "fog.npy", np.zeros((20, 32, 32, 3), np.float32)), "must be uint8"),
    (lambda d: np.save(d / "fog.npy", np.zeros((18, 32, 32, 3), np.uint8)), "must be uint8 \\(5 n"),
    (lambda d: np.save(d / "fog.npy", np.zeros((10, 32, 32, 3), np.uint8)), "images per severity"),
    (lambda d: np.save(d / "labels.npy", np.arange(7)), "labels for 4 images"),
    (lambda d: np.save(d / "labels.npy", np.full(20, 12)), "outside 0..9"),
    (lambda d: np.save(d / "labels.npy", np.arange(20) % 10), "differs between the severities"),
    (lambda d: (d / "labels.npy").write_bytes(b"not numpy"), "not a readable .npy"),
])
def test_bad_corruption_folders_are_refused(tmp_path, break_it, needle):
    d = write_c_folder(tmp_path / "c")
    break_it(d)
    with pytest.raises(DataError, match=needle):
        ood.read_corruption_folder(d, n_classes=10)
    with pytest.raises(DataError, match="is not a folder"):
        ood.read_corruption_folder(tmp_path / "missing", 10)


def test_mce2_layout_and_means():
    torch.manual_seed(0)
    net = build_network(ARCH, 10).eval()
    x = tiny_images(n=6)
    labels = np.arange(6) % 10
    sets = {(c, s): x for c in ood.CORRUPTIONS for s in ood.SEVERITIES}  # uncorrupted: every error = clean error
    st = ood.measure_ood(net, sets, x, labels, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    table = st["mCE2"]
    assert list(table) == [*ood.CORRUPTIONS, "mean"]
    assert all(list(table[c]) == ["1", "2", "3", "4", "5", "mean"] for c in ood.CORRUPTIONS)
    assert st["mce"] == table["mean"] == st["ood_clean_top1"]
    assert table["fog"]["mean"] == pytest.approx(np.mean([table["fog"][str(s)] for s in ood.SEVERITIES]))
    st = ood.measure_ood(net, sets, None, labels, 16, (0.5,) * 3, (0.25,) * 3)  # resized to the resolution
    assert "ood_clean_top1" not in st and st["ood_images"] == 6


@pytest.mark.slow
def test_evaluation_with_ood_data_files(tmp_path):
    d = write_c_folder(tmp_path / "c10c", n=20, side=8)  # 8 x 8 files, resized to the network's 32
    ev = EvalSettings(epochs=1, ood_eval=True, ood_data=str(d), ood_images=10, seed=0, eval_test=False)
    preflight(ev)
    st = run_pipeline(ARCH, ev)
    assert st["ood_source"] == str(d) and st["ood_images"] == 10
    assert set(st["mCE2"]) == {*ood.CORRUPTIONS, "mean"}
    assert 0 <= st["mce"] <= 100 and st["mce"] == st["mCE2"]["mean"]


def test_on_the_fly_evaluation_step(monkeypatch):
    """measure_ood of the pipeline: the validation images corrupted at the network's resolution, once per process
    (the second network reuses them)."""
    from cnas import evaluation as E

    calls = []
    real = ood.corrupt_images

    def counted(images, name, severity, seed):  # two real corruptions (fast ones), the rest as the images
        calls.append((name, severity))
        return real(images, name, severity, seed) if name in ("gaussian_noise", "contrast") else images.copy()

    monkeypatch.setattr(ood, "corrupt_images", counted)
    monkeypatch.setattr(ood, "_CACHE", {})
    run = E.setup(ARCH, EvalSettings(ood_eval=True, ood_images=20, seed=0))
    E.load_run_data(run)
    torch.manual_seed(0)
    run.backbone = build_network(ARCH, 10)
    st = E.measure_ood(run)
    assert st["ood_source"] == "val" and st["ood_images"] == 20 and len(calls) == 75
    assert st["mCE2"]["fog"]["5"] == st["ood_clean_top1"]  # fog stood in by the clean images
    assert all(0 <= st["mCE2"][c][str(k)] <= 100 for c in ood.CORRUPTIONS for k in ood.SEVERITIES)
    st2 = E.measure_ood(run)
    assert len(calls) == 75 and st2["mCE2"] == st["mCE2"]  # reused, and the same errors


@pytest.mark.parametrize("kw, arch, needle", [
    (dict(ood_data="somewhere"), ARCH, "--ood_data holds corrupted images for --ood_eval"),
    (dict(ood_eval=True, ood_split="train"), ARCH, "--ood_split must be"),
    (dict(ood_eval=True, ood_images=-1), ARCH, "--ood_images must be"),
    (dict(ood_eval=True), dict(ARCH, r=28), "at least 32 x 32"),
])
def test_bad_ood_settings(kw, arch, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve_arch(arch, EvalSettings(**kw).validate())


def test_preflight_checks_the_ood_folder(tmp_path):
    d = write_c_folder(tmp_path / "c", n_classes=10)
    np.save(d / "labels.npy", np.full(20, 11))
    with pytest.raises(DataError, match="outside 0..9"):
        preflight(EvalSettings(ood_eval=True, ood_data=str(d)))


def test_objective_and_hash():
    from cnas.config import SearchConfig, settings_hash

    assert OBJECTIVES["mce"].measure == ("ood_eval",) and not OBJECTIVES["mce"].exact
    base = settings_hash(SearchConfig(), EvalSettings())
    assert settings_hash(SearchConfig(), EvalSettings(ood_eval=False, ood_split="val", ood_images=500)) == base
    assert settings_hash(SearchConfig(), EvalSettings(ood_eval=True)) != base
