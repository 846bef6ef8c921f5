"""No-reference early stopping for untrained networks.

ES-WMV (Wang, Li, Zhuang, Chen, Liang & Sun, "Early stopping for deep image
prior", TMLR 2023; reference code sun-umn/Early_Stopping_for_DIP,
``ES_WMV.ipynb``: ``EarlyStop`` and ``closure``). The reconstruction quality of
DIP-like fits rises and then falls as the network starts fitting the noise;
the spread of the recent iterates has its valley near the quality peak. With
the last W iterates x_{t-W+1..t} (each with n entries):

    VAR_t = 1/W sum_i ||x_i - mean_j x_j||^2 / n

is computed at every step once W iterates exist. A new minimum records
t* = t and x* = x_t; the fit stops when VAR has not reached a new minimum for
``patience`` consecutive steps. Reference defaults: W = 100, P = 1000.
"""

from __future__ import annotations

import torch


class WindowedVariance:
    """ES-WMV. ``update(t, x_t)`` returns True once VAR has not improved for
    ``patience`` steps; ``best_iteration``/``best_image`` are t* and x*
    (0 and None until the window first fills); ``variances`` holds
    (t, VAR_t) for every full window.

    VAR is kept from running sums in float64 (sum of x_i, sum of ||x_i||^2),
    so a step costs O(n) rather than the reference's O(W n); it equals the
    reference's ``mean([myMetric(ave_img, x) for x in window])`` (tested).
    The window itself is held in the images' dtype: W x n values (100 RGB
    512x512 float32 images: 315 MB), as in the reference."""

    def __init__(self, window: int = 100, patience: int = 1000):
        if window < 2 or patience < 1:
            raise ValueError(f"need window >= 2 and patience >= 1, got window={window}, patience={patience}")
        self.window, self.patience = window, patience
        self.best_iteration: int = 0
        self.best_image: torch.Tensor | None = None
        self.best_variance = float("inf")
        self.variances: list[tuple[int, float]] = []
        self._buffer: list[torch.Tensor] = []  # the last W iterates, flattened, oldest first
        self._sum: torch.Tensor | None = None  # (n,) float64: sum of the iterates in the window
        self._sq = 0.0  # sum of ||x_i||^2 over the window
        self._wait = 0

    def update(self, iteration: int, image: torch.Tensor) -> bool:
        x = image.detach().flatten().clone()  # (n,), kept in the image's dtype
        xd = x.double()
        if self._sum is None:
            self._sum = torch.zeros_like(xd)
        self._buffer.append(x)
        self._sum += xd
        self._sq += float(xd @ xd)
        if len(self._buffer) > self.window:
            old = self._buffer.pop(0).double()  # the same float64 values that were added
            self._sum -= old
            self._sq -= float(old @ old)
        if len(self._buffer) < self.window:
            return False
        # 1/W sum_i ||x_i - m||^2 = 1/W sum_i ||x_i||^2 - ||m||^2, m = sum_i x_i / W
        var = (self._sq / self.window - float(self._sum @ self._sum) / self.window**2) / x.numel()
        self.variances.append((iteration, var))
        if var < self.best_variance:
            self.best_variance, self.best_iteration = var, iteration
            self.best_image = image.detach().clone()
            self._wait = 0
            return False
        self._wait += 1
        return self._wait >= self.patience
