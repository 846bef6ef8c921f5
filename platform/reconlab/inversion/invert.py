"""Batched network inversion.

All targets and random restarts form one batch: one forward and one backward
per step. Every per-image term is summed (never averaged over the batch), so
each image follows exactly the trajectory it would follow alone.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from reconlab.inversion.priors import BNStatsPrior, l2, tv


def make_optimizer(name: str, params, lr: float):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.9))  # DeepInversion's betas
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}")


def head_loss(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier head's own objective towards ``target``, per image (b,),
    and the class scores (b, k): cross entropy for a softmax head; for a
    prototype head (``models.prototypes.PrototypeNet``) the loss it was
    trained with towards the target's prototype: (1 - cos)^2 on the sphere,
    the penalised Busemann loss to the target's ideal point in the ball."""
    if hasattr(model, "prototype_loss"):
        e = model(x, embed=True)
        return model.prototype_loss(e, target, reduction="none"), model.scores(e)
    logits = model(x)
    return F.cross_entropy(logits, target, reduction="none"), logits


def inversion_loss(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, tv_weight: float, l2_weight: float,
                   bn_weight: float, bn_prior: BNStatsPrior | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image objective (b,) and logits (b, k)."""
    ctx = bn_prior if (bn_prior is not None and bn_weight > 0) else contextlib.nullcontext()
    with ctx:
        loss, logits = head_loss(model, x, target)
    if tv_weight:
        loss = loss + tv_weight * tv(x)
    if l2_weight:
        loss = loss + l2_weight * l2(x)
    if bn_prior is not None and bn_weight > 0:
        loss = loss + bn_weight * bn_prior.value()
    return loss, logits


def invert(
    model: nn.Module,
    target: torch.Tensor,
    x0: torch.Tensor,
    *,
    steps: int,
    lr: float,
    optimizer: Literal["adam", "sgd"] = "adam",
    tv_weight: float = 0.0,
    l2_weight: float = 0.0,
    bn_weight: float = 0.0,
    per_image_bn: bool = True,
    start_step: int = 0,
    opt_state: dict | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor, object], None] | None = None,
    callback_every: int = 0,
) -> torch.Tensor:
    """x* = argmin_x L(F(x), y) + tv_weight TV(x) + l2_weight ||x||^2 + bn_weight R_bn(x),
    projected onto [0, 1] after every step; L is the head's own objective
    (``head_loss``: cross entropy, or a prototype head's geometry loss).

    model: eval-mode classifier; target: (b,) class indices; x0: (b, c, h, w).
    ``callback(step, x, loss_per_image, optimizer)`` runs every
    ``callback_every`` steps and after the last (``step`` counts finished steps);
    ``start_step``/``opt_state`` resume an interrupted run.
    """
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = x0.detach().clone().requires_grad_(True)
    opt = make_optimizer(optimizer, [x], lr)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    bn = BNStatsPrior(model, per_image=per_image_bn) if bn_weight > 0 else None
    for step in range(start_step + 1, steps + 1):
        loss, _ = inversion_loss(model, x, target, tv_weight=tv_weight, l2_weight=l2_weight,
                                 bn_weight=bn_weight, bn_prior=bn)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        if callback is not None and ((callback_every and step % callback_every == 0) or step == steps):
            callback(step, x.detach(), loss.detach(), opt)
    return x.detach()
