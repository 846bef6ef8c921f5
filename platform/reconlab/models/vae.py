"""A variational auto-encoder for 28x28 digits (thesis ch. 3, Kingma &
Welling): q(z|x) = N(mu(x), diag sigma^2(x)), p(x|z) Bernoulli per pixel,
a standard normal prior. Its latent codes give the thesis's intermediate
class examples (``training.vae.intermediate_examples``)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reconlab.models import register


class VAE(nn.Module):
    def __init__(self, latent: int = 16, hidden: int = 400, pixels: int = 784):
        super().__init__()
        self.pixels = pixels
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, pixels))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        return self.mu(h), self.logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)

    def decode(self, z: torch.Tensor, shape=(1, 28, 28)) -> torch.Tensor:
        """Pixel means in [0, 1], (b, *shape)."""
        return torch.sigmoid(self.dec(z)).view(len(z), *shape)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None):
        """(decoder logits, mu, logvar); ``eps`` the reparameterisation noise."""
        mu, logvar = self.encode(x)
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + (0.5 * logvar).exp() * eps
        return self.dec(z), mu, logvar


def negative_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per image: Bernoulli reconstruction loss (summed over pixels) + KL(q(z|x) || N(0, I))."""
    rec = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return rec + kl


@register
def vae(latent: int = 16, hidden: int = 400) -> nn.Module:
    """The thesis's VAE for intermediate class examples."""
    return VAE(latent=latent, hidden=hidden)
