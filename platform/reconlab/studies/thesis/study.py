"""The paired comparison (issue 14): do the thesis's claims about which
classifiers invert well hold when every classifier is inverted with the same
configurations, on the same images, over several classifier seeds?

Each Tune trial is one inversion configuration run against every classifier
(training recipe x architecture x seed); the verifier ensemble scores each
image (a hit; readable: a hit whose projection onto real digits, through a
VAE of its own, is a hit too; realism: SSIM to the nearest real digit).
For each objective (chapters 2-3's TV + L2, and the BN prior as the
extension) and each task, the job takes the configuration with the highest
mean success over *all* classifiers (a choice that favours no arm) and
judges each claim "A inverts better than B" from a bootstrap interval of the
paired difference over classifier seeds and images."""

from __future__ import annotations

import dataclasses
import os
import tempfile

from reconlab import tracking
from reconlab.errors import InputError
from reconlab.studies.thesis.trial import METRICS, ThesisTrialConfig, artifacts_of
from reconlab.sweep.study import Study, train_flags

DEFAULT_SPACE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "search_spaces", "thesis.yaml")

# (claim, recipe A, recipe B, archs it is judged on: None = every arch both have)
CLAIMS = [
    ("SGD inverts better than Adam (ch. 2)", "sgd", "adam"),
    ("FGSM training makes Adam invert better (ch. 3)", "adam_fgsm", "adam"),
    ("VAE intermediate classes make Adam invert better (ch. 3)", "adam_vae", "adam"),
    ("SGD inverts better without VAE intermediate classes (ch. 3)", "sgd", "sgd_vae"),
    ("SGD softmax inverts better than the 3-D spherical prototype head (ch. 4)", "sgd", "sphere3"),
    ("SGD softmax inverts better than the 5-D hyperbolic prototype head (ch. 4)", "sgd", "hyperbolic5"),
]
VERDICT_COLUMNS = ["objective", "task", "tv_weight", "steps", "claim", "arch", "A", "B", "A − B (points)", "95% CI",
                   "verdict", "readable A / B (%)", "readable A − B (points)", "readable 95% CI", "readable verdict",
                   "realism A − B", "realism 95% CI", "realism verdict"]
CURVE_COLUMNS = ["objective", "tv_weight", "steps", "task"]  # + one column per (recipe, arch) group


def flags(p) -> None:
    p.add_argument("--seed", type=int, help="the sweep seed (images, searcher, bootstrap), overriding the YAML")
    train_flags(p)


def check(job) -> None:
    """The sweep seed (--seed, never a trial value) as the images' seed, the
    data (the thesis's 28x28 digits) and the classifier roster, before Ray
    starts."""
    from reconlab.sweep.spec import SEED_MAX

    args, spec = job.args, job.spec
    if args.seed is not None:
        if not 0 <= args.seed <= SEED_MAX:
            raise InputError(f"must be in [0, {SEED_MAX}]", key="--seed", value=args.seed)
        spec = dataclasses.replace(spec, seed=args.seed)
    if "seed" in spec.fixed or "seed" in spec.search:
        raise InputError("the images' seed is the sweep seed (top-level 'seed' or --seed), not a trial value",
                         source=spec.source, key="fixed.seed" if "seed" in spec.fixed else "search.seed")
    job.spec = spec = dataclasses.replace(spec, fixed={**spec.fixed, "seed": spec.seed})
    ds = job.load_data()
    if tuple(ds.x_train.shape[1:]) != (1, 28, 28):
        raise InputError("needs 1x28x28 digit images (the thesis's classifiers)", source=spec.source, key="dataset",
                         value=f"{ds.name} {tuple(ds.x_train.shape[1:])}")
    job.out["vae_spec"] = vae_spec_of(spec)
    job.out["classifiers"] = roster(spec, job.out["vae_spec"].digest())


def setup(job):
    """The VAE behind the *_vae recipes and the classifier roster (trained
    once with Ray Train, or reused), the verifiers, and what every trial
    shares."""
    from ray import tune

    from reconlab.inversion.tasks import pick_sources
    from reconlab.inversion.verify import ensemble_of
    from reconlab.studies.thesis.trial import tune_trainable
    from reconlab.training.logged import ensure_with_verifiers

    spec, ds, out = job.spec, job.data, job.out
    c, exp_id, classifiers, vae_spec = job.client, job.exp_id, out["classifiers"], out["vae_spec"]
    vae_models, vae_params = {}, {}
    if any(s.vae for s in classifiers.values()):
        meta, state, vae_run, out["figures"] = ensure_vae(job, vae_spec)
        vae_models, vae_params = {vae_spec.digest(): (meta, state)}, {"model_uri.vae": f"runs:/{vae_run}/model"}
    shared, run_ids = ensure_with_verifiers(c, exp_id, classifiers, epochs=spec.train.epochs,
                                            config={"vae_models": vae_models}, **job.training())
    shared |= {"sources": pick_sources(ds.x_test, ds.y_test, seed=spec.seed), "real_x": ds.x_test,
               "real_y": ds.y_test, "threads": job.threads}
    out["real_readable"] = ensemble_of(shared).real_readable_rate(ds.x_test, ds.y_test)
    tracking.announce(f"readability check: {100 * out['real_readable']:.1f}% of real test digits pass")
    return tune.with_parameters(tune_trainable, shared=shared), {
        "classifiers": len(classifiers), "real_readable_rate": round(out["real_readable"], 4), **vae_params,
        **{f"model_uri.{k}": f"runs:/{v}/model" for k, v in run_ids.items()}}


