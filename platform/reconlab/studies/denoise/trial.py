"""The denoise sweep's trial: one Noise2Noise denoiser trained by Ray Train
(``training.n2n``) from inside a Ray Tune function, as the XOR family does.

An ``arm`` names what the study compares, ``noise/loss/target`` with an
optional ``/pgd`` (a defended denoiser: adversarial training with PGD in
the loop, its budget ``adv_eps`` searched):

    gaussian/l2/noisy     Noise2Noise, L2 (the paper's Gaussian case)
    gaussian/l2/clean     the same with clean targets (noisy -> clean)
    poisson/l1/noisy      Poisson, L1
    impulse_n2n/l0/noisy  impulse, the annealed L0 ...
    impulse_n2n/l2/noisy  ... against L2
    gaussian/l2/clean/pgd the defended denoiser

Each arm is a stratum with its own seeded TPE study. The trial's score,
``objective``, is the test PSNR, and for a defended arm the mean of the
clean and the attacked (PGD at ``adv_eps_eval``) PSNR: a defence is chosen
for both, never for clean PSNR alone (which the smallest budget would win).
"""

from __future__ import annotations

import dataclasses
import os

from reconlab.training.n2n import LOSSES, NOISES, RESULT, N2NSpec, eps_key

METRICS = ("objective", "test_psnr", "test_ssim", "test_noisy_psnr", "test_noisy_ssim", "psnr_gain", "train_loss",
           "epoch_seconds", "images_per_s", "pgd_psnr_2", "pgd_psnr_4", "pgd_psnr_8", "pgd_drop_2", "pgd_drop_4",
           "pgd_drop_8")
EVAL_EPS = 4 / 255  # the defended arm's attacked PSNR in its objective, and the figure


@dataclasses.dataclass(frozen=True)
class DenoiseTrialConfig:
    arm: str = "gaussian/l2/noisy"
    level: float = 0.0  # training noise level (N2NSpec.level; 0: the noise model's default)
    eval_level: float = 0.0
    lr: float = 1e-3
    adv_eps: float = 4 / 255  # the defence's PGD budget (``/pgd`` arms only)
    adv_steps: int = 3
    channels: int = 3  # the job sets it from the dataset
    width: int = 48
    levels: int = 5
    batch_size: int = 32
    epochs: int = 12
    epoch_images: int = 4096
    eval_images: int = 0
    attack_steps: int = 10
    num_workers: int = 1  # Ray Train workers for this trial's denoiser
    cpus_per_worker: int = 1
    seed: int = 0

    def __post_init__(self):
        parse_arm(self.arm)
        self.train_spec()  # raises ValueError on bad values
        if self.num_workers < 1 or self.cpus_per_worker < 1:
            raise ValueError("num_workers and cpus_per_worker must be >= 1")

    @property
    def defended(self) -> bool:
        return parse_arm(self.arm)[3]

    def train_spec(self) -> N2NSpec:
        noise, loss, target, defended = parse_arm(self.arm)
        eps = tuple(sorted({2 / 255, EVAL_EPS, 8 / 255}))
        return N2NSpec(noise=noise, loss=loss, target=target, level=self.level, eval_level=self.eval_level,
                       lr=self.lr, channels=self.channels, width=self.width, levels=self.levels, batch_size=self.batch_size,
                       epochs=self.epochs, epoch_images=self.epoch_images, eval_images=self.eval_images,
                       attack_steps=self.attack_steps, attack_eps=eps,
                       adv_eps=self.adv_eps if defended else 0.0, adv_steps=self.adv_steps, seed=self.seed)


def parse_arm(arm: str) -> tuple[str, str, str, bool]:
    """'noise/loss/target[/pgd]' -> (noise, loss, target, defended)."""
    parts = str(arm).split("/")
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "pgd"):
        raise ValueError(f"arm {arm!r} is not noise/loss/target[/pgd]")
    noise, loss, target = parts[:3]
    if noise not in NOISES:
        raise ValueError(f"arm {arm!r}: unknown noise {noise!r} (known: {', '.join(NOISES)})")
    if loss not in LOSSES:
        raise ValueError(f"arm {arm!r}: unknown loss {loss!r} (known: {', '.join(LOSSES)})")
    if target not in ("noisy", "clean"):
        raise ValueError(f"arm {arm!r}: unknown target {target!r} (known: noisy, clean)")
    return noise, loss, target, len(parts) == 4


def objective(metrics: dict, defended: bool) -> float:
    if defended and f"pgd_psnr_{eps_key(EVAL_EPS)}" in metrics:
        return (metrics["test_psnr"] + metrics[f"pgd_psnr_{eps_key(EVAL_EPS)}"]) / 2
    return metrics["test_psnr"]


def tune_trainable(config: dict, shared: dict) -> None:
    """Ray Tune function trainable: train with Ray Train, relay every epoch's
    report to Tune with the objective added and the checkpoint's path."""
    from ray import tune

    from reconlab.training.n2n import fit_n2n

    cfg = DenoiseTrialConfig(**{k: v for k, v in config.items()
                                if k in {f.name for f in dataclasses.fields(DenoiseTrialConfig)}})
    trial_id = tune.get_context().get_trial_id()
    result = fit_n2n(cfg.train_spec(), dataset=shared["dataset"], data_root=shared.get("data_root"),
                     num_workers=cfg.num_workers, use_gpu=shared.get("use_gpu"),
                     storage_path=os.path.join(shared["storage_dir"], "train"), name=f"denoise-{trial_id}",
                     callbacks=[_relay(cfg.defended)], cpus_per_worker=cfg.cpus_per_worker,
                     eval_seed=shared.get("eval_seed", 0))
    if result.error is not None:
        raise result.error


def _relay(defended: bool):
    """``TuneReportCallback`` with ``objective`` added to every report."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class Relay(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            for m in metrics:
                m["objective"] = objective(m, defended)
            return super().after_report(run_context, metrics, checkpoint)

    return Relay()


def load_result(last_metrics: dict | None) -> dict | None:
    """The per-image scores the last epoch stored (None if the trial never finished)."""
    import torch
    from ray.train import Checkpoint

    from reconlab.training.launch import reported_checkpoint

    path = reported_checkpoint(last_metrics)
    if not path:
        return None
    with Checkpoint(path).as_directory() as d:
        f = os.path.join(d, RESULT)
        return torch.load(f, weights_only=True) if os.path.exists(f) else None


def files_of(result: dict) -> dict[str, bytes]:
    """Examples (rows: clean, noisy, denoised) and the per-image scores as CSV."""
    from reconlab.tracking import png_bytes

    ex = result["examples"]
    per = result["per_image"]
    keys = list(per) + [f"pgd_psnr_{k}" for k in result["pgd"]]
    cols = list(per.values()) + list(result["pgd"].values())
    lines = [",".join(["image"] + keys)] + [",".join([str(i)] + [f"{c[i].item():.5g}" for c in cols])
                                            for i in range(len(cols[0]))]
    return {"examples_clean_noisy_denoised.png": png_bytes(ex.flatten(0, 1), nrow=ex.shape[1]),
            "per_image.csv": ("\n".join(lines) + "\n").encode()}


def artifacts_of(ref: dict) -> dict[str, bytes]:
    """The study's ``trial_files`` hook: the
    figure, the scores and the model files from the trial's last checkpoint."""
    from reconlab.training.launch import checkpoint_files

    out = checkpoint_files(ref.get("last_result"))
    result = load_result(ref.get("last_result"))
    if result is not None:
        out.update(files_of(result))
    return out
