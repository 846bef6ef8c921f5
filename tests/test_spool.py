"""The sweep's write-ahead spool against a real MLflow store: a driver that
died before delivering, a replay that runs twice, a retried trial's redone
steps, orphaned runs, and `reconlab sync`."""

import os
import subprocess
import sys

import pytest

from reconlab import spool, tracking
from reconlab.errors import InputError

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
    """`reconlab ARGS` in this process: its exit code and what it printed.
    (The first test and the credentials test run the real console script.)"""
    import contextlib
    import io

    from reconlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(args))
        except SystemExit as e:
            rc = e.code
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def reconlab_process(*args):
    return subprocess.run([sys.executable, "-c", "import sys; from reconlab.cli import main; sys.exit(main())", *args],
                          capture_output=True, text=True, timeout=120)


def test_sync_delivers_what_a_dead_driver_spooled_and_a_second_replay_changes_nothing(sweep):
    d, uri, c, exp, parent = sweep
    path = d / "tune" / spool.SPOOL_FILE
    os.makedirs(path.parent)
    write_undelivered(path, uri, exp, parent)
    assert spool.find_spools(str(d)) == [str(path)]
    p = reconlab_process("sync", str(d))
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
    s.metrics("t", 4, {"acc": 0.4})  # appended after the repair: a line of its own
    assert s.flush(60)
    s.close()
    lines = spool.read_lines(str(path))
    assert lines[-2] is None and lines[-1]["step"] == 4
    (r,) = trial_runs(c, exp, parent).values()
    assert history(c, r.info.run_id) == [*STEPS, 4]


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


# ------------------------------------------------------------ trust boundaries and durability (issue 12)

def _spool_with_header(path, header, *lines):
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(op) + "\n" for op in (header, *lines)))


def test_a_spool_file_runs_no_code(sweep):
    """A header naming an importable function (``os:system``, as an older
    spool named its renderer) and an ``end`` line whose ``ref`` is a shell
    command: ``reconlab sync`` runs nothing (a spool names no code: it only
    lists files) and skips the malformed line."""
    d, uri, c, exp, parent = sweep
    marker = d / "pwned"
    end = {"op": "end", "trial": "t", "status": "FINISHED", "reason": None, "ref": f"touch {marker}"}
    start = {"op": "start", "trial": "t", "name": "t", "trainable": "fn", "params": {}}
    head = {"op": "header", "uri": uri, "exp_id": exp, "parent": parent, "step_key": "acc"}
    path = d / "tune" / "evil" / spool.SPOOL_FILE
    _spool_with_header(path, {**head, "artifacts": "os:system"}, start, end)
    p = reconlab("sync", str(path))
    assert p.returncode == 1 and "2 delivered, 0 left, 1 unreadable line(s) skipped" in p.stdout, p.stdout + p.stderr
    assert not marker.exists()
    (r,) = trial_runs(c, exp, parent).values()
    assert r.info.status == "RUNNING"  # the malformed end line was skipped, not applied


def test_a_finished_trial_s_files_are_written_beside_the_spool_and_sync_uploads_them(sweep):
    """``end`` renders a finished trial's files with the study's function (of
    this process, never named on disk), writes them under ``trial_files/``
    before the line that lists them, and a later ``reconlab sync`` (no study
    code) uploads exactly those; a failed trial renders nothing."""
    d, uri, c, exp, parent = sweep
    path = d / "tune" / "s" / spool.SPOOL_FILE
    seen = []

    def files(ref):
        seen.append(ref)
        return {"grid.png": b"\x89PNG fake", "curves/loss.csv": f"lr,{ref['config']['lr']}\n".encode()}

    s = spool.Spool(str(path), uri, exp, parent, "acc", files, deliver=False)
    for t in ("a", "b"):
        s.start(t, t, {"lr": 0.5}, "fn")
    s.end("a", "FINISHED", None, {"config": {"lr": 0.5}})
    s.end("b", "FAILED", "boom", {"config": {"lr": 0.5}})
    s.close()
    assert len(seen) == 1
    lines = [op for op in spool.read_lines(str(path)) if op and op["op"] == "end"]
    assert lines[0]["files"] == {"grid.png": "trial_files/a/grid.png", "curves/loss.csv": "trial_files/a/curves/loss.csv"}
    assert "files" not in lines[1]
    assert (path.parent / "trial_files" / "a" / "curves" / "loss.csv").read_bytes() == b"lr,0.5\n"
    p = reconlab("sync", str(path))
    assert p.returncode == 0, p.stderr
    runs = trial_runs(c, exp, parent)
    assert sorted(a.path for a in c.list_artifacts(runs["a"].info.run_id)) == ["curves", "grid.png"]
    assert [a.path for a in c.list_artifacts(runs["a"].info.run_id, "curves")] == ["curves/loss.csv"]
    assert not list(c.list_artifacts(runs["b"].info.run_id))
    assert runs["b"].info.status == "FAILED"


