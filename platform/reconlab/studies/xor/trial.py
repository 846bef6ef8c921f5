"""The XOR sweep's trial: one U-Net trained by Ray Train from inside a Ray Tune
function (the Train V2 pattern; ``Tuner(trainer)`` is gone). Every epoch's
report reaches Tune through ``TuneReportCallback``; the last checkpoint holds
the model and a figure like the paper's Fig. 1/2.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

from reconlab.training.xor_unet import FIGURE, XorTrainSpec

METRICS = ("test_psnr", "test_ssim", "psnr_gain", "train_loss", "epoch_seconds", "images_per_s")


@dataclasses.dataclass(frozen=True)
class XorTrialConfig:
    mode: Literal["ctr", "cbc"] = "ctr"
    noise: float = 0.0
    width: int = 16
    depth: int = 3
    lr: float = 2e-3
    lr_schedule: Literal["constant", "cosine"] = "constant"
    batch_size: int = 32
    epochs: int = 10
    max_train_images: int = 0
    inputs: Literal["cipher", "oracle"] = "cipher"  # oracle: the moonshot, + per-pixel Bayes features
    num_workers: int = 1  # Ray Train workers for this trial's U-Net
    cpus_per_worker: int = 1  # CPU cores (and torch threads) per worker
    seed: int = 0

    def __post_init__(self):
        self.train_spec()  # raises ValueError on bad values
        if self.num_workers < 1 or self.cpus_per_worker < 1:
            raise ValueError("num_workers and cpus_per_worker must be >= 1")

    def train_spec(self) -> XorTrainSpec:
        keys = {f.name for f in dataclasses.fields(XorTrainSpec)}
        return XorTrainSpec(**{k: v for k, v in dataclasses.asdict(self).items() if k in keys})


def tune_trainable(config: dict, shared: dict) -> None:
    """Ray Tune function trainable. ``shared`` (object store) holds the key and
    IV, so they reach the workers without entering any config or log."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from reconlab.operators.xor_aes import XorAES
    from reconlab.training.xor_unet import fit_xor_unet

    cfg = XorTrialConfig(**{k: v for k, v in config.items() if k in {f.name for f in dataclasses.fields(XorTrialConfig)}})
    op = XorAES(shared["key"], shared["iv"], cfg.mode)
    trial_id = tune.get_context().get_trial_id()
    result = fit_xor_unet(cfg.train_spec(), op, dataset=shared["dataset"], data_root=shared.get("data_root"),
                          num_workers=cfg.num_workers, use_gpu=shared.get("use_gpu"),
                          storage_path=os.path.join(shared["storage_dir"], "train"), name=f"xor-{trial_id}",
                          callbacks=[TuneReportCallback()], cpus_per_worker=cfg.cpus_per_worker,
                          eval_seed=shared.get("eval_seed", 0), worst=shared.get("worst"))
    if result.error is not None:
        raise result.error


def checkpoint_files(last_metrics: dict | None) -> dict[str, bytes]:
    """The figure and the model files from the Train checkpoint a trial
    reported last."""
    from reconlab.training.launch import MODEL_FILES
    from reconlab.training.launch import checkpoint_files as files

    return files(last_metrics, {FIGURE: FIGURE, **MODEL_FILES})


def artifacts_of(ref: dict) -> dict[str, bytes]:
    """The sweep's artifacts hook: what a finished trial logs to its MLflow
    run, from its ``spool.trial_ref``."""
    return checkpoint_files(ref.get("last_result"))
