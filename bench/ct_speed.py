"""CT speed (issue 15), each figure against its baseline in the same run:

1. SIRT: ASTRA's own CPU algorithm (one image at a time, as ASTRA runs it)
   against the platform's batched torch operator (ASTRA's projection matrix
   as one sparse product for the whole batch), in image-iterations/s; on a
   GPU also the torch operator on CUDA (and ASTRA's SIRT_CUDA where the
   astra package has CUDA).
2. The hybrid's wall time against SIRT-only for the same 100 iterations,
   batched over images: the thesis's schedule with the inversion step
   (classifier + TV), and with the plug-and-play denoiser (goal <= 3x).

    python bench/ct_speed.py [--sizes 28 64 128] [--angles 32] [--images 64] [--device cpu|cuda]

The GPU machine has no astra package: ``--save-matrices DIR`` here writes
each geometry's projection matrix, and ``--matrices DIR`` there reads them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: str) -> float:
    """Median seconds of ``repeats`` calls (after one warm-up)."""
    fn()
    _sync(device)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def operator(size: int, angles: int, device: str, matrices: str | None):
    from reconlab.operators.ct import CTOperator, ParallelBeam

    geom = ParallelBeam(size, angles)
    matrix = None
    if matrices:  # a machine without astra: the matrix saved by --save-matrices
        import scipy.sparse

        matrix = scipy.sparse.load_npz(os.path.join(matrices, f"W_{size}_{angles}.npz"))
    return CTOperator(geom, device, matrix=matrix)


def images(size: int, n: int) -> torch.Tensor:
    from reconlab.data.phantoms import random_phantom

    rng = np.random.default_rng(0)
    return torch.from_numpy(np.stack([random_phantom(size, rng) for _ in range(n)])).unsqueeze(1)


def sirt_speed(args) -> None:
    print(f"\nSIRT, {args.angles} angles, {args.iterations} iterations: image-iterations/s "
          f"(median of {args.repeats})")
    print("| size | ASTRA CPU, one image at a time | torch operator, batch of "
          f"{args.images} ({args.device}) | ratio | ASTRA SIRT_CUDA |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        op = operator(size, args.angles, args.device, args.matrices)
        x = images(size, args.images).to(args.device)
        y = op(x)
        torch_s = timed(lambda: op.sirt(y, args.iterations, box=(0, 1)), args.repeats, args.device)
        ours = args.images * args.iterations / torch_s
        astra_cpu = astra_gpu = "–"
        ratio = "–"
        try:
            import astra

            from reconlab.operators.ct import astra_sirt

            k = min(args.images, args.astra_images)
            yk = y[:k].cpu()
            s = timed(lambda: astra_sirt(op.geom, yk, args.iterations, min_constraint=0, max_constraint=1),
                      args.repeats, "cpu")
            astra_cpu = k * args.iterations / s
            ratio = f"{ours / astra_cpu:.1f}x"
            astra_cpu = f"{astra_cpu:,.0f}"
            if astra.use_cuda():
                s = timed(lambda: astra_sirt(op.geom, yk, args.iterations, gpu=True), args.repeats, "cpu")
                astra_gpu = f"{k * args.iterations / s:,.0f}"
        except ImportError:
            astra_cpu = "no astra here"
        print(f"| {size}² | {astra_cpu} | {ours:,.0f} | {ratio} | {astra_gpu} |")


def hybrid_overhead(args) -> None:
    from reconlab.inversion.ct_hybrid import DenoiserStep, PriorStep, Schedule, reconstruct
    from reconlab.models import build

    size = 28
    op = operator(size, args.angles, args.device, args.matrices)
    torch.manual_seed(0)
    x = images(size, args.images).to(args.device)
    y = op(x)
    clf = build("classifier_small").to(args.device).eval()
    for p in clf.parameters():
        p.requires_grad_(False)
    den = build("dncnn").to(args.device).eval()
    s = Schedule()
    base = timed(lambda: reconstruct(op, y, s), args.repeats, args.device)

    def hybrid():
        prior = PriorStep(op, y, step_size=0.05, tv_weight=0.01, cls_weight=1.0, classifier=clf)
        return reconstruct(op, y, s, prior, predict_labels=True)

    hyb = timed(hybrid, args.repeats, args.device)
    pnp = timed(lambda: reconstruct(op, y, s, DenoiserStep(den, 0.5)), args.repeats, args.device)
    print(f"\nThe hybrid against SIRT-only, {s.iterations} iterations (50 + 50 alternating 3:1), "
          f"{args.images} digits of {size}², {args.angles} angles, batched ({args.device}; goal <= 3x)")
    print("| method | wall time (s) | vs SIRT-100 |")
    print("|---|---|---|")
    for name, t in (("SIRT-100", base), ("hybrid (inversion step: classifier + TV)", hyb),
                    ("plug-and-play (DnCNN step)", pnp)):
        print(f"| {name} | {t:.3f} | {t / base:.2f}x |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[28, 64, 128])
    p.add_argument("--angles", type=int, default=32)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--astra-images", type=int, default=8, help="images ASTRA reconstructs one by one")
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--matrices", help="read the projection matrices from here (no astra)")
    p.add_argument("--save-matrices", help="write the projection matrices here and stop")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.save_matrices:
        import scipy.sparse

        from reconlab.operators.ct import ParallelBeam, system_matrix

        os.makedirs(args.save_matrices, exist_ok=True)
        for size in set(args.sizes) | {28}:
            w = system_matrix(ParallelBeam(size, args.angles))
            scipy.sparse.save_npz(os.path.join(args.save_matrices, f"W_{size}_{args.angles}.npz"), w)
        print(f"saved {len(set(args.sizes) | {28})} matrices to {args.save_matrices}")
        return 0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    sirt_speed(args)
    hybrid_overhead(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
