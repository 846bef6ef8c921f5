"""No-reference stopping rules for untrained networks (issue 16, part 6),
paired: for each (method, image) two fits from the same seed (same network
initialisation, input and noise), as a user would run each protocol:

* the ordinary fit, ``stopping: wmv``: its oracle best iterate (needs the
  clean image), the reference's lowest-loss iterate, ES-WMV's pick, DIP's EMA;
* the held-out fit, ``stopping: heldout``: 10 % of the pixels left out of
  the loss, stopped on their error.

The held-out rule is judged against the *ordinary* fit's oracle, so the gap
includes what holding pixels out costs the fit. Each fit is
``reconlab.studies.deep_decoder.trial.run_trial``, one thread, ``--jobs`` at a
time.

    python bench/stopping_rules.py [--methods decoder dip] [--images astronaut coffee chelsea rocket]
                                   [--crop 96] [--iterations 1000] [--jobs 2]
"""

import argparse
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

GOAL_DB = 1.0


def one(cfg: dict) -> dict:
    from reconlab.studies.deep_decoder.trial import run_trial

    t = time.perf_counter()
    return {**run_trial(cfg, threads=1), "seconds": time.perf_counter() - t}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="+", default=["decoder", "dip"])
    ap.add_argument("--images", nargs="+", default=["astronaut", "coffee", "chelsea", "rocket"])
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--holdout", type=float, default=0.1)
    ap.add_argument("--patience", type=int, default=300)
    ap.add_argument("--window", type=int, default=100, help="ES-WMV window")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    from reconlab.stats import paired_interval

    base = {"crop": a.crop, "iterations": a.iterations, "k": a.k, "lr": a.lr, "sigma": 25.0,
            "stop_patience": a.patience, "stop_window": a.window, "holdout": a.holdout, "report_every": a.iterations,
            "seed": a.seed}
    pairs = [(m, i) for m in a.methods for i in a.images]
    cfgs = [{**base, "method": m, "image": i, "stopping": s} for m, i in pairs for s in ("wmv", "heldout")]
    print(f"{len(pairs)} (method, image) pairs x 2 fits, {a.crop}x{a.crop} crops, sigma 25, {a.iterations} "
          f"iterations, k = {a.k}, lr {a.lr}, holdout {a.holdout}, patience {a.patience}, window {a.window}, "
          f"seed {a.seed}, "
          f"{a.jobs} at a time", flush=True)
    t0 = time.time()
    with multiprocessing.get_context("spawn").Pool(a.jobs) as pool:
        results = pool.map(one, cfgs, chunksize=1)
    rows = []
    for n, (m, i) in enumerate(pairs):
        full, held = results[2 * n], results[2 * n + 1]
        rows.append({"image": i, "method": m, "oracle": full["psnr_oracle"], "best_fit": full["psnr_best_fit"],
                     "wmv": full["psnr_stop"], "ema": full.get("psnr_ema"), "held_out": held["psnr_stop"],
                     "held_oracle": held["psnr_oracle"], "held_iteration": held["stop_iteration"],
                     "oracle_iteration": full["oracle_iteration"]})
    print("\n| image | method | oracle (ordinary fit) | lowest loss | ES-WMV | held-out rule | its gap | "
          "held-out fit's oracle | DIP EMA |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ema = f"{r['ema']:.2f}" if r["ema"] is not None else "–"
        print(f"| {r['image']} | {r['method']} | {r['oracle']:.2f} (step {r['oracle_iteration']}) | "
              f"{r['best_fit']:.2f} | {r['wmv']:.2f} | {r['held_out']:.2f} (step {r['held_iteration']}) | "
              f"{r['oracle'] - r['held_out']:.2f} | {r['held_oracle']:.2f} | {ema} |")
    print()
    for label, key in (("held-out pixels", "held_out"), ("ES-WMV", "wmv"), ("lowest fitting loss", "best_fit")):
        worst = max(rows, key=lambda r: r["oracle"] - r[key])
        gap = worst["oracle"] - worst[key]
        print(f"- {label} within {GOAL_DB:g} dB of the ordinary fit's oracle on every fit: "
              f"{'HOLDS' if gap <= GOAL_DB else 'DOES NOT HOLD'} (worst {gap:.2f} dB, {worst['image']} "
              f"{worst['method']}; {len(rows)} fits)")
    worst = max(rows, key=lambda r: r["held_oracle"] - r["held_out"])
    gap = worst["held_oracle"] - worst["held_out"]
    print(f"- held-out pixels within {GOAL_DB:g} dB of their own (held-out) fit's oracle on every fit: "
          f"{'HOLDS' if gap <= GOAL_DB else 'DOES NOT HOLD'} (worst {gap:.2f} dB, {worst['image']} {worst['method']}; "
          f"the rest of the gap above is what holding pixels out cost the fit)")
    for label, key in (("ES-WMV", "wmv"), ("the lowest-loss iterate", "best_fit")):
        ci = paired_interval([r["held_out"] for r in rows], [r[key] for r in rows])
        print(f"- held-out pixels beat {label}: {ci.verdict()} (PSNR difference {ci} dB)")
    print(f"\n{len(cfgs)} fits in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
