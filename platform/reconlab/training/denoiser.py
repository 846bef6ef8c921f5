"""A Gaussian denoiser trained with Ray Train (DDP; GPUs when present): the
learned prior of the CT study's plug-and-play reconstruction.

Each step draws a clean batch and, per image, sigma ~ U[0, sigma_max]; the
loss is the mean squared error of D(x + sigma n) against x. The noise comes
from a generator seeded by (seed, epoch, rank), so a run is reproducible.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class DenoiserSpec:
    """Everything that determines a trained denoiser (hashed for reuse)."""

    builder: str = "dncnn"
    channels: int = 1
    width: int = 32
    depth: int = 8
    sigma_max: float = 0.2  # on the [0, 1] scale
    lr: float = 1e-3
    epochs: int = 8
    batch_size: int = 32  # global batch, split over the workers
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.depth < 2 or self.width < 1:
            raise ValueError("epochs, batch_size, lr, width must be positive and depth >= 2")
        if not 0 < self.sigma_max <= 1:
            raise ValueError("sigma_max must be in (0, 1]")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def model_kwargs(self) -> dict:
        return {"channels": self.channels, "width": self.width, "depth": self.depth}


def noisy(x: torch.Tensor, sigma_max: float, g: torch.Generator) -> torch.Tensor:
    sigma = torch.rand(x.shape[0], 1, 1, 1, generator=g) * sigma_max
    return x + sigma * torch.randn(x.shape, generator=g)


@torch.no_grad()
def test_psnr(model, x: torch.Tensor, sigma: float, seed: int = 0, device="cpu") -> tuple[float, float]:
    """(noisy, denoised) mean PSNR at a fixed sigma on ``x``."""
    from reconlab.metrics import psnr

    model.eval()
    g = torch.Generator().manual_seed(seed)
    xn = x + sigma * torch.randn(x.shape, generator=g)
    out = torch.cat([model(xn[i:i + 256].to(device)).cpu() for i in range(0, len(x), 256)])
    return psnr(xn.clamp(0, 1), x).mean().item(), psnr(out.clamp(0, 1), x).mean().item()


def train_epoch(model, opt, x, spec: DenoiserSpec, epoch: int, rank: int, world: int, device) -> float:
    g = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
    perm = torch.randperm(len(x), generator=g)
    gn = torch.Generator().manual_seed((spec.seed * 100_003 + epoch) * 64 + rank)
    model.train()
    total, count = 0.0, 0
    for start in range(0, len(perm) - spec.batch_size + 1, spec.batch_size):
        xb = x[perm[start:start + spec.batch_size][rank::world]]
        xn = noisy(xb, spec.sigma_max, gn)
        loss = F.mse_loss(model(xn.to(device)), xb.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(xb)
        count += len(xb)
    return total / max(count, 1)


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train.torch

    from reconlab.models import build
    from reconlab.training.launch import finite_loss, report_model, worker_start

    spec, rank, world, ds = worker_start(config, DenoiserSpec)
    model = ray.train.torch.prepare_model(build(spec.builder, **spec.model_kwargs()))
    device = ray.train.torch.get_device()
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, spec.epochs)
    x_test = ds.x_test[:200]
    for epoch in range(spec.epochs):
        loss = finite_loss(train_epoch(model, opt, ds.x_train, spec, epoch, rank, world, device), epoch)
        sched.step()
        inner = getattr(model, "module", model)
        before, after = test_psnr(inner, x_test, spec.sigma_max / 2, device=device)
        report_model({"epoch": epoch, "train_loss": loss, "test_psnr_noisy": before, "test_psnr": after},
                     inner if epoch == spec.epochs - 1 else None, spec)


def fit_denoiser(spec: DenoiserSpec, *, dataset: str, data_root: str | None = None, num_workers: int = 1,
                 use_gpu: bool | None = None, storage_path: str, name: str, callbacks: list | None = None,
                 threads: int | None = None):
    """Train one denoiser with Ray Train (``training.launch.fit_torch``); returns the Ray Train Result."""
    from reconlab.training.launch import fit_torch

    return fit_torch(train_loop_per_worker, spec, dataset=dataset, data_root=data_root, num_workers=num_workers,
                     use_gpu=use_gpu, storage_path=storage_path, name=name, callbacks=callbacks, threads=threads)
