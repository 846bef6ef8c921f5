"""The cluster path without a cloud (issue 18, parts 2 and 4): `ray job
submit` of the main job to a token-authenticated Ray head on 127.0.0.1 and a
second node (separate `ray start` processes, one CPU each), run by a Python
without reconlab installed, so the job ships the package itself
(working_dir + py_modules); one `mlflow server` holds every run. Mid-sweep the
second node is killed, as a preempted spot worker is: its trial is retried
from its checkpoint on the surviving node, and every trial still ends with one
run."""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

import faults
from jobutil import REPO, runs_by_kind
from raycluster import Cluster, free_port

pytestmark = pytest.mark.slow

EXPERIMENT = "reconlab-inversion-smoke"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(head_cpus=1)
    try:
        c.worker_id = c.add_worker("worker", 1)
        c.head_id = c.node_id("head")
        yield c
    finally:
        c.remove()


def test_jobs_api_rejects_a_client_without_the_token(cluster):
    env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    p = cluster.ray("job", "list", "--address", cluster.address, env=env, timeout=60)
    assert p.returncode != 0
    assert "401" in p.stdout + p.stderr or "auth" in (p.stdout + p.stderr).lower()


def long_trials_space(path, steps: int):
    """The main job's search space with trials long enough to lose a node
    under: no early stopping, a checkpoint at every report."""
    with open(os.path.join(REPO, "search_spaces", "inversion.yaml")) as f:
        raw = yaml.safe_load(f)
    raw["scheduler"] = {"type": "fifo"}
    del raw["search"]["steps"]
    # one classifier variant (three trials of it) keeps the Ray Train fits before the sweep to two
    raw["smoke"] = {"num_samples": 3, "train": {"epochs": 1},
                    "fixed": {"steps": steps, "report_every": 10, "restarts": 2, "checkpoint_period_s": 0},
                    "search": {"variant": {"type": "choice", "values": ["sgd"]}}}
    with open(path, "w") as f:
        yaml.safe_dump(raw, f)
    return str(path)


def trial_dir(store, trial_id):
    found = glob.glob(os.path.join(store, "tune", "*", f"*_{trial_id}_*"))
    return found[0] if found else None


def wait_for_checkpointed_trial_on(c, exp_name, node_id, store, proc, timeout=420):
    """The id of a trial running on ``node_id`` (its run's node tag) that has
    a checkpoint on disk."""
    from reconlab import tracking
    from reconlab.sweep.nodes import TAG_NODE_ID

    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, "the job ended before a trial ran on the second node"
        exp = c.get_experiment_by_name(exp_name)
        if exp is not None:
            for r in c.search_runs([exp.experiment_id], f"tags.`{TAG_NODE_ID}` = '{node_id}'"):
                tid = r.data.tags.get(tracking.TAG_TRIAL)
                d = trial_dir(store, tid) if tid and r.info.status == "RUNNING" else None
                if d and glob.glob(os.path.join(d, "checkpoint_*")):
                    return tid
        time.sleep(1)
    raise TimeoutError("no trial checkpointed on the second node")


def test_the_main_job_spreads_over_two_nodes_and_survives_losing_one(cluster, tmp_path):
    from reconlab.sweep.nodes import TAG_NODE_ID, TAG_NODES

    server_dir = tmp_path / "server"
    server_dir.mkdir()
    port = free_port()
    server = faults.start_mlflow_server(port, f"sqlite:///{server_dir}/mlflow.db")
    uri = f"http://127.0.0.1:{port}"
    store = str(tmp_path / "results")
    space = long_trials_space(tmp_path / "inversion_long.yaml", steps=200)
    log = open(tmp_path / "submit.log", "w+")
    try:
        # without --no-wait the CLI follows the job and exits non-zero unless it SUCCEEDED
        proc = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--address", cluster.address,
             "--working-dir", REPO, "--", "python", "jobs/inversion_sweep.py", "--smoke-test", "--search-space",
             space, "--storage-path", store, "--tracking-uri", uri],
            stdout=log, stderr=subprocess.STDOUT, env=cluster.env, cwd=REPO)
        from reconlab import tracking

        c = tracking.client(uri)
        lost = wait_for_checkpointed_trial_on(c, EXPERIMENT, cluster.worker_id, store, proc)
        cluster.kill_node("worker")  # a preempted spot worker: its raylet and every process on it
        proc.wait(timeout=600)
        log.seek(0)
        out = log.read()
        assert proc.returncode == 0 and "succeeded" in out.lower(), out[-4000:]
        assert "best readable_acc per classifier variant" in out

        _, runs = runs_by_kind(uri, EXPERIMENT)
        assert len(runs["sweep"]) == 1 and runs["sweep"][0].info.status == "FINISHED"
        assert len(runs["train"]) == 5  # the sgd classifier, three verifiers and the readability check's VAE
        trials = runs["trial"]
        ids = [r.data.tags[tracking.TAG_TRIAL] for r in trials]
        assert len(trials) == 3 and len(set(ids)) == 3, ids  # one run per trial: none missing, none doubled
        assert all(r.info.status == "FINISHED" for r in trials), [(r.info.run_name, r.info.status) for r in trials]
        assert {cluster.head_id, cluster.worker_id} <= {n for r in trials for n in r.data.tags[TAG_NODES].split(",")}
        # the lost trial moved to the surviving node and went on from its checkpoint
        moved = next(r for r in trials if r.data.tags[tracking.TAG_TRIAL] == lost)
        assert moved.data.tags[TAG_NODES] == f"{cluster.worker_id},{cluster.head_id}", moved.data.tags
        assert moved.data.tags[TAG_NODE_ID] == cluster.head_id
        with open(os.path.join(trial_dir(store, lost), "result.json")) as f:
            results = [json.loads(line) for line in f if line.strip()]
        restored = [r for r in results if r["iterations_since_restore"] == 1 and r["training_iteration"] > 1]
        assert restored, "the retried trial started over instead of restoring its checkpoint"
        assert restored[0]["step"] > 10 and results[-1]["step"] == 200
        steps = [m.step for m in c.get_metric_history(moved.info.run_id, "verifier_acc")]
        assert steps == sorted(set(steps)) and steps[-1] == 200  # one point per step in its one run

        # The job ran in a temporary copy of the working directory under
        # Ray's temp dir. Stop the cluster and delete it: every run's
        # artifacts are still on the tracking server.
        cluster.stop()
        shutil.rmtree(cluster.temp_dir)
        assert not os.path.exists(os.path.join(REPO, "mlruns"))
        dest = tmp_path / "downloaded"
        expected = {"sweep": {"summary.md", "summary.csv", "search_space.json"}, "trial": {"inversion_task1.png"},
                    "train": {"model"}}
        for kind, want in expected.items():
            for r in runs[kind]:
                assert r.info.artifact_uri.startswith("mlflow-artifacts:"), r.info.artifact_uri
                d = c.download_artifacts(r.info.run_id, "", str(dest / r.info.run_id))
                assert want <= set(os.listdir(d)), (kind, os.listdir(d))
        from reconlab.training.logged import load_logged_model

        meta, state = load_logged_model(c, runs["train"][0].info.run_id)  # the models a later job reuses
        assert meta["builder"] and state
    finally:
        log.close()
        faults.kill_group(server)
