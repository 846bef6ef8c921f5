"""The prototype sweep's trial: one classifier with a hyperspherical or
hyperbolic prototype head (``models.prototypes``), trained by Ray Train from
inside a Ray Tune function (the XOR trial's pattern). Every report carries
test accuracy and macro precision / recall / F1 (the thesis's Tables
4.1/4.2) and the placed prototypes' largest pairwise cosine beside the best
possible one; the last checkpoint holds the model."""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

METRICS = ("f1", "precision", "recall", "test_acc", "max_cos", "max_cos_gap", "train_loss")


@dataclasses.dataclass(frozen=True)
class PrototypeTrialConfig:
    geometry: Literal["sphere", "hyperbolic"] = "sphere"
    dim: int = 3  # prototype (output) dimensions
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 1e-3
    epochs: int = 12
    batch_size: int = 64
    width: int = 16
    num_workers: int = 1  # Ray Train workers
    cpus_per_worker: int = 1  # CPU cores (and torch threads) per worker
    seed: int = 0  # the training seed and the placement seed: seeds vary both

    def __post_init__(self):
        if self.dim < 2:
            raise ValueError("dim must be >= 2 (prototypes on a circle at least)")
        if self.num_workers < 1 or self.cpus_per_worker < 1:
            raise ValueError("num_workers and cpus_per_worker must be >= 1")
        self.train_spec()  # raises ValueError on the rest

    def train_spec(self):
        from reconlab.training.classifier import TrainSpec

        return TrainSpec(builder="classifier_prototype", width=self.width, optimizer=self.optimizer, lr=self.lr,
                         epochs=self.epochs, batch_size=self.batch_size, seed=self.seed, geometry=self.geometry,
                         proto_dim=self.dim, placement_seed=self.seed)


def config_of(config: dict) -> PrototypeTrialConfig:
    return PrototypeTrialConfig(**{k: v for k, v in config.items()
                                   if k in {f.name for f in dataclasses.fields(PrototypeTrialConfig)}})


def tune_trainable(config: dict, shared: dict) -> None:
    """Ray Tune function trainable: Ray Train fits the classifier, each
    report reaches Tune through ``TuneReportCallback``."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from reconlab.training.classifier import fit_classifier

    cfg = config_of(config)
    trial_id = tune.get_context().get_trial_id()
    result = fit_classifier(cfg.train_spec(), dataset=shared["dataset"], data_root=shared.get("data_root"),
                            num_workers=cfg.num_workers, storage_path=os.path.join(shared["storage_dir"], "train"),
                            name=f"prototypes-{trial_id}", callbacks=[TuneReportCallback()],
                            threads=cfg.cpus_per_worker, cpus_per_worker=cfg.cpus_per_worker)
    if result.error is not None:
        raise result.error


def artifacts_of(ref: dict) -> dict[str, bytes]:
    """The model files of a finished trial's last Train checkpoint."""
    from reconlab.training.launch import checkpoint_files

    return checkpoint_files(ref.get("last_result"))
