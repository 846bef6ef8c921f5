"""Train-once, reuse-everywhere: each trained model is an MLflow run
(``reconlab.family``) whose artifacts ``model/model.json`` and
``model/state_dict.pt`` rebuild it. A later job with the same spec on the same
data loads the logged model instead of training again."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import torch

from reconlab import tracking
from reconlab.progress import EpochBar


def model_uri(run_id: str) -> str:
    return f"runs:/{run_id}/model"


def load_logged_model(c, run_id: str):
    """(meta, state_dict) of a logged model; weights only, nothing unpickled."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        d = c.download_artifacts(run_id, "model", tmp)
        with open(os.path.join(d, "model.json")) as f:
            meta = json.load(f)
        state = torch.load(os.path.join(d, "state_dict.pt"), map_location="cpu", weights_only=True)
    return meta, state


def ensure_model(c, exp_id: str, variant: str, spec, *, dataset, data_root, uri: str, storage_dir: str,
                      num_workers: int = 1, use_gpu: bool | None = None, retrain: bool = False, log=print,
                      family: str = "classifier", fit=None):
    """Return (meta, state_dict, run_id) for ``variant``, training it with Ray
    Train only if no finished run with the same spec and data exists.
    ``family``/``fit``: another trained model (``fit(spec, dataset=...,
    ...)`` returns a Ray Train Result, as ``fit_classifier`` does), e.g. the
    CT study's denoiser (``training.denoiser.fit_denoiser``)."""
    if fit is None:
        from reconlab.training.classifier import fit_classifier as fit

    tags = {tracking.TAG_FAMILY: family, tracking.TAG_VARIANT: variant, tracking.TAG_SPEC: spec.digest(),
            tracking.TAG_DATA: dataset.fingerprint()}
    if not retrain:
        for run in tracking.find_runs(c, exp_id, tags, status="FINISHED", max_results=5):
            try:
                meta, state = load_logged_model(c, run.info.run_id)
            except Exception:  # artifacts missing: train afresh
                continue
            log(f"reusing {family} '{variant}' from {model_uri(run.info.run_id)}")
            return meta, state, run.info.run_id
    run = c.create_run(exp_id, run_name=f"{family}-{variant}", tags={**tags, **tracking.source_tags()})
    run_id = run.info.run_id
    c.log_inputs(run_id, datasets=[tracking.dataset_input(dataset.name, dataset.fingerprint(), data_root)])
    c.log_batch(run_id, params=tracking.params_of({**dataclasses.asdict(spec), "variant": variant,
                                                   "dataset": dataset.name, "num_workers": num_workers}))
    log(f"training {family} '{variant}' with Ray Train ({num_workers} worker(s)) -> run {run_id}")
    t0 = time.time()
    try:
        with EpochBar(c, run_id, getattr(spec, "epochs", None), f"{family} '{variant}'"):
            result = fit(spec, dataset=dataset.name, data_root=data_root, num_workers=num_workers, use_gpu=use_gpu,
                         storage_path=os.path.join(storage_dir, "train"), name=f"{family}-{variant}-{run_id[:8]}",
                         callbacks=[tracking.train_report_callback(uri, run_id)])
        if result.error is not None:
            raise result.error
        with result.checkpoint.as_directory() as d:
            c.log_artifacts(run_id, d, artifact_path="model")
            with open(os.path.join(d, "model.json")) as f:
                import json

                meta = json.load(f)
            state = torch.load(os.path.join(d, "state_dict.pt"), map_location="cpu", weights_only=True)
        final = result.metrics or {}
        c.log_batch(run_id, metrics=tracking.metrics_of({"train_seconds": time.time() - t0}, 0))
        c.set_tag(run_id, "reconlab.model_uri", model_uri(run_id))
        c.set_terminated(run_id, "FINISHED")
    except BaseException as e:
        c.set_tag(run_id, "reconlab.error", f"{type(e).__name__}: {e}"[:4000])
        c.set_terminated(run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    score = (f"test acc {final['test_acc']:.3f}" if "test_acc" in final else
             f"test PSNR {final['test_psnr']:.2f} dB" if "test_psnr" in final else "done")
    log(f"{family} '{variant}': {score} in {time.time() - t0:.0f}s")
    return meta, state, run_id


ensure_classifier = ensure_model  # the name the classifier jobs know it by
