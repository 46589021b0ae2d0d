"""Datasets: embedded digits, MNIST IDX and CIFAR-10 pickles written here in the real formats."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from cimlab.errors import ConfigError
from cimlab.sim import data


def test_digits_split_is_fixed_stratified_and_standardized():
    ds = data.load_dataset("digits")
    assert ds.in_shape == (1, 8, 8) and ds.n_classes == 10
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert len(ds.x_test) == 450  # 25 % of 1797, rounded up by scikit-learn
    again = data.load_dataset("digits")
    assert torch.equal(ds.x_train, again.x_train) and torch.equal(ds.y_test, again.y_test)
    other = data.load_dataset("digits", seed=1)
    assert not torch.equal(ds.y_train, other.y_train)
    # standardised with the training statistics
    assert abs(float(ds.x_train.mean())) < 1e-5
    assert abs(float(ds.x_train.std()) - 1.0) < 1e-3
    # stratified: every class holds 10 % +- 1 % of the test split
    counts = torch.bincount(ds.y_test, minlength=10).float() / len(ds.y_test)
    assert torch.all((counts - 0.1).abs() < 0.01)


def test_digits_upsampling_and_raw_scale():
    ds = data.load_dataset("digits", image_size=16, standardize=False)
    assert ds.in_shape == (1, 16, 16)
    assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) <= 1.0
    assert ds.mean == () and ds.info["image_size"] == 16


def test_loaders_shuffle_with_explicit_generator():
    ds = data.load_dataset("digits")
    a, _ = ds.loaders(32, torch.Generator().manual_seed(5))
    b, _ = ds.loaders(32, torch.Generator().manual_seed(5))
    c, _ = ds.loaders(32, torch.Generator().manual_seed(6))
    ya, yb, yc = next(iter(a))[1], next(iter(b))[1], next(iter(c))[1]
    assert torch.equal(ya, yb) and not torch.equal(ya, yc)


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_loader(tmp_path, compress):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    xtr = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    ytr = rng.integers(0, 10, 7, dtype=np.uint8)
    xte = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    yte = rng.integers(0, 10, 3, dtype=np.uint8)
    for name, arr in (
        ("train-images-idx3-ubyte", xtr),
        ("train-labels-idx1-ubyte", ytr),
        ("t10k-images-idx3-ubyte", xte),
        ("t10k-labels-idx1-ubyte", yte),
    ):
        _write_idx(raw / name, arr, compress)
    ds = data.load_dataset("mnist", tmp_path, standardize=False)
    assert ds.in_shape == (1, 28, 28)
    np.testing.assert_allclose(ds.x_train[:, 0].numpy(), xtr / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test.numpy(), yte)
    assert ds.y_train.dtype == torch.int64


def test_mnist_missing_files_and_bad_header(tmp_path):
    with pytest.raises(ConfigError, match="train-images-idx3-ubyte"):
        data.load_dataset("mnist", tmp_path)
    with pytest.raises(ConfigError, match="root"):
        data.load_dataset("mnist")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ConfigError, match="header"):
        data.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(ConfigError, match="10 bytes"):
        data.read_idx(short)


def _write_cifar(folder, rng, n=4):
    folder.mkdir(parents=True)
    batches = {}
    for name in (*data.CIFAR10_TRAIN_FILES, data.CIFAR10_TEST_FILE):
        arr = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(folder / name, "wb") as fh:  # the official files are protocol-2 dicts
            pickle.dump(
                {b"batch_label": name.encode(), b"labels": labels, b"data": arr}, fh, protocol=2
            )
        batches[name] = (arr, labels)
    return batches


def test_cifar10_pickle_loader(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(1))
    ds = data.load_dataset("cifar10", tmp_path, standardize=False)
    assert ds.in_shape == (3, 32, 32) and len(ds.x_train) == 20 and len(ds.x_test) == 4
    arr, labels = batches["data_batch_2"]
    np.testing.assert_allclose(
        ds.x_train[4:8].numpy(), arr.reshape(-1, 3, 32, 32) / 255.0, rtol=1e-6
    )
    assert ds.y_train[4:8].tolist() == labels
    assert ds.classes[0] == "airplane"
    std = data.load_dataset("cifar10", tmp_path / "cifar-10-batches-py")
    assert len(std.mean) == 3


def test_cifar10_missing_and_malicious(tmp_path):
    with pytest.raises(ConfigError, match="data_batch_1"):
        data.load_dataset("cifar10", tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(ConfigError, match="refusing"):
        data.read_cifar_batch(path)


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="digits"):
        data.load_dataset("imagenet")
