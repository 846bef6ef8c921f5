"""The adversarial sweep's trial and analysis in-process (issue 13, parts 3
and 5): the report's classifier, each point of each curve, DAG and PGD on a
denoiser, and the paired DE-vs-random verdict. The job runs end to end in
tests/test_adversarial_job.py; the attacks themselves in test_attacks.py."""

import pytest
import torch

from reconlab.studies.adversarial.trial import AdversarialTrialConfig, parse_point, run_trial


@pytest.fixture(scope="module")
def shared():
    """The report's classifier trained in-process (40 epochs of its SGD on
    digits) and a tiny N2N denoiser, as the job shares them."""
    import dataclasses

    from reconlab.data import load_dataset
    from reconlab.models import build
    from reconlab.training.classifier import VARIANTS, make_optimizer, train_epoch
    from reconlab.training.n2n import N2NSpec

    ds = load_dataset("digits")
    spec = dataclasses.replace(VARIANTS["report"], epochs=40)
    torch.manual_seed(spec.seed)
    clf = build(spec.builder, **spec.model_kwargs())
    opt = make_optimizer(spec, clf.parameters())
    for e in range(spec.epochs):
        train_epoch(clf, opt, ds.x_train, ds.y_train, spec, e, 0, 1, "cpu")
    nspec = N2NSpec(channels=1, width=4, levels=1)
    torch.manual_seed(0)
    den = build(nspec.builder, **nspec.model_kwargs())
    return {"x": ds.x_test, "y": ds.y_test, "denoise_x": ds.x_test[:16], "device": "cpu",
            "digests": {"classifier": "t", "denoiser:gaussian": "t"},
            "models": {"classifier": ({"builder": spec.builder, "kwargs": spec.model_kwargs()}, clf.state_dict()),
                       "denoiser:gaussian": ({"builder": nspec.builder, "kwargs": nspec.model_kwargs(),
                                              "spec": dataclasses.asdict(nspec)}, den.state_dict())}}


def test_the_reports_classifier_has_its_architecture_and_learns_digits(shared):
    from reconlab.models import build

    m = build("classifier_report")
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    lins = [c for c in m.modules() if isinstance(c, torch.nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 3, (5, 5)), (3, 5, (5, 5))]
    assert [(c.in_features, c.out_features) for c in lins] == [(80, 500), (500, 10)]
    final, _ = run_trial({"point": "fgsm 0"}, shared)
    assert final["clean_accuracy"] > 0.9 and final["accuracy"] == final["clean_accuracy"] and final["damage"] == 0


def test_fgsm_points_fall_with_eps_and_report_damage(shared):
    acc = [run_trial({"point": f"fgsm {e}"}, shared)[0]["accuracy"] for e in (0.05, 0.1, 0.2)]
    assert acc == sorted(acc, reverse=True) and acc[-1] < acc[0]


def test_noise_points_run_paired_seeds_on_the_same_images(shared):
    final, result = run_trial({"point": "salt_and_pepper 0.3", "images": 50, "repeats": 3}, shared)
    assert result["correct"].shape == (3, 50) and result["clean"].shape == (50,)
    assert not torch.equal(result["correct"][0], result["correct"][1]) or final["damage"] == 0
    assert final["accuracy"] == pytest.approx(result["correct"].mean().item())
    from reconlab.studies.adversarial.trial import files_of

    assert result["examples"].shape == (2, 8, 1, 28, 28) and (result["examples"][1] != result["examples"][0]).any()
    assert files_of(result)["examples_clean_attacked.png"].startswith(b"\x89PNG")
    again, _ = run_trial({"point": "salt_and_pepper 0.3", "images": 50, "repeats": 3}, shared)
    assert again["accuracy"] == final["accuracy"]  # seeded
    heavy, _ = run_trial({"point": "gaussian_pixels 0.6", "images": 50, "repeats": 3}, shared)
    light, _ = run_trial({"point": "gaussian_pixels 0.05", "images": 50, "repeats": 3}, shared)
    assert heavy["accuracy"] < light["accuracy"]


