import math

import pytest
import torch
from skimage.metrics import structural_similarity

from reconlab.metrics import psnr, ssim


def test_ssim_matches_scikit_image():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 1, 28, 28, generator=g)
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    ours = ssim(a, b)
    ref = [structural_similarity(a[i, 0].numpy(), b[i, 0].numpy(), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0) for i in range(4)]
    assert ours == pytest.approx(torch.tensor(ref, dtype=torch.float32), abs=1e-5)
    assert ssim(a, a) == pytest.approx(torch.ones(4), abs=1e-6)


def test_psnr_values():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[1] += 0.1  # MSE 0.01 -> 20 dB
    p = psnr(y, x)
    assert math.isinf(p[0]) and p[1].item() == pytest.approx(20.0, abs=1e-4)
