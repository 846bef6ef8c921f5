"""Platform overhead of a sweep: Ray Tune + Optuna + MLflow vs the same trial
function called in a plain loop (no Ray, no MLflow), in the same run.

    python bench/sweep_overhead.py [--trials 20] [--steps 100] [--gpu-fraction 0.25]

Figures (ratios, not absolute seconds):
1. overhead per trial, one trial at a time (2 threads each, like the loop):
   (sweep wall - loop wall) / trials; goal <= 0.25 s. Ray start-up is shown
   apart; the loop runs before and after the sweep and their mean is used.
2. throughput: the same trials 2 at a time (1 thread each), Ray start-up
   included, as a multiple of the loop's wall time; goal <= 1.2x.
3. with --gpu-fraction F on a GPU machine: trials packed 1/F per GPU vs the
   loop on that GPU, in trials per hour; goal >= 3x.
"""

import argparse
import os
import random
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


def sweep(shared, n, steps, *, cpu, gpu, threads, tmp, name, start_ray=True):
    from reconlab import tracking
    from reconlab.sweep.inversion_trial import METRICS, tune_trainable
    from reconlab.sweep.runner import init_ray, run_tuner, start_parent
    from reconlab.sweep.spec import Resources, SchedulerSpec, SweepSpec
    from ray import tune

    t0 = time.perf_counter()
    if start_ray:
        init_ray()
    t_ray = time.perf_counter() - t0
    spec = SweepSpec(name=name, metric="verifier_acc", num_samples=n, seed=0,
                     scheduler=SchedulerSpec(type="fifo"), resources_per_trial=Resources(cpu=cpu, gpu=gpu),
                     fixed={**FIXED, "steps": steps},
                     search={"lr": {"type": "loguniform", "low": 0.01, "high": 0.2},
                             "tv_weight": {"type": "loguniform", "low": 1e-4, "high": 0.1},
                             "l2_weight": {"type": "loguniform", "low": 1e-4, "high": 0.01}})
    uri = f"sqlite:///{tmp}/mlflow.db"
    c = tracking.client(uri)
    exp = tracking.experiment_id(c, "bench")
    run = start_parent(c, exp, spec, storage_dir=tmp, resume=False, extra_params={})
    grid = run_tuner(spec, tune.with_parameters(tune_trainable, shared={**shared, "threads": threads}), sweep=run,
                     uri=uri, metric_keys=METRICS, max_t=1, verbose=0)
    c.set_terminated(run.run_id, "FINISHED")
    assert len(grid) == n and not grid.errors, grid.errors
    return time.perf_counter() - t0, t_ray


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--gpu-fraction", type=float, default=0.0)
    ap.add_argument("--report-every", type=int, default=FIXED["report_every"], help="steps between reports")
    ap.add_argument("--checkpoint-period-s", type=float, default=InversionTrialConfig.checkpoint_period_s,
                    help="trial seconds between checkpoints (the trial's default; 0: every report)")
    a = ap.parse_args()
    FIXED.update(report_every=a.report_every, checkpoint_period_s=a.checkpoint_period_s)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    shared = shared_models()
    cfgs = configs(a.trials, a.steps)
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        if a.gpu_fraction > 0:
            assert torch.cuda.is_available(), "--gpu-fraction needs a GPU"
            run_trial(cfgs[0], {**shared, "device": "cuda"})  # warm-up (CUDA context, kernels)
            loop = plain_loop(shared, cfgs, "cuda")
            wall, t_ray = sweep({**shared, "device": "cuda"}, a.trials, a.steps, cpu=1, gpu=a.gpu_fraction,
                                threads=1, tmp=tmp, name="gpu")
            per = int(round(1 / a.gpu_fraction))
            print(f"GPU: {torch.cuda.get_device_name()}; {a.trials} trials x {a.steps} steps")
            print(f"plain loop on the GPU      : {loop:7.1f} s  ({3600 * a.trials / loop:8.0f} trials/h)")
            print(f"sweep, {per} trials per GPU   : {wall:7.1f} s  ({3600 * a.trials / wall:8.0f} trials/h, Ray start {t_ray:.1f} s)")
            print(f"packing gain               : {loop / wall:7.2f}x  (goal >= 3x)")
            return
        torch.set_num_threads(2)
        run_trial(cfgs[0], shared)  # warm-up
        # the loop runs before and after the sweep and the mean is the
        # baseline: this machine's speed drifts by up to ~30 % over minutes
        before = plain_loop(shared, cfgs, "cpu")
        print(f"{a.trials} trials x {a.steps} steps, batch {10 * FIXED['restarts'] + 90} images, a report every "
              f"{a.report_every} steps, a checkpoint every {a.checkpoint_period_s:g} s and with the last report")
        print(f"plain loop before (2 threads)     : {before:7.1f} s")
        wall2, t_ray = sweep(shared, a.trials, a.steps, cpu=2, gpu=0, threads=2, tmp=tmp, name="one-at-a-time")
        ray.shutdown()
        after = plain_loop(shared, cfgs, "cpu")
        loop = (before + after) / 2
        print(f"plain loop after                  : {after:7.1f} s  (baseline: the mean, {loop:.1f} s)")
        over = (wall2 - t_ray - loop) / a.trials
        print(f"sweep, 1 at a time (2 threads)    : {wall2:7.1f} s  (Ray start {t_ray:.1f} s)")
        print(f"  overhead per trial              : {over:7.3f} s  (excl. Ray start; goal <= 0.25 s)")
        print(f"  overhead per trial incl. start  : {(wall2 - loop) / a.trials:7.3f} s")
        with tempfile.TemporaryDirectory() as tmp2:
            wall, t_ray = sweep(shared, a.trials, a.steps, cpu=1, gpu=0, threads=1, tmp=tmp2, name="two-at-a-time")
        print(f"sweep, 2 at a time (1 thread each): {wall:7.1f} s  (incl. Ray start {t_ray:.1f} s)")
        print(f"  wall time / plain loop          : {wall / loop:7.2f}x  (goal <= 1.2x)")


if __name__ == "__main__":
    sys.exit(main())