def test_a_renderer_that_fails_or_names_a_bad_file_holds_nothing_up(sweep):
    d, uri, c, exp, parent = sweep
    path = d / "tune" / "s" / spool.SPOOL_FILE
    renders = iter([RuntimeError("checkpoint gone"), {"../escape.png": b"x"}])

    def files(ref):
        r = next(renders)
        if isinstance(r, Exception):
            raise r
        return r

    s = spool.Spool(str(path), uri, exp, parent, "acc", files)
    for t in ("a", "b"):
        s.start(t, t, {}, "fn")
        s.end(t, "FINISHED", None, {})
    assert s.flush(60)
    s.close()
    assert [e.split(":")[0] for e in s.errors] == ["files of a", "files of b"]
    assert not (d / "tune" / "escape.png").exists()
    assert {r.info.status for r in trial_runs(c, exp, parent).values()} == {"FINISHED"}


@pytest.mark.parametrize("target", ["trial_files/../../../mlflow.db", "trial_files/t/link.png", "elsewhere/x.png"])
def test_an_end_line_cannot_upload_a_file_outside_the_storage_directory(sweep, target):
    """A listed file must be a plain name under ``trial_files/`` (a ``..``
    is refused when the line is read) and lie under the storage directory
    once links are resolved (a link out is skipped and counted)."""
    d, uri, c, exp, parent = sweep
    secret = d.parent / f"{d.name}-secret.txt"
    secret.write_text("not yours")
    path = d / "tune" / "s" / spool.SPOOL_FILE
    (path.parent / "trial_files" / "t").mkdir(parents=True)
    os.symlink(secret, path.parent / "trial_files" / "t" / "link.png")
    head = {"op": "header", "uri": uri, "exp_id": exp, "parent": parent, "step_key": "acc"}
    start = {"op": "start", "trial": "t", "name": "t", "trainable": "fn", "params": {}}
    end = {"op": "end", "trial": "t", "status": "FINISHED", "reason": None, "ref": {}, "files": {"x.png": target}}
    _spool_with_header(path, head, start, end)
    p = reconlab("sync", str(path))
    assert p.returncode == 1, p.stderr  # a line skipped, or a file not uploaded: never "all delivered"
    assert ("1 unreadable line(s) skipped" in p.stdout) == (not target.endswith("link.png")), p.stdout
    assert ("1 refused by the store (first: file x.png of trial t" in p.stdout) == target.endswith("link.png")
    (r,) = trial_runs(c, exp, parent).values()
    assert not list(c.list_artifacts(r.info.run_id))
    # a line that names a path badly is not applied at all; a link out is applied without its file
    assert r.info.status == ("FINISHED" if target.endswith("link.png") else "RUNNING")


