"""The CT case study's trial: reconstruct the validation and test images from
their (noisy) sinograms with one method, and score every iteration.

Methods (thesis ch. 5 and the baselines it needs):

- ``fbp``: ASTRA's filtered backprojection (reference);
- ``sirt``: SIRT for the schedule's whole length (the thesis's SIRT-100);
- ``sirt_best``: SIRT stopped at the iteration with the best mean PSNR on
  the validation images (never chosen on the test images);
- ``sirt_tv``: the hybrid's schedule with the priors and no classifier term
  (the ablation the thesis asked for);
- ``hybrid``: SIRT warm-up, then SIRT alternating with an inversion step on
  the label the classifier predicts after the warm-up;
- ``hybrid_oracle``: the same with the true labels (both also run their own
  configuration without the classifier term, on the same sinograms:
  ``classifier_gain`` is what the class term adds, per image in the
  checkpoint);
- ``pnp`` (beyond the thesis): the hybrid's schedule with a learned prior,
  a denoiser trained by the platform on the dataset's training images
  (``training.denoiser``), in place of the inversion step (plug-and-play).

The validation images are the first ``val_images`` of the dataset's test
split, the test images the next ``test_images``: the classifiers never saw
either. The sweep's metric is ``psnr_val`` (hyper-parameters are chosen on
validation images); ``psnr``/``ssim``/``mse`` are test means. The last report's
checkpoint holds the per-image test scores (for paired intervals between
methods on the same images), the curves of every iteration and example
reconstructions beside SIRT's.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Literal

import torch

from reconlab.models.io import shared_model  # each shared model built once per worker process
from reconlab.sweep.checkpoint import load_result, report_result

METHODS = ("fbp", "sirt", "sirt_best", "sirt_tv", "hybrid", "hybrid_oracle", "pnp")
UNTUNED = ("fbp", "sirt", "sirt_best")  # nothing to search: one trial per stratum
CLASSIFIER_METHODS = ("hybrid", "hybrid_oracle")
VARIANTS = ("sgd", "adam", "adam_fgsm")
METRICS = ("psnr_val", "psnr", "ssim", "mse", "psnr_sirt", "gain_vs_sirt", "label_acc", "classifier_gain",
           "best_iteration",
           "seconds")
EXAMPLES = 8  # test images shown in the reconstructions figure


@dataclasses.dataclass(frozen=True)
class CTTrialConfig:
    method: Literal["fbp", "sirt", "sirt_best", "sirt_tv", "hybrid", "hybrid_oracle", "pnp"] = "hybrid"
    angles: int = 8  # projections over [0, 180°)
    detectors: int = 0  # 0: ceil(n sqrt 2), the whole image at every angle
    noise: Literal["none", "gaussian", "poisson"] = "none"
    gaussian_level: float = 0.01  # std as a fraction of each sinogram's peak ("1 %")
    photons: float = 10000.0  # poisson: incident photons per ray
    warmup: int = 50  # SIRT steps before the alternating phase
    alternating: int = 50  # steps in the alternating phase (SIRT-only methods: the same total)
    ratio: int = 3  # SIRT steps per inversion step
    step_size: float = 0.05  # of each inversion step's gradient step
    prior_steps: int = 1  # gradient steps per inversion step
    tv_weight: float = 0.01
    l2_weight: float = 0.0
    cls_weight: float = 1.0  # the classifier term (hybrid methods)
    fidelity_weight: float = 0.0  # ||Ax - y||² per ray, inside the inversion step
    variant: Literal["sgd", "adam", "adam_fgsm"] = "sgd"  # which trained classifier (hybrid methods)
    pnp_strength: float = 0.5  # pnp: x <- (1 - s) x + s D(x)
    val_images: int = 100
    test_images: int = 0  # 0: every test-split image after the validation ones
    report_every: int = 5
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r} (known: {', '.join(METHODS)})")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown classifier variant {self.variant!r} (known: {', '.join(VARIANTS)})")
        if self.noise not in ("none", "gaussian", "poisson"):
            raise ValueError(f"unknown noise {self.noise!r} (known: none, gaussian, poisson)")
        if self.angles < 1 or self.detectors < 0 or self.prior_steps < 1 or self.report_every < 1:
            raise ValueError("angles, prior_steps and report_every must be >= 1, detectors >= 0")
        if self.val_images < 1 or self.test_images < 0:
            raise ValueError("val_images must be >= 1 and test_images >= 0")
        if min(self.warmup, self.alternating, self.ratio) < 0 or self.warmup + self.alternating < 1:
            raise ValueError("warmup, alternating and ratio must be >= 0, with at least one iteration")
        for k in ("gaussian_level", "tv_weight", "l2_weight", "cls_weight", "fidelity_weight"):
            v = getattr(self, k)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{k} must be a finite number >= 0")
        if not (self.step_size > 0 and math.isfinite(self.step_size)):
            raise ValueError("step_size must be a positive finite number")
        if not 0 < self.pnp_strength <= 1:
            raise ValueError("pnp_strength must be in (0, 1]")
        if not (self.photons >= 1 and math.isfinite(self.photons)):
            raise ValueError("photons must be a finite number >= 1")

    @classmethod
    def samples_per_stratum(cls, stratum: dict) -> int | None:
        """A method without parameters to search runs once per stratum
        (None: the sweep's num_samples)."""
        return 1 if stratum.get("method") in UNTUNED else None

    @property
    def iterations(self) -> int:
        return self.warmup + self.alternating


def split(x: torch.Tensor, y: torch.Tensor, cfg: CTTrialConfig):
    """(val images, val labels, test images, test labels) from a test split."""
    n = cfg.test_images or len(x) - cfg.val_images
    if cfg.val_images + n > len(x) or n < 1:
        raise ValueError(f"the test split has {len(x)} images: too few for {cfg.val_images} validation + "
                         f"{cfg.test_images or 'some'} test images")
    v, t = slice(0, cfg.val_images), slice(cfg.val_images, cfg.val_images + n)
    return x[v], y[v], x[t], y[t]


def sinograms(op, x: torch.Tensor, cfg: CTTrialConfig, seed: int) -> torch.Tensor:
    from reconlab.operators.ct import add_sinogram_noise

    with torch.no_grad():
        clean = op(x)
    level = {"none": 0.0, "gaussian": cfg.gaussian_level, "poisson": cfg.photons}[cfg.noise]
    return add_sinogram_noise(clean, cfg.noise, level, seed, op.geom.size)


class Scores:
    """Means over the validation and test images at each iteration: PSNR and
    MSE at every one, SSIM (the costly one) where ``with_ssim``."""

    def __init__(self, truth: torch.Tensor, n_val: int):
        self.truth, self.n_val = truth, n_val
        self.curves: dict[str, list[float]] = {"iteration": [], "psnr_val": [], "psnr": [], "mse": [], "ssim": []}

    def per_image(self, x: torch.Tensor, with_ssim: bool = True) -> dict[str, torch.Tensor]:
        from reconlab.metrics import mse, psnr, ssim

        out = {"psnr": psnr(x, self.truth), "mse": mse(x, self.truth)}
        if with_ssim:
            out["ssim"] = ssim(x, self.truth)
        return out

    def add(self, iteration: int, x: torch.Tensor, with_ssim: bool) -> dict[str, float]:
        s = self.per_image(x, with_ssim)
        v = self.n_val
        row = {"iteration": iteration, "psnr_val": s["psnr"][:v].mean().item(), "psnr": s["psnr"][v:].mean().item(),
               "mse": s["mse"][v:].mean().item(), "ssim": s["ssim"][v:].mean().item() if with_ssim else math.nan}
        for k, val in row.items():
            self.curves[k].append(val)
        return {k: val for k, val in row.items() if not (isinstance(val, float) and math.isnan(val))}


DENOISER = "denoiser"  # its key among the shared models


def run_trial(config: dict, shared: dict, report=None) -> tuple[dict, dict]:
    """One method on one geometry and noise. ``report(metrics, files)``
    every ``report_every`` iterations (``files`` None) and with the last
    ({name: tensor dict} for the checkpoint)."""
    from reconlab.inversion.ct_hybrid import DenoiserStep, PriorStep, Schedule, reconstruct
    from reconlab.operators.ct import CTOperator, ParallelBeam, astra_fbp

    cfg = CTTrialConfig(**config)
    torch.manual_seed(cfg.seed)
    dev = shared.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    x_val, l_val, x_test, l_test = split(shared["x"], shared["y"], cfg)
    truth = torch.cat([x_val, x_test]).to(dev)
    labels = torch.cat([l_val, l_test]).to(dev)
    n_val = len(x_val)
    op = CTOperator(ParallelBeam(truth.shape[-1], cfg.angles, cfg.detectors), dev)
    # the same noise for every method: seeded by the trial seed (one per sweep), not by the method
    y = torch.cat([sinograms(op, truth[:n_val], cfg, cfg.seed), sinograms(op, truth[n_val:], cfg, cfg.seed + 1)])
    scores = Scores(truth, n_val)
    t0 = time.perf_counter()
    last: dict = {}
    best = {"psnr_val": -math.inf, "iteration": 0, "x": None}

    def on_step(i, kind, x):
        due = i % cfg.report_every == 0 or i == cfg.iterations or kind == "fbp"
        row = scores.add(i, x, with_ssim=due)
        if row["psnr_val"] > best["psnr_val"]:
            best.update(psnr_val=row["psnr_val"], iteration=i, x=x)
        last.update(step=i, **{k: v for k, v in row.items() if k != "iteration"})
        if report is not None and due and i < cfg.iterations and kind != "fbp":
            report(dict(last), None)

    schedule = Schedule(cfg.warmup, cfg.alternating, cfg.ratio)
    sirt_ref = None  # SIRT for the same number of iterations: every trial's reference
    label_acc = ablation = None
    if cfg.method == "fbp":
        x = torch.from_numpy(astra_fbp(op.geom, y.cpu())).unsqueeze(1).clamp(0, 1).to(dev)
        on_step(1, "fbp", x)
    elif cfg.method == "pnp":
        x = reconstruct(op, y, schedule, DenoiserStep(shared_model(shared, DENOISER, dev), cfg.pnp_strength),
                        callback=on_step)
    elif cfg.method in ("sirt", "sirt_best"):
        x = sirt_ref = reconstruct(op, y, schedule, callback=on_step)
        if cfg.method == "sirt_best":
            x = best["x"]
    else:
        prior = PriorStep(op, y, step_size=cfg.step_size, tv_weight=cfg.tv_weight, l2_weight=cfg.l2_weight,
                          fidelity_weight=cfg.fidelity_weight, steps=cfg.prior_steps)
        if cfg.method in CLASSIFIER_METHODS:
            prior.classifier, prior.cls_weight = shared_model(shared, cfg.variant, dev), cfg.cls_weight
            if cfg.method == "hybrid_oracle":
                prior.labels = labels
        x = reconstruct(op, y, schedule, prior, predict_labels=cfg.method == "hybrid", callback=on_step)
        if cfg.method in CLASSIFIER_METHODS:
            label_acc = (prior.labels[n_val:] == labels[n_val:]).float().mean().item()
            # the ablation at this very configuration: the same schedule, step and priors, no classifier term
            ablation = reconstruct(op, y, schedule, dataclasses.replace(prior, cls_weight=0.0, classifier=None,
                                                                       labels=None))
    if sirt_ref is None:
        sirt_ref = reconstruct(op, y, schedule)
    final_scores = scores.per_image(x)
    sirt_scores = scores.per_image(sirt_ref, with_ssim=False)  # only its PSNR is reported
    final = {
        **last, "step": scores.curves["iteration"][-1],
        "psnr_val": final_scores["psnr"][:n_val].mean().item(),
        **{k: final_scores[k][n_val:].mean().item() for k in ("psnr", "ssim", "mse")},
        "psnr_sirt": sirt_scores["psnr"][n_val:].mean().item(),
        "best_iteration": best["iteration"] if cfg.method == "sirt_best" else scores.curves["iteration"][-1],
        "seconds": time.perf_counter() - t0,
    }
    final["gain_vs_sirt"] = final["psnr"] - final["psnr_sirt"]
    if label_acc is not None:
        final["label_acc"] = label_acc
    if ablation is not None:
        ablation_psnr = scores.per_image(ablation, with_ssim=False)["psnr"][n_val:]
        final["classifier_gain"] = final["psnr"] - ablation_psnr.mean().item()
    result = {
        "per_image": {k: v[n_val:].cpu() for k, v in final_scores.items()},
        "curves": {k: torch.tensor(v) for k, v in scores.curves.items()},
        "truth": truth[n_val:n_val + EXAMPLES].cpu(), "sirt": sirt_ref[n_val:n_val + EXAMPLES].cpu(),
        "recon": x[n_val:n_val + EXAMPLES].cpu(),
    }
    if ablation is not None:
        result["ablation_psnr"] = ablation_psnr.cpu()
    if report is not None:
        report(final, result)
    return final, result


def tune_trainable(config: dict, shared: dict) -> None:
    """Ray Tune function trainable."""
    torch.set_num_threads(shared.get("threads", 1))
    run_trial(config, shared, report_result)


def files_of(result: dict, method: str) -> dict[str, bytes]:
    """The trial's artifacts: reconstructions (rows: truth, SIRT, the
    method) and every iteration's curves as CSV."""
    from reconlab.tracking import png_bytes

    rows = torch.cat([result["truth"], result["sirt"], result["recon"]])
    curves = result["curves"]
    keys = list(curves)
    lines = [",".join(keys)] + [",".join(f"{curves[k][i].item():.6g}" for k in keys)
                                for i in range(len(curves["iteration"]))]
    return {f"reconstructions_truth_sirt_{method}.png": png_bytes(rows.clamp(0, 1), nrow=len(result["truth"])),
            "curves.csv": ("\n".join(lines) + "\n").encode()}


def artifacts_of(ref: dict) -> dict[str, bytes]:
    """The study's ``trial_files`` hook."""
    from ray.train import Checkpoint

    if not ref.get("checkpoint"):
        return {}
    with Checkpoint(ref["checkpoint"]).as_directory() as d:
        return files_of(load_result(d), ref["config"].get("method", "method"))
