"""Fitting an untrained network to one image: x_hat = G_theta(z) with
theta = argmin ||G_theta(z) - y||^2, Adam from a random init, no training data.

The loop merges the two references:

* deep decoder, reinhardh/supplement_deep_decoder ``include/fit.py:fit``
  (``find_best=True``): Adam (default betas, no weight decay) on the MSE to the
  noisy image, and "keep the best iterate": a new best when the fitting loss
  drops below best / 1.005. Judged by the fitting loss only: no clean image.
* deep image prior, DmitryUlyanov/deep-image-prior ``denoising.ipynb``
  (``closure``): input regularisation z_t = z + reg_noise_std * N(0, I), fresh
  noise every step (1/30 for sigma = 25), and the exponential average of the
  outputs, avg = 0.99 avg + 0.01 out, started at the first output.

Step t (t = 1..iterations) evaluates out_t = G(z_t) with the weights after t-1
updates, its loss, and then takes the t-th Adam step. ``losses[t-1]``, the
best iterate, the EMA, the callback and the stopping rule all see out_t, the
image whose loss was computed. (The reference deep decoder copies the network
*after* the step that followed its best loss and re-evaluates it at z; the
difference is one Adam step.)
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

BEST_FACTOR = 1.005  # include/fit.py:fit: "if best_mse > 1.005*loss.data" starts a new best


class StoppingRule(Protocol):
    best_iteration: int
    best_image: torch.Tensor | None

    def update(self, iteration: int, image: torch.Tensor) -> bool: ...


@dataclasses.dataclass
class FitResult:
    """Images are (1, c, H, W). ``image``: G(z) after the last step, at the
    unperturbed input; ``best_image``: the output with the lowest fitting loss
    (``best_iteration``, ``best_loss``); ``ema_image``: the output average
    (None without ``ema``); ``stop_iteration``/``stop_image``: what the
    stopping rule chose (None without ``stop``); ``iterations``: steps taken
    (fewer than asked when the rule stopped the fit)."""

    image: torch.Tensor
    best_image: torch.Tensor
    best_iteration: int
    best_loss: float
    losses: torch.Tensor  # (iterations,) float64: MSE to the noisy image at each step
    iterations: int
    ema_image: torch.Tensor | None = None
    stop_iteration: int | None = None
    stop_image: torch.Tensor | None = None


def fit(
    model: nn.Module,
    noisy: torch.Tensor,
    z: torch.Tensor,
    *,
    iterations: int,
    lr: float,
    callback: Callable[[int, torch.Tensor, torch.Tensor | None, float], None] | None = None,
    callback_every: int = 0,
    reg_noise_std: float = 0.0,
    ema: float | None = None,
    stop: StoppingRule | None = None,
    mask: torch.Tensor | None = None,
    seed: int = 0,
) -> FitResult:
    """Fit ``model`` (a freshly initialised deep decoder or DIP net) so that
    model(z) matches ``noisy``, both (1, c, H, W) in [0, 1].

    ``callback(t, out_t, ema_t, loss_t)`` runs every ``callback_every`` steps
    and after the last one (the one the stopping rule ended on, if it did). It
    gets the images themselves, so that a caller holding the clean image can
    compute PSNR against it (the references print PSNR of out_t and of the
    EMA); the clean image never enters the fit.

    ``reg_noise_std`` > 0 perturbs the input with noise from a generator
    seeded with ``seed``; ``ema`` (DIP: 0.99) averages the outputs;
    ``stop.update(t, out_t)`` returning True ends the fit. The model's
    initial weights are the caller's (seed torch before building it).
    ``mask`` (1, 1, H, W) of 0/1 fits only the pixels where it is 1: the
    loss, the best iterate and ``losses`` are the MSE over those pixels (the
    held-out-pixel stopping rule scores the others). The model stays in
    train mode: its BatchNorm layers are the per-image channel
    normalisation of both networks.
    """
    if noisy.dim() != 4 or noisy.shape[0] != 1:
        raise ValueError(f"noisy must be one image of shape (1, c, H, W), got {tuple(noisy.shape)}")
    if z.dim() != 4 or z.shape[0] != 1:
        raise ValueError(f"z must have shape (1, k, h, w), got {tuple(z.shape)}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if ema is not None and not 0.0 <= ema < 1.0:
        raise ValueError(f"ema must be in [0, 1), got {ema}")
    if mask is not None and (mask.shape != (1, 1, *noisy.shape[2:]) or not mask.any()):
        raise ValueError(f"mask must be (1, 1, H, W) with some pixels set, got {tuple(mask.shape)}")
    model.train()
    noisy = noisy.detach()
    fitted = None if mask is None else mask.to(noisy.dtype).expand_as(noisy)
    n_fitted = None if mask is None else fitted.sum()
    z = z.detach()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator(device=z.device).manual_seed(seed)
    losses = torch.empty(iterations, dtype=torch.float64)
    best_loss, best_image, best_iteration = float("inf"), None, 0
    avg = None
    stop_iteration = stop_image = None
    t = 0
    for t in range(1, iterations + 1):
        zt = z
        if reg_noise_std > 0:
            zt = z + reg_noise_std * torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)
        out = model(zt)  # (1, c, H, W)
        loss = F.mse_loss(out, noisy) if fitted is None else ((out - noisy) ** 2 * fitted).sum() / n_fitted
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

        out = out.detach()
        value = loss.item()
        losses[t - 1] = value
        if best_loss > BEST_FACTOR * value:
            best_loss, best_image, best_iteration = value, out, t
        if ema is not None:
            avg = out if avg is None else ema * avg + (1 - ema) * out  # out of place: callers may keep avg
        stopping = stop is not None and stop.update(t, out)
        if callback is not None and ((callback_every and t % callback_every == 0) or t == iterations or stopping):
            callback(t, out, avg, value)
        if stopping:
            stop_iteration, stop_image = stop.best_iteration, stop.best_image
            break
    if stop is not None and stop_iteration is None and stop.best_image is not None:
        stop_iteration, stop_image = stop.best_iteration, stop.best_image  # ran out of steps before the rule fired
    with torch.no_grad():
        final = model(z)
    return FitResult(image=final, best_image=best_image, best_iteration=best_iteration, best_loss=best_loss,
                     losses=losses[:t], iterations=t, ema_image=avg, stop_iteration=stop_iteration,
                     stop_image=stop_image)
