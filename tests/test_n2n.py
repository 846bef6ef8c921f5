"""Noise2Noise denoisers (issue 13, part 4): the U-Net, the losses and their
annealing, the ramp-down, noisy vs clean targets, the PGD defence, and the
denoise sweep's trial config and findings, in-process. The Ray Train + Tune
path runs in tests/test_denoise_job.py."""

import pytest
import torch
import torch.nn as nn

from reconlab.training.n2n import (N2NSpec, adversarial_inputs, attack_scores, l0_gamma, loss_fn, make_noise,
                                   rampdown_lr, train_epoch)


def test_the_unet_is_the_papers():
    from reconlab.models import build

    m = build("n2n_unet")
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [48] * 7 + [96] * 8 + [64, 32, 3]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert convs[-3].in_channels == 96 + 3  # the last stage concatenates the input
    assert not any(isinstance(c, (nn.BatchNorm2d, nn.GroupNorm)) for c in m.modules())
    assert {a.negative_slope for a in m.modules() if isinstance(a, nn.LeakyReLU)} == {0.1}
    assert sum(p.numel() for p in m.parameters()) == 991_203
    x = torch.rand(2, 3, 32, 32)
    assert m(x).shape == x.shape
    with pytest.raises(ValueError, match="divisible by 32"):
        m(torch.rand(1, 3, 28, 28))


def test_the_unet_works_around_minus_half_to_half():
    """Zero weights everywhere: the output is the input shift undone, 0.5."""
    from reconlab.models import build

    m = build("n2n_unet", channels=1, width=4, levels=2)
    for p in m.parameters():
        nn.init.zeros_(p)
    assert torch.allclose(m(torch.rand(1, 1, 8, 8)), torch.full((1, 1, 8, 8), 0.5))


def test_l0_is_annealed_from_l2_to_zero():
    assert l0_gamma(0) == 2 and l0_gamma(0.5) == 1 and l0_gamma(1) == 0 and l0_gamma(2) == 0
    a, b = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    assert torch.allclose(loss_fn("l0", a, b, 0.0), loss_fn("l2", a, b, 0.0), atol=1e-6)
    assert torch.allclose(loss_fn("l0", a, b, 0.5), loss_fn("l1", a, b, 0.5), atol=1e-6)
    assert torch.allclose(loss_fn("l0", a, b, 1.0), torch.ones(3))
    assert loss_fn("l2", a, b, 0).shape == (3,)


def test_the_ramp_down_is_cos_squared_over_the_last_30_percent():
    lr, total = 1e-3, 100
    assert rampdown_lr(lr, 0, total, 0.3) == lr and rampdown_lr(lr, 69, total, 0.3) == lr
    assert rampdown_lr(lr, 85, total, 0.3) == pytest.approx(lr * 0.25)  # halfway: (0.5 + 0.5 cos(pi/2))²
    assert rampdown_lr(lr, 100, total, 0.3) == pytest.approx(0, abs=1e-12)
    assert rampdown_lr(lr, 99, total, 0.0) == lr


@pytest.mark.parametrize("noise, level", [("gaussian", 25 / 255), ("poisson", 100.0), ("impulse_n2n", 0.5),
                                          ("impulse_gaussian", 0.5)])
def test_evaluation_noise_is_the_stated_setting_and_seeded(noise, level):
    spec = N2NSpec(noise=noise)
    x = torch.full((64, 3, 16, 16), 0.5)
    a, b = make_noise(spec, 7, evaluation=True)(x), make_noise(spec, 7, evaluation=True)(x)
    assert torch.equal(a, b) and not torch.equal(a, make_noise(spec, 8, evaluation=True)(x))
    if noise == "gaussian":
        assert (a - x).std().item() == pytest.approx(level, rel=0.02)
    elif noise == "poisson":  # exactly 100 photons: variance x / 100
        assert (a - x).var().item() == pytest.approx(0.5 / level, rel=0.05)
    else:
        assert ((a != x).any(1).float().mean().item()) == pytest.approx(level, abs=0.02)


def tiny(**kw):
    return N2NSpec(channels=1, width=4, levels=1, batch_size=8, epochs=2, epoch_images=32, **kw)


def fit_tiny(spec, x):
    from reconlab.models import build

    torch.manual_seed(spec.seed)
    m = build(spec.builder, **spec.model_kwargs())
    opt = torch.optim.Adam(m.parameters(), lr=spec.lr)
    losses = [train_epoch(m, opt, x, spec, e, 0, 1, "cpu")[0] for e in range(spec.epochs)]
    return m, losses


def test_training_is_seeded_and_targets_are_noisy_or_clean():
    x = torch.rand(64, 1, 8, 8)
    m1, l1 = fit_tiny(tiny(), x)
    m2, l2 = fit_tiny(tiny(), x)
    assert l1 == l2 and all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    _, lc = fit_tiny(tiny(target="clean"), x)
    # a noisy target adds its own noise variance to the loss: about sigma² on average (sigma ~ U[0, 50/255])
    assert l1[0] - lc[0] > 0.5 * (50 / 255) ** 2 / 3


