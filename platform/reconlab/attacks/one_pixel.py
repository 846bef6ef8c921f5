"""The one-pixel attack (Su, Vargas & Sakurai 2019) by differential evolution,
and the adversarial-denoising report's random search at the same number of
model queries.

A candidate changes ``pixels`` pixels of one image: each is (row, column,
value per channel), so a candidate is a vector of pixels * (2 + c) numbers.
The attack is untargeted: it minimises the model's probability of the true
class and succeeds when the prediction changes. DE is the paper's: rand/1
mutation x_r1 + F (x_r2 - x_r3) with F = 0.5, binomial crossover with
``recombination`` (the references' 1: every coordinate from the mutant), a
child replacing its parent when it is no worse, no polish. ``popsize`` is the
whole population (the references' 400); each generation is one batched
forward pass over it; the budget is popsize * (maxiter + 1) queries, and the
search stops at the first success. Every random choice comes from a seeded
generator.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn


@dataclasses.dataclass
class PixelAttackResult:
    adversarial: torch.Tensor  # (b, c, h, w): the best candidate found per image
    success: torch.Tensor  # (b,) bool: the prediction changed
    queries: torch.Tensor  # (b,) model evaluations spent (stops at the first success)
    true_prob: torch.Tensor  # (b,) the true class's probability at the best candidate


def apply_pixels(x: torch.Tensor, cand: torch.Tensor, pixels: int) -> torch.Tensor:
    """x: (c, h, w); cand: (n, pixels * (2 + c)) in [0, 1] -> (n, c, h, w)."""
    c, h, w = x.shape
    n = cand.shape[0]
    p = cand.view(n, pixels, 2 + c)
    rows = (p[..., 0] * h).long().clamp(0, h - 1)
    cols = (p[..., 1] * w).long().clamp(0, w - 1)
    out = x.unsqueeze(0).repeat(n, 1, 1, 1)
    idx = torch.arange(n, device=x.device).unsqueeze(1).expand(n, pixels)
    out[idx, :, rows, cols] = p[..., 2:]
    return out


@torch.no_grad()
def _true_prob(model, images: torch.Tensor, label: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    probs, preds = [], []
    for i in range(0, len(images), chunk):
        out = model(images[i:i + chunk]).softmax(1)
        probs.append(out[:, label])
        preds.append(out.argmax(1))
    return torch.cat(probs), torch.cat(preds)


@torch.no_grad()
def one_pixel_de(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, pixels: int = 1, popsize: int = 400,
                 maxiter: int = 100, recombination: float = 1.0, mutation: float = 0.5, seed: int = 0,
                 chunk: int = 4096, stop_on_success: bool = True) -> PixelAttackResult:
    """Differential evolution per image (module doc); ``stop_on_success``
    False spends the whole budget (for timing against a baseline that does)."""
    model.eval()
    b, c, h, w = x.shape
    d = pixels * (2 + c)
    g = torch.Generator(device="cpu").manual_seed(seed)
    advs, succ, queries, best_p = [], [], [], []
    for i in range(b):
        label = int(y[i])
        pop = torch.rand(popsize, d, generator=g).to(x.device)
        fit, pred = _true_prob(model, apply_pixels(x[i], pop, pixels), label, chunk)
        used = popsize
        for _ in range(maxiter):
            if stop_on_success and (pred != label).any():
                break
            # rand/1: three distinct others per member, F = mutation; binomial crossover
            r = torch.rand(popsize, popsize - 1, generator=g).argsort(1)[:, :3]  # 3 distinct, uniformly
            r = r + (r >= torch.arange(popsize).unsqueeze(1))  # skip the member itself
            r = r.to(x.device)
            mutant = (pop[r[:, 0]] + mutation * (pop[r[:, 1]] - pop[r[:, 2]])).clamp(0, 1)
            cross = torch.rand(popsize, d, generator=g).to(x.device) < recombination
            cross[torch.arange(popsize), torch.randint(d, (popsize,), generator=g)] = True
            trial = torch.where(cross, mutant, pop)
            tf, tp = _true_prob(model, apply_pixels(x[i], trial, pixels), label, chunk)
            used += popsize
            better = tf <= fit
            pop = torch.where(better.unsqueeze(1), trial, pop)
            fit = torch.where(better, tf, fit)
            pred = torch.where(better, tp, pred)
        hit = (pred != label).nonzero()
        k = int(hit[0]) if len(hit) else int(fit.argmin())
        advs.append(apply_pixels(x[i], pop[k:k + 1], pixels)[0])
        succ.append(bool(len(hit)))
        queries.append(used)
        best_p.append(float(fit[k]))
    return PixelAttackResult(torch.stack(advs), torch.tensor(succ), torch.tensor(queries), torch.tensor(best_p))


@torch.no_grad()
def one_pixel_random(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, pixels: int = 1, queries: int = 40400,
                     batch: int = 400, seed: int = 0, chunk: int = 4096) -> PixelAttackResult:
    """The report's "one-pixel" attack: random (row, column, value) candidates,
    ``batch`` per forward pass, until the prediction changes or ``queries``
    are spent (the DE budget: popsize * (maxiter + 1))."""
    model.eval()
    b, c, h, w = x.shape
    d = pixels * (2 + c)
    g = torch.Generator(device="cpu").manual_seed(seed)
    advs, succ, used_all, best_p = [], [], [], []
    for i in range(b):
        label = int(y[i])
        used, best, best_f, found = 0, None, float("inf"), False
        while used < queries and not found:
            n = min(batch, queries - used)
            cand = torch.rand(n, d, generator=g).to(x.device)
            f, pred = _true_prob(model, apply_pixels(x[i], cand, pixels), label, chunk)
            used += n
            hit = (pred != label).nonzero()
            k = int(hit[0]) if len(hit) else int(f.argmin())
            if len(hit) or f[k] < best_f:
                best, best_f, found = cand[k:k + 1], float(f[k]), bool(len(hit))
        advs.append(apply_pixels(x[i], best, pixels)[0])
        succ.append(found)
        used_all.append(used)
        best_p.append(best_f)
    return PixelAttackResult(torch.stack(advs), torch.tensor(succ), torch.tensor(used_all), torch.tensor(best_p))
