"""``natural``: RGB patches cut from scikit-image's bundled photographs, the
embedded STL-10 / CIFAR-10 stand-in.

Train and test are split **by source photo**: no photo feeds both. Patches
are cut on a regular grid at full size and at 1/2 and 1/4 scale (area
averaging), so a 32x32 patch sees both texture and whole objects. Pixels
stay on the 8-bit grid (k/255), as they are in STL-10. Labels are the index
of the source photo. No randomness: the set is the same everywhere.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from reconlab.data.base import ImageDataset

TRAIN_PHOTOS = ("astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
TEST_PHOTOS = ("chelsea", "coffee")
SCALES = (1, 2, 4)


def _photo(name: str) -> np.ndarray:
    import skimage.data

    im = getattr(skimage.data, name)()
    return np.ascontiguousarray(im[..., :3])


def _downscale(im: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return im
    h, w = (im.shape[0] // f) * f, (im.shape[1] // f) * f
    blocks = im[:h, :w].astype(np.float64).reshape(h // f, f, w // f, f, 3).mean((1, 3))
    return np.round(blocks).astype(np.uint8)


def patches(im: np.ndarray, size: int, stride: int) -> np.ndarray:
    """(n, size, size, 3) patches on a regular grid."""
    h, w = im.shape[:2]
    out = [im[i:i + size, j:j + size] for i in range(0, h - size + 1, stride) for j in range(0, w - size + 1, stride)]
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


def _cut(photos, size: int, stride: int, first_label: int = 0):
    xs, ys = [], []
    for label, name in enumerate(photos, start=first_label):
        im = _photo(name)
        for f in SCALES:
            p = patches(_downscale(im, f), size, stride)
            xs.append(p)
            ys.append(np.full(len(p), label, np.int64))
    x = torch.from_numpy(np.concatenate(xs)).permute(0, 3, 1, 2).float() / 255.0
    return x.contiguous(), torch.from_numpy(np.concatenate(ys))


@functools.lru_cache(maxsize=2)
def load_natural(size: int = 32) -> ImageDataset:
    """Training patches overlap (stride size/2); test patches do not (stride size)."""
    if size not in (32, 96):
        raise ValueError(f"natural patches are 32 or 96 pixels, not {size}")
    x_tr, y_tr = _cut(TRAIN_PHOTOS, size, size // 2)
    x_te, y_te = _cut(TEST_PHOTOS, size, size, first_label=len(TRAIN_PHOTOS))
    return ImageDataset(f"natural{size}" if size != 32 else "natural", x_tr, y_tr, x_te, y_te,
                        num_classes=len(TRAIN_PHOTOS) + len(TEST_PHOTOS))
