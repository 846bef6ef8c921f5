"""Classifiers that map digits onto fixed class prototypes (thesis ch. 4).

Both geometries share the prototypes: K unit vectors in R^d placed as far
apart as they can be, minimising the largest cosine between any two (Mettes
et al. 2019's criterion; ``place_prototypes`` says how). Then:

- **hyperspherical** (Mettes et al.): the network's output o is trained
  towards its class's prototype with sum (1 - cos(o, p_y))^2;
- **hyperbolic** (Ghadimi Atigh et al. 2021): the prototypes are ideal points
  on the boundary of the Poincare ball; z = expmap0(o) = tanh(|o|) o/|o| and
  the penalised Busemann loss
  l(z, p) = 2 log|p - z| - (1 + phi) log(1 - |z|^2 + 1e-6) + phi log 2,
  phi = 0.1 d.

Both predict by the cosine to the prototypes, so ``PrototypeNet`` returns
cosines as its class scores: argmax, accuracy and the verifier work on it as
on a softmax classifier's logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from reconlab.models import register

GEOMETRIES = ("sphere", "hyperbolic")
BUSEMANN_EPS = 1e-6

# Tammes's problem on the 2-sphere in R^3: the largest smallest angle (degrees)
# between k points (Tammes 1930; Schuette & van der Waerden 1951; Danzer 1963)
_TAMMES_DEG = {7: 77.8695, 8: 74.8585, 9: 70.5288, 10: 66.1468, 11: 63.4349, 12: 63.4349}


def best_max_cosine(k: int, d: int) -> float | None:
    """The smallest possible largest pairwise cosine of k unit vectors in R^d,
    where it is known: a regular polygon (d = 2), the simplex (k <= d + 1),
    the cross-polytope bound 0 (d + 1 < k <= 2d, Rankin), Tammes's values on
    the 2-sphere; None otherwise."""
    if k < 2:
        return None
    if d == 1:
        return -1.0 if k == 2 else 1.0
    if d == 2:
        return math.cos(2 * math.pi / k)
    if k <= d + 1:
        return -1.0 / (k - 1)
    if k <= 2 * d:
        return 0.0
    if d == 3 and k in _TAMMES_DEG:
        return math.cos(math.radians(_TAMMES_DEG[k]))
    return None


def max_cosine(p: torch.Tensor) -> float:
    """The largest cosine between two different rows of ``p`` (unit rows)."""
    m = p @ p.T - 2 * torch.eye(len(p), dtype=p.dtype)
    return float(m.max())


def place_prototypes(k: int, d: int, *, seed: int, steps: int = 800, restarts: int = 3, lr: float = 0.02) -> torch.Tensor:
    """K unit prototypes in R^d minimising the largest pairwise cosine
    (Mettes et al.'s criterion), deterministic for a seed.

    Mettes et al. descend the mean over prototypes of each one's largest
    cosine with SGD; in few dimensions that stalls with prototypes bunched
    together (``tests/test_prototypes.py`` shows it on the circle). Here:

    - d = 2: the optimum is known, a regular K-gon; it is placed exactly,
      turned by a seeded angle;
    - d >= 3: Adam on a log-sum-exp over all pairs' cosines (a smooth
      maximum whose temperature shrinks from 0.05 to 5e-4, so it ends on the
      largest cosine itself), the rows put back on the sphere after every
      step, learning rate decaying 20x; the best of ``restarts`` seeded
      starts. Reaches Tammes's optimum for 10 points on the 2-sphere within
      1e-3 and 0 in 5-D (``best_max_cosine``)."""
    if k < 2 or d < 2:
        raise ValueError("need k >= 2 prototypes in d >= 2 dimensions")
    gen = torch.Generator().manual_seed(seed)
    if d == 2:
        phase = float(torch.rand(1, generator=gen, dtype=torch.float64)) * 2 * math.pi
        angles = phase + 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
        return torch.stack([angles.cos(), angles.sin()], dim=1).float()
    iu = torch.triu_indices(k, k, 1)
    best, best_cos = None, math.inf
    for _ in range(restarts):
        p = F.normalize(torch.randn(k, d, generator=gen, dtype=torch.float64), dim=1).requires_grad_()
        opt = torch.optim.Adam([p], lr=lr)
        for step in range(steps):
            frac = step / max(steps - 1, 1)
            tau = 0.05 * 0.01**frac
            for g in opt.param_groups:
                g["lr"] = lr * 0.05**frac
            cos = (p @ p.T)[iu[0], iu[1]]
            loss = tau * torch.logsumexp(cos / tau, 0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                p.copy_(F.normalize(p, dim=1))
        c = max_cosine(p.detach())
        if c < best_cos:
            best, best_cos = p.detach().clone(), c
    return best.float()


def expmap0(v: torch.Tensor) -> torch.Tensor:
    """The Poincare ball's exponential map at 0 (curvature -1): tanh(|v|) v/|v|."""
    n = v.norm(dim=-1, keepdim=True).clamp_min(1e-15)
    return torch.tanh(n) * v / n


