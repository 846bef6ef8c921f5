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


def _write_cifar10(root, n_batches=2, n_train=5, n_test=4, protocol=2):
    """A tiny real "python version" folder, written as CIFAR-10 ships it: pickled dicts."""
    import pickle

    rng = np.random.default_rng(0)
    d = root / "cifar-10-batches-py"
    d.mkdir()
    data = {}
    names = [f"data_batch_{i}" for i in range(1, n_batches + 1)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_train
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        with open(d / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": y, b"data": x}, f, protocol=protocol)
        data[name] = (x, y)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_vis": 3072}, f, protocol=2)
    return data


@pytest.mark.parametrize("protocol", [2, 5])  # 2: as CIFAR-10 ships (Python 2); 5: numpy's _frombuffer path
def test_cifar10_batches_load_with_exact_layout(tmp_path, protocol):
    data = _write_cifar10(tmp_path, protocol=protocol)
    ds = load_dataset("cifar10", str(tmp_path))
    assert ds.name == "cifar10" and ds.num_classes == 10
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    # batches in numeric order: data_batch_1 then data_batch_2
    assert ds.y_train.tolist() == data["data_batch_1"][1] + data["data_batch_2"][1]
    assert ds.y_test.tolist() == data["test_batch"][1]
    # pixel (row 3, col 7) of image 2 of batch 2: R at 3*32+7, G 1024 later, B 2048 later
    x = data["data_batch_2"][0]
    for c in range(3):
        assert round(ds.x_train[5 + 2, c, 3, 7].item() * 255) == x[2, c * 1024 + 3 * 32 + 7]
    np.testing.assert_array_equal((ds.x_test * 255).round().byte().numpy().reshape(4, -1), data["test_batch"][0])
    # data_root may also be the batches folder itself
    assert load_dataset("cifar10", str(tmp_path / "cifar-10-batches-py")).fingerprint() == ds.fingerprint()
    if protocol == 2:  # the official files were pickled by numpy 1: they name numpy.core, not numpy._core
        for p in (tmp_path / "cifar-10-batches-py").glob("*_batch*"):
            p.write_bytes(p.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
        assert b"numpy.core.multiarray" in p.read_bytes()
        assert load_dataset("cifar10", str(tmp_path)).fingerprint() == ds.fingerprint()


class _RunsShell:
    """What a malicious batch would pickle: unpickling it calls os.system."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_cifar10_pickle_with_a_forbidden_global_is_refused_and_not_run(tmp_path):
    import pickle

    _write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_RunsShell(f"touch {marker}")]}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DataError, match=r"test_batch.*global.*(posix|os|nt)\.system"):
        load_dataset("cifar10", str(tmp_path))
    assert not marker.exists()


def test_cifar10_missing_folder_and_bad_batches(tmp_path):
    import pickle

    with pytest.raises(DataError, match="not found"):
        load_dataset("cifar10", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="no data_batch"):
        load_dataset("cifar10", str(tmp_path))
    with pytest.raises(DataError, match="needs --data-root"):
        load_dataset("cifar10")
    d = tmp_path / "cifar-10-batches-py"
    _write_cifar10(tmp_path)
    (d / "test_batch").unlink()
    with pytest.raises(DataError, match=r"test_batch.*not found"):
        load_dataset("cifar10", str(tmp_path))
    bad = {b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}
    (d / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError, match=r"test_batch.*key 'data'.*3071.*uint8"):
        load_dataset("cifar10", str(tmp_path))
    bad = {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}
    (d / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError, match=r"test_batch.*key 'data'"):
        load_dataset("cifar10", str(tmp_path))
    bad = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}
    (d / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError, match=r"test_batch.*key 'labels'.*expected 2 integer labels"):
        load_dataset("cifar10", str(tmp_path))
    bad = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}
    (d / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError, match=r"test_batch.*key 'labels' = 10.*0\.\.9"):
        load_dataset("cifar10", str(tmp_path))
    (d / "test_batch").write_bytes(pickle.dumps(bad)[:-20])
    with pytest.raises(DataError, match=r"test_batch.*cannot unpickle"):
        load_dataset("cifar10", str(tmp_path))
