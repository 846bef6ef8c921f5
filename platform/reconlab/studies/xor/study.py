"""The XOR-decryption job (Hauptmann & Adler, "On the unreasonable
effectiveness of CNNs"): baselines, a Ray Tune + Optuna sweep in which every
trial trains a U-Net with Ray Train, and Table I with the paper's numbers
beside ours."""

from __future__ import annotations

import math
import os
import time

from reconlab import readme, tracking
from reconlab.errors import InputError
from reconlab.studies.xor.trial import METRICS, XorTrialConfig, artifacts_of
from reconlab.sweep.study import Study, train_flags

README_NAME = "xor-table-i"  # the block (in docs/results.md) the job fills with --readme
DEFAULT_SPACE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "search_spaces", "xor.yaml")

# Table I of the paper (STL-10, 10,000 test images): (PSNR, SSIM) without noise and with 1 % noise.
PAPER = {
    "U-Net (CTR)": {0.0: (18.0, 0.62), 0.01: (17.6, 0.57)},
    "decryption with the key (CTR)": {0.0: (math.inf, 1.00), 0.01: (-math.inf, 0.00)},
    "mean of train set": {0.0: (11.8, 0.16), 0.01: (11.8, 0.16)},
}


def flags(p) -> None:
    train_flags(p, per="U-Net", retrain=False)
    p.add_argument("--readme", metavar="FILE", help="also write Table I into FILE (e.g. docs/results.md) between its "
                   f"'<!-- reconlab:{README_NAME} -->' and '<!-- /reconlab:{README_NAME} -->' lines")


def settings(spec) -> list[tuple[str, float]]:
    """The (mode, noise) pairs the sweep covers."""
    def values(k):
        if k in spec.search:
            if spec.search[k]["type"] != "choice":
                raise InputError("mode and noise must be fixed or a 'choice' (Table I has one column per value)",
                                 source=spec.source, key=f"search.{k}", value=spec.search[k])
            return spec.search[k]["values"]
        return [spec.fixed.get(k, getattr(XorTrialConfig, k))]

    return [(m, float(n)) for m in values("mode") for n in values("noise")]


def check_data(ds, spec, depth: int) -> None:
    """RGB images whose sides fit a U-Net of ``depth`` (the sweep's largest)."""
    h, w = ds.x_train.shape[-2:]
    if ds.x_train.shape[1] != 3:
        raise InputError("needs RGB images (the XOR family encrypts 3-channel float32 pixels)", source=spec.source,
                         key="dataset", value=f"{ds.name} {tuple(ds.x_train.shape[1:])}")
    if h % 2**depth or w % 2**depth:
        raise InputError(f"{h}x{w} images do not fit a U-Net of depth {depth} (need multiples of {2**depth})",
                         source=spec.source, key="depth", value=depth)


def check(job) -> None:
    """--num-workers, the settings, the --readme file, the key and the data, before Ray starts."""
    from reconlab.operators.xor_aes import XorAES
    from reconlab.sweep.runner import fix_num_workers

    job.spec = fix_num_workers(job.args, job.spec)
    job.out["settings"] = settings(job.spec)
    if job.args.readme:
        readme.check(job.args.readme, README_NAME)
    job.out["op"] = XorAES.from_seed(job.spec.seed)  # a bad $RECONLAB_XOR_KEY fails here, before Ray
    check_data(job.load_data(), job.spec, job.largest("depth"))


def setup(job):
    """The baselines, and what every trial shares (the key and IV go
    through Ray's object store only; the sweep run logs the key's
    fingerprint, never the key)."""
    from ray import tune

    from reconlab.operators.xor_aes import KEY_ENV
    from reconlab.studies.xor.trial import tune_trainable

    ds, spec, op = job.data, job.spec, job.out["op"]
    tracking.announce(f"baselines on {len(ds.x_test)} test images: mean, decryption with the key, keystream oracle")
    job.out["base"] = baselines(ds, op, job.out["settings"], spec.seed)
    shared = {"key": op.key, "iv": op.iv, "dataset": ds.name, "data_root": job.args.data_root,
              "storage_dir": job.storage_dir, "eval_seed": spec.seed,
              "worst": {"metric": spec.metric, "mode": spec.mode}}
    return tune.with_parameters(tune_trainable, shared=shared), {
        "key_sha256": op.fingerprint, "key_source": "env" if os.environ.get(KEY_ENV) else "seed"}


