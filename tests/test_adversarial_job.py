"""jobs/adversarial_sweep.py end to end: real Ray, real MLflow, the report's
classifier and an N2N denoiser trained by Ray Train, every kind of point.
The trial's pieces are in test_adversarial.py."""

import pytest

from jobutil import run_job, runs_by_kind


@pytest.mark.slow
def test_smoke_adversarial_sweep_curves_verdicts_and_trials(tmp_path):
    p = run_job("adversarial_sweep.py", "--smoke-test", "--storage-path", str(tmp_path / "store"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "| fgsm | 0.1 |" in out and "| 0.661 |" in out  # ours beside the report's
    assert "FGSM accuracy falls monotonically with eps:" in out
    assert "5 pixel(s): DE does at least as much damage as the random search at the same budget:" in out
    assert "DAG on the gaussian denoiser:" in out and "PGD on the gaussian denoiser, PSNR drop by eps: 4/255" in out
    c, runs = runs_by_kind(f"sqlite:///{tmp_path}/store/mlflow.db", "reconlab-adversarial-smoke")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FINISHED"
    names = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"classifier_robustness.md", "classifier_robustness.png", "denoiser_attacks.csv", "dag_histograms.png",
            "pgd_psnr_drop.png", "dag_gaussian"} <= names
    assert sorted(r.data.tags.get("reconlab.variant") for r in runs["train"]) == ["gaussian", "report"]
    points = sorted(t.data.params["point"] for t in runs["trial"])
    assert points == sorted(["salt_and_pepper 0.3", "fgsm 0.1", "fgsm 0.3", "one_pixel_de 5", "one_pixel_random 5"]
                            + ["dag gaussian", "pgd gaussian 4"])
    for t in runs["trial"]:
        assert t.info.status == "FINISHED" and "damage" in t.data.metrics
        arts = {a.path for a in c.list_artifacts(t.info.run_id)}
        assert "per_image.csv" in arts and any(a.startswith("examples_") and a.endswith(".png") for a in arts)
