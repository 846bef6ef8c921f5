"""Small CNN classifiers for 28x28 single-channel digits (the thesis's
"lightweight network"). BatchNorm layers hold the running statistics that the
DeepInversion prior matches."""

from __future__ import annotations

import torch
import torch.nn as nn

from reconlab.models import register


class SmallCNN(nn.Module):
    """conv-BN-ReLU-pool x2 (28 -> 14 -> 7), then an MLP head. Input in [0, 1]."""

    def __init__(self, width: int = 16, hidden: int = 128, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.MaxPool2d(2),  # (b, w, 14, 14)
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),  # (b, 2w, 7, 7)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 49, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - 0.5) / 0.5))


class PlainCNN(nn.Module):
    """The thesis's plain small CNN: SmallCNN's layers without BatchNorm and
    without input normalisation (conv-ReLU-pool x2, MLP head; input in [0, 1])."""

    def __init__(self, width: int = 16, hidden: int = 128, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (b, w, 14, 14)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (b, 2w, 7, 7)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 49, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LeNet(nn.Module):
    """LeNet-5's layout (5x5 convs 1->w->16 with max-pooling, FC 400->120->84);
    a verifier of another architecture."""

    def __init__(self, width: int = 6, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # 28 -> 14
                                      nn.Conv2d(width, 16, 5), nn.ReLU(), nn.MaxPool2d(2))  # 14 -> 10 -> 5
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                  nn.Linear(84, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - 0.5) / 0.5))


class MLP(nn.Module):
    """Two hidden layers on the flattened image: a verifier with no convolution."""

    def __init__(self, width: int = 256, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Dropout(0.1),
                                 nn.Linear(width, width), nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 0.5) / 0.5)


class DeepCNN(nn.Module):
    """Three conv stages with two convs each; used as the independent verifier."""

    def __init__(self, width: int = 32, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        layers, c = [], in_channels
        for i, w in enumerate((width, 2 * width, 4 * width)):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                       nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            layers.append(nn.MaxPool2d(2) if i < 2 else nn.AdaptiveAvgPool2d(1))  # 28 -> 14 -> 7 -> 1
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - 0.5) / 0.5))


class ReportCNN(nn.Module):
    """The adversarial-denoising report's MNIST classifier: conv 1->3 (5x5),
    max-pool, conv 3->5 (5x5), max-pool, FC 80->500->10, ReLU (28 -> 24 ->
    12 -> 8 -> 4). No normalisation: inputs in [0, 1] as the report's."""

    def __init__(self, width: int = 3, hidden: int = 500, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 5), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(width, 5, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(80, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register
def classifier_report(width: int = 3, hidden: int = 500, num_classes: int = 10) -> nn.Module:
    """The classifier whose robustness the adversarial-denoising study measures."""
    return ReportCNN(width=width, hidden=hidden, num_classes=num_classes)


@register
def classifier_small(width: int = 16, hidden: int = 128, num_classes: int = 10) -> nn.Module:
    """The classifier that gets inverted (SGD / Adam / Adam+FGSM variants)."""
    return SmallCNN(width=width, hidden=hidden, num_classes=num_classes)


@register
def classifier_verifier(width: int = 24, num_classes: int = 10) -> nn.Module:
    """A wider, deeper, independently seeded classifier that scores inversions."""
    return DeepCNN(width=width, num_classes=num_classes)


@register
def classifier_plain(width: int = 16, hidden: int = 128, num_classes: int = 10) -> nn.Module:
    """The thesis's plain small CNN (no BatchNorm, no input normalisation)."""
    return PlainCNN(width=width, hidden=hidden, num_classes=num_classes)


@register
def classifier_lenet(width: int = 6, num_classes: int = 10) -> nn.Module:
    """LeNet-5 layout: a verifier-ensemble member."""
    return LeNet(width=width, num_classes=num_classes)


@register
def classifier_mlp(width: int = 256, num_classes: int = 10) -> nn.Module:
    """A two-hidden-layer MLP: a verifier-ensemble member."""
    return MLP(width=width, num_classes=num_classes)
