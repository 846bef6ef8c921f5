"""Noise2Noise denoisers (Lehtinen et al. 2018) trained with Ray Train (DDP;
GPUs when present), as the adversarial-denoising study uses them.

Each step draws a batch of clean images x and makes the input n1(x) and
the target, n2(x) (noisy -> noisy, the Noise2Noise claim) or x itself
(noisy -> clean), with two independent seeded noise streams of the same
model (``operators.noise``). Losses: L2 (Gaussian), L1 (Poisson) and the
annealed L0 (impulse): (|f(x) - y| + 1e-8)^gamma with gamma going linearly
from 2 to 0 over the run, really annealed. Adam (beta 0.9, 0.99) with the
paper's cos² ramp-down of the learning rate over the last 30 % of steps.

``adv_eps`` > 0 trains a defended denoiser: on ``adv_share`` of each batch,
the input is replaced by a PGD attack (``attacks.pgd``, L-inf budget
``adv_eps``, ``adv_steps`` steps) that maximises the loss against the
target, computed from the current weights (adversarial training, Madry et
al. 2018).

Every epoch reports noisy and denoised test PSNR/SSIM at the evaluation
setting (Gaussian sigma = 25/255, Poisson at exactly 100 photons, impulse
p = 0.5 by default) on a fixed, seeded noisy copy of the test images, the
same for every run; the last epoch also attacks the test images with PGD
at ``attack_eps`` and stores per-image scores for paired comparisons.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from typing import Literal

import torch

NOISES = ("gaussian", "poisson", "impulse_n2n", "impulse_gaussian")
LOSSES = ("l2", "l1", "l0")
# (training level, evaluation level): Gaussian sigma_max / sigma, Poisson mean photons, impulse p
DEFAULT_LEVELS = {"gaussian": (50 / 255, 25 / 255), "poisson": (100.0, 100.0), "impulse_n2n": (0.5, 0.5),
                  "impulse_gaussian": (0.5, 0.5)}
RESULT = "result.pt"


@dataclasses.dataclass(frozen=True)
class N2NSpec:
    """Everything that determines a trained denoiser (hashed for reuse)."""

    builder: str = "n2n_unet"
    channels: int = 3
    width: int = 48
    levels: int = 5
    noise: Literal["gaussian", "poisson", "impulse_n2n", "impulse_gaussian"] = "gaussian"
    level: float = 0.0  # training: gaussian sigma_max, poisson mean photons, impulse p (0: DEFAULT_LEVELS)
    eval_level: float = 0.0  # evaluation: gaussian sigma, poisson photons (exact), impulse p (0: DEFAULT_LEVELS)
    dispersion: float = 75.0  # poisson: the negative binomial's dispersion of the photon count (training)
    impulse_sigma: float = 0.5  # impulse_gaussian: the std of the Gaussian on the hit pixels
    loss: Literal["l2", "l1", "l0"] = "l2"
    target: Literal["noisy", "clean"] = "noisy"
    lr: float = 1e-3
    rampdown: float = 0.3  # the share of steps with the cos² ramp-down
    batch_size: int = 32  # global, split over the workers
    epochs: int = 12
    epoch_images: int = 4096  # training images drawn per epoch (0: all)
    adv_eps: float = 0.0  # > 0: PGD adversarial training with this L-inf budget
    adv_steps: int = 3
    adv_share: float = 0.5
    attack_eps: tuple[float, ...] = (2 / 255, 4 / 255, 8 / 255)  # PGD at the end, against the clean image
    attack_steps: int = 10
    eval_images: int = 0  # test images scored (0: all)
    seed: int = 0

    def __post_init__(self):
        if self.noise not in NOISES:
            raise ValueError(f"unknown noise {self.noise!r} (known: {', '.join(NOISES)})")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r} (known: {', '.join(LOSSES)})")
        if self.target not in ("noisy", "clean"):
            raise ValueError(f"unknown target {self.target!r} (known: noisy, clean)")
        if min(self.width, self.levels, self.batch_size, self.epochs, self.attack_steps) < 1 or self.adv_steps < 0:
            raise ValueError("width, levels, batch_size, epochs and attack_steps must be >= 1, adv_steps >= 0")
        if self.epoch_images < 0 or self.eval_images < 0:
            raise ValueError("epoch_images and eval_images must be >= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)) or not 0 <= self.rampdown <= 1:
            raise ValueError("lr must be positive and rampdown in [0, 1]")
        if not (0 <= self.adv_eps <= 1 and 0 <= self.adv_share <= 1) or any(not 0 <= e <= 1 for e in self.attack_eps):
            raise ValueError("adv_eps, adv_share and attack_eps must be in [0, 1]")
        if self.level < 0 or self.eval_level < 0 or self.dispersion < 0 or self.impulse_sigma < 0:
            raise ValueError("level, eval_level, dispersion and impulse_sigma must be >= 0")
        if self.noise.startswith("impulse") and max(self.level, self.eval_level) > 1:
            raise ValueError("an impulse level is a probability: <= 1")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def model_kwargs(self) -> dict:
        return {"channels": self.channels, "width": self.width, "levels": self.levels}

    def levels_used(self) -> tuple[float, float]:
        lv, ev = DEFAULT_LEVELS[self.noise]
        return self.level or lv, self.eval_level or ev


def make_noise(spec: N2NSpec, seed: int, evaluation: bool = False):
    """The spec's noise model with its own seeded stream (training or evaluation setting)."""
    from reconlab.operators import noise as nz

    train_level, eval_level = spec.levels_used()
    if spec.noise == "gaussian":
        return (nz.GaussianNoise(eval_level, eval_level, seed=seed) if evaluation
                else nz.GaussianNoise(train_level, seed=seed))
    if spec.noise == "poisson":
        return (nz.PoissonNoise(eval_level, 0.0, seed=seed) if evaluation
                else nz.PoissonNoise(train_level, spec.dispersion, seed=seed))
    p = eval_level if evaluation else train_level
    if spec.noise == "impulse_n2n":
        return nz.ImpulseN2N(p, seed=seed)
    return nz.ImpulseGaussian(p, spec.impulse_sigma, seed=seed)


