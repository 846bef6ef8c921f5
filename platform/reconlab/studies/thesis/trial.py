"""The paired comparison's trial: one inversion configuration run against
*every* classifier of the comparison (training recipe x architecture x
classifier seed), on the same images, and scored by the verifier ensemble.

A trial advances all classifiers in lockstep, ``report_every`` steps at a
time, so each report carries every classifier's scores at the same step.
Every report checkpoints the images, each classifier's optimizer state and
the per-image results so far (``hit``: the ensemble's vote; ``readable``:
a hit whose projection onto real digits is a hit too; ``realism``; the
images as 8-bit); the job reads the last one to pair classifiers image by
image at whichever report it selects.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from typing import Literal

import torch

from reconlab.models.io import shared_model  # each shared model built once per worker process

# Trial-level metrics (means over the trial's classifiers); per-group ones are
# "<metric>.<recipe>-<arch>" (``group_metric_keys``).
METRICS = ("acc_task1", "acc_task2", "readable_task1", "readable_task2", "realism_task1", "realism_task2",
           "conf_task1", "conf_task2", "classifier_acc", "objective")
OBJECTIVES = ("tv_l2", "tv_l2_bn")  # chapters 2-3's replication; + DeepInversion's BN prior (the extension)


@dataclasses.dataclass(frozen=True)
class ThesisTrialConfig:
    objective: Literal["tv_l2", "tv_l2_bn"] = "tv_l2"
    # the classifiers every configuration runs against
    recipes: tuple[str, ...] = ("sgd", "adam", "adam_fgsm", "sgd_vae", "adam_vae", "sphere3", "hyperbolic5")
    archs: tuple[str, ...] = ("plain", "bn")
    classifier_seeds: tuple[int, ...] = (1, 2, 3)
    classifier_epochs: int = 12
    # the inversion
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 0.05
    steps: int = 1000
    tv_weight: float = 0.1
    l2_weight: float = 0.001
    bn_weight: float = 0.01  # used by the tv_l2_bn objective only
    init_scale: float = 0.2
    restarts: int = 2  # noise tiles per digit (task 1)
    task2_per_source: int = 3  # targets per source digit (task 2)
    report_every: int = 250
    seed: int = 0  # the images: task-1 noise and task-2 targets (the job sets it from the sweep seed)

    def __post_init__(self):
        from reconlab.training.classifier import ARCHS, RECIPES

        for name, values, known in (("recipes", self.recipes, RECIPES), ("archs", self.archs, ARCHS)):
            bad = [v for v in values if v not in known]
            if not values or bad or len(set(values)) != len(values):
                raise ValueError(f"{name} must be distinct values from {', '.join(known)} (got {list(values)})")
        if not self.classifier_seeds or len(set(self.classifier_seeds)) != len(self.classifier_seeds):
            raise ValueError("classifier_seeds must be distinct, at least one")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError("lr must be a positive finite number")
        if min(self.steps, self.restarts, self.report_every, self.classifier_epochs) < 1:
            raise ValueError("steps, restarts, report_every and classifier_epochs must be >= 1")
        if not 0 <= self.task2_per_source <= 9:
            raise ValueError("task2_per_source must be in [0, 9]")
        for k in ("tv_weight", "l2_weight", "bn_weight", "init_scale"):
            v = getattr(self, k)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{k} must be a finite number >= 0")
        if not self.classifiers():
            raise ValueError(f"no classifier to invert: objective {self.objective} needs BatchNorm layers "
                             f"(arch 'bn')" if self.objective == "tv_l2_bn" else "no classifier to invert")

    def groups(self) -> list[tuple[str, str]]:
        """(recipe, arch) pairs this trial inverts: prototype heads exist on
        the BatchNorm CNN only, and the BN prior needs BatchNorm layers."""
        from reconlab.training.classifier import RECIPES

        out = []
        for r in self.recipes:
            for a in self.archs:
                if a != "bn" and RECIPES[r].get("builder") == "classifier_prototype":
                    continue
                if self.objective == "tv_l2_bn" and a != "bn":
                    continue
                out.append((r, a))
        return out

    def classifiers(self) -> list[str]:
        return [classifier_name(r, a, s) for r, a in self.groups() for s in self.classifier_seeds]


def classifier_name(recipe: str, arch: str, seed: int) -> str:
    return f"{recipe}-{arch}-s{seed}"


def group_metric_keys(recipes, archs) -> list[str]:
    return [f"{m}.{r}-{a}" for r in recipes for a in archs
            for m in ("acc_task1", "acc_task2", "readable_task1", "readable_task2", "realism_task1", "realism_task2")]


@torch.no_grad()
def score(x, batch, model, ensemble, real_x, real_y) -> dict[str, torch.Tensor]:
    """Per image: the ensemble's vote (``hit``), whether the hit is readable
    (its projection onto real digits is a hit too), the ensemble's
    confidence, the realism score and whether the inverted classifier itself
    says the target."""
    from reconlab.inversion.invert import head_loss
    from reconlab.inversion.verify import realism

    s = ensemble.scores(x, batch.target)
    _, scores = head_loss(model, x, batch.target)
    return {"hit": s["hit"], "readable": s["readable"], "conf": s["conf"],
            "realism": realism(x, batch.target, real_x, real_y),
            "own": (scores.argmax(1) == batch.target).float()}


def summarize(per: dict[str, dict[str, torch.Tensor]], task: torch.Tensor, loss: dict[str, torch.Tensor]) -> dict:
    """Trial metrics from per-classifier, per-image scores: means over the
    trial's classifiers, and per (recipe, arch) group over its seeds."""
    t1 = task == 1
    out: dict = {}

    def mean(vals):
        return float(torch.stack(vals).mean()) if vals else float("nan")

    for suffix, mask in (("task1", t1), ("task2", ~t1)):
        if not mask.any():
            continue
        out[f"acc_{suffix}"] = mean([p["hit"][mask].mean() for p in per.values()])
        out[f"readable_{suffix}"] = mean([p["readable"][mask].mean() for p in per.values()])
        out[f"conf_{suffix}"] = mean([p["conf"][mask].mean() for p in per.values()])
        out[f"realism_{suffix}"] = mean([p["realism"][mask].mean() for p in per.values()])
        groups: dict[str, list[str]] = {}
        for name in per:
            groups.setdefault(name.rsplit("-s", 1)[0], []).append(name)
        for g, names in groups.items():
            out[f"acc_{suffix}.{g}"] = mean([per[n]["hit"][mask].mean() for n in names])
            out[f"readable_{suffix}.{g}"] = mean([per[n]["readable"][mask].mean() for n in names])
            out[f"realism_{suffix}.{g}"] = mean([per[n]["realism"][mask].mean() for n in names])
    out["classifier_acc"] = mean([p["own"].mean() for p in per.values()])
    out["objective"] = mean([v.mean() for v in loss.values()])
    return out


