"""jobs/inversion_sweep.py end to end: a real local Ray runtime and a real
MLflow SQLite store, as `make run --smoke-test` would use them."""


import pytest

from jobutil import run_job, runs_by_kind

pytestmark = pytest.mark.slow


# smoke_store (one shared smoke run) is in conftest.py: tests/test_security.py greps it for secrets.


def test_smoke_run_prints_the_table_and_ui_hint(smoke_store):
    _, p = smoke_store
    out = p.stdout
    assert "best verifier_acc per classifier variant" in out
    for v in ("sgd", "adam", "adam_fgsm"):
        assert f"| {v} | 2 |" in out
    assert "SGD inverts better than Adam" in out and "FGSM training repairs Adam" in out
    assert "mlflow ui --host 127.0.0.1" in out


def test_smoke_run_leaves_one_run_per_trial_with_full_history(smoke_store):
    d, _ = smoke_store
    uri = f"sqlite:///{d}/mlflow.db"
    c, runs = runs_by_kind(uri, "reconlab-inversion-smoke")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FINISHED" and parent.data.tags["reconlab.sweep"] == "inversion"
    assert {"summary.md", "summary.csv", "search_space.json"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"best_sgd", "best_adam", "best_adam_fgsm"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert parent.data.params["seed"] == "0"
    trials = runs["trial"]
    assert len(trials) == 6 and len({t.data.tags["reconlab.trial_id"] for t in trials}) == 6
    for t in trials:
        assert t.info.status == "FINISHED"
        assert t.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {"lr", "optimizer", "variant", "steps", "seed"} <= set(t.data.params)
        steps = [m.step for m in c.get_metric_history(t.info.run_id, "verifier_acc")]
        every = int(t.data.params["report_every"])
        assert steps == list(range(every, every * len(steps) + 1, every)), steps  # gap- and duplicate-free
        assert "inversion_task1.png" in {a.path for a in c.list_artifacts(t.info.run_id)}
    assert sorted(r.data.tags["reconlab.variant"] for r in runs["train"]) == ["adam", "adam_fgsm", "sgd", "verifier"]


def test_second_run_reuses_the_logged_classifiers(smoke_store):
    d, _ = smoke_store
    p = run_job("inversion_sweep.py", "--smoke-test", "--storage-path", str(d), "--num-samples", "1")
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("reusing classifier") == 4 and "training classifier" not in p.stderr
    c, runs = runs_by_kind(f"sqlite:///{d}/mlflow.db", "reconlab-inversion-smoke")
    assert len(runs["train"]) == 4 and len(runs["sweep"]) == 2 and len(runs["trial"]) == 6 + 3


# Bad input (exit 2, one line, before Ray, nothing left behind): tests/test_bad_input.py
