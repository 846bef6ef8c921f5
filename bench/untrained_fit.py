"""Fitting speed of the untrained networks (issue 16): iterations/s of one fit
(`reconlab.untrained.fit`) per image size, deep decoder (k = 64, 128) and
DIP's skip net, on one CPU thread (a Tune trial's share) or the GPU.

    python bench/untrained_fit.py [--sizes 128 256 512] [--iterations 10] [--threads 1]
    python bench/untrained_fit.py --batched 8 [--k 64] [--sizes ...]

``--batched B`` measures instead image-iterations/s of B deep decoders
fitted as one stacked network (``reconlab.untrained.batched``) against the
same B fits one after another, in the same process (the ratio is the figure:
goal >= 3x on a GPU).

Each figure is the median of ``--repeats`` timed runs after one warm-up run,
and is also given as a ratio to the deep decoder k = 64 at the smallest size,
measured in the same process (this machine's speed drifts by minutes).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

import torch  # noqa: E402

from reconlab.studies.deep_decoder.trial import DeepDecoderTrialConfig, build_fit  # noqa: E402
from reconlab.untrained.batched import fit_batched, stack  # noqa: E402
from reconlab.untrained.fit import fit  # noqa: E402


def _sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def batched_vs_sequential(k: int, b: int, size: int, iterations: int, repeats: int, dev: str) -> tuple[float, float]:
    """Median image-iterations/s: (B sequential fits, one batched fit of B)."""
    from reconlab.models import build
    from reconlab.models.deep_decoder import input_noise, input_shape

    images = torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    seq, bat = [], []
    for r in range(repeats + 1):
        decoders, zs = [], []
        for i in range(b):
            torch.manual_seed(i)
            decoders.append(build("deep_decoder", k=k).to(dev))
            zs.append(input_noise(input_shape(k, 6, size, size), seed=100 + i).to(dev))
        net, z = stack(decoders).to(dev), torch.cat(zs, 1)
        _sync(dev)
        t = time.perf_counter()
        for i in range(b):
            fit(decoders[i], images[i:i + 1], zs[i], iterations=iterations, lr=0.01)
        _sync(dev)
        t_seq = time.perf_counter() - t
        t = time.perf_counter()
        fit_batched(net, images, z, iterations=iterations, lr=0.01)
        _sync(dev)
        t_bat = time.perf_counter() - t
        if r:  # the first round warms up
            seq.append(b * iterations / t_seq)
            bat.append(b * iterations / t_bat)
    return statistics.median(seq), statistics.median(bat)


def speed(cfg: DeepDecoderTrialConfig, size: int, iterations: int, repeats: int, dev: str) -> float:
    """Median iterations/s of fitting a (1, 3, size, size) image."""
    noisy = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    rates = []
    for r in range(repeats + 1):
        model, z, extra = build_fit(cfg, noisy.shape)
        model, z = model.to(dev), z.to(dev)
        _sync(dev)
        t = time.perf_counter()
        fit(model, noisy, z, iterations=iterations, lr=0.01, **extra)
        _sync(dev)
        if r:  # the first run warms up
            rates.append(iterations / (time.perf_counter() - t))
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batched", type=int, default=0, metavar="B", help="B stacked decoders vs B sequential fits")
    ap.add_argument("--k", type=int, default=64, help="decoder channels for --batched")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if a.batched:
        print(f"device: {dev}, torch threads: {torch.get_num_threads()}, deep decoder k={a.k}, {a.batched} images, "
              f"{a.iterations} iterations x {a.repeats} (median), after one warm-up round")
        print(f"{'size':>6s} {'sequential img-it/s':>20s} {'batched img-it/s':>17s} {'batched/sequential':>19s}")
        for size in a.sizes:
            seq, bat = batched_vs_sequential(a.k, a.batched, size, a.iterations, a.repeats, dev)
            print(f"{size:>4d}^2 {seq:20.2f} {bat:17.2f} {bat / seq:18.2f}x", flush=True)
        return
    methods = {"deep decoder k=64": DeepDecoderTrialConfig(method="decoder", k=64),
               "deep decoder k=128": DeepDecoderTrialConfig(method="decoder", k=128),
               "DIP skip net": DeepDecoderTrialConfig(method="dip")}
    print(f"device: {dev}, torch threads: {torch.get_num_threads()}, {a.iterations} iterations x {a.repeats} "
          "(median), after one warm-up run")
    base = None
    print(f"{'method':22s} {'size':>6s} {'it/s':>9s} {'vs decoder k=64 at ' + str(min(a.sizes)):>26s} "
          f"{'1,900 its':>10s}")
    for name, cfg in methods.items():
        for size in a.sizes:
            s = speed(cfg, size, a.iterations, a.repeats, dev)
            base = base or s
            print(f"{name:22s} {size:>4d}^2 {s:9.2f} {s / base:25.3f}x {1900 / s / 60:8.1f} min", flush=True)


if __name__ == "__main__":
    main()
