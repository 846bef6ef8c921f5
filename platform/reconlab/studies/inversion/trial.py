"""The inversion sweep's trial: invert one trained classifier on the thesis's
two tasks and score the result with the verifier ensemble (a hit needs the
majority of three independently trained verifiers) and its readability check
(``inversion.verify``).

Runs inside a Ray Tune worker. Trained models arrive through the object store
(``tune.with_parameters``), never retrained per trial. A report carries a
checkpoint (images + optimizer state), so a retried trial resumes where it
was, once ``checkpoint_period_s`` of trial time has passed since the last one,
always with the last report, and with each report at which the scheduler may
stop the trial (``shared["stop_points"]``, ASHA's rungs), so the images of a
stopped trial are kept. Each checkpoint costs ~0.25 s of Tune
persistence on 2 cores (``bench/sweep_overhead.py``); a period of C seconds
bounds that cost to 0.25/C of the trial's time and the work a retry redoes to
C seconds. Young's optimal interval sqrt(2 * 0.25 s * MTBF) is ~40 s for one
failure an hour; the default is 30 s, so a short trial checkpoints once.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from typing import Literal

import torch

from reconlab.models.io import shared_model  # each shared model built once per worker process

INVERTIBLE = ("sgd", "adam", "adam_fgsm")
METRICS = ("verifier_acc", "verifier_acc_task1", "verifier_acc_task2", "readable_acc", "readable_acc_task1",
           "readable_acc_task2", "verifier_conf", "ssim_class_mean", "classifier_acc", "objective")
# Each metric's range, and which way is better (the rest: higher). A diverged
# trial reports the worst end of each (metrics.worst_value).
BOUNDS = {**{k: (0.0, 1.0) for k in METRICS[:6]},
          "verifier_conf": (0.0, 1.0), "ssim_class_mean": (-1.0, 1.0), "classifier_acc": (0.0, 1.0),
          "objective": (0.0, math.inf)}
LOWER_IS_BETTER = {"objective"}


@dataclasses.dataclass(frozen=True)
class InversionTrialConfig:
    variant: str = "sgd"  # which trained classifier to invert
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 0.05
    steps: int = 200
    tv_weight: float = 0.01
    l2_weight: float = 0.001
    bn_weight: float = 0.0
    init_scale: float = 0.2
    restarts: int = 4
    report_every: int = 25
    checkpoint_period_s: float = 30.0  # trial seconds between checkpoints; 0: every report (see module doc)
    seed: int = 0

    def __post_init__(self):
        if self.variant not in INVERTIBLE:
            raise ValueError(f"unknown classifier variant {self.variant!r} (known: {', '.join(INVERTIBLE)})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError("lr must be a positive finite number")
        if min(self.steps, self.restarts, self.report_every) < 1:
            raise ValueError("steps, restarts and report_every must be >= 1")
        for k in ("tv_weight", "l2_weight", "bn_weight", "init_scale", "checkpoint_period_s"):
            v = getattr(self, k)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{k} must be a finite number >= 0")

    def num_reports(self) -> int:
        return math.ceil(self.steps / self.report_every)


def _device(shared: dict) -> str:
    """The GPU when this worker was given one (Ray hides unassigned GPUs)."""
    return shared.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def evaluate(x, batch, model, ensemble, class_means, objective) -> dict:
    """The trial's metrics, overall and per task: ``verifier_acc``, the share
    of images the ensemble's majority labels as the target, and
    ``readable_acc``, the share that are readable hits (the projection onto
    real digits is a hit too); ``verifier_conf``, the members' mean
    probability of the target; ``classifier_acc``, how often the inverted
    classifier itself says the target."""
    from reconlab.metrics import ssim

    s = ensemble.scores(x, batch.target)
    t1 = batch.task == 1
    out = {}
    for name, v in (("verifier_acc", s["hit"]), ("readable_acc", s["readable"])):
        out |= {name: v.mean().item(), f"{name}_task1": v[t1].mean().item(),
                f"{name}_task2": v[~t1].mean().item() if (~t1).any() else float("nan")}
    return out | {
        "verifier_conf": s["conf"].mean().item(),
        "ssim_class_mean": ssim(x, class_means[batch.target]).mean().item(),
        "classifier_acc": (model(x).argmax(1) == batch.target).float().mean().item(),
        "objective": objective.mean().item(),
    }


def run_trial(config: dict, shared: dict, report=None, checkpoint_dir: str | None = None) -> dict:
    """Run one trial. ``report(metrics, state_dir)`` is called every
    ``report_every`` steps (``state_dir`` None between checkpoints); without
    Ray it may be None (plain loop, benches)."""
    from reconlab.inversion import invert
    from reconlab.inversion.tasks import task_batch
    from reconlab.inversion.verify import ensemble_of

    cfg = InversionTrialConfig(**config)
    torch.manual_seed(cfg.seed)
    dev = _device(shared)
    model, ensemble = shared_model(shared, cfg.variant, dev), ensemble_of(shared, dev)
    batch = task_batch(shared["sources"], restarts=cfg.restarts, init_scale=cfg.init_scale, seed=cfg.seed).to(dev)
    class_means = shared["class_means"].to(dev)
    x0, start, opt_state = batch.x0, 0, None
    if checkpoint_dir is not None:
        state = torch.load(os.path.join(checkpoint_dir, "state.pt"), map_location=dev, weights_only=True)
        x0, start, opt_state = state["x"], int(state["step"]), state["opt"]
    last: dict = {}
    last_checkpoint = time.monotonic()
    stop_points = set(shared.get("stop_points", ()))

    def on_step(step, x, loss, opt):
        nonlocal last, last_checkpoint
        if not torch.isfinite(loss).all():
            last = diverged(step, **shared.get("worst", {}))
            if report is not None:
                report(last, None)
            raise _Diverged
        last = {"step": step, **evaluate(x, batch, model, ensemble, class_means, loss)}
        if report is None:
            return
        due = time.monotonic() - last_checkpoint >= cfg.checkpoint_period_s
        if not due and step != cfg.steps and step // cfg.report_every not in stop_points:
            report(last, None)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save({"step": step, "x": x.cpu(), "opt": opt.state_dict(), "target": batch.target.cpu()},
                       os.path.join(tmp, "state.pt"))
            report(last, tmp)
        last_checkpoint = time.monotonic()

    if start < cfg.steps:
        try:
            invert(model, batch.target, x0, steps=cfg.steps, lr=cfg.lr, optimizer=cfg.optimizer,
                   tv_weight=cfg.tv_weight, l2_weight=cfg.l2_weight, bn_weight=cfg.bn_weight, start_step=start,
                   opt_state=opt_state, callback=on_step, callback_every=cfg.report_every)
        except _Diverged:
            pass
    return last


class _Diverged(Exception):
    """The inversion objective went NaN/inf: the trial ends (as FAILED in MLflow)."""


def diverged(step: int, metric: str = "verifier_acc", mode: str = "max") -> dict:
    """The last report of a diverged trial: the worst finite score on every
    metric, and on the sweep's ``metric`` the worst for its ``mode``, so the
    searcher records a bad complete trial and learns to avoid the region."""
    from reconlab.metrics import worst_value
    from reconlab.tracking import DIVERGED

    out = {k: worst_value(k, "min" if k in LOWER_IS_BETTER else "max", BOUNDS) for k in METRICS}
    out[metric] = worst_value(metric, mode, BOUNDS)
    return {"step": step, **out, DIVERGED: 1.0, "diverged_reason": f"inversion objective is not finite at step {step}"}


def tune_trainable(config: dict, shared: dict) -> None:
    """Ray Tune function trainable (one thread per trial on CPU)."""
    from ray import tune

    torch.set_num_threads(shared.get("threads", 1))
    ckpt = tune.get_checkpoint()

    def report(metrics, state_dir):
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(state_dir) if state_dir else None)

    if ckpt is not None:
        with ckpt.as_directory() as d:
            run_trial(config, shared, report, checkpoint_dir=d)
    else:
        run_trial(config, shared, report)


def grids_from_checkpoint(path: str, restarts: int) -> dict[str, bytes]:
    """PNG grids of a trial's images: task 1 (restart rows x digits 0-9) and
    task 2 (source digit rows x the nine other targets)."""
    from reconlab.tracking import png_bytes

    state = torch.load(os.path.join(path, "state.pt"), weights_only=True)
    x = state["x"]
    n1 = 10 * restarts
    out = {"inversion_task1.png": png_bytes(x[:n1], nrow=10)}
    if len(x) > n1:
        out["inversion_task2.png"] = png_bytes(x[n1:], nrow=9)
    return out


def artifacts_of(ref: dict) -> dict[str, bytes]:
    """The sweep's artifacts hook: a finished trial's image grids, from the
    checkpoint in its ``spool.trial_ref``."""
    from ray.train import Checkpoint

    if not ref.get("checkpoint"):
        return {}
    with Checkpoint(ref["checkpoint"]).as_directory() as d:
        return grids_from_checkpoint(d, ref["config"].get("restarts", InversionTrialConfig.restarts))
