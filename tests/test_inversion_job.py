"""jobs/inversion_sweep.py end to end: a real local Ray runtime and a real
MLflow SQLite store, as `make run --smoke-test` would use them."""

import os
import subprocess

import pytest

from jobutil import run_job, runs_by_kind

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


# smoke_store (one shared smoke run) is in conftest.py: tests/test_security.py greps it for secrets.


def test_smoke_run_prints_the_table_and_ui_hint(smoke_store):
    _, p = smoke_store
    out = p.stdout
    assert "best readable_acc per classifier variant" in out
    for v in ("sgd", "adam", "adam_fgsm"):
        assert f"| {v} | 2 |" in out
    assert "each the maximum of its own search, unpaired" in out and "judged paired" in out
    assert "a majority of three independent verifiers" in out and "% of real test digits pass)" in out
    assert "HOLDS" not in out  # two maxima decide nothing: the paired comparison judges the claims
    assert "mlflow ui --host 127.0.0.1" in out
    # progress is a few plain lines off a terminal, not Tune's trial table (issue 17: <= 60 lines in all)
    assert "[reconlab] trials 6/6 ended (0 running, 0 failed" in p.stderr
    assert "== Status ==" not in out + p.stderr and "Trial name" not in out + p.stderr
    assert len((out + p.stderr).splitlines()) <= 60, out + p.stderr


def test_smoke_run_leaves_one_run_per_trial_with_full_history(smoke_store):
    d, _ = smoke_store
    uri = f"sqlite:///{d}/mlflow.db"
    c, runs = runs_by_kind(uri, "reconlab-inversion-smoke")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FINISHED" and parent.data.tags["reconlab.sweep"] == "inversion"
    assert {"summary.md", "summary.csv", "search_space.json"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"best_sgd", "best_adam", "best_adam_fgsm"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert parent.data.params["seed"] == "0"
    # MLflow's conventions: the job and its commit, the dataset (name, digest), a model-training experiment
    assert parent.data.tags["mlflow.source.name"] == "jobs/inversion_sweep.py"
    if os.path.isdir(os.path.join(REPO, ".git")):
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        assert parent.data.tags["mlflow.source.git.commit"] == commit.strip()
    (ds,) = parent.inputs.dataset_inputs
    assert ds.dataset.name == "digits" and parent.data.params["data_fingerprint"].startswith(ds.dataset.digest)
    assert c.get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    trials = runs["trial"]
    assert len(trials) == 6 and len({t.data.tags["reconlab.trial_id"] for t in trials}) == 6
    for t in trials:
        assert t.info.status == "FINISHED"
        assert t.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert t.data.tags["mlflow.source.name"] == "jobs/inversion_sweep.py"
        assert [i.dataset.digest for i in t.inputs.dataset_inputs] == [ds.dataset.digest]
        assert {"lr", "optimizer", "variant", "steps", "seed"} <= set(t.data.params)
        steps = [m.step for m in c.get_metric_history(t.info.run_id, "verifier_acc")]
        every = int(t.data.params["report_every"])
        assert steps == list(range(every, every * len(steps) + 1, every)), steps  # gap- and duplicate-free
        assert "inversion_task1.png" in {a.path for a in c.list_artifacts(t.info.run_id)}
        m = t.data.metrics  # a readable hit is a hit: the ensemble's vote on the image and on its projection
        assert 0 <= m["readable_acc"] <= m["verifier_acc"] and 0 <= m["readable_acc_task1"] <= m["verifier_acc_task1"]
    assert 0 <= float(parent.data.params["real_readable_rate"]) <= 1
    assert sorted(r.data.tags["reconlab.variant"] for r in runs["train"]) == [
        "adam", "adam_fgsm", "reader_vae", "sgd", "verifier", "verifier_lenet_fgsm", "verifier_mlp"]
    for r in runs["train"]:
        assert r.data.tags["mlflow.source.name"] == "jobs/inversion_sweep.py"
        assert [i.dataset.digest for i in r.inputs.dataset_inputs] == [ds.dataset.digest]


def test_second_run_through_a_server_uri_with_credentials_reuses_the_classifiers_and_shows_no_password(smoke_store):
    """A second sweep on the same store, reached through a real `mlflow
    server` with `user:password@` in --tracking-uri: the logged classifiers
    are reused, and the password appears nowhere: not in the output (the UI
    hint and summary show `user:***@`), not in any file under the storage
    directory (store, spool header, Tune's files, artifacts), not in Ray's
    session files."""
    import secrets
    import tempfile

    import faults
    from jobutil import find_needles

    d, _ = smoke_store
    password = "uri-pw-" + secrets.token_hex(16)
    port = faults.free_port()
    server = faults.start_mlflow_server(port, f"sqlite:///{d}/mlflow.db")
    ray_tmp = tempfile.mkdtemp(prefix="rl-uri-")
    try:
        p = run_job("inversion_sweep.py", "--smoke-test", "--storage-path", str(d), "--num-samples", "1",
                    "--tracking-uri", f"http://alice:{password}@127.0.0.1:{port}", env={"RAY_TMPDIR": ray_tmp})
        assert p.returncode == 0, p.stderr[-3000:]
        assert p.stderr.count("reusing classifier") == 6 and "classifier models with Ray Train" not in p.stderr
        assert "reusing vae 'reader_vae'" in p.stderr
        assert f"http://alice:***@127.0.0.1:{port}" in p.stdout
        hits, n_files = find_needles([d, ray_tmp], {"password": password.encode()},
                                     texts={"stdout": p.stdout, "stderr": p.stderr})
        assert n_files > 50 and not hits, hits
    finally:
        faults.kill_group(server)
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
    c, runs = runs_by_kind(f"sqlite:///{d}/mlflow.db", "reconlab-inversion-smoke")
    assert len(runs["train"]) == 7 and len(runs["sweep"]) == 2 and len(runs["trial"]) == 6 + 3


# Bad input (exit 2, one line, before Ray, nothing left behind): tests/test_bad_input.py
