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
    """16 trials; a random trial process is SIGKILLed every 5-8 s: every trial
    finishes, each with one MLflow run holding each step once."""
    uri = f"sqlite:///{store}/store/mlflow.db"
    p = faults.start_job("--search-space", faults.space(store / "chaos.yaml", "chaos", 16), "--storage-path",
                         str(store / "store"), "--experiment", EXPERIMENT, "--max-failures", "50")
    stop, kills = threading.Event(), []
    killer = threading.Thread(target=faults.random_kills, args=(stop, "ray::ImplicitFunc", (5, 8), random.Random(0),
                                                                 kills))
    killer.start()
    try:
        out, err = p.communicate(timeout=900)
    finally:
        stop.set()
        killer.join()
        faults.kill_group(p)
    assert p.returncode == 0, err[-3000:]
    assert len(kills) >= 3, kills
    c, parent, runs = faults.assert_one_complete_run_per_trial(uri, EXPERIMENT, "chaos", 16)
    tune_dir = parent.data.tags["reconlab.tune_dir"]
    retried = {t for t, steps in faults.tune_histories(tune_dir).items() if len(steps) != len(set(steps))}
    print(f"chaos: {len(kills)} trial processes killed; {len(retried)} trials redid a step")
    assert "16 trials" in out
