"""The paired comparison (issue 14, parts 1 and 6): its trial config, the
inversion objective per head, the task subsets, the two-level bootstrap and
the verdicts from known per-image results."""

import dataclasses

import numpy as np
import pytest
import torch

from reconlab.stats import paired_bootstrap
from reconlab.studies.thesis.trial import ThesisTrialConfig


def test_groups_follow_the_heads_and_the_objective():
    cfg = ThesisTrialConfig(recipes=("sgd", "sphere3"), archs=("plain", "bn"), classifier_seeds=(1, 2))
    assert cfg.groups() == [("sgd", "plain"), ("sgd", "bn"), ("sphere3", "bn")]  # prototypes: the BN CNN only
    assert cfg.classifiers()[:2] == ["sgd-plain-s1", "sgd-plain-s2"]
    bn = ThesisTrialConfig(objective="tv_l2_bn", recipes=("sgd",), archs=("plain", "bn"))
    assert bn.groups() == [("sgd", "bn")]  # the BN prior needs BatchNorm layers
    for bad in ({"recipes": ("sgd", "rmsprop")}, {"archs": ()}, {"classifier_seeds": (1, 1)},
                {"objective": "tv_l2_bn", "archs": ("plain",)}, {"task2_per_source": 10}, {"lr": 0.0}):
        with pytest.raises(ValueError):
            ThesisTrialConfig(**bad)


def test_task2_subset_is_seeded_and_never_the_source():
    from reconlab.inversion.tasks import task_batch

    sources = torch.rand(10, 1, 28, 28)
    b = task_batch(sources, restarts=2, init_scale=0.2, seed=3, task2_per_source=3)
    t2 = b.task == 2
    assert (b.task == 1).sum() == 20 and t2.sum() == 30
    assert (b.source[t2] != b.target[t2]).all()
    assert torch.bincount(b.source[t2], minlength=10).tolist() == [3] * 10
    again = task_batch(sources, restarts=2, init_scale=0.2, seed=3, task2_per_source=3)
    other = task_batch(sources, restarts=2, init_scale=0.2, seed=4, task2_per_source=3)
    assert torch.equal(b.target, again.target) and not torch.equal(b.target, other.target)
    full = task_batch(sources, restarts=2, init_scale=0.2, seed=3)
    assert (full.task == 2).sum() == 90 and torch.equal(full.x0[:20], b.x0[:20])  # task 1 unchanged


@pytest.mark.parametrize("geometry,dim", [("sphere", 3), ("hyperbolic", 5)])
def test_a_prototype_head_is_inverted_with_its_own_loss(geometry, dim):
    """The objective follows the head: (1 - cos)^2 to the target prototype on
    the sphere, the Busemann loss to its ideal point in the ball; inverting
    lowers it and the head then predicts the target."""
    from reconlab.inversion import invert
    from reconlab.inversion.invert import head_loss
    from reconlab.models import build

    torch.manual_seed(0)
    m = build("classifier_prototype", width=4, dim=dim, geometry=geometry).eval()
    x0, target = torch.rand(10, 1, 28, 28), torch.arange(10)
    loss, scores = head_loss(m, x0, target)
    assert torch.allclose(loss, m.prototype_loss(m(x0, embed=True), target, reduction="none"))
    assert torch.allclose(scores, m(x0))
    x = invert(m, target, x0, steps=150, lr=0.05)
    after, scores = head_loss(m, x, target)
    assert after.mean() < 0.5 * loss.mean()
    assert (scores.argmax(1) == target).float().mean() >= 0.8


def test_softmax_objective_is_cross_entropy():
    from reconlab.inversion.invert import head_loss
    from reconlab.models import build

    m = build("classifier_plain", width=4).eval()
    x, t = torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3])
    loss, logits = head_loss(m, x, t)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(m(x), t, reduction="none"))


