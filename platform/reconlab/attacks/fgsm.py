"""Fast gradient sign method (Goodfellow et al. 2015)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """x_adv = clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1).

    Only the input gradient is computed; parameter gradients are untouched.
    ``y`` may be class indices or soft labels (probabilities)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0.0, 1.0).detach()