def finish(job, grid, parent) -> None:
    """The verdicts (paired, with intervals), the accuracy by configuration,
    the selected configurations' images and the VAE's figures."""
    from reconlab.sweep.runner import log_table

    out = job.out
    evidence = collect(grid)
    out["curve"], curve_cols = curve(evidence)
    out["verdicts"] = verdicts(evidence, seed=job.spec.seed)
    out["findings"] = findings(out["verdicts"])
    out["curve_cols"] = curve_cols
    log_table(parent, out["verdicts"], VERDICT_COLUMNS, out["findings"], "verdicts")
    log_table(parent, out["curve"], curve_cols, [], "accuracy_by_config")
    for (objective, task), sel in selected(evidence).items():
        if task == "task1":
            for name, data in selected_grids(sel).items():
                parent.log_bytes(data, f"{objective}/{name}")
    for name, data in out.get("figures", {}).items():
        parent.log_bytes(data, name)


def metric_keys(job) -> list[str]:
    return metric_keys_of(job.spec)


def vae_spec_of(spec):
    """The spec of the VAE behind the *_vae recipes (``training.vae.VAE_SPEC``),
    with the spec's ``train.epochs`` when it sets them (the smoke test)."""
    from reconlab.training.vae import VAE_SPEC

    return dataclasses.replace(VAE_SPEC, epochs=spec.train.epochs) if spec.train.epochs else VAE_SPEC


def ensure_vae(job, vae_spec):
    """Train (or reuse) the VAE with Ray Train; its run gets the thesis's
    Figure 3.2 (decoded intermediate examples, with their classes and
    weights) and Figure 3.5 (a t-SNE of the latent space). Returns (meta,
    state_dict, run id, {figure name: PNG bytes}) for the sweep's run."""
    import json

    from reconlab.models import build
    from reconlab.training.logged import ensure_model
    from reconlab.training.vae import fit_vae, intermediate_examples, latent_tsne_png

    c, ds = job.client, job.data
    meta, state, run_id = ensure_model(c, job.exp_id, "vae", vae_spec, family="vae", fit=fit_vae, **job.training())
    if "latent_tsne.png" not in {a.path for a in c.list_artifacts(run_id)}:
        vae = build(meta["builder"], **meta["kwargs"])
        vae.load_state_dict(state)
        x, labels, _ = intermediate_examples(vae, ds.x_train, ds.y_train, 40, seed=vae_spec.seed)
        pairs = [{str(k): round(float(v), 3) for k, v in enumerate(p) if v > 0} for p in labels]  # image -> label
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in (("intermediate_examples.png", tracking.png_bytes(x, nrow=10)),
                               ("intermediate_examples.json", json.dumps(pairs, indent=1).encode()),
                               ("latent_tsne.png", latent_tsne_png(vae, ds.x_test, ds.y_test, seed=vae_spec.seed))):
                with open(os.path.join(tmp, name), "wb") as f:
                    f.write(data)
            c.log_artifacts(run_id, tmp)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("latent_tsne.png", "intermediate_examples.png"):
            with open(c.download_artifacts(run_id, name, tmp), "rb") as f:
                figures[f"vae_{name}"] = f.read()
    return meta, state, run_id, figures


def roster(spec, vae_digest: str | None = None) -> dict:
    """{classifier name: TrainSpec} over every trial configuration the spec
    can produce (recipes, archs and seeds are fixed or searched lists)."""
    import itertools

    from reconlab.studies.thesis.trial import classifier_name
    from reconlab.training.classifier import recipe_spec

    values = {k: spec.search[k]["values"] if k in spec.search and "values" in spec.search[k] else None
              for k in ("objective", "recipes", "archs", "classifier_seeds", "classifier_epochs")}
    out = {}
    keys = [k for k, v in values.items() if v is not None]
    for combo in itertools.product(*(values[k] for k in keys)):
        cfg = ThesisTrialConfig(**{**spec.fixed, **dict(zip(keys, combo))})
        epochs = spec.train.epochs or cfg.classifier_epochs
        for r, a in cfg.groups():
            for s in cfg.classifier_seeds:
                out[classifier_name(r, a, s)] = recipe_spec(r, a, s, epochs=epochs, vae=vae_digest)
    return out