def test_sync_delivers_to_the_store_the_user_names_never_the_one_a_spool_names(sweep):
    """The header's URI is only compared: a spool naming another store is
    refused (nothing connects to it, so no credential is sent there) unless
    --retarget, which delivers to the user's store."""
    import socket

    d, uri, c, exp, parent = sweep
    trap = socket.socket()
    trap.bind(("127.0.0.1", 0))
    trap.listen(8)
    trap.setblocking(False)
    path = d / "tune" / "s" / spool.SPOOL_FILE
    _spool_with_header(path, {"op": "header", "uri": f"http://127.0.0.1:{trap.getsockname()[1]}", "exp_id": exp,
                              "parent": parent, "step_key": "acc", "artifacts": None},
                       {"op": "start", "trial": "t", "name": "t", "trainable": "fn", "params": {"lr": "0.1"}})
    env_pw = {"MLFLOW_TRACKING_PASSWORD": "pw-must-stay-home"}
    p = subprocess.run([sys.executable, "-c", "import sys; from reconlab.cli import main; sys.exit(main())", "sync",
                        str(path)], capture_output=True, text=True, timeout=120, env={**os.environ, **env_pw})
    assert p.returncode == 2 and "--retarget" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    with pytest.raises(BlockingIOError):
        trap.accept()  # nobody called the spool's store
    p = reconlab("sync", str(path), "--tracking-uri", uri, "--retarget")
    assert p.returncode == 0, p.stderr
    trap.close()
    assert set(trial_runs(c, exp, parent)) == {"t"}


def test_the_header_stores_the_uri_redacted(tmp_path):
    path = tmp_path / spool.SPOOL_FILE
    s = spool.Spool(str(path), "https://alice:s3cret@mlflow.example.org", "1", "p", "acc", deliver=False)
    s.close()
    text = path.read_text()
    assert "s3cret" not in text and "https://alice:***@mlflow.example.org" in text


def test_a_second_driver_is_refused_naming_the_holder(sweep):
    d, uri, c, exp, parent = sweep
    path = d / "tune" / "s" / spool.SPOOL_FILE
    s = spool.Spool(str(path), uri, exp, parent, "acc")
    s.start("t", "trial_t", {"lr": 0.1}, "fn")
    with pytest.raises(InputError, match=rf"held by another driver or sync \(pid {os.getpid()}\)"):
        spool.Spool(str(path), uri, exp, parent, "acc")
    p = reconlab("sync", str(path))  # `reconlab sync` during a live sweep
    assert p.returncode == 2 and f"pid {os.getpid()}" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert s.flush(60)
    s.close()
    s2 = spool.Spool(str(path), uri, exp, parent, "acc")  # released on close
    s2.close()


