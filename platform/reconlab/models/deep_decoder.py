"""The deep decoder of Heckel & Hand (ICLR 2019), as in their reference code
reinhardh/supplement_deep_decoder, ``include/decoder.py:decodernw`` with the
defaults of ``denoising.ipynb:denoise`` (``num_channels_up=[k]*5``, so 6 blocks).

    B_0 = z                                    # (1, k, H/2^(d-1), W/2^(d-1)), z ~ U[0, 0.1]
    block i = 1..d:
        B_i = cn(ReLU(U_i(B_{i-1} C_i)))       # C_i: 1x1 conv k->k, no bias
                                               # U_i: bilinear x2, none after the last block
                                               # cn: BatchNorm2d(k, affine=True) on the single image
    x = sigmoid(B_d C_out)                     # C_out: 1x1 conv k->out, no bias

Everything is pixel-wise except the fixed upsampling, so there are no
convolutions to learn. Every conv in ``decodernw`` is built by its ``conv``
helper with ``bias=False``, the output conv included; its reflection padding
pads 0 pixels for a 1x1 kernel and is left out here. BatchNorm on a batch of
one image normalises each channel over its pixels: that is the paper's
channel normalisation, so the network stays in train mode while it is fitted
and evaluated (the reference never calls ``eval()``). ``nn.Upsample(scale_factor=2,
mode='bilinear')`` is the reference's call; its align_corners=False is the
default of every PyTorch since 0.4.1.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from reconlab.models import register


def num_parameters(k: int, depth: int, out_channels: int = 3) -> int:
    """N = d k^2 + 2 d k + k_out k: d 1x1 convs k->k without bias, d affine
    channel normalisations (a scale and a shift per channel) and the 1x1
    output conv k->k_out without bias (equal to ``sum(p.numel())`` of the
    built network; tested)."""
    return depth * k * k + 2 * depth * k + out_channels * k


def input_shape(k: int, depth: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Shape (1, k, H/2^(depth-1), W/2^(depth-1)) of the fixed input: the
    network upsamples depth-1 times (512x512 with depth 6: 16x16, as
    ``include/fit.py:fit`` computes it with ``2**len(num_channels)``)."""
    f = 2 ** (depth - 1)
    if height % f or width % f:
        raise ValueError(f"image size {height}x{width} must be divisible by 2^(depth-1) = {f}")
    return (1, k, height // f, width // f)


def input_noise(shape: tuple[int, ...], seed: int, scale: float = 0.1) -> torch.Tensor:
    """The fixed random input z ~ U[0, scale), scale 1/10 in both references
    (``include/fit.py:fit``: ``uniform_()`` then ``*= 1./10``; deep-image-prior
    ``utils/common_utils.py:get_noise(..., noise_type='u', var=1./10)``),
    drawn from its own seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * scale


class DeepDecoder(nn.Sequential):
    """``decodernw`` as an ``nn.Sequential`` with the same layer order (so the
    same parameter order): [conv, (upsample), ReLU, BN] x depth, conv, sigmoid.
    With ``upsample_first=False`` the upsampling comes before the conv in
    blocks 2..d (the variant ``denoising.ipynb`` runs for 10,000 iterations)."""

    def __init__(self, k: int = 128, depth: int = 6, out_channels: int = 3,
                 upsample: Literal["bilinear", "nearest"] = "bilinear", upsample_first: bool = True):
        if k < 1 or depth < 1 or out_channels < 1:
            raise ValueError("k, depth and out_channels must be >= 1")
        if upsample not in ("bilinear", "nearest"):
            raise ValueError(f"upsample must be 'bilinear' or 'nearest', not {upsample!r}")
        layers: list[nn.Module] = []
        for i in range(depth):
            up = i != depth - 1 if upsample_first else i != 0  # depth - 1 upsamplings either way
            conv = nn.Conv2d(k, k, 1, bias=False)  # (1, k, h, w) -> (1, k, h, w)
            if up and not upsample_first:
                layers.append(nn.Upsample(scale_factor=2, mode=upsample))
            layers.append(conv)
            if up and upsample_first:
                layers.append(nn.Upsample(scale_factor=2, mode=upsample))  # (1, k, 2h, 2w)
            layers += [nn.ReLU(), nn.BatchNorm2d(k, affine=True)]
        layers += [nn.Conv2d(k, out_channels, 1, bias=False), nn.Sigmoid()]  # (1, out, H, W) in (0, 1)
        super().__init__(*layers)
        self.k, self.depth = k, depth


@register
def deep_decoder(k: int = 128, depth: int = 6, out_channels: int = 3,
                 upsample: Literal["bilinear", "nearest"] = "bilinear",
                 upsample_first: bool = True) -> nn.Module:
    """The deep decoder with k channels in each of ``depth`` blocks. Paper and
    reference defaults: k = 128 for denoising (``compression.ipynb`` uses 64
    and 128), depth 6, bilinear upsampling first. Its input comes from ``input_shape`` and
    ``input_noise``."""
    return DeepDecoder(k, depth, out_channels, upsample, upsample_first)