def test_pgd_in_the_loop_stays_in_its_budget_and_leaves_the_weights_trainable():
    from reconlab.models import build

    spec = tiny(adv_eps=4 / 255, adv_steps=3)
    m = build(spec.builder, **spec.model_kwargs())
    clean = torch.rand(4, 1, 8, 8)
    noisy = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)
    adv = adversarial_inputs(m, noisy, clean, spec, 0.0, seed=0)
    assert (adv - noisy).abs().max() <= 4 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (loss_fn("l2", m(adv), clean, 0) > loss_fn("l2", m(noisy), clean, 0)).all()
    assert all(p.requires_grad and p.grad is None for p in m.parameters())
    scores = attack_scores(m, noisy, clean, [2 / 255, 8 / 255], steps=3, seed=0)
    assert scores[8 / 255].mean() < scores[2 / 255].mean()
    assert all(p.requires_grad for p in m.parameters())  # the next epoch still trains
    x = torch.rand(64, 1, 8, 8)
    _, plain = fit_tiny(tiny(), x)
    _, defended = fit_tiny(spec, x)
    assert defended != plain  # the attack changed what it trained on


def test_bad_specs_are_refused():
    for bad, match in (({"noise": "speckle"}, "unknown noise"), ({"loss": "l3"}, "unknown loss"),
                       ({"target": "both"}, "unknown target"), ({"lr": 0}, "lr"), ({"adv_eps": 2}, "adv_eps"),
                       ({"noise": "impulse_n2n", "level": 1.5}, "probability")):
        with pytest.raises(ValueError, match=match):
            N2NSpec(**bad)


def test_arms_map_onto_specs():
    from reconlab.studies.denoise.trial import DenoiseTrialConfig, parse_arm

    assert parse_arm("impulse_n2n/l0/noisy") == ("impulse_n2n", "l0", "noisy", False)
    d = DenoiseTrialConfig(arm="gaussian/l2/clean/pgd", adv_eps=0.02).train_spec()
    assert (d.noise, d.loss, d.target, d.adv_eps) == ("gaussian", "l2", "clean", 0.02)
    assert DenoiseTrialConfig(arm="gaussian/l2/clean", adv_eps=0.02).train_spec().adv_eps == 0
    for bad in ("gaussian/l2", "gaussian/l2/noisy/fgsm", "speckle/l2/noisy", "gaussian/l2/both"):
        with pytest.raises(ValueError, match="arm"):
            DenoiseTrialConfig(arm=bad)


def test_the_defended_arm_is_chosen_for_clean_and_attacked_psnr():
    from reconlab.studies.denoise.trial import objective

    m = {"test_psnr": 30.0, "pgd_psnr_4": 20.0}
    assert objective(m, defended=False) == 30 and objective(m, defended=True) == 25
    assert objective({"test_psnr": 28.0}, defended=True) == 28  # an epoch before the attack


def _res(psnr, noisy=None, pgd4=None):
    psnr = torch.tensor(psnr)
    return {"per_image": {"psnr": psnr, "noisy_psnr": torch.tensor(noisy) if noisy else psnr - 10},
            "pgd": {"4": torch.tensor(pgd4) if pgd4 else psnr - 1}}


def test_findings_are_paired_verdicts_against_the_issues_goals():
    from reconlab.studies.denoise.study import findings

    results = {
        "gaussian/l2/noisy": _res([30.0, 31.0, 29.5, 30.5], noisy=[20.0, 20.5, 20.2, 20.1]),
        "gaussian/l2/clean": _res([30.05, 31.1, 29.6, 30.5], pgd4=[27.0, 28.2, 26.5, 27.6]),
        "impulse_n2n/l0/noisy": _res([25.0, 26.0, 27.0, 25.5]),
        "impulse_n2n/l2/noisy": _res([22.0, 22.5, 23.0, 22.4]),
        "gaussian/l2/clean/pgd": _res([29.9, 31.0, 29.4, 30.4], pgd4=[29.3, 30.4, 28.7, 29.8]),
    }
    lines = findings(results)
    text = "\n".join(lines)
    assert "gaussian/l2/noisy: denoised - noisy PSNR >= 9 dB: HOLDS" in text
    assert "gaussian/l2: noisy targets land within 0.2 dB of clean targets" in text
    assert "impulse_n2n/noisy: the annealed L0 beats L2 by >= 1 dB: HOLDS" in text
    defence = [line for line in lines if "loses <= a third" in line][0]
    assert "HOLDS" in defence and "(0.62 vs 2.99 dB" in defence
    assert ">= -0.5): HOLDS" in [line for line in lines if "clean PSNR within 0.5 dB" in line][0]
    weak = dict(results, **{"gaussian/l2/clean/pgd": _res([29.0, 30.0, 28.5, 29.5], pgd4=[27.0, 28.0, 26.4, 27.5])})
    text = "\n".join(findings(weak))
    assert "loses <= a third of the PSNR gaussian/l2/clean loses to PGD (2.03 vs 2.99 dB" in text
    assert "DOES NOT HOLD" in text
