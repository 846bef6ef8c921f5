"""The thesis's CT hybrid (ch. 5): SIRT, then SIRT alternating with a
network-inversion step, and the baselines it must beat.

A schedule is a list of steps: ``warmup`` SIRT steps, then ``alternating``
steps in which every ``ratio + 1``-th is a prior step (an inversion step, or
beyond the thesis a plug-and-play denoiser step) (the thesis: 50 SIRT,
then 50 alternating 3:1, against 100 SIRT). A prior step is
``prior_steps`` gradient steps on

    J(x) = cls_weight CE(F(x), label) + tv_weight TV(x) + l2_weight ||x||²
           + fidelity_weight ||A x - y||² / rays

from the current reconstruction, each clamped to the box; with
``cls_weight = 0`` (or no classifier) it is the thesis's suspected cause of
the gain, the priors alone: the ablation. Every image is independent: the
per-image terms are summed over the batch, never averaged.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from reconlab.inversion.priors import l2, tv


@dataclasses.dataclass(frozen=True)
class Schedule:
    warmup: int = 50
    alternating: int = 50
    ratio: int = 3  # SIRT steps per prior step in the alternating phase

    def __post_init__(self):
        if self.warmup < 0 or self.alternating < 0 or self.ratio < 0 or self.warmup + self.alternating < 1:
            raise ValueError("warmup, alternating and ratio must be >= 0, with at least one step")

    @property
    def iterations(self) -> int:
        return self.warmup + self.alternating

    def steps(self) -> list[str]:
        """'sirt' or 'prior' for each iteration."""
        alt = ["prior" if (i + 1) % (self.ratio + 1) == 0 else "sirt" for i in range(self.alternating)]
        return ["sirt"] * self.warmup + alt


@dataclasses.dataclass
class PriorStep:
    """Gradient steps on J(x) (module doc). ``classifier``/``labels``: the
    class term (None: priors only); ``labels`` may be set later (the
    hybrid predicts them once SIRT's warm-up is done)."""

    op: object  # reconlab.operators.ct.CTOperator
    y: torch.Tensor
    step_size: float
    tv_weight: float = 0.0
    l2_weight: float = 0.0
    cls_weight: float = 0.0
    fidelity_weight: float = 0.0
    steps: int = 1
    classifier: torch.nn.Module | None = None
    labels: torch.Tensor | None = None
    box: tuple[float, float] | None = (0.0, 1.0)

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        """J per image, (b,)."""
        j = torch.zeros(x.shape[0], device=x.device)
        if self.classifier is not None and self.cls_weight:
            j = j + self.cls_weight * F.cross_entropy(self.classifier(x), self.labels, reduction="none")
        if self.tv_weight:
            j = j + self.tv_weight * tv(x)
        if self.l2_weight:
            j = j + self.l2_weight * l2(x)
        if self.fidelity_weight:
            r = self.op(x) - self.y
            j = j + self.fidelity_weight * r.pow(2).flatten(1).sum(1) / r[0].numel()
        return j

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.classifier is not None and self.cls_weight and self.labels is None:
            raise RuntimeError("the class term needs labels")
        for _ in range(self.steps):
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.objective(x).sum(), x)
            x = x.detach() - self.step_size * g
            if self.box is not None:
                x = x.clamp(*self.box)
        return x.detach()


@dataclasses.dataclass
class DenoiserStep:
    """Plug-and-play: x <- (1 - strength) x + strength D(x), clamped, with D a
    trained denoiser (the learned prior in place of the inversion step)."""

    denoiser: torch.nn.Module
    strength: float = 1.0
    box: tuple[float, float] | None = (0.0, 1.0)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = (1 - self.strength) * x + self.strength * self.denoiser(x)
        return x.clamp(*self.box) if self.box is not None else x


@torch.no_grad()
def predict(classifier: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return classifier(x).argmax(1)


def reconstruct(op, y: torch.Tensor, schedule: Schedule, prior: PriorStep | DenoiserStep | None = None, *,
                box: tuple[float, float] | None = (0.0, 1.0), predict_labels: bool = False,
                callback: Callable[[int, str, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run ``schedule`` on the sinograms ``y`` from zeros. Without ``prior``
    every step is SIRT (SIRT-N). ``predict_labels``: the class term's labels
    are the classifier's prediction on the reconstruction when the warm-up
    ends (the thesis's setting; otherwise ``prior.labels`` as given, e.g. the
    true ones). ``callback(iteration, kind, x)`` after every step."""
    x = torch.zeros(y.shape[0], 1, op.geom.size, op.geom.size, device=y.device)
    for i, kind in enumerate(schedule.steps() if prior is not None else ["sirt"] * schedule.iterations, start=1):
        if predict_labels and i == schedule.warmup + 1:
            prior.labels = predict(prior.classifier, x)
        if kind == "prior":
            x = prior(x)
        else:
            with torch.no_grad():
                x = op.sirt_step(x, y)
                if box is not None:
                    x = x.clamp(*box)
        if callback is not None:
            callback(i, kind, x)
    return x
