"""The moonshot (issue 3): a U-Net that sees what the known-plaintext oracle
knows (per-pixel posterior features from the estimated keystream) against
the paper's U-Net and the per-pixel Bayes oracle, 1 % noise, same data, same
training budget, in one run.

    python bench/xor_moonshot.py [--epochs 30] [--noise 0.01] [--data-npz F]

Runs anywhere; the oracle features cost ~0.5 s per batch of 32 on one CPU
core, so use a GPU for more than a few epochs. ``--data-npz`` (uint8 arrays
x_train, x_test) stands in for the embedded set where scikit-image is missing.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from reconlab.metrics import psnr, ssim  # noqa: E402
from reconlab.models import build  # noqa: E402
from reconlab.operators.xor_aes import XorAES  # noqa: E402
from reconlab.operators.xor_oracle import BayesDecoder, oracle_keystream  # noqa: E402
from reconlab.training.xor_unet import (Cipherimages, XorTrainSpec, evaluate, memory_batches,  # noqa: E402
                                        eval_cipherimages, train_epoch)


def load(npz):
    if npz:
        d = np.load(npz)
        return (torch.from_numpy(d["x_train"]).float() / 255, torch.from_numpy(d["x_test"]).float() / 255)
    from reconlab.data import load_dataset

    ds = load_dataset("natural")
    return ds.x_train, ds.x_test


def train(spec, op, x, x_test, c_test, decoder, device):
    torch.manual_seed(spec.seed)
    m = build(spec.builder, **spec.model_kwargs()).to(device)
    opt = torch.optim.Adam(m.parameters(), lr=spec.lr)
    make = Cipherimages(op, x, device, spec.noise, decoder)
    in_test = make.inputs(c_test.to(device))
    curve, t = [], time.perf_counter()
    for e in range(spec.epochs):
        train_epoch(m, opt, memory_batches(x, spec, e, 0, 1), make, spec, e, 0, device)
        curve.append(evaluate(m, in_test, x_test))
        print(f"  {spec.inputs:6s} epoch {e + 1:3d}: PSNR {curve[-1]['test_psnr']:.2f} dB, "
              f"SSIM {curve[-1]['test_ssim']:.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
    return curve[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--data-npz")
    ap.add_argument("--export-npz", help="write the embedded set as uint8 npz and exit")
    a = ap.parse_args()
    x, x_test = load(a.data_npz)
    if a.export_npz:
        np.savez(a.export_npz, x_train=(x * 255).round().to(torch.uint8).numpy(),
                 x_test=(x_test * 255).round().to(torch.uint8).numpy())
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    op = XorAES.from_seed(0, "ctr")
    c_test = eval_cipherimages(op, x_test, a.noise, 0)
    decoder = BayesDecoder(oracle_keystream(op, x, a.noise, 0), a.noise, x)
    mean = x.mean(0, keepdim=True).expand_as(x_test)
    bayes = decoder.decode(c_test)
    rows = {"mean of train set": (psnr(mean, x_test).mean().item(), ssim(mean, x_test).mean().item()),
            "per-pixel Bayes oracle (MMSE)": (psnr(bayes, x_test).mean().item(), ssim(bayes, x_test).mean().item())}
    print(f"{len(x)} train / {len(x_test)} test images, noise {a.noise}, {a.epochs} epochs, device {device}")
    for inputs in ("cipher", "oracle"):
        spec = XorTrainSpec(noise=a.noise, width=a.width, depth=a.depth, epochs=a.epochs, inputs=inputs)
        r = train(spec, op, x, x_test, c_test, decoder if inputs == "oracle" else None, device)
        rows["U-Net, cipherimage in (paper)" if inputs == "cipher" else "U-Net + oracle features (ours)"] = (
            r["test_psnr"], r["test_ssim"])
    print("\n| method | PSNR | SSIM |\n|---|---|---|")
    for k, (p, s) in rows.items():
        print(f"| {k} | {p:.2f} | {s:.3f} |")
    ours = rows["U-Net + oracle features (ours)"][0]
    best_other = max(rows["U-Net, cipherimage in (paper)"][0], rows["per-pixel Bayes oracle (MMSE)"][0])
    print(f"\nmoonshot margin over the better of U-Net and per-pixel oracle: {ours - best_other:+.2f} dB "
          f"(goal >= +3 dB): {'MET' if ours - best_other >= 3 else 'NOT MET'}")


if __name__ == "__main__":
    sys.exit(main())
