"""The "skip" encoder-decoder of the deep image prior (Ulyanov, Vedaldi &
Lempitsky, CVPR 2018), as in DmitryUlyanov/deep-image-prior ``models/skip.py:skip``
with the arguments ``models/__init__.py:get_net(32, 'skip', 'reflection',
skip_n33d=128, skip_n33u=128, skip_n11=4, num_scales=5, upsample_mode='bilinear')``
that ``denoising.ipynb`` uses for F16 (sigma = 25).

One scale i, applied to x of shape (1, c, h, w); scale i+1 is nested inside
``down``'s output, so the network recurses to the coarsest scale::

    s = act(bn(conv1x1(x)))                                    # skip: (1, skip_i, h, w)
    d = act(bn(conv3x3(act(bn(conv3x3_stride2(x))))))          # down: (1, down_i, h/2, w/2)
    d = upsample2(scale_{i+1}(d))                              # (1, up_{i+1} or down_i, h, w)
    y = act(bn(conv1x1(act(bn(conv3x3(bn(cat(s, d))))))))      # up: (1, up_i, h, w)

then ``sigmoid(conv1x1(y))`` at the finest scale. act = LeakyReLU(0.2);
every conv has a bias and reflection padding (``models/common.py:conv``);
every bn is ``BatchNorm2d`` (``common.py:bn``); downsampling is the stride-2
conv (``downsample_mode='stride'``). Layers are registered in the
reference's order, so the parameters come in the same order.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn as nn

from reconlab.models import register


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, pad: str = "reflection") -> nn.Sequential:
    """``models/common.py:conv`` with ``downsample_mode='stride'``: a padded conv with a bias."""
    p = (kernel - 1) // 2
    if pad == "reflection":
        return nn.Sequential(nn.ReflectionPad2d(p), nn.Conv2d(cin, cout, kernel, stride, padding=0))
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding=p))


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)  # common.py:act('LeakyReLU')


def _crop_cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``models/common.py:Concat``: centre-crop both to the smaller size, then
    concatenate channels. Sizes differ when h or w is not divisible by 2^scales."""
    h, w = min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3])
    a = a[:, :, (a.shape[2] - h) // 2:(a.shape[2] - h) // 2 + h, (a.shape[3] - w) // 2:(a.shape[3] - w) // 2 + w]
    b = b[:, :, (b.shape[2] - h) // 2:(b.shape[2] - h) // 2 + h, (b.shape[3] - w) // 2:(b.shape[3] - w) // 2 + w]
    return torch.cat([a, b], 1)


class SkipScale(nn.Module):
    def __init__(self, cin: int, down: int, up: int, skip: int, inner: "SkipScale | None", inner_out: int,
                 filter_down: int, filter_up: int, filter_skip: int, upsample: str, pad: str, need1x1_up: bool):
        super().__init__()
        self.skip = (nn.Sequential(_conv(cin, skip, filter_skip, pad=pad), nn.BatchNorm2d(skip), _act())
                     if skip else None)
        self.down = nn.Sequential(
            _conv(cin, down, filter_down, 2, pad), nn.BatchNorm2d(down), _act(),
            _conv(down, down, filter_down, pad=pad), nn.BatchNorm2d(down), _act())
        self.inner = inner
        self.upsample = nn.Upsample(scale_factor=2, mode=upsample)
        k = inner_out if inner is not None else down
        layers = [nn.BatchNorm2d(skip + k), _conv(skip + k, up, filter_up, pad=pad), nn.BatchNorm2d(up), _act()]
        if need1x1_up:
            layers += [_conv(up, up, 1, pad=pad), nn.BatchNorm2d(up), _act()]
        self.up = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.down(x)  # (1, down, ceil(h/2), ceil(w/2))
        if self.inner is not None:
            d = self.inner(d)  # (1, up_{i+1}, ceil(h/2), ceil(w/2))
        d = self.upsample(d)  # (1, ., 2 ceil(h/2), 2 ceil(w/2))
        y = _crop_cat(self.skip(x), d) if self.skip is not None else d
        return self.up(y)  # (1, up, h', w')


class SkipNet(nn.Module):
    def __init__(self, in_channels: int = 32, out_channels: int = 3,
                 channels_down: Sequence[int] = (128,) * 5, channels_up: Sequence[int] = (128,) * 5,
                 channels_skip: Sequence[int] = (4,) * 5, filter_size_down: int = 3, filter_size_up: int = 3,
                 filter_skip_size: int = 1, upsample: str = "bilinear", pad: str = "reflection",
                 need1x1_up: bool = True, need_sigmoid: bool = True):
        super().__init__()
        n = len(channels_down)
        if not n or len(channels_up) != n or len(channels_skip) != n:
            raise ValueError(f"channels_down/up/skip need the same non-zero length, got {len(channels_down)}, "
                             f"{len(channels_up)}, {len(channels_skip)}")
        if pad not in ("reflection", "zero"):
            raise ValueError(f"pad must be 'reflection' or 'zero', not {pad!r}")
        if upsample not in ("bilinear", "nearest"):
            raise ValueError(f"upsample must be 'bilinear' or 'nearest', not {upsample!r}")
        cins = [in_channels, *channels_down[:-1]]
        inner = None
        for i in reversed(range(n)):  # build from the coarsest scale outwards
            inner = SkipScale(cins[i], channels_down[i], channels_up[i], channels_skip[i], inner,
                              channels_up[i + 1] if i < n - 1 else channels_down[i],
                              filter_size_down, filter_size_up, filter_skip_size, upsample, pad, need1x1_up)
        self.body = inner
        self.head = nn.Sequential(_conv(channels_up[0], out_channels, 1, pad=pad),
                                  *([nn.Sigmoid()] if need_sigmoid else []))
        self.scales = n

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))  # (1, in, H, W) -> (1, out, H, W)


@register
def dip_skip(in_channels: int = 32, out_channels: int = 3,
             channels_down: Sequence[int] = (128,) * 5, channels_up: Sequence[int] = (128,) * 5,
             channels_skip: Sequence[int] = (4,) * 5,
             upsample: Literal["bilinear", "nearest"] = "bilinear",
             pad: Literal["reflection", "zero"] = "reflection") -> nn.Module:
    """DIP's denoising network: 5 scales of 128 channels, 4-channel skips,
    input depth 32 (noise U[0, 0.1] of the image's size), sigmoid output.
    Image sides should be multiples of 2^scales (the notebook crops to 32)."""
    return SkipNet(in_channels, out_channels, tuple(channels_down), tuple(channels_up), tuple(channels_skip),
                   upsample=upsample, pad=pad)