def run_trial(config: dict, shared: dict, report=None, checkpoint_dir: str | None = None) -> dict:
    """Run one trial; ``report(metrics, state_dir)`` after every
    ``report_every`` steps (without Ray it may be None)."""
    from reconlab.inversion import invert
    from reconlab.inversion.tasks import task_batch
    from reconlab.inversion.verify import ensemble_of

    cfg = ThesisTrialConfig(**config)
    torch.manual_seed(cfg.seed)
    dev = shared.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    names = cfg.classifiers()
    models = {n: shared_model(shared, n, dev) for n in names}
    ensemble = ensemble_of(shared, dev)
    batch = task_batch(shared["sources"], restarts=cfg.restarts, init_scale=cfg.init_scale, seed=cfg.seed,
                       task2=cfg.task2_per_source > 0, task2_per_source=cfg.task2_per_source).to(dev)
    real_x, real_y = shared["real_x"].to(dev), shared["real_y"].to(dev)
    xs = {n: batch.x0 for n in names}
    opts: dict = {n: None for n in names}
    start, history = 0, []
    if checkpoint_dir is not None:
        state = torch.load(os.path.join(checkpoint_dir, "state.pt"), map_location=dev, weights_only=True)
        xs = dict(zip(state["names"], state["x"]))
        opts, start, history = state["opt"], int(state["step"]), state["history"]
    bn_weight = cfg.bn_weight if cfg.objective == "tv_l2_bn" else 0.0
    last: dict = {}
    for end in range(start + cfg.report_every, cfg.steps + cfg.report_every, cfg.report_every):
        end = min(end, cfg.steps)
        per, losses = {}, {}
        for n in names:
            got = {}
            xs[n] = invert(models[n], batch.target, xs[n], steps=end, start_step=start, lr=cfg.lr,
                           optimizer=cfg.optimizer, tv_weight=cfg.tv_weight, l2_weight=cfg.l2_weight,
                           bn_weight=bn_weight, opt_state=opts[n],
                           callback=lambda step, x, loss, opt: got.update(loss=loss, opt=opt.state_dict()))
            if not torch.isfinite(got["loss"]).all():
                raise FloatingPointError(f"inversion objective of classifier {n} is not finite at step {end}")
            opts[n], losses[n] = got["opt"], got["loss"]
            per[n] = score(xs[n], batch, models[n], ensemble, real_x, real_y)
        start = end
        last = {"step": end, **summarize(per, batch.task, losses)}
        history.append({"step": end, "hit": torch.stack([per[n]["hit"] for n in names]).cpu(),
                        "readable": torch.stack([per[n]["readable"] for n in names]).cpu(),
                        "realism": torch.stack([per[n]["realism"] for n in names]).cpu(),
                        "x": (torch.stack([xs[n] for n in names]) * 255).round().to(torch.uint8).cpu()})
        if report is None:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            torch.save({"config": dataclasses.asdict(cfg), "step": end, "names": names,
                        "x": torch.stack([xs[n] for n in names]).cpu(), "opt": opts, "history": history,
                        "target": batch.target.cpu(), "task": batch.task.cpu(), "source": batch.source.cpu()},
                       os.path.join(tmp, "state.pt"))
            report(last, tmp)
    return last


