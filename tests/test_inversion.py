import pytest
import torch

from reconlab.inversion import BNStatsPrior, invert, l2, tv
from reconlab.inversion.tasks import pick_sources, task_batch
from reconlab.models import build


def test_tv_and_l2_follow_the_thesis_formula():
    x = torch.tensor([[[[0.0, 1.0], [3.0, 5.0]]]])
    # right diffs: (1-0)^2 + (5-3)^2 = 5; down diffs: (3-0)^2 + (5-1)^2 = 25
    assert tv(x).tolist() == [30.0]
    assert l2(x).tolist() == [35.0]


def test_bn_prior_per_image_matches_the_definition():
    torch.manual_seed(0)
    m = build("classifier_small", width=4).eval()
    bn1 = m.features[1]
    bn1.running_mean.uniform_(-1, 1)
    bn1.running_var.uniform_(0.5, 2)
    x = torch.rand(3, 1, 28, 28)
    with BNStatsPrior(m) as p:
        m(x)
        r = p.value()
    f = m.features[0]((x - 0.5) / 0.5)  # the first BN layer's input
    mu, var = f.mean((2, 3)), f.var((2, 3), unbiased=False)
    first = (mu - bn1.running_mean).norm(dim=1) + (var - bn1.running_var).norm(dim=1)
    assert r.shape == (3,)
    assert (r - 10 * first).min() > 0  # first layer x10, later layers add non-negative terms
    with BNStatsPrior(m) as p:  # hooks are removed on exit: no stale terms
        pass
    with pytest.raises(RuntimeError):
        p.value()


def test_batched_inversion_equals_one_image_at_a_time():
    torch.manual_seed(0)
    m = build("classifier_small", width=4).eval()
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(5, 1, 28, 28, generator=g)
    t = torch.tensor([0, 3, 3, 7, 9])
    kw = dict(steps=15, lr=0.05, optimizer="adam", tv_weight=1e-2, l2_weight=1e-3, bn_weight=0.05)
    batched = invert(m, t, x0, **kw)
    single = torch.cat([invert(m, t[i : i + 1], x0[i : i + 1], **kw) for i in range(5)])
    assert torch.allclose(batched, single, atol=1e-5)
    assert not torch.allclose(batched, x0)


def test_resume_continues_the_same_trajectory():
    torch.manual_seed(0)
    m = build("classifier_small", width=4).eval()
    x0 = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([1, 2])
    full = invert(m, t, x0, steps=10, lr=0.05)
    saved = {}
    invert(m, t, x0, steps=4, lr=0.05, callback=lambda s, x, l, o: saved.update(x=x.clone(), o=o.state_dict()),
           callback_every=4)
    resumed = invert(m, t, saved["x"], steps=10, lr=0.05, start_step=4, opt_state=saved["o"])
    assert torch.allclose(full, resumed, atol=1e-6)


def test_task_batch_layout(digits):
    src = pick_sources(digits.x_test, digits.y_test)
    assert [digits.y_test[(digits.x_test == s).flatten(1).all(1)][0].item() for s in src] == list(range(10))
    b = task_batch(src, restarts=3, init_scale=0.2, seed=0)
    assert b.x0.shape == (30 + 90, 1, 28, 28)
    assert b.target[:30].tolist() == list(range(10)) * 3
    assert (b.target[30:] != b.source[30:]).all() and (b.task[30:] == 2).all()
    assert torch.equal(b.x0[30], src[0])


def test_inversion_turns_noise_into_each_target_digit(digits):
    from reconlab.training.classifier import VARIANTS, accuracy, make_optimizer, train_epoch

    torch.manual_seed(0)
    spec = VARIANTS["sgd"]
    m = build(spec.builder, **spec.model_kwargs())
    opt = make_optimizer(spec, m.parameters())
    for e in range(3):
        train_epoch(m, opt, digits.x_train, digits.y_train, spec, e, 0, 1, "cpu")
    assert accuracy(m, digits.x_test, digits.y_test) > 0.9
    b = task_batch(pick_sources(digits.x_test, digits.y_test), restarts=2, init_scale=0.2, seed=0, task2=False)
    before = (m(b.x0).argmax(1) == b.target).float().mean().item()
    x = invert(m, b.target, b.x0, steps=40, lr=0.05, tv_weight=1e-3, l2_weight=1e-3)
    after = (m(x).argmax(1) == b.target).float().mean().item()
    assert before < 0.5 and after == 1.0
    assert 0.0 <= x.min() and x.max() <= 1.0


