"""Prototype heads (thesis ch. 4; issue 14, parts 4-5): the placement reaches
the best possible spread, the two losses follow their formulas, and a small
network learns digits with either geometry."""

import math

import pytest
import torch

from reconlab.metrics import macro_prf
from reconlab.models.prototypes import (PrototypeNet, best_max_cosine, busemann_loss, expmap0, max_cosine,
                                        place_prototypes, sphere_loss)


@pytest.mark.parametrize("d", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_placement_reaches_the_best_possible_largest_cosine(d, seed):
    """10 prototypes: a regular decagon in 2-D (cos 36 deg = 0.809), Tammes's
    66.15 deg on the 2-sphere (0.4044), and 0 in 5-D (a cross-polytope): no
    two collapsed onto one direction, whatever the seed."""
    p = place_prototypes(10, d, seed=seed)
    assert p.shape == (10, d) and torch.allclose(p.norm(dim=1), torch.ones(10), atol=1e-5)
    best = best_max_cosine(10, d)
    assert best == pytest.approx({2: 0.809017, 3: 0.404394, 5: 0.0}[d], abs=1e-4)
    assert best - 1e-6 <= max_cosine(p.double()) <= best + 0.01, (max_cosine(p.double()), best)


def test_placement_is_deterministic_for_a_seed_and_differs_across_seeds():
    a, b, c = place_prototypes(10, 3, seed=4), place_prototypes(10, 3, seed=4), place_prototypes(10, 3, seed=5)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_mettes_descent_alone_can_stall_in_low_dimensions():
    """Why placement does not use Mettes et al.'s descent as it is: the mean of
    each prototype's largest cosine, SGD lr 0.1 momentum 0.9, from random
    starts on the circle, stays far from the decagon."""
    import torch.nn.functional as F

    worst = 0.0
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        p = F.normalize(torch.randn(10, 2, generator=g, dtype=torch.float64), dim=1).requires_grad_()
        opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
        eye = 2 * torch.eye(10, dtype=torch.float64)
        for _ in range(500):
            loss = (p @ p.T - eye).max(dim=1).values.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                p.copy_(F.normalize(p, dim=1))
        worst = max(worst, max_cosine(p.detach()))
    assert worst > best_max_cosine(10, 2) + 0.02


def test_busemann_loss_matches_its_formula_and_falls_towards_its_ideal_point():
    p = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    z = expmap0(torch.tensor([[0.3, 0.4]], dtype=torch.float64))  # |v| = 0.5 -> |z| = tanh 0.5
    assert z.norm().item() == pytest.approx(math.tanh(0.5))
    phi = 0.1 * 2
    want = 2 * math.log((p - z).norm().item()) - (1 + phi) * math.log(1 - z.norm().item() ** 2 + 1e-6) + phi * math.log(2)
    assert busemann_loss(z, p, phi).item() == pytest.approx(want, rel=1e-6)
    along = [busemann_loss(expmap0(torch.tensor([[r, 0.0]])), p, phi).item() for r in (0.1, 0.5, 1.0)]
    assert along[0] > along[1] > along[2]  # moving towards p lowers the loss
    assert busemann_loss(torch.zeros(1, 2, dtype=torch.float64), p, phi).item() == pytest.approx(phi * math.log(2), abs=1e-5)


def test_sphere_loss_is_zero_at_the_prototype_and_four_opposite():
    p = torch.tensor([[0.0, 1.0, 0.0]])
    assert sphere_loss(torch.tensor([[0.0, 5.0, 0.0]]), p).item() == pytest.approx(0.0, abs=1e-7)
    assert sphere_loss(torch.tensor([[0.0, -2.0, 0.0]]), p).item() == pytest.approx(4.0)


def test_macro_precision_recall_f1_by_hand():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 0])
    m = macro_prf(pred, y, 3)
    # class 0: P 1/3 R 1/2; class 1: P 2/3 R 1; class 2: P 0 R 0
    assert m["precision"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert m["recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["f1"] == pytest.approx((0.4 + 0.8 + 0) / 3)


@pytest.mark.parametrize("geometry", ["sphere", "hyperbolic"])
def test_a_prototype_net_learns_digits_and_predicts_by_cosine(geometry, digits):
    from reconlab.models import build

    torch.manual_seed(0)
    net = build("classifier_prototype", width=8, dim=3, geometry=geometry, placement_seed=0)
    assert isinstance(net, PrototypeNet)
    x, y = digits.x_train, digits.y_train
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        net.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = net.prototype_loss(net(x[idx], embed=True), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        scores = net(digits.x_test)
    assert scores.shape == (len(digits.x_test), 10) and scores.abs().max() <= 1 + 1e-5
    assert macro_prf(scores.argmax(1), digits.y_test, 10)["f1"] > 0.6  # ~0.8 after 5 epochs; chance is 0.1