def metric_keys_of(spec) -> list[str]:
    from reconlab.studies.thesis.trial import group_metric_keys
    from reconlab.training.classifier import ARCHS, RECIPES

    cfg = ThesisTrialConfig(**spec.fixed)
    recipes = cfg.recipes if "recipes" not in spec.search else list(RECIPES)
    archs = cfg.archs if "archs" not in spec.search else list(ARCHS)
    return [*METRICS, *group_metric_keys(recipes, archs)]


# --------------------------------------------------------------------------- the evidence


@dataclasses.dataclass
class TrialEvidence:
    """One report of a finished trial: its configuration, the inversion step
    and, at that step, the ensemble's vote per classifier and image."""

    config: object  # ThesisTrialConfig
    step: int
    names: list[str]
    hit: object  # (classifiers, images) tensor
    readable: object  # (classifiers, images), or None in checkpoints from before the readability check
    realism: object
    task: object  # (images,)
    state: dict  # the trial's last checkpoint (its images are those of the last step)


def collect(grid) -> list[TrialEvidence]:
    """Every report of every trial that ran its whole budget: a trial of S
    steps also measures the configuration at each earlier report."""
    from reconlab.studies.thesis.trial import load_state

    out = []
    for r in grid:
        if r.error is not None or r.checkpoint is None:
            continue
        with r.checkpoint.as_directory() as d:
            state = load_state(d)
        cfg = ThesisTrialConfig(**state["config"])
        if state["history"][-1]["step"] != cfg.steps:
            continue  # stopped before its budget: not comparable
        for h in state["history"]:
            out.append(TrialEvidence(cfg, h["step"], state["names"], h["hit"], h.get("readable"), h["realism"],
                                     state["task"], state))
    return out


TASKS = {"task1": 1, "task2": 2}


def _mask(ev: TrialEvidence, task: str):
    return ev.task == TASKS[task]


def selected(evidence) -> dict[tuple[str, str], TrialEvidence]:
    """Per (objective, task): the configuration and step with the highest
    mean success over all the classifiers on that task (ties: the first)."""
    best: dict = {}
    for ev in evidence:
        for task in TASKS:
            m = _mask(ev, task)
            if not m.any():
                continue
            score = float(ev.hit[:, m].mean())
            key = (ev.config.objective, task)
            if key not in best or score > best[key][0]:
                best[key] = (score, ev)
    return {k: v[1] for k, v in best.items()}


def verdicts(evidence, *, seed: int = 0) -> list[dict]:
    """One row per (objective, task, claim, arch) at the selected configuration:
    the mean paired difference of the ensemble's success rate (points), its
    bootstrap interval over classifier seeds and images, and the verdict;
    the same for the readable rate and the realism score (the ensemble can
    accept images a person would not read: readable asks that their
    projection onto real digits be read too, realism how close they are to
    a real digit)."""
    from reconlab.stats import paired_bootstrap
    from reconlab.studies.thesis.trial import classifier_name

    rows = []
    for (objective, task), ev in sorted(selected(evidence).items()):
        m = _mask(ev, task)
        idx = {n: i for i, n in enumerate(ev.names)}
        seeds = ev.config.classifier_seeds
        for claim, a, b in CLAIMS:
            for arch in ev.config.archs:
                na = [classifier_name(a, arch, s) for s in seeds]
                nb = [classifier_name(b, arch, s) for s in seeds]
                if not all(n in idx for n in na + nb):
                    continue
                ia, ib = [idx[n] for n in na], [idx[n] for n in nb]
                ha, hb = ev.hit[ia][:, m].double(), ev.hit[ib][:, m].double()
                iv = paired_bootstrap((100 * (ha - hb)).numpy(), seed=seed)
                ra, rb = ev.realism[ia][:, m].double(), ev.realism[ib][:, m].double()
                rv = paired_bootstrap((ra - rb).numpy(), seed=seed)
                readable = {"readable A / B (%)": "", "readable A − B (points)": float("nan"), "readable 95% CI": "",
                            "readable verdict": ""}
                if ev.readable is not None:
                    ea, eb = ev.readable[ia][:, m].double(), ev.readable[ib][:, m].double()
                    dv = paired_bootstrap((100 * (ea - eb)).numpy(), seed=seed)
                    readable = {"readable A / B (%)": f"{100 * ea.mean():.1f} / {100 * eb.mean():.1f}",
                                "readable A − B (points)": dv.mean,
                                "readable 95% CI": f"[{dv.low:+.1f}, {dv.high:+.1f}]", "readable verdict": dv.verdict()}
                rows.append({"objective": objective, "task": task, "tv_weight": ev.config.tv_weight, "steps": ev.step,
                             "claim": claim,
                             "arch": arch, "A": f"{a} {100 * ha.mean():.1f}%", "B": f"{b} {100 * hb.mean():.1f}%",
                             "A − B (points)": iv.mean, "95% CI": f"[{iv.low:+.1f}, {iv.high:+.1f}]",
                             "verdict": iv.verdict(), **readable, "realism A − B": rv.mean,
                             "realism 95% CI": f"[{rv.low:+.3f}, {rv.high:+.3f}]", "realism verdict": rv.verdict()})
    return rows