def l0_gamma(progress: float) -> float:
    """The annealed L0's exponent: 2 at the start, linearly to 0 at the end."""
    return 2.0 * (1.0 - min(max(progress, 0.0), 1.0))


def loss_fn(kind: str, pred: torch.Tensor, target: torch.Tensor, progress: float) -> torch.Tensor:
    """Per-image losses (b,): L2, L1 or the annealed L0 at ``progress`` in [0, 1]."""
    d = (pred - target).flatten(1)
    if kind == "l2":
        return d.pow(2).mean(1)
    if kind == "l1":
        return d.abs().mean(1)
    return (d.abs() + 1e-8).pow(l0_gamma(progress)).mean(1)


def rampdown_lr(lr: float, step: int, total: int, share: float) -> float:
    """Noise2Noise's schedule: constant, then lr * (0.5 + 0.5 cos(pi t))² over the last ``share`` of the steps."""
    start = total * (1 - share)
    if share <= 0 or step < start:
        return lr
    t = (step - start) / (share * total)
    return lr * (0.5 + 0.5 * math.cos(math.pi * min(t, 1.0))) ** 2


def steps_per_epoch(spec: N2NSpec, n_train: int) -> int:
    n = min(spec.epoch_images or n_train, n_train)
    return n // spec.batch_size


def adversarial_inputs(model, noisy: torch.Tensor, target: torch.Tensor, spec: N2NSpec, progress: float,
                       seed: int) -> torch.Tensor:
    """PGD under the L-inf budget ``adv_eps`` against the training loss; only
    the input gradient is taken, the weights' gradients are untouched."""
    from reconlab.attacks.denoiser import pgd

    return pgd(lambda z: loss_fn(spec.loss, model(z), target, progress), noisy.clamp(0, 1), eps=spec.adv_eps,
               steps=spec.adv_steps, seed=seed)


def train_epoch(model, opt, x: torch.Tensor, spec: N2NSpec, epoch: int, rank: int, world: int, device) -> tuple[float, int]:
    """One epoch of ``epoch_images`` seeded draws; returns (mean loss, images this rank saw)."""
    g = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
    perm = torch.randperm(len(x), generator=g)
    n_steps = steps_per_epoch(spec, len(x))
    total_steps = n_steps * spec.epochs
    inp_noise = make_noise(spec, (spec.seed * 1_000_003 + epoch) * 64 + rank)
    tgt_noise = make_noise(spec, (spec.seed * 1_000_003 + epoch) * 64 + 32 + rank)
    inner = getattr(model, "module", model)
    model.train()
    total, count = 0.0, 0
    for i in range(n_steps):
        step = epoch * n_steps + i
        progress = step / max(total_steps - 1, 1)
        for group in opt.param_groups:
            group["lr"] = rampdown_lr(spec.lr, step, total_steps, spec.rampdown)
        xb = x[perm[i * spec.batch_size:(i + 1) * spec.batch_size][rank::world]].to(device)
        noisy = inp_noise(xb)
        target = tgt_noise(xb) if spec.target == "noisy" else xb
        if spec.adv_eps > 0 and spec.adv_steps > 0:
            k = round(spec.adv_share * len(xb))
            if k:
                adv = adversarial_inputs(inner, noisy[:k], target[:k], spec, progress, seed=step * 64 + rank)
                noisy = torch.cat([adv, noisy[k:]])
        loss = loss_fn(spec.loss, model(noisy), target, progress).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(xb)
        count += len(xb)
    return total / max(count, 1), count


def eval_inputs(spec: N2NSpec, x_test: torch.Tensor, seed: int) -> torch.Tensor:
    """The fixed noisy test images (seeded: the same for every run with this noise and level)."""
    return make_noise(spec, seed, evaluation=True)(x_test)