def finish(job, grid, parent) -> None:
    """Table I and the findings on the sweep run, with each setting's best trial."""
    out, modes_noises = job.out, job.out["settings"]
    best = best_per_setting(grid, job.spec, modes_noises)
    oracle = best_per_setting(grid, job.spec, modes_noises, inputs="oracle")  # the moonshot, if it ran
    out["rows"], out["columns"] = table_one(out["base"], best, sorted({n for _, n in modes_noises}), oracle)
    out["verdicts"] = findings(out["base"], best)
    finish_parent(parent, out["rows"], out["columns"], out["verdicts"], best)


def summary(job, grid) -> None:
    """Table I and the findings; with --readme, Table I into its block."""
    from reconlab.sweep.runner import markdown_table

    ds, spec, args = job.data, job.spec, job.args
    rows, columns, verdicts = job.out["rows"], job.out["columns"], job.out["verdicts"]
    print(f"\nTable I, reproduced on '{ds.name}' ({len(ds.x_test)} test images; paper: STL-10, 10,000):\n")
    print(markdown_table(rows, columns))
    print()
    for v in verdicts:
        print(f"- {v}")
    if args.readme:
        # no command line: a --tracking-uri may carry credentials
        block = (f"{markdown_table(rows, columns)}\n\n<sub>Written by jobs/xor_decryption.py on "
                 f"{time.strftime('%Y-%m-%d')}: search space '{os.path.basename(spec.source)}', dataset '{ds.name}' "
                 f"({len(ds.x_test)} test images), {len(grid)} trials, sweep run {job.sweep.run_id}.</sub>")
        try:
            readme.write_block(args.readme, README_NAME, block)
        except InputError as e:  # the file changed during the run: a runtime failure, the results are in MLflow
            raise RuntimeError(f"Table I not written: {e}") from None
        print(f"Table I written into {args.readme}")


def max_concurrent(job) -> int:
    """Trials at once: what the trials' Ray Train workers need (``runner.train_concurrency``)."""
    from reconlab.sweep.runner import train_concurrency

    return train_concurrency(job.spec, XorTrialConfig)


def baselines(ds, op, modes_noises, seed: int) -> dict:
    """{(mode, noise): {method: {"test_psnr", "test_ssim"}}} on the fixed test cipherimages."""
    from reconlab.metrics import psnr, ssim
    from reconlab.operators.xor_aes import XorAES, clamp_finite
    from reconlab.operators.xor_oracle import BayesDecoder, oracle_keystream
    from reconlab.training.xor_unet import eval_cipherimages, mean_baseline

    def score(x):
        return {"test_psnr": psnr(x, ds.x_test).mean().item(), "test_ssim": ssim(x, ds.x_test).mean().item()}

    out = {}
    mean = mean_baseline(ds.x_train, ds.x_test)
    for mode, noise in modes_noises:
        m_op = XorAES(op.key, op.iv, mode)
        c_test = eval_cipherimages(m_op, ds.x_test, noise, seed)
        rows = {"mean of train set": mean,
                f"decryption with the key ({mode.upper()})": score(clamp_finite(m_op.decrypt(c_test)))}
        if mode == "ctr":  # known plaintext: the keystream from training pairs, then a per-pixel decoder
            ks = oracle_keystream(m_op, ds.x_train, noise, seed)
            if noise == 0:
                x = clamp_finite(m_op.decrypt(c_test, keystream=ks))
            else:
                x = BayesDecoder(ks, noise, ds.x_train).decode(c_test)
            rows["keystream oracle + per-pixel Bayes (CTR)"] = score(x)
        out[(mode, noise)] = rows
    return out


def best_per_setting(grid, spec, modes_noises, inputs: str = "cipher") -> dict:
    """{(mode, noise): best Result by the sweep metric} among trials with these ``inputs``."""
    from reconlab.sweep.runner import best_result

    best = {}
    for mode, noise in modes_noises:
        cands = [r for r in grid if r.error is None and r.metrics and r.config.get("mode", "ctr") == mode
                 and float(r.config.get("noise", 0.0)) == noise and r.config.get("inputs", "cipher") == inputs
                 and isinstance(r.metrics.get(spec.metric), float)]
        if cands:
            best[(mode, noise)] = best_result(cands, spec.metric, spec.mode)
    return best


def _fmt_db(v) -> str:
    if v is None:
        return "–"
    return ("+inf" if v > 0 else "-inf") if math.isinf(v) else f"{v:.1f}"


