"""DnCNN (Zhang et al. 2017): a residual denoiser, D(x) = x - R(x), with R a
stack of 3x3 conv-BN-ReLU layers. Small by default: it is trained on 2 CPU
cores for the CT study's plug-and-play prior."""

from __future__ import annotations

import torch
import torch.nn as nn

from reconlab.models import register


class DnCNN(nn.Module):
    def __init__(self, channels: int = 1, width: int = 32, depth: int = 8):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.residual = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.residual(x)


@register
def dncnn(channels: int = 1, width: int = 32, depth: int = 8) -> nn.Module:
    return DnCNN(channels=channels, width=width, depth=depth)
