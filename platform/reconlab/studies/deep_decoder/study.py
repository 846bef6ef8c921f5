"""The untrained-network job: deep decoder (Heckel & Hand, ICLR 2019) and
deep image prior (Ulyanov et al.) fits of noisy photographs, swept with Ray
Tune + Optuna; a table per image and method with the papers' numbers beside,
the no-reference stopping rule against the oracle, and (for ``sigma: 0``
fits) the compression table against wavelet thresholding and JPEG."""

from __future__ import annotations

import os

from reconlab.studies.deep_decoder.trial import METRICS, DeepDecoderTrialConfig, artifacts_of
from reconlab.sweep.study import Study

DEFAULT_SPACE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "search_spaces", "deep_decoder.yaml")

# The papers' anchors (REFERENCES.md section 4): astronaut, 512x512, 1,900 iterations
PAPER = {
    ("astronaut", "decoder", 25.0): "k=32: 27.0, k=64: 29.15, k=128: 29.2 (noise_same: the same noise in each channel)",
    ("astronaut", "decoder", 30.0): "k=128: 28.8",
    ("astronaut", "dip", 25.0): "29.22 (colour images; + averaging 30.43)",
}
COLUMNS = ["image", "method", "sigma", "trials", "psnr_best_fit", "psnr_oracle", "stopping", "psnr_stop", "stop_gap",
           "psnr_wmv", "psnr_final", "psnr_ema", "k", "lr", "iterations", "crop", "compression_factor",
           "paper (512², 1,900 its)"]
STOP_GOAL_DB = 1.0  # the figure: the no-reference rule within 1 dB of the oracle best iterate
BYTES_PER_WEIGHT = 4  # the decoder's code: its weights as float32


def setup(job):
    """What every trial shares: its torch threads."""
    from ray import tune

    from reconlab.studies.deep_decoder.trial import tune_trainable

    return tune.with_parameters(tune_trainable, shared={"threads": job.threads}), {}


def finish(job, grid, parent) -> None:
    """The per-image table, the compression table and the findings on the sweep run."""
    out = job.out
    out["rows"], out["compression"] = summarize(grid, job.spec), compression_rows(grid)
    out["findings"] = findings(grid)
    finish_parent(parent, out)


def max_t(job) -> int:
    """Reports of the longest trial: one per ``report_every`` iterations."""
    return job.reports("iterations")


def _finished(grid):
    return [r for r in grid if r.error is None and r.metrics and "psnr_best_fit" in r.metrics]


def summarize(grid, spec) -> list[dict]:
    """Per (image, method, sigma): the best trial by the sweep's metric."""
    from reconlab.sweep.runner import best_result

    groups: dict[tuple, list] = {}
    for r in _finished(grid):
        cfg = DeepDecoderTrialConfig(**{k: v for k, v in r.config.items() if k in _FIELDS})
        groups.setdefault((cfg.image, cfg.method, float(cfg.sigma)), []).append((r, cfg))
    rows = []
    for (image, method, sigma), members in sorted(groups.items()):
        b = best_result([r for r, _ in members], spec.metric, spec.mode)
        cfg = next(c for r, c in members if r is b)
        m = b.metrics
        rows.append({"image": image, "method": method, "sigma": sigma, "trials": len(members),
                     "stopping": cfg.stopping,
                     **{k: m.get(k, "–") for k in ("psnr_best_fit", "psnr_oracle", "psnr_stop", "stop_gap",
                                                   "psnr_wmv", "psnr_final", "psnr_ema", "compression_factor")},
                     "k": cfg.k if method == "decoder" else "–", "lr": cfg.lr, "iterations": cfg.iterations,
                     "crop": cfg.crop or "full", "paper (512², 1,900 its)": PAPER.get((image, method, sigma), "–")})
    return rows


RULES = {"heldout": ("held-out pixels", "stop_gap"), "wmv": ("ES-WMV", "wmv_gap")}


def findings(grid) -> list[str]:
    """The issue's figure for each no-reference stopping rule, over every
    finished fit that ran it: a worst case over images, not an average; and
    the two rules compared on the fits that ran both (paired)."""
    from reconlab.stats import paired_interval

    done = _finished(grid)
    out = []
    for rule, (label, gap_key) in RULES.items():
        gaps = [(r.metrics[gap_key], r.config.get("image")) for r in done
                if isinstance(r.metrics.get(gap_key), float)
                and (rule == "wmv" or r.config.get("stopping", "wmv") == rule)]
        if not gaps:
            continue
        worst, image = max(gaps)
        verdict = "HOLDS" if worst <= STOP_GOAL_DB else "DOES NOT HOLD"
        out.append(f"the no-reference stopping rule ({label}) lands within {STOP_GOAL_DB:g} dB of the oracle best "
                   f"iterate on every fit: {verdict} (worst gap {worst:.2f} dB on {image}, {len(gaps)} fits, "
                   f"{len({i for _, i in gaps})} images)")
    both = [r for r in done if r.config.get("stopping", "wmv") == "heldout" and "psnr_wmv" in r.metrics]
    if both:
        ci = paired_interval([r.metrics["psnr_stop"] for r in both], [r.metrics["psnr_wmv"] for r in both])
        out.append(f"held-out pixels pick a better iterate than ES-WMV on the same fits: {ci.verdict()} "
                   f"(PSNR difference {ci} dB)")
    return out


