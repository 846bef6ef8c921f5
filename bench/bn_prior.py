"""The DeepInversion BN prior's per-image statistics: f.var(dim=(2, 3))
against E[f^2] - E[f]^2 on the flattened maps (``inversion.priors``), paired
in one process, taking turns: a 40-image inversion step of the BatchNorm
SmallCNN with the prior (forward + backward + Adam), on one thread, and the
same step without the prior as the floor. Prints median ms per step and the
ratio.

    python bench/bn_prior.py [--rounds 7] [--steps 40]
"""

import argparse
import statistics
import time

import torch


def _torch_var(self, module, inputs, _output):  # the implementation before 2026-12-04
    (f,) = inputs
    mean = f.mean(dim=(2, 3))
    var = f.var(dim=(2, 3), unbiased=False)
    self._terms.append((mean - module.running_mean).norm(dim=1) + (var - module.running_var).norm(dim=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=40)
    a = p.parse_args()
    from reconlab.inversion import invert
    from reconlab.inversion.priors import BNStatsPrior
    from reconlab.models import build

    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = build("classifier_small").eval()
    x0, t = torch.rand(40, 1, 28, 28), torch.randint(10, (40,))
    new_hook = BNStatsPrior._hook

    def step_ms(bn_weight: float, hook) -> float:
        BNStatsPrior._hook = hook
        try:
            t0 = time.perf_counter()
            invert(m, t, x0, steps=a.steps, lr=0.05, tv_weight=0.1, l2_weight=1e-3, bn_weight=bn_weight)
            return (time.perf_counter() - t0) / a.steps * 1000
        finally:
            BNStatsPrior._hook = new_hook

    step_ms(0.01, new_hook)  # warm-up
    res = {"no prior": [], "prior, torch var": [], "prior, E[f^2] - E[f]^2": []}
    for _ in range(a.rounds):
        res["no prior"].append(step_ms(0.0, new_hook))
        res["prior, torch var"].append(step_ms(0.01, _torch_var))
        res["prior, E[f^2] - E[f]^2"].append(step_ms(0.01, new_hook))
    med = {k: statistics.median(v) for k, v in res.items()}
    for k, v in med.items():
        print(f"{k:26s} {v:6.2f} ms/step")
    print(f"prior step, new / old: {med['prior, E[f^2] - E[f]^2'] / med['prior, torch var']:.2f}x; "
          f"prior overhead over no prior: old {med['prior, torch var'] / med['no prior']:.2f}x, "
          f"new {med['prior, E[f^2] - E[f]^2'] / med['no prior']:.2f}x")


if __name__ == "__main__":
    main()
