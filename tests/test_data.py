"""cnas.data: tiny files in each real on-disk format, read through the real loaders."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from cnas.data import (
    DATASETS,
    TensorLoader,
    get_dataset_info,
    load_data,
    loader_labels,
    stratified_split,
    subset_loader,
)
from cnas.errors import ConfigError, DataError

torch.set_num_threads(1)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


# ------------------------------------------------------------------------------------------------ writers
def _tagged(n: int, split_tag: int, rng: np.random.Generator) -> np.ndarray:
    """n random CIFAR rows (N x 3072 uint8); bytes 0..2 hold (index low, index high, split tag)."""
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    data[:, 0] = np.arange(n) % 256
    data[:, 1] = np.arange(n) // 256
    data[:, 2] = split_tag
    return data


def _dump(path, obj, protocol=2):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def write_cifar10(root, per_batch=20, n_test=30, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    train = _tagged(5 * per_batch, 0, rng)
    labels = np.arange(5 * per_batch) % 10
    for i in range(5):
        sl = slice(i * per_batch, (i + 1) * per_batch)
        _dump(d / f"data_batch_{i + 1}", {b"batch_label": b"x", b"data": train[sl], b"labels": labels[sl].tolist()})
    _dump(d / "test_batch", {b"data": _tagged(n_test, 1, rng), b"labels": (np.arange(n_test) % 10).tolist()},
          protocol=4)
    _dump(d / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072})
    return d, train, labels


def write_cifar100(root, n_train=200, n_test=100, seed=1):
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    _dump(d / "train", {b"data": _tagged(n_train, 0, rng), b"fine_labels": (np.arange(n_train) % 100).tolist(),
                        b"coarse_labels": (np.arange(n_train) % 20).tolist()}, protocol=5)
    _dump(d / "test", {b"data": _tagged(n_test, 1, rng), b"fine_labels": (np.arange(n_test) % 100).tolist()})
    _dump(d / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)]})
    return d


def write_svhn(root, n_train=40, n_test=20, seed=2):
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # 1..10, 10 = digit 0
        savemat(str(root / f"{name}_32x32.mat"), {"X": x, "y": y})
        out[name] = (x, y)
    return out


def write_folder(root, split, n_classes, per_class, size=(12, 10), fmt="PNG", seed=3, prefix="c"):
    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        d = root / split / f"{prefix}{c:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"img{i}.{fmt.lower()}", fmt)


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


# ------------------------------------------------------------------------------------------------ info
def test_dataset_info_for_every_name():
    for name in DATASETS:
        info = get_dataset_info(name)
        assert info.name == name and len(info.mean) == 3 and len(info.std) == 3
    assert get_dataset_info("CIFAR-10").n_classes == 10
    assert get_dataset_info("cifar100").n_classes == 100
    assert get_dataset_info("tinyimagenet").n_classes == 200
    assert get_dataset_info("folder").n_classes is None
    assert get_dataset_info("cifar10").mean == CIFAR10_MEAN
    d = get_dataset_info("digits")
    assert d.n_classes == 10 and 0.2 < d.mean[0] < 0.4 and 0.3 < d.std[0] < 0.5


@pytest.mark.parametrize("bad", ["imagenet16", "emnist", "", 3])
def test_unknown_dataset_name(bad):
    with pytest.raises(DataError, match="unknown dataset|not a string") as e:
        get_dataset_info(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError):
        load_data(bad)


# ------------------------------------------------------------------------------------------------ digits
def test_digits_fixed_stratified_split():
    a = load_data()
    assert a.sizes == {"train": 1078, "val": 360, "test": 359}
    assert len(a.train.dataset) == 1078 and len(a.val.dataset) == 360 and len(a.test.dataset) == 359
    for loader, share in ((a.train, 0.6), (a.val, 0.2), (a.test, 0.2)):
        counts = np.bincount(loader_labels(loader), minlength=10)
        assert counts.min() > 0
        # every class holds its share of its 174..183 images, within one image
        full = np.bincount(np.concatenate([loader_labels(x) for x in (a.train, a.val, a.test)]))
        assert np.all(np.abs(counts - full * share) <= 1.5)
    # val_split and the run seed do not move the split
    b = load_data(seed=5, val_split=0.0)
    for x, y in ((a.val, b.val), (a.test, b.test), (a.train, b.train)):
        assert torch.equal(x.dataset.images, y.dataset.images)
        assert torch.equal(x.dataset.labels, y.dataset.labels)
    # the three index sets partition the 1,797 images
    from cnas.data import _digits_split

    labels = load_digits_labels()
    tr, va, te = _digits_split(labels)
    assert np.array_equal(loader_labels(a.val), labels[va]) and np.array_equal(loader_labels(a.test), labels[te])
    assert len(np.unique(np.concatenate([tr, va, te]))) == 1797
    assert not set(va) & set(te) and not set(tr) & set(va)
    assert a.val_source and "fixed" in a.val_source


def load_digits_labels():
    from sklearn.datasets import load_digits

    return load_digits().target


def test_digits_batches_normalization_and_determinism():
    a = load_data(batch_size=64)
    x, y = next(iter(a.train))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert 0 <= int(y.min()) and int(y.max()) <= 9
    allx = torch.cat([b for b, _ in a.train])
    assert abs(float(allx.mean())) < 1e-3 and abs(float(allx.std()) - 1) < 1e-3
    assert len(a.train) == 17 and a.test.batch_size == 128  # eval batch is twice the train batch
    first = batches(load_data(batch_size=64, seed=1).train)
    again = batches(load_data(batch_size=64, seed=1).train)
    other = batches(load_data(batch_size=64, seed=2).train)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(first, again))
    assert not torch.equal(first[0][1], other[0][1])
    # successive epochs of one loader are shuffled differently
    e1, e2 = batches(a.train), batches(a.train)
    assert not torch.equal(e1[0][1], e2[0][1])


def test_digits_resolution_and_optional_augmentation():
    for r in (8, 16, 40):
        loaders = load_data(resolution=r, batch_size=32)
        x, _ = next(iter(loaders.test))
        assert x.shape == (64, 3, r, r)
    plain = load_data(resolution=24, augment=True)  # digits: no augmentation by default
    assert plain.train.augment == "none"
    assert torch.equal(batches(plain.train)[0][0], batches(load_data(resolution=24, augment=False).train)[0][0])
    shifted = load_data(resolution=24, augment="crop")
    assert shifted.train.augment == "crop"
    xs, ys = next(iter(shifted.train))
    xp, yp = next(iter(load_data(resolution=24).train))
    assert torch.equal(ys, yp) and not torch.equal(xs, xp)
    xv, _ = next(iter(shifted.val))
    assert torch.equal(xv, next(iter(plain.val))[0])  # val/test never augmented


# ------------------------------------------------------------------------------------------------ cifar
def test_cifar10_shapes_split_normalization(tmp_path):
    d, train, labels = write_cifar10(tmp_path)
    ld = load_data("cifar10", tmp_path, val_split=0.2, batch_size=16, augment=False)
    assert ld.n_classes == 10 and ld.sizes == {"train": 80, "val": 20, "test": 30}
    assert np.bincount(loader_labels(ld.val)).tolist() == [2] * 10  # stratified
    # val comes from the training pickles (split tag 0), test from test_batch (tag 1): never the same set
    assert set(ld.val.dataset.images[:, 0, 0, 2].tolist()) == {0}
    assert set(ld.test.dataset.images[:, 0, 0, 2].tolist()) == {1}
    val_ids = set((ld.val.dataset.images[:, 0, 0, 0].int() + 256 * ld.val.dataset.images[:, 0, 0, 1].int()).tolist())
    tr_ids = set((ld.train.dataset.images[:, 0, 0, 0].int() + 256 * ld.train.dataset.images[:, 0, 0, 1].int()).tolist())
    assert not val_ids & tr_ids and len(val_ids | tr_ids) == 100
    # row-major RGB planes, normalized with the cifar10 statistics at the stored resolution
    x, y = next(iter(ld.test))
    raw = torch.from_numpy(_tagged_test_rows(d)[:32].reshape(-1, 3, 32, 32)).float() / 255
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    assert torch.allclose(x, ((raw - mean) / std)[: len(x)], atol=1e-5)
    assert y.tolist() == [i % 10 for i in range(len(y))]
    xs = torch.cat([b for b, _ in ld.train])
    assert xs.shape == (80, 3, 32, 32)
    assert abs(float(xs.mean())) < 0.3 and 0.9 < float(xs.std()) < 1.4  # uniform pixels, roughly standardized
    # the folder itself is accepted too
    assert load_data("cifar10", d, val_split=0).sizes["train"] == 100


def _tagged_test_rows(d):
    with open(d / "test_batch", "rb") as fh:
        return pickle.load(fh)[b"data"]


def test_cifar10_val_split_zero_means_no_val(tmp_path):
    write_cifar10(tmp_path)
    ld = load_data("cifar10", tmp_path, val_split=0)
    assert ld.val is None and ld.val_source is None and ld.sizes["train"] == 100  # nothing discarded
    assert "no val" in ld.describe()


def test_cifar10_augmentation_resolution_and_determinism(tmp_path):
    write_cifar10(tmp_path)
    a = load_data("cifar10", tmp_path, batch_size=8, seed=3)
    assert a.train.augment == "crop_flip"
    b = load_data("cifar10", tmp_path, batch_size=8, seed=3)
    c = load_data("cifar10", tmp_path, batch_size=8, seed=4)
    ba, bb, bc = batches(a.train), batches(b.train), batches(c.train)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(ba, bb))
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(ba, bc))
    # the split is fixed by split_seed, not by seed
    assert torch.equal(a.val.dataset.images, c.val.dataset.images)
    assert not torch.equal(a.val.dataset.images, load_data("cifar10", tmp_path, split_seed=1).val.dataset.images)
    # test batches are deterministic and unaugmented
    assert torch.equal(next(iter(a.test))[0], next(iter(c.test))[0])
    for r in (24, 64):
        ld = load_data("cifar10", tmp_path, resolution=r, batch_size=8, channels_last=True)
        assert ld.train.augment == "rrc_flip"
        x, y = next(iter(ld.train))
        assert x.shape == (8, 3, r, r) and x.is_contiguous(memory_format=torch.channels_last)
        assert next(iter(ld.test))[0].shape == (16, 3, r, r)
    with pytest.raises(ConfigError):
        load_data("cifar10", tmp_path, augment="rotate")


def test_crop_flip_is_pad_crop_of_the_image():
    rng = np.random.default_rng(0)
    imgs = torch.from_numpy(rng.integers(0, 256, size=(64, 3, 32, 32), dtype=np.uint8))
    loader = TensorLoader(imgs, torch.zeros(64, dtype=torch.long), mean=(0, 0, 0), std=(1, 1, 1), batch_size=64,
                          augment="crop_flip", seed=0)
    x, _ = next(iter(loader))
    pad = torch.nn.functional.pad(imgs.float() / 255, (4, 4, 4, 4))
    for i in range(64):  # each output is one of the 81 x 2 padded crops of its image
        hits = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                if torch.allclose(x[i], (lambda c: c.flip(-1) if f else c)(pad[i, :, dy:dy + 32, dx:dx + 32]),
                                  atol=1e-6)]
        assert hits, i


def test_cifar100(tmp_path):
    write_cifar100(tmp_path)
    ld = load_data("cifar100", tmp_path, val_split=0.5, batch_size=50, augment=False)
    assert ld.n_classes == 100 and ld.sizes == {"train": 100, "val": 100, "test": 100}
    ys = np.concatenate([y.numpy() for _, y in ld.train])
    assert ys.min() >= 0 and ys.max() <= 99 and len(np.unique(ys)) == 100
    with pytest.raises(DataError, match="n_classes 10 .* 100 classes"):
        load_data("cifar100", tmp_path, n_classes=10)
    assert load_data("cifar100", tmp_path, n_classes=100).n_classes == 100


# ------------------------------------------------------------------------------------------------ svhn
def test_svhn_labels_layout_and_resolution(tmp_path):
    raw = write_svhn(tmp_path)
    ld = load_data("svhn", tmp_path, val_split=0.25, batch_size=10, augment=False)
    assert ld.sizes == {"train": 30, "val": 10, "test": 20}
    x, y = next(iter(ld.test))
    want = (np.arange(20) % 10 + 1) % 10  # label 10 is the digit 0
    assert y.tolist() == want.tolist()
    img0 = torch.from_numpy(raw["test"][0][:, :, :, 0]).permute(2, 0, 1).float() / 255
    m, s = torch.tensor(get_dataset_info("svhn").mean), torch.tensor(get_dataset_info("svhn").std)
    assert torch.allclose(x[0], (img0 - m.view(3, 1, 1)) / s.view(3, 1, 1), atol=1e-5)
    x48, _ = next(iter(load_data("svhn", tmp_path, resolution=48, batch_size=4).train))
    assert x48.shape == (4, 3, 48, 48)  # the original ignored the resolution for svhn


# ------------------------------------------------------------------------------------------------ folders
def test_cinic10_folder(tmp_path):
    write_folder(tmp_path, "train", 10, 3, size=(32, 32))
    write_folder(tmp_path, "valid", 10, 1, size=(32, 32), seed=9)
    write_folder(tmp_path, "test", 10, 2, size=(32, 32), fmt="JPEG", seed=4)
    ld = load_data("cinic10", tmp_path, resolution=40, val_split=0.34, batch_size=4)
    assert ld.n_classes == 10 and ld.sizes == {"train": 20, "val": 10, "test": 20}
    x, y = next(iter(ld.train))
    assert x.shape == (4, 3, 40, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(ld.train) == 5 and len(ld.test) == 3
    ys = np.concatenate([y.numpy() for _, y in ld.test])
    assert sorted(np.unique(ys)) == list(range(10))
    # val comes from train/ (stratified), not from valid/ or test/
    assert np.bincount(loader_labels(ld.val)).tolist() == [1] * 10
    assert all("/train/" in ld.val.dataset.base.samples[i][0].replace(os.sep, "/") for i in ld.val.dataset.indices)


def test_folder_determinism_and_workers(tmp_path):
    write_folder(tmp_path, "train", 3, 4, size=(20, 16))
    write_folder(tmp_path, "val", 3, 2, seed=5, size=(20, 16))
    kw = dict(resolution=16, val_split=0, batch_size=6, seed=7)
    a = batches(load_data("folder", tmp_path, **kw).train)
    b = batches(load_data("folder", tmp_path, num_workers=2, **kw).train)
    c = batches(load_data("folder", tmp_path, **{**kw, "seed": 8}).train)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(a, c))
    ld = load_data("folder", tmp_path, **kw)
    assert ld.n_classes == 3 and ld.val is None
    e1, e2 = batches(ld.train), batches(ld.train)
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(e1, e2))  # new crops each epoch
    t1, t2 = batches(ld.test), batches(ld.test)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(t1, t2))
    assert t1[0][0].shape == (6, 3, 16, 16)
    mean = torch.cat([x for x, _ in t1]).mean().item()
    assert -1.5 < mean < 1.5


def test_imagenette_named_folder_and_test_subset(tmp_path):
    write_folder(tmp_path, "train", 10, 2, prefix="n")
    # val/ holds only 3 of the 10 classes: labels follow train/'s class order
    for c in (2, 5, 9):
        d = tmp_path / "val" / f"n{c:03d}"
        d.mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), 40 * c % 256, np.uint8)).save(d / "a.png")
    ld = load_data("imagenette", tmp_path, resolution=24, val_split=0, batch_size=8, augment=False)
    assert ld.n_classes == 10
    assert sorted(loader_labels(ld.test).tolist()) == [2, 5, 9]
    x, y = next(iter(ld.test))
    assert x.shape == (3, 3, 24, 24)
    with pytest.raises(DataError, match="10 class folders but 'tinyimagenet' has 200"):
        load_data("tinyimagenet", tmp_path)
    with pytest.raises(ConfigError):
        load_data("imagenette", tmp_path, augment="crop_flip")


def test_annotated_val_folder(tmp_path):
    write_folder(tmp_path, "train", 2, 3, prefix="n0")
    (tmp_path / "val" / "images").mkdir(parents=True)
    lines = []
    for i, wnid in enumerate(["n0001", "n0000", "n0001"]):
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(tmp_path / "val" / "images" / f"val_{i}.JPEG",
                                                                    "JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t8\t8")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    ld = load_data("folder", tmp_path, resolution=8, val_split=0)
    assert loader_labels(ld.test).tolist() == [1, 0, 1]
    assert [y.tolist() for _, y in ld.test] == [[1, 0, 1]]
    (tmp_path / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn9999\t0\t0\t8\t8\n")
    with pytest.raises(DataError, match="names no class folder"):
        load_data("folder", tmp_path, val_split=0)


# ------------------------------------------------------------------------------------------------ loaders
def test_tensor_loader_len_drop_last_and_subset():
    imgs = torch.zeros((50, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(50) % 5
    lo = TensorLoader(imgs, labels, mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=16)
    assert len(lo) == 4 and len(lo.dataset) == 50 and [len(y) for _, y in lo] == [16, 16, 16, 2]
    lo2 = TensorLoader(imgs, labels, mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=16, drop_last=True, resolution=12)
    assert len(lo2) == 3 and [len(y) for _, y in lo2] == [16, 16, 16]
    x, _ = next(iter(lo2))
    assert x.shape == (16, 3, 12, 12) and torch.allclose(x, torch.full_like(x, -1.0))
    sub = subset_loader(lo, 12, seed=1)
    assert len(sub.dataset) == 12 and np.bincount(loader_labels(sub)).tolist() == [3, 3, 2, 2, 2]
    assert torch.equal(subset_loader(lo, 12, seed=1).dataset.labels, sub.dataset.labels)
    assert len(subset_loader(lo, 500).dataset) == 50


def test_subset_loader_is_fixed_and_balanced():
    ld = load_data()
    a = subset_loader(ld.train, 200, seed=0)
    b = subset_loader(ld.train, 200, seed=0)
    c = subset_loader(ld.train, 200, seed=1)
    assert np.bincount(loader_labels(a)).tolist() == [20] * 10
    assert torch.equal(a.dataset.images, b.dataset.images)
    assert not torch.equal(a.dataset.images, c.dataset.images)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(batches(a), batches(b)))
    assert len(subset_loader(ld.train, 30, batch_size=8)) == 4


def test_folder_subset_loader(tmp_path):
    write_folder(tmp_path, "train", 3, 5)
    write_folder(tmp_path, "val", 3, 1, seed=6)
    ld = load_data("folder", tmp_path, resolution=8, val_split=0)
    s = subset_loader(ld.train, 6, batch_size=3)
    assert len(s.dataset) == 6 and np.bincount(loader_labels(s)).tolist() == [2, 2, 2]
    assert sum(len(y) for _, y in s) == 6


def test_stratified_split():
    labels = np.repeat(np.arange(4), [10, 20, 1, 5])
    keep, held = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[held], minlength=4).tolist() == [2, 4, 0, 1]
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(labels)
    assert np.array_equal(held, stratified_split(labels, 0.2, seed=0)[1])


# ------------------------------------------------------------------------------------------------ errors
def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)


def test_errors_paths(tmp_path):
    with pytest.raises(DataError, match="--data PATH") as e:
        load_data("cifar10")
    _one_line(e)
    with pytest.raises(DataError, match="does not exist") as e:
        load_data("svhn", tmp_path / "nope")
    _one_line(e)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        load_data("cifar100", tmp_path / "f.txt")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_data("cifar10", tmp_path)
    with pytest.raises(DataError, match="cifar-100-python"):
        load_data("cifar100", tmp_path)
    with pytest.raises(DataError, match="train_32x32.mat"):
        load_data("svhn", tmp_path)
    with pytest.raises(DataError, match="no train/"):
        load_data("folder", tmp_path)


def test_errors_cifar_files(tmp_path):
    d, _, _ = write_cifar10(tmp_path)
    (d / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch is missing"):
        load_data("cifar10", tmp_path)
    (d / "test_batch").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="cannot read .*test_batch") as e:
        load_data("cifar10", tmp_path)
    _one_line(e)
    _dump(d / "test_batch", {b"pixels": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(DataError, match="lacks the keys"):
        load_data("cifar10", tmp_path)
    _dump(d / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match="N x 3072"):
        load_data("cifar10", tmp_path)
    _dump(d / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]})
    with pytest.raises(DataError, match="outside 0..9"):
        load_data("cifar10", tmp_path)
    _dump(d / "test_batch", [1, 2, 3])
    with pytest.raises(DataError, match="not the dict"):
        load_data("cifar10", tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d, _, _ = write_cifar10(tmp_path)
    _dump(d / "data_batch_3", {b"data": _Evil(), b"labels": []})
    with pytest.raises(DataError, match="refusing"):
        load_data("cifar10", tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_errors_svhn_files(tmp_path):
    from scipy.io import savemat

    write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"garbage" * 20)
    with pytest.raises(DataError, match="cannot read .*test_32x32.mat") as e:
        load_data("svhn", tmp_path)
    _one_line(e)
    savemat(str(tmp_path / "test_32x32.mat"), {"images": np.zeros((2, 2))})
    with pytest.raises(DataError, match="'X' and 'y'"):
        load_data("svhn", tmp_path)
    savemat(str(tmp_path / "test_32x32.mat"), {"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(DataError, match="32x32x3xN"):
        load_data("svhn", tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match="test_32x32.mat is missing"):
        load_data("svhn", tmp_path)


def test_errors_folders(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="test/ or val/"):
        load_data("folder", tmp_path)
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="not a class-folder tree") as e:
        load_data("folder", tmp_path)
    _one_line(e)
    write_folder(tmp_path, "train", 2, 2)
    write_folder(tmp_path, "val", 3, 1)
    with pytest.raises(DataError, match="class folders that train/ lacks"):
        load_data("folder", tmp_path)
    write_folder(tmp_path / "b", "train", 2, 2)
    write_folder(tmp_path / "b", "val", 2, 1)
    (tmp_path / "b" / "train" / "c000" / "aaa.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        load_data("folder", tmp_path / "b")
    (tmp_path / "b" / "train" / "c000" / "aaa.png").unlink()
    with pytest.raises(DataError, match="n_classes 5 .* 2 classes; pass --n_classes 2"):
        load_data("folder", tmp_path / "b", n_classes=5)
    with pytest.raises(DataError, match="val_split"):
        load_data("folder", tmp_path / "b", val_split=0.1)  # 2 images per class: nothing to hold out


def test_errors_arguments(tmp_path):
    for bad in (1.0, -0.1, "x", float("nan")):
        with pytest.raises(ConfigError, match="val_split") as e:
            load_data(val_split=bad)
        _one_line(e)
    for kw in ({"resolution": 0}, {"batch_size": -1}, {"batch_size": 2.5}, {"n_classes": 0}, {"num_workers": -1},
               {"augment": "zoom"}):
        with pytest.raises(ConfigError):
            load_data(**kw)
    with pytest.raises(DataError, match="n_classes 100 .* 10 classes"):
        load_data(n_classes=100)
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match="pass --n_classes 10"):
        load_data("cifar10", tmp_path, n_classes=100)
    with pytest.raises(DataError, match="val_split 0.001 leaves"):
        load_data("cifar10", tmp_path, val_split=0.001)