def test_a_killed_holder_releases_the_lock(sweep):
    d, uri, c, exp, parent = sweep
    path = d / "s" / spool.SPOOL_FILE
    code = ("import sys, time; from reconlab import spool; "
            f"s = spool.Spool({str(path)!r}, {uri!r}, {exp!r}, {parent!r}, 'acc', deliver=False); "
            "print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"pid {holder.pid}"):
            spool.Spool(str(path), uri, exp, parent, "acc", deliver=False)
    finally:
        holder.kill()
        holder.wait()
    spool.Spool(str(path), uri, exp, parent, "acc", deliver=False).close()


def test_short_writes_still_write_whole_lines(sweep, monkeypatch):
    d, uri, c, exp, parent = sweep
    real = os.write
    monkeypatch.setattr(spool.os, "write", lambda fd, data: real(fd, bytes(data[:7])))  # at most 7 bytes a call
    path = d / spool.SPOOL_FILE
    write_undelivered(path, uri, exp, parent, trials=("t",))
    monkeypatch.setattr(spool.os, "write", real)
    assert all(op is not None for op in spool.read_lines(str(path)))
    assert len(spool.read_lines(str(path))) == 1 + 1 + 3 + 1


def test_trial_ends_and_the_parent_end_reach_the_disk(tmp_path, monkeypatch):
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(spool.os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    s = spool.Spool(str(tmp_path / spool.SPOOL_FILE), "sqlite:///x.db", "1", "p", "acc", deliver=False)
    s.start("t", "t", {}, "fn")
    s.metrics("t", 1, {"acc": 0.5})
    assert synced == []
    s.end("t", "FINISHED", None)
    assert len(synced) == 1
    spool.ParentLog(s).set_terminated("FINISHED")
    assert len(synced) == 2
    s.close()


def test_the_done_count_is_saved_safely_from_two_threads(tmp_path):
    """The delivery thread and the driver both save ``.done``: each write
    goes through its own temporary file (one shared name raced)."""
    import threading

    s = spool.Spool(str(tmp_path / spool.SPOOL_FILE), "sqlite:///x.db", "1", "p", "acc", deliver=False)
    errors = []

    def bump():
        try:
            for _ in range(300):
                s.done += 1
                s._save_done()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s._save_done()
    s.close()
    assert not errors, errors[:1]
    assert spool.done_count(s.path) == s.done
    assert sorted(os.listdir(tmp_path)) == sorted([spool.SPOOL_FILE, spool.SPOOL_FILE + ".done",
                                                   spool.SPOOL_FILE + ".lock"])


def test_the_parent_run_goes_through_the_spool_and_sync_finishes_it(sweep):
    """What a job writes to its sweep run at the end (summary, best params,
    figures, status) waits in the spool like the trials' lines: a driver
    that ended with the store away leaves it for ``reconlab sync``."""
    d, uri, c, exp, parent = sweep
    path = d / "tune" / "s" / spool.SPOOL_FILE
    s = spool.Spool(str(path), uri, exp, parent, "acc", deliver=False)
    log = spool.ParentLog(s)
    log.log_batch(params={"best.lr": 0.1}, metrics={"best_acc": 0.75})
    log.log_text("| a |\n", "summary.md")
    log.log_bytes(b"\x89PNG fake", "best_sgd/inversion_task1.png")
    log.set_terminated("FINISHED")
    s.close()
    assert c.get_run(parent).info.status == "RUNNING"
    p = reconlab("sync", str(d))
    assert p.returncode == 0, p.stderr
    run = c.get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"best.lr": "0.1"} and run.data.metrics == {"best_acc": 0.75}
    names = {a.path for a in c.list_artifacts(parent)} | {a.path for a in c.list_artifacts(parent, "best_sgd")}
    assert {"summary.md", "best_sgd/inversion_task1.png"} <= names
    assert reconlab("sync", str(d)).returncode == 0  # nothing left: a second sync changes nothing
    assert len(c.get_metric_history(parent, "best_acc")) == 1


def test_a_parent_artifact_line_cannot_name_a_file_outside_the_spool(sweep):
    d, uri, c, exp, parent = sweep
    secret = d / "secret.txt"
    secret.write_text("not for the store")
    path = d / "tune" / "s" / spool.SPOOL_FILE
    _spool_with_header(path, {"op": "header", "uri": uri, "exp_id": exp, "parent": parent, "step_key": "acc",
                              "artifacts": None},
                       {"op": "parent_artifact", "name": "x.txt", "file": "../../secret.txt"},
                       {"op": "parent_artifact", "name": "../../escape.txt", "file": "parent_artifacts/0.bin"})
    assert spool.read_lines(str(path))[1:] == [None, None]
    assert reconlab("sync", str(path)).returncode == 1
    assert c.list_artifacts(parent) == []


def test_trial_runs_repeat_the_sweep_run_s_source_and_dataset_and_the_experiment_opens_on_runs(sweep):
    """MLflow's conventions, so its UI shows what researchers look for: the
    experiment is a model-training one (MLflow 3 opens it on its runs, not on
    GenAI traces); every trial run carries its sweep run's source (the job,
    the git commit) and dataset input (name, digest)."""
    d, uri, c, exp, parent = sweep
    assert c.get_experiment(exp).tags[tracking.EXPERIMENT_KIND[0]] == "custom_model_development"
    source = tracking.source_tags(os.path.join(os.path.dirname(os.path.dirname(__file__)), "jobs",
                                               "inversion_sweep.py"))
    assert source[tracking.TAG_SOURCE_NAME] == "jobs/inversion_sweep.py"
    for k, v in source.items():
        c.set_tag(parent, k, v)
    c.log_inputs(parent, datasets=[tracking.dataset_input("digits", "0123456789abcdef" * 4)])
    write_undelivered(d / spool.SPOOL_FILE, uri, exp, parent)
    assert spool.sync(str(d / spool.SPOOL_FILE), uri) == spool.Synced(11, 0, [], 0)
    runs = trial_runs(c, exp, parent)
    assert len(runs) == 2
    for r in runs.values():
        assert {k: r.data.tags.get(k) for k in source} == source
        (ds,) = r.inputs.dataset_inputs
        assert (ds.dataset.name, ds.dataset.digest) == ("digits", ("0123456789abcdef" * 4)[:36])
        assert [(t.key, t.value) for t in ds.tags] == [("mlflow.data.context", "training")]
    # an experiment made before the tag existed gets it when a job next opens it
    old = c.create_experiment("old", artifact_location=str(d / "old"))
    assert tracking.EXPERIMENT_KIND[0] not in c.get_experiment(old).tags
    assert tracking.experiment_id(c, "old", storage_dir=str(d), uri=uri) == old
    assert c.get_experiment(old).tags[tracking.EXPERIMENT_KIND[0]] == "custom_model_development"


def test_a_trial_s_nodes_become_tags_of_its_run_and_a_move_is_recorded(sweep):
    """The Ray node of each result (``sweep.nodes``) reaches the trial's run:
    the node it is on, and every node it ran on when it moved (a retry on
    another node after its node died)."""
    from reconlab.sweep.nodes import TAG_NODE_ID, TAG_NODE_IP, TAG_NODES, node_change

    d, uri, c, exp, parent = sweep
    s = spool.Spool(str(d / spool.SPOOL_FILE), uri, exp, parent, "acc")
    seen = {}
    s.start("t", "trial_t", {"lr": 0.1}, "fn")
    for step, node in enumerate(["n1", "n1", "n2", "n2"], 1):
        tags = node_change(seen, "t", {"node_id": node, "node_ip": "10.0.0." + node[-1], "acc": step})
        assert (tags is None) == (step in (2, 4))  # a tag line only when the node changes
        if tags:
            s.tags("t", tags)
        s.metrics("t", step, {"acc": step / 10})
    s.end("t", "FINISHED", None)
    assert s.flush(60)
    s.close()
    (r,) = trial_runs(c, exp, parent).values()
    assert r.data.tags[TAG_NODES] == "n1,n2" and r.data.tags[TAG_NODE_ID] == "n2"
    assert r.data.tags[TAG_NODE_IP] == "10.0.0.2" and history(c, r.info.run_id) == [1, 2, 3, 4]
    assert node_change(seen, "t", {"acc": 1}) is None  # a result without a node (an old trainable)


@pytest.mark.parametrize("line", [
    {"op": "tags", "trial": "t", "tags": {"reconlab.node_id": 3}},
    {"op": "tags", "trial": "t", "tags": {}},
    {"op": "tags", "trial": "t", "tags": "reconlab.node_id=x"},
    {"op": "tags", "tags": {"reconlab.node_id": "x"}},
])
def test_a_malformed_tags_line_is_refused(line):
    assert spool.check_line(line) == "malformed tags line"
    assert spool.check_line({"op": "tags", "trial": "t", "tags": {"reconlab.node_id": "x"}}) is None


# ------------------------------------------------------------ the store's edges (issue 30)

def test_retarget_into_a_store_without_the_sweep_s_run_stops_before_marking_anything(sweep, tmp_path_factory):
    """The sweep's old store is gone; `--retarget` into a new, empty one used
    to print "N delivered" while every write failed and to mark the spool
    delivered. It now stops with exit 2 and one line, the spool untouched, and
    the right store still gets everything."""
    d, uri, c, exp, parent = sweep
    path = d / "tune" / "s" / spool.SPOOL_FILE
    os.makedirs(path.parent)
    write_undelivered(path, uri, exp, parent)
    other = tmp_path_factory.mktemp("elsewhere")
    new_uri = f"sqlite:///{other}/mlflow.db"
    nc = tracking.client(new_uri)
    tracking.experiment_id(nc, "spool", storage_dir=str(other), uri=new_uri)  # the same experiment id, another store
    p = reconlab("sync", str(path), "--tracking-uri", new_uri, "--retarget")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stdout + p.stderr
    assert f"the store has no run {parent} in experiment {exp}" in p.stderr and str(path) in p.stderr
    assert spool.done_count(str(path)) == 0 and spool.find_spools(str(d)) == [str(path)]
    assert nc.search_runs([e.experiment_id for e in nc.search_experiments()]) == []
    p = reconlab("sync", str(path), "--tracking-uri", uri)
    assert p.returncode == 0 and "11 delivered, 0 left" in p.stdout, p.stdout + p.stderr
    assert {t: r.info.status for t, r in trial_runs(c, exp, parent).items()} == {"t1": "FINISHED", "t2": "FINISHED"}


def test_refusals_are_counted_apart_and_named_once(sweep, caplog):
    """A line the store refuses for good is not "delivered": `sync` counts
    the refusals apart and names the first; the log names one, not each."""
    import logging

    d, uri, c, exp, parent = sweep
    path = d / spool.SPOOL_FILE
    s = spool.Spool(str(path), uri, exp, parent, "acc", deliver=False)
    for t in ("a", "b", "c"):
        s.start(t, f"trial_{t}", {"lr*": "0.1"}, "fn")  # a name MLflow refuses
        s.metrics(t, 1, {"acc": 0.5})
        s.end(t, "FINISHED", None)
    s.close()
    with caplog.at_level(logging.WARNING, logger="reconlab.spool"):
        got = spool.sync(str(path), uri)
    assert (got.delivered, got.left, got.unreadable, len(got.refused)) == (7, 0, 0, 3), got  # the header counts
    assert got.refused[0].startswith("start a: ") and "refused by the store (first: start a: " in got.summary()
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
    runs = trial_runs(c, exp, parent)
    # the refused params do not sink the trial's other lines
    assert all(r.info.status == "FINISHED" and history(c, r.info.run_id) == [1] for r in runs.values())


def _real_spool(path, uri, exp, parent):
    """A spool as a driver writes it (the same calls): three trials with
    params, reports, node tags and files, and the parent's log, artifact and
    end. Returns its lines."""
    s = spool.Spool(str(path), uri, exp, parent, "acc", deliver=False,
                    files=lambda ref: {"grid.json": b'{"x": 1}'})
    for t in ("t1", "t2", "t3"):
        s.start(t, f"trial_{t}", {"lr": "0.1", "seed": t[-1]}, "fn")
    for step in STEPS:
        for t in ("t1", "t2", "t3"):
            s.metrics(t, step, {"acc": step / 10, "loss": 1.0 / step})
    s.tags("t2", {"reconlab.node_id": "n1"})
    for t in ("t1", "t2", "t3"):
        s.end(t, "FINISHED", None, {"config": {"lr": 0.1}, "last_result": {}, "checkpoint": None})
    s.parent_log({"best_lr": "0.1"}, {"best_acc": 0.3})
    s.parent_artifact("table.txt", b"a table")
    s.parent_end("FINISHED")
    s.close()
    return path.read_bytes().splitlines(keepends=True)


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    uri = f"sqlite:///{d}/mlflow.db"
    c = tracking.client(uri)
    return d, uri, c, tracking.experiment_id(c, "fuzz", storage_dir=str(d), uri=uri)


def _json_values():
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2 ** 63, max_value=10 ** 400),
                        st.floats(), st.text(max_size=20), st.text(min_size=5000, max_size=6000))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                        max_leaves=6)


