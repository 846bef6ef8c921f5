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


class _LowestScore:
    """What both rules share: keep the iterate with the lowest score so far
    (``best_iteration``, ``best_image``, ``best_score``) and say stop once
    ``patience`` scored steps in a row bring no new minimum."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best_iteration: int = 0
        self.best_image: torch.Tensor | None = None
        self.best_score = float("inf")
        self._wait = 0

    def _keep(self, iteration: int, score: float, image: torch.Tensor) -> bool:
        if score < self.best_score:
            self.best_score, self.best_iteration = score, iteration
            self.best_image = image.detach().clone()
            self._wait = 0
            return False
        self._wait += 1
        return self._wait >= self.patience


class WindowedVariance(_LowestScore):
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
        super().__init__(patience)
        self.window = window
        self.variances: list[tuple[int, float]] = []
        self._buffer: list[torch.Tensor] = []  # the last W iterates, flattened, oldest first
        self._sum: torch.Tensor | None = None  # (n,) float64: sum of the iterates in the window
        self._sq = 0.0  # sum of ||x_i||^2 over the window

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
        return self._keep(iteration, var, image)


class HeldOutPixels(_LowestScore):
    """Held-out pixels: a random ``fraction`` of the pixel positions is left
    out of the fitting loss (``train_mask``, 1 where fitted; pass it to
    ``fit(mask=...)``), and the iterate's MSE to the *noisy* image on them,

        L_t = 1/|H| sum_{i in H} (x_t[i] - y[i])^2,   y = x + n,

    tracks its error to the clean image: the fit never saw n on H, so
    E L_t = MSE_H(x_t, x) + sigma^2 up to the cross term 2<x_t - x, n>_H / |H|,
    which is small while x_t has not fit those pixels' noise (a network can
    only predict them from their neighbours). The rule keeps the iterate with
    the lowest L_t and stops when ``patience`` steps bring no new minimum.
    Like cross-validation, it costs the fit the held-out pixels' information.
    """

    def __init__(self, noisy: torch.Tensor, fraction: float = 0.1, patience: int = 1000, seed: int = 0):
        if not 0 < fraction < 1 or patience < 1:
            raise ValueError(f"need 0 < fraction < 1 and patience >= 1, got fraction={fraction}, patience={patience}")
        if noisy.dim() != 4:
            raise ValueError(f"noisy must be (1, c, H, W), got {tuple(noisy.shape)}")
        g = torch.Generator().manual_seed(seed)
        held = torch.rand((1, 1, *noisy.shape[2:]), generator=g) < fraction  # (1, 1, H, W) on the CPU: any device
        if not held.any() or held.all():
            raise ValueError(f"holding out {fraction:g} of {held.numel()} pixels leaves none on one side")
        super().__init__(patience)
        self.fraction = fraction
        held = held.to(noisy.device)
        self.train_mask = ~held
        self._held = held.expand_as(noisy)
        self._target = noisy.detach()[self._held]  # (|H| c,)
        self.losses: list[tuple[int, float]] = []

    def held_out_loss(self, image: torch.Tensor) -> float:
        return float(((image.detach()[self._held] - self._target) ** 2).mean())

    def update(self, iteration: int, image: torch.Tensor) -> bool:
        loss = self.held_out_loss(image)
        self.losses.append((iteration, loss))
        return self._keep(iteration, loss, image)
