"""jobs/prototype_sweep.py end to end (real Ray Train inside Ray Tune, real
MLflow), and its table and findings from known trial results."""

import types

import pytest

from jobutil import runs_by_kind


def fake_grid(f1: dict):
    """A ResultGrid's shape: finished results with a config and last metrics."""
    results = []
    for (geometry, d, seed), v in f1.items():
        m = {"f1": v, "precision": v, "recall": v, "test_acc": v, "max_cos": 0.0, "max_cos_gap": 0.001}
        results.append(types.SimpleNamespace(error=None, metrics=m,
                                             config={"geometry": geometry, "dim": d, "seed": seed}))
    return results


def test_the_weakest_head_verdict_is_paired_over_seeds():
    from reconlab.studies.prototypes.study import findings, table

    # the other heads beat the 2-D sphere on every seed by 5-15 points
    grid = fake_grid({**{("sphere", 2, s): 0.70 + 0.01 * s for s in range(3)},
                      **{("sphere", 5, s): 0.80 + 0.02 * s for s in range(3)},
                      **{("hyperbolic", 2, s): 0.85 + 0.01 * s for s in range(3)}})
    lines = findings(grid)
    assert "within 0.01 of the best possible largest cosine: HOLDS" in lines[0]
    assert "the 2-D hyperspherical head is the weakest (thesis Tables 4.1/4.2): HOLDS" in lines[1]
    rows = {(r["geometry"], r["d"]): r for r in table(grid)}
    assert rows[("sphere", 2)]["f1"] == pytest.approx(71.0) and rows[("sphere", 2)]["seeds"] == 3
    assert rows[("sphere", 2)]["thesis P / R / F1 (MNIST)"] == "78.4 / 77.2 / 77.1"
    # one head worse than the 2-D sphere on every seed: DOES NOT HOLD; a tie in the noise: UNDECIDED
    worse = fake_grid({**{("sphere", 2, s): 0.70 + 0.01 * s for s in range(3)},
                       **{("sphere", 3, s): 0.60 + 0.02 * s for s in range(3)}})
    assert "weakest (thesis Tables 4.1/4.2): DOES NOT HOLD" in findings(worse)[1]
    tie = fake_grid({**{("sphere", 2, s): 0.70 + 0.01 * s for s in range(3)},
                     **{("sphere", 3, s): 0.70 + 0.03 * (s - 1) * (-1) ** s for s in range(3)}})
    assert "weakest (thesis Tables 4.1/4.2): UNDECIDED" in findings(tie)[1]


@pytest.mark.slow
def test_smoke_sweep_trains_both_geometries_and_logs_the_table(two_jobs_one_new_store):
    """(Run beside the deep decoder's smoke job, in one new store: conftest.)"""
    jobs, store = two_jobs_one_new_store
    p = jobs["prototypes"]
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "| sphere | 2 | 1 |" in out and "| hyperbolic | 2 | 1 |" in out
    assert "78.4 / 77.2 / 77.1" in out and "92.4" in out
    assert "every placement within 0.01 of the best possible largest cosine: HOLDS" in out
    c, runs = runs_by_kind(f"sqlite:///{store}/mlflow.db", "reconlab-prototypes-smoke")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FINISHED"
    assert {"prototypes.md", "prototypes.csv"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert len(runs["trial"]) == 2
    for t in runs["trial"]:
        assert t.info.status == "FINISHED" and t.data.params["geometry"] in ("sphere", "hyperbolic")
        m = t.data.metrics
        assert 0 <= m["f1"] <= 1 and m["max_cos_gap"] <= 0.01 and m["max_cos"] == pytest.approx(0.809, abs=0.011)
        assert {a.path for a in c.list_artifacts(t.info.run_id, "model")} == {"model/model.json",
                                                                              "model/state_dict.pt"}
