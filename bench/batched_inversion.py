"""Batched inversion vs one image at a time, same code (`reconlab.inversion.invert`).

    python bench/batched_inversion.py [--steps 30] [--restarts 4]

Prints images*steps/s for both and their ratio (goal >= 5x).
"""

import argparse
import time

import torch
from common import shared_models

from reconlab.inversion import invert
from reconlab.inversion.tasks import task_batch
from reconlab.models.io import shared_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--single", type=int, default=20, help="images inverted one at a time (a sample)")
    a = ap.parse_args()
    torch.manual_seed(0)
    shared = shared_models()
    model = shared_model(shared, "sgd", "cpu")
    b = task_batch(shared["sources"], restarts=a.restarts, init_scale=0.2, seed=0)
    kw = dict(steps=a.steps, lr=0.05, optimizer="adam", tv_weight=1e-2, l2_weight=1e-3, bn_weight=0.01)
    invert(model, b.target[:2], b.x0[:2], **{**kw, "steps": 3})  # warm-up
    t = time.perf_counter()
    invert(model, b.target, b.x0, **kw)
    batched = len(b.target) * a.steps / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(a.single):
        invert(model, b.target[i : i + 1], b.x0[i : i + 1], **kw)
    single = a.single * a.steps / (time.perf_counter() - t)
    print(f"torch threads: {torch.get_num_threads()}  batch: {len(b.target)} images  steps: {a.steps}")
    print(f"batched        : {batched:10.0f} images*steps/s")
    print(f"one at a time  : {single:10.0f} images*steps/s")
    print(f"speed-up       : {batched / single:10.1f}x   (goal >= 5x)")


if __name__ == "__main__":
    main()
