"""Prepared image sets as Parquet shards (pyarrow), streamed with Ray Data.

Layout: ``<root>/{train,test}/part-00000.parquet``, ...; one row per image
with columns ``image`` (raw uint8 bytes, CHW), ``label`` (int64), ``height``,
``width``, ``channels``. Writing keeps images 8-bit, so 100,000 STL-10 images
take 2.8 GB instead of 11 GB as floats.

:func:`load_parquet` reads a whole set into memory; :func:`ray_dataset`
streams a split as a Ray Dataset (``TorchTrainer(datasets=...)``), each batch
decoded to float32 (N, C, H, W) on the worker.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import torch

from reconlab.data.base import ImageDataset
from reconlab.errors import DataError

COLUMNS = ("image", "label", "height", "width", "channels")


def write_shards(out_dir: str, x: torch.Tensor, y: torch.Tensor, rows_per_shard: int = 4096) -> list[str]:
    """Write images in [0, 1] (N, C, H, W) as 8-bit Parquet shards; returns the paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(out_dir, exist_ok=True)
    u8 = (x * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    n, c, h, w = u8.shape
    paths = []
    for i, s in enumerate(range(0, n, rows_per_shard)):
        part = u8[s:s + rows_per_shard]
        table = pa.table({"image": [p.tobytes() for p in part], "label": y[s:s + rows_per_shard].numpy().astype(np.int64),
                          "height": np.full(len(part), h, np.int32), "width": np.full(len(part), w, np.int32),
                          "channels": np.full(len(part), c, np.int32)})
        path = os.path.join(out_dir, f"part-{i:05d}.parquet")
        tmp = path + ".tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # never a half-written shard under the final name
        paths.append(path)
    return paths


def decode(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of rows (column -> array) -> float32 images (N, C, H, W), labels."""
    h, w, c = (int(np.asarray(batch[k])[0]) for k in ("height", "width", "channels"))
    imgs = np.stack([np.frombuffer(b, np.uint8) for b in batch["image"]]).reshape(-1, c, h, w)
    return torch.from_numpy(imgs).float().div_(255.0), torch.as_tensor(np.asarray(batch["label"]), dtype=torch.int64)


def _files(split_dir: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(split_dir, "*.parquet")))
    if not files:
        raise DataError("no Parquet shards (*.parquet)", source=split_dir)
    return files


def read_split(split_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    import pyarrow.parquet as pq

    xs, ys, shape = [], [], None
    for f in _files(split_dir):
        try:
            t = pq.read_table(f)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataError(f"not a readable Parquet file ({type(e).__name__}: {e})", source=f) from None
        missing = [k for k in COLUMNS if k not in t.column_names]
        if missing:
            raise DataError("missing columns", source=f, key="columns", value=missing)
        if t.num_rows == 0:
            continue
        batch = t.to_pydict()
        shapes = sorted({tuple(batch[k][i] for k in ("channels", "height", "width")) for i in range(t.num_rows)},
                        key=repr)
        if len(shapes) > 1:  # decode() reshapes by the first row's shape
            raise DataError("mixed image shapes in one shard (channels, height, width)", source=f, key="shape",
                            value=shapes)
        if not all(isinstance(v, int) and v >= 1 for v in shapes[0]):
            raise DataError("channels, height and width must be integers >= 1", source=f, key="shape",
                            value=shapes[0])
        sizes = {len(b) if isinstance(b, (bytes, bytearray)) else None for b in batch["image"]}
        expected = shapes[0][0] * shapes[0][1] * shapes[0][2]
        if sizes != {expected}:
            raise DataError(f"image bytes do not match channels x height x width = {expected}", source=f,
                            key="image bytes", value=sorted(sizes, key=repr))
        if any(v is None for v in batch["label"]):
            raise DataError("missing labels", source=f, key="label", value=None)
        try:
            x, y = decode(batch)
        except (TypeError, ValueError, OverflowError) as e:
            raise DataError(f"cannot decode the rows ({type(e).__name__}: {e})", source=f) from None
        if len(y) and int(y.min()) < 0:
            raise DataError("labels must be >= 0", source=f, key="min label", value=int(y.min()))
        if shape is not None and tuple(x.shape[1:]) != shape:
            raise DataError(f"image shape differs from the other shards' {shape}", source=f, key="shape",
                            value=tuple(x.shape[1:]))
        shape = tuple(x.shape[1:])
        xs.append(x)
        ys.append(y)
    if not xs:
        raise DataError("the shards hold no rows", source=split_dir)
    return torch.cat(xs), torch.cat(ys)


def split_dir(data_root: str, split: str) -> str:
    """``data_root/parquet/<split>`` if it exists, else ``data_root/<split>``."""
    nested = os.path.join(data_root, "parquet", split)
    return nested if os.path.isdir(nested) else os.path.join(data_root, split)


def load_parquet(data_root: str) -> ImageDataset:
    root = os.path.dirname(split_dir(data_root, "train"))
    x_tr, y_tr = read_split(os.path.join(root, "train"))
    x_te, y_te = read_split(os.path.join(root, "test"))
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError("train and test image shapes differ", source=root, key="shape",
                        value=[tuple(x_tr.shape[1:]), tuple(x_te.shape[1:])])
    return ImageDataset("parquet", x_tr, y_tr, x_te, y_te, num_classes=int(max(y_tr.max(), y_te.max())) + 1)


def ray_dataset(split_dir: str):
    """A Ray Dataset over one split's shards (streamed, not loaded)."""
    import ray.data

    return ray.data.read_parquet(_files(split_dir))
