"""jobs/deep_decoder_sweep.py end to end (real Ray, real MLflow) and its
trial in-process: every iterate scored, the no-reference stopping rule
judged against the oracle, the compression table against wavelets and JPEG.
The networks and the fitting loop are in tests/test_deep_decoder.py."""

import math

import pytest
import torch

from jobutil import REPO, runs_by_kind



def small(**kw):
    return {"image": "astronaut", "crop": 64, "k": 16, "iterations": 60, "report_every": 20, "stop_window": 10,
            "stop_patience": 20, "dip_channels": 16, "dip_scales": 3, **kw}


def test_the_trial_reports_every_metric_at_every_report_and_the_chosen_images_at_the_end():
    from reconlab.studies.deep_decoder.trial import METRICS, run_trial

    reports = []
    final = run_trial(small(), lambda m, images: reports.append((m, images)))
    assert [m["step"] for m, _ in reports] == [20, 40, 60]
    for m, images in reports:
        assert set(METRICS) - {"psnr_ema"} <= set(m) and all(math.isfinite(m[k]) for k in METRICS if k in m)
        assert m["psnr_oracle"] >= max(m["psnr"], m["psnr_best_fit"], m["psnr_stop"]) - 1e-9
    assert reports[-1][1] is not None and all(images is None for _, images in reports[:-1])
    assert set(reports[-1][1]) == {"noisy", "best_fit", "stop", "oracle", "final"}
    assert final["stop_gap"] == pytest.approx(final["psnr_oracle"] - final["psnr_stop"])
    assert final["num_parameters"] == 6 * 16 * 16 + 2 * 6 * 16 + 3 * 16  # the paper's count, k = 16, d = 6


def test_an_in_process_trial_leaves_the_torch_thread_count_alone():
    """Other tests pin numbers at the suite's thread count (conftest): a trial
    run in-process must not change it (one did, and a later test's trained
    classifier missed its accuracy)."""

    from reconlab.studies.deep_decoder.trial import run_trial

    n = torch.get_num_threads()
    run_trial(small(iterations=2, report_every=1))
    assert torch.get_num_threads() == n


def test_noise_is_seeded_and_can_be_the_same_in_every_channel():

    from reconlab.studies.deep_decoder.trial import add_noise

    clean = torch.full((1, 3, 16, 16), 0.5)
    a, b = add_noise(clean, 25, seed=0), add_noise(clean, 25, seed=0, same=True)
    assert torch.equal(a, add_noise(clean, 25, seed=0)) and not torch.equal(a, add_noise(clean, 25, seed=1))
    assert not torch.equal(a[:, 0], a[:, 1])  # independent per channel
    assert torch.equal(b[:, 0], b[:, 1]) and torch.equal(b[:, 1], b[:, 2])  # noise_same
    assert (b - clean).std().item() == pytest.approx(25 / 255, rel=0.15)


def test_the_trial_is_reproducible_and_the_noise_is_seeded():
    from reconlab.studies.deep_decoder.trial import run_trial

    a, b = run_trial(small(method="dip", iterations=20)), run_trial(small(method="dip", iterations=20))
    assert a["psnr_best_fit"] == b["psnr_best_fit"] and a["psnr_ema"] == b["psnr_ema"]
    c = run_trial(small(method="dip", iterations=20, seed=1))
    assert c["psnr_best_fit"] != a["psnr_best_fit"]


@pytest.mark.parametrize("bad, match", [({"image": "lena"}, "unknown image"), ({"crop": 48}, "multiple of"),
                                        ({"sigma": -1}, "sigma"), ({"lr": 0}, "lr"),
                                        ({"stopping": "psnr"}, "stopping"), ({"holdout": 1.0}, "holdout"),
                                        ({"stopping": "heldout", "sigma": 0}, "noise to stop on")])
def test_bad_trial_values_are_refused(bad, match):
    from reconlab.studies.deep_decoder.trial import DeepDecoderTrialConfig

    with pytest.raises(ValueError, match=match):
        DeepDecoderTrialConfig(**small(**bad))


def test_the_stopping_rule_is_observed_without_ending_the_fit():
    """The rule's pick is kept when it first fires; the fit goes on, so the
    oracle it is judged against sees the whole run."""
    from reconlab.studies.deep_decoder.trial import run_trial

    r = run_trial(small(iterations=80, stop_window=5, stop_patience=5))
    assert r["fit_iterations"] == 80 and r["stop_fired_at"] < 80 and r["stop_iteration"] <= r["stop_fired_at"]


def test_a_held_out_trial_masks_the_fit_and_judges_both_rules_on_it():
    from reconlab.studies.deep_decoder.trial import run_trial

    cfg = small(iterations=80, stop_window=5, stop_patience=1000, lr=0.03)
    held, full = run_trial({**cfg, "stopping": "heldout", "holdout": 0.2}), run_trial(cfg)
    assert held["psnr_best_fit"] != full["psnr_best_fit"]  # the mask changed the fit
    assert held["stop_gap"] == pytest.approx(held["psnr_oracle"] - held["psnr_stop"])
    assert held["wmv_gap"] == pytest.approx(held["psnr_oracle"] - held["psnr_wmv"])
    assert held["psnr_stop"] != held["psnr_wmv"]  # two rules, two picks
    assert full["psnr_wmv"] == full["psnr_stop"]  # stopping: wmv is ES-WMV itself
    assert "psnr_wmv" not in run_trial({**cfg, "stopping": "none"})


