"""Image priors R(x). Each returns one value per image, shape (b,), so a batch
of independent inversions is one sum and one backward pass."""

from __future__ import annotations

import torch
import torch.nn as nn


def tv(x: torch.Tensor) -> torch.Tensor:
    """Thesis eq. (TV): sum over pixels of squared right and down neighbour
    differences. x: (b, c, h, w) -> (b,)."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).pow(2).flatten(1).sum(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).pow(2).flatten(1).sum(1)
    return dh + dw


def l2(x: torch.Tensor) -> torch.Tensor:
    """Squared l2 norm per image. (b, ...) -> (b,)."""
    return x.pow(2).flatten(1).sum(1)


class BNStatsPrior:
    """DeepInversion's feature-statistics prior (Yin et al. 2020):

        R_bn(x) = sum_l ||mu_l(x) - mu_l^BN||_2 + ||var_l(x) - var_l^BN||_2

    (norms, not squared; the first BN layer weighted ``first_bn_multiplier``).
    ``per_image=True`` takes the statistics of each image's feature maps over
    its spatial positions, which keeps every image's inversion independent of
    the rest of the batch; ``per_image=False`` uses batch statistics as in the
    paper (then returns the batch value divided evenly over the images).

    Use as a context manager around the forward pass:
        with BNStatsPrior(model) as bn:
            logits = model(x); r = bn.value()   # (b,)
    """

    def __init__(self, model: nn.Module, *, per_image: bool = True, first_bn_multiplier: float = 10.0):
        self.per_image = per_image
        self.layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.weights = [first_bn_multiplier] + [1.0] * (len(self.layers) - 1)
        self._terms: list[torch.Tensor] = []
        self._handles = []

    def __enter__(self):
        self._terms = []
        self._handles = [m.register_forward_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, module, inputs, _output):
        (f,) = inputs  # (b, c, h, w)
        if self.per_image:
            g = f.flatten(2)  # (b, c, h w)
            mean = g.mean(2)  # (b, c)
            # E[f^2] - E[f]^2: 2.8x faster forward + backward than f.var(dim=(2, 3)) on CPU (bench/bn_prior.py)
            var = (g * g).mean(2) - mean * mean
            r = (mean - module.running_mean).norm(dim=1) + (var - module.running_var).norm(dim=1)  # (b,)
        else:
            mean = f.mean(dim=(0, 2, 3))
            var = f.permute(1, 0, 2, 3).flatten(1).var(1, unbiased=False)
            r = ((mean - module.running_mean).norm() + (var - module.running_var).norm()).expand(f.shape[0]) / f.shape[0]
        self._terms.append(r)

    def value(self) -> torch.Tensor:
        if not self._terms:
            raise RuntimeError("BNStatsPrior.value() called before a forward pass inside its context")
        return sum(w * t for w, t in zip(self.weights, self._terms))
