"""Sweeps that survive faults (issue 4), proved the way Ray's own tests do it:
real processes killed with SIGKILL, a real `mlflow server` taken away, and
the MLflow store checked afterwards for exactly one complete run per trial.

All sweeps share one store whose classifiers are trained once (``store``).
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

import faults

EXPERIMENT = "reconlab-faults"
# The suite's sizes; docs/results.md's figures come from the larger ones
# named there (e.g. RECONLAB_CHAOS_TRIALS=16 RECONLAB_OUTAGE_S=60).
CHAOS_TRIALS = int(os.environ.get("RECONLAB_CHAOS_TRIALS", "8"))
OUTAGE_TRIALS = int(os.environ.get("RECONLAB_OUTAGE_TRIALS", "8"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store holding the trained classifiers (a 1-trial sweep trains them)."""
    d = tmp_path_factory.mktemp("faults")
    p = faults.start_job("--search-space", faults.space(d / "warm.yaml", "warm", 1), "--storage-path", str(d / "store"),
                         "--experiment", EXPERIMENT)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return d


def test_chaos_random_trial_workers_killed_every_few_seconds(store):
    """8 trials (16 for docs/results.md); a random trial process is SIGKILLed
    every 3-5 s: every trial finishes, each with one MLflow run holding each
    step once."""
    uri = f"sqlite:///{store}/store/mlflow.db"
    # 40 steps: long enough for >= 4 kills on a fast day (20 steps once gave 3 kills when the machine was idle)
    p = faults.start_job("--search-space", faults.space(store / "chaos.yaml", "chaos", CHAOS_TRIALS, steps=40),
                         "--storage-path",
                         str(store / "store"), "--experiment", EXPERIMENT, "--max-failures", "50")
    stop, kills = threading.Event(), []
    killer = threading.Thread(target=faults.random_kills, args=(stop, "ray::ImplicitFunc", (3, 5), random.Random(0),
                                                                 kills))
    killer.start()
    try:
        out, err = p.communicate(timeout=900)
    finally:
        stop.set()
        killer.join()
        faults.kill_group(p)
    assert p.returncode == 0, err[-3000:]
    assert len(kills) >= 4, kills
    c, parent, runs = faults.assert_one_complete_run_per_trial(uri, EXPERIMENT, "chaos", CHAOS_TRIALS, steps=40)
    tune_dir = parent.data.tags["reconlab.tune_dir"]
    retried = {t for t, steps in faults.tune_histories(tune_dir).items() if len(steps) != len(set(steps))}
    print(f"chaos: {len(kills)} trial processes killed; {len(retried)} trials redid a step")
    assert f"{CHAOS_TRIALS} trials" in out


def test_driver_sigkill_at_random_points_then_resume_five_times(store):
    """The driver is SIGKILLed at a random point of the sweep five times, each
    time started again with --resume: every trial completes, MLflow holds
    exactly one FINISHED run per trial (none RUNNING, the parent reused), the
    Optuna study saw every result, and little work is redone."""
    import glob

    import optuna

    uri = f"sqlite:///{store}/store/mlflow.db"
    args = ["--search-space", faults.space(store / "resume.yaml", "resume", 12, steps=20), "--storage-path",
            str(store / "store"), "--experiment", EXPERIMENT]
    rng, kills = random.Random(1), 0
    for attempt in range(6):
        p = faults.start_job(*args, *(["--resume"] if attempt else []))
        if attempt < 5:
            # a random point measured in progress, not seconds, so that five
            # kills leave work for the sixth run on a fast machine too
            # (12 trials write 72 lines; five kills let at most 40 through)
            spool = faults.wait_for_new_spool_lines(p, str(store / "store" / "tune" / "resume-*"), n=rng.randint(1, 8))
            if spool is not None:
                time.sleep(rng.uniform(0, 0.5))
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                kills += 1
            faults.kill_group(p)  # and the local Ray runtime it started
            continue
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    assert kills == 5
    c, parent, runs = faults.assert_one_complete_run_per_trial(uri, EXPERIMENT, "resume", 12, steps=20)
    assert parent.info.status == "FINISHED"
    exp = c.get_experiment_by_name(EXPERIMENT)
    assert len(c.search_runs([exp.experiment_id], "tags.`reconlab.sweep` = 'resume'")) == 1  # parent reused
    assert not c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    (tune_dir,) = glob.glob(str(store / "store" / "tune" / "resume-*"))
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{tune_dir}/optuna.db")
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(completed) >= 12 and {t.user_attrs.get("ray_trial_id") for t in completed} >= set(runs)
    hist = faults.tune_histories(tune_dir)
    done, unique = sum(map(len, hist.values())), sum(len(set(s)) for s in hist.values())
    print(f"driver kills: 5; reports {done}, unique {unique}: {(done - unique) / unique:.1%} redone")
    assert (done - unique) / unique <= 0.15


