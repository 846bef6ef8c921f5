"""Adversarial robustness (the adversarial-denoising report): the report's
small classifier against pixel noise, FGSM and the one-pixel attack (real
differential evolution beside the report's random search at the same
number of queries), and Noise2Noise denoisers against DAG (the report's
adaptation) and PGD. Models are trained once by Ray Train and reused; each
point of each curve is a Ray Tune trial; the sweep run holds the curves
with the report's numbers beside ours and paired verdicts."""

from __future__ import annotations

import dataclasses
import functools
import os

from reconlab import tracking
from reconlab.errors import InputError
from reconlab.studies.adversarial.trial import METRICS, AdversarialTrialConfig, artifacts_of
from reconlab.sweep.study import Study, train_flags

DEFAULT_SPACE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "search_spaces", "adversarial.yaml")
# The report's numbers (REFERENCES.md §3; MNIST, its classifier): accuracy at each point, or the drop
REPORT_ACC = {"fgsm": {0.05: 0.889, 0.1: 0.661, 0.15: 0.362, 0.2: 0.141, 0.25: 0.049, 0.3: 0.020},
              "salt_and_pepper": {0.1: 0.959, 0.5: 0.500}}
REPORT_DROP = {"gaussian_pixels": {0.1: 0.055}, "one_pixel_random": {1: 0.015, 40: 0.125}}
REPORT_DAG = {"gaussian": "29.3 % of ratios in [0.95, 1.05], mean ratio 1.10-1.15",
              "impulse_n2n": "the most vulnerable, mean ratio 1.275-1.325"}


def flags(p) -> None:
    train_flags(p, per="model")
    p.add_argument("--denoisers-from", metavar="EXPERIMENT",
                   help="attack the denoisers the latest denoise sweep in this MLflow experiment (same store) trained: "
                        "per noise model its best undefended noisy-target trial with the noise's own loss "
                        "(default: train them here)")


def points_of(spec) -> list:
    """Every point of the sweep, parsed; a bad one is an InputError naming it."""
    from reconlab.studies.adversarial.trial import parse_point

    if "point" in spec.search:
        if spec.search["point"]["type"] != "choice":
            raise InputError("point must be fixed or a 'choice'", source=spec.source, key="search.point",
                             value=spec.search["point"])
        texts = spec.search["point"]["values"]
    else:
        texts = [spec.fixed.get("point", AdversarialTrialConfig.point)]
    return [(t, parse_point(t)) for t in texts]


def check_data(ds, spec) -> None:
    if ds.num_classes != 10 or tuple(ds.x_test.shape[1:]) != (1, 28, 28):
        raise InputError("the report's classifier takes 28x28 single-channel digits (digits or mnist)",
                         source=spec.source, key="dataset", value=f"{ds.name} {tuple(ds.x_test.shape[1:])}")


OWN_LOSS = {"gaussian": "l2", "poisson": "l1", "impulse_n2n": "l0"}  # Noise2Noise's pairing


def denoisers_from_sweep(c, experiment: str, names: list[str], sweep: str = "denoise") -> dict:
    """noise -> (meta, state, run id): per noise model, the best finished
    trial (by ``objective``) of the latest ``sweep`` in ``experiment`` whose
    arm is ``noise/<its own loss>/noisy``, its model rebuilt from the trial's
    artifacts (weights only). InputError, before Ray starts, if one is missing."""
    from reconlab.training.logged import load_logged_model

    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        raise InputError("no such MLflow experiment in this store", key="--denoisers-from", value=experiment)
    parents = tracking.find_runs(c, exp.experiment_id, {tracking.TAG_SWEEP: sweep}, max_results=1)
    if not parents:
        raise InputError(f"the experiment holds no '{sweep}' sweep", key="--denoisers-from", value=experiment)
    trials = tracking.find_runs(c, exp.experiment_id, {tracking.TAG_PARENT: parents[0].info.run_id},
                                status="FINISHED", max_results=1000)
    out = {}
    for n in names:
        arm = f"{n}/{OWN_LOSS[n]}/noisy"
        cands = [t for t in trials if t.data.params.get("arm") == arm and "objective" in t.data.metrics]
        if not cands:
            raise InputError(f"sweep run {parents[0].info.run_id} has no finished '{arm}' trial",
                             key="--denoisers-from", value=experiment)
        best = max(cands, key=lambda t: (t.data.metrics["objective"], t.info.run_id))
        meta, state = load_logged_model(c, best.info.run_id)
        out[n] = (meta, state, best.info.run_id)
    return out


def denoiser_spec(noise: str, smoke: bool):
    """The N2N denoiser the DAG/PGD points attack (tiny under --smoke-test)."""
    from reconlab.training.n2n import N2NSpec

    spec = N2NSpec(noise=noise, loss=OWN_LOSS[noise])
    if smoke:
        spec = dataclasses.replace(spec, width=8, levels=2, epochs=1, epoch_images=128, eval_images=32,
                                   attack_steps=2)
    return spec


