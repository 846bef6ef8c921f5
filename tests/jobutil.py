import os
import secrets
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Distinctive fake secrets (new each test session) that a job's environment
# may hold; none may reach MLflow, Ray's files or the job's output.
FAKE_SECRETS = {
    "MLFLOW_TRACKING_PASSWORD": "pw-" + secrets.token_hex(20),
    "MLFLOW_TRACKING_TOKEN": "tok-" + secrets.token_hex(20),
    "AWS_SECRET_ACCESS_KEY": "aws-" + secrets.token_hex(20),
    "RAY_AUTH_TOKEN": secrets.token_hex(32),  # the local runtime's token (token auth is on by default)
}


def run_job(script, *args, env=None, timeout=600):
    e = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # jobs use their own store
    e.update(env or {})
    return subprocess.run([sys.executable, os.path.join(REPO, "jobs", script), *args], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=REPO)


def run_jobs_together(*jobs, timeout=900):
    """Start every ``(script, *args)`` at the same moment; wait for all.
    Returns their CompletedProcesses, in order."""
    e = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [subprocess.Popen([sys.executable, os.path.join(REPO, "jobs", script), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=e, cwd=REPO) for script, *args in jobs]
    out = []
    for (script, *args), p in zip(jobs, procs):
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess([script, *args], p.returncode, stdout, stderr))
    return out


def runs_by_kind(uri, experiment):
    from reconlab import tracking

    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    kinds = {"sweep": [], "trial": [], "train": []}
    for r in runs:
        t = r.data.tags
        if tracking.TAG_SWEEP in t:
            kinds["sweep"].append(r)
        elif tracking.TAG_TRIAL in t:
            kinds["trial"].append(r)
        elif tracking.TAG_FAMILY in t:
            kinds["train"].append(r)
    return c, kinds


def find_needles(roots, needles: dict, texts: dict | None = None):
    """Grep every file under ``roots`` (bytes, so SQLite pages and pickles
    count) and the ``texts`` for each needle (bytes). Returns ``(hits,
    number of files read)``, a hit being ``"<file or text>: <needle name>"``."""
    from pathlib import Path

    hits, n = [], 0
    for root in roots:
        for f in sorted(Path(root).rglob("*")):
            if f.is_file() and not f.is_symlink():
                blob = f.read_bytes()
                n += 1
                hits += [f"{f}: {name}" for name, needle in needles.items() if needle in blob]
    for where, text in (texts or {}).items():
        hits += [f"{where}: {name}" for name, needle in needles.items() if needle in text.encode()]
    return hits, n