def _result(image, stopping, stop, wmv, oracle=30.0):
    from types import SimpleNamespace

    m = {"psnr_best_fit": 29.0, "psnr_oracle": oracle, "psnr_stop": stop, "psnr_wmv": wmv,
         "stop_gap": oracle - stop, "wmv_gap": oracle - wmv}
    return SimpleNamespace(error=None, metrics=m, config={"image": image, "stopping": stopping})


def test_findings_judge_each_rule_on_its_worst_fit_and_compare_them_paired():
    from reconlab.studies.deep_decoder.study import findings

    grid = [_result("a", "heldout", 29.5, 28.0), _result("b", "heldout", 29.2, 29.0),
            _result("c", "heldout", 29.8, 28.5), _result("d", "wmv", 27.0, 27.0)]
    held, wmv, paired = findings(grid)
    assert "held-out pixels) lands within 1 dB" in held and "HOLDS (worst gap 0.80 dB on b, 3 fits" in held
    assert "ES-WMV) lands within 1 dB" in wmv and "DOES NOT HOLD (worst gap 3.00 dB on d, 4 fits, 4 images" in wmv
    # held-out - ES-WMV on the three fits that ran both: 1.5, 0.2, 1.3; mean 1.0, sd 0.7, t(0.975, 2) = 4.303: +-1.74
    assert "than ES-WMV on the same fits: UNDECIDED (PSNR difference +1.00 [-0.74, +2.74]" in paired
    more = grid[:3] + [_result(i, "heldout", 29.6, 28.4) for i in "efgh"]
    assert ": HOLDS (PSNR difference" in findings(more)[-1]


@pytest.mark.slow
def test_smoke_sweep_tables_curves_images_and_compression(two_jobs_one_new_store):
    """(Run beside the prototypes' smoke job, in one new store: conftest.)"""
    jobs, store = two_jobs_one_new_store
    p = jobs["deep_decoder"]
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "best psnr_best_fit per image and method" in out
    assert "| astronaut | decoder | 25 | 1 |" in out and "| astronaut | dip | 25 | 1 |" in out
    assert "Compression (sigma 0" in out and "| astronaut | 16 | 6 | 1776 |" in out
    assert "no-reference stopping rule (ES-WMV)" in out
    c, runs = runs_by_kind(f"sqlite:///{store}/mlflow.db", "reconlab-deep-decoder-smoke")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FINISHED"
    names = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"summary.md", "summary.csv", "compression.md", "compression.csv", "compression.png"} <= names
    assert len(runs["trial"]) == 4
    for t in runs["trial"]:
        assert t.info.status == "FINISHED"
        # the Ray node it ran on (a local runtime: one node, no move)
        assert len(t.data.tags["reconlab.node_id"]) == 56 and t.data.tags["reconlab.nodes"] == t.data.tags[
            "reconlab.node_id"]
        assert [m.step for m in c.get_metric_history(t.info.run_id, "psnr")] == [20, 40, 60]
        assert {"noisy.png", "best_fit.png", "stop.png", "oracle.png"} <= {a.path for a in c.list_artifacts(
            t.info.run_id)}


def test_any_image_file_can_be_fitted_by_its_absolute_path(tmp_path):
    """The deep decoder paper's astronaut is its repository's own 512x512 file, not scikit-image's:
    a trial fits whatever image file it is given."""
    import numpy as np
    from PIL import Image

    from reconlab.studies.deep_decoder.trial import DeepDecoderTrialConfig, photo, run_trial

    rgba = np.random.default_rng(0).integers(0, 256, (64, 96, 4), dtype=np.uint8)
    path = tmp_path / "tiny.png"
    Image.fromarray(rgba).save(path)
    x = photo(str(path))
    assert x.shape == (3, 64, 96)
    assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(rgba[..., :3]).permute(2, 0, 1))
    r = run_trial(small(image=str(path), iterations=3, report_every=1))
    assert math.isfinite(r["psnr_best_fit"])
    for bad in ("tiny.png", str(tmp_path / "missing.png")):
        with pytest.raises(ValueError, match="absolute path to an image file"):
            DeepDecoderTrialConfig(**small(image=bad))


def test_photos_can_come_from_saved_copies(tmp_path, monkeypatch):
    """The GPU machine has no scikit-image: bench/paper_fits.py reads the photos from saved arrays."""
    import subprocess
    import sys

    import numpy as np

    from reconlab.studies.deep_decoder.trial import photo

    p = subprocess.run([sys.executable, "bench/paper_fits.py", "--save-photos", str(tmp_path)], capture_output=True,
                       text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr
    want = photo("coffee")
    monkeypatch.setenv("RECONLAB_PHOTO_DIR", str(tmp_path))
    assert torch.equal(photo("coffee"), want)
    np.save(tmp_path / "coffee.npy", np.zeros((8, 8, 3), np.uint8))
    assert photo("coffee").shape == (3, 8, 8) and photo("coffee").max() == 0
    with pytest.raises(ValueError, match="unknown image"):
        photo("../../etc/passwd")