@torch.no_grad()
def denoise(model, x: torch.Tensor, batch_size: int = 128, device="cpu") -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def scores(out: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    from reconlab.metrics import psnr, ssim

    out = out.clamp(0, 1)
    return {"psnr": psnr(out, truth), "ssim": ssim(out, truth)}


def evaluate(model, noisy: torch.Tensor, truth: torch.Tensor, device="cpu",
             noisy_scores: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Per-image scores of the noisy input and of the denoised one
    (``noisy_scores``: the noisy input's, computed once by the caller)."""
    s_in = noisy_scores if noisy_scores is not None else scores(noisy, truth)
    s_out = scores(denoise(model, noisy, device=device), truth)
    return {"noisy_psnr": s_in["psnr"], "noisy_ssim": s_in["ssim"], "psnr": s_out["psnr"], "ssim": s_out["ssim"]}


def attack_scores(model, noisy: torch.Tensor, truth: torch.Tensor, eps_list, steps: int, seed: int,
                  device="cpu", batch_size: int = 128) -> dict[float, torch.Tensor]:
    """eps -> per-image PSNR of D(PGD(noisy)) against the clean image."""
    from reconlab.attacks.denoiser import pgd_denoiser
    from reconlab.metrics import psnr

    model.eval()
    out = {}
    for e in eps_list:
        parts = []
        for i in range(0, len(noisy), batch_size):
            nb, tb = noisy[i:i + batch_size].to(device).clamp(0, 1), truth[i:i + batch_size].to(device)
            adv = pgd_denoiser(model, nb, tb, eps=e, steps=steps, seed=seed + i)
            with torch.no_grad():
                parts.append(psnr(model(adv).clamp(0, 1), tb).cpu())
        out[e] = torch.cat(parts)
    for p in model.parameters():
        p.requires_grad_(True)
    return out


def eps_key(e: float) -> str:
    """``pgd_psnr_4`` for eps = 4/255."""
    return f"{round(e * 255, 2):g}"


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker; resumes from the run's latest checkpoint."""
    import ray.train
    import ray.train.torch

    from reconlab.models import build, save_model_dir
    from reconlab.training.launch import resume, worker_start

    spec, rank, world, ds = worker_start(config, N2NSpec)
    eval_seed = config.get("eval_seed", 0)
    model = build(spec.builder, **spec.model_kwargs())
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr, betas=(0.9, 0.99))
    start = resume(model, opt)  # a retried or resumed run continues, it does not repeat epochs
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    inner = getattr(model, "module", model)
    x_test = ds.x_test[:spec.eval_images] if spec.eval_images else ds.x_test
    noisy_test = eval_inputs(spec, x_test, eval_seed)
    noisy_scores = scores(noisy_test, x_test)  # fixed inputs: scored once, not every epoch
    for epoch in range(start, spec.epochs):
        t0 = time.perf_counter()
        loss, seen = train_epoch(model, opt, ds.x_train, spec, epoch, rank, world, device)
        dt = time.perf_counter() - t0
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss} at epoch {epoch}")
        s = evaluate(inner, noisy_test, x_test, device, noisy_scores)
        metrics = {"step": epoch + 1, "epoch": epoch, "train_loss": loss, "epoch_seconds": dt,
                   "images_per_s": seen * world / dt, **{f"test_{k}": v.mean().item() for k, v in s.items()}}
        metrics["psnr_gain"] = metrics["test_psnr"] - metrics["test_noisy_psnr"]
        last = epoch == spec.epochs - 1
        result = None
        if last:
            attacked = attack_scores(inner, noisy_test, x_test, spec.attack_eps, spec.attack_steps, eval_seed, device)
            for e, p in attacked.items():
                metrics[f"pgd_psnr_{eps_key(e)}"] = p.mean().item()
                metrics[f"pgd_drop_{eps_key(e)}"] = metrics["test_psnr"] - p.mean().item()
            result = {"per_image": s, "pgd": {eps_key(e): p for e, p in attacked.items()},
                      "examples": torch.stack([x_test[:8], noisy_test[:8].clamp(0, 1),
                                               denoise(inner, noisy_test[:8], device=device).clamp(0, 1)])}
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                save_model_dir(tmp, inner, spec)
                torch.save({"optimizer": opt.state_dict(), "epoch": epoch}, os.path.join(tmp, "train_state.pt"))
                if result is not None:
                    torch.save(result, os.path.join(tmp, RESULT))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)


def fit_n2n(spec: N2NSpec, *, dataset: str = "natural", data_root: str | None = None, num_workers: int = 1,
            use_gpu: bool | None = None, storage_path: str, name: str, callbacks: list | None = None,
            threads: int | None = None, cpus_per_worker: int = 1, eval_seed: int = 0):
    """Train one denoiser with Ray Train (``training.launch.fit_torch``);
    returns the Ray Train Result. Running it again with the same ``name`` and
    ``storage_path`` resumes."""
    from reconlab.training.launch import fit_torch

    return fit_torch(train_loop_per_worker, spec, dataset=dataset, data_root=data_root, num_workers=num_workers,
                     use_gpu=use_gpu, storage_path=storage_path, name=name, callbacks=callbacks,
                     threads=threads or cpus_per_worker, cpus_per_worker=cpus_per_worker,
                     config={"eval_seed": eval_seed})
