"""Reader of CIFAR-10's "python version" (Krizhevsky 2009).

``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``: each batch is
a pickle of a dict with ``b"data"`` (uint8, N x 3072: the R, G then B planes of
a 32x32 image, each row-major) and ``b"labels"`` (N ints in 0..9).

The files are pickles, i.e. untrusted code: they are never given to
``pickle.load``. :class:`_BatchUnpickler` resolves only the few globals that
rebuilding a numpy array needs and refuses every other one (``os.system``,
``builtins.eval``, ...) before anything runs.
"""

from __future__ import annotations

import codecs
import os
import pickle
import re

import numpy as np
import torch

from reconlab.data.base import ImageDataset
from reconlab.errors import DataError

SIZE = 32
IMAGE_VALUES = 3 * SIZE * SIZE
_BATCH = re.compile(r"data_batch_(\d+)$")

# (module, name) -> the object it stands for, resolved here once (no import by
# name from the file). numpy 2 moved numpy.core to numpy._core; the official
# files (pickled by numpy 1 under Python 2) name numpy.core, files written
# today name numpy._core.
try:
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray, numeric as _numeric

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles written by Python 3
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is refused."""

    def __init__(self, file, path: str):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        target = _ALLOWED.get((module, name))
        if target is None:
            raise DataError("refusing to unpickle a global that a CIFAR-10 batch does not need",
                            source=self.path, key="global", value=f"{module}.{name}")
        return target


def read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, path).load()
    except FileNotFoundError:
        raise DataError("file not found", source=path) from None
    except DataError:
        raise
    except Exception as e:  # a truncated or crafted pickle: any error is bad data
        raise DataError(f"cannot unpickle CIFAR-10 batch ({type(e).__name__}: {e})", source=path) from None
    if not isinstance(batch, dict):
        raise DataError("expected a pickled dict", source=path, key="type", value=type(batch).__name__)
    for key in (b"data", b"labels"):
        if key not in batch:
            raise DataError("missing key", source=path, key=key.decode(), value=sorted(map(repr, batch)))
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_VALUES:
        value = (data.dtype.str, data.shape) if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"expected a uint8 array of shape (N, {IMAGE_VALUES})", source=path, key="data",
                        value=value)
    try:
        labels = np.asarray(batch[b"labels"])
    except Exception:
        labels = None
    if labels is None or labels.ndim != 1 or len(labels) != len(data) or (
            labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise DataError(f"expected {len(data)} integer labels", source=path, key="labels",
                        value=getattr(labels, "shape", None))
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise DataError("labels must be in 0..9", source=path, key="labels", value=bad)
    return data.reshape(-1, 3, SIZE, SIZE), labels


def _root(data_root: str) -> str:
    d = os.path.join(data_root, "cifar-10-batches-py")
    return d if os.path.isdir(d) else data_root


def _read(paths: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [read_batch(p) for p in paths]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(x).float().div_(255.0), torch.from_numpy(y)


def load_cifar10(data_root: str) -> ImageDataset:
    root = _root(data_root)
    try:
        names = os.listdir(root)
    except OSError:
        raise DataError("CIFAR-10 folder not found", source=os.path.join(data_root, "cifar-10-batches-py")) from None
    train = sorted((int(m.group(1)), n) for n in names if (m := _BATCH.match(n)))
    if not train:
        raise DataError("no data_batch_* files (CIFAR-10 python version)", source=root)
    x_tr, y_tr = _read([os.path.join(root, n) for _, n in train])
    x_te, y_te = _read([os.path.join(root, "test_batch")])
    return ImageDataset("cifar10", x_tr, y_tr, x_te, y_te, num_classes=10)