def check(job) -> None:
    """The points, the classifier's data, and the denoisers to attack (their
    'natural' patches; on --denoisers-from, the denoise sweep's models), before
    Ray starts. ``job.data`` stays the classifier's dataset."""
    from reconlab.data import load_dataset
    from reconlab.studies.adversarial.trial import DENOISER_ATTACKS

    points = points_of(job.spec)
    ds = job.load_data()
    check_data(ds, job.spec)
    denoisers = sorted({p.denoiser for _, p in points if p.attack in DENOISER_ATTACKS})
    job.out["noises"], job.out["denoise_data"] = denoisers, load_dataset("natural") if denoisers else None
    job.out["reused"] = {}
    if job.args.denoisers_from and denoisers:
        uri = job.uri
        if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///"):]):  # never create a store here
            raise InputError(f"no MLflow store at {tracking.redact(uri)} to take denoisers from",
                             key="--denoisers-from", value=job.args.denoisers_from)
        job.out["reused"] = denoisers_from_sweep(tracking.client(uri), job.args.denoisers_from, denoisers)


def setup(job):
    """The report's classifier and the denoisers (trained once with Ray Train,
    reused from the store, or taken from --denoisers-from), and what every
    trial shares."""
    import ray
    from ray import tune

    from reconlab.models.io import share_model
    from reconlab.studies.adversarial.trial import CLASSIFIER, tune_trainable
    from reconlab.training.classifier import VARIANTS
    from reconlab.training.logged import ensure_model
    from reconlab.training.n2n import fit_n2n

    spec, ds, args = job.spec, job.data, job.args
    den_ds, reused = job.out["denoise_data"], job.out["reused"]
    cpus = max(1, min(2, int(ray.cluster_resources().get("CPU", 1))))
    tspec = VARIANTS["report"]
    if spec.train.epochs is not None:  # the classifier's epochs (the report's 5 are over 60k MNIST images)
        tspec = dataclasses.replace(tspec, epochs=spec.train.epochs)
    models = [(CLASSIFIER, "report", tspec, "classifier", None, ds)]
    models += [(f"denoiser:{n}", n, denoiser_spec(n, job.smoke), "n2n",
                functools.partial(fit_n2n, cpus_per_worker=cpus), den_ds) for n in job.out["noises"]]
    shared = {"x": ds.x_test, "y": ds.y_test,
              "denoise_x": den_ds.x_test if den_ds is not None else None, "threads": job.threads}
    params = {}
    for key, variant, mspec, family, fit, data in models:
        if family == "n2n" and variant in reused:
            run_id = reused[variant][2]
            tracking.announce(f"attacking the '{variant}' denoiser of {args.denoisers_from}: runs:/{run_id}/model")
            share_model(shared, params, key, reused[variant], f"run-{run_id}")
            continue
        share_model(shared, params, key, ensure_model(job.client, job.exp_id, variant, mspec, family=family, fit=fit,
                                                      **job.training(data)), mspec.digest())
    return tune.with_parameters(tune_trainable, shared=shared), params


def finish(job, grid, parent) -> None:
    job.out.update(analyse(grid, job.spec))
    finish_parent(parent, job.out)


def best_per_point(grid, spec) -> dict:
    """point text -> the trial with the most damage (DAG: over its searched gamma and iterations)."""
    from reconlab.sweep.runner import best_result, finite

    groups: dict[str, list] = {}
    for r in grid:
        if r.error is None and r.metrics and finite(r.metrics.get(spec.metric)) and r.checkpoint is not None:
            groups.setdefault(r.config.get("point"), []).append(r)
    return {p: best_result(rs, spec.metric, spec.mode) for p, rs in groups.items()}


CURVE_COLUMNS = ["attack", "level", "accuracy", "report accuracy", "damage", "success_rate", "queries", "trials"]
DENOISER_COLUMNS = ["attack", "denoiser", "eps (x 1/255)", "psnr_denoised", "psnr_attacked", "psnr_drop",
                    "mean_ratio", "share_in_band", "linf", "l2", "gamma", "iterations", "report"]


def _report_acc(attack: str, level: float, clean: float) -> str:
    if level in REPORT_ACC.get(attack, {}):
        return f"{REPORT_ACC[attack][level]:.3f}"
    if level in REPORT_DROP.get(attack, {}):
        return f"clean - {REPORT_DROP[attack][level]:.3f}"
    return "–"


