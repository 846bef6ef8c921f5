"""What a sweep shows while it runs (issue 17): one live line on a terminal,
a few plain lines elsewhere, never Tune's trial table."""

import io
import sys
import types

import pytest

from reconlab import progress, tracking


def trial(status, stopped_early=False, **last):
    t = types.SimpleNamespace(status=status, last_result=last, trial_id=str(id(last)))
    if stopped_early:
        t.stopped_early = True
    return t


TRIALS = [trial("TERMINATED", acc=0.5, done=True), trial("TERMINATED", True, acc=0.9),  # the second stopped by ASHA
          trial("ERROR", acc=float("nan")), trial("RUNNING", acc=0.7), trial("PENDING")]


def test_counts_tell_done_stopped_failed_running_and_the_best_finite_value():
    c = progress.counts(TRIALS, "acc", "max")
    assert c == {"done": 1, "running": 1, "failed": 1, "stopped": 1, "pending": 1, "best": 0.9}
    assert progress.counts(TRIALS, "acc", "min")["best"] == 0.5
    assert progress.counts([trial("PENDING")], "acc", "max")["best"] is None


def test_the_plain_line_has_counts_best_elapsed_and_eta():
    line = progress.plain_line(progress.counts(TRIALS, "acc", "max"), 10, "acc", 90)
    assert line == ("[reconlab] trials 3/10 ended (1 running, 1 failed, 1 stopped early; best acc 0.9), "
                    "1:30 elapsed, ETA 3:30")
    assert "ETA" not in progress.plain_line(progress.counts(TRIALS[:3], "acc", "max"), 3, "acc", 90)


@pytest.mark.parametrize("tty", [False, True])
def test_the_callback_prints_a_line_a_minute_off_a_terminal_and_a_bar_on_one(tty, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    cb = progress.progress_callback(10, "acc", "max", tty=tty, every_s=3600)
    for i in range(50):  # Tune calls this at every step of its loop
        cb.on_step_begin(i, TRIALS)
    from ray import cloudpickle

    assert cloudpickle.loads(cloudpickle.dumps(cb)).bar is None  # Tune pickles callbacks with the experiment
    cb.on_experiment_end(TRIALS)
    out = err.getvalue()
    if tty:
        assert "trials:  30%" in out and "3/10" in out and "1 stopped early; best acc 0.9" in out
        assert "[reconlab]" not in out and out.count("\n") <= 1  # redrawn in place
    else:
        assert out.splitlines() == [progress.plain_line(progress.counts(TRIALS, "acc", "max"), 10, "acc", 0)] * 2


def test_the_epoch_bar_follows_the_training_run_in_mlflow(tmp_path, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    c = tracking.client(f"sqlite:///{tmp_path}/mlflow.db")
    exp = tracking.experiment_id(c, "bar", storage_dir=str(tmp_path), uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = c.create_run(exp).info.run_id
    import time

    with progress.EpochBar(c, run, 4, "classifier 'sgd'", tty=True, every_s=0.05) as bar:
        for epoch in range(4):
            c.log_batch(run, metrics=tracking.metrics_of({"epoch": epoch, "test_acc": 0.5}, epoch))
            time.sleep(0.5)
        assert bar.bar.n == 4
    assert "classifier 'sgd': 100%" in err.getvalue() and "4/4" in err.getvalue()
    with progress.EpochBar(c, run, 4, "x", tty=False) as quiet:
        assert quiet.bar is None


def test_asha_marks_the_trials_it_stops_before_they_finish_and_only_those():
    from reconlab.sweep.runner import marking_asha

    s = marking_asha(time_attr="training_iteration", max_t=4, grace_period=1, reduction_factor=2)
    s.set_search_properties("acc", "max")
    good, bad, last = trial("RUNNING"), trial("RUNNING"), trial("RUNNING")
    for t in (good, bad, last):
        s.on_trial_add(None, t)
    assert s.on_trial_result(None, good, {"training_iteration": 1, "acc": 0.9}) == "CONTINUE"
    assert s.on_trial_result(None, bad, {"training_iteration": 1, "acc": 0.1}) == "STOP"  # below the rung's cut
    assert s.on_trial_result(None, last, {"training_iteration": 4, "acc": 0.95}) == "STOP"  # at max_t: finished
    assert getattr(bad, "stopped_early", False) and not hasattr(good, "stopped_early")
    assert not hasattr(last, "stopped_early")
