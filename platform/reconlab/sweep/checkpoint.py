"""A trial's per-image results as its Tune checkpoint: what the study's
tables and paired intervals are computed from once the sweep ends, and its
files rendered from (``Study.trial_files``)."""

from __future__ import annotations

import os
import tempfile

RESULT = "result.pt"


def report_result(metrics: dict, result: dict | None = None) -> None:
    """``tune.report`` the metrics; with ``result`` (tensors, lists, numbers),
    that as the report's checkpoint."""
    import torch
    from ray import tune

    if result is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(result, os.path.join(tmp, RESULT))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def load_result(path: str) -> dict:
    """The result a checkpoint directory holds (tensors only: ``weights_only``)."""
    import torch

    return torch.load(os.path.join(path, RESULT), weights_only=True)
