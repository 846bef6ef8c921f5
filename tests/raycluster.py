"""Real Ray clusters on 127.0.0.1 for the cluster tests: a token-authenticated
head and worker nodes as separate `ray start --block` processes, run by a
Python that does not have reconlab installed (jobs must ship it)."""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from faults import free_port, processes
from jobutil import REPO


def cluster_python(root):
    """A venv that sees every dependency but not the reconlab package."""
    env_dir = os.path.join(root, "env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", env_dir], check=True)
    site = next(p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p))
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    with open(os.path.join(env_dir, "lib", ver, "site-packages", "deps.pth"), "w") as f:
        f.write(site + "\n")  # a plain path: the editable-install .pth files there are not processed
    return os.path.join(env_dir, "bin")


class Cluster:
    """A Ray head (``ray start --head --block``) and worker nodes, each its own
    process group: ``kill_node`` is a node lost (a preempted spot instance),
    ``stop`` ends this cluster only (`ray stop` would stop every Ray runtime
    on the machine, other tests' included)."""

    def __init__(self, *, head_cpus: int, autoscaling: dict | None = None):
        self.root = tempfile.mkdtemp(prefix="/tmp/rlc")  # short: Ray's socket paths are length-limited
        bindir = cluster_python(self.root)
        self.py = os.path.join(bindir, "python")
        probe = subprocess.run([self.py, "-c", "import reconlab"], capture_output=True)
        assert probe.returncode != 0, "the cluster environment must not have reconlab installed"
        self.token = os.path.join(self.root, "token")
        with open(self.token, "w") as f:
            f.write(secrets.token_hex(32))
        os.chmod(self.token, 0o600)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token,
                    "PATH": bindir + os.pathsep + os.environ["PATH"], "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.gcs_port, self.dash_port = free_port(), free_port()
        self.gcs = f"127.0.0.1:{self.gcs_port}"
        self.address = f"http://127.0.0.1:{self.dash_port}"
        self.temp_dir = os.path.join(self.root, "ray")
        self.nodes: dict[str, subprocess.Popen] = {}
        head_args, head_env = [], {}
        if autoscaling is not None:
            # Ray's fake multi-node provider: the autoscaler on the head starts
            # and stops worker nodes as local processes (RAY_FAKE_CLUSTER)
            config = {**autoscaling, "provider": {**autoscaling["provider"], "gcs_address": self.gcs}}
            path = os.path.join(self.root, "autoscaler.json")
            with open(path, "w") as f:
                json.dump(config, f)
            head_args = ["--autoscaling-config", path]
            head_env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        self._start("head", "--head", "--port", str(self.gcs_port), "--dashboard-host", "127.0.0.1",
                    "--dashboard-port", str(self.dash_port), "--num-cpus", str(head_cpus), "--temp-dir",
                    self.temp_dir, *head_args, env=head_env)
        wait_for_jobs_api(self.address, self.nodes["head"])

    def _start(self, name, *args, env=None):
        self.nodes[name] = subprocess.Popen(
            [self.py, "-m", "ray.scripts.scripts", "start", "--block", "--node-ip-address", "127.0.0.1",
             "--node-name", name, "--disable-usage-stats", *args], env={**self.env, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)

    def add_worker(self, name: str, num_cpus: int, timeout: float = 120):
        """A second node joining the head; returns its node id once it is alive."""
        # its own temp dir, as on its own machine: nodes sharing one would delete
        # each other's unpacked working_dir when their own use of it ends
        self._start(name, "--address", self.gcs, "--num-cpus", str(num_cpus), "--temp-dir",
                    os.path.join(self.root, name))
        t0 = time.time()
        while time.time() - t0 < timeout:
            assert self.nodes[name].poll() is None, f"ray start of node {name} exited"
            node = next((n for n in self.list_nodes() if n["node_name"] == name and n["state"] == "ALIVE"), None)
            if node:
                return node["node_id"]
            time.sleep(1)
        raise TimeoutError(f"node {name} did not join")

    def list_nodes(self) -> list[dict]:
        """Ray's state API (`ray list nodes`): every node the head knows."""
        p = self.ray("list", "nodes", "--address", self.address, "--format", "json", "--limit", "1000",
                     timeout=60)
        assert p.returncode == 0, p.stderr[-2000:]
        return json.loads(p.stdout) if p.stdout.lstrip().startswith("[") else []  # or "No resource in the cluster"

    def node_id(self, name: str) -> str:
        return next(n["node_id"] for n in self.list_nodes() if n["node_name"] == name)

    def ray(self, *args, env=None, timeout=120):
        return subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args], capture_output=True, text=True,
                              timeout=timeout, env=env or self.env, cwd=REPO)

    def kill_node(self, name: str) -> None:
        """SIGKILL the node's processes (its raylet and every worker on it)."""
        kill_group(self.nodes[name], signal.SIGKILL)

    def stop(self) -> None:
        for name in [n for n in self.nodes if n != "head"] + ["head"]:
            stop_group(self.nodes[name])

    def remove(self) -> None:
        self.stop()
        for pid in processes(self.root):  # nodes an autoscaler started, if any outlived the head
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def kill_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def stop_group(proc):
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