def analyse(grid, spec) -> dict:
    from reconlab.studies.adversarial.trial import CLASSIFIER_ATTACKS, load_result, parse_point

    best = best_per_point(grid, spec)
    results = {}
    for t, r in best.items():
        with r.checkpoint.as_directory() as d:
            results[t] = load_result(d)
    counts: dict[str, int] = {}
    for r in grid:
        counts[r.config.get("point")] = counts.get(r.config.get("point"), 0) + 1
    curves, den_rows = [], []
    for t in sorted(best, key=lambda t: (parse_point(t).attack, parse_point(t).denoiser, parse_point(t).level)):
        p, m, c = parse_point(t), best[t].metrics, best[t].config
        if p.attack in CLASSIFIER_ATTACKS:
            curves.append({"attack": p.attack, "level": p.level, "accuracy": m["accuracy"],
                           "report accuracy": _report_acc(p.attack, p.level, m["clean_accuracy"]),
                           "damage": m["damage"], "success_rate": m["success_rate"], "queries": m.get("queries", "–"),
                           "trials": counts.get(t, 0), "clean_accuracy": m["clean_accuracy"]})
        else:
            den_rows.append({"attack": p.attack, "denoiser": p.denoiser, "eps (x 1/255)": p.level or "–",
                             **{k: m[k] for k in DENOISER_COLUMNS[3:10]},
                             "gamma": c.get("gamma") if p.attack == "dag" else "–",
                             "iterations": c.get("iterations") if p.attack == "dag" else "–",
                             "report": REPORT_DAG.get(p.denoiser, "–") if p.attack == "dag" else "–"})
    return {"curves": curves, "denoisers": den_rows, "results": results,
            "findings": fgsm_lines(curves) + de_lines(best, results) + denoiser_lines(den_rows)}


def fgsm_lines(curves: list[dict]) -> list[str]:
    rs = sorted((r for r in curves if r["attack"] == "fgsm"), key=lambda r: r["level"])
    if len(rs) < 2:
        return []
    acc = [r["accuracy"] for r in rs]
    mono = all(b <= a for a, b in zip(acc, acc[1:]))
    ours = ", ".join(f"{r['level']:g}: {r['accuracy']:.3f}" for r in rs)
    ref = ", ".join(f"{e:g}: {a:.3f}" for e, a in REPORT_ACC["fgsm"].items())
    return [f"FGSM accuracy falls monotonically with eps: {'MET' if mono else 'NOT MET'} (ours {ours}; "
            f"the report, MNIST: {ref})"]


def de_lines(best: dict, results: dict) -> list[str]:
    """DE against the random search at each pixel count, paired per (seed, image):
    d = correct after random - correct after DE (> 0: DE did more damage)."""
    from reconlab.stats import paired_interval
    from reconlab.studies.adversarial.trial import parse_point

    out = []
    for t in sorted(best, key=lambda t: parse_point(t).level):
        p = parse_point(t)
        twin = f"one_pixel_random {t.split()[1]}"
        if p.attack != "one_pixel_de" or twin not in results:
            continue
        de, rnd = results[t]["correct"], results[twin]["correct"]
        if de.shape != rnd.shape:
            continue
        ci = paired_interval(rnd.flatten().tolist(), de.flatten().tolist())
        verdict = {"HOLDS": "HOLDS (DE does more)", "DOES NOT HOLD": "DOES NOT HOLD (random does more)",
                   "UNDECIDED": "UNDECIDED (no difference shown)"}[ci.verdict(0)]
        m_de, m_rnd = best[t].metrics, best[twin].metrics
        out.append(f"{int(p.level)} pixel(s): DE does at least as much damage as the random search at the same "
                   f"budget: {verdict}; accuracy DE {m_de['accuracy']:.3f} vs random {m_rnd['accuracy']:.3f}, "
                   f"accuracy lost to DE - to random {ci} (over {de.shape[0]} seeds x {de.shape[1]} images); "
                   f"queries per attacked image {m_de.get('queries', 0):.0f} vs {m_rnd.get('queries', 0):.0f}")
    return out