def _corruptions():
    from hypothesis import strategies as st

    flip = st.tuples(st.just("flip"), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6), st.integers(1, 255))
    cut = st.tuples(st.just("cut"), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6))
    retype = st.tuples(st.just("retype"), st.integers(0, 10 ** 6), st.sampled_from(_KEYS), _json_values())
    repeat = st.tuples(st.just("repeat"), st.integers(0, 10 ** 6))
    swap = st.tuples(st.just("swap"), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6))
    return st.lists(st.one_of(flip, cut, retype, repeat, swap), min_size=1, max_size=4)


_KEYS = ("op", "trial", "step", "ts", "values", "params", "tags", "status", "reason", "ref", "files", "name",
         "trainable", "metrics", "file", "uri", "exp_id", "parent")  # every key a line has, and then some


def _corrupt(lines: list[bytes], how) -> list[bytes]:
    """Apply the corruptions to the lines after the header (a bad header is
    the whole spool's refusal, tested apart)."""
    import json

    head, body = lines[:1], list(lines[1:])
    for c in how:
        i = c[1] % len(body)
        if c[0] == "flip":
            b = bytearray(body[i])
            b[c[2] % len(b)] ^= c[3]
            body[i] = bytes(b)
        elif c[0] == "cut":
            body[i] = body[i][:c[2] % len(body[i])] + b"\n"
        elif c[0] == "retype":
            try:
                op = json.loads(body[i])
                op[c[2]] = c[3]
                body[i] = json.dumps(op).encode() + b"\n"
            except (ValueError, TypeError):
                pass
        elif c[0] == "repeat":
            body.insert(i, body[i])
        else:
            j = c[2] % len(body)
            body[i], body[j] = body[j], body[i]
    return head + body