def untrained_shared(digits, **extra) -> dict:
    """A trial's ``shared`` payload with an untrained (seeded) sgd
    classifier, verifier ensemble and reader VAE: the trial's mechanics, not
    inversion quality."""
    from reconlab.training.classifier import VARIANTS, VERIFIERS
    from reconlab.training.vae import READER_VAE_SPEC

    shared = {"models": {}, "digests": {}, "sources": pick_sources(digits.x_test, digits.y_test),
              "class_means": digits.class_means(), "device": "cpu", "verifiers": list(VERIFIERS),
              "projector": "reader_vae", **extra}
    for v, spec in {"sgd": VARIANTS["sgd"], **VERIFIERS, "reader_vae": READER_VAE_SPEC}.items():
        torch.manual_seed(spec.seed)
        shared["models"][v] = ({"builder": spec.builder, "kwargs": spec.model_kwargs()},
                               build(spec.builder, **spec.model_kwargs()).state_dict())
        shared["digests"][v] = f"untrained-{v}"
    return shared


def test_trial_metrics_are_the_ensembles_vote_and_its_readable_hits_per_task(digits):
    """``evaluate`` reports the ensemble's hits and readable hits as given,
    overall and per task (task 1: the first 10 * restarts images)."""
    from reconlab.studies.inversion.trial import evaluate

    batch = task_batch(pick_sources(digits.x_test, digits.y_test), restarts=1, init_scale=0.2, seed=0)
    n = len(batch.target)  # 10 task-1 images, then 90 task-2
    hit, readable = torch.zeros(n), torch.zeros(n)
    hit[:5], hit[10:55], readable[:2], readable[10:19] = 1, 1, 1, 1

    class Stub:
        def scores(self, x, target):
            return {"hit": hit, "readable": readable, "conf": torch.full((n,), 0.3)}

    def says_the_target(x):
        return torch.nn.functional.one_hot(batch.target, 10).float()

    m = evaluate(batch.x0, batch, says_the_target, Stub(), digits.class_means(), torch.zeros(n))
    assert (m["verifier_acc"], m["verifier_acc_task1"], m["verifier_acc_task2"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (m["readable_acc"], m["readable_acc_task1"], m["readable_acc_task2"]) == pytest.approx((0.11, 0.2, 0.1))
    assert m["verifier_conf"] == pytest.approx(0.3) and m["classifier_acc"] == 1.0


@pytest.mark.parametrize("period, stop_points, expected", [(0, [], [True] * 4), (1e9, [], [False] * 3 + [True]),
                                                          (1e9, [1, 3], [True, False, True, True])])
def test_trial_checkpoints_every_period_at_stop_points_and_with_its_last_report(digits, period, stop_points,
                                                                                 expected):
    """The trial's checkpoint rule: after ``checkpoint_period_s`` of trial
    time (0: every report), at each report where ASHA may stop it, and always
    with the last report."""
    import os

    from reconlab.studies.inversion.trial import run_trial

    shared = untrained_shared(digits, stop_points=stop_points)
    states = []

    def report(metrics, state_dir):
        states.append(state_dir is not None and torch.load(os.path.join(state_dir, "state.pt"),
                                                          weights_only=True)["step"] == metrics["step"])

    cfg = {"variant": "sgd", "steps": 8, "report_every": 2, "restarts": 1, "checkpoint_period_s": period}
    last = run_trial(cfg, shared, report)
    assert states == expected and last["step"] == 8


@pytest.mark.parametrize("metric, mode, worst", [("verifier_acc", "max", 0.0), ("ssim_class_mean", "max", -1.0),
                                                 ("objective", "min", "huge"), ("objective", "max", 0.0)])
def test_a_diverging_trial_reports_the_worst_finite_score_for_the_sweeps_metric_and_mode(digits, metric, mode,
                                                                                           worst):
    """A TV weight of 1e38 overflows the float32 objective at once: the trial's last report holds every
    metric, finite, and the sweep's metric at its worst for the sweep's mode
    (so Optuna records a complete bad trial, not a pruned one)."""
    import math
    import sys

    from reconlab.studies.inversion.trial import METRICS, run_trial
    from reconlab.tracking import DIVERGED

    shared = untrained_shared(digits, worst={"metric": metric, "mode": mode})
    reports = []
    cfg = {"variant": "sgd", "optimizer": "sgd", "init_scale": 1.0, "tv_weight": 1e38, "steps": 8, "report_every": 1,
           "restarts": 1}
    last = run_trial(cfg, shared, lambda m, d: reports.append(m))
    assert last[DIVERGED] == 1.0 and reports[-1] is last
    assert set(METRICS) <= set(last) and all(math.isfinite(last[k]) for k in METRICS)
    assert last[metric] == (sys.float_info.max if worst == "huge" else worst)


def test_a_diverged_xor_run_reports_every_metric_at_its_worst():
    import sys

    from reconlab.training.xor_unet import diverged_scores

    r = diverged_scores(11.8)
    assert (r["test_psnr"], r["test_ssim"], r["psnr_gain"], r["train_loss"]) == (0.0, -1.0, -11.8, sys.float_info.max)
    assert diverged_scores(11.8, metric="train_loss", mode="min")["train_loss"] == sys.float_info.max
    assert diverged_scores(None, metric="psnr_gain", mode="max")["psnr_gain"] == -sys.float_info.max