def test_bootstrap_interval_counts_seeds_and_images():
    rng = np.random.default_rng(0)
    clear = rng.binomial(1, 0.8, (3, 60)) - rng.binomial(1, 0.2, (3, 60))
    assert paired_bootstrap(clear).verdict() == "HOLDS"
    assert paired_bootstrap(-clear).verdict() == "DOES NOT HOLD"
    assert paired_bootstrap(np.zeros((3, 60))).verdict() == "UNDECIDED"
    a, b = paired_bootstrap(clear, seed=1), paired_bootstrap(clear, seed=1)
    assert a == b and a.n == 180 and a.low < a.mean < a.high
    # the same images, but seeds that disagree (one seed reversed): the seed level widens the interval
    split = np.stack([clear[0], clear[1], -clear[2]])
    flat = paired_bootstrap(split.reshape(1, -1))
    assert paired_bootstrap(split).high - paired_bootstrap(split).low > flat.high - flat.low
    with pytest.raises(ValueError):
        paired_bootstrap(np.zeros(5))


def _evidence(tv, hits: dict[str, list[float]], task):
    """Known per-image results; realism: SGD's images 0.3 more realistic than
    everyone's; readable: as the hits, except that no SGD hit on task 2 is."""
    from reconlab.studies.thesis.study import TrialEvidence

    cfg = ThesisTrialConfig(recipes=("sgd", "adam", "sphere3"), archs=("bn",), classifier_seeds=(1, 2, 3),
                            tv_weight=tv)
    names = cfg.classifiers()
    hit = torch.tensor([hits[n.rsplit("-s", 1)[0]] for n in names])
    realism = torch.tensor([[0.5 if n.startswith("sgd") else 0.2] * hit.shape[1] for n in names])
    readable = hit.clone()
    readable[[n.startswith("sgd") for n in names]] *= (task == 1).float()
    return TrialEvidence(cfg, cfg.steps, names, hit, readable, realism, task, {})


def test_verdicts_pair_arms_at_the_configuration_best_for_all():
    from reconlab.studies.thesis.study import curve, findings, verdicts

    task = torch.tensor([1] * 20 + [2] * 20)
    ones, zeros, half = [1.0] * 20, [0.0] * 20, [1.0, 0.0] * 10
    # at TV 0.1 SGD reads on task 1 and Adam does not; on task 2 they tie
    good = _evidence(0.1, {"sgd-bn": ones + half, "adam-bn": zeros + half, "sphere3-bn": ones + half}, task)
    # at TV 1 everything is worse on average: it is not selected, though Adam wins there
    bad = _evidence(1.0, {"sgd-bn": zeros + zeros, "adam-bn": half + zeros, "sphere3-bn": zeros + zeros}, task)
    rows = verdicts([bad, good])
    assert rows == verdicts([good, bad])  # the choice does not depend on the order trials end in
    by = {(r["task"], r["claim"][:12]): r for r in rows}
    sgd_adam_1 = by[("task1", "SGD inverts ")]
    assert sgd_adam_1["tv_weight"] == 0.1 and sgd_adam_1["verdict"] == "HOLDS"
    assert sgd_adam_1["A − B (points)"] == pytest.approx(100.0)
    assert by[("task2", "SGD inverts ")]["verdict"] == "UNDECIDED"  # a tie on success ...
    assert by[("task2", "SGD inverts ")]["realism verdict"] == "HOLDS"  # ... not on realism
    assert by[("task2", "SGD inverts ")]["realism A − B"] == pytest.approx(0.3)
    # ... and on readability Adam is ahead: SGD's task-2 hits all fail the projection check
    assert by[("task2", "SGD inverts ")]["readable verdict"] == "DOES NOT HOLD"
    assert by[("task2", "SGD inverts ")]["readable A / B (%)"] == "0.0 / 50.0"
    assert by[("task2", "SGD inverts ")]["readable A − B (points)"] == pytest.approx(-50.0)
    assert sgd_adam_1["readable verdict"] == "HOLDS"
    proto = [r for r in rows if "spherical" in r["claim"] and r["task"] == "task1"][0]
    assert proto["verdict"] == "UNDECIDED" and proto["A − B (points)"] == 0
    assert any(f.startswith("SGD inverts better than Adam (ch. 2): task1/bn/tv_l2 HOLDS (+100.0 [+100.0, +100.0]; "
                            "readable HOLDS; realism HOLDS)") for f in findings(rows))
    # checkpoints from before the readability check: its columns stay empty, the rest is unchanged
    old = [dataclasses.replace(e, readable=None) for e in (bad, good)]
    again = verdicts(old)
    assert [r["verdict"] for r in again] == [r["verdict"] for r in rows]
    assert {r["readable verdict"] for r in again} == {""}
    table, cols = curve([bad, good])
    assert cols[4:] == ["sgd-bn", "adam-bn", "sphere3-bn"] and len(table) == 4


