"""jobs/denoise_sweep.py end to end: real Ray (Train with two DDP workers
inside each Tune trial), real MLflow, every arm kind of the smoke space.
The pieces are in test_n2n.py."""

import pytest

from jobutil import run_job, runs_by_kind


@pytest.mark.slow
def test_smoke_denoise_sweep_arms_findings_and_trials(tmp_path):
    p = run_job("denoise_sweep.py", "--smoke-test", "--storage-path", str(tmp_path / "store"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "best trial per arm" in out
    for arm in ("gaussian/l2/noisy", "gaussian/l2/clean", "gaussian/l2/clean/pgd"):
        assert f"| {arm} | 1 |" in out
    assert "noisy targets land within 0.2 dB of clean targets" in out
    assert "gaussian/l2/clean/pgd at eps 4/255: loses <= a third" in out and "N2N paper" in out
    c, runs = runs_by_kind(f"sqlite:///{tmp_path}/store/mlflow.db", "reconlab-denoise-smoke")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FINISHED"
    names = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"denoise_table.md", "denoise_table.csv", "pgd_psnr_vs_eps.png", "best_gaussian_l2_clean_pgd"} <= names
    assert sorted(t.data.params["arm"] for t in runs["trial"]) == sorted(
        ["gaussian/l2/noisy", "gaussian/l2/clean", "gaussian/l2/clean/pgd"])
    for t in runs["trial"]:
        assert t.info.status == "FINISHED" and t.data.params["seed"] == "0" and t.data.params["num_workers"] == "2"
        assert [m.step for m in c.get_metric_history(t.info.run_id, "test_psnr")] == [1, 2]  # every epoch
        assert {"objective", "test_psnr", "test_noisy_psnr", "pgd_psnr_4", "images_per_s"} <= set(t.data.metrics)
        arts = {a.path for a in c.list_artifacts(t.info.run_id)}
        assert {"examples_clean_noisy_denoised.png", "per_image.csv", "model"} <= arts
    # every arm was scored on the same seeded noisy test images
    assert len({round(t.data.metrics["test_noisy_psnr"], 6) for t in runs["trial"]}) == 1
