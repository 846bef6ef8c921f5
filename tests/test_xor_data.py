"""The XOR family's data: the embedded natural patches, and the real STL-10
and Parquet readers on tiny files written here."""

import numpy as np
import pytest
import torch

from reconlab.data import load_dataset
from reconlab.errors import DataError


def test_natural_is_split_by_photo_on_the_8bit_grid():
    from reconlab.data.natural import TEST_PHOTOS, TRAIN_PHOTOS

    ds = load_dataset("natural")
    assert ds.x_train.shape[1:] == (3, 32, 32) and ds.x_test.shape[1:] == (3, 32, 32)
    assert len(ds.x_train) > 10_000 and len(ds.x_test) > 300
    assert set(ds.y_train.tolist()) == set(range(len(TRAIN_PHOTOS)))  # labels: source photo
    assert set(ds.y_test.tolist()) == set(range(len(TRAIN_PHOTOS), len(TRAIN_PHOTOS) + len(TEST_PHOTOS)))
    assert torch.equal((ds.x_train[:50] * 255).round() / 255, ds.x_train[:50])
    assert ds.fingerprint() == load_dataset("natural").fingerprint()
    big = load_dataset("natural96")
    assert big.x_train.shape[1:] == (3, 96, 96) and len(big.x_test) > 20


def test_stl10_reader_round_trip_and_paper_split(tmp_path):
    from reconlab.data.stl10 import write_images

    rng = np.random.default_rng(0)
    root = tmp_path / "stl10_binary"
    root.mkdir()
    tr = rng.integers(0, 256, (5, 3, 96, 96), dtype=np.uint8)
    te = rng.integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)
    write_images(str(root / "train_X.bin"), tr)
    write_images(str(root / "test_X.bin"), te)
    np.array([1, 2, 3, 4, 10], np.uint8).tofile(root / "train_y.bin")
    ds = load_dataset("stl10", str(tmp_path))
    assert torch.equal((ds.x_train * 255).round().to(torch.uint8), torch.from_numpy(tr))
    assert ds.y_train.tolist() == [0, 1, 2, 3, 9] and ds.y_test.tolist() == [0, 0, 0]
    # the file really is column-major: the first 96 bytes are the first *column* of red
    raw = np.fromfile(root / "train_X.bin", np.uint8)[:96]
    assert np.array_equal(raw, tr[0, 0, :, 0])
    # with unlabeled_X.bin: the paper's 90/10 split of one pool
    write_images(str(root / "unlabeled_X.bin"), rng.integers(0, 256, (20, 3, 96, 96), dtype=np.uint8))
    ds = load_dataset("stl10", str(tmp_path))
    assert (len(ds.x_train), len(ds.x_test)) == (18, 2)


def test_stl10_truncated_file_is_a_clear_error(tmp_path):
    from reconlab.data.stl10 import write_images

    write_images(str(tmp_path / "train_X.bin"), np.zeros((2, 3, 96, 96), np.uint8))
    with open(tmp_path / "test_X.bin", "wb") as f:
        f.write(b"\0" * 1000)
    with pytest.raises(DataError, match=r"test_X.bin.*key 'bytes' = 1000.*truncated"):
        load_dataset("stl10", str(tmp_path))


def test_parquet_shards_round_trip(tmp_path):
    from reconlab.data.parquet import write_shards

    x = (torch.randint(0, 256, (10, 3, 8, 8)) / 255.0).float()
    y = torch.arange(10)
    paths = write_shards(str(tmp_path / "train"), x, y, rows_per_shard=4)
    write_shards(str(tmp_path / "test"), x[:3], y[:3])
    assert len(paths) == 3 and not list(tmp_path.glob("**/*.tmp"))
    ds = load_dataset("parquet", str(tmp_path))
    assert torch.equal(ds.x_train, x) and torch.equal(ds.y_train, y) and len(ds.x_test) == 3


def test_parquet_bad_files_are_clear_errors(tmp_path):
    from reconlab.data.parquet import write_shards

    with pytest.raises(DataError, match="no Parquet shards"):
        load_dataset("parquet", str(tmp_path))
    write_shards(str(tmp_path / "train"), torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.int64))
    write_shards(str(tmp_path / "test"), torch.rand(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(DataError, match="shapes differ"):
        load_dataset("parquet", str(tmp_path))
    (tmp_path / "test" / "part-00000.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"part-00000.parquet.*not a readable Parquet file"):
        load_dataset("parquet", str(tmp_path))


def test_datasets_needing_files_say_so():
    for name in ("stl10", "parquet"):
        with pytest.raises(DataError, match="needs --data-root"):
            load_dataset(name)
