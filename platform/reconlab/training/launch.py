"""Launching a Ray Train run: what every model family's ``fit_*`` shares."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch


def fit_torch(loop: Callable[[dict], None], spec, *, dataset: str, data_root: str | None = None,
              num_workers: int = 1, use_gpu: bool | None = None, storage_path: str, name: str,
              callbacks: list | None = None, threads: int | None = None, cpus_per_worker: int = 1,
              config: dict | None = None):
    """Run ``loop`` on ``num_workers`` Ray Train workers (DDP; GPUs when
    present), each holding ``cpus_per_worker`` CPUs, with {"spec",
    "dataset", "data_root", "threads", **config} as its config; returns the
    Ray Train Result."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if use_gpu is None:
        use_gpu = want_gpu()
    trainer = TorchTrainer(
        loop,
        train_loop_config={"spec": dataclasses.asdict(spec), "dataset": dataset, "data_root": data_root,
                           "threads": threads, **(config or {})},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(name=name, storage_path=storage_path, callbacks=callbacks or [],
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    return trainer.fit()


MODEL_FILES = {"model.json": "model/model.json", "state_dict.pt": "model/state_dict.pt"}  # save_model_dir's


def reported_checkpoint(last_metrics: dict | None) -> str | None:
    """The Ray Train checkpoint a Tune trial reported last (``TuneReportCallback``
    puts its path in the metrics); None before any."""
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

    return (last_metrics or {}).get(CHECKPOINT_PATH_KEY)


def checkpoint_files(last_metrics: dict | None, names: dict[str, str] = MODEL_FILES) -> dict[str, bytes]:
    """The files ``names`` ({file in the checkpoint: artifact name}) of the
    Train checkpoint a trial reported last, those present; by default the
    model (``model/model.json``, ``model/state_dict.pt``)."""
    import os

    from ray.train import Checkpoint

    path = reported_checkpoint(last_metrics)
    if not path:
        return {}
    out = {}
    with Checkpoint(path).as_directory() as d:
        for name, dest in names.items():
            f = os.path.join(d, name)
            if os.path.exists(f):
                with open(f, "rb") as fh:
                    out[dest] = fh.read()
    return out


def want_gpu() -> bool:
    """Whether Ray Train workers ask for a GPU each: ``RECONLAB_USE_GPU``
    (1/0) when set, else whether this process sees a GPU or the cluster has
    one. The process that launches training may be a CPU-only head node, and
    an autoscaling cluster may have no GPU worker yet: there set
    ``RECONLAB_USE_GPU=1`` (the jobs forward it to every node)."""
    import os

    forced = os.environ.get(USE_GPU_ENV, "").strip().lower()
    if forced in ("1", "true", "yes"):
        return True
    if forced in ("0", "false", "no"):
        return False
    if torch.cuda.is_available():
        return True
    import ray

    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


USE_GPU_ENV = "RECONLAB_USE_GPU"


def worker_start(config: dict, spec_cls):
    """What every Ray Train worker loop does first: (spec, rank, world,
    dataset) with the spec rebuilt from the config, the same initial weights
    on every rank (seeded), the torch thread count set and the dataset
    loaded."""
    import ray.train

    from reconlab.data import load_dataset

    spec = spec_cls(**config["spec"])
    ctx = ray.train.get_context()
    torch.manual_seed(spec.seed)
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    ds = load_dataset(config["dataset"], config.get("data_root"))
    return spec, ctx.get_world_rank(), ctx.get_world_size(), ds


def report_model(metrics: dict, model=None, spec=None) -> None:
    """``ray.train.report(metrics)``; with ``model`` (the bare model, at the
    last epoch) rank 0 attaches it and its spec (``models.save_model_dir``)
    as the run's checkpoint, which ``training.logged`` logs to MLflow."""
    import tempfile

    import ray.train

    from reconlab.models import save_model_dir

    if model is None or ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_model_dir(tmp, model, spec)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def finite_loss(loss: float, epoch: int) -> float:
    """``loss``, or FloatingPointError when it is NaN or infinite (the run fails, naming the epoch)."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"training loss is {loss} at epoch {epoch}")
    return loss


def resume(model, opt) -> int:
    """Load the run's latest Ray Train checkpoint (``state_dict.pt`` +
    ``train_state.pt``) into ``model`` and ``opt``, so a retried or resumed
    run continues instead of repeating epochs; returns the first epoch to run."""
    import os

    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return 0
    with ckpt.as_directory() as d:
        model.load_state_dict(torch.load(os.path.join(d, "state_dict.pt"), weights_only=True))
        state = torch.load(os.path.join(d, "train_state.pt"), weights_only=True)
        opt.load_state_dict(state["optimizer"])
        return int(state["epoch"]) + 1
