"""Attack speed (issue 13), each against its baseline in the same run:

1. FGSM over 6 eps in one batched pass (one backward over the b images,
   then a forward pass per eps) against one eps at a time (6 backward and 6
   forward passes): images x eps per second (goal >= 3x).
2. The one-pixel attack's differential evolution: the batched torch DE
   (a generation is one forward pass) against scipy's
   ``differential_evolution`` on the same model with ``vectorized=True``
   (its fastest mode: the whole population per call): model queries per
   second.

    python bench/attacks.py [--images 512] [--repeats 3]
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

EPS = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]  # the report's


def timed(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def fgsm_speed(model, x, y, repeats: int) -> None:
    from reconlab.attacks import accuracy_under_fgsm, fgsm

    def one_at_a_time():
        with torch.no_grad():
            return [(model(fgsm(model, x, y, e)).argmax(1) == y).float().mean().item() for e in EPS]

    batched = timed(lambda: accuracy_under_fgsm(model, x, y, EPS, batch_size=len(x)), repeats)
    single = timed(one_at_a_time, repeats)
    n = len(x) * len(EPS)
    print(f"\nFGSM, {len(EPS)} eps, {len(x)} digits (median of {repeats})")
    print("| method | images x eps / s | ratio |")
    print("|---|---|---|")
    print(f"| one eps at a time | {n / single:,.0f} | 1.00x |")
    print(f"| all eps in one batched pass | {n / batched:,.0f} | {single / batched:.2f}x |")


def de_speed(model, x, y, popsize: int, maxiter: int, repeats: int) -> None:
    from scipy.optimize import differential_evolution

    from reconlab.attacks.one_pixel import apply_pixels, one_pixel_de

    img, label = x[0], int(y[0])

    def ours():
        return one_pixel_de(model, img[None], y[:1], popsize=popsize, maxiter=maxiter, seed=0, stop_on_success=False)

    def scipy_de():
        def f(cands):  # (d, n) -> (n,)
            with torch.no_grad():
                c = torch.from_numpy(np.ascontiguousarray(cands.T)).float()
                return model(apply_pixels(img, c, 1)).softmax(1)[:, label].numpy()

        # scipy's popsize multiplies the dimension: 3 parameters x popsize/3 = popsize members
        return differential_evolution(f, [(0, 1)] * 3, maxiter=maxiter, popsize=popsize // 3, recombination=1.0,
                                      mutation=0.5, strategy="rand1bin", polish=False, tol=0, atol=-1,
                                      vectorized=True, updating="deferred", seed=0)

    t_ours = timed(ours, repeats)
    q_ours = int(ours().queries[0])
    t_scipy = timed(scipy_de, repeats)
    res = scipy_de()
    q_scipy = res.nfev * len(res.population)  # vectorized: nfev counts calls, each over the whole population
    print(f"\nOne-pixel DE, population {popsize}, up to {maxiter} generations, one digit (median of {repeats})")
    print("| implementation | queries | queries / s | ratio |")
    print("|---|---|---|---|")
    print(f"| scipy differential_evolution (vectorized) | {q_scipy} | {q_scipy / t_scipy:,.0f} | 1.00x |")
    print(f"| batched torch DE | {q_ours} | {q_ours / t_ours:,.0f} | {(q_ours / t_ours) / (q_scipy / t_scipy):.2f}x |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--popsize", type=int, default=399)
    p.add_argument("--maxiter", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    from reconlab.data import load_dataset
    from reconlab.models import build

    ds = load_dataset("digits")
    torch.manual_seed(0)
    model = build("classifier_small").eval()
    x = ds.x_test[: args.images]
    with torch.no_grad():
        y = model(x).argmax(1)  # its own labels: every image starts classified "correctly"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (an untrained classifier_small: speed only; "
          "both DEs spend their whole budget)")
    fgsm_speed(model, x, y, args.repeats)
    de_speed(model, x, y, args.popsize, args.maxiter, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
