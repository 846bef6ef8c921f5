"""Reader (and writer, for tests) of STL-10's binary format (Coates et al. 2011).

``stl10_binary/{train,test,unlabeled}_X.bin``: uint8, each image 3x96x96 stored
column-major (as MATLAB writes it); ``*_y.bin``: uint8 labels 1..10.

The paper (Hauptmann & Adler) takes 100,000 images and splits them 90,000 /
10,000: with ``unlabeled_X.bin`` present we do the same (first 90 %% train);
otherwise train_X / test_X are the split. ``max_images`` caps each split, since
100,000 float images take 11 GB; for full runs convert to Parquet shards.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from reconlab.data.base import ImageDataset
from reconlab.errors import DataError

SIZE = 96
IMAGE_BYTES = 3 * SIZE * SIZE


def read_images(path: str, max_images: int | None = None) -> np.ndarray:
    """(N, 3, 96, 96) uint8, row-major, memory-mapped until sliced."""
    try:
        n_bytes = os.path.getsize(path)
    except FileNotFoundError:
        raise DataError("file not found", source=path) from None
    if n_bytes == 0 or n_bytes % IMAGE_BYTES:
        raise DataError(f"not a whole number of 3x96x96 images ({IMAGE_BYTES} bytes each); truncated?",
                        source=path, key="bytes", value=n_bytes)
    raw = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, 3, SIZE, SIZE)
    if max_images:
        raw = raw[:max_images]
    return np.ascontiguousarray(raw.transpose(0, 1, 3, 2))


def read_labels(path: str, n: int) -> np.ndarray:
    if not os.path.exists(path):
        return np.zeros(n, np.int64)
    y = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    if len(y) < n or (len(y) and (y.min() < 1 or y.max() > 10)):
        raise DataError(f"need {n} labels in 1..10", source=path, key="labels", value=len(y))
    return y[:n] - 1


def write_images(path: str, images: np.ndarray) -> None:
    """(N, 3, 96, 96) uint8 -> STL-10's column-major binary."""
    if images.dtype != np.uint8 or images.shape[1:] != (3, SIZE, SIZE):
        raise ValueError(f"need uint8 (N, 3, 96, 96), got {images.dtype} {images.shape}")
    np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tofile(path)


def _root(data_root: str) -> str:
    d = os.path.join(data_root, "stl10_binary")
    return d if os.path.isdir(d) else data_root


def load_stl10(data_root: str, max_images: int | None = None) -> ImageDataset:
    root = _root(data_root)

    def to_float(a):
        return torch.from_numpy(a).float().div_(255.0)

    unl = os.path.join(root, "unlabeled_X.bin")
    if os.path.exists(unl):
        total = os.path.getsize(unl) // IMAGE_BYTES
        n_train = int(total * 0.9)
        x = read_images(unl, (n_train + max_images) if max_images else None)
        x_tr, x_te = x[:n_train][:max_images], x[n_train:][:max_images]
        if not len(x_tr) or not len(x_te):
            raise DataError("too few images for a 90/10 split (need >= 2)", source=unl, key="images", value=total)
        y_tr, y_te = np.zeros(len(x_tr), np.int64), np.zeros(len(x_te), np.int64)
    else:
        x_tr = read_images(os.path.join(root, "train_X.bin"), max_images)
        x_te = read_images(os.path.join(root, "test_X.bin"), max_images)
        y_tr = read_labels(os.path.join(root, "train_y.bin"), len(x_tr))
        y_te = read_labels(os.path.join(root, "test_y.bin"), len(x_te))
    return ImageDataset("stl10", to_float(x_tr), torch.from_numpy(y_tr), to_float(x_te), torch.from_numpy(y_te),
                        num_classes=10)
