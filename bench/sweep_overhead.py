"""Platform overhead of a sweep: Ray Tune + Optuna + MLflow vs the same trial
function called in a plain loop (no Ray, no MLflow), in the same run.

    python bench/sweep_overhead.py [--trials 20] [--steps 100] [--repeats 2] [--gpu-fraction 0.25]

Figures (ratios, not absolute seconds):
1. overhead per trial, one trial at a time (2 threads each, like the loop):
   (sweep wall - loop wall) / trials; goal <= 0.25 s. This machine's speed
   drifts by up to ~30 % within minutes, so loops and sweeps alternate
   (L S L S L: ``--repeats`` sweeps), each sweep is charged against the mean
   of the loops either side of it, and the median is the figure. Each sweep
   starts its own Ray runtime; ``ray.init`` is shown apart, and so is creating
   the MLflow store, which the job does once, before it trains. The overhead
   is split into start-up (sweep start to the first trial running: the Tuner,
   the first trial's worker) and the rest, per trial.
2. throughput: the same trials 2 at a time (1 thread each), Ray start-up
   included, as a multiple of the loops' mean wall time; goal <= 1.2x.
3. with --gpu-fraction F on a GPU machine: trials packed 1/F per GPU vs the
   loop on that GPU, in trials per hour; goal >= 3x.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

import torch
from common import shared_models

from reconlab.sweep.inversion_trial import InversionTrialConfig, run_trial

FIXED = {"variant": "sgd", "optimizer": "adam", "restarts": 4, "bn_weight": 0.01, "report_every": 25}


def configs(n, steps, seed=0):
    rng = random.Random(seed)
    return [{**FIXED, "steps": steps, "lr": 10 ** rng.uniform(-2, -0.7), "tv_weight": 10 ** rng.uniform(-4, -1),
             "l2_weight": 10 ** rng.uniform(-4, -2), "seed": i} for i in range(n)]


def plain_loop(shared, cfgs, device):
    t = time.perf_counter()
    for c in cfgs:
        run_trial(c, {**shared, "device": device})
    return time.perf_counter() - t


def stamped(log_path):
    """The sweep's trainable, appending each trial's start time to ``log_path``
    (the worker runs on this machine: one clock)."""
    from reconlab.sweep.inversion_trial import tune_trainable

    def trainable(config, shared):
        with open(log_path, "a") as f:
            f.write(json.dumps({"start": time.time()}) + "\n")
        tune_trainable(config, shared)

    return trainable


def tracking_store(tmp):
    """The MLflow store and experiment, made before the sweep as the job makes
    them before it trains; returns (uri, client, experiment id, seconds)."""
    t = time.perf_counter()
    from reconlab import tracking

    uri = f"sqlite:///{tmp}/mlflow.db"
    c = tracking.client(uri)
    return uri, c, tracking.experiment_id(c, "bench"), time.perf_counter() - t


def sweep(shared, n, steps, *, cpu, gpu, threads, tmp, name):
    """One sweep in a fresh local Ray runtime; returns {wall, ray, store,
    first}: the sweep's wall time from ray.init's return, ray.init's and the
    store's seconds, and the seconds from sweep start to the first trial."""
    import ray
    from ray import tune

    from reconlab.sweep.inversion_trial import METRICS
    from reconlab.sweep.runner import init_ray, run_tuner, start_parent
    from reconlab.sweep.spec import Resources, SchedulerSpec, SweepSpec

    uri, c, exp, t_store = tracking_store(tmp)
    t0 = time.perf_counter()
    init_ray()
    t_ray = time.perf_counter() - t0
    t_start, wall_start = time.perf_counter(), time.time()
    spec = SweepSpec(name=name, metric="verifier_acc", num_samples=n, seed=0,
                     scheduler=SchedulerSpec(type="fifo"), resources_per_trial=Resources(cpu=cpu, gpu=gpu),
                     fixed={**FIXED, "steps": steps},
                     search={"lr": {"type": "loguniform", "low": 0.01, "high": 0.2},
                             "tv_weight": {"type": "loguniform", "low": 1e-4, "high": 0.1},
                             "l2_weight": {"type": "loguniform", "low": 1e-4, "high": 0.01}})
    log = os.path.join(tmp, "starts.jsonl")
    run = start_parent(c, exp, spec, storage_dir=tmp, resume=False, extra_params={})
    grid = run_tuner(spec, tune.with_parameters(stamped(log), shared={**shared, "threads": threads}), sweep=run,
                     uri=uri, metric_keys=METRICS, max_t=1, verbose=0)
    c.set_terminated(run.run_id, "FINISHED")
    wall = time.perf_counter() - t_start
    ray.shutdown()
    assert len(grid) == n and not grid.errors, grid.errors
    with open(log) as f:
        first = min(json.loads(line)["start"] for line in f) - wall_start
    return {"wall": wall, "ray": t_ray, "store": t_store, "first": first}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2, help="sweeps one at a time, each between two loops")
    ap.add_argument("--gpu-fraction", type=float, default=0.0)
    ap.add_argument("--report-every", type=int, default=FIXED["report_every"], help="steps between reports")
    ap.add_argument("--checkpoint-period-s", type=float, default=InversionTrialConfig.checkpoint_period_s,
                    help="trial seconds between checkpoints (the trial's default; 0: every report)")
    a = ap.parse_args()
    FIXED.update(report_every=a.report_every, checkpoint_period_s=a.checkpoint_period_s)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    shared = shared_models()
    cfgs = configs(a.trials, a.steps)
    if a.gpu_fraction > 0:
        assert torch.cuda.is_available(), "--gpu-fraction needs a GPU"
        run_trial(cfgs[0], {**shared, "device": "cuda"})  # warm-up (CUDA context, kernels)
        loop = plain_loop(shared, cfgs, "cuda")
        with tempfile.TemporaryDirectory() as tmp:
            r = sweep({**shared, "device": "cuda"}, a.trials, a.steps, cpu=1, gpu=a.gpu_fraction, threads=1,
                      tmp=tmp, name="gpu")
        wall, per = r["wall"] + r["ray"], int(round(1 / a.gpu_fraction))
        print(f"GPU: {torch.cuda.get_device_name()}; {a.trials} trials x {a.steps} steps")
        print(f"plain loop on the GPU      : {loop:7.1f} s  ({3600 * a.trials / loop:8.0f} trials/h)")
        print(f"sweep, {per} trials per GPU   : {wall:7.1f} s  ({3600 * a.trials / wall:8.0f} trials/h, "
              f"incl. ray.init {r['ray']:.1f} s)")
        print(f"packing gain               : {loop / wall:7.2f}x  (goal >= 3x)")
        return
    torch.set_num_threads(2)
    run_trial(cfgs[0], shared)  # warm-up
    print(f"{a.trials} trials x {a.steps} steps, batch {10 * FIXED['restarts'] + 90} images, a report every "
          f"{a.report_every} steps, a checkpoint every {a.checkpoint_period_s:g} s and with the last report")
    loops, over, starts = [plain_loop(shared, cfgs, "cpu")], [], []
    print(f"plain loop (2 threads)            : {loops[0]:7.1f} s")
    for k in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            r = sweep(shared, a.trials, a.steps, cpu=2, gpu=0, threads=2, tmp=tmp, name=f"one-at-a-time-{k}")
        loops.append(plain_loop(shared, cfgs, "cpu"))
        base = (loops[-2] + loops[-1]) / 2
        over.append((r["wall"] - base) / a.trials)
        starts.append(r["first"])
        print(f"sweep {k + 1}, 1 at a time (2 threads): {r['wall']:7.1f} s  (overhead {over[-1]:.3f} s/trial "
              f"vs the loops' mean {base:.1f} s; start-up {r['first']:.1f} s; ray.init {r['ray']:.1f} s "
              f"and the MLflow store {r['store']:.1f} s apart)")
        print(f"plain loop                        : {loops[-1]:7.1f} s")
    med, start = statistics.median(over), statistics.median(starts)
    print(f"overhead per trial, median of {a.repeats}  : {med:7.3f} s  (goal <= 0.25 s)")
    print(f"  of which start-up / trials      : {start / a.trials:7.3f} s  (first trial after {start:.1f} s)")
    print(f"  the rest, per trial             : {med - start / a.trials:7.3f} s")
    loop = statistics.mean(loops)
    with tempfile.TemporaryDirectory() as tmp:
        r = sweep(shared, a.trials, a.steps, cpu=1, gpu=0, threads=1, tmp=tmp, name="two-at-a-time")
    wall = r["wall"] + r["ray"]
    print(f"sweep, 2 at a time (1 thread each): {wall:7.1f} s  (incl. ray.init {r['ray']:.1f} s)")
    print(f"  wall time / plain loops' mean   : {wall / loop:7.2f}x  (goal <= 1.2x; loops' mean {loop:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
