"""The CT case study (thesis ch. 5) on ASTRA: SIRT alternating with network
inversion against SIRT-100, SIRT stopped on a validation split, FBP and the
priors-only ablation, over the number of angles, noise-free and noisy; each
(method, angles, noise) a stratum of Ray Tune + Optuna trials, chosen on
validation images and reported on test images with paired intervals."""

from __future__ import annotations

import os

from reconlab.studies.ct.trial import METRICS, CTTrialConfig, artifacts_of
from reconlab.sweep.study import Study, train_flags

DEFAULT_SPACE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "search_spaces", "ct.yaml")
BASELINES = ("fbp", "sirt", "sirt_best", "sirt_tv")  # the non-learned ones
LEARNED_GOAL_DB = 1.0  # the figure: the learned prior beats the best baseline by this at <= 8 angles
LEARNED_MAX_ANGLES = 8
CONFIG_KEYS = ("step_size", "tv_weight", "cls_weight", "l2_weight", "ratio", "variant", "pnp_strength")


def values_of(spec, key: str, default):
    """Every value a trial parameter takes in the sweep."""
    if key in spec.search:
        p = spec.search[key]
        return list(p["values"]) if p["type"] == "choice" else None
    return [spec.fixed.get(key, default)]


def check_input(spec, ds) -> tuple[list[str], list[str]]:
    """What the data must be for the methods asked for: (methods, classifier
    variants to train). Raises InputError before Ray starts."""
    from reconlab.errors import InputError
    from reconlab.studies.ct.trial import CLASSIFIER_METHODS, CTTrialConfig, split

    c, h, w = ds.x_test.shape[1:]
    if c != 1 or h != w:
        raise InputError("CT needs square single-channel images", source=spec.source, key="dataset",
                         value=f"{ds.name} {(c, h, w)}")
    methods = values_of(spec, "method", CTTrialConfig.method)
    fixed = CTTrialConfig(**spec.fixed)
    try:
        split(ds.x_test, ds.y_test, fixed)
    except ValueError as e:
        raise InputError(str(e), source=spec.source, key="fixed.val_images", value=fixed.val_images) from None
    needs = [m for m in methods if m in CLASSIFIER_METHODS]
    if needs and (ds.num_classes != 10 or (h, w) != (28, 28)):
        raise InputError(f"{', '.join(needs)} invert the thesis's 28x28 digit classifiers; {ds.name} has none",
                         source=spec.source, key="method", value=needs)
    variants = values_of(spec, "variant", CTTrialConfig.variant) if needs else []
    return methods, variants


def check(job) -> None:
    """The data and the methods asked for, before Ray starts."""
    job.load_data()
    job.out["methods"], job.out["variants"] = check_input(job.spec, job.data)


def setup(job):
    """The classifiers and the plug-and-play denoiser (trained once with Ray
    Train, or reused), and what every trial shares."""
    import dataclasses

    from ray import tune

    from reconlab.models.io import share_model
    from reconlab.studies.ct.trial import DENOISER, tune_trainable
    from reconlab.training.classifier import VARIANTS
    from reconlab.training.denoiser import DenoiserSpec, fit_denoiser
    from reconlab.training.logged import ensure_model

    spec, ds = job.spec, job.data
    shared = {"x": ds.x_test, "y": ds.y_test, "threads": job.threads}
    params = {}
    models = [(v, VARIANTS[v], "classifier", None) for v in job.out["variants"]]
    if "pnp" in job.out["methods"]:
        models.append((DENOISER, DenoiserSpec(channels=ds.x_test.shape[1]), "denoiser", fit_denoiser))
    for name, tspec, family, fit in models:
        if spec.train.epochs is not None:
            tspec = dataclasses.replace(tspec, epochs=spec.train.epochs)
        share_model(shared, params, name, ensure_model(job.client, job.exp_id, name, tspec, family=family, fit=fit,
                                                       **job.training()), tspec.digest())
    return tune.with_parameters(tune_trainable, shared=shared), params


