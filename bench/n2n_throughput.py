"""Noise2Noise training throughput (issue 13): one Ray Train worker
(TorchTrainer, DDP plumbing, the family's own train loop) against a bare
PyTorch loop over the same seeded batches and noise, same thread count,
images/s in the epochs after the first. Goal >= 0.9x. Ray Train's start-up
and the per-epoch evaluation are printed apart.

    python bench/n2n_throughput.py [--epoch-images 1024] [--epochs 3] [--threads 2] [--noise gaussian]
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

import torch  # noqa: E402

from reconlab.models import build  # noqa: E402
from reconlab.training.n2n import N2NSpec, train_epoch  # noqa: E402


def bare_loop(x, spec, threads, device):
    torch.set_num_threads(threads)
    torch.manual_seed(spec.seed)
    m = build(spec.builder, **spec.model_kwargs()).to(device)
    opt = torch.optim.Adam(m.parameters(), lr=spec.lr, betas=(0.9, 0.99))
    rates = []
    for e in range(spec.epochs):
        t = time.perf_counter()
        _, n = train_epoch(m, opt, x, spec, e, 0, 1, device)
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(n / (time.perf_counter() - t))
    return rates


def ray_train(spec, threads, use_gpu):
    from common import train_reports

    from reconlab.training.n2n import fit_n2n

    rows, wall = train_reports(fit_n2n, spec=spec, dataset="natural", num_workers=1, use_gpu=use_gpu,
                               cpus_per_worker=threads)
    return [m["images_per_s"] for m in rows], wall, sum(m["epoch_seconds"] for m in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epoch-images", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--noise", default="gaussian")
    ap.add_argument("--synthetic", action="store_true", help="random 32x32 patches (timing only; no scikit-image)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray Train half (e.g. a GPU box without Ray)")
    a = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    from reconlab.data import load_dataset

    if a.synthetic:
        x = torch.rand(max(a.epoch_images, 64), 3, 32, 32, generator=torch.Generator().manual_seed(0))
    else:
        x = load_dataset("natural").x_train
    # eval_images 8 and one attack step: the bench times training, not the last epoch's PGD evaluation
    spec = N2NSpec(noise=a.noise, epochs=a.epochs, epoch_images=a.epoch_images, eval_images=8, attack_steps=1)
    bare = bare_loop(x, spec, a.threads, device)
    b = sum(bare[1:]) / len(bare[1:])
    print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu'}; N2N U-Net (48/96, 5 levels), batch "
          f"{spec.batch_size}, {a.epoch_images} images an epoch, {a.threads} threads, epochs after the first:")
    print(f"  bare PyTorch loop                     : {b:10.0f} images/s  (per epoch {json.dumps([round(v) for v in bare])})")
    if a.no_ray:
        return
    rt, wall, train_s = ray_train(spec, a.threads, cuda)
    r = sum(rt[1:]) / len(rt[1:])
    print(f"  Ray Train, 1 worker                   : {r:10.0f} images/s  (per epoch {json.dumps([round(v) for v in rt])})")
    print(f"  Ray Train / bare                      : {r / b:10.2f}x  (goal >= 0.9x)")
    print(f"  Ray Train start-up and evaluation     : {wall - train_s:10.1f} s of {wall:.1f} s wall")


if __name__ == "__main__":
    sys.exit(main())
