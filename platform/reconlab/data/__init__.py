"""Datasets: embedded defaults (no download) and real on-disk formats.

``load_dataset(name, data_root=None)`` returns an :class:`ImageDataset` with
train and test tensors in [0, 1], layout (N, C, H, W).
"""

from __future__ import annotations

from reconlab.data.base import ImageDataset
from reconlab.errors import DataError

DATASETS = ("digits", "mnist", "natural", "natural96", "phantoms", "phantoms128", "stl10", "cifar10", "parquet")


def load_dataset(name: str, data_root: str | None = None) -> ImageDataset:
    """``digits``: scikit-learn's bundled digits at 28x28 (embedded default).
    ``mnist``: real MNIST IDX files under ``data_root`` (``data_root/mnist`` or
    ``data_root`` itself). ``natural`` / ``natural96``: RGB patches (32x32 /
    96x96) from scikit-image's bundled photographs, split by photo.
    ``phantoms`` / ``phantoms128``: CT phantoms (Shepp–Logan and seeded
    random ellipses) at 64x64 / 128x128. ``stl10``: STL-10 binaries under ``data_root``.
    ``cifar10``: CIFAR-10 python-version batches under ``data_root``
    (``data_root/cifar-10-batches-py`` or ``data_root`` itself). ``parquet``: prepared
    8-bit shards under ``data_root/{train,test}`` (see ``reconlab.data.parquet``)."""
    if name == "digits":
        from reconlab.data.digits import load_digits

        return load_digits()
    if name in ("phantoms", "phantoms128"):
        from reconlab.data.phantoms import load_phantoms

        return load_phantoms(128 if name == "phantoms128" else 64)
    if name in ("natural", "natural96"):
        from reconlab.data.natural import load_natural

        return load_natural(96 if name == "natural96" else 32)
    if name in ("mnist", "stl10", "cifar10", "parquet"):
        if not data_root:
            raise DataError(f"the {name} dataset needs --data-root", key="dataset", value=name)
        if name == "mnist":
            from reconlab.data.mnist_idx import load_mnist

            return load_mnist(data_root)
        if name == "stl10":
            from reconlab.data.stl10 import load_stl10

            return load_stl10(data_root)
        if name == "cifar10":
            from reconlab.data.cifar10 import load_cifar10

            return load_cifar10(data_root)
        from reconlab.data.parquet import load_parquet

        return load_parquet(data_root)
    raise DataError(f"unknown dataset (known: {', '.join(DATASETS)})", key="dataset", value=name)


__all__ = ["DATASETS", "ImageDataset", "load_dataset"]
