"""The untrained-network sweep's trial: fit a deep decoder (Heckel & Hand) or
a deep image prior (Ulyanov et al.) to one noisy photograph, and score every
iterate against the clean one.

A trial reports, every ``report_every`` steps, the PSNR/SSIM of the current
output (so the MLflow curve shows fitting, the peak and the overfit), the best
PSNR so far (the oracle, which needs the clean image) and the fitting loss.
Its last report adds what each way of choosing the iterate reaches:

- ``psnr_best_fit``: the iterate with the lowest fitting loss, the deep
  decoder reference's ``find_best`` (no clean image);
- ``psnr_stop``: the no-reference stopping rule (``stopping``: ``wmv``,
  ES-WMV, or ``heldout``, held-out pixels; ``psnr_wmv``: ES-WMV's pick on
  the same fit, for the paired comparison);
- ``psnr_oracle``: the best iterate by PSNR against the clean image;
- ``psnr_final`` / ``psnr_ema``: the last output / DIP's output average.

``sigma: 0`` fits the clean image itself: the compression experiment, where
the decoder's weights are the code (``compression_factor``).

A retried trial fits again from its seed (a fit is minutes, its checkpoint is
its result): the images of the last report are the checkpoint the artifacts
come from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from typing import Literal

import torch

METRICS = ("psnr", "ssim", "psnr_oracle", "psnr_best_fit", "psnr_stop", "psnr_final", "psnr_ema", "stop_gap",
           "psnr_wmv", "wmv_gap",
           "fit_loss", "stop_iteration", "oracle_iteration", "num_parameters", "compression_factor",
           "iterations_per_s")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")  # scikit-image's bundled RGB photographs
IMAGES = "images.pt"  # the checkpoint: the noisy input and the chosen iterates, as uint8


@dataclasses.dataclass(frozen=True)
class DeepDecoderTrialConfig:
    method: Literal["decoder", "dip"] = "decoder"
    image: str = "astronaut"  # a scikit-image photo, or an absolute path to an image file (PNG, JPEG, ...)
    crop: int = 0  # centre crop of this side (0: the whole photo, trimmed to a multiple of the network's stride)
    sigma: float = 25.0  # Gaussian noise std on the 0-255 scale, clipped to [0, 1]; 0: compression
    noise_same: bool = False  # one noise image for all channels (the deep decoder paper's sigma = 25 figures)
    k: int = 128  # decoder: channels per block
    depth: int = 6  # decoder: blocks (upsampling depth - 1 times)
    dip_channels: int = 128  # DIP skip net: channels per scale
    dip_scales: int = 5
    dip_input_depth: int = 32
    reg_noise_std: float = 1.0 / 30  # DIP: input perturbation each step (denoising.ipynb)
    ema: float = 0.99  # DIP: output average
    lr: float = 0.01
    iterations: int = 1900
    stopping: Literal["none", "wmv", "heldout"] = "wmv"
    stop_window: int = 100  # ES-WMV window W
    stop_patience: int = 1000  # both rules' patience P
    holdout: float = 0.1  # heldout: the fraction of pixels left out of the fit
    report_every: int = 50
    seed: int = 0

    def __post_init__(self):
        if self.image not in PHOTOS and not (os.path.isabs(self.image) and os.path.isfile(self.image)):
            raise ValueError(f"unknown image {self.image!r} (known: {', '.join(PHOTOS)}, or an absolute path to an "
                             "image file)")
        if not (0 <= self.sigma <= 255 and math.isfinite(self.sigma)):
            raise ValueError("sigma must be in [0, 255]")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError("lr must be a positive finite number")
        if min(self.k, self.depth, self.dip_channels, self.dip_scales, self.dip_input_depth, self.iterations,
               self.report_every, self.stop_patience) < 1 or self.stop_window < 2:
            raise ValueError("k, depth, dip_*, iterations, report_every and stop_patience must be >= 1, "
                             "stop_window >= 2")
        if self.crop < 0 or self.crop % self.stride():
            raise ValueError(f"crop must be 0 or a multiple of the network's stride {self.stride()}")
        if not (0 <= self.ema < 1 and self.reg_noise_std >= 0):
            raise ValueError("ema must be in [0, 1) and reg_noise_std >= 0")
        if self.stopping not in ("none", "wmv", "heldout"):
            raise ValueError(f"stopping must be none, wmv or heldout, not {self.stopping!r}")
        if not 0 < self.holdout < 1:
            raise ValueError("holdout must be in (0, 1)")
        if self.stopping == "heldout" and self.sigma == 0:
            raise ValueError("stopping: heldout needs noise to stop on; sigma 0 (compression) fits every pixel")

    def stride(self) -> int:
        """Image sides must be multiples of this."""
        return 2 ** (self.depth - 1) if self.method == "decoder" else 2 ** self.dip_scales


def photo(name: str) -> torch.Tensor:
    """(3, H, W) in [0, 1] on the 8-bit grid: scikit-image's bundled photo
    (or ``$RECONLAB_PHOTO_DIR/<name>.npy``, a copy of it, where that is set:
    ``bench/paper_fits.py --save-photos``, for the GPU machine, which has no
    scikit-image), or the image file at the absolute path ``name``, as RGB
    (the deep decoder reference's own ``test_data/astronaut.png``, say)."""
    import numpy as np

    if os.path.isabs(name):
        from PIL import Image

        with Image.open(name) as f:
            im = np.array(f.convert("RGB"))
    elif name not in PHOTOS:
        raise ValueError(f"unknown image {name!r} (known: {', '.join(PHOTOS)})")
    elif os.environ.get("RECONLAB_PHOTO_DIR"):
        im = np.load(os.path.join(os.environ["RECONLAB_PHOTO_DIR"], f"{name}.npy"), allow_pickle=False)
    else:
        import skimage.data

        im = getattr(skimage.data, name)()
    im = np.ascontiguousarray(im[..., :3])
    return torch.from_numpy(im).permute(2, 0, 1).float() / 255


def clean_image(cfg: DeepDecoderTrialConfig) -> torch.Tensor:
    """(1, 3, h, w): the photo's centre crop (``crop`` square, or the largest
    multiple of the stride)."""
    x = photo(cfg.image)
    s = cfg.stride()
    h, w = (cfg.crop, cfg.crop) if cfg.crop else (x.shape[1] // s * s, x.shape[2] // s * s)
    if h > x.shape[1] or w > x.shape[2]:
        raise ValueError(f"crop {cfg.crop} is larger than {cfg.image} ({x.shape[1]}x{x.shape[2]})")
    top, left = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
    return x[None, :, top:top + h, left:left + w].contiguous()


def add_noise(clean: torch.Tensor, sigma: float, seed: int, same: bool = False) -> torch.Tensor:
    """clip(x + sigma/255 n, 0, 1), n ~ N(0, I) from its own seeded generator
    (both references: ``get_noisy_img`` / ``get_noisy_image``). ``same``: one
    noise image added to every channel (the deep decoder notebook's
    ``noise_same=True``, which its sigma = 25 figures use)."""
    if sigma == 0:
        return clean.clone()
    g = torch.Generator().manual_seed(seed)
    shape = (*clean.shape[:-3], 1, *clean.shape[-2:]) if same else clean.shape
    return (clean + sigma / 255 * torch.randn(shape, generator=g)).clamp(0, 1)


def build_fit(cfg: DeepDecoderTrialConfig, shape: tuple[int, ...]):
    """(model, fixed input z, fit kwargs) for the method, seeded."""
    from reconlab.models import build
    from reconlab.models.deep_decoder import input_noise, input_shape

    torch.manual_seed(cfg.seed)
    _, c, h, w = shape
    if cfg.method == "decoder":
        model = build("deep_decoder", k=cfg.k, depth=cfg.depth, out_channels=c)
        z = input_noise(input_shape(cfg.k, cfg.depth, h, w), seed=cfg.seed + 1)
        return model, z, {}
    n = cfg.dip_scales
    model = build("dip_skip", in_channels=cfg.dip_input_depth, out_channels=c, channels_down=(cfg.dip_channels,) * n,
                  channels_up=(cfg.dip_channels,) * n, channels_skip=(4,) * n)
    z = input_noise((1, cfg.dip_input_depth, h, w), seed=cfg.seed + 1)
    return model, z, {"reg_noise_std": cfg.reg_noise_std, "ema": cfg.ema}


class Observed:
    """Runs stopping rules beside the fit without ending it: the iterate each
    rule picks when it first fires is kept (or its pick at the end, if it
    never fires), and the fit goes on to ``iterations``, so the oracle and
    the reference's protocol see the whole run the rules are judged against.
    ``rules``: {name: rule}; ``pick(name)`` is (t*, x*)."""

    best_iteration, best_image = 0, None  # what ``fit`` reads of a rule: nothing, each rule is asked by name

    def __init__(self, rules: dict):
        self.rules = rules
        self.fired_at: dict[str, int] = {}
        self._picked: dict[str, tuple[int, torch.Tensor | None]] = {}

    def update(self, iteration: int, image: torch.Tensor) -> bool:
        for name, rule in self.rules.items():
            if name not in self.fired_at and rule.update(iteration, image):
                self.fired_at[name] = iteration
                self._picked[name] = (rule.best_iteration, rule.best_image)
        return False

    def pick(self, name: str) -> tuple[int, torch.Tensor | None]:
        if name in self._picked:
            return self._picked[name]
        return self.rules[name].best_iteration, self.rules[name].best_image


def stopping_rules(cfg: "DeepDecoderTrialConfig", noisy: torch.Tensor) -> tuple[Observed | None, torch.Tensor | None]:
    """The fit's observers and its pixel mask. Every rule-bearing fit runs
    ES-WMV; ``stopping: heldout`` also holds out ``holdout`` of the pixels
    (the mask) for the held-out rule, so both rules are judged on that fit."""
    from reconlab.untrained.stopping import HeldOutPixels, WindowedVariance

    if cfg.stopping == "none":
        return None, None
    rules = {"wmv": WindowedVariance(cfg.stop_window, cfg.stop_patience)}
    mask = None
    if cfg.stopping == "heldout":
        rules["heldout"] = HeldOutPixels(noisy, cfg.holdout, cfg.stop_patience, seed=cfg.seed + 2)
        mask = rules["heldout"].train_mask
    return Observed(rules), mask


def run_trial(config: dict, report=None, threads: int | None = None) -> dict:
    """One fit. ``report(metrics, images)`` every ``report_every`` steps
    (``images`` None) and with the last report ({name: (1, 3, h, w)}).
    ``threads``: torch threads for this process (a Tune worker's share);
    None leaves the caller's setting alone."""
    from reconlab.metrics import psnr, ssim
    from reconlab.untrained.fit import fit

    cfg = DeepDecoderTrialConfig(**config)
    if threads:
        torch.set_num_threads(threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # Ray shows a trial only the GPU it was given
    clean = clean_image(cfg)
    noisy = add_noise(clean, cfg.sigma, cfg.seed, cfg.noise_same)  # drawn on the CPU: the same noise on any device
    model, z, extra = build_fit(cfg, clean.shape)
    model, z, clean, noisy = model.to(dev), z.to(dev), clean.to(dev), noisy.to(dev)
    stop, mask = stopping_rules(cfg, noisy)
    weights = sum(p.numel() for p in model.parameters())
    oracle = {"psnr": -math.inf, "iteration": 0, "image": None}
    best_fit = {"loss": math.inf, "psnr": -math.inf}  # the fit's find_best rule, followed step by step
    last: dict = {}
    t0 = time.perf_counter()

    def on_step(t, out, avg, loss):
        from reconlab.untrained.fit import BEST_FACTOR

        p = psnr(out, clean).item()
        if p > oracle["psnr"]:
            oracle.update(psnr=p, iteration=t, image=out)
        if best_fit["loss"] > BEST_FACTOR * loss:
            best_fit.update(loss=loss, psnr=p)
        if t % cfg.report_every == 0 or t == cfg.iterations:
            # every metric, as it stands at step t (the sweep may optimise any of them)
            stop_t, stop_img = stop.pick(cfg.stopping) if stop is not None else (t, None)
            p_stop = psnr(stop_img, clean).item() if stop_img is not None else p
            wmv_img = stop.pick("wmv")[1] if stop is not None else None
            last.update(step=t, psnr=p, ssim=ssim(out, clean).item(), psnr_oracle=oracle["psnr"],
                        oracle_iteration=oracle["iteration"], psnr_best_fit=best_fit["psnr"], psnr_final=p,
                        psnr_stop=p_stop, stop_iteration=stop_t if stop_img is not None else t,
                        stop_gap=oracle["psnr"] - p_stop, fit_loss=loss, num_parameters=weights,
                        **({"psnr_wmv": psnr(wmv_img, clean).item()} if wmv_img is not None else {}),
                        compression_factor=clean.numel() / weights, iterations_per_s=t / (time.perf_counter() - t0),
                        **({"psnr_ema": psnr(avg, clean).item()} if avg is not None else {}))
            if wmv_img is not None:
                last["wmv_gap"] = oracle["psnr"] - last["psnr_wmv"]
            if report is not None and t < cfg.iterations:
                report(dict(last), None)

    r = fit(model, noisy, z, iterations=cfg.iterations, lr=cfg.lr, callback=on_step, callback_every=1,
            stop=stop, mask=mask, seed=cfg.seed, **extra)
    seconds = time.perf_counter() - t0
    stop_iteration, stop_image = stop.pick(cfg.stopping) if stop is not None else (r.iterations, None)
    if stop_image is None:  # no rule, or its window never filled: the last iterate
        stop_iteration, stop_image = r.iterations, r.image
    wmv_image = stop.pick("wmv")[1] if stop is not None else None
    final = {
        **last, "step": cfg.iterations,
        "psnr_best_fit": psnr(r.best_image, clean).item(), "psnr_stop": psnr(stop_image, clean).item(),
        "psnr_final": psnr(r.image, clean).item(), "psnr_oracle": oracle["psnr"],
        "oracle_iteration": oracle["iteration"], "stop_iteration": stop_iteration,
        **({"stop_fired_at": stop.fired_at[cfg.stopping]} if stop is not None and cfg.stopping in stop.fired_at
           else {}),
        **({"psnr_wmv": psnr(wmv_image, clean).item()} if wmv_image is not None else {}),
        "num_parameters": weights, "compression_factor": clean.numel() / weights,
        "iterations_per_s": r.iterations / seconds, "fit_iterations": r.iterations,
    }
    if r.ema_image is not None:
        final["psnr_ema"] = psnr(r.ema_image, clean).item()
    final["stop_gap"] = final["psnr_oracle"] - final["psnr_stop"]
    if "psnr_wmv" in final:
        final["wmv_gap"] = final["psnr_oracle"] - final["psnr_wmv"]
    images = {"noisy": noisy, "best_fit": r.best_image, "stop": stop_image, "oracle": oracle["image"],
              "final": r.image}
    if report is not None:
        report(final, images)
    return final


def tune_trainable(config: dict, shared: dict) -> None:
    """Ray Tune function trainable (one thread per trial on CPU)."""
    from ray import tune

    def report(metrics, images):
        if images is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save({k: (v[0].cpu().clamp(0, 1) * 255).round().to(torch.uint8) for k, v in images.items()},
                       os.path.join(tmp, IMAGES))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    run_trial(config, report, threads=shared.get("threads", 1))


def pngs_from_checkpoint(path: str) -> dict[str, bytes]:
    """PNGs of the noisy input and the chosen iterates."""
    from reconlab.tracking import png_bytes

    images = torch.load(os.path.join(path, IMAGES), weights_only=True)
    return {f"{k}.png": png_bytes(v[None].float() / 255, nrow=1) for k, v in images.items()}


def artifacts_of(ref: dict) -> dict[str, bytes]:
    """The study's ``trial_files`` hook."""
    from ray.train import Checkpoint

    if not ref.get("checkpoint"):
        return {}
    with Checkpoint(ref["checkpoint"]).as_directory() as d:
        return pngs_from_checkpoint(d)
