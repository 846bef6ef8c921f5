"""The Noise2Noise U-Net (Lehtinen et al. 2018, appendix A.1).

Encoder: conv(c -> 48), then ``levels`` stages of conv 3x3 + max-pool 2, and
one more conv at the bottom, every conv 48 channels. Decoder: per stage,
nearest-neighbour upsampling, concatenation with the encoder's skip, two
3x3 convs of 96 channels; the last stage concatenates the input and goes
96 + c -> 64 -> 32 -> c, the final conv linear. LeakyReLU(0.1) after every
conv but the last, no batch norm. Inputs and outputs live in [-0.5, 0.5]:
``forward`` takes and returns images in [0, 1] and shifts around the net.
The paper's five levels need a side divisible by 32.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reconlab.models import register


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1))


class N2NUNet(nn.Module):
    def __init__(self, channels: int = 3, width: int = 48, levels: int = 5):
        super().__init__()
        if levels < 1:
            raise ValueError("levels must be >= 1")
        self.levels = levels
        w, dec = width, 2 * width
        self.enc0 = _conv(channels, w)
        self.enc = nn.ModuleList(_conv(w, w) for _ in range(levels))  # each followed by a pool
        self.bottom = _conv(w, w)
        # decoder stage k (bottom up): input = upsampled (w at the bottom, else dec) + skip (w)
        self.dec = nn.ModuleList(
            nn.Sequential(_conv((w if k == 0 else dec) + w, dec), _conv(dec, dec)) for k in range(levels - 1))
        self.out = nn.Sequential(_conv((w if levels == 1 else dec) + channels, 64), _conv(64, 32),
                                 nn.Conv2d(32, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = 2 ** self.levels
        if x.shape[-1] % side or x.shape[-2] % side:
            raise ValueError(f"the N2N U-Net with {self.levels} levels needs sides divisible by {side}, "
                             f"got {tuple(x.shape[-2:])}")
        inp = x - 0.5
        h = self.enc0(inp)
        skips = []
        for conv in self.enc:
            h = F.max_pool2d(conv(h), 2)
            skips.append(h)
        h = self.bottom(skips.pop())
        for stage in self.dec:
            h = stage(torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), skips.pop()], 1))
        h = torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), inp], 1)
        return self.out(h) + 0.5


@register
def n2n_unet(channels: int = 3, width: int = 48, levels: int = 5) -> nn.Module:
    """The Noise2Noise denoiser (issue 13)."""
    return N2NUNet(channels=channels, width=width, levels=levels)