def finish(job, grid, parent) -> None:
    job.out.update(analyse(grid, job.spec))
    finish_parent(parent, job.out)


def best_per_stratum(grid, spec) -> dict[tuple, object]:
    """(noise, angles, method) -> the trial with the best validation score."""
    from reconlab.sweep.runner import best_result

    groups: dict[tuple, list] = {}
    for r in grid:
        if r.error is None and r.metrics and spec.metric in r.metrics and r.checkpoint is not None:
            c = r.config
            groups.setdefault((c.get("noise", "none"), int(c.get("angles", 8)), c.get("method")), []).append(r)
    return {k: best_result(v, spec.metric, spec.mode) for k, v in groups.items()}


def analyse(grid, spec) -> dict:
    """The tables, findings and figures' data from the best trial of each
    stratum; the paired intervals use the per-image test scores in their
    checkpoints (every method saw the same images and noise)."""
    from reconlab.stats import paired_interval
    from reconlab.studies.ct.trial import load_result

    best = best_per_stratum(grid, spec)
    results = {}
    for k, r in best.items():
        with r.checkpoint.as_directory() as d:
            results[k] = load_result(d)
    n_trials: dict[tuple, int] = {}
    for r in grid:
        key = (r.config.get("noise", "none"), int(r.config.get("angles", 8)), r.config.get("method"))
        n_trials[key] = n_trials.get(key, 0) + 1
    rows, wide, findings = [], [], []
    for noise, angles in sorted({(n, a) for n, a, _ in best}, key=lambda t: (t[0] != "none", t[0], t[1])):
        here = {k[2]: k for k in best if k[:2] == (noise, angles)}
        w = {"noise": noise, "angles": angles}
        ref = next((m for m in ("hybrid", "pnp") if (noise, angles, m) in results), None)
        for m in sorted(here, key=_method_order):
            r, res = best[here[m]], results[here[m]]
            row = {"noise": noise, "angles": angles, "method": m, "trials": n_trials.get(here[m], 0),
                   **{k: r.metrics[k] for k in ("psnr", "ssim", "mse", "psnr_val")},
                   **{k: r.config.get(k, "–") for k in CONFIG_KEYS if m not in ("fbp", "sirt", "sirt_best")},
                   "best_iteration": r.metrics.get("best_iteration", "–")}
            if ref is not None and m != ref:
                ci = paired_interval(results[(noise, angles, ref)]["per_image"]["psnr"].tolist(),
                                     res["per_image"]["psnr"].tolist())
                row.update({"reference": ref, "reference − this (PSNR dB)": str(ci), "verdict": ci.verdict()})
                w[f"{ref} − {m}"] = f"{ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]"
            if "ablation_psnr" in res:  # the class term at this trial's own configuration
                ci = paired_interval(res["per_image"]["psnr"].tolist(), res["ablation_psnr"].tolist())
                row["classifier term (PSNR dB)"] = str(ci)
                if m == "hybrid":
                    w["classifier term"] = f"{ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]"
            rows.append(row)
            w[m] = r.metrics["psnr"]
        wide.append(w)
    findings += verdict_lines(rows)
    findings += classifier_term_lines(results)
    findings += learned_prior_lines(rows, results)
    return {"rows": rows, "wide": wide, "findings": findings, "results": results,
            "best": {k: dict(r.metrics) for k, r in best.items()}}


def _method_order(m: str) -> int:
    from reconlab.studies.ct.trial import METHODS

    return METHODS.index(m) if m in METHODS else len(METHODS)