def busemann_loss(z: torch.Tensor, p: torch.Tensor, phi: float) -> torch.Tensor:
    """Per-row penalised Busemann loss of ball points ``z`` to ideal points
    ``p`` (unit rows): 2 log|p - z| - (1 + phi) log(1 - |z|^2 + eps) + phi log 2."""
    dist = (p - z).norm(dim=-1).clamp_min(1e-15)
    return 2 * dist.log() - (1 + phi) * (1 - (z * z).sum(-1) + BUSEMANN_EPS).log() + phi * math.log(2)


def sphere_loss(o: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Per-row (1 - cos(o, p))^2."""
    return (1 - F.cosine_similarity(o, p, dim=-1)) ** 2


class PrototypeNet(nn.Module):
    """A backbone with a d-dimensional output and fixed class prototypes.
    ``forward`` returns the cosine of the output to each prototype (class
    scores in [-1, 1]); ``embed`` the output itself (the ball point z for the
    hyperbolic geometry); ``prototype_loss`` the geometry's training loss."""

    def __init__(self, backbone: nn.Module, prototypes: torch.Tensor, geometry: str):
        super().__init__()
        if geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be one of {GEOMETRIES}, not {geometry!r}")
        self.backbone = backbone
        self.geometry = geometry
        self.register_buffer("prototypes", F.normalize(prototypes.float(), dim=1))

    @property
    def dim(self) -> int:
        return self.prototypes.shape[1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        o = self.backbone(x)
        return expmap0(o) if self.geometry == "hyperbolic" else o

    def forward(self, x: torch.Tensor, embed: bool = False) -> torch.Tensor:
        """Cosines to the prototypes; with ``embed`` the embedding itself (so
        a DDP-wrapped model's training forward still goes through DDP)."""
        e = self.embed(x)
        return e if embed else self.scores(e)

    def scores(self, e: torch.Tensor) -> torch.Tensor:
        """Class scores of embeddings: the cosine to each prototype."""
        return F.normalize(e, dim=1) @ self.prototypes.T

    def prototype_loss(self, e: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The geometry's loss of embeddings ``e`` (``forward(x, embed=True)``)
        towards the prototypes of classes ``y``."""
        p = self.prototypes[y]
        per = busemann_loss(e, p, 0.1 * self.dim) if self.geometry == "hyperbolic" else sphere_loss(e, p)
        return per.mean() if reduction == "mean" else per


@register
def classifier_prototype(width: int = 16, hidden: int = 128, dim: int = 3, geometry: str = "sphere",
                         num_classes: int = 10, placement_seed: int = 0):
    """The thesis's small CNN with a ``dim``-dimensional output and
    ``num_classes`` prototypes placed from ``placement_seed``."""
    from reconlab.models.classifier import SmallCNN

    p = place_prototypes(num_classes, dim, seed=placement_seed)
    return PrototypeNet(SmallCNN(width=width, hidden=hidden, num_classes=dim), p, geometry)
