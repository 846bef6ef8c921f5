"""The verifier ensemble and the realism score (issue 14, part 2): a tiny
adversarial perturbation that makes the inverted classifier say the target is
not a successful inversion."""

import pytest
import torch
import torch.nn.functional as F

from reconlab.inversion.verify import VerifierEnsemble, realism


def _train(spec, ds, epochs):
    from reconlab.models import build
    from reconlab.training.classifier import make_optimizer, train_epoch

    torch.manual_seed(spec.seed)
    m = build(spec.builder, **spec.model_kwargs())
    opt = make_optimizer(spec, m.parameters())
    for e in range(epochs):
        train_epoch(m, opt, ds.x_train, ds.y_train, spec, e, 0, 1, "cpu")
    return m.eval()


@pytest.fixture(scope="module")
def trained():
    """The SGD classifier that gets inverted and the three verifiers, trained
    briefly in-process on the embedded digits."""
    from reconlab.data import load_dataset
    from reconlab.training.classifier import VERIFIERS, recipe_spec

    torch.set_num_threads(2)
    ds = load_dataset("digits", None)
    victim = _train(recipe_spec("sgd", "bn", 1), ds, 4)
    members = {k: _train(s, ds, 4) for k, s in VERIFIERS.items()}
    return ds, victim, members


def test_every_member_reads_real_digits(trained):
    ds, _, members = trained
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

    ds, victim, members = trained
    n = len(ds.x_test) // 2
    x, y = ds.x_test[:40], ds.y_test[:40]
    refs_x, refs_y = ds.x_test[n:], ds.y_test[n:]  # held-out real digits for realism
    target = (y + 1) % 10
    adv = pgd(lambda z: -F.cross_entropy(victim(z), target, reduction="none"), x, eps=0.15, steps=100,
              alpha=0.0075, random_start=False)
    assert (adv - x).abs().max() <= 0.15 + 1e-6
    fooled = (victim(adv).argmax(1) == target).float().mean().item()
    assert fooled >= 0.85  # the inverted classifier alone would call these inversions successful
    ens = VerifierEnsemble(members)
    assert ens.scores(adv, target)["hit"].mean().item() <= 0.1
    real_targets = ds.x_test[:n][ds.y_test[:n] == 3][:10]
    real = realism(real_targets, torch.full((len(real_targets),), 3), refs_x, refs_y).mean()
    fake = realism(adv, target, refs_x, refs_y).mean()
    assert fake < real - 0.15, (float(fake), float(real))


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
    assert VerifierEnsemble(members, quorum=3).scores(torch.zeros(3, 1, 28, 28), target)["hit"].tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        VerifierEnsemble(members, quorum=4)
    g = torch.Generator().manual_seed(0)
    refs = torch.rand(6, 1, 28, 28, generator=g)
    ry = torch.tensor([0, 0, 1, 1, 2, 2])
    r = realism(refs[[1, 2]], torch.tensor([0, 0]), refs, ry)  # a reference of its class, and one of another
    assert r[0] == pytest.approx(1.0, abs=1e-5) and r[1] < 0.5
