"""B deep decoders fitted as one network: the GPU way to fit many images.

A deep decoder is 1x1 convs, channel normalisation and fixed pointwise or
upsampling layers, so B of them stack into one network along the channel
axis (one image in, its channels the B decoders' channels):

    conv  k->k (B of them)   ->  Conv2d(B k, B k, 1, groups=B)     weights concatenated
    BatchNorm2d(k) (B)       ->  BatchNorm2d(B k)                  each channel still over its own pixels
    upsample / ReLU / sigmoid -> the same layer                    acts per channel
    z_b (1, k, h, w)         ->  z = cat_b z_b (1, B k, h, w)
    output (1, B c, H, W)    ->  (B, c, H, W)

The loss is the sum of the B images' MSEs, so each decoder's gradient is its
own image's, and Adam is per weight: the batched fit is the B separate fits
(to float rounding; tested), in one kernel launch per layer instead of B.
On a small CPU the B fits as separate processes are as fast or faster
(``bench/untrained_fit.py --batched 8``); on a GPU one 1x1 conv on k channels
leaves most of the device idle, which is what batching fills.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from reconlab.untrained.fit import BEST_FACTOR


def _shape(layer: nn.Module) -> tuple | None:
    weight = getattr(layer, "weight", None)
    return None if weight is None else tuple(weight.shape)


def stack(decoders: list[nn.Sequential]) -> nn.Sequential:
    """One network computing the B decoders (same architecture, their own
    weights copied) on the channel-concatenated inputs."""
    if not decoders:
        raise ValueError("need at least one decoder")
    if not all(isinstance(d, nn.Sequential) for d in decoders):
        raise ValueError(f"cannot stack a {type(decoders[0]).__name__}: only nn.Sequential deep decoders stack")
    if len({len(d) for d in decoders}) != 1:
        raise ValueError("the decoders must share one architecture (they differ in depth)")
    b = len(decoders)
    layers = []
    for parts in zip(*(list(d) for d in decoders)):
        first = parts[0]
        if any(type(p) is not type(first) or _shape(p) != _shape(first) for p in parts):
            raise ValueError("the decoders must share one architecture")
        if isinstance(first, nn.Conv2d):
            if first.kernel_size != (1, 1) or first.groups != 1 or first.bias is not None:
                raise ValueError("only bias-free 1x1 convolutions stack")
            conv = nn.Conv2d(b * first.in_channels, b * first.out_channels, 1, groups=b, bias=False)
            with torch.no_grad():
                conv.weight.copy_(torch.cat([p.weight for p in parts]))  # (B out, in, 1, 1)
            layers.append(conv)
        elif isinstance(first, nn.BatchNorm2d):
            bn = nn.BatchNorm2d(b * first.num_features, eps=first.eps, momentum=first.momentum, affine=True)
            with torch.no_grad():
                bn.weight.copy_(torch.cat([p.weight for p in parts]))
                bn.bias.copy_(torch.cat([p.bias for p in parts]))
            layers.append(bn)
        elif isinstance(first, (nn.Upsample, nn.ReLU, nn.Sigmoid)):
            layers.append(first)  # acts on each channel alone
        else:
            raise ValueError(f"cannot stack a {type(first).__name__}")
    return nn.Sequential(*layers)


@dataclasses.dataclass
class BatchedFitResult:
    """(B, c, H, W) images; ``best_*`` per image by its own fitting loss
    (the ``find_best`` rule of ``fit``); ``losses`` (iterations, B)."""

    image: torch.Tensor
    best_image: torch.Tensor
    best_iteration: list[int]
    best_loss: list[float]
    losses: torch.Tensor


def fit_batched(model: nn.Module, noisy: torch.Tensor, z: torch.Tensor, *, iterations: int,
                lr: float) -> BatchedFitResult:
    """Fit a ``stack``ed network of B decoders to ``noisy`` (B, c, H, W),
    decoder b to image b; z: (1, B k, h, w). Step t is ``fit``'s step t for
    every image at once."""
    b, c, h, w = noisy.shape
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    model.train()
    noisy = noisy.detach()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = torch.empty(iterations, b, dtype=torch.float64)
    best_loss = [float("inf")] * b
    best_iteration = [0] * b
    best_image = torch.zeros_like(noisy)
    for t in range(1, iterations + 1):
        out = model(z).reshape(b, c, h, w)  # (1, B c, H, W): image b is channels b c .. (b+1) c - 1
        per_image = ((out - noisy) ** 2).mean(dim=(1, 2, 3))  # (B,)
        opt.zero_grad(set_to_none=True)
        per_image.sum().backward()
        opt.step()
        values = per_image.detach().double().cpu()
        losses[t - 1] = values
        out = out.detach()
        for i, v in enumerate(values.tolist()):
            if best_loss[i] > BEST_FACTOR * v:
                best_loss[i], best_iteration[i] = v, t
                best_image[i] = out[i]
    with torch.no_grad():
        final = model(z).reshape(b, c, h, w)
    return BatchedFitResult(image=final, best_image=best_image, best_iteration=best_iteration, best_loss=best_loss,
                            losses=losses)