def compression_rows(grid) -> list[dict]:
    """``sigma: 0`` deep-decoder fits: PSNR against the compression factor,
    beside wavelet thresholding that keeps as many coefficients as the
    decoder has weights and JPEG in as many bytes as its float32 weights."""
    from reconlab.metrics import psnr
    from reconlab.studies.deep_decoder.trial import clean_image
    from reconlab.untrained.compression import jpeg_at_bytes, wavelet_threshold

    rows = []
    for r in _finished(grid):
        cfg = DeepDecoderTrialConfig(**{k: v for k, v in r.config.items() if k in _FIELDS})
        if cfg.sigma != 0 or cfg.method != "decoder":
            continue
        clean = clean_image(cfg)[0]  # (3, h, w)
        n = int(r.metrics["num_parameters"])
        wav = wavelet_threshold(clean, n // clean.shape[0])
        jpg = jpeg_at_bytes(clean, n * BYTES_PER_WEIGHT)
        rows.append({"image": cfg.image, "k": cfg.k, "depth": cfg.depth, "weights": n,
                     "compression_factor": r.metrics["compression_factor"],
                     "deep decoder": r.metrics["psnr_best_fit"],
                     "wavelet (same coefficients)": psnr(wav[None], clean[None]).item(),
                     "JPEG (same bytes)": psnr(jpg.image[None], clean[None]).item(), "jpeg_quality": jpg.quality})
    return sorted(rows, key=lambda row: (row["image"], -row["compression_factor"]))


COMPRESSION_COLUMNS = ["image", "k", "depth", "weights", "compression_factor", "deep decoder",
                       "wavelet (same coefficients)", "JPEG (same bytes)", "jpeg_quality"]


def rate_distortion_png(rows: list[dict]) -> bytes:
    """PSNR against the compression factor, a line per method and image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for image in sorted({r["image"] for r in rows}):
        rs = sorted((r for r in rows if r["image"] == image), key=lambda r: r["compression_factor"])
        for method, style in (("deep decoder", "o-"), ("wavelet (same coefficients)", "s--"),
                              ("JPEG (same bytes)", "^:")):
            ax.plot([r["compression_factor"] for r in rs], [r[method] for r in rs], style, label=f"{image}: {method}")
    ax.set_xscale("log")
    ax.set_xlabel("compression factor (pixels x channels / weights)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    from reconlab.tracking import figure_png

    return figure_png(fig)


def finish_parent(parent, out: dict) -> None:
    """The sweep run's results, through the spool (``parent``: a ``spool.ParentLog``); the engine logs the
    trial counts and ends it."""
    from reconlab.sweep.runner import log_table

    log_table(parent, out["rows"], COLUMNS, out["findings"], "summary")
    if out["compression"]:
        log_table(parent, out["compression"], COMPRESSION_COLUMNS,
                  [f"JPEG gets {BYTES_PER_WEIGHT} bytes per decoder weight (float32)"], "compression")
        parent.log_bytes(rate_distortion_png(out["compression"]), "compression.png")
    metrics = {f"best_psnr_best_fit.{row['image']}.{row['method']}.{row['sigma']:g}": row["psnr_best_fit"]
               for row in out["rows"]}
    if metrics:
        parent.log_batch(metrics=metrics)


def summary(job, grid) -> None:
    """The per-image table, the compression table and the findings."""
    from reconlab.sweep.runner import markdown_table

    out, spec = job.out, job.spec
    print(f"\nUntrained networks '{spec.name}' ({spec.source}): best {spec.metric} per image and method\n")
    print(markdown_table(out["rows"], COLUMNS))
    if out["compression"]:
        print("\nCompression (sigma 0: the decoder fits the clean image; its weights are the code)\n")
        print(markdown_table(out["compression"], COMPRESSION_COLUMNS))
    print()
    for f in out["findings"]:
        print(f"- {f}")


def _fields() -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(DeepDecoderTrialConfig)}


_FIELDS = _fields()


STUDY = Study(
    name="deep_decoder", title="Untrained networks: deep decoder and deep image prior",
    research="Heckel & Hand; Ulyanov et al.", command="python jobs/deep_decoder_sweep.py", description=__doc__,
    search_space=os.path.normpath(DEFAULT_SPACE), config=DeepDecoderTrialConfig, metrics=METRICS,
    setup=setup, finish=finish, summary=summary, trial_files=artifacts_of, max_t=max_t)