def test_one_pixel_points_spend_the_same_budget_on_the_same_images(shared):
    cfg = {"pixel_images": 12, "repeats": 2, "popsize": 100, "maxiter": 10}
    de, rde = run_trial({"point": "one_pixel_de 20", **cfg}, shared)
    rnd, rrnd = run_trial({"point": "one_pixel_random 20", **cfg}, shared)
    assert rde["correct"].shape == rrnd["correct"].shape == (2, 12)
    assert torch.equal(rde["clean"], rrnd["clean"])
    assert 0 < de["queries"] <= 1100 and 0 < rnd["queries"] <= 1100
    assert de["success_rate"] > 0 and de["accuracy"] < de["clean_accuracy"]  # 20 pixels do break some digits
    # an image the classifier got wrong is never attacked and stays wrong
    assert (rde["correct"][:, rde["clean"] == 0] == 0).all()
    assert de["damage"] >= 0 and de["success_rate"] == pytest.approx(
        ((rde["clean"] - rde["correct"]).clamp_min(0).sum(1) / rde["clean"].sum()).mean().item())


def test_dag_and_pgd_on_a_denoiser(shared):
    pgd, r = run_trial({"point": "pgd gaussian 4", "pgd_steps": 3}, shared)
    assert r["linf"].max() <= 4 / 255 + 1e-6 and pgd["psnr_drop"] > 0 and pgd["damage"] == pgd["psnr_drop"]
    assert r["linf"].shape == (16,) and run_trial({"point": "pgd gaussian 2", "pgd_steps": 1, "denoiser_images": 8},
                                                  shared)[1]["linf"].shape == (8,)
    dag, r = run_trial({"point": "dag gaussian", "iterations": 5, "gamma": 0.1}, shared)
    assert r["ratio"].shape == (16,) and dag["damage"] == pytest.approx(dag["mean_ratio"] - 1)
    assert r["linf"].max() <= 1 and 0 <= dag["share_in_band"] <= 1
    assert r["examples"].shape[:2] == (5, 8)
    assert torch.allclose(r["ratio"], r["psnr_denoised"] / r["psnr_attacked"])
    from reconlab.studies.adversarial.trial import files_of

    files = files_of(r)
    assert files["per_image.csv"].decode().startswith("image,psnr_denoised,psnr_attacked,ratio,linf,l2\n")
    assert files["examples_noisy_adv_denoised_denoisedadv_perturbation.png"].startswith(b"\x89PNG")


@pytest.mark.parametrize("text, match", [("fgsm", "expected 2 words"), ("fgsm x", "not a number"),
                                         ("one_pixel_de 2.5", "whole number"), ("dag speckle", "unknown denoiser"),
                                         ("pgd gaussian 0", "in \\(0, 255\\]"), ("cw 0.1", "unknown attack"),
                                         ("salt_and_pepper 1.2", "in \\[0, 1\\]"), ("fgsm nan", "not finite")])
def test_bad_points_are_refused(text, match):
    with pytest.raises(ValueError, match=match):
        parse_point(text)


def test_only_dag_points_are_searched():
    assert AdversarialTrialConfig.samples_per_stratum({"point": "dag poisson"}) is None
    assert AdversarialTrialConfig.samples_per_stratum({"point": "fgsm 0.1"}) == 1
    assert AdversarialTrialConfig(popsize=400, maxiter=100).queries == 40400


class _Res:
    def __init__(self, metrics):
        self.metrics = metrics


