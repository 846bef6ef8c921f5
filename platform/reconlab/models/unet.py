"""The U-Net of Ronneberger et al. (2015) as Hauptmann & Adler use it: same-size
output (padded 3x3 convolutions), inputs linearly rescaled to [0, 1).

    level l (0..depth-1): [conv3x3 -> BN -> ReLU] x 2 with width * 2^l channels,
    2x2 max-pool down; transposed 2x2 conv up, concatenate the skip, two convs;
    a 1x1 conv to the output channels.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from reconlab.models import register


def _block(cin: int, cout: int, bn: bool) -> nn.Sequential:
    layers = []
    for c in (cin, cout):
        layers += [nn.Conv2d(c, cout, 3, padding=1, bias=not bn)]
        layers += [nn.BatchNorm2d(cout)] if bn else []
        layers += [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    def __init__(self, in_channels: int = 12, out_channels: int = 3, width: int = 32, depth: int = 4,
                 batch_norm: bool = True, input_scale: float = 255.0 / 256.0):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError("depth and width must be >= 1")
        self.input_scale = input_scale  # [0, 1] -> [0, 1): the paper's linear rescaling
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_channels, widths[0], batch_norm)])
        self.down.extend(_block(widths[i], widths[i + 1], batch_norm) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        self.dec = nn.ModuleList(_block(2 * widths[i], widths[i], batch_norm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2**self.depth or x.shape[-2] % 2**self.depth:
            raise ValueError(f"image size {tuple(x.shape[-2:])} must be divisible by 2^depth = {2**self.depth}")
        h = x * self.input_scale
        skips = []
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else self.pool(h))
            skips.append(h)
        skips.pop()
        for up, dec in zip(self.up, self.dec):
            h = dec(torch.cat([skips.pop(), up(h)], 1))
        return self.head(h)


@register
def unet(in_channels: int = 12, out_channels: int = 3, width: int = 32, depth: int = 4,
         batch_norm: bool = True) -> nn.Module:
    """The paper's U-Net (cipherimage -> RGB)."""
    return UNet(in_channels, out_channels, width, depth, batch_norm)
