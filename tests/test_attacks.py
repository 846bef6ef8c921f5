"""Attacks (issue 13, part 2), each on a model where the answer is known."""

import pytest
import torch
import torch.nn as nn

from reconlab.attacks import (accuracy_under_fgsm, dag, fgsm, fgsm_multi, one_pixel_de, one_pixel_random,
                              pgd_denoiser)


def linear_classifier(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    return m.eval()


def test_fgsm_on_a_linear_classifier_is_the_exact_sign_step():
    """For logits W x + b, grad_x CE = Wᵀ(softmax - onehot): FGSM's step is its sign."""
    m = linear_classifier()
    x = torch.rand(5, 1, 4, 4) * 0.5 + 0.25
    y = torch.tensor([0, 1, 2, 0, 1])
    w = m[1].weight  # (3, 16)
    p = m(x).softmax(1)
    want = ((p - nn.functional.one_hot(y, 3)) @ w).sign().view_as(x)
    eps = [0.0, 0.05, 0.1, 0.2]
    adv = fgsm_multi(m, x, y, eps)
    assert adv.shape == (4, 5, 1, 4, 4)
    for k, e in enumerate(eps):
        assert torch.allclose(adv[k], (x + e * want).clamp(0, 1), atol=1e-6)
        assert torch.equal(adv[k], fgsm(m, x, y, e))  # the list is the same as one eps at a time
    assert all(p.grad is None for p in m.parameters())
    with torch.no_grad():  # an attack inside an evaluation loop still gets its gradient
        assert torch.equal(fgsm(m, x, y, 0.1), adv[2])


def test_accuracy_under_fgsm_falls_with_eps_and_matches_one_eps_at_a_time():
    m = linear_classifier(1)
    x = torch.rand(64, 1, 4, 4)
    y = m(x).argmax(1)  # all correct at eps 0
    eps = [0.0, 0.05, 0.1, 0.3]
    acc = accuracy_under_fgsm(m, x, y, eps, batch_size=16)
    assert acc[0] == 1.0 and acc == sorted(acc, reverse=True) and acc[-1] < acc[0]
    one = [(m(fgsm(m, x, y, e)).argmax(1) == y).float().mean().item() for e in eps]
    assert acc == pytest.approx(one)


class OnePixelNet(nn.Module):
    """Class 1 exactly when pixel (5, 2) is brighter than 0.9; class 0 otherwise."""

    def forward(self, x):
        z = 50 * (x[:, 0, 5, 2] - 0.9)
        return torch.stack([torch.zeros_like(z), z], 1)


def test_differential_evolution_finds_the_one_pixel_that_flips_the_class():
    x = torch.zeros(3, 1, 8, 8)
    y = torch.zeros(3, dtype=torch.long)
    r = one_pixel_de(OnePixelNet(), x, y, pixels=1, popsize=100, maxiter=40, seed=0)
    assert r.success.all()
    changed = (r.adversarial != x).nonzero()[:, 2:].unique(dim=0)
    assert changed.tolist() == [[5, 2]] and (r.adversarial[:, 0, 5, 2] > 0.9).all()
    assert (r.queries <= 100 * 41).all() and (r.queries % 100 == 0).all()
    again = one_pixel_de(OnePixelNet(), x, y, pixels=1, popsize=100, maxiter=40, seed=0)
    assert torch.equal(again.adversarial, r.adversarial)  # seeded


def test_random_search_spends_its_budget_and_stops_at_a_hit():
    x = torch.zeros(2, 1, 8, 8)
    y = torch.zeros(2, dtype=torch.long)
    # a hit needs the right pixel (1/64) and a value > 0.9 (1/10): ~1/640 per query
    r = one_pixel_random(OnePixelNet(), x, y, queries=4000, batch=100, seed=0)
    assert r.success.all() and (r.queries < 4000).all()
    miss = one_pixel_random(OnePixelNet(), x, y, queries=50, batch=25, seed=0)
    assert not miss.success.any() and (miss.queries == 50).all()


def test_de_keeps_its_best_so_more_generations_never_do_worse():
    """Selection is elitist (a child replaces its parent only when no worse):
    with the same seed, the first generations are the same and the best
    fitness can only fall."""

    class Smooth(nn.Module):  # the true class's margin falls as pixel (6, 6) brightens
        def forward(self, x):
            z = 3 * x[:, 0, 6, 6] - 5
            return torch.stack([torch.zeros_like(z), z], 1)

    x = torch.zeros(3, 1, 12, 12)
    y = torch.zeros(3, dtype=torch.long)
    short = one_pixel_de(Smooth(), x, y, popsize=20, maxiter=3, seed=1)
    long = one_pixel_de(Smooth(), x, y, popsize=20, maxiter=30, seed=1)
    assert (long.true_prob <= short.true_prob).all() and (long.true_prob < short.true_prob).any()


def test_dag_pulls_an_identity_denoiser_onto_the_target_then_stops():
    torch.manual_seed(0)
    noisy = torch.rand(2, 3, 8, 8) * 0.5 + 0.25
    target = (noisy + 0.1 * torch.randn_like(noisy)).clamp(0, 1)
    ident = nn.Identity()
    adv, r = dag(ident, noisy, target, iterations=400, gamma=0.1, threshold=0.04)
    err = (adv - target).abs().sum(1)
    assert err.max() < 0.04 + 0.1 * 3  # every pixel pulled to within a step of the threshold
    assert (err >= 0.04).float().mean() < 0.05
    assert r.abs().max() <= 1 and 0 <= adv.min() and adv.max() <= 1
    none, r0 = dag(ident, noisy, noisy, iterations=5)
    assert torch.equal(r0, torch.zeros_like(r0))  # nothing to attack: no step


def test_pgd_on_an_identity_denoiser_reaches_the_corner_of_the_ball():
    """max ||x + delta - clean||^2 over |delta| <= eps from x = clean: every
    pixel ends at a corner, eps away, so the MSE is eps^2."""
    clean = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    eps = 4 / 255
    adv = pgd_denoiser(nn.Identity(), clean, clean, eps=eps, steps=10)
    assert torch.allclose((adv - clean).abs(), torch.full_like(clean, eps), atol=1e-6)
    assert (adv - clean).pow(2).mean().item() == pytest.approx(eps**2, rel=1e-4)
    edge = torch.zeros(1, 1, 4, 4)  # the image box wins over the ball: no pixel below 0
    assert pgd_denoiser(nn.Identity(), edge, edge, eps=eps).min() >= 0
    assert torch.equal(pgd_denoiser(nn.Identity(), clean, clean, eps=0.0, steps=3), clean)
