"""Does an inverted image show the target digit to a reader, not only to the
network that was inverted?

``VerifierEnsemble``: independently trained classifiers of different
architectures and seeds (one adversarially trained); an image is a hit only
when a majority of them label it as the target, so a perturbation that fools
one network (an adversarial example) is not a successful inversion.
``realism``: the largest SSIM between an image and the real test digits of
its target class (a real digit of that class scores high; noise, or a
slightly perturbed digit of another class, scores low).
``readable`` (with a ``projector``): a hit whose projection onto the
manifold of real digits is a hit too. The projection is a VAE's
reconstruction from its posterior mean (``vae_projection``), as
Defense-GAN and MagNet project inputs onto a generative model's range: an
image the networks read only through off-manifold details (scattered
bright dots, adversarial texture) projects to some other digit. Real test
digits pass at ``real_readable_rate``; images optimised to fool the whole
ensemble from noise mostly do not (``tests/test_verify.py``).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class VerifierEnsemble:
    def __init__(self, members: dict[str, nn.Module], quorum: int | None = None, projector=None):
        if not members:
            raise ValueError("a verifier ensemble needs at least one member")
        self.members = members
        self.quorum = quorum if quorum is not None else len(members) // 2 + 1  # a strict majority
        if not 1 <= self.quorum <= len(members):
            raise ValueError(f"quorum must be in [1, {len(members)}], got {self.quorum}")
        self.projector = projector  # x -> x projected onto real digits (``vae_projection``), or None

    @torch.no_grad()
    def _vote(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        votes = torch.zeros(len(x), device=x.device)
        conf = torch.zeros(len(x), device=x.device)
        for m in self.members.values():
            m.eval()
            p = m(x).softmax(1)
            votes += (p.argmax(1) == target).float()
            conf += p.gather(1, target[:, None]).squeeze(1)
        return votes, conf / len(self.members)

    @torch.no_grad()
    def scores(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per image (b,): ``votes`` (members labelling it as the target),
        ``hit`` (votes >= quorum, 0/1), ``conf`` (the members' mean
        probability of the target) and, with a projector, ``readable`` (a
        hit whose projection is a hit)."""
        votes, conf = self._vote(x, target)
        out = {"votes": votes, "hit": (votes >= self.quorum).float(), "conf": conf}
        if self.projector is not None:
            projected, _ = self._vote(self.projector(x), target)
            out["readable"] = out["hit"] * (projected >= self.quorum).float()
        return out

    def real_readable_rate(self, real_x: torch.Tensor, real_y: torch.Tensor) -> float:
        """The share of real digits (held out from the members and the
        projector) that count as readable: the check's calibration."""
        return float(self.scores(real_x, real_y)["readable"].mean())


def ensemble_of(shared: dict, device: str = "cpu") -> VerifierEnsemble:
    """The ensemble, with the readability projector, from a sweep's shared
    models (``training.logged.ensure_with_verifiers``)."""
    from reconlab.models.io import shared_model

    return VerifierEnsemble({v: shared_model(shared, v, device) for v in shared["verifiers"]},
                            projector=vae_projection(shared_model(shared, shared["projector"], device)))


def vae_projection(vae: nn.Module):
    """x -> the VAE's reconstruction of x from its posterior mean, decode(mu(x))."""

    @torch.no_grad()
    def project(x: torch.Tensor) -> torch.Tensor:
        vae.eval()
        mu, _ = vae.encode(x)
        return vae.decode(mu, tuple(x.shape[1:]))

    return project


@torch.no_grad()
def realism(x: torch.Tensor, target: torch.Tensor, real_x: torch.Tensor, real_y: torch.Tensor,
            chunk: int = 4096) -> torch.Tensor:
    """max over real images r of class target[i] of SSIM(x[i], r), per image (b,)."""
    from reconlab.metrics import ssim

    out = torch.full((len(x),), -1.0, device=x.device)
    for c in target.unique().tolist():
        idx = (target == c).nonzero().flatten()
        refs = real_x[real_y == c].to(x.device)
        if not len(refs):
            continue
        a = x[idx].repeat_interleave(len(refs), 0)  # (n * m, ...) pairs, image-major
        r = refs.repeat(len(idx), *[1] * (refs.dim() - 1))
        s = torch.cat([ssim(a[i : i + chunk], r[i : i + chunk]) for i in range(0, len(a), chunk)])
        out[idx] = s.view(len(idx), len(refs)).max(1).values
    return out
