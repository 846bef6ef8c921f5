"""The VAE family and the thesis's intermediate classes (issue 14, part 3)."""

import math

import pytest
import torch

from reconlab.models import build
from reconlab.models.vae import negative_elbo
from reconlab.training.classifier import VARIANTS, TrainSpec, recipe_spec, training_set
from reconlab.training.vae import VAESpec, heldout_neg_elbo, intermediate_examples, latent_tsne_png, train_epoch


def test_negative_elbo_is_reconstruction_plus_kl():
    x = torch.tensor([[1.0, 0.0]])
    logits = torch.tensor([[0.0, 0.0]])  # p = 0.5 per pixel: 2 log 2 nats
    mu, logvar = torch.tensor([[1.0]]), torch.tensor([[0.0]])  # KL(N(1, 1) || N(0, 1)) = 0.5
    assert negative_elbo(logits, x, mu, logvar).item() == pytest.approx(2 * math.log(2) + 0.5)


@pytest.fixture(scope="module")
def trained_vae():
    from reconlab.data import load_dataset

    torch.set_num_threads(2)
    ds = load_dataset("digits", None)
    spec = VAESpec(epochs=6)
    torch.manual_seed(spec.seed)
    vae = build(spec.builder, **spec.model_kwargs())
    before = heldout_neg_elbo(vae, ds.x_test)
    opt = torch.optim.Adam(vae.parameters(), lr=spec.lr)
    for e in range(spec.epochs):
        train_epoch(vae, opt, ds.x_train, spec, e, 0, 1, "cpu")
    return ds, vae, before


def test_training_lowers_the_negative_elbo(trained_vae):
    ds, vae, before = trained_vae
    after = heldout_neg_elbo(vae, ds.x_test)
    assert after < 0.6 * before, (before, after)


def test_intermediate_examples_mix_two_codes_with_their_labels(trained_vae):
    ds, vae, _ = trained_vae
    x, labels, alpha = intermediate_examples(vae, ds.x_train, ds.y_train, 50, seed=3)
    assert x.shape == (50, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert torch.allclose(labels.sum(1), torch.ones(50))
    g = torch.Generator().manual_seed(3)
    i, j = torch.randint(len(ds.x_train), (50,), generator=g), torch.randint(len(ds.x_train), (50,), generator=g)
    a = torch.rand(50, generator=g)
    assert torch.equal(alpha, a)
    differ = ds.y_train[i] != ds.y_train[j]
    assert torch.allclose(labels[differ, :].gather(1, ds.y_train[i][differ, None]).squeeze(1), a[differ])
    # alpha = 1 decodes z1 itself
    mu, _ = vae.encode(ds.x_train[i[:1]])
    again, _, _ = intermediate_examples(vae, ds.x_train, ds.y_train, 50, seed=3)
    assert torch.equal(again, x)
    assert torch.allclose(vae.decode(mu), vae.decode(1.0 * mu + 0.0 * mu))


def test_enriched_training_set_and_its_spec(trained_vae):
    ds, vae, _ = trained_vae
    vspec = VAESpec(epochs=6)
    spec = recipe_spec("adam_vae", "bn", 2, vae=vspec.digest())
    assert spec.vae == vspec.digest() and spec.vae_mix == 0.5
    x, y = training_set(spec, ds, {vspec.digest(): ({"builder": "vae", "kwargs": vspec.model_kwargs()},
                                                     vae.state_dict())})
    n = len(ds.x_train)
    assert x.shape[0] == n + round(0.5 * n) and y.shape == (x.shape[0], 10)
    assert torch.equal(y[:n].argmax(1), ds.y_train) and torch.allclose(y.sum(1), torch.ones(len(y)))
    with pytest.raises(ValueError, match="was not given"):
        training_set(spec, ds, {})
    for bad in ({"vae": "abc"}, {"vae_mix": 0.5}, {"vae": "abc", "vae_mix": 0.5, "fgsm_eps": 0.1}):
        with pytest.raises(ValueError):
            TrainSpec(**bad)
    # specs without intermediate classes keep the digests of stores made before they existed
    assert VARIANTS["sgd"].digest() == "1800675d4409dfd8" and VARIANTS["verifier"].digest() == "e56f2ebc9f525bb3"
    assert recipe_spec("sgd_vae", "bn", 1).digest() != recipe_spec("sgd", "bn", 1).digest()


def test_soft_labels_train_with_the_distribution_loss():
    """With one-hot targets the distribution loss is cross entropy; with a
    mixture it is minimised by predicting the mixture."""
    import torch.nn.functional as F

    from reconlab.training.classifier import train_epoch as clf_epoch

    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    p = torch.tensor([0.3, 0.7] + [0.0] * 8).repeat(64, 1)
    spec = TrainSpec(builder="classifier_plain", width=4, optimizer="adam", lr=1e-2, batch_size=64, epochs=1)
    m = build("classifier_plain", width=4)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for e in range(60):
        clf_epoch(m, opt, x, p, spec, e, 0, 1, "cpu")
    assert torch.allclose(F.softmax(m(x), 1)[:, :2].mean(0), torch.tensor([0.3, 0.7]), atol=0.05)


def test_latent_tsne_is_a_png(trained_vae):
    ds, vae, _ = trained_vae
    png = latent_tsne_png(vae, ds.x_test[:80], ds.y_test[:80])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
