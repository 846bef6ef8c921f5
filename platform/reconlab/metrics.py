"""Image-quality and inversion metrics, batched over the first dimension.

Images are (b, c, h, w) in [0, data_range]. Every function returns one value
per image, shape (b,), unless it says otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mse(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (x - ref).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """10 log10(R^2 / MSE); +inf where the images are identical."""
    return 10.0 * torch.log10(data_range**2 / mse(x, ref))


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0, win_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) with a Gaussian window, channel-averaged.

    Matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=R)``: statistics are
    computed where the window fits entirely ("valid" region)."""
    x, ref = x.double(), ref.double()
    b, c, h, w = x.shape
    win = min(win_size, h, w)
    win -= (win + 1) % 2  # odd
    g = _gaussian_window(win, sigma, x.dtype, x.device)
    # the 2-D Gaussian window is separable: a column pass then a row pass,
    # over the five maps at once (2 x win taps per pixel, not win^2)
    maps = torch.cat([x, ref, x * x, ref * ref, x * ref], dim=1)  # (b, 5c, h, w)
    n = maps.shape[1]
    f = F.conv2d(maps, g.view(1, 1, win, 1).expand(n, 1, win, 1), groups=n)
    f = F.conv2d(f, g.view(1, 1, 1, win).expand(n, 1, 1, win), groups=n)
    mx, my, exx, eyy, exy = f.split(c, dim=1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vx = exx - mx * mx
    vy = eyy - my * my
    cxy = exy - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def macro_prf(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Macro-averaged precision, recall and F1 (the thesis's Tables 4.1/4.2):
    per class from the confusion counts, then the plain mean over classes (a
    class never predicted has precision 0, as scikit-learn's zero_division=0)."""
    idx = target.long() * num_classes + pred.long()
    cm = torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).double()
    tp = cm.diag()
    precision = torch.where(cm.sum(0) > 0, tp / cm.sum(0).clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(cm.sum(1) > 0, tp / cm.sum(1).clamp_min(1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12),
                     torch.zeros_like(tp))
    return {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())}


def worst_value(metric: str, mode: str, bounds: dict[str, tuple[float, float]]) -> float:
    """The worst finite score of ``metric`` for a sweep of ``mode``: its
    bound where it has one (accuracy >= 0), else the largest finite float
    against the sweep's direction. A diverged trial reports it, so the
    searcher records a complete, bad trial, never a pruned or missing one."""
    import math
    import sys

    lo, hi = bounds.get(metric, (-math.inf, math.inf))
    v = lo if mode == "max" else hi
    if math.isfinite(v):
        return float(v)
    return -sys.float_info.max if mode == "max" else sys.float_info.max