def _tiny_shared():
    """Untrained tiny models standing in for the trained ones: what a trial
    gets through the object store."""
    from reconlab.data import load_dataset
    from reconlab.inversion.tasks import pick_sources
    from reconlab.models import build

    torch.manual_seed(0)
    builds = {"sgd-bn-s1": ("classifier_small", {"width": 4}), "adam-bn-s1": ("classifier_small", {"width": 4}),
              "sphere3-bn-s1": ("classifier_prototype", {"width": 4, "dim": 3}),
              "v1": ("classifier_mlp", {"width": 16}), "v2": ("classifier_lenet", {"width": 2}),
              "v3": ("classifier_plain", {"width": 2}), "reader": ("vae", {"latent": 4, "hidden": 16})}
    models = {k: ({"builder": b, "kwargs": kw}, build(b, **kw).state_dict()) for k, (b, kw) in builds.items()}
    ds = load_dataset("digits", None)
    return {"models": models, "digests": {k: k for k in models}, "verifiers": ["v1", "v2", "v3"], "projector": "reader",
            "sources": pick_sources(ds.x_test, ds.y_test), "real_x": ds.x_test[:60], "real_y": ds.y_test[:60],
            "device": "cpu"}


def test_a_resumed_trial_ends_where_an_uninterrupted_one_does(tmp_path):
    """Every report checkpoints every classifier's images and optimizer
    state: a trial restored from its first report finishes bit-identical."""
    import shutil

    from reconlab.studies.thesis.trial import load_state, run_trial

    config = {"recipes": ("sgd", "adam", "sphere3"), "archs": ("bn",), "classifier_seeds": (1,), "steps": 12,
              "report_every": 4, "restarts": 1, "task2_per_source": 1, "tv_weight": 0.1}
    shared = _tiny_shared()
    reports = []

    def report(metrics, state_dir):
        keep = tmp_path / f"r{len(reports)}"
        shutil.copytree(state_dir, keep)
        reports.append((metrics, keep))

    whole = run_trial(config, shared, report)
    assert [m["step"] for m, _ in reports] == [4, 8, 12]
    again = []
    resumed = run_trial(config, shared, lambda m, d: again.append(m), checkpoint_dir=str(reports[0][1]))
    assert [m["step"] for m in again] == [8, 12] and resumed == whole
    a, b = load_state(str(reports[-1][1])), load_state(str(reports[0][1]))
    assert a["names"] == ["sgd-bn-s1", "adam-bn-s1", "sphere3-bn-s1"] and len(a["history"]) == 3
    assert a["history"][0]["hit"].shape == (3, 20) and torch.equal(a["history"][0]["hit"], b["history"][0]["hit"])
    assert a["history"][1]["x"].dtype == torch.uint8 and a["history"][1]["x"].shape == (3, 20, 1, 28, 28)
    from reconlab.studies.thesis.trial import grids

    png = grids(a, "sphere3-bn-s1", step=8)
    assert set(png) == {"task1.png", "task2.png"} and png["task1.png"] != grids(a, "sphere3-bn-s1")["task1.png"]
    assert set(whole) >= {"acc_task1", "acc_task2", "readable_task1", "realism_task1", "acc_task1.sphere3-bn",
                          "readable_task2.sphere3-bn", "classifier_acc"}
    for h in a["history"]:  # a readable image is a hit
        assert h["readable"].shape == h["hit"].shape and bool((h["readable"] <= h["hit"]).all())
