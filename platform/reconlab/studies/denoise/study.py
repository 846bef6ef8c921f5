"""The Noise2Noise study (the adversarial-denoising report, Lehtinen et al.
2018): denoisers for three noise models trained by Ray Train inside Ray
Tune + Optuna trials, noisy -> noisy against noisy -> clean, the annealed L0
against L2 on impulse noise, and a denoiser defended by PGD adversarial
training against the undefended one, every comparison paired on the same
noisy test images."""

from __future__ import annotations

import dataclasses
import functools
import os

from reconlab.errors import InputError
from reconlab.studies.denoise.trial import METRICS, DenoiseTrialConfig, artifacts_of
from reconlab.sweep.study import Study, train_flags

DEFAULT_SPACE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "search_spaces", "denoise.yaml")
# the goals: PSNR gain over the noisy input (dB) at the evaluation setting
GAIN_GOALS = {"gaussian": 9.0, "poisson": 6.0}
N2N_VS_N2C_DB = 0.2  # noisy targets land within this of clean targets
L0_VS_L2_DB = 1.0  # impulse: the annealed L0 beats L2 by this
DEFENCE_SHARE = 1 / 3  # the defended model loses at most this share of the undefended model's PGD loss ...
DEFENCE_CLEAN_DB = 0.5  # ... for at most this much clean PSNR
# Noise2Noise (full-size images, sigma = 25): the paper's anchors
PAPER = "N2N paper, U-Net, Gaussian sigma = 25: Kodak 32.38 dB, BSD300 31.01 dB (full-size photos; ours: 32x32 patches)"


def arms_of(spec) -> list[str]:
    if "arm" in spec.search:
        if spec.search["arm"]["type"] != "choice":
            raise InputError("arm must be fixed or a 'choice'", source=spec.source, key="search.arm",
                             value=spec.search["arm"])
        return list(spec.search["arm"]["values"])
    return [spec.fixed.get("arm", DenoiseTrialConfig.arm)]


def check_data(ds, spec, levels: int) -> None:
    """The images fit the largest U-Net of the sweep (``levels``) and have 1 or 3 channels."""
    c, h, w = ds.x_train.shape[1:]
    if h % 2**levels or w % 2**levels:
        raise InputError(f"{h}x{w} images do not fit an N2N U-Net of {levels} levels (need multiples of "
                         f"{2**levels})", source=spec.source, key="levels", value=levels)
    if c not in (1, 3):
        raise InputError("needs 1- or 3-channel images", source=spec.source, key="dataset",
                         value=f"{ds.name} {(c, h, w)}")


def check(job) -> None:
    """--num-workers as a fixed trial value, the arms, and the data against the
    largest U-Net, before Ray starts; the trials' channels come from the data."""
    from reconlab.sweep.runner import fix_num_workers

    job.spec = fix_num_workers(job.args, job.spec)
    job.out["arms"] = arms_of(job.spec)
    ds = job.load_data()
    check_data(ds, job.spec, job.largest("levels"))
    job.spec = dataclasses.replace(job.spec, fixed={**job.spec.fixed, "channels": int(ds.x_train.shape[1])})


def setup(job):
    """Each trial trains its own denoiser with Ray Train: the trials share the
    dataset's name (each loads it) and the seed of the noisy test images."""
    from ray import tune

    from reconlab.studies.denoise.trial import tune_trainable

    shared = {"dataset": job.data.name, "data_root": job.args.data_root, "storage_dir": job.storage_dir,
              "eval_seed": job.spec.seed}
    return tune.with_parameters(tune_trainable, shared=shared), {"test_images": len(job.data.x_test)}


def finish(job, grid, parent) -> None:
    job.out.update(analyse(grid, job.spec, job.out["arms"]))
    finish_parent(parent, job.out)


def max_concurrent(job) -> int:
    """Trials at once: as many as the largest trial's Ray Train workers allow."""
    from reconlab.sweep.runner import train_concurrency

    return train_concurrency(job.spec, DenoiseTrialConfig)


def best_per_arm(grid, spec) -> dict:
    """arm -> the trial with the best objective (trials that finished every epoch)."""
    from reconlab.sweep.runner import best_result, finite

    groups: dict[str, list] = {}
    for r in grid:
        if r.error is None and r.metrics and finite(r.metrics.get(spec.metric)) and "pgd_psnr_4" in r.metrics:
            groups.setdefault(r.config.get("arm"), []).append(r)
    return {a: best_result(rs, spec.metric, spec.mode) for a, rs in groups.items()}


ROW_COLUMNS = ["arm", "trials", "test_noisy_psnr", "test_psnr", "psnr_gain", "test_ssim", "pgd_psnr_2", "pgd_psnr_4",
               "pgd_psnr_8", "lr", "adv_eps"]


def analyse(grid, spec, arms: list[str]) -> dict:
    """The table of the best trial per arm and the paired findings (per-image
    scores from each best trial's last checkpoint; every trial denoised the
    same seeded noisy test images)."""
    from reconlab.studies.denoise.trial import load_result, parse_arm

    best = best_per_arm(grid, spec)
    results = {a: load_result(r.metrics) for a, r in best.items()}
    results = {a: res for a, res in results.items() if res is not None}
    counts: dict[str, int] = {}
    for r in grid:
        counts[r.config.get("arm")] = counts.get(r.config.get("arm"), 0) + 1
    rows = []
    for a in [a for a in arms if a in best]:
        m, c = best[a].metrics, best[a].config
        rows.append({"arm": a, "trials": counts.get(a, 0), **{k: m.get(k, "–") for k in ROW_COLUMNS[2:9]},
                     "lr": c.get("lr", "–"), "adv_eps": (f"{c.get('adv_eps') * 255:.2f}/255" if parse_arm(a)[3]
                                                          else "–")})
    return {"rows": rows, "findings": findings(results), "results": results,
            "best": {a: dict(r.metrics) for a, r in best.items()}}


