"""The XOR family's two speed figures, each against its baseline in the same run.

    python bench/xor_throughput.py [--images 4096] [--epochs 2] [--size 32]

1. Cipherimage generation: the torch CTR op (XOR with the position keystream,
   any device) vs one `cryptography` call per image, in images/s.
2. U-Net training images/s: one Ray Train worker (TorchTrainer, DDP
   plumbing, the same train loop) vs a bare PyTorch loop over the same
   batches, steady state (epochs after the first), same thread count.
   Goal >= 0.9x. Ray Train's start-up is printed apart.
3. Where the device computes bfloat16 natively (GPU; CPU with AVX512-BF16
   or AMX), the bare loop under bf16 autocast vs the same loop in float32.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

import torch  # noqa: E402

from reconlab.models import build  # noqa: E402
from reconlab.operators.xor_aes import XorAES, bytes_to_image  # noqa: E402
from reconlab.training.xor_unet import (Cipherimages, XorTrainSpec, autocast_dtype, memory_batches,  # noqa: E402
                                        train_epoch)


def cipher_generation(x, op, device):
    ks = op.keystream(x.shape[-2], x.shape[-1]).to(device)
    xd = x.to(device)
    op.encrypt(xd[:8], keystream=ks)  # warm-up
    t = time.perf_counter()
    c = op.encrypt(xd, keystream=ks)
    if device == "cuda":
        torch.cuda.synchronize()
    t_torch = time.perf_counter() - t
    n_ref = min(len(x), 1024)
    t = time.perf_counter()
    ref = op.encrypt_reference(x[:n_ref])
    bytes_to_image(ref)  # the same float cipherimages the torch op returns
    t_ref = time.perf_counter() - t
    assert torch.equal((c[:n_ref].cpu() * 255).round().to(torch.uint8).permute(0, 2, 3, 1), ref)
    return len(x) / t_torch, n_ref / t_ref


def bare_loop(x, op, spec, threads, device):
    torch.set_num_threads(threads)
    torch.manual_seed(spec.seed)
    m = build(spec.builder, **spec.model_kwargs()).to(device)
    opt = torch.optim.Adam(m.parameters(), lr=spec.lr)
    make = Cipherimages(op, x, device, spec.noise)
    rates = []
    for e in range(spec.epochs):
        t = time.perf_counter()
        _, n = train_epoch(m, opt, memory_batches(x, spec, e, 0, 1), make, spec, e, 0, device)
        rates.append(n / (time.perf_counter() - t))
    return rates


def ray_train(op, spec, dataset, threads, use_gpu):
    from common import train_reports

    from reconlab.training.xor_unet import fit_xor_unet

    rows, wall = train_reports(fit_xor_unet, spec=spec, op=op, dataset=dataset, num_workers=1, use_gpu=use_gpu,
                               cpus_per_worker=threads)
    return [m["images_per_s"] for m in rows], wall, sum(m["epoch_seconds"] for m in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--size", type=int, default=32, choices=[32, 96])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--synthetic", action="store_true", help="random 8-bit images (timing only; no scikit-image)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray Train half (e.g. a GPU box without Ray)")
    a = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dataset = "natural" if a.size == 32 else "natural96"
    from reconlab.data import load_dataset

    if a.synthetic:
        g = torch.Generator().manual_seed(0)
        x = (torch.randint(0, 256, (a.images, 3, a.size, a.size), generator=g) / 255.0).float()
    else:
        x = load_dataset(dataset).x_train[:a.images]
    op = XorAES.from_seed(0, "ctr")
    fast, ref = cipher_generation(x, op, device)
    print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu'}; {len(x)} images {a.size}x{a.size}")
    print(f"cipherimages, torch CTR op ({device})     : {fast:10.0f} images/s")
    print(f"cipherimages, cryptography per image    : {ref:10.0f} images/s")
    print(f"  speed-up                              : {fast / ref:10.1f}x")
    spec = XorTrainSpec(width=a.width, depth=a.depth, epochs=a.epochs, batch_size=a.batch_size,
                        max_train_images=a.images)
    bare = bare_loop(x, op, spec, a.threads, device)
    b = sum(bare[1:]) / len(bare[1:])
    amp = " (bf16 autocast)" if autocast_dtype(device) is not None else ""
    print(f"U-Net w{a.width} d{a.depth}, batch {a.batch_size}{amp}, {a.threads} threads, epochs after the first:")
    print(f"  bare PyTorch loop                     : {b:10.0f} images/s  (per epoch {json.dumps([round(v) for v in bare])})")
    print(f"  seconds per epoch of {a.images} images      : {a.images / b:10.2f} s")
    if amp:
        f32 = bare_loop(x, op, dataclasses.replace(spec, amp=False), a.threads, device)
        f = sum(f32[1:]) / len(f32[1:])
        print(f"  bare loop in float32                  : {f:10.0f} images/s  (per epoch {json.dumps([round(v) for v in f32])})")
        print(f"  bf16 autocast / float32               : {b / f:10.2f}x")
    if a.no_ray:
        return
    rt, wall, train_s = ray_train(op, spec, dataset, a.threads, cuda)
    r = sum(rt[1:]) / len(rt[1:])
    print(f"  Ray Train, 1 worker                   : {r:10.0f} images/s  (per epoch {json.dumps([round(v) for v in rt])})")
    print(f"  Ray Train / bare                      : {r / b:10.2f}x  (goal >= 0.9x)")
    print(f"  Ray Train start-up and evaluation     : {wall - train_s:10.1f} s of {wall:.1f} s wall")


if __name__ == "__main__":
    sys.exit(main())
