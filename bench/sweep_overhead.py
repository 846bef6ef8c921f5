"""Platform overhead of a sweep: Ray Tune + Optuna + MLflow vs the same trial
function called in a plain loop (no Ray, no MLflow), in the same run.

    python bench/sweep_overhead.py [--trials 20] [--repeats 5] [--overhead-steps 8] [--steps 100]
    python bench/sweep_overhead.py --gpu-fraction 0.25        # on a GPU machine

Figures (ratios and differences measured in one run, never absolute seconds):
1. overhead per trial, one trial at a time (2 threads each, like the loop):
   (sweep wall - loop wall) / trials; goal <= 0.25 s. The overhead depends
   on what a trial asks of the platform (``--reports`` reports, one
   checkpoint, one MLflow run), not on how long it computes, so these trials
   are short (``--overhead-steps``): this machine's speed drifts by up to
   ~30 % within minutes, which on 5-s trials would swamp a 0.25-s effect.
   Loops and sweeps alternate (L S L S ... L, ``--repeats`` sweeps), each
   sweep is charged against the mean of the loops either side of it, and the
   median is the figure. Each loop runs in a new process (torch imported and
   the models loaded before its clock starts), so its first trial pays the
   same first-call warm-up (~1 s: kernels, allocator, thread pool) as the
   sweep's first trial in its new worker. Each sweep starts its own Ray
   runtime; ``ray.init`` is shown apart, and so is creating the MLflow store,
   which the job does once, before it trains. The trials stamp when they enter and leave the
   worker, which splits the overhead into start-up (sweep start to the first
   trial running: the Tuner, the first trial's process importing torch and
   Ray Tune), the gaps between trials, the tail (last trial to the sweep's
   end: Tune's wrap-up, the last MLflow writes) and the trials' own slowdown.
2. throughput: ``--steps``-step trials 2 at a time (1 thread each), Ray
   start-up included, as a multiple of the plain loop's wall time (the mean
   of a loop before and one after, each in a new process); goal <= 1.2x.
3. with --gpu-fraction F on a GPU machine: trials packed 1/F per GPU vs the
   loop on that GPU, in trials per hour; goal >= 3x.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from common import shared_models

from reconlab.studies.inversion.trial import InversionTrialConfig, run_trial

FIXED = {"variant": "sgd", "optimizer": "adam", "restarts": 4, "bn_weight": 0.01}


def fixed(steps, reports, checkpoint_period_s):
    """The values every trial of a run shares: ``reports`` reports a trial."""
    return {**FIXED, "steps": steps, "report_every": max(1, steps // reports),
            "checkpoint_period_s": checkpoint_period_s}


def configs(n, fix, seed=0):
    rng = random.Random(seed)
    return [{**fix, "lr": 10 ** rng.uniform(-2, -0.7), "tv_weight": 10 ** rng.uniform(-4, -1),
             "l2_weight": 10 ** rng.uniform(-4, -2), "seed": i} for i in range(n)]


def plain_loop(shared, cfgs, device):
    t = time.perf_counter()
    for c in cfgs:
        run_trial(c, {**shared, "device": device})
    return time.perf_counter() - t


def fresh_plain_loop(shared_file, cfgs, threads=2):
    """``plain_loop`` in a new Python process (torch imported and the models
    loaded before the clock starts), so its first trial is as cold as a
    sweep's first trial in its new worker: one process's warm-up on each side."""
    code = ("import json, sys, torch; sys.path.insert(0, sys.argv[1]); import sweep_overhead as b; "
            "torch.set_num_threads(int(sys.argv[3])); shared = torch.load(sys.argv[2], weights_only=True); "
            "print(b.plain_loop(shared, json.load(sys.stdin), 'cpu'))")
    p = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)), shared_file,
                        str(threads)], input=json.dumps(cfgs), capture_output=True, text=True, check=True)
    return float(p.stdout.strip().splitlines()[-1])


def stamped(log_path):
    """The sweep's trainable, appending each trial's entry and exit times to
    ``log_path`` (the worker runs on this machine: one clock)."""
    from reconlab.studies.inversion.trial import tune_trainable

    def trainable(config, shared):
        start = time.time()
        tune_trainable(config, shared)
        with open(log_path, "a") as f:
            f.write(json.dumps({"start": start, "end": time.time()}) + "\n")

    return trainable


def tracking_store(tmp):
    """The MLflow store and experiment, made before the sweep as the job makes
    them before it trains; returns (uri, client, experiment id, seconds)."""
    t = time.perf_counter()
    from reconlab import tracking

    uri = f"sqlite:///{tmp}/mlflow.db"
    c = tracking.client(uri)
    return uri, c, tracking.experiment_id(c, "bench", storage_dir=tmp, uri=uri), time.perf_counter() - t


def sweep(shared, n, fix, *, cpu, gpu, threads, tmp, name):
    """One sweep in a fresh local Ray runtime; returns {wall, ray, store,
    first, inside, last}: the sweep's wall time from ray.init's return,
    ray.init's and the store's seconds, the seconds from sweep start to the
    first trial, the trials' summed time in their worker, and the seconds
    from sweep start to the last trial's exit."""
    import ray
    from ray import tune

    from reconlab.studies.inversion.trial import METRICS
    from reconlab.sweep.runner import init_ray, run_tuner, start_parent
    from reconlab.sweep.spec import Resources, SchedulerSpec, SweepSpec

    uri, c, exp, t_store = tracking_store(tmp)
    t0 = time.perf_counter()
    init_ray()
    t_ray = time.perf_counter() - t0
    t_start, wall_start = time.perf_counter(), time.time()
    spec = SweepSpec(name=name, metric="verifier_acc", num_samples=n, seed=0,
                     scheduler=SchedulerSpec(type="fifo"), resources_per_trial=Resources(cpu=cpu, gpu=gpu),
                     fixed=fix,
                     search={"lr": {"type": "loguniform", "low": 0.01, "high": 0.2},
                             "tv_weight": {"type": "loguniform", "low": 1e-4, "high": 0.1},
                             "l2_weight": {"type": "loguniform", "low": 1e-4, "high": 0.01}})
    log = os.path.join(tmp, "trials.jsonl")
    run = start_parent(c, exp, spec, storage_dir=tmp, resumed=None, extra_params={})
    grid = run_tuner(spec, tune.with_parameters(stamped(log), shared={**shared, "threads": threads}), sweep=run,
                     uri=uri, metric_keys=METRICS, max_t=1, verbose=0)
    wall = time.perf_counter() - t_start
    ray.shutdown()
    assert len(grid) == n and not grid.errors, grid.errors
    with open(log) as f:
        stamps = [json.loads(line) for line in f]
    return {"wall": wall, "ray": t_ray, "store": t_store, "first": min(t["start"] for t in stamps) - wall_start,
            "inside": sum(t["end"] - t["start"] for t in stamps), "last": max(t["end"] for t in stamps) - wall_start}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100, help="steps of the throughput (and GPU) trials")
    ap.add_argument("--overhead-steps", type=int, default=8, help="steps of the one-at-a-time overhead trials")
    ap.add_argument("--reports", type=int, default=4, help="reports per trial")
    ap.add_argument("--repeats", type=int, default=5, help="one-at-a-time sweeps, each between two loops")
    ap.add_argument("--gpu-fraction", type=float, default=0.0)
    ap.add_argument("--only", choices=("overhead", "throughput"), help="measure one figure only")
    ap.add_argument("--checkpoint-period-s", type=float, default=InversionTrialConfig.checkpoint_period_s,
                    help="trial seconds between checkpoints (the trial's default; 0: every report)")
    a = ap.parse_args()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    shared = shared_models()
    fix = fixed(a.steps, a.reports, a.checkpoint_period_s)
    if a.gpu_fraction > 0:
        return gpu_packing(shared, a, fix)
    with tempfile.TemporaryDirectory() as d:
        shared_file = os.path.join(d, "shared.pt")  # for the plain loops' processes
        torch.save(shared, shared_file)
        if a.only != "throughput":
            overhead(shared, shared_file, a)
        if a.only != "overhead":
            throughput(shared, shared_file, a, fix)