def test_tracking_server_outage_mid_sweep_loses_no_point(store):
    """A real `mlflow server` goes away mid-sweep (4 trials at a time) and comes
    back: the trials keep running, their points wait in the spool, and every
    point arrives exactly once."""
    outage = float(os.environ.get("RECONLAB_OUTAGE_S", "20"))
    port = faults.free_port()
    server = faults.start_mlflow_server(port, f"sqlite:///{store}/store/mlflow.db")
    p = faults.start_job("--search-space", faults.space(store / "outage.yaml", "outage", OUTAGE_TRIALS, cpu=0.5,
                                                        steps=60),
                         "--storage-path", str(store / "store"), "--experiment", EXPERIMENT,
                         "--tracking-uri", f"http://127.0.0.1:{port}")
    try:
        spool = faults.wait_for_delivered_lines(p, str(store / "store" / "tune" / "outage-*"), 10)
        assert spool is not None, p.communicate()[1][-3000:]
        faults.kill_group(server)
        lines_at_outage = faults.line_count(spool)
        time.sleep(outage)
        assert p.poll() is None or p.returncode == 0
        grown = faults.line_count(spool) - lines_at_outage
        server = faults.start_mlflow_server(port, f"sqlite:///{store}/store/mlflow.db")
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert "tracking store unreachable" in err and "is back" in err
        assert grown > 0  # trials kept reporting while the server was away
        c, parent, runs = faults.assert_one_complete_run_per_trial(f"http://127.0.0.1:{port}", EXPERIMENT, "outage",
                                                                   OUTAGE_TRIALS, steps=60)
        print(f"outage {outage:.0f}s: {grown} spool lines written while the server was away; 0 points lost")
    finally:
        faults.kill_group(server)
        faults.kill_group(p)


def test_a_store_away_at_the_end_leaves_the_sweep_run_for_sync_to_finish(store):
    """The tracking server goes away mid-sweep and stays away: the job exits
    1 naming `reconlab sync`, with every write (the sweep run's summary, best
    params, figures and status too) in the spool. With the server back,
    `reconlab sync` delivers them: the parent run is FINISHED with its
    results, every trial has its one complete run, and nothing is RUNNING."""
    port = faults.free_port()
    backend = f"sqlite:///{store}/store/mlflow.db"
    uri = f"http://127.0.0.1:{port}"
    server = faults.start_mlflow_server(port, backend)
    p = faults.start_job("--search-space", faults.space(store / "away.yaml", "away", 4, steps=20), "--storage-path",
                         str(store / "store"), "--experiment", EXPERIMENT, "--tracking-uri", uri,
                         env={"RECONLAB_FLUSH_TIMEOUT_S": "2"})
    try:
        spool = faults.wait_for_delivered_lines(p, str(store / "store" / "tune" / "away-*"), 2)
        assert spool is not None, p.communicate()[1][-3000:]
        faults.kill_group(server)
        out, err = p.communicate(timeout=600)
        assert p.returncode == 1, err[-3000:]
        assert "best verifier_acc per classifier variant" in out  # the results are printed all the same
        tune_dir = os.path.dirname(spool)
        assert f"reconlab sync {tune_dir}" in err
        server = faults.start_mlflow_server(port, backend)
        c, parent, _ = faults.sweep_runs(uri, EXPERIMENT, "away")
        assert parent.info.status == "RUNNING"
        s = subprocess.run([sys.executable, "-c", "import sys; from reconlab.cli import main; sys.exit(main())",
                            "sync", tune_dir, "--tracking-uri", uri], capture_output=True, text=True, timeout=300)
        assert s.returncode == 0 and " 0 left" in s.stdout, s.stdout + s.stderr[-2000:]
        c, parent, runs = faults.assert_one_complete_run_per_trial(uri, EXPERIMENT, "away", 4, steps=20)
        assert parent.info.status == "FINISHED"
        assert parent.data.metrics["trials"] == 4 and "best.lr" in parent.data.params
        assert {"summary.md", "summary.csv", "best_sgd"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}
    finally:
        faults.kill_group(server)
        faults.kill_group(p)


