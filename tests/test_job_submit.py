"""`ray job submit` for real: a token-authenticated Ray head on 127.0.0.1
whose Python environment does NOT have reconlab installed, so the job must
ship the package itself (working_dir + py_modules)."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

from jobutil import REPO, runs_by_kind

pytestmark = pytest.mark.slow


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_python(root):
    """A venv that sees every dependency but not the reconlab package."""
    env_dir = os.path.join(root, "env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", env_dir], check=True)
    site = next(p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p))
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    with open(os.path.join(env_dir, "lib", ver, "site-packages", "deps.pth"), "w") as f:
        f.write(site + "\n")  # a plain path: the editable-install .pth files there are not processed
    return os.path.join(env_dir, "bin")


@pytest.fixture(scope="module")
def head():
    root = tempfile.mkdtemp(prefix="/tmp/rlh")  # short: Ray's socket paths are length-limited
    bindir = cluster_python(root)
    py = os.path.join(bindir, "python")
    probe = subprocess.run([py, "-c", "import reconlab"], capture_output=True)
    assert probe.returncode != 0, "the cluster environment must not have reconlab installed"
    token_path = os.path.join(root, "token")
    with open(token_path, "w") as f:
        f.write(secrets.token_hex(32))
    os.chmod(token_path, 0o600)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token_path,
           "PATH": bindir + os.pathsep + os.environ["PATH"], "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    gcs, dash = free_port(), free_port()
    # --block keeps `ray start` in the foreground: its session holds the whole
    # head, so the teardown stops this head only (`ray stop` would stop every
    # Ray runtime on the machine, other tests' included)
    proc = subprocess.Popen([py, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--node-ip-address",
                             "127.0.0.1", "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port",
                             str(dash), "--num-cpus", "2", "--temp-dir", os.path.join(root, "ray"),
                             "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for_jobs_api(f"http://127.0.0.1:{dash}", proc)
        yield {"address": f"http://127.0.0.1:{dash}", "env": env, "py": py, "root": root, "token": token_path,
               "proc": proc}
    finally:
        stop_head(proc)
        shutil.rmtree(root, ignore_errors=True)


def stop_head(proc):
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for_jobs_api(address, proc, timeout=180):
    """Until the dashboard answers (401 without the token counts: it is up)."""
    import time
    import urllib.error
    import urllib.request

    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, "ray start --head exited"
        try:
            urllib.request.urlopen(address + "/api/version", timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("the Ray head's Jobs API did not come up")


def ray_cli(head, *args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or head["env"], cwd=REPO)


def test_jobs_api_rejects_a_client_without_the_token(head):
    env = {k: v for k, v in head["env"].items() if not k.startswith("RAY_AUTH")}
    p = ray_cli(head, "job", "list", "--address", head["address"], env=env, timeout=60)
    assert p.returncode != 0
    assert "401" in p.stdout + p.stderr or "auth" in (p.stdout + p.stderr).lower()


def test_submitted_smoke_job_succeeds_and_logs_to_mlflow(head, tmp_path):
    store = tmp_path / "store"
    # without --no-wait the CLI follows the job and exits non-zero unless it SUCCEEDED
    sub = ray_cli(head, "job", "submit", "--address", head["address"], "--working-dir", REPO, "--",
                  "python", "jobs/inversion_sweep.py", "--smoke-test", "--storage-path", str(store), timeout=540)
    out = sub.stdout + sub.stderr
    assert sub.returncode == 0 and "succeeded" in out.lower(), out[-4000:]
    assert "best verifier_acc per classifier variant" in out
    c, runs = runs_by_kind(f"sqlite:///{store}/mlflow.db", "reconlab-inversion-smoke")
    assert len(runs["sweep"]) == 1 and runs["sweep"][0].info.status == "FINISHED"
    assert len(runs["trial"]) == 6 and all(r.info.status == "FINISHED" for r in runs["trial"])
    assert len(runs["train"]) == 4

    # The job ran in a temporary copy of the working directory under Ray's
    # temp dir. Stop the head and delete that dir: every run's artifacts are
    # still there, under the storage directory (issue 12: they went to the
    # copy's ./mlruns and vanished).
    ray_tmp = os.path.join(head["root"], "ray")
    assert os.path.isdir(ray_tmp)
    stop_head(head["proc"])
    shutil.rmtree(ray_tmp)
    assert not os.path.exists(os.path.join(REPO, "mlruns"))
    dest = tmp_path / "downloaded"
    expected = {"sweep": {"summary.md", "summary.csv", "search_space.json"}, "trial": {"inversion_task1.png"},
                "train": {"model"}}
    for kind, want in expected.items():
        for r in runs[kind]:
            assert r.info.artifact_uri.startswith(str(store / "artifacts")), r.info.artifact_uri
            d = c.download_artifacts(r.info.run_id, "", str(dest / r.info.run_id))
            assert want <= set(os.listdir(d)), (kind, os.listdir(d))
    from reconlab.training.logged import load_logged_model

    meta, state = load_logged_model(c, runs["train"][0].info.run_id)  # the models a later job reuses
    assert meta["builder"] and state