def tune_trainable(config: dict, shared: dict) -> None:
    """Ray Tune function trainable (one thread per trial on CPU)."""
    from ray import tune

    torch.set_num_threads(shared.get("threads", 1))
    ckpt = tune.get_checkpoint()

    def report(metrics, state_dir):
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(state_dir))

    if ckpt is not None:
        with ckpt.as_directory() as d:
            run_trial(config, shared, report, checkpoint_dir=d)
    else:
        run_trial(config, shared, report)


def load_state(path: str) -> dict:
    return torch.load(os.path.join(path, "state.pt"), weights_only=True)


def grids(state: dict, name: str, step: int | None = None) -> dict[str, bytes]:
    """PNG grids of one classifier's images at ``step`` (default: the last
    report): task 1 (restart rows x digits 0-9) and task 2 (one row per
    source digit)."""
    from reconlab.tracking import png_bytes

    h = state["history"][-1] if step is None else next(h for h in state["history"] if h["step"] == step)
    x = h["x"][state["names"].index(name)].float() / 255
    t1 = state["task"] == 1
    out = {"task1.png": png_bytes(x[t1], nrow=10)}
    if (~t1).any():
        out["task2.png"] = png_bytes(x[~t1], nrow=max(int((~t1).sum()) // 10, 1))
    return out


def artifacts_of(ref: dict) -> dict[str, bytes]:
    """The sweep's artifacts hook: the first seed's image grids of each
    (recipe, arch) group of a finished trial."""
    from ray.train import Checkpoint

    if not ref.get("checkpoint"):
        return {}
    out = {}
    with Checkpoint(ref["checkpoint"]).as_directory() as d:
        state = load_state(d)
        cfg = ThesisTrialConfig(**state["config"])
        for r, a in cfg.groups():
            for fname, data in grids(state, classifier_name(r, a, cfg.classifier_seeds[0])).items():
                out[f"{r}-{a}/{fname}"] = data
    return out
