"""jobs/ct_case_study.py end to end (real Ray, real MLflow, real ASTRA) and
its trial in-process. The operator and the hybrid are in tests/test_ct.py."""

import math

import pytest
import torch

from jobutil import run_job, runs_by_kind


@pytest.fixture(scope="module")
def shared():
    from reconlab.data import load_dataset
    from reconlab.models import build

    ds = load_dataset("digits")
    torch.manual_seed(0)
    clf = build("classifier_small")
    return {"x": ds.x_test, "y": ds.y_test, "digests": {"sgd": "untrained"},
            "models": {"sgd": ({"builder": "classifier_small", "kwargs": {}}, clf.state_dict())}}


def small(**kw):
    return {"angles": 4, "warmup": 6, "alternating": 4, "ratio": 1, "val_images": 10, "test_images": 12,
            "report_every": 5, **kw}


@pytest.mark.parametrize("method", ["fbp", "sirt", "sirt_best", "sirt_tv", "hybrid", "hybrid_oracle"])
def test_every_method_reports_its_curves_and_per_image_scores(shared, method):
    from reconlab.studies.ct.trial import METRICS, files_of, run_trial

    reports = []
    final, result = run_trial(small(method=method, noise="gaussian"), shared, lambda m, r: reports.append((m, r)))
    assert reports[-1][1] is result and all(r is None for _, r in reports[:-1])
    steps = [m["step"] for m, _ in reports]
    assert steps == ([1] if method == "fbp" else [5, 10])
    assert set(METRICS) - {"label_acc", "classifier_gain"} <= set(final) and all(math.isfinite(final[k]) for k in METRICS if k in final)
    assert ("label_acc" in final) == ("classifier_gain" in final) == method.startswith("hybrid")
    assert result["per_image"]["psnr"].shape == (12,)
    assert final["psnr"] == pytest.approx(result["per_image"]["psnr"].mean().item())
    assert final["gain_vs_sirt"] == pytest.approx(final["psnr"] - final["psnr_sirt"])
    n = 1 if method == "fbp" else 10
    assert len(result["curves"]["psnr"]) == n and not math.isnan(result["curves"]["ssim"][-1])
    files = files_of(result, method)
    assert files["curves.csv"].decode().splitlines()[0] == "iteration,psnr_val,psnr,mse,ssim"
    assert files[f"reconstructions_truth_sirt_{method}.png"].startswith(b"\x89PNG")


def test_sirt_is_its_own_reference_and_sirt_best_stops_where_validation_peaks(shared):
    from reconlab.studies.ct.trial import run_trial

    sirt, _ = run_trial(small(method="sirt", noise="gaussian", gaussian_level=0.2), shared)
    assert sirt["gain_vs_sirt"] == 0 and sirt["best_iteration"] == 10
    best, res = run_trial(small(method="sirt_best", noise="gaussian", gaussian_level=0.2), shared)
    curve = res["curves"]["psnr_val"]
    assert best["best_iteration"] == int(curve.argmax()) + 1
    assert best["psnr_val"] == pytest.approx(curve.max().item(), abs=1e-4)
    assert best["psnr_val"] >= sirt["psnr_val"] - 1e-6


def test_the_oracle_uses_true_labels_and_every_method_sees_the_same_noise(shared):
    from reconlab.studies.ct.trial import run_trial

    oracle, _ = run_trial(small(method="hybrid_oracle", noise="poisson", photons=1000), shared)
    assert oracle["label_acc"] == 1.0
    a, _ = run_trial(small(method="sirt_tv", noise="poisson", photons=1000), shared)
    b, _ = run_trial(small(method="hybrid", noise="poisson", photons=1000), shared)
    assert a["psnr_sirt"] == b["psnr_sirt"] == oracle["psnr_sirt"]  # the same sinograms


def test_the_classifier_term_is_ablated_at_the_hybrid_s_own_configuration(shared):
    from reconlab.studies.ct.trial import run_trial

    cfg = small(method="hybrid", tv_weight=0.02, step_size=0.1, cls_weight=3.0)
    final, result = run_trial(cfg, shared)
    ablation, _ = run_trial({**cfg, "method": "sirt_tv"}, shared)
    assert result["ablation_psnr"].mean().item() == pytest.approx(ablation["psnr"], abs=1e-5)
    assert final["classifier_gain"] == pytest.approx(final["psnr"] - ablation["psnr"], abs=1e-5)
    assert final["classifier_gain"] != 0


def test_an_in_process_trial_leaves_the_torch_thread_count_alone(shared):
    from reconlab.studies.ct.trial import run_trial

    n = torch.get_num_threads()
    run_trial(small(method="hybrid"), shared)
    assert torch.get_num_threads() == n


@pytest.mark.parametrize("bad, match", [({"method": "art"}, "unknown method"), ({"angles": 0}, "angles"),
                                        ({"noise": "speckle"}, "unknown noise"), ({"step_size": 0}, "step_size"),
                                        ({"photons": 0.5}, "photons"), ({"variant": "rmsprop"}, "variant"),
                                        ({"warmup": 0, "alternating": 0}, "at least one")])
def test_bad_trial_values_are_refused(bad, match):
    from reconlab.studies.ct.trial import CTTrialConfig

    with pytest.raises(ValueError, match=match):
        CTTrialConfig(**small(**bad))


