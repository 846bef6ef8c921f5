"""Reader (and writer, for tests and conversions) of MNIST's IDX format.

IDX: big-endian magic ``0x00 0x00 <dtype> <ndim>``, ``ndim`` uint32 sizes,
then the data. MNIST uses dtype 0x08 (uint8): images (N, 28, 28), labels (N,).
Gzipped files (``*.gz``) are read transparently.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import torch

from reconlab.data.base import ImageDataset
from reconlab.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(np.uint8): 0x08}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError("file not found", source=path) from None
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file ({e})", source=path) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError("not an IDX file (bad magic number)", source=path, key="magic", value=raw[:4].hex())
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise DataError("unknown IDX data type", source=path, key="dtype", value=hex(code))
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError("truncated IDX header", source=path, key="bytes", value=len(raw))
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"IDX size mismatch: header says shape {tuple(shape)} ({expected} bytes)", source=path,
            key="bytes", value=len(raw),
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    code = _CODES.get(array.dtype)
    if code is None:
        raise ValueError(f"write_idx supports uint8 only, got {array.dtype}")
    with open(path, "wb") as f:
        f.write(bytes([0, 0, code, array.ndim]))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.tobytes())


def _find(root: str, stem: str) -> str:
    for d in (os.path.join(root, "mnist"), os.path.join(root, "MNIST", "raw"), root):
        for name in (stem, stem + ".gz"):
            p = os.path.join(d, name)
            if os.path.exists(p):
                return p
    raise DataError("MNIST file not found", source=os.path.join(root, stem))


def load_split(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    img_path, lbl_path = (_find(root, s) for s in FILES[split])
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError("expected images of shape (N, 28, 28)", source=img_path, key="shape", value=images.shape)
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"expected {len(images)} labels", source=lbl_path, key="shape", value=labels.shape)
    if labels.size and labels.max() > 9:
        raise DataError("labels must be digits 0-9", source=lbl_path, key="max label", value=int(labels.max()))
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_mnist(root: str) -> ImageDataset:
    xtr, ytr = load_split(root, "train")
    xte, yte = load_split(root, "test")
    return ImageDataset("mnist", xtr, ytr, xte, yte, num_classes=10)