def test_diverging_trials_end_failed_with_the_reason_and_the_searcher_learns(tmp_path, request):
    """Gradient descent on x^4 from x=1 diverges for lr > 0.5: those trials
    report the worst score and stop; their runs are FAILED with the reason,
    the sweep goes on, and the Optuna study holds their (worst) results."""
    import math

    import optuna

    from reconlab import tracking
    from reconlab.sweep.runner import init_ray, run_tuner, start_parent
    from reconlab.sweep.spec import Resources, SchedulerSpec, SweepSpec

    def descend(config):
        from ray import tune

        x = 1.0
        for step in range(1, 31):
            x -= config["lr"] * 4 * x ** 3
            loss = x ** 4 if abs(x) < 1e100 else math.inf
            if not math.isfinite(loss):
                tune.report({"step": step, "score": -1e3, tracking.DIVERGED: 1.0,
                             "diverged_reason": f"loss {loss} at step {step}"})
                return
            if step % 5 == 0:
                tune.report({"step": step, "score": -math.log10(1 + loss), "loss": loss})

    spec = SweepSpec(name="diverge", metric="score", mode="max", num_samples=8, seed=0,
                     scheduler=SchedulerSpec(type="fifo"), resources_per_trial=Resources(cpu=1),
                     search={"lr": {"type": "loguniform", "low": 0.01, "high": 3.0}})
    import ray

    init_ray(num_cpus=2)
    request.addfinalizer(ray.shutdown)  # leave no Ray runtime in the test process
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = tracking.client(uri)
    exp = tracking.experiment_id(c, "diverge", storage_dir=str(tmp_path), uri=uri)
    sweep = start_parent(c, exp, spec, storage_dir=str(tmp_path), resumed=None, extra_params={})
    grid = run_tuner(spec, descend, sweep=sweep, uri=uri, metric_keys=["score", "loss"], max_t=10, verbose=0)
    assert len(grid) == 8 and not grid.errors
    runs = {r.data.tags[tracking.TAG_TRIAL]: r for r in
            c.search_runs([exp], f"tags.`{tracking.TAG_PARENT}` = '{sweep.run_id}'")}
    lrs = {tid: float(r.data.params["lr"]) for tid, r in runs.items()}
    failed = {tid for tid, r in runs.items() if r.info.status == "FAILED"}
    assert failed == {tid for tid, lr in lrs.items() if lr > 0.5} and 0 < len(failed) < 8
    for tid in failed:
        assert runs[tid].data.tags["reconlab.error"].startswith("diverged: loss inf at step")
    assert all(runs[t].info.status == "FINISHED" for t in set(runs) - failed)
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{sweep.tune_dir}/optuna.db")
    told = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert all(told[t].state == optuna.trial.TrialState.COMPLETE and told[t].value == -1e3 for t in failed)


def test_a_trial_whose_named_checkpoint_was_deleted_restores_from_the_newest_left(tmp_path):
    """The race behind a lost trial after a driver kill, made deterministic:
    Tune's saved state names a checkpoint that is gone (``num_to_keep``
    deleted it before the state reached storage) while a later one of the
    same trial exists. The sweep's trainable (``RestoreFromNewest`` mixed in,
    as ``run_tuner`` does) restores from that later one and finishes; plain
    Tune fails the trial "as it does not exist on storage anymore"."""
    import json
    import shutil
    import tempfile

    import ray
    from ray import tune

    from reconlab.sweep.restore import RestoreFromNewest, newest_checkpoint

    def trainable(config):
        ckpt, start = tune.get_checkpoint(), 0
        if ckpt is not None:
            with ckpt.as_directory() as d, open(os.path.join(d, "step.json")) as f:
                start = json.load(f)["step"] + 1
        for step in range(start, 6):
            if step == 4 and ckpt is None:
                raise RuntimeError("the first attempt stops here")
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "step.json"), "w") as f:
                    json.dump({"step": step}, f)
                tune.report({"step": step, "resumed_at": start}, checkpoint=tune.Checkpoint.from_directory(d))

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        results = {}
        for mixin in (False, True):
            fn = tune.with_parameters(trainable)
            if mixin:
                fn.__mixins__ = (RestoreFromNewest,)
            run = tune.RunConfig(name=f"mixin-{mixin}", storage_path=str(tmp_path), verbose=0,
                                 checkpoint_config=tune.CheckpointConfig(num_to_keep=None))
            grid = tune.Tuner(fn, run_config=run).fit()
            assert grid[0].error is not None  # the first attempt failed after checkpoint_000003
            trial_dir = grid[0].path
            # the state names checkpoint_000003; make it gone, with a later state of the trial left
            shutil.move(os.path.join(trial_dir, "checkpoint_000003"), os.path.join(trial_dir, "checkpoint_000007"))
            grid = tune.Tuner.restore(os.path.join(str(tmp_path), f"mixin-{mixin}"), trainable=fn,
                                      resume_errored=True).fit()
            results[mixin] = grid[0]
        assert "does not exist on storage anymore" in str(results[False].error)
        assert results[True].error is None, results[True].error
        assert results[True].metrics["step"] == 5 and results[True].metrics["resumed_at"] == 4
    finally:
        ray.shutdown()

    import pyarrow.fs

    fs = pyarrow.fs.LocalFileSystem()
    for n in (2, 11, 100):
        (tmp_path / "t" / f"checkpoint_{n:06d}").mkdir(parents=True)
    (tmp_path / "t" / "checkpoint_999999.txt").write_text("not a directory")
    assert newest_checkpoint(fs, str(tmp_path / "t")).endswith("checkpoint_000100")
    assert newest_checkpoint(fs, str(tmp_path / "nothing-here")) is None