def findings(rows) -> list[str]:
    """One line per claim: its verdicts over tasks, architectures and objectives."""
    out = []
    for claim, _, _ in CLAIMS:
        cells = [f"{r['task']}/{r['arch']}/{r['objective']} {r['verdict']} ({r['A − B (points)']:+.1f} "
                 f"{r['95% CI']}; readable {r['readable verdict'] or '–'}; realism {r['realism verdict']})"
                 for r in rows if r["claim"] == claim]
        if cells:
            out.append(f"{claim}: " + "; ".join(cells))
    return out


def curve(evidence) -> tuple[list[dict], list[str]]:
    """The ensemble's success rate (%) of each (recipe, arch) group, mean over
    seeds, for every configuration and task: how each arm moves with TV."""
    rows, groups = [], []
    for ev in sorted(evidence, key=lambda e: (e.config.objective, e.config.tv_weight, e.step)):
        by_group: dict[str, list[int]] = {}
        for i, n in enumerate(ev.names):
            by_group.setdefault(n.rsplit("-s", 1)[0], []).append(i)
        for g in by_group:
            if g not in groups:
                groups.append(g)
        for task in TASKS:
            m = _mask(ev, task)
            if m.any():
                rows.append({"objective": ev.config.objective, "tv_weight": ev.config.tv_weight, "steps": ev.step,
                             "task": task,
                             **{g: 100 * float(ev.hit[ix][:, m].mean()) for g, ix in by_group.items()}})
    return rows, [*CURVE_COLUMNS, *groups]


def selected_grids(ev: TrialEvidence) -> dict[str, bytes]:
    """Each group's first-seed images at the selected configuration and step."""
    from reconlab.studies.thesis.trial import classifier_name, grids

    out = {}
    for r, a in ev.config.groups():
        for fname, data in grids(ev.state, classifier_name(r, a, ev.config.classifier_seeds[0]), ev.step).items():
            out[f"{r}-{a}_{fname}"] = data
    return out


def summary(job, grid) -> None:
    from reconlab.sweep.runner import markdown_table

    out, spec = job.out, job.spec
    print(f"\nPaired comparison '{spec.name}' on '{job.data.name}': {len(out['classifiers'])} classifiers, each "
          f"configuration run against all of them on the same images; success = the verifier ensemble's majority "
          f"says the target; readable = a success whose projection onto real digits (a VAE's reconstruction) is one "
          f"too ({100 * out['real_readable']:.1f}% of real test digits pass).\n")
    print("Success rate (%) per configuration at its last step, mean over classifier seeds (every step: "
          "accuracy_by_config.csv in MLflow):\n")
    last = {}
    for r in out["curve"]:
        last[(r["objective"], r["tv_weight"])] = max(last.get((r["objective"], r["tv_weight"]), 0), r["steps"])
    print(markdown_table([r for r in out["curve"] if r["steps"] == last[(r["objective"], r["tv_weight"])]],
                         out["curve_cols"]))
    print("\nVerdicts at each (objective, task)'s best configuration and step over all classifiers "
          "(bootstrap over classifier seeds and images):\n")
    print(markdown_table(out["verdicts"], VERDICT_COLUMNS))
    print()
    for f in out["findings"]:
        print(f"- {f}")
    print(f"\nsweep seed {spec.seed}")


STUDY = Study(
    name="thesis", title="The thesis's classifiers, compared paired",
    research="the thesis, chapters 2-4: SGD vs Adam vs FGSM, plain vs BatchNorm CNN, softmax vs prototype heads, "
             "over classifier seeds",
    command="python jobs/thesis_comparison.py", description=__doc__,
    search_space=os.path.normpath(DEFAULT_SPACE), config=ThesisTrialConfig, metrics=METRICS,
    flags=flags, check=check, setup=setup, finish=finish, summary=summary, trial_files=artifacts_of,
    metric_keys=metric_keys)
