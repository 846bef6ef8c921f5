import gzip

import numpy as np
import pytest
import torch

from reconlab.data import load_dataset
from reconlab.data.mnist_idx import read_idx, write_idx
from reconlab.errors import DataError, InputError


def test_digits_is_a_fixed_stratified_split(digits):
    assert digits.x_train.shape == (1437, 1, 28, 28) and digits.x_test.shape == (360, 1, 28, 28)
    assert digits.x_train.dtype == torch.float32
    assert 0.0 <= digits.x_train.min() and digits.x_train.max() <= 1.0
    # MNIST-like framing: a 4-pixel empty border around a 20x20 digit
    assert digits.x_train[..., :4, :].abs().max() == 0 and digits.x_train[..., 24:, :].abs().max() == 0
    assert torch.bincount(digits.y_test).tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]
    # pinned: the split and the resampling never change silently
    assert digits.fingerprint() == load_dataset("digits").fingerprint()
    assert round(digits.x_train.mean().item(), 4) == 0.1582


def _write_mnist(root, n_train=5, n_test=3, gz=False):
    rng = np.random.default_rng(0)
    d = root / "mnist"
    d.mkdir()
    data = {}
    for split, n, (img, lbl) in (("train", n_train, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
                                 ("test", n_test, ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(str(d / img), x)
        write_idx(str(d / lbl), y)
        if gz:
            for name in (img, lbl):
                raw = (d / name).read_bytes()
                (d / (name + ".gz")).write_bytes(gzip.compress(raw))
                (d / name).unlink()
        data[split] = (x, y)
    return data


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_roundtrip(tmp_path, gz):
    data = _write_mnist(tmp_path, gz=gz)
    ds = load_dataset("mnist", str(tmp_path))
    assert ds.x_train.shape == (5, 1, 28, 28) and ds.x_test.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal((ds.x_train[:, 0] * 255).round().byte().numpy(), data["train"][0])
    np.testing.assert_array_equal(ds.y_test.numpy(), data["test"][1])


def test_truncated_idx_is_a_clear_error(tmp_path):
    _write_mnist(tmp_path)
    p = tmp_path / "mnist" / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*size mismatch"):
        load_dataset("mnist", str(tmp_path))


def test_bad_magic_and_missing_files(tmp_path):
    bad = tmp_path / "x"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(str(bad))
    with pytest.raises(DataError, match="not found"):
        load_dataset("mnist", str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="unknown dataset"):
        load_dataset("imagenet")


def test_label_count_mismatch(tmp_path):
    _write_mnist(tmp_path)
    write_idx(str(tmp_path / "mnist" / "t10k-labels-idx1-ubyte"), np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="expected 3 labels"):
        load_dataset("mnist", str(tmp_path))