def findings(results: dict) -> list[str]:
    """The issue's figures, each from a paired interval over the test images."""
    from reconlab.stats import paired_interval
    from reconlab.studies.denoise.trial import parse_arm

    out = []

    def per(a, k="psnr"):
        return results[a]["per_image"][k].tolist()

    for a, res in results.items():
        noise, loss, target, defended = parse_arm(a)
        goal = GAIN_GOALS.get(noise)
        if goal is not None and not defended:
            ci = paired_interval(per(a), per(a, "noisy_psnr"))
            out.append(f"{a}: denoised - noisy PSNR >= {goal:g} dB: {ci.verdict(goal)} ({ci} dB)")
    for a in results:
        noise, loss, target, defended = parse_arm(a)
        twin = f"{noise}/{loss}/clean"
        if target == "noisy" and not defended and twin in results:
            ci = paired_interval(per(a), per(twin))
            out.append(f"{noise}/{loss}: noisy targets land within {N2N_VS_N2C_DB:g} dB of clean targets "
                       f"(the Noise2Noise claim; noisy - clean >= -{N2N_VS_N2C_DB:g}): "
                       f"{ci.verdict(-N2N_VS_N2C_DB)} ({ci} dB)")
        l2 = f"{noise}/l2/{target}"
        if loss == "l0" and not defended and l2 in results:
            ci = paired_interval(per(a), per(l2))
            out.append(f"{noise}/{target}: the annealed L0 beats L2 by >= {L0_VS_L2_DB:g} dB: "
                       f"{ci.verdict(L0_VS_L2_DB)} ({ci} dB)")
        plain = f"{noise}/{loss}/{target}"
        if defended and plain in results:
            out += defence_lines(a, results[a], plain, results[plain])
    return out


def defence_lines(arm: str, defended: dict, plain_arm: str, plain: dict) -> list[str]:
    """The defended denoiser against the undefended one at eps = 4/255: its
    PGD loss (clean - attacked PSNR, per image) is at most a third of the
    undefended model's, and its clean PSNR at most 0.5 dB lower."""
    from reconlab.stats import paired_interval

    def drop(res):
        return (res["per_image"]["psnr"] - res["pgd"]["4"]).tolist()

    d_def, d_plain = drop(defended), drop(plain)
    ci = paired_interval([p * DEFENCE_SHARE for p in d_plain], d_def)
    clean = paired_interval(defended["per_image"]["psnr"].tolist(), plain["per_image"]["psnr"].tolist())
    mean = sum(d_def) / len(d_def), sum(d_plain) / len(d_plain)
    return [f"{arm} at eps 4/255: loses <= a third of the PSNR {plain_arm} loses to PGD "
            f"({mean[0]:.2f} vs {mean[1]:.2f} dB; a third of the undefended loss - the defended loss): "
            f"{ci.verdict(0)} ({ci} dB)",
            f"{arm}: clean PSNR within {DEFENCE_CLEAN_DB:g} dB of {plain_arm} (defended - undefended >= "
            f"-{DEFENCE_CLEAN_DB:g}): {clean.verdict(-DEFENCE_CLEAN_DB)} ({clean} dB)"]


def pgd_curves_png(best: dict) -> bytes:
    """PSNR of the denoised output against the PGD budget, a line per arm (eps 0: no attack)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for arm, m in best.items():
        eps = [0, 2, 4, 8]
        ax.plot(eps, [m["test_psnr"]] + [m[f"pgd_psnr_{e}"] for e in eps[1:]], "o-", label=arm)
    ax.set_xlabel("PGD budget eps (x 1/255, L-inf)")
    ax.set_ylabel("denoised PSNR (dB)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Denoisers under PGD (maximising the error against the clean image)")
    from reconlab.tracking import figure_png

    return figure_png(fig)


def finish_parent(parent, out: dict) -> None:
    from reconlab.studies.denoise.trial import files_of
    from reconlab.sweep.runner import log_table

    log_table(parent, out["rows"], ROW_COLUMNS, out["findings"] + [PAPER], "denoise_table")
    if out["best"]:
        parent.log_bytes(pgd_curves_png(out["best"]), "pgd_psnr_vs_eps.png")
    for arm, res in out["results"].items():
        name = arm.replace("/", "_")
        for f, data in files_of(res).items():
            parent.log_bytes(data, f"best_{name}/{f}")
    if out["best"]:
        parent.log_batch(metrics={f"best_test_psnr.{a.replace('/', '_')}": m["test_psnr"]
                                  for a, m in out["best"].items()})


def summary(job, grid) -> None:
    from reconlab.sweep.runner import markdown_table

    out, ds = job.out, job.data
    print(f"\nDenoisers on '{ds.name}' ({len(ds.x_test)} test images), best trial per arm (PSNR dB):\n")
    print(markdown_table(out["rows"], ROW_COLUMNS))
    print()
    for line in out["findings"] + [PAPER]:
        print(f"- {line}")


STUDY = Study(
    name="denoise", title="Noise2Noise denoisers", research="the adversarial-denoising report and Lehtinen et al. 2018",
    command="python jobs/denoise_sweep.py", description=__doc__,
    search_space=os.path.normpath(DEFAULT_SPACE), config=DenoiseTrialConfig, metrics=METRICS,
    flags=functools.partial(train_flags, per="denoiser", retrain=False), check=check, setup=setup, finish=finish,
    summary=summary, trial_files=artifacts_of, max_concurrent=max_concurrent)
