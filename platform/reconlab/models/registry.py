"""Trained models in MLflow's Model Registry, without pickle.

Every model a job trains through ``training.logged`` is, besides its
weights-only ``model/`` directory (what reconlab itself loads), an MLflow
PyTorch model saved as a ``torch.export`` program (``serialization_format=
"pt2"``: no pickle anywhere, so ``mlflow.pytorch.load_model`` runs no
stored code), with a signature and an input example, registered as
``reconlab-<family>-<variant>`` (e.g. ``reconlab-classifier-sgd``). Each
version carries the spec digest, the data fingerprint and the training run
as tags: reuse-by-spec looks there first.

    mlflow.pytorch.load_model("models:/reconlab-classifier-sgd/1")(images)  # logits
"""

from __future__ import annotations

import re
import threading

import torch

from reconlab import tracking

TAG_RUN = "reconlab.run_id"
FLAVOR_PATH = "mlflow_model"  # the logged model's name (``model/`` holds reconlab's own files)
# torch.export keeps process-wide state: two exports at once (ensure_models
# closes its rosters' runs in threads) fail with "ProxyTorchDispatchMode slot
# already occupied" or "_EXPORT_MODULE_HIERARCHY must not be None"
_EXPORT = threading.Lock()


def registered_name(family: str, variant: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"reconlab-{family}-{variant}")


def register(c, run_id: str, model: torch.nn.Module, example: torch.Tensor, *, family: str, variant: str,
             tags: dict[str, str]) -> str:
    """Log ``model`` to the run as a pt2 MLflow model (signature and input
    example from ``example``, a batch of at least two inputs so that the
    exported program keeps the batch dimension free), register it, tag the
    version; returns its ``models:/name/version`` URI."""
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    model = model.cpu().eval()
    x = example[:2].detach().cpu().float()
    with torch.no_grad():
        y = model(x)
    y = y[0] if isinstance(y, (tuple, list)) else y
    name = registered_name(family, variant)
    mlflow.set_tracking_uri(c.tracking_uri)  # the fluent calls below go to this client's store
    with _EXPORT, mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model, name=FLAVOR_PATH, serialization_format="pt2", input_example=x.numpy(),
            signature=infer_signature(x.numpy(), y.numpy()), registered_model_name=name,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],  # not inferred: seconds saved
            await_registration_for=60)
    version = str(info.registered_model_version)
    for k, v in {**tags, TAG_RUN: run_id}.items():
        c.set_model_version_tag(name, version, k, v)
    return f"models:/{name}/{version}"


def find(c, exp_id: str, family: str, variant: str, tags: dict[str, str]) -> str | None:
    """The training run of the newest registered version of this model whose
    tags match ``tags`` (spec digest, data fingerprint), FINISHED and in the
    experiment ``exp_id``; None if there is none (or no registry)."""
    from mlflow.exceptions import MlflowException

    name = registered_name(family, variant)
    try:
        versions = c.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for v in sorted(versions, key=lambda v: -int(v.version)):
        if any(v.tags.get(k) != val for k, val in tags.items()) or TAG_RUN not in v.tags:
            continue
        try:
            run = c.get_run(v.tags[TAG_RUN])
        except MlflowException:
            continue
        if run.info.experiment_id == exp_id and run.info.status == "FINISHED":
            return run.info.run_id
    return None


def register_logged(c, run_id: str, model_dir: str, example, *, family: str, variant: str,
                    tags: dict[str, str]) -> str | None:
    """``register`` the model in ``model_dir`` (reconlab's weights-only
    files); a model that cannot be exported is a warning and a tag on its
    run (``reconlab.registry_error``), never a failed fit."""
    from reconlab.models.io import load_model_dir

    try:
        uri = register(c, run_id, load_model_dir(model_dir), example, family=family, variant=variant, tags=tags)
    except Exception as e:  # export or registry refused: the weights are logged all the same
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        tracking.announce(f"{family} '{variant}' not registered in the Model Registry: {msg}")
        c.set_tag(run_id, "reconlab.registry_error", msg)
        return None
    c.set_tag(run_id, "reconlab.registered_model", uri)
    return uri
