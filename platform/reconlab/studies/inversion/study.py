"""The main job: train (or reuse) the thesis's classifiers, then sweep network
inversion over them with Ray Tune + Optuna, scored by a verifier ensemble and
its readability check (``inversion.verify``)."""

from __future__ import annotations

import os

from reconlab import tracking
from reconlab.studies.inversion.trial import METRICS, InversionTrialConfig, artifacts_of
from reconlab.sweep.study import Study, train_flags

DEFAULT_SPACE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "search_spaces", "inversion.yaml")


def check(job) -> None:
    """The data (the thesis's 28x28 digits) and the classifier variants, before Ray starts."""
    ds = job.load_data()
    if tuple(ds.x_train.shape[1:]) != (1, 28, 28):
        from reconlab.errors import InputError

        raise InputError("needs 1x28x28 digit images (the thesis's classifiers)", source=job.spec.source,
                         key="dataset", value=f"{ds.name} {tuple(ds.x_train.shape[1:])}")
    job.out["variants"] = job.spec.strata() or [job.fixed("variant")]


def max_t(job) -> int:
    """Reports of the longest trial: one per ``report_every`` steps."""
    return job.reports("steps")


def setup(job):
    """The classifiers (trained once with Ray Train, two runs at once, or
    reused) and what every trial shares."""
    from ray import tune

    from reconlab.inversion.tasks import pick_sources
    from reconlab.inversion.verify import ensemble_of
    from reconlab.studies.inversion.trial import tune_trainable
    from reconlab.sweep.runner import stop_points
    from reconlab.training.classifier import VARIANTS
    from reconlab.training.logged import ensure_with_verifiers

    spec, ds, out = job.spec, job.data, job.out
    shared, train_ids = ensure_with_verifiers(job.client, job.exp_id, {v: VARIANTS[v] for v in out["variants"]},
                                              epochs=spec.train.epochs, **job.training())
    out["real_readable"] = ensemble_of(shared).real_readable_rate(ds.x_test, ds.y_test)
    tracking.announce(f"readability check: {100 * out['real_readable']:.1f}% of real test digits pass")
    shared["sources"] = pick_sources(ds.x_test, ds.y_test, seed=spec.seed)
    shared["class_means"] = ds.class_means("test")
    shared["threads"] = job.threads
    shared["worst"] = {"metric": spec.metric, "mode": spec.mode}
    shared["stop_points"] = stop_points(spec, max_t(job))
    return tune.with_parameters(tune_trainable, shared=shared), {
        "real_readable_rate": round(out["real_readable"], 4),
        **{f"model_uri.{k}": f"runs:/{v}/model" for k, v in train_ids.items()}}


def finish(job, grid, parent) -> None:
    """The best trial per variant: the summary table, the best config and scores, its images."""
    job.out["rows"], best = summarize(grid, job.spec, job.out["variants"])
    finish_parent(parent, job.out["rows"], best, job.spec)


CONFIG_KEYS = ("optimizer", "lr", "steps", "tv_weight", "l2_weight", "bn_weight", "init_scale")
SCORES = ("verifier_acc", "readable_acc", "verifier_conf", "ssim_class_mean")
COLUMNS = ["variant", "trials", *SCORES, *CONFIG_KEYS]


def summarize(grid, spec, variants):
    """Per classifier variant: the best trial by the sweep metric (last report)."""
    from reconlab.sweep.runner import best_result, trials_of

    rows, best = [], {}
    for v in variants:
        cands = [r for r in grid if r.error is None and r.metrics and r.config.get("variant") == v
                 and isinstance(r.metrics.get(spec.metric), (int, float))]
        n = sum(1 for t in trials_of(grid) if t.config.get("variant") == v)
        if not cands:
            rows.append({"variant": v, "trials": n, spec.metric: float("nan")})
            continue
        b = best_result(cands, spec.metric, spec.mode)
        best[v] = b
        rows.append({"variant": v, "trials": n, **{k: b.metrics.get(k) for k in SCORES},
                     **{k: b.config.get(k) for k in CONFIG_KEYS}})
    return rows, best


def findings(rows, metric: str) -> list[str]:
    """What the best trials show, without a verdict: each variant's best is
    the maximum of its own noisy, unpaired search, so two maxima decide
    nothing (``jobs/thesis_comparison.py`` judges the thesis's claims, paired
    and with intervals)."""
    acc = {r["variant"]: r.get(metric) for r in rows if isinstance(r.get(metric), (int, float))}
    if len(acc) < 2:
        return []
    best = ", ".join(f"{v} {a:.3f}" for v, a in acc.items())
    return [f"best {metric} per variant (each the maximum of its own search, unpaired): {best}. "
            f"Whether SGD inverts better than Adam (thesis ch. 2) or FGSM training repairs Adam (ch. 3) is judged "
            f"paired, with intervals, by jobs/thesis_comparison.py"]


def finish_parent(parent, rows, best, spec):
    """The sweep run's results, written through the spool (``parent``: a
    ``spool.ParentLog``)."""
    from reconlab.sweep.runner import best_result, log_table

    log_table(parent, rows, COLUMNS, findings(rows, spec.metric), "summary")
    if best:
        top = best_result(best.values(), spec.metric, spec.mode)
        parent.log_batch(params={f"best.{k}": v for k, v in top.config.items()},
                         metrics={f"best_{spec.metric}": top.metrics[spec.metric]})
    for v, r in best.items():
        parent.log_batch(metrics={f"best_{spec.metric}.{v}": r.metrics[spec.metric]})
        if r.checkpoint is not None:
            from reconlab.studies.inversion.trial import grids_from_checkpoint

            with r.checkpoint.as_directory() as d:
                for name, data in grids_from_checkpoint(d, r.config.get("restarts", 4)).items():
                    parent.log_bytes(data, f"best_{v}/{name}")


def summary(job, grid) -> None:
    from reconlab.sweep.runner import markdown_table

    spec, rows = job.spec, job.out["rows"]
    print(f"\nInversion sweep '{spec.name}' ({spec.source}): best {spec.metric} per classifier variant\n")
    print(markdown_table(rows, COLUMNS))
    print(f"\nverifier_acc: the share of inverted images a majority of three independent verifiers labels as the "
          f"target; readable_acc: those whose projection onto real digits is a hit too "
          f"({100 * job.out['real_readable']:.1f}% of real test digits pass)\n")
    for f in findings(rows, spec.metric):
        print(f"- {f}")


STUDY = Study(
    name="inversion", title="Network inversion of the thesis's classifiers",
    research="the thesis, chapters 2-3: inverting SGD-, Adam- and FGSM-trained classifiers",
    command="make run", description=__doc__,
    search_space=os.path.normpath(DEFAULT_SPACE), config=InversionTrialConfig, metrics=METRICS,
    flags=train_flags, check=check, setup=setup, finish=finish, summary=summary, trial_files=artifacts_of, max_t=max_t)
