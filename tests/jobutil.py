import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_job(script, *args, env=None, timeout=600):
    e = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # jobs use their own store
    e.update(env or {})
    return subprocess.run([sys.executable, os.path.join(REPO, "jobs", script), *args], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=REPO)


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
