"""CT phantoms: scikit-image's Shepp–Logan and seeded random ellipses.

Each random phantom is a disc-shaped body (an ellipse of density 0.5-0.8)
holding 3-8 smaller ellipses that add or remove density (-0.4 to +0.5),
clipped to [0, 1], in the style of the Shepp–Logan phantom. The split is
fixed by seed: ``TRAIN`` phantoms from seed 0, ``TEST`` from seed 1, and
Shepp–Logan itself (resized) as the first test image. Labels are all 0:
phantoms have no classes.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from reconlab.data.base import ImageDataset

TRAIN, TEST = 400, 300
SIZES = (64, 128)


def ellipse(size: int, cx: float, cy: float, a: float, b: float, theta: float) -> np.ndarray:
    """Boolean mask of an ellipse in [-1, 1]² coordinates (centre, semi-axes, angle)."""
    t = (np.arange(size) + 0.5) / size * 2 - 1
    yy, xx = np.meshgrid(t, t, indexing="ij")
    c, s = np.cos(theta), np.sin(theta)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def random_phantom(size: int, rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((size, size), np.float32)
    body_a, body_b = rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.9)
    img[ellipse(size, 0, 0, body_a, body_b, rng.uniform(0, np.pi))] = rng.uniform(0.5, 0.8)
    for _ in range(rng.integers(3, 9)):
        r = rng.uniform(0, 0.6)
        phi = rng.uniform(0, 2 * np.pi)
        mask = ellipse(size, r * np.cos(phi) * body_a, r * np.sin(phi) * body_b, rng.uniform(0.05, 0.35),
                       rng.uniform(0.05, 0.35), rng.uniform(0, np.pi))
        img[mask] += rng.uniform(-0.4, 0.5)
    return np.clip(img, 0.0, 1.0)


def shepp_logan(size: int) -> np.ndarray:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return np.clip(resize(shepp_logan_phantom(), (size, size), order=1, anti_aliasing=True), 0, 1).astype(np.float32)


@functools.lru_cache(maxsize=2)
def load_phantoms(size: int = 64) -> ImageDataset:
    if size not in SIZES:
        raise ValueError(f"phantom size must be one of {SIZES}")
    rng = np.random.default_rng(0)
    train = np.stack([random_phantom(size, rng) for _ in range(TRAIN)])
    rng = np.random.default_rng(1)
    test = np.stack([shepp_logan(size)] + [random_phantom(size, rng) for _ in range(TEST - 1)])
    x_tr, x_te = torch.from_numpy(train).unsqueeze(1), torch.from_numpy(test).unsqueeze(1)
    return ImageDataset(f"phantoms{'' if size == 64 else size}", x_tr, torch.zeros(TRAIN, dtype=torch.int64), x_te,
                        torch.zeros(TEST, dtype=torch.int64), num_classes=1)
