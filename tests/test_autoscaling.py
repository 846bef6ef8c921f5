"""Autoscaling, proven locally (issue 18, part 3), with Ray's own fake
multi-node provider (``fake_multinode``: the autoscaler on the head starts
and stops worker nodes as local processes). The node types have the shape of
clusters/aws-gpu.yaml: a head with no trial resources and GPU workers from
zero. The workers declare a custom resource standing in for the GPU, and the
sweep's trials ask for it (``resources_per_trial.custom``), so the sweep can
only run once the autoscaler has launched such workers; after it, the idle
workers are removed."""

import os
import subprocess
import sys
import threading
import time

import pytest
import yaml

from jobutil import REPO, runs_by_kind
from raycluster import Cluster

pytestmark = pytest.mark.slow

STAND_IN = "gpu_slot"  # the custom resource standing in for "GPU" on the GPU worker type
IDLE_TIMEOUT_MIN = 0.1


def fake_cluster_config(cloud_yaml: str, max_workers: int = 2) -> dict:
    """The cloud config's node types for the fake provider: the same head
    (no trial resources) and worker types (min_workers, at most
    ``max_workers``), each worker with two CPUs and one GPU stand-in (as a
    cloud GPU node has more CPUs than GPUs: two trials of one CPU would fit
    on one worker, two trials of one GPU need two)."""
    with open(os.path.join(REPO, "clusters", cloud_yaml)) as f:
        cloud = yaml.safe_load(f)
    head = cloud["head_node_type"]
    types = {"ray.head.default": {"resources": dict(cloud["available_node_types"][head]["resources"]),
                                  "node_config": {}, "max_workers": 0}}
    for name, t in cloud["available_node_types"].items():
        if name != head:
            types[name] = {"resources": {"CPU": 2, STAND_IN: 1, "object_store_memory": 100 * 2**20},
                           "node_config": {}, "min_workers": t["min_workers"],
                           "max_workers": min(t["max_workers"], max_workers)}
    return {"cluster_name": "reconlab-fake", "max_workers": max_workers,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True},
            "available_node_types": types, "head_node_type": "ray.head.default", "upscaling_speed": 1.0,
            "idle_timeout_minutes": IDLE_TIMEOUT_MIN, "docker": {}, "initialization_commands": [],
            "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
            "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts": {},
            "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [],
            "rsync_filter": [], "auth": {"ssh_user": "ubuntu"}}


def gpu_workers(cluster) -> int:
    return sum(1 for n in cluster.list_nodes()
               if n["state"] == "ALIVE" and n.get("resources_total", {}).get(STAND_IN, 0) > 0)


def test_a_sweep_of_gpu_trials_scales_gpu_workers_from_zero_and_back(tmp_path):
    from reconlab import tracking
    from reconlab.sweep.nodes import TAG_NODE_ID

    cfg = fake_cluster_config("aws-gpu.yaml")
    assert cfg["available_node_types"]["ray.head.default"]["resources"] == {"CPU": 0}
    assert all(t["min_workers"] == 0 for n, t in cfg["available_node_types"].items() if n != "ray.head.default")
    space = tmp_path / "dd_gpu.yaml"
    space.write_text(f"""name: deep_decoder_gpu
metric: psnr_best_fit
mode: max
num_samples: 4
seed: 0
scheduler: {{type: fifo}}
resources_per_trial: {{cpu: 1, gpu: 0, custom: {{{STAND_IN}: 1}}}}
fixed: {{method: decoder, image: astronaut, crop: 64, iterations: 1500, report_every: 500, stop_window: 10,
        stop_patience: 2000}}
search:
  k: {{type: choice, values: [16, 32]}}
  lr: {{type: loguniform, low: 0.003, high: 0.02}}
""")
    cluster = Cluster(head_cpus=0, autoscaling=cfg)
    counts, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            counts.append(gpu_workers(cluster))
            stop.wait(1)

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        assert gpu_workers(cluster) == 0
        watcher.start()
        store = tmp_path / "results"
        job = subprocess.run(
            [sys.executable, os.path.join(REPO, "jobs", "deep_decoder_sweep.py"), "--search-space", str(space),
             "--storage-path", str(store), "--max-concurrent-trials", "2"],
            env={**cluster.env, "RAY_ADDRESS": cluster.gcs}, capture_output=True, text=True, timeout=600, cwd=REPO)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        during = max(counts)
        assert during >= 1, counts
        t0 = time.time()
        while gpu_workers(cluster) and time.time() - t0 < 180:  # idle workers leave after the idle timeout
            time.sleep(2)
        stop.set()
        watcher.join()
        assert counts[0] == 0 and during >= 1 and gpu_workers(cluster) == 0, counts
        _, runs = runs_by_kind(f"sqlite:///{store}/mlflow.db", "reconlab-deep-decoder")
        trials = runs["trial"]
        assert len(runs["sweep"]) == 1 and runs["sweep"][0].info.status == "FINISHED"
        ids = [r.data.tags[tracking.TAG_TRIAL] for r in trials]
        assert len(trials) == 4 and len(set(ids)) == 4 and all(r.info.status == "FINISHED" for r in trials)
        # every trial ran on an autoscaled worker, none on the head, and
        # trials held their GPU stand-in: two at once needed two workers (a
        # trial lasts ~20 s, so the second worker is up before the first is
        # free again even on a loaded machine; with 60 iterations, all four
        # trials once ran on the first worker while the second booted)
        head = cluster.node_id("head")
        nodes = {r.data.tags[TAG_NODE_ID] for r in trials}
        assert head not in nodes and len(nodes) >= 2 and during >= 2, (nodes, counts)
        print(f"GPU-typed workers, sampled while the sweep ran: {counts}")
    finally:
        stop.set()
        cluster.remove()