def verdict_lines(rows: list[dict]) -> list[str]:
    """Where the hybrid wins and loses against SIRT-100 and against the best
    baseline, and what the classifier term adds over the priors alone."""
    out = []
    for noise in sorted({r["noise"] for r in rows}, key=lambda n: (n != "none", n)):
        mine = [r for r in rows if r["noise"] == noise and r.get("reference") == "hybrid"]
        for m, label in (("sirt", "SIRT-100"), ("sirt_best", "SIRT stopped on validation"),
                         ("sirt_tv", "its priors-only ablation (the classifier term's share)")):
            rs = sorted((r for r in mine if r["method"] == m), key=lambda r: r["angles"])
            if not rs:
                continue
            by = {v: [r["angles"] for r in rs if r["verdict"] == v] for v in ("HOLDS", "DOES NOT HOLD", "UNDECIDED")}
            out.append(f"noise {noise}: the hybrid beats {label} (paired 95 % CI of the PSNR difference over the "
                       f"test images): HOLDS at angles {by['HOLDS'] or '–'}; DOES NOT HOLD at {by['DOES NOT HOLD'] or '–'}; "
                       f"UNDECIDED at {by['UNDECIDED'] or '–'}")
    return out


def classifier_term_lines(results: dict) -> list[str]:
    """What the classifier term adds to the hybrid at the hybrid's own
    configuration (the same run without it), per noise and angle count."""
    from reconlab.stats import paired_interval

    out = []
    for noise in sorted({k[0] for k in results}, key=lambda n: (n != "none", n)):
        parts = []
        for (nz, angles, m), res in sorted(results.items(), key=lambda kv: kv[0][1]):
            if nz == noise and m == "hybrid" and "ablation_psnr" in res:
                ci = paired_interval(res["per_image"]["psnr"].tolist(), res["ablation_psnr"].tolist())
                parts.append(f"{angles}: {ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}] {ci.verdict()}")
        if parts:
            out.append(f"noise {noise}: the classifier term's own share (hybrid - the same configuration without it, "
                       f"PSNR dB, 95 % CI, by angles): {'; '.join(parts)}")
    return out


def learned_prior_lines(rows: list[dict], results: dict) -> list[str]:
    """The learned prior (pnp) against the best non-learned baseline (by test
    PSNR) at each angle count <= LEARNED_MAX_ANGLES: paired, with the goal
    margin."""
    from reconlab.stats import paired_interval

    out = []
    for noise in sorted({r["noise"] for r in rows}, key=lambda n: (n != "none", n)):
        for angles in sorted({r["angles"] for r in rows if r["noise"] == noise}):
            pnp = results.get((noise, angles, "pnp"))
            base = [r for r in rows if r["noise"] == noise and r["angles"] == angles and r["method"] in BASELINES]
            if pnp is None or not base or angles > LEARNED_MAX_ANGLES:
                continue
            b = max(base, key=lambda r: r["psnr"])
            ci = paired_interval(pnp["per_image"]["psnr"].tolist(),
                                 results[(noise, angles, b["method"])]["per_image"]["psnr"].tolist())
            out.append(f"noise {noise}, {angles} angles: the learned prior (pnp) beats the best non-learned baseline "
                       f"({b['method']}) by >= {LEARNED_GOAL_DB:g} dB: {ci.verdict(LEARNED_GOAL_DB)} "
                       f"(PSNR difference {ci} dB)")
    return out


WIDE_METHODS = ("fbp", "sirt", "sirt_best", "sirt_tv", "hybrid", "hybrid_oracle", "pnp")


def wide_columns(wide: list[dict]) -> list[str]:
    cols = ["noise", "angles"] + [m for m in WIDE_METHODS if any(m in w for w in wide)]
    diffs = [f"{ref} − {m}" for ref in ("hybrid", "pnp") for m in ("sirt", "sirt_best", "sirt_tv", "pnp")]
    diffs.append("classifier term")
    return cols + [d for d in diffs if any(d in w for w in wide)]


ROW_COLUMNS = ["noise", "angles", "method", "trials", "psnr", "ssim", "mse", "psnr_val", "best_iteration",
               "reference", "reference − this (PSNR dB)", "verdict", "classifier term (PSNR dB)", *CONFIG_KEYS]