def test_untuned_methods_run_once_per_stratum(tmp_path):
    from reconlab.studies.ct.trial import METRICS, CTTrialConfig
    from reconlab.sweep.searcher import make_searcher
    from reconlab.sweep.spec import load_spec

    p = tmp_path / "s.yaml"
    p.write_text("name: x\nmetric: psnr_val\nnum_samples: 3\nstratify: [method, angles]\nsearch:\n"
                 "  method: {type: choice, values: [sirt, hybrid, fbp]}\n"
                 "  angles: {type: choice, values: [2, 4]}\n  step_size: {type: loguniform, low: 0.01, high: 0.1}\n")
    spec = load_spec(str(p), CTTrialConfig, metrics=METRICS)
    assert spec.stratum_budgets() == [1, 1, 3, 3, 1, 1] and spec.total_samples() == 10
    import dataclasses

    assert dataclasses.replace(spec, num_samples=5).total_samples() == 14  # --num-samples scales the tuned ones
    s = make_searcher(spec)
    got = [s.suggest(f"t{i}") for i in range(11)]
    assert got[-1] == "FINISHED"
    counts = {}
    for cfg in got[:-1]:
        counts[(cfg["method"], cfg["angles"])] = counts.get((cfg["method"], cfg["angles"]), 0) + 1
    assert counts == {("sirt", 2): 1, ("sirt", 4): 1, ("hybrid", 2): 3, ("hybrid", 4): 3, ("fbp", 2): 1, ("fbp", 4): 1}


def test_verdicts_come_from_the_paired_interval_per_angle_count():
    from reconlab.studies.ct.study import verdict_lines

    rows = [{"noise": "none", "angles": 2, "method": "sirt", "verdict": "HOLDS"},
            {"noise": "none", "angles": 8, "method": "sirt", "verdict": "DOES NOT HOLD"},
            {"noise": "none", "angles": 4, "method": "sirt", "verdict": "UNDECIDED"},
            {"noise": "none", "angles": 2, "method": "sirt_tv", "verdict": "UNDECIDED"},
            {"noise": "none", "angles": 4, "method": "sirt_tv", "verdict": "HOLDS", "reference": "pnp"}]
    rows = [{"reference": "hybrid", **r} for r in rows]
    lines = verdict_lines(rows)
    assert lines[0] == ("noise none: the hybrid beats SIRT-100 (paired 95 % CI of the PSNR difference over the test "
                        "images): HOLDS at angles [2]; DOES NOT HOLD at [8]; UNDECIDED at [4]")
    assert "priors-only ablation" in lines[1] and "UNDECIDED at [2]" in lines[1] and len(lines) == 2


@pytest.mark.slow
def test_smoke_case_study_tables_figures_and_trials(tmp_path):
    p = run_job("ct_case_study.py", "--smoke-test", "--storage-path", str(tmp_path / "store"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "test PSNR (dB) by angles" in out
    assert "| gaussian | 4 |" in out and "hybrid − sirt_tv" in out
    assert "the hybrid beats SIRT-100" in out and "priors-only ablation" in out
    header = next(line for line in out.splitlines() if line.startswith("| noise | angles |"))
    assert "the classifier term's own share" in out and header.endswith("| hybrid − pnp | classifier term |")
    c, runs = runs_by_kind(f"sqlite:///{tmp_path}/store/mlflow.db", "reconlab-ct-smoke")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FINISHED"
    names = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"ct_table.md", "ct_table.csv", "by_angles.md", "figure_5_1_gaussian.png",
            "reconstructions_gaussian.png"} <= names
    assert parent.data.metrics["psnr.gaussian.4.sirt"] > parent.data.metrics["psnr.gaussian.4.fbp"]
    assert sorted(r.data.tags.get("reconlab.variant") for r in runs["train"]) == ["denoiser", "sgd"]
    methods = sorted(t.data.params["method"] for t in runs["trial"])
    assert methods == sorted(["fbp", "sirt", "sirt_best", "sirt_tv", "hybrid", "hybrid_oracle", "pnp"])
    assert "the learned prior (pnp) beats the best non-learned baseline" in out
    for t in runs["trial"]:
        assert t.info.status == "FINISHED"
        steps = [m.step for m in c.get_metric_history(t.info.run_id, "psnr")]
        assert steps == ([1] if t.data.params["method"] == "fbp" else [4, 8, 12, 16, 18])
        assert "curves.csv" in {a.path for a in c.list_artifacts(t.info.run_id)}


def test_a_stratified_searcher_saved_before_budgets_restores(tmp_path):
    import pickle

    from reconlab.sweep.searcher import StratifiedSearch

    s = StratifiedSearch("m", ["a", "b"], {"m": {"type": "choice", "values": ["a", "b"]}}, "x", "max", 0, 2)
    old = dict(s.__dict__)
    old["per_stratum"] = old.pop("budget")[("a")]
    path = tmp_path / "searcher.pkl"
    path.write_bytes(pickle.dumps(old))
    s2 = StratifiedSearch("m", ["a"], {"m": {"type": "choice", "values": ["a"]}}, "x", "max", 0, 1)
    s2.restore(str(path))
    assert s2.budget == {"a": 2, "b": 2} and [s2.suggest(f"t{i}")["m"] for i in range(4)] == ["a", "b", "a", "b"]
