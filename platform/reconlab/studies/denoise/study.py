"""The Noise2Noise study (the adversarial-denoising report, Lehtinen et al.
2018): denoisers for three noise models trained by Ray Train inside Ray
Tune + Optuna trials, noisy -> noisy against noisy -> clean, the annealed L0
against L2 on impulse noise, and a denoiser defended by PGD adversarial
training against the undefended one, every comparison paired on the same
noisy test images."""

from __future__ import annotations

import dataclasses
import os
import time

from reconlab import tracking
from reconlab.cli import job_parser
from reconlab.errors import InputError

DEFAULT_SPACE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "search_spaces", "denoise.yaml")
# the goals: PSNR gain over the noisy input (dB) at the evaluation setting
GAIN_GOALS = {"gaussian": 9.0, "poisson": 6.0}
N2N_VS_N2C_DB = 0.2  # noisy targets land within this of clean targets
L0_VS_L2_DB = 1.0  # impulse: the annealed L0 beats L2 by this
DEFENCE_SHARE = 1 / 3  # the defended model loses at most this share of the undefended model's PGD loss ...
DEFENCE_CLEAN_DB = 0.5  # ... for at most this much clean PSNR
# Noise2Noise (full-size images, sigma = 25): the paper's anchors
PAPER = "N2N paper, U-Net, Gaussian sigma = 25: Kodak 32.38 dB, BSD300 31.01 dB (full-size photos; ours: 32x32 patches)"


def parse(argv):
    p = job_parser("denoise_sweep.py", __doc__, os.path.normpath(DEFAULT_SPACE))
    p.add_argument("--num-workers", type=int, help="Ray Train workers per denoiser (overrides the YAML)")
    return p.parse_args(argv)


def arms_of(spec) -> list[str]:
    from reconlab.studies.denoise.trial import DenoiseTrialConfig

    if "arm" in spec.search:
        if spec.search["arm"]["type"] != "choice":
            raise InputError("arm must be fixed or a 'choice'", source=spec.source, key="search.arm",
                             value=spec.search["arm"])
        return list(spec.search["arm"]["values"])
    return [spec.fixed.get("arm", DenoiseTrialConfig.arm)]


def check_data(ds, spec) -> None:
    from reconlab.studies.denoise.trial import DenoiseTrialConfig

    levels = spec.search["levels"]["high"] if "levels" in spec.search else spec.fixed.get(
        "levels", DenoiseTrialConfig.levels)
    c, h, w = ds.x_train.shape[1:]
    if h % 2**levels or w % 2**levels:
        raise InputError(f"{h}x{w} images do not fit an N2N U-Net of {levels} levels (need multiples of "
                         f"{2**levels})", source=spec.source, key="levels", value=levels)
    if c not in (1, 3):
        raise InputError("needs 1- or 3-channel images", source=spec.source, key="dataset",
                         value=f"{ds.name} {(c, h, w)}")


def main(argv=None) -> int:
    t_start = time.time()
    args = parse(argv)
    from reconlab.data import load_dataset
    from reconlab.studies.denoise.trial import METRICS, DenoiseTrialConfig
    from reconlab.sweep.runner import fix_num_workers, prepare
    from reconlab.sweep.spec import load_spec

    spec, storage_dir, uri = prepare(args, load_spec(args.search_space, DenoiseTrialConfig, smoke=args.smoke_test,
                                                     metrics=METRICS))
    spec = fix_num_workers(args, spec)
    arms = arms_of(spec)
    ds = load_dataset(spec.dataset, args.data_root)
    check_data(ds, spec)
    spec = dataclasses.replace(spec, fixed={**spec.fixed, "channels": int(ds.x_train.shape[1])})
    experiment = args.experiment or ("reconlab-denoise-smoke" if args.smoke_test else "reconlab-denoise")

    from reconlab.sweep.runner import print_ui_hint, sweep_job, train_concurrency

    def setup(c, exp_id):
        from ray import tune

        from reconlab.studies.denoise.trial import tune_trainable

        shared = {"dataset": ds.name, "data_root": args.data_root, "storage_dir": storage_dir, "eval_seed": spec.seed}
        return tune.with_parameters(tune_trainable, shared=shared), {
            "dataset": ds.name, "data_fingerprint": ds.fingerprint(), "smoke_test": args.smoke_test,
            "test_images": len(ds.x_test)}

    out = {}

    def finish(grid, parent):
        out.update(analyse(grid, spec, arms))
        finish_parent(parent, out, grid)

    grid, sweep = sweep_job(args, spec, uri=uri, storage_dir=storage_dir, experiment=experiment, setup=setup,
                            metric_keys=METRICS, max_t=10**6, artifacts="denoise", finish=finish,
                            max_concurrent=lambda: train_concurrency(spec, DenoiseTrialConfig))
    print_report(out, ds, len(grid), uri, experiment, time.time() - t_start)
    print_ui_hint(uri, sweep.exp_id)
    return 1 if sweep.undelivered else 0


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


def finish_parent(parent, out: dict, grid) -> None:
    from reconlab.studies.denoise.trial import files_of
    from reconlab.sweep.runner import log_table

    log_table(parent, out["rows"], ROW_COLUMNS, out["findings"] + [PAPER], "denoise_table")
    if out["best"]:
        parent.log_bytes(pgd_curves_png(out["best"]), "pgd_psnr_vs_eps.png")
    for arm, res in out["results"].items():
        name = arm.replace("/", "_")
        for f, data in files_of(res).items():
            parent.log_bytes(data, f"best_{name}/{f}")
    metrics = {f"best_test_psnr.{a.replace('/', '_')}": m["test_psnr"] for a, m in out["best"].items()}
    parent.log_batch(metrics={**metrics, "trials": len(grid), "trials_failed": len(grid.errors)})
    parent.set_terminated("FINISHED")


def print_report(out: dict, ds, n_trials: int, uri: str, experiment: str, seconds: float) -> None:
    from reconlab.sweep.runner import markdown_table

    print(f"\nDenoisers on '{ds.name}' ({len(ds.x_test)} test images), best trial per arm (PSNR dB):\n")
    print(markdown_table(out["rows"], ROW_COLUMNS))
    print()
    for line in out["findings"] + [PAPER]:
        print(f"- {line}")
    print(f"\n{n_trials} trials in {seconds:.0f}s; MLflow experiment '{experiment}' at {tracking.redact(uri)}")
