"""Ray Train's controller poll interval against the time of a short fit.

Ray Train V2's controller polls its worker group every
RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (Ray's default 2 s); a fit idles to the
next poll when it starts, reports and ends. The jobs set 0.25 s
(``reconlab.sweep.runner.init_ray``). This runs, in fresh processes taking
turns, ``--fits`` 2-epoch classifier fits (the inversion job's ``sgd``
variant on the embedded digits) under each setting and prints the median
seconds per fit and their ratio.

    python bench/train_poll.py [--rounds 2] [--fits 2]
"""

import argparse
import os
import statistics
import subprocess
import sys

CHILD = """
import dataclasses, sys, tempfile, time
from reconlab.sweep.runner import init_ray
init_ray()
from reconlab.training.classifier import VARIANTS, fit_classifier
for i in range(int(sys.argv[1])):
    t = time.time()
    fit_classifier(dataclasses.replace(VARIANTS["sgd"], epochs=2), storage_path=tempfile.mkdtemp(), name=f"t{i}")
    print("FIT", time.time() - t, flush=True)
"""


def run(poll: str, fits: int) -> list[float]:
    env = {**os.environ, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": poll}
    out = subprocess.run([sys.executable, "-c", CHILD, str(fits)], env=env, capture_output=True, text=True,
                         timeout=900, check=True).stdout
    return [float(line.split()[1]) for line in out.splitlines() if line.startswith("FIT ")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--fits", type=int, default=2)
    a = p.parse_args()
    times = {"2": [], "0.25": []}
    for _ in range(a.rounds):
        for poll in times:  # taking turns: a noisy machine slows both alike
            times[poll] += run(poll, a.fits)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"poll {k:>4} s: fits {', '.join(f'{t:.1f}' for t in v)} s; median {med[k]:.1f} s")
    print(f"median fit time at 0.25 s / at 2 s: {med['0.25'] / med['2']:.2f}")


if __name__ == "__main__":
    main()
