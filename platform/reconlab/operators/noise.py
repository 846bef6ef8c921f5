"""Noise models as torch modules (issue 13), each drawing from its own seeded
generator on the input's device, so ``nn.Sequential(operator, noise)``
composes them with other operators and a run is reproducible.

Images are (b, c, h, w) in [0, 1]. A "pixel" is one spatial position, all
channels together. ``reseed(seed)`` restarts a module's stream.

- ``GaussianNoise``: x + sigma n with sigma ~ U[sigma_min, sigma_max] per image
  (Noise2Noise: sigma ~ U[0, 50/255]); unclipped unless ``clamp``.
- ``PoissonNoise``: photons per pixel P ~ NegativeBinomial(mean, dispersion)
  per image (Noise2Noise's Poisson model), y = Poisson(P x) / P.
- ``ImpulseN2N``: Noise2Noise's random-valued impulse noise: each pixel is
  replaced by a uniform random colour with probability p.
- ``ImpulseGaussian``: the adversarial-denoising report's "impulse" noise:
  zero-mean Gaussian noise (std sigma) added to each pixel with probability p.
- ``PixelReplacement``: the report's classifier noise: exactly
  round(fraction h w) pixels per image, chosen uniformly, replaced by
  N(0.5, 0.2²) samples clamped to [0, 1].
- ``SaltAndPepper``: exactly round(fraction h w) pixels per image set to 0 or
  1 with equal probability.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class SeededNoise(nn.Module):
    """A noise module with its own generator, created on the first input's device."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed
        self._gen: torch.Generator | None = None

    def reseed(self, seed: int) -> None:
        self.seed, self._gen = seed, None

    def generator(self, device) -> torch.Generator:
        device = torch.device(device)
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen

    def rand(self, shape, like: torch.Tensor) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator(like.device), device=like.device, dtype=like.dtype)

    def randn(self, shape, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator(like.device), device=like.device, dtype=like.dtype)

    def pixel_mask(self, x: torch.Tensor, fraction: float) -> torch.Tensor:
        """(b, 1, h, w) boolean: exactly round(fraction h w) pixels per image,
        uniformly chosen (ranks of uniform draws)."""
        b, _, h, w = x.shape
        k = round(fraction * h * w)
        ranks = self.rand((b, h * w), x).argsort(1).argsort(1)
        return (ranks < k).view(b, 1, h, w)


def _check_fraction(name: str, v: float) -> None:
    if not (0 <= v <= 1 and math.isfinite(v)):
        raise ValueError(f"{name} must be in [0, 1], not {v!r}")


class GaussianNoise(SeededNoise):
    def __init__(self, sigma_max: float, sigma_min: float = 0.0, clamp: bool = False, seed: int = 0):
        super().__init__(seed)
        if not 0 <= sigma_min <= sigma_max:
            raise ValueError("need 0 <= sigma_min <= sigma_max")
        self.sigma_min, self.sigma_max, self.clamp = sigma_min, sigma_max, clamp

    def sigmas(self, x: torch.Tensor) -> torch.Tensor:
        u = self.rand((x.shape[0], 1, 1, 1), x)
        return self.sigma_min + (self.sigma_max - self.sigma_min) * u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.sigmas(x) * self.randn(x.shape, x)
        return y.clamp(0, 1) if self.clamp else y


class PoissonNoise(SeededNoise):
    """Photon counts per image from a negative binomial (Gamma-Poisson) of the
    given mean and dispersion r (variance mean + mean²/r); ``dispersion=0``:
    exactly ``mean`` photons."""

    def __init__(self, mean: float, dispersion: float = 0.0, seed: int = 0):
        super().__init__(seed)
        if mean <= 0 or dispersion < 0:
            raise ValueError("need mean > 0 and dispersion >= 0")
        self.mean, self.dispersion = mean, dispersion

    def photons(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if not self.dispersion:
            return torch.full((b, 1, 1, 1), float(self.mean), device=x.device, dtype=x.dtype)
        g = self.generator(x.device)
        # the negative binomial as a Gamma-Poisson mixture, both from the seeded stream
        r = torch.full((b,), float(self.dispersion), device=x.device, dtype=torch.float64)
        lam = _gamma(r, g) * (self.mean / self.dispersion)
        k = torch.poisson(lam, generator=g)
        return k.clamp_min(1).to(x.dtype).view(b, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.photons(x)
        return torch.poisson((x.clamp_min(0) * p).double(), generator=self.generator(x.device)).to(x.dtype) / p


def _gamma(shape: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Gamma(shape, 1) samples from a seeded generator (Marsaglia & Tsang 2000;
    shape >= 1, else boosted by U^(1/shape))."""
    boost = torch.ones_like(shape)
    small = shape < 1
    if small.any():
        u = torch.rand(shape.shape, generator=g, device=shape.device, dtype=shape.dtype)
        boost = torch.where(small, u.pow(1 / shape), boost)
        shape = torch.where(small, shape + 1, shape)
    d = shape - 1 / 3
    c = 1 / torch.sqrt(9 * d)
    out = torch.empty_like(shape)
    todo = torch.ones_like(shape, dtype=torch.bool)
    while todo.any():
        z = torch.randn(shape.shape, generator=g, device=shape.device, dtype=shape.dtype)
        u = torch.rand(shape.shape, generator=g, device=shape.device, dtype=shape.dtype)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * z**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        take = todo & ok
        out = torch.where(take, d * v, out)
        todo = todo & ~ok
    return out * boost


class ImpulseN2N(SeededNoise):
    def __init__(self, p: float, seed: int = 0):
        super().__init__(seed)
        _check_fraction("p", p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hit = self.rand((b, 1, h, w), x) < self.p
        return torch.where(hit, self.rand(x.shape, x), x)


class ImpulseGaussian(SeededNoise):
    def __init__(self, p: float, sigma: float, seed: int = 0):
        super().__init__(seed)
        _check_fraction("p", p)
        if sigma < 0:
            raise ValueError("sigma must be >= 0")
        self.p, self.sigma = p, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hit = self.rand((b, 1, h, w), x) < self.p
        return x + hit * self.sigma * self.randn(x.shape, x)


class PixelReplacement(SeededNoise):
    def __init__(self, fraction: float, mean: float = 0.5, std: float = 0.2, seed: int = 0):
        super().__init__(seed)
        _check_fraction("fraction", fraction)
        self.fraction, self.mean, self.std = fraction, mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.pixel_mask(x, self.fraction)
        values = (self.mean + self.std * self.randn(x.shape, x)).clamp(0, 1)
        return torch.where(mask, values, x)


class SaltAndPepper(SeededNoise):
    def __init__(self, fraction: float, seed: int = 0):
        super().__init__(seed)
        _check_fraction("fraction", fraction)
        self.fraction = fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        mask = self.pixel_mask(x, self.fraction)
        salt = (self.rand((b, 1, h, w), x) < 0.5).to(x.dtype).expand_as(x)
        return torch.where(mask, salt, x)


NOISES = {"gaussian": GaussianNoise, "poisson": PoissonNoise, "impulse_n2n": ImpulseN2N,
          "impulse_gaussian": ImpulseGaussian, "pixel_replacement": PixelReplacement, "salt_and_pepper": SaltAndPepper}


def make_noise(name: str, **kwargs) -> SeededNoise:
    if name not in NOISES:
        raise ValueError(f"unknown noise {name!r} (known: {', '.join(NOISES)})")
    return NOISES[name](**kwargs)