def figure_5_1(rows: list[dict], noise: str) -> bytes:
    """The thesis's Figure 5.1 redrawn: MSE, PSNR and SSIM against the number
    of angles, a line per method (test means)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=100)
    mine = [r for r in rows if r["noise"] == noise]
    for m in sorted({r["method"] for r in mine}, key=_method_order):
        rs = sorted((r for r in mine if r["method"] == m), key=lambda r: r["angles"])
        for ax, k in zip(axes, ("mse", "psnr", "ssim")):
            ax.plot([r["angles"] for r in rs], [r[k] for r in rs], "o-" if m.startswith("hybrid") else "s--",
                    label=m)
    for ax, k in zip(axes, ("MSE", "PSNR (dB)", "SSIM")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("projection angles")
        ax.set_ylabel(k)
        ax.grid(True, alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"SIRT vs the hybrid over the number of angles (noise: {noise}); thesis Figure 5.1 redrawn")
    from reconlab.tracking import figure_png

    return figure_png(fig)


def reconstructions_png(results: dict, noise: str, n: int = 4) -> bytes | None:
    """A row per angle count: n test images as truth | SIRT-100 | the best
    non-learned baseline (by test PSNR) | the hybrid | the learned prior
    (those that ran)."""
    import torch

    from reconlab.tracking import png_bytes

    rows, width = [], 0
    for angles in sorted({a for nz, a, _ in results if nz == noise}):
        mine = {m: res for (nz, a, m), res in results.items() if nz == noise and a == angles}
        ours = [mine[m] for m in ("hybrid", "pnp") if m in mine]
        base = [res for m, res in mine.items() if m in BASELINES]
        if not ours or not base:
            continue
        best = max(base, key=lambda res: res["per_image"]["psnr"].mean().item())
        groups = [ours[0]["truth"], ours[0]["sirt"], best["recon"], *(o["recon"] for o in ours)]
        rows += [g[:n] for g in groups]
        width = len(groups) * n
    if not rows:
        return None
    return png_bytes(torch.cat(rows).clamp(0, 1), nrow=width)


def finish_parent(parent, out: dict) -> None:
    from reconlab.sweep.runner import log_table

    log_table(parent, out["rows"], ROW_COLUMNS, out["findings"], "ct_table")
    log_table(parent, out["wide"], wide_columns(out["wide"]),
              ["test-image mean PSNR (dB) of each method's trial chosen on the validation images",
               "hybrid − X: paired mean difference [95 % CI] over the same test images"], "by_angles")
    for noise in sorted({r["noise"] for r in out["rows"]}):
        parent.log_bytes(figure_5_1(out["rows"], noise), f"figure_5_1_{noise}.png")
        png = reconstructions_png(out["results"], noise)
        if png is not None:
            parent.log_bytes(png, f"reconstructions_{noise}.png")
    parent.log_batch(metrics={f"psnr.{noise}.{angles}.{method}": m["psnr"]
                              for (noise, angles, method), m in out["best"].items()})


def summary(job, grid) -> None:
    from reconlab.sweep.runner import markdown_table

    out, spec = job.out, job.spec
    print(f"\nCT case study '{spec.name}' ({spec.source}): test PSNR (dB) by angles, each method's trial chosen on "
          "validation images\n")
    if out.get("wide"):
        print(markdown_table(out["wide"], wide_columns(out["wide"])))
    print()
    for f in out.get("findings", []):
        print(f"- {f}")


def max_t(job) -> int:
    """Reports of a trial: one per ``report_every`` iterations."""
    return -(-job.fixed("iterations") // job.fixed("report_every"))


STUDY = Study(
    name="ct", title="The CT case study on ASTRA",
    research="the thesis, chapter 5: SIRT alternating with network inversion",
    command="python jobs/ct_case_study.py", description=__doc__,
    search_space=os.path.normpath(DEFAULT_SPACE), config=CTTrialConfig, metrics=METRICS,
    flags=train_flags, check=check, setup=setup, finish=finish, summary=summary, trial_files=artifacts_of, max_t=max_t)
