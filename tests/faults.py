"""Shared pieces of the fault-tolerance tests: a small inversion sweep, the
processes to kill, and the checks that every trial has exactly one complete
MLflow run."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

from jobutil import REPO

STEPS, EVERY = 40, 5  # 8 reports per trial


def space(path, name: str, trials: int, cpu: float = 1.0, steps: int = STEPS) -> str:
    """A FIFO sweep (every trial runs to the end) over one classifier."""
    with open(path, "w") as f:
        f.write(f"""name: {name}
metric: verifier_acc
mode: max
num_samples: {trials}
seed: 0
scheduler: {{type: fifo}}
resources_per_trial: {{cpu: {cpu}, gpu: 0}}
train: {{epochs: 1}}
fixed: {{variant: sgd, restarts: 1, steps: {steps}, report_every: {EVERY}, checkpoint_period_s: 0}}
search:
  lr: {{type: loguniform, low: 0.01, high: 0.2}}
  tv_weight: {{type: loguniform, low: 1.0e-4, high: 0.01}}
""")
    return str(path)


def start_job(*args, env=None) -> subprocess.Popen:
    e = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    e.update(env or {})
    return subprocess.Popen([sys.executable, os.path.join(REPO, "jobs", "inversion_sweep.py"), *args], cwd=REPO,
                            env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def processes(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker`` (e.g. Tune's trial actors)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    out.append(int(d))
        except OSError:
            pass
    return out


def kill_group(p: subprocess.Popen) -> None:
    """SIGKILL a job and everything it started (its local Ray runtime)."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tune_histories(tune_dir: str) -> dict[str, list[int]]:
    """trial id -> every step Tune recorded in result.json, in order (repeats included)."""
    out = {}
    for d in os.listdir(tune_dir):
        f = os.path.join(tune_dir, d, "result.json")
        if not os.path.exists(f):
            continue
        steps, tid = [], None
        with open(f) as fh:
            for line in fh:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                tid = r["trial_id"]
                steps.append(int(r["step"]))
        if tid:
            out[tid] = steps
    return out


def sweep_runs(uri: str, experiment: str, name: str):
    """(client, the sweep's parent run, {trial id: child run}) of the latest sweep ``name``."""
    from reconlab import tracking

    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    parent = tracking.find_runs(c, exp.experiment_id, {tracking.TAG_SWEEP: name})[0]
    runs = c.search_runs([exp.experiment_id], f"tags.`{tracking.TAG_PARENT}` = '{parent.info.run_id}'",
                         max_results=1000)
    by_trial = {}
    for r in runs:
        tid = r.data.tags[tracking.TAG_TRIAL]
        assert tid not in by_trial, f"two runs for trial {tid}"
        by_trial[tid] = r
    return c, parent, by_trial


def assert_one_complete_run_per_trial(uri, experiment, name, trials: int, steps: int = STEPS):
    """Every trial finished with exactly one FINISHED run whose history is
    every report step, once, for every metric."""
    c, parent, runs = sweep_runs(uri, experiment, name)
    assert len(runs) == trials, f"{len(runs)} runs for {trials} trials"
    want = list(range(EVERY, steps + 1, EVERY))
    for tid, r in runs.items():
        assert r.info.status == "FINISHED", (tid, r.info.status, r.data.tags.get("reconlab.error"))
        for key in ("verifier_acc", "ssim_class_mean", "objective"):
            got = sorted(m.step for m in c.get_metric_history(r.info.run_id, key))
            assert got == want, (tid, key, got)
    return c, parent, runs


def random_kills(stop, marker: str, every: tuple[float, float], rng: random.Random, log: list) -> None:
    """Until ``stop`` is set: every few seconds SIGKILL one random process
    whose command line holds ``marker``."""
    while not stop.wait(rng.uniform(*every)):
        pids = processes(marker)
        if pids:
            pid = rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
                log.append((time.time(), pid))
            except ProcessLookupError:
                pass


def line_count(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _spool(pattern: str) -> str | None:
    import glob

    found = glob.glob(os.path.join(pattern, "mlflow_spool.jsonl"))
    return found[0] if found else None


def wait_for_new_spool_lines(p, pattern: str, n: int = 1, timeout: float = 300) -> str | None:
    """Wait until this attempt of the job has added ``n`` lines to the sweep's
    spool (its trials run); None if the job ended first."""
    start = None
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < timeout:
        s = _spool(pattern)
        if s is not None:
            if start is None:
                start = line_count(s)
            elif line_count(s) - start >= n:
                return s
        time.sleep(0.2)
    return None


def wait_for_delivered_lines(p, pattern: str, n: int, timeout: float = 300) -> str | None:
    """Wait until ``n`` lines of the sweep's spool have reached the store."""
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < timeout:
        s = _spool(pattern)
        if s is not None and os.path.exists(s + ".done"):
            with open(s + ".done") as f:
                if int(f.read().strip() or 0) >= n:
                    return s
        time.sleep(0.2)
    return None


def start_mlflow_server(port: int, backend: str) -> subprocess.Popen:
    """A real `mlflow server` on 127.0.0.1, up and answering /health; it
    serves artifacts from ``artifacts/`` beside its SQLite ``backend`` (never
    ``./mlartifacts`` of the test's directory)."""
    import urllib.request

    dest = os.path.join(os.path.dirname(backend.split("sqlite:///", 1)[1]), "server-artifacts")
    p = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                          "--backend-store-uri", backend, "--artifacts-destination", dest, "--workers", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 120:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return p
        except OSError:
            assert p.poll() is None, "mlflow server exited"
            time.sleep(0.5)
    raise TimeoutError("mlflow server did not start")
