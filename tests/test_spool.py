"""The sweep's write-ahead spool against a real MLflow store: a driver that
died before delivering, a replay that runs twice, a retried trial's redone
steps, orphaned runs, and `reconlab sync`."""

import os
import subprocess
import sys

import pytest

from reconlab import spool, tracking

STEPS = [1, 2, 3]


@pytest.fixture()
def sweep(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = tracking.client(uri)
    exp = tracking.experiment_id(c, "spool", storage_dir=str(tmp_path), uri=uri)
    parent = c.create_run(exp, tags={tracking.TAG_SWEEP: "s"}).info.run_id
    return tmp_path, uri, c, exp, parent


def write_undelivered(path, uri, exp, parent, trials=("t1", "t2")):
    """What a driver killed before its delivery thread ran leaves behind."""
    s = spool.Spool(str(path), uri, exp, parent, "acc", deliver=False)
    for t in trials:
        s.start(t, f"trial_{t}", {"lr": 0.1, "seed": 0}, "fn")
    for step in STEPS:
        for t in trials:
            s.metrics(t, step, {"acc": step / 10, "loss": 1.0 / step, "note": "not a number"})
    for t in trials:
        s.end(t, "FINISHED", None)
    s.close()


def history(c, run_id, key="acc"):
    return sorted(m.step for m in c.get_metric_history(run_id, key))


def trial_runs(c, exp, parent):
    return {r.data.tags[tracking.TAG_TRIAL]: r for r in
            c.search_runs([exp], f"tags.`{tracking.TAG_PARENT}` = '{parent}'")}


def reconlab(*args):
    return subprocess.run([sys.executable, "-c", "import sys; from reconlab.cli import main; sys.exit(main())", *args],
                          capture_output=True, text=True, timeout=120)


def test_sync_delivers_what_a_dead_driver_spooled_and_a_second_replay_changes_nothing(sweep):
    d, uri, c, exp, parent = sweep
    path = d / "tune" / spool.SPOOL_FILE
    os.makedirs(path.parent)
    write_undelivered(path, uri, exp, parent)
    assert spool.find_spools(str(d)) == [str(path)]
    p = reconlab("sync", str(d))
    assert p.returncode == 0, p.stderr
    assert f"{path}: 11 delivered, 0 left" in p.stdout  # header, 2 starts, 6 metric lines, 2 ends
    runs = trial_runs(c, exp, parent)
    assert set(runs) == {"t1", "t2"}
    for r in runs.values():
        assert r.info.status == "FINISHED" and r.data.params == {"lr": "0.1", "seed": "0"}
        assert history(c, r.info.run_id) == STEPS and history(c, r.info.run_id, "loss") == STEPS
    assert spool.find_spools(str(d)) == []
    # a crash between delivery and bookkeeping: everything is delivered again
    os.remove(str(path) + ".done")
    assert reconlab("sync", str(path)).returncode == 0
    runs = trial_runs(c, exp, parent)
    assert len(runs) == 2 and all(history(c, r.info.run_id) == STEPS for r in runs.values())


def test_a_retried_trial_s_redone_steps_are_dropped_and_its_run_continues(sweep):
    d, uri, c, exp, parent = sweep
    s = spool.Spool(str(d / spool.SPOOL_FILE), uri, exp, parent, "acc")
    s.start("t", "trial_t", {"lr": 0.1}, "fn")
    for step in (1, 2, 3):
        s.metrics("t", step, {"acc": step})
    s.start("t", "trial_t", {"lr": 0.1}, "fn")  # retried from its step-1 checkpoint
    for step in (2, 3, 4):
        s.metrics("t", step, {"acc": step})
    s.end("t", "FINISHED", None)
    assert s.flush(60)
    s.close()
    (r,) = trial_runs(c, exp, parent).values()
    assert history(c, r.info.run_id) == [1, 2, 3, 4] and r.info.status == "FINISHED"


def test_diverged_and_failed_trials_keep_their_reason(sweep):
    d, uri, c, exp, parent = sweep
    s = spool.Spool(str(d / spool.SPOOL_FILE), uri, exp, parent, "acc")
    s.start("t", "trial_t", {}, "fn")
    status, reason = tracking.trial_outcome({tracking.DIVERGED: 1.0, "diverged_reason": "loss is nan at step 7"}, None)
    s.end("t", status, reason)
    assert s.flush(60)
    s.close()
    (r,) = trial_runs(c, exp, parent).values()
    assert r.info.status == "FAILED" and r.data.tags["reconlab.error"] == "diverged: loss is nan at step 7"


def test_reconcile_closes_runs_tune_forgot_and_fixes_statuses(sweep):
    d, uri, c, exp, parent = sweep
    write_undelivered(d / spool.SPOOL_FILE, uri, exp, parent, trials=("kept", "lost"))
    s = spool.Spool(str(d / spool.SPOOL_FILE), uri, exp, parent, "acc")
    assert s.flush(60)
    counts = s.reconcile({"kept": ("FAILED", "ValueError: boom")})
    s.close()
    assert counts == {"closed": 1, "orphans": 1}
    runs = trial_runs(c, exp, parent)  # active runs only
    assert set(runs) == {"kept"} and runs["kept"].info.status == "FAILED"
    assert runs["kept"].data.tags["reconlab.error"] == "ValueError: boom"
    lost = c.search_runs([exp], "tags.`reconlab.trial_id` = 'lost'", run_view_type=2)[0]  # DELETED_ONLY
    assert lost.data.tags[spool.TAG_ORPHAN] and lost.info.lifecycle_stage == "deleted"


def test_a_cut_last_line_is_skipped_and_appending_goes_on(sweep):
    d, uri, c, exp, parent = sweep
    path = d / spool.SPOOL_FILE
    write_undelivered(path, uri, exp, parent, trials=("t",))
    with open(path, "ab") as f:
        f.write(b'{"op": "metrics", "trial": "t", "st')  # the kill hit mid-write
    s = spool.Spool(str(path), uri, exp, parent, "acc")
    assert s.flush(60)
    s.close()
    assert spool.read_lines(str(path))[-1] is None
    (r,) = trial_runs(c, exp, parent).values()
    assert history(c, r.info.run_id) == STEPS


def test_sync_bad_path_is_bad_input(tmp_path):
    p = reconlab("sync", str(tmp_path / "nope"))
    assert p.returncode == 2 and p.stderr.strip().startswith("error: ") and "nope" in p.stderr
    (tmp_path / "x.jsonl").write_text("{}\n")
    p = reconlab("sync", str(tmp_path / "x.jsonl"))
    assert p.returncode == 2 and "not a reconlab spool" in p.stderr


def test_a_round_sends_each_run_s_points_in_one_call_and_a_retried_run_runs_again(sweep):
    d, uri, c, exp, parent = sweep
    s = spool.Spool(str(d / spool.SPOOL_FILE), uri, exp, parent, "acc", batch_s=3600)  # a round only on flush
    calls = []
    send = s.client.log_batch
    s.client.log_batch = lambda run_id, **kw: (calls.append((run_id, kw)), send(run_id, **kw))[1]
    for t in ("a", "b"):
        s.start(t, f"trial_{t}", {"lr": 0.1}, "fn")
    for step in (1, 2, 3, 4):
        for t in ("a", "b"):
            s.metrics(t, step, {"acc": step / 10, "loss": 1.0 / step})
    s.end("a", "FAILED", "worker died")
    s.start("a", "trial_a", {"lr": 0.1}, "fn")  # retried: its run must be RUNNING again
    assert s.flush(60)
    s.close()
    assert len(calls) == len({run_id for run_id, _ in calls}) == 2  # one call a run
    assert all(kw["params"] and kw["metrics"] for _, kw in calls)
    runs = trial_runs(c, exp, parent)
    assert {t: r.info.status for t, r in runs.items()} == {"a": "RUNNING", "b": "RUNNING"}
    for r in runs.values():
        assert history(c, r.info.run_id) == [1, 2, 3, 4] and history(c, r.info.run_id, "loss") == [1, 2, 3, 4]
        assert r.data.params == {"lr": "0.1"}


def test_a_round_with_only_a_start_still_logs_the_params(sweep):
    d, uri, c, exp, parent = sweep
    s = spool.Spool(str(d / spool.SPOOL_FILE), uri, exp, parent, "acc")
    s.start("t", "trial_t", {"lr": 0.1, "seed": 3}, "fn")
    assert s.flush(60)
    s.close()
    (r,) = trial_runs(c, exp, parent).values()
    assert r.data.params == {"lr": "0.1", "seed": "3"} and r.info.status == "RUNNING"


def test_a_line_the_store_refuses_for_good_is_skipped_alone(sweep):
    """The round is redone line by line: the other runs' points, buffered when
    the refusal came, still arrive."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    d, uri, c, exp, parent = sweep
    s = spool.Spool(str(d / spool.SPOOL_FILE), uri, exp, parent, "acc", batch_s=3600)
    end = s.client.set_terminated

    def refuse_a(run_id, status=None):
        if run_id == s.run_ids.get("a"):
            raise MlflowException("refused", error_code=INVALID_PARAMETER_VALUE)
        return end(run_id, status=status)

    s.client.set_terminated = refuse_a
    for t in ("a", "b"):
        s.start(t, f"trial_{t}", {"lr": 0.1}, "fn")
        for step in STEPS:
            s.metrics(t, step, {"acc": step / 10})
    s.end("a", "FINISHED", None)
    s.end("b", "FINISHED", None)
    assert s.flush(60)
    s.close()
    assert len(s.errors) == 1 and s.errors[0].startswith("end a: ")
    runs = trial_runs(c, exp, parent)
    assert {t: r.info.status for t, r in runs.items()} == {"a": "RUNNING", "b": "FINISHED"}
    assert all(history(c, r.info.run_id) == STEPS for r in runs.values())