def _trial_of(raw: bytes):
    import json

    try:
        op = json.loads(raw)
        return op.get("trial") if isinstance(op, dict) and isinstance(op.get("trial"), str) else None
    except ValueError:
        return None


def test_a_corrupted_spool_never_crashes_sync_and_every_intact_trial_arrives(fuzz_store):
    """Random corruptions of a real spool (bytes flipped, lines cut, fields
    given any JSON value of any size, lines repeated or swapped): `sync`
    raises nothing, and every trial whose lines were all left alone (and in
    order) arrives whole: its params, every step, its status and its file."""
    from hypothesis import HealthCheck, example, given, settings

    d, uri, c, exp = fuzz_store
    n = iter(range(10 ** 6))

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_corruptions())
    @example([("retype", 2, "op", {"op": "end"})])  # each crashed or hung sync before (issue 30)
    @example([("retype", 3, "step", 10 ** 30), ("retype", 5, "ts", -(10 ** 20))])
    @example([("retype", 4, "values", {"acc": 10 ** 400})])
    @example([("retype", 0, "trial", {"t": 1})])
    @example([("retype", 1, "params", {"lr": 5}), ("retype", 7, "params", {"lr": None})])
    def check(how):
        parent = c.create_run(exp, tags={tracking.TAG_SWEEP: "s"}).info.run_id
        path = d / "tune" / f"s{next(n)}" / spool.SPOOL_FILE
        path.parent.mkdir(parents=True)
        lines = _real_spool(path, uri, exp, parent)
        bad = _corrupt(lines, how)
        path.write_bytes(b"".join(bad))
        got = spool.sync(str(path), uri, timeout=30)
        assert got.left == 0
        assert got.delivered + got.unreadable + len(got.refused) == len(bad)  # every line accounted for
        mine = {t: [x for x in lines if _trial_of(x) == t] for t in ("t1", "t2", "t3")}
        touched = {_trial_of(x) for x in bad if x not in lines} | {_trial_of(x) for x in lines if x not in bad}
        runs = trial_runs(c, exp, parent)
        for t, own in mine.items():
            if t in touched or [x for x in bad if _trial_of(x) == t] != own:
                continue
            r = runs[t]
            assert r.data.params == {"lr": "0.1", "seed": t[-1]} and r.info.status == "FINISHED"
            assert history(c, r.info.run_id) == STEPS
            assert [a.path for a in c.list_artifacts(r.info.run_id)] == ["grid.json"]

    check()
