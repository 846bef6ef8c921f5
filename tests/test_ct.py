"""The CT operator on a real ASTRA projector, the phantoms, and the thesis's
hybrid schedule, in-process on tiny data. The job is in tests/test_ct_job.py."""

import math

import numpy as np
import pytest
import torch

from reconlab.operators.ct import CTOperator, ParallelBeam, add_sinogram_noise, astra_fbp, astra_forward, astra_sirt


@pytest.fixture(scope="module")
def op():
    return CTOperator(ParallelBeam(28, 8))


def test_the_geometry_sees_the_whole_image_and_refuses_nonsense():
    g = ParallelBeam(28, 8)
    assert g.num_detectors == 40 and g.sinogram_shape == (8, 40)
    assert np.allclose(g.angle_values(), np.arange(8) * np.pi / 8)
    for bad in ({"size": 1, "angles": 4}, {"size": 8, "angles": 0}, {"size": 8, "angles": 2, "projector": "cuda"}):
        with pytest.raises(ValueError):
            ParallelBeam(**bad)


def test_the_operator_is_astras_projection_and_its_backward_is_the_adjoint(op):
    """<A x, y> = <x, Aᵀ y>, A x equals ASTRA's own forward projection, and
    autograd through A gives 2 Aᵀ(A x - y)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 1, 28, 28, generator=g), torch.rand(4, 1, 8, 40, generator=g)
    ax = op(x)
    assert ax.shape == (4, 1, 8, 40)
    lhs, rhs = (ax.double() * y).sum().item(), (x.double() * op.adjoint(y)).sum().item()
    assert lhs == pytest.approx(rhs, rel=1e-5)
    assert np.abs(ax[:, 0].numpy() - astra_forward(op.geom, x)).max() < 1e-4
    xr = x.clone().requires_grad_(True)
    ((op(xr) - y) ** 2).sum().backward()
    assert torch.allclose(xr.grad, 2 * op.adjoint(op(x) - y), atol=1e-4)
    yr = y.clone().requires_grad_(True)
    (op.adjoint(yr) * x).sum().backward()
    assert torch.allclose(yr.grad, op(x), atol=1e-5)


def test_the_sinogram_of_a_point_is_a_sine():
    """A point at (dx, dy) from the centre lands on detector offset
    dx cos(theta) + dy sin(theta) at angle theta (ASTRA's convention:
    image rows run down, so dy is minus the row offset)."""
    n, angles = 64, 16
    op = CTOperator(ParallelBeam(n, angles))
    x = torch.zeros(1, 1, n, n)
    row, col = 20, 45
    x[0, 0, row, col] = 1.0
    sino = op(x)[0, 0]
    det = sino.shape[1]
    dx, dy = col + 0.5 - n / 2, -(row + 0.5 - n / 2)
    theta = torch.from_numpy(op.geom.angle_values())
    # the centre of mass of each projection (linear interpolation spreads the point over two bins)
    centre = (sino * (torch.arange(det) + 0.5)).sum(1) / sino.sum(1) - det / 2
    want = (dx * torch.cos(theta) + dy * torch.sin(theta)).float()
    # within a third of a bin (Joseph's interpolation is exact only along the axes)
    assert torch.allclose(centre, want, atol=0.3), (centre, want)
    assert torch.allclose(centre[[0, 8]], want[[0, 8]], atol=1e-3)


@pytest.mark.parametrize("box", [None, (0.0, 1.0)])
def test_sirt_through_the_operator_is_astras_sirt(op, box):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 28, 28, generator=g)
    y = op(x)
    ours = op.sirt(y, 30, box=box)[:, 0].numpy()
    kw = {} if box is None else {"min_constraint": box[0], "max_constraint": box[1]}
    theirs = astra_sirt(op.geom, y, 30, **kw)
    assert np.abs(ours - theirs).max() < 1e-4


def test_sirt_and_fbp_recover_an_image_from_many_angles():
    from reconlab.data import load_dataset
    from reconlab.metrics import psnr

    x = load_dataset("digits").x_test[:4]
    op = CTOperator(ParallelBeam(28, 64))
    y = op(x)
    assert psnr(op.sirt(y, 200, box=(0, 1)), x).min().item() > 35
    fbp = torch.from_numpy(astra_fbp(op.geom, y)).unsqueeze(1).clamp(0, 1)
    assert psnr(fbp, x).min().item() > 20


def test_sinogram_noise_is_seeded_and_sized_as_documented(op):
    y = op(torch.full((2, 1, 28, 28), 0.5))
    a = add_sinogram_noise(y, "gaussian", 0.01, seed=0, size=28)
    assert torch.equal(a, add_sinogram_noise(y, "gaussian", 0.01, seed=0, size=28))
    assert not torch.equal(a, add_sinogram_noise(y, "gaussian", 0.01, seed=1, size=28))
    peak = y.flatten(1).amax(1)
    assert ((a - y).flatten(1).std(1) / peak).tolist() == pytest.approx([0.01, 0.01], rel=0.15)
    p = add_sinogram_noise(y, "poisson", 1e4, seed=0, size=28)
    # Poisson: var(-size log(c / I0)) ~ size² / (I0 e^{-y/size}); mean unbiased to first order
    want = (28**2 / (1e4 * torch.exp(-y / 28))).sqrt()
    mask = y > 1
    assert ((p - y)[mask].std() / want[mask].mean()).item() == pytest.approx(1.0, rel=0.1)
    assert abs((p - y)[mask].mean().item()) < 0.05
    assert torch.equal(add_sinogram_noise(y, "none", 0, seed=0, size=28), y)
    with pytest.raises(ValueError, match="unknown sinogram noise"):
        add_sinogram_noise(y, "speckle", 1, seed=0, size=28)


def test_phantoms_are_seeded_in_range_with_shepp_logan_first():
    from reconlab.data import load_dataset
    from reconlab.data.phantoms import load_phantoms, shepp_logan

    ds = load_dataset("phantoms")
    assert ds.x_train.shape == (400, 1, 64, 64) and ds.x_test.shape == (300, 1, 64, 64) and ds.num_classes == 1
    assert 0 <= ds.x_test.min() and ds.x_test.max() <= 1
    assert torch.equal(ds.x_test[0, 0], torch.from_numpy(shepp_logan(64)))
    assert ds.fingerprint() == load_phantoms.__wrapped__(64).fingerprint()  # seeded: built twice, the same
    assert not torch.equal(ds.x_train[0], ds.x_train[1])
    assert (ds.x_test[1:].flatten(1) > 0).float().mean(1).min() > 0.2  # every phantom has a body
    assert load_dataset("phantoms128").x_test.shape == (300, 1, 128, 128)


def test_the_schedule_is_the_thesis_s_50_plus_50_alternating_3_to_1():
    from reconlab.inversion.ct_hybrid import Schedule

    s = Schedule()
    steps = s.steps()
    assert len(steps) == s.iterations == 100
    assert steps[:50] == ["sirt"] * 50 and steps[50:58] == ["sirt"] * 3 + ["prior"] + ["sirt"] * 3 + ["prior"]
    assert steps.count("prior") == 12
    with pytest.raises(ValueError):
        Schedule(warmup=0, alternating=0)


def test_a_prior_step_descends_its_objective_and_each_image_is_independent(op):
    from reconlab.inversion.ct_hybrid import PriorStep
    from reconlab.models import build

    torch.manual_seed(0)
    clf = build("classifier_small").eval()
    for p in clf.parameters():
        p.requires_grad_(False)
    x = torch.rand(3, 1, 28, 28)
    y = op(x)
    step = PriorStep(op, y, step_size=0.01, tv_weight=0.01, l2_weight=0.001, cls_weight=1.0, fidelity_weight=0.1,
                     classifier=clf, labels=torch.tensor([1, 2, 3]), box=None)
    before = step.objective(x)
    after = step.objective(step(x))
    assert (after < before).all()
    # one image alone follows the same step as in the batch
    alone = PriorStep(op, y[1:2], step_size=0.01, tv_weight=0.01, l2_weight=0.001, cls_weight=1.0,
                      fidelity_weight=0.1, classifier=clf, labels=torch.tensor([2]), box=None)
    assert torch.allclose(alone(x[1:2]), step(x)[1:2], atol=1e-6)
    with pytest.raises(RuntimeError, match="needs labels"):
        PriorStep(op, y, step_size=0.1, cls_weight=1.0, classifier=clf)(x)


def test_the_hybrid_predicts_its_labels_when_the_warm_up_ends(op):
    from reconlab.inversion.ct_hybrid import PriorStep, Schedule, reconstruct

    torch.manual_seed(0)
    class Digitiser(torch.nn.Module):  # a label that moves with every SIRT step: it tells the steps apart
        def forward(self, z):
            return torch.nn.functional.one_hot((z.flatten(1).sum(1) * 1000).floor().long() % 10, 10).float()

    clf = Digitiser()
    x = torch.rand(8, 1, 28, 28)
    y = op(x)
    seen = []
    s = Schedule(warmup=5, alternating=4, ratio=1)
    prior = PriorStep(op, y, step_size=0.01, tv_weight=0.01, classifier=clf)
    out = reconstruct(op, y, s, prior, predict_labels=True, callback=lambda i, k, z: seen.append((i, k, z)))
    assert [k for _, k, _ in seen] == s.steps()
    at_warmup_end, one_later = seen[4][2], seen[5][2]
    assert torch.equal(prior.labels, clf(at_warmup_end).argmax(1))
    assert not torch.equal(prior.labels, clf(one_later).argmax(1))
    # without a prior every step is SIRT, and equals the operator's own SIRT
    plain = reconstruct(op, y, s)
    assert torch.allclose(plain, op.sirt(y, 9, box=(0, 1)))
    assert not torch.equal(out, plain)


def test_a_saved_matrix_stands_in_for_astra_and_must_fit_the_geometry():
    """The GPU machine has no astra: the bench carries ASTRA's matrices."""
    from reconlab.operators.ct import system_matrix

    g = ParallelBeam(28, 8)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(CTOperator(g, matrix=system_matrix(g))(x), CTOperator(g)(x))
    with pytest.raises(ValueError, match="is not the geometry"):
        CTOperator(ParallelBeam(28, 4), matrix=system_matrix(g))


def test_the_denoiser_learns_to_denoise_and_its_noise_is_seeded():
    from reconlab.data import load_dataset
    from reconlab.models import build
    from reconlab.training.denoiser import DenoiserSpec, noisy, test_psnr, train_epoch

    ds = load_dataset("digits")
    spec = DenoiserSpec(width=8, depth=3, epochs=2, batch_size=16)
    torch.manual_seed(0)
    m = build("dncnn", **spec.model_kwargs())
    opt = torch.optim.Adam(m.parameters(), lr=spec.lr)
    x = ds.x_train[:320]
    losses = [train_epoch(m, opt, x, spec, e, 0, 1, "cpu") for e in range(3)]
    assert losses[-1] < losses[0]
    before, after = test_psnr(m, ds.x_test[:64], 0.1)
    assert after > before + 1  # it removes noise, not just passes it through
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(noisy(x[:4], 0.2, g1), noisy(x[:4], 0.2, g2))
    with pytest.raises(ValueError):
        DenoiserSpec(sigma_max=0)