def overhead(shared, shared_file, a):
    fix_o = fixed(a.overhead_steps, a.reports, a.checkpoint_period_s)
    cfgs = configs(a.trials, fix_o)
    print(f"1. overhead: {a.trials} trials x {a.overhead_steps} steps, batch {10 * FIXED['restarts'] + 90} images, "
          f"a report every {fix_o['report_every']} steps, a checkpoint every {a.checkpoint_period_s:g} s and with "
          f"the last report")
    loops, over, parts = [fresh_plain_loop(shared_file, cfgs)], [], []
    print(f"plain loop (2 threads, new process): {loops[0]:7.2f} s")
    for k in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            r = sweep(shared, a.trials, fix_o, cpu=2, gpu=0, threads=2, tmp=tmp, name=f"one-at-a-time-{k}")
        loops.append(fresh_plain_loop(shared_file, cfgs))
        base = (loops[-2] + loops[-1]) / 2
        over.append((r["wall"] - base) / a.trials)
        gaps = r["last"] - r["first"] - r["inside"]
        parts.append({"start-up": r["first"], "gaps between trials": gaps, "tail": r["wall"] - r["last"],
                      "trials' own slowdown": r["inside"] - base})
        print(f"sweep {k + 1}, 1 at a time (2 threads): {r['wall']:7.2f} s  (overhead {over[-1]:.3f} s/trial vs "
              f"the loops' mean {base:.2f} s; ray.init {r['ray']:.1f} s and the MLflow store {r['store']:.1f} s "
              f"apart)")
        print(f"plain loop                        : {loops[-1]:7.2f} s")
    med = statistics.median(over)
    print(f"overhead per trial, median of {a.repeats}  : {med:7.3f} s  (goal <= 0.25 s; all: "
          f"{', '.join(f'{o:.3f}' for o in sorted(over))})")
    for key in parts[0]:
        vals = [p[key] / a.trials for p in parts]
        print(f"  {key + ' / trials':<32}: {statistics.median(vals):7.3f} s  (median; "
              f"{', '.join(f'{v:.3f}' for v in vals)})")


