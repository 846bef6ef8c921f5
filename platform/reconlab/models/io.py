"""A model on disk: ``model.json`` (builder, kwargs, training spec) plus
``state_dict.pt``, loaded with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import dataclasses
import json
import os

import torch


def save_model_dir(path: str, model, spec) -> None:
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, os.path.join(path, "state_dict.pt"))
    with open(os.path.join(path, "model.json"), "w") as f:
        json.dump({"builder": spec.builder, "kwargs": spec.model_kwargs(), "spec": dataclasses.asdict(spec)}, f)


def load_model_dir(path: str, device: str = "cpu"):
    """Rebuild a model from ``model.json`` + ``state_dict.pt`` (weights only)."""
    from reconlab.models import build

    with open(os.path.join(path, "model.json")) as f:
        meta = json.load(f)
    model = build(meta["builder"], **meta["kwargs"])
    state = torch.load(os.path.join(path, "state_dict.pt"), map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


_SHARED: dict = {}


def share_model(shared: dict, params: dict, key: str, found: tuple, digest: str) -> None:
    """Hand a trained model to a sweep's trials: ``shared["models"][key]``
    and its digest (what ``shared_model`` builds from), and its MLflow URI as
    the sweep run's ``model_uri.<key>`` param. ``found`` is (meta, state
    dict, run id), as ``training.logged.ensure_model`` returns it."""
    meta, state, run_id = found
    shared.setdefault("models", {})[key] = (meta, state)
    shared.setdefault("digests", {})[key] = digest
    params[f"model_uri.{key.replace(':', '.')}"] = f"runs:/{run_id}/model"


def shared_model(shared: dict, key: str, device: str):
    """The model ``shared["models"][key]`` ((meta, state dict), as a sweep
    hands them to its trials) built once per worker process (actors are
    reused), keyed by its digest; frozen and in eval mode."""
    from reconlab.models import build

    k = (key, shared["digests"][key], str(device))
    if k not in _SHARED:
        meta, state = shared["models"][key]
        m = build(meta["builder"], **meta["kwargs"])
        m.load_state_dict(state)
        for p in m.parameters():
            p.requires_grad_(False)
        _SHARED[k] = m.to(device).eval()
    return _SHARED[k]
