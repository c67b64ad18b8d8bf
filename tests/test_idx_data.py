"""The MNIST family (fashion_mnist, mnist, kmnist): the four IDX files, gzipped or not, at --data or in
torchvision's <Name>/raw/ layout; malformed or missing files give one clear DataError. Tiny files in the real
format are written by the tests (the real Fashion-MNIST is not needed)."""

import gzip

import numpy as np
import pytest

from cnas import data
from cnas.errors import DataError


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.tobytes()


def write_idx(folder, n_train=60, n_test=20, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = np.arange(n) % 10
        for stem, arr in zip(data.IDX_FILES[split], (x, y)):
            raw = idx_bytes(arr)
            (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
        out[split] = (x, y)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_reads_the_four_files(tmp_path, gz):
    arrays = write_idx(tmp_path / "fm", gz=gz)
    loaders = data.load_data("fashion_mnist", tmp_path / "fm", resolution=28, val_split=0.2, batch_size=16)
    assert loaders.n_classes == 10 and loaders.sizes == {"train": 48, "val": 12, "test": 20}
    x, y = next(iter(loaders.test))
    assert x.shape == (20, 3, 28, 28) and y.tolist() == arrays["test"][1].tolist()
    test = loaders.test.dataset
    assert np.array_equal(test.images[:, 0].numpy(), arrays["test"][0])
    assert np.array_equal(test.labels.numpy(), arrays["test"][1])
    per_class = np.bincount(data.loader_labels(loaders.val), minlength=10)
    assert per_class.sum() == 12 and per_class.max() - per_class.min() <= 1  # stratified


def test_torchvision_layout_and_other_names(tmp_path):
    write_idx(tmp_path / "FashionMNIST" / "raw", gz=True)
    assert data.load_data("fashion-mnist", tmp_path, resolution=32, val_split=0.1).n_classes == 10
    write_idx(tmp_path / "MNIST" / "raw")
    assert data.load_data("mnist", tmp_path, resolution=32, val_split=0.1).info.name == "mnist"
    assert data.get_dataset_info("kmnist").native_resolution == 28


def test_bad_files_are_refused_in_one_line(tmp_path):
    d = tmp_path / "bad"
    write_idx(d)
    (d / data.IDX_FILES["test"][1]).unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*missing"):
        data.load_data("fashion_mnist", d, val_split=0.2)
    write_idx(d)
    path = d / data.IDX_FILES["train"][0]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        data.load_data("fashion_mnist", d, val_split=0.2)
    path.write_bytes(b"not an idx file at all")
    with pytest.raises(DataError, match="not an IDX file"):
        data.load_data("fashion_mnist", d, val_split=0.2)
    (d / "x").mkdir()
    with pytest.raises(DataError, match="holds no train-images-idx3-ubyte.*dataset-fashion-mnist"):
        data.load_data("fashion_mnist", d / "x", val_split=0.2)
    write_idx(d, n_test=20)
    (d / data.IDX_FILES["test"][1]).write_bytes(idx_bytes(np.zeros(5)))
    with pytest.raises(DataError, match="different sets") as err:
        data.load_data("fashion_mnist", d, val_split=0.2)
    assert "\n" not in str(err.value)
