"""The prototype job (thesis ch. 4): classifiers whose heads map digits onto
fixed class prototypes, hyperspherical (Mettes et al.) and hyperbolic
Busemann (Ghadimi Atigh et al.), in d = 2, 3, 5 dimensions, each trained with
Ray Train inside a Ray Tune trial, over seeds that vary the prototypes'
placement and the training alike. Prints Tables 4.1/4.2 (macro precision /
recall / F1) with the thesis's numbers beside ours, the placement's largest
cosine against the best possible, and whether d = 2 on the sphere is the
weakest head, paired over seeds."""

from __future__ import annotations

import os

from reconlab.errors import InputError
from reconlab.studies.prototypes.trial import METRICS, PrototypeTrialConfig, artifacts_of
from reconlab.sweep.study import Study, train_flags

DEFAULT_SPACE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "search_spaces", "prototypes.yaml")

# Thesis Tables 4.1 (hypersphere; P/R/F1 %) and 4.2 (hyperbolic Busemann; one figure per d), MNIST test
THESIS = {("sphere", 2): "78.4 / 77.2 / 77.1", ("sphere", 3): "90.9 / 90.4 / 90.4", ("sphere", 5): "97.7 / 97.7 / 97.7",
          ("hyperbolic", 2): "92.4", ("hyperbolic", 3): "95.5", ("hyperbolic", 5): "96.2"}
COLUMNS = ["geometry", "d", "seeds", "precision", "recall", "f1", "f1 95% CI", "max_cos", "best max_cos",
           "thesis P / R / F1 (MNIST)"]
PLACEMENT_MARGIN = 0.01  # the placed prototypes' largest cosine within this of the best possible


def flags(p) -> None:
    train_flags(p, retrain=False)


def check(job) -> None:
    """--num-workers as a fixed trial value, and the data (28x28 single-channel digits), before Ray starts."""
    from reconlab.sweep.runner import fix_num_workers

    job.spec = fix_num_workers(job.args, job.spec)
    ds = job.load_data()
    if ds.x_train.shape[1] != 1 or ds.x_train.shape[-1] != 28:
        raise InputError("needs 28x28 single-channel digits (the thesis's small CNN)", source=job.spec.source,
                         key="dataset", value=f"{ds.name} {tuple(ds.x_train.shape[1:])}")


def setup(job):
    """Each trial trains its own classifier with Ray Train: it shares only where the data and the store are."""
    from ray import tune

    from reconlab.studies.prototypes.trial import tune_trainable

    shared = {"dataset": job.data.name, "data_root": job.args.data_root, "storage_dir": job.storage_dir}
    return tune.with_parameters(tune_trainable, shared=shared), {}


def finish(job, grid, parent) -> None:
    """Tables 4.1/4.2 beside the thesis's numbers, and the findings."""
    from reconlab.sweep.runner import log_table

    job.out["rows"], job.out["findings"] = table(grid), findings(grid)
    log_table(parent, job.out["rows"], COLUMNS, job.out["findings"], "prototypes")


def summary(job, grid) -> None:
    from reconlab.sweep.runner import markdown_table

    ds = job.data
    print(f"\nPrototype heads on '{ds.name}' ({len(ds.x_test)} test images; thesis: MNIST), macro scores, mean over "
          f"seeds:\n")
    print(markdown_table(job.out["rows"], COLUMNS))
    print()
    for f in job.out["findings"]:
        print(f"- {f}")


def max_concurrent(job) -> int:
    """Trials at once: each waits on its Ray Train workers, which hold the CPUs."""
    from reconlab.sweep.runner import train_concurrency

    return train_concurrency(job.spec, PrototypeTrialConfig)


def _finished(grid) -> dict[tuple[str, int], dict[int, dict]]:
    """{(geometry, d): {seed: last metrics}} over the trials that finished."""
    from reconlab.studies.prototypes.trial import config_of

    arms: dict = {}
    for r in grid:
        if r.error is None and r.metrics and "f1" in r.metrics:
            cfg = config_of(r.config)
            arms.setdefault((cfg.geometry, cfg.dim), {})[cfg.seed] = r.metrics
    return arms


def table(grid) -> list[dict]:
    from reconlab.models.prototypes import best_max_cosine
    from reconlab.stats import paired_interval

    rows = []
    for (geometry, d), by_seed in sorted(_finished(grid).items()):
        ms = list(by_seed.values())

        def mean(k):
            return sum(m[k] for m in ms) / len(ms)

        ci = paired_interval([m["f1"] for m in ms], [0.0] * len(ms))
        best = best_max_cosine(10, d)
        rows.append({"geometry": geometry, "d": d, "seeds": len(ms), "precision": 100 * mean("precision"),
                     "recall": 100 * mean("recall"), "f1": 100 * mean("f1"),
                     "f1 95% CI": f"[{100 * ci.low:.1f}, {100 * ci.high:.1f}]" if ci.n > 1 else "–",
                     "max_cos": max(m["max_cos"] for m in ms), "best max_cos": best if best is not None else "–",
                     "thesis P / R / F1 (MNIST)": THESIS.get((geometry, d), "–")})
    return rows


def findings(grid) -> list[str]:
    """The placement against the best possible spread, and the thesis's
    reading of Tables 4.1/4.2 (d = 2 on the sphere is the weakest head),
    paired over seeds: each other head's F1 minus the 2-D sphere's, on the
    same seeds."""
    from reconlab.stats import paired_interval

    arms = _finished(grid)
    out = []
    gaps = [m["max_cos_gap"] for by_seed in arms.values() for m in by_seed.values() if "max_cos_gap" in m]
    if gaps:
        worst = max(gaps)
        verdict = "HOLDS" if worst <= PLACEMENT_MARGIN else "DOES NOT HOLD"
        out.append(f"every placement within {PLACEMENT_MARGIN} of the best possible largest cosine: {verdict} "
                   f"(worst gap {worst:+.4f} over {len(gaps)} placements)")
    base = arms.get(("sphere", 2))
    others = sorted(k for k in arms if k != ("sphere", 2))
    if base and others:
        parts, verdicts = [], []
        for k in others:
            seeds = sorted(set(base) & set(arms[k]))
            iv = paired_interval([100 * arms[k][s]["f1"] for s in seeds], [100 * base[s]["f1"] for s in seeds])
            verdicts.append(iv.verdict())
            parts.append(f"{k[0]} d={k[1]}: {iv}")
        overall = ("HOLDS" if all(v == "HOLDS" for v in verdicts) else
                   "DOES NOT HOLD" if any(v == "DOES NOT HOLD" for v in verdicts) else "UNDECIDED")
        out.append(f"the 2-D hyperspherical head is the weakest (thesis Tables 4.1/4.2): {overall} "
                   f"(F1 of each other head minus the 2-D sphere's, points, paired over seeds: {'; '.join(parts)})")
    return out


STUDY = Study(
    name="prototypes", title="Prototype heads: hyperspherical and hyperbolic (Tables 4.1/4.2)",
    research="the thesis, chapter 4: Mettes et al.; Ghadimi Atigh et al.",
    command="python jobs/prototype_sweep.py", description=__doc__,
    search_space=os.path.normpath(DEFAULT_SPACE), config=PrototypeTrialConfig, metrics=METRICS,
    flags=flags, check=check, setup=setup, finish=finish, summary=summary, trial_files=artifacts_of,
    max_concurrent=max_concurrent)
