"""The noise models (issue 13, part 1): the fraction, the clamp, the mean and
variance, seeding, composition."""

import math

import pytest
import torch

from reconlab.operators.noise import (GaussianNoise, ImpulseGaussian, ImpulseN2N, PixelReplacement, PoissonNoise,
                                      SaltAndPepper, make_noise)

X = torch.full((64, 3, 16, 16), 0.3)


@pytest.mark.parametrize("noise", [GaussianNoise(0.2), PoissonNoise(100, 75), ImpulseN2N(0.3),
                                   ImpulseGaussian(0.3, 0.2), PixelReplacement(0.2), SaltAndPepper(0.2)],
                         ids=lambda n: type(n).__name__)
def test_every_model_is_seeded_and_reseedable(noise):
    noise.reseed(7)
    a = noise(X)
    noise.reseed(7)
    assert torch.equal(a, noise(X))
    assert not torch.equal(a, noise(X))  # the stream moves on
    noise.reseed(8)
    assert not torch.equal(a, noise(X))
    assert a.shape == X.shape and a.dtype == X.dtype


def test_gaussian_sigma_is_uniform_per_image_and_the_variance_follows():
    n = GaussianNoise(sigma_max=0.2, seed=0)
    x = torch.zeros(2000, 1, 8, 8)
    sig = (n(x)).flatten(1).std(1)
    assert 0 <= sig.min() and sig.max() <= 0.2 * 1.4
    assert sig.mean().item() == pytest.approx(0.1, rel=0.05)  # E[sigma] for U[0, 0.2]
    # E[sigma^2] = 0.2^2 / 3: the pooled variance
    assert n(x).pow(2).mean().item() == pytest.approx(0.04 / 3, rel=0.05)
    assert n(x).min() < 0  # unclipped by default
    assert GaussianNoise(0.5, clamp=True)(x).min() >= 0


def test_poisson_has_the_negative_binomial_photon_counts():
    n = PoissonNoise(mean=100, dispersion=75, seed=0)
    x = torch.full((4000, 1, 1, 1), 0.5)
    p = n.photons(x).flatten()
    assert p.mean().item() == pytest.approx(100, rel=0.03)
    assert p.var().item() == pytest.approx(100 + 100**2 / 75, rel=0.12)  # NB variance
    y = PoissonNoise(mean=1000, seed=0)(torch.full((64, 1, 32, 32), 0.5))
    assert y.mean().item() == pytest.approx(0.5, rel=0.01)
    assert y.var().item() == pytest.approx(0.5 / 1000, rel=0.05)  # Poisson: var = x / P
    assert ((y * 1000) - (y * 1000).round()).abs().max() < 1e-3  # counts on a grid of 1/P


def test_impulse_n2n_replaces_whole_pixels_with_probability_p():
    n = ImpulseN2N(0.3, seed=0)
    y = n(X)
    changed = (y != X).any(1)
    assert changed.float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert ((y != X).all(1) == changed).float().mean() > 0.999  # all channels of a hit pixel, a.s.
    assert 0 <= y.min() and y.max() <= 1
    assert y[(y != X)].mean().item() == pytest.approx(0.5, abs=0.01)  # uniform colours


def test_impulse_gaussian_is_the_report_s_gaussian_on_a_fraction():
    n = ImpulseGaussian(0.5, sigma=0.2, seed=0)
    d = n(X) - X
    hit = (d != 0).any(1)
    assert hit.float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert d[hit.unsqueeze(1).expand_as(d)].std().item() == pytest.approx(0.2, rel=0.03)
    assert abs(d.mean().item()) < 0.003


@pytest.mark.parametrize("cls", [PixelReplacement, SaltAndPepper])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 1.0])
def test_a_fraction_of_pixels_is_exactly_that_many_per_image(cls, fraction):
    x = torch.full((16, 1, 28, 28), 0.25)  # a value neither replacement produces exactly
    y = cls(fraction, seed=1)(x)
    per_image = (y != x).flatten(1).sum(1)
    assert (per_image == round(fraction * 784)).all()
    assert 0 <= y.min() and y.max() <= 1


def test_pixel_replacement_draws_the_report_s_clamped_gaussian():
    y = PixelReplacement(1.0, seed=0)(torch.zeros(200, 1, 28, 28))
    assert y.mean().item() == pytest.approx(0.5, abs=0.005)
    assert y.std().item() == pytest.approx(0.2, rel=0.05)  # clamping at 2.5 sigma barely narrows it
    assert ((y == 0) | (y == 1)).float().mean().item() == pytest.approx(1 - 0.9876, abs=0.003)  # the report's 98.76 %


def test_salt_and_pepper_is_half_salt():
    y = SaltAndPepper(1.0, seed=0)(torch.full((100, 1, 28, 28), 0.3))
    assert set(y.unique().tolist()) == {0.0, 1.0} and y.mean().item() == pytest.approx(0.5, abs=0.01)
    rgb = SaltAndPepper(0.5, seed=0)(torch.full((4, 3, 8, 8), 0.3))
    assert ((rgb[:, :1] == rgb).all())  # a pixel is salted in every channel


def test_noise_composes_with_an_operator_and_follows_the_device():
    op = torch.nn.Sequential(torch.nn.AvgPool2d(2), GaussianNoise(0.1, seed=3))
    y = op(torch.ones(2, 1, 8, 8))
    assert y.shape == (2, 1, 4, 4) and not torch.equal(y, torch.ones_like(y))
    assert make_noise("salt_and_pepper", fraction=0.1).fraction == 0.1
    if torch.cuda.is_available():
        assert op.cuda()(torch.ones(2, 1, 8, 8, device="cuda")).device.type == "cuda"
    for bad in (lambda: make_noise("speckle"), lambda: SaltAndPepper(1.5), lambda: ImpulseN2N(-0.1),
                lambda: GaussianNoise(0.1, sigma_min=0.2), lambda: PoissonNoise(0), lambda: SaltAndPepper(math.nan)):
        with pytest.raises(ValueError):
            bad()