def denoiser_lines(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["attack"] == "dag":
            out.append(f"DAG on the {r['denoiser']} denoiser: {r['share_in_band']:.1%} of PSNR ratios in [0.95, 1.05], "
                       f"mean ratio {r['mean_ratio']:.3f}, perturbation mean L-inf {r['linf']:.3f}, L2 {r['l2']:.2f} "
                       f"(the report: {REPORT_DAG.get(r['denoiser'], 'no figure')})")
    for d in sorted({r["denoiser"] for r in rows if r["attack"] == "pgd"}):
        rs = sorted((r for r in rows if r["attack"] == "pgd" and r["denoiser"] == d), key=lambda r: r["eps (x 1/255)"])
        out.append(f"PGD on the {d} denoiser, PSNR drop by eps: " +
                   ", ".join(f"{r['eps (x 1/255)']:g}/255: {r['psnr_drop']:.2f} dB (from {r['psnr_denoised']:.2f})"
                             for r in rs))
    return out


def robustness_png(curves: list[dict]) -> bytes:
    """The classifier's accuracy along each curve, the report's points beside (x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("noise on a fraction of pixels", ("gaussian_pixels", "salt_and_pepper")), ("FGSM eps", ("fgsm",)),
              ("attacked pixels", ("one_pixel_de", "one_pixel_random"))]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=100)
    for ax, (xlabel, attacks) in zip(axes, panels):
        for a in attacks:
            rs = sorted((r for r in curves if r["attack"] == a), key=lambda r: r["level"])
            if rs:
                line, = ax.plot([r["level"] for r in rs], [r["accuracy"] for r in rs], "o-", label=f"{a} (ours)")
                ref = REPORT_ACC.get(a, {})
                clean = rs[0]["clean_accuracy"]
                ref = {**ref, **{k: clean - v for k, v in REPORT_DROP.get(a, {}).items()}}
                if ref:
                    ax.plot(list(ref), list(ref.values()), "x--", color=line.get_color(), label=f"{a} (report)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("The report's classifier under noise and attacks (report: MNIST; drops drawn from our clean accuracy)")
    return _png(fig)


def dag_histograms_png(results: dict, rows: list[dict]) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reconlab.studies.adversarial.trial import BAND, parse_point

    dags = [(parse_point(t).denoiser, res) for t, res in sorted(results.items()) if parse_point(t).attack == "dag"]
    if not dags:
        return None
    fig, axes = plt.subplots(1, len(dags), figsize=(4.2 * len(dags), 3.4), dpi=100, squeeze=False)
    for ax, (d, res) in zip(axes[0], dags):
        ax.hist(res["ratio"].numpy(), bins=40, color="tab:blue", alpha=0.8)
        for b in BAND:
            ax.axvline(b, color="k", ls=":", lw=1)
        ax.set_title(f"DAG, {d} denoiser", fontsize=9)
        ax.set_xlabel("PSNR(D(noisy)) / PSNR(D(adversarial))")
    axes[0][0].set_ylabel("test patches")
    fig.tight_layout()
    return _png(fig)


def pgd_png(rows: list[dict]) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pgd = [r for r in rows if r["attack"] == "pgd"]
    if not pgd:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    for d in sorted({r["denoiser"] for r in pgd}):
        rs = sorted((r for r in pgd if r["denoiser"] == d), key=lambda r: r["eps (x 1/255)"])
        ax.plot([0] + [r["eps (x 1/255)"] for r in rs], [0] + [r["psnr_drop"] for r in rs], "o-", label=d)
    ax.set_xlabel("PGD budget eps (x 1/255, L-inf)")
    ax.set_ylabel("PSNR drop of the denoised output (dB)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _png(fig)


def _png(fig) -> bytes:
    from reconlab.tracking import figure_png

    return figure_png(fig)


def finish_parent(parent, out: dict) -> None:
    from reconlab.studies.adversarial.trial import files_of, parse_point
    from reconlab.sweep.runner import log_table

    log_table(parent, out["curves"], CURVE_COLUMNS, out["findings"], "classifier_robustness")
    log_table(parent, out["denoisers"], DENOISER_COLUMNS, [], "denoiser_attacks")
    if out["curves"]:
        parent.log_bytes(robustness_png(out["curves"]), "classifier_robustness.png")
    for name, png in (("dag_histograms.png", dag_histograms_png(out["results"], out["denoisers"])),
                      ("pgd_psnr_drop.png", pgd_png(out["denoisers"]))):
        if png is not None:
            parent.log_bytes(png, name)
    for t, res in out["results"].items():
        if parse_point(t).attack in ("dag", "pgd"):
            for f, data in files_of(res).items():
                parent.log_bytes(data, f"{t.replace(' ', '_')}/{f}")


def summary(job, grid) -> None:
    from reconlab.sweep.runner import markdown_table

    out, ds = job.out, job.data
    if out["curves"]:
        print(f"\nThe report's classifier on '{ds.name}' ({len(ds.x_test)} test images):\n")
        print(markdown_table(out["curves"], CURVE_COLUMNS))
    if out["denoisers"]:
        print("\nN2N denoisers under attack ('natural' test patches):\n")
        print(markdown_table(out["denoisers"], DENOISER_COLUMNS[:-1]))
    print()
    for line in out["findings"]:
        print(f"- {line}")


STUDY = Study(
    name="adversarial", title="Attacks on classifiers and denoisers",
    research="the adversarial-denoising report: noise, FGSM, one-pixel, DAG; and PGD",
    command="python jobs/adversarial_sweep.py --denoisers-from reconlab-denoise", description=__doc__,
    search_space=os.path.normpath(DEFAULT_SPACE), config=AdversarialTrialConfig, metrics=METRICS,
    flags=flags, check=check, setup=setup, finish=finish, summary=summary, trial_files=artifacts_of, max_t=1)
