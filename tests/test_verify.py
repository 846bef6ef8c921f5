"""The verifier ensemble, the realism score and the readability check (issue
14, part 2): a tiny adversarial perturbation that makes the inverted
classifier say the target is not a successful inversion, and noise optimised
to fool the whole ensemble is a hit but not readable."""

import pytest
import torch
import torch.nn.functional as F

from reconlab.inversion.verify import VerifierEnsemble, realism, vae_projection


@pytest.fixture(scope="module")
def trained():
    """The SGD classifier that gets inverted, the three verifiers and the
    reader VAE (the projector), trained briefly in-process on the embedded
    digits."""
    from reconlab.data import load_dataset
    from reconlab.training import classifier, vae

    torch.set_num_threads(2)
    ds = load_dataset("digits", None)
    victim = classifier.train_local(classifier.recipe_spec("sgd", "bn", 1), ds, 4)
    members = {k: classifier.train_local(s, ds, 4) for k, s in classifier.VERIFIERS.items()}
    return ds, victim, members, vae.train_local(vae.READER_VAE_SPEC, ds)


def test_every_member_reads_real_digits(trained):
    ds, _, members, vae = trained
    ens = VerifierEnsemble(members)
    s = ens.scores(ds.x_test, ds.y_test)
    assert ens.quorum == 2 and s["hit"].mean() > 0.9
    for m in members.values():
        assert (m(ds.x_test).argmax(1) == ds.y_test).float().mean() > 0.85


def test_a_tiny_adversarial_perturbation_is_not_a_successful_inversion(trained):
    """Targeted iterative FGSM (L-inf 0.15) turns real digits into the next
    class for the inverted classifier; the ensemble does not agree, and the
    realism score stays far below that of real digits of the target class."""
    from reconlab.attacks.denoiser import pgd

    ds, victim, members, vae = trained
    n = len(ds.x_test) // 2
    x, y = ds.x_test[:40], ds.y_test[:40]
    refs_x, refs_y = ds.x_test[n:], ds.y_test[n:]  # held-out real digits for realism
    target = (y + 1) % 10
    adv = pgd(lambda z: -F.cross_entropy(victim(z), target, reduction="none"), x, eps=0.15, steps=100,
              alpha=0.0075, random_start=False)
    assert (adv - x).abs().max() <= 0.15 + 1e-6
    fooled = (victim(adv).argmax(1) == target).float().mean().item()
    assert fooled >= 0.85  # the inverted classifier alone would call these inversions successful
    ens = VerifierEnsemble(members, projector=vae_projection(vae))
    s = ens.scores(adv, target)
    assert s["hit"].mean().item() <= 0.1 and s["readable"].mean().item() <= 0.1
    real_targets = ds.x_test[:n][ds.y_test[:n] == 3][:10]
    real = realism(real_targets, torch.full((len(real_targets),), 3), refs_x, refs_y).mean()
    fake = realism(adv, target, refs_x, refs_y).mean()
    assert fake < real - 0.15, (float(fake), float(real))


def test_real_digits_are_readable_and_noise_that_fools_the_ensemble_is_not(trained):
    """The readability check's calibration: most real held-out digits pass.
    Its point: images optimised from noise until the whole ensemble says the
    target (no prior: what an inversion without TV finds) are hits, yet
    their projection onto real digits is mostly another digit."""
    from reconlab.inversion import invert

    ds, _, members, vae = trained
    ens = VerifierEnsemble(members, projector=vae_projection(vae))
    real_rate = ens.real_readable_rate(ds.x_test, ds.y_test)
    assert real_rate >= 0.75, real_rate

    class Sum(torch.nn.Module):  # the ensemble as one network: summed log-probabilities
        def forward(self, x):
            return sum(m(x).log_softmax(1) for m in members.values())

    target = torch.arange(10).repeat(3)
    x0 = (0.5 + 0.2 * torch.randn(len(target), 1, 28, 28, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    x = invert(Sum(), target, x0, steps=100, lr=0.05)
    s = ens.scores(x, target)
    assert s["hit"].mean().item() >= 0.8, float(s["hit"].mean())
    assert s["readable"].mean().item() <= 0.3, float(s["readable"].mean())


def test_quorum_and_realism_follow_their_definitions():
    class Fixed(torch.nn.Module):
        def __init__(self, labels):
            super().__init__()
            self.labels = labels

        def forward(self, x):
            return F.one_hot(self.labels, 10).float() * 10

    target = torch.tensor([0, 1, 2])
    members = {"a": Fixed(torch.tensor([0, 1, 9])), "b": Fixed(torch.tensor([0, 9, 9])),
               "c": Fixed(torch.tensor([9, 1, 9]))}
    s = VerifierEnsemble(members).scores(torch.zeros(3, 1, 28, 28), target)
    assert s["votes"].tolist() == [2, 2, 0] and s["hit"].tolist() == [1, 1, 0]
    assert s["conf"][0].item() == pytest.approx(2 / 3, abs=1e-3) and s["conf"][2].item() < 1e-3  # mean probability
    assert VerifierEnsemble(members, quorum=3).scores(torch.zeros(3, 1, 28, 28), target)["hit"].tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        VerifierEnsemble(members, quorum=4)
    assert "readable" not in VerifierEnsemble(members).scores(torch.zeros(3, 1, 28, 28), target)

    class ByPixel(torch.nn.Module):  # reads the label from the first pixel (label / 10)
        def forward(self, x):
            return F.one_hot((x[:, 0, 0, 0] * 10).round().long(), 10).float() * 10

    readers = {k: ByPixel() for k in "abc"}
    x = torch.zeros(3, 1, 28, 28)
    x[:, 0, 0, 0] = torch.tensor([0.0, 0.1, 0.9])
    # readable = a hit whose projection is a hit: projecting every image onto a "9" keeps only the 9
    s = VerifierEnsemble(readers, projector=lambda z: torch.full_like(z, 0.9)).scores(x, torch.tensor([0, 1, 9]))
    assert s["hit"].tolist() == [1, 1, 1] and s["readable"].tolist() == [0, 0, 1]
    g = torch.Generator().manual_seed(0)
    refs = torch.rand(6, 1, 28, 28, generator=g)
    ry = torch.tensor([0, 0, 1, 1, 2, 2])
    r = realism(refs[[1, 2]], torch.tensor([0, 0]), refs, ry)  # a reference of its class, and one of another
    assert r[0] == pytest.approx(1.0, abs=1e-5) and r[1] < 0.5
