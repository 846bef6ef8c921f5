"""Launching a Ray Train run: what every model family's ``fit_*`` shares."""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch


def fit_torch(loop: Callable[[dict], None], spec, *, dataset: str, data_root: str | None = None,
              num_workers: int = 1, use_gpu: bool | None = None, storage_path: str, name: str,
              callbacks: list | None = None, threads: int | None = None):
    """Run ``loop`` on ``num_workers`` Ray Train workers (DDP; GPUs when
    present) with {"spec", "dataset", "data_root", "threads"} as its config;
    returns the Ray Train Result."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if use_gpu is None:
        use_gpu = torch.cuda.is_available()
    trainer = TorchTrainer(
        loop,
        train_loop_config={"spec": dataclasses.asdict(spec), "dataset": dataset, "data_root": data_root,
                           "threads": threads},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(name=name, storage_path=storage_path, callbacks=callbacks or []),
    )
    return trainer.fit()