def throughput(shared, shared_file, a, fix):
    cfgs = configs(a.trials, fix)
    print(f"2. throughput: {a.trials} trials x {a.steps} steps, a report every {fix['report_every']} steps")
    loop_before = fresh_plain_loop(shared_file, cfgs)
    with tempfile.TemporaryDirectory() as tmp:
        r = sweep(shared, a.trials, fix, cpu=1, gpu=0, threads=1, tmp=tmp, name="two-at-a-time")
    loop = (loop_before + fresh_plain_loop(shared_file, cfgs)) / 2
    wall = r["wall"] + r["ray"]
    print(f"plain loop (2 threads), mean of 2 : {loop:7.1f} s")
    print(f"sweep, 2 at a time (1 thread each): {wall:7.1f} s  (incl. ray.init {r['ray']:.1f} s)")
    print(f"  wall time / plain loop          : {wall / loop:7.2f}x  (goal <= 1.2x)")


def gpu_packing(shared, a, fix):
    assert torch.cuda.is_available(), "--gpu-fraction needs a GPU"
    cfgs = configs(a.trials, fix)
    run_trial(cfgs[0], {**shared, "device": "cuda"})  # warm-up (CUDA context, kernels)
    loop = plain_loop(shared, cfgs, "cuda")
    with tempfile.TemporaryDirectory() as tmp:
        r = sweep({**shared, "device": "cuda"}, a.trials, fix, cpu=1, gpu=a.gpu_fraction, threads=1,
                  tmp=tmp, name="gpu")
    wall, per = r["wall"] + r["ray"], int(round(1 / a.gpu_fraction))
    print(f"GPU: {torch.cuda.get_device_name()}; {a.trials} trials x {a.steps} steps")
    print(f"plain loop on the GPU      : {loop:7.1f} s  ({3600 * a.trials / loop:8.0f} trials/h)")
    print(f"sweep, {per} trials per GPU   : {wall:7.1f} s  ({3600 * a.trials / wall:8.0f} trials/h, "
          f"incl. ray.init {r['ray']:.1f} s)")
    print(f"packing gain               : {loop / wall:7.2f}x  (goal >= 3x)")


if __name__ == "__main__":
    sys.exit(main())
