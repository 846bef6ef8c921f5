from __future__ import annotations

import dataclasses
import hashlib

import torch


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """Images in [0, 1] as float32 (N, C, H, W) and int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    def fingerprint(self) -> str:
        """Short content hash: a logged model is reused only on the same data."""
        h = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def class_means(self, split: str = "test") -> torch.Tensor:
        """(num_classes, C, H, W): mean image of each class."""
        x, y = (self.x_test, self.y_test) if split == "test" else (self.x_train, self.y_train)
        return torch.stack([x[y == c].mean(0) for c in range(self.num_classes)])