def test_de_against_random_is_a_paired_verdict():
    from reconlab.studies.adversarial.study import de_lines

    de = torch.tensor([[0.0, 0, 1, 0, 1, 0], [0, 1, 0, 0, 1, 0]])
    same = {"correct": de.clone()}
    worse = {"correct": torch.ones(2, 6)}
    best = {"one_pixel_de 5": _Res({"accuracy": 0.33, "queries": 100.0}),
            "one_pixel_random 5": _Res({"accuracy": 1.0, "queries": 400.0})}
    line = de_lines(best, {"one_pixel_de 5": {"correct": de}, "one_pixel_random 5": worse})[0]
    assert line.startswith("5 pixel(s): DE does at least as much damage as the random search at the same budget: "
                           "HOLDS (DE does more)") and "over 2 seeds x 6 images" in line
    line = de_lines(best, {"one_pixel_de 5": {"correct": de}, "one_pixel_random 5": same})[0]
    assert "UNDECIDED (no difference shown)" in line
    line = de_lines(best, {"one_pixel_de 5": worse, "one_pixel_random 5": {"correct": torch.zeros(2, 6)}})[0]
    assert "DOES NOT HOLD (random does more)" in line


def test_fgsm_monotonicity_is_checked_not_assumed():
    from reconlab.studies.adversarial.study import fgsm_lines

    rows = [{"attack": "fgsm", "level": e, "accuracy": a} for e, a in ((0.1, 0.6), (0.05, 0.9), (0.2, 0.3))]
    assert fgsm_lines(rows)[0].startswith("FGSM accuracy falls monotonically with eps: MET")
    rows[2]["accuracy"] = 0.7
    assert fgsm_lines(rows)[0].startswith("FGSM accuracy falls monotonically with eps: NOT MET")


def test_denoisers_come_from_the_latest_denoise_sweeps_best_matching_trial(tmp_path):
    """A real MLflow store holding a denoise sweep: per noise model the best
    undefended noisy-target trial with the noise's own loss is taken, its
    weights rebuilt from the trial's artifacts."""
    from reconlab import tracking
    from reconlab.errors import InputError
    from reconlab.models import build, save_model_dir
    from reconlab.studies.adversarial.study import denoisers_from_sweep
    from reconlab.training.n2n import N2NSpec

    c = tracking.client(f"sqlite:///{tmp_path}/mlflow.db")
    exp = c.create_experiment("den", artifact_location=str(tmp_path / "artifacts"))
    parent = c.create_run(exp, tags={tracking.TAG_SWEEP: "denoise"}).info.run_id
    want = {}
    for i, (arm, objective) in enumerate([("gaussian/l2/noisy", 28.0), ("gaussian/l2/noisy", 29.0),
                                          ("gaussian/l2/clean", 31.0), ("gaussian/l2/clean/pgd", 30.0),
                                          ("gaussian/l1/noisy", 32.0)]):
        run = c.create_run(exp, tags={tracking.TAG_PARENT: parent}).info.run_id
        c.log_param(run, "arm", arm)
        c.log_metric(run, "objective", objective)
        spec = N2NSpec(channels=1, width=2, levels=1, seed=i)
        torch.manual_seed(i)
        m = build(spec.builder, **spec.model_kwargs())
        d = tmp_path / f"m{i}"
        d.mkdir()
        save_model_dir(str(d), m, spec)
        c.log_artifacts(run, str(d), artifact_path="model")
        c.set_terminated(run, "FINISHED")
        want[run] = m.state_dict()
    got = denoisers_from_sweep(c, "den", ["gaussian"])
    meta, state, run_id = got["gaussian"]
    best = [r for r in want][1]  # gaussian/l2/noisy at objective 29
    assert run_id == best and all(torch.equal(state[k], want[best][k]) for k in state)
    assert meta["spec"]["seed"] == 1
    with pytest.raises(InputError, match="no finished 'poisson/l1/noisy' trial"):
        denoisers_from_sweep(c, "den", ["poisson"])
    with pytest.raises(InputError, match="no such MLflow experiment"):
        denoisers_from_sweep(c, "elsewhere", ["gaussian"])
