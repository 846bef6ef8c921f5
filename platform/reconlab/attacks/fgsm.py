"""Fast gradient sign method (Goodfellow et al. 2015)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """x_adv = clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1).

    Only the input gradient is computed; parameter gradients are untouched.
    ``y`` may be class indices or soft labels (probabilities)."""
    return fgsm_multi(model, x, y, [eps])[0]


def input_gradient_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sign(grad_x CE), also when called under ``torch.no_grad()``."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")  # per-image gradients, whatever the batch size
        (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def fgsm_multi(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float]) -> torch.Tensor:
    """FGSM at every eps from one gradient: (len(eps), *x.shape). The sign
    step does not depend on eps, so one backward pass serves the whole list."""
    s = input_gradient_sign(model, x, y)
    e = torch.as_tensor(list(eps), dtype=x.dtype, device=x.device).view(-1, *([1] * x.dim()))
    return (x.detach().unsqueeze(0) + e * s.unsqueeze(0)).clamp(0.0, 1.0)


@torch.no_grad()
def accuracy_under_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float],
                        batch_size: int = 512) -> list[float]:
    """Accuracy at each eps: one gradient per batch serves every eps, and
    each eps's images are classified in a forward pass over the batch. (One
    pass over all k x b images at once was 2x slower on a CPU than k passes
    of b: `bench/attacks.py`.)"""
    correct = torch.zeros(len(eps))
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        for k, adv in enumerate(fgsm_multi(model, xb, yb, eps)):  # (k, b, ...)
            correct[k] += (model(adv).argmax(1) == yb).sum().cpu()
    return (correct / max(len(x), 1)).tolist()
