"""Attacks on denoisers (issue 13).

``dag``: Dense Adversary Generation (Xie et al. 2017) as the adversarial-
denoising report adapted it to a denoiser D: the target is another noisy
image; each iteration takes the pixels whose channel-summed L1 error
|D(x + r) - target| is still >= ``threshold`` (0.04), descends the squared
error there by an L2-normalised step of size ``gamma`` (0.1), and clamps the
perturbation to [-1, 1] and the image to [0, 1]; 40 iterations, or until no
pixel is left. It pulls the output toward a noisy copy with large, unbounded
perturbations: a weak attack.

``pgd``: projected gradient ascent under an L-infinity budget (Madry et al.
2018), what a robustness researcher runs: maximise ||D(x + delta) - clean||^2
over |delta| <= eps, x + delta in [0, 1], from a seeded random start, step
``alpha`` (default 2.5 eps / steps).

Both are batched: every per-image term is summed, so each image follows the
trajectory it would follow alone.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


def dag(denoiser: nn.Module, noisy: torch.Tensor, target: torch.Tensor, *, iterations: int = 40,
        gamma: float = 0.1, threshold: float = 0.04) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial input, perturbation r) with adversarial = clamp(noisy + r, 0, 1)."""
    for p in denoiser.parameters():
        p.requires_grad_(False)
    r = torch.zeros_like(noisy)
    for _ in range(iterations):
        r.requires_grad_(True)
        out = denoiser((noisy + r).clamp(0, 1))
        active = ((out - target).abs().sum(1, keepdim=True) >= threshold).to(out.dtype)  # (b, 1, h, w)
        if active.sum() == 0:
            r = r.detach()
            break
        loss = ((out - target).pow(2) * active).sum()
        (g,) = torch.autograd.grad(loss, r)
        norm = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (g.dim() - 1)))
        # images with no active pixel have g = 0 and stay where they are
        r = (r.detach() - gamma * g / norm).clamp(-1, 1)
    return (noisy + r).clamp(0, 1).detach(), r.detach()


def pgd(loss_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, eps: float, steps: int = 10,
        alpha: float | None = None, random_start: bool = True, seed: int = 0) -> torch.Tensor:
    """argmax over the L-inf ball of ``loss_fn`` (per image, (b,)), projected
    onto the ball and [0, 1] after every signed step."""
    alpha = 2.5 * eps / steps if alpha is None else alpha
    x = x.detach()
    if random_start and eps > 0:
        g = torch.Generator(device="cpu").manual_seed(seed)
        delta = (torch.rand(x.shape, generator=g).to(x.device) * 2 - 1) * eps
    else:
        delta = torch.zeros_like(x)
    delta = ((x + delta).clamp(0, 1) - x)
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(x + delta).sum(), delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def pgd_denoiser(denoiser: nn.Module, noisy: torch.Tensor, clean: torch.Tensor, *, eps: float, steps: int = 10,
                 alpha: float | None = None, seed: int = 0) -> torch.Tensor:
    """PGD that maximises the denoiser's squared error against the clean image."""
    for p in denoiser.parameters():
        p.requires_grad_(False)
    return pgd(lambda z: (denoiser(z) - clean).pow(2).flatten(1).sum(1), noisy, eps=eps, steps=steps, alpha=alpha,
               seed=seed)