def table_one(base: dict, best: dict, noises: list[float], oracle: dict | None = None):
    """Rows of Table I: ours for every noise level, the paper's beside."""
    methods: dict[str, dict[float, tuple]] = {}
    for label, results in (("U-Net ({})", best), ("U-Net + oracle features ({}, ours)", oracle or {})):
        for (mode, noise), r in results.items():
            methods.setdefault(label.format(mode.upper()), {})[noise] = (r.metrics["test_psnr"], r.metrics["test_ssim"])
    for (mode, noise), rows in base.items():
        for name, m in rows.items():
            methods.setdefault(name, {})[noise] = (m["test_psnr"], m["test_ssim"])
    columns = ["method"]
    for n in noises:
        columns += [f"PSNR {n:g}", f"SSIM {n:g}"]
    columns += ["paper PSNR 0", "paper SSIM 0", "paper PSNR 0.01", "paper SSIM 0.01"]
    rows = []
    for name, vals in methods.items():
        row = {"method": name}
        for n in noises:
            p, s = vals.get(n, (None, None))
            row[f"PSNR {n:g}"], row[f"SSIM {n:g}"] = _fmt_db(p), "–" if s is None else f"{s:.2f}"
        paper = PAPER.get(name, {})
        for n in (0.0, 0.01):
            p, s = paper.get(n, (None, None))
            row[f"paper PSNR {n:g}"] = _fmt_db(p) if name != "U-Net (CBC)" else "no useful result"
            row[f"paper SSIM {n:g}"] = "–" if s is None else f"{s:.2f}"
        rows.append(row)
    return rows, columns


def findings(base: dict, best: dict) -> list[str]:
    """The issue's figures, checked on this run."""
    out = []

    def unet(mode, noise):
        r = best.get((mode, noise))
        return r.metrics["test_psnr"] if r else None

    mean = next(iter(base.values()))["mean of train set"]["test_psnr"]
    noisy = sorted(n for m, n in best if m == "ctr" and n > 0)
    if unet("ctr", 0.0) is not None:
        gain = unet("ctr", 0.0) - mean
        out.append(f"U-Net beats the mean baseline by {gain:+.1f} dB without noise (paper +6.2 dB; goal >= +5): "
                   f"{'MET' if gain >= 5 else 'NOT MET'}")
        if noisy:
            cost = unet("ctr", 0.0) - unet("ctr", noisy[0])
            out.append(f"{noisy[0]:g} noise costs the U-Net {cost:.2f} dB (paper 0.4 dB; goal <= 1): "
                       f"{'MET' if cost <= 1 else 'NOT MET'}")
    for (m, n), r in sorted(best.items()):
        if m == "cbc":
            d = r.metrics["test_psnr"] - mean
            out.append(f"CBC (noise {n:g}): U-Net is {d:+.2f} dB from the mean baseline (paper: learns nothing; "
                       f"goal within 1 dB): {'MET' if abs(d) <= 1 else 'NOT MET'}")
    if ("ctr", 0.0) in base:
        p = base[("ctr", 0.0)]["keystream oracle + per-pixel Bayes (CTR)"]["test_psnr"]
        out.append(f"noise-free keystream oracle from one known pair is exact: {'MET' if math.isinf(p) else 'NOT MET'}")
    for n in noisy:
        o = base[("ctr", n)]["keystream oracle + per-pixel Bayes (CTR)"]["test_psnr"]
        out.append(f"noise {n:g}: U-Net {unet('ctr', n):.1f} dB vs the per-pixel Bayes oracle {o:.1f} dB")
    return out


def finish_parent(parent, rows, columns, verdicts, best) -> None:
    """The sweep run's results, written through the spool (``parent``: a
    ``spool.ParentLog``); the engine logs the trial counts and ends it."""
    from reconlab.sweep.runner import log_table
    from reconlab.studies.xor.trial import FIGURE, checkpoint_files

    log_table(parent, rows, columns, verdicts, "table_i")
    for (mode, noise), r in best.items():
        parent.log_batch(metrics={f"best_test_psnr.{mode}.{noise:g}": r.metrics["test_psnr"]},
                         params={f"best.{mode}.{noise:g}.{k}": v for k, v in r.config.items()})
        figure = checkpoint_files(r.metrics).get(FIGURE)
        if figure:
            parent.log_bytes(figure, f"best_{mode}_{noise:g}/{FIGURE}")


STUDY = Study(
    name="xor", title="XOR decryption with a U-Net (Table I)",
    research="Hauptmann & Adler: a U-Net inverting AES-CTR XOR encryption of images",
    command="python jobs/xor_decryption.py --num-samples 1", description=__doc__,
    search_space=os.path.normpath(DEFAULT_SPACE), config=XorTrialConfig, metrics=METRICS,
    flags=flags, check=check, setup=setup, finish=finish, summary=summary, trial_files=artifacts_of,
    max_concurrent=max_concurrent)
