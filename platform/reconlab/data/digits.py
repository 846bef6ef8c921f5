"""scikit-learn's bundled handwritten digits as an MNIST stand-in.

1,797 real 8x8 scans (values 0..16). Each is resized to 20x20 with
anti-aliasing and centred on a 28x28 canvas with a 4-pixel border, as MNIST
centres its digits in a 20x20 box. The train/test split is fixed (stratified,
seed 0, 20 % test).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from reconlab.data.base import ImageDataset

TEST_FRACTION = 0.2
SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def load_digits() -> ImageDataset:
    from skimage.transform import resize
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    small = d.images.astype(np.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    big = resize(small, (small.shape[0], 20, 20), order=1, anti_aliasing=True, preserve_range=True)
    canvas = np.zeros((small.shape[0], 28, 28), np.float32)
    canvas[:, 4:24, 4:24] = np.clip(big, 0.0, 1.0)
    idx_tr, idx_te = train_test_split(
        np.arange(len(canvas)), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=d.target
    )
    x = torch.from_numpy(canvas).unsqueeze(1)  # (N, 1, 28, 28)
    y = torch.from_numpy(d.target.astype(np.int64))
    return ImageDataset("digits", x[idx_tr], y[idx_tr], x[idx_te], y[idx_te], num_classes=10)
