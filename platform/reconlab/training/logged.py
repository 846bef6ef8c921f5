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


def _find_logged(c, exp_id: str, family: str, variant: str, spec, dataset):
    """(meta, state_dict, run_id) of a finished run with this spec on this
    data, or None: the Model Registry's newest matching version first, then
    (a store from before the registry) the runs' tags."""
    from reconlab.models import registry

    tags = _tags(family, variant, spec, dataset)
    registered = registry.find(c, exp_id, family, variant, {k: tags[k] for k in VERSION_TAGS})
    if registered is not None:
        try:
            meta, state = load_logged_model(c, registered)
            return meta, state, registered
        except Exception:  # artifacts missing: look further
            pass
    for run in tracking.find_runs(c, exp_id, tags, status="FINISHED", max_results=5):
        try:
            meta, state = load_logged_model(c, run.info.run_id)
        except Exception:  # artifacts missing: train afresh
            continue
        return meta, state, run.info.run_id
    return None


VERSION_TAGS = (tracking.TAG_SPEC, tracking.TAG_DATA)  # what a registered version carries of its run's tags


def _tags(family, variant, spec, dataset) -> dict:
    return {tracking.TAG_FAMILY: family, tracking.TAG_VARIANT: variant, tracking.TAG_SPEC: spec.digest(),
            tracking.TAG_DATA: dataset.fingerprint()}


def _open_run(c, exp_id, family, variant, spec, dataset, data_root, num_workers) -> str:
    """A new training run with its tags, dataset input and params; its id."""
    run = c.create_run(exp_id, run_name=f"{family}-{variant}",
                       tags={**_tags(family, variant, spec, dataset), **tracking.source_tags()})
    c.log_inputs(run.info.run_id, datasets=[tracking.dataset_input(dataset.name, dataset.fingerprint(), data_root)])
    c.log_batch(run.info.run_id, params=tracking.params_of({**dataclasses.asdict(spec), "variant": variant,
                                                            "dataset": dataset.name, "num_workers": num_workers}))
    return run.info.run_id


def _close_run(c, run_id: str, model_dir: str, seconds: float, *, example):
    """Log the model directory (``model.json`` + ``state_dict.pt``), register
    the model (``models.registry``: a pt2 MLflow model with the input
    ``example``, its version tagged with the run's spec digest and data
    fingerprint) and end the run FINISHED; returns (meta, state_dict)."""
    import json

    from reconlab.models import registry

    c.log_artifacts(run_id, model_dir, artifact_path="model")
    tags = c.get_run(run_id).data.tags  # as _open_run set them: no second hash of the data
    registry.register_logged(c, run_id, model_dir, example, family=tags[tracking.TAG_FAMILY],
                             variant=tags[tracking.TAG_VARIANT], tags={k: tags[k] for k in VERSION_TAGS})
    with open(os.path.join(model_dir, "model.json")) as f:
        meta = json.load(f)
    state = torch.load(os.path.join(model_dir, "state_dict.pt"), map_location="cpu", weights_only=True)
    c.log_batch(run_id, metrics=tracking.metrics_of({"train_seconds": seconds}, 0))
    c.set_tag(run_id, "reconlab.model_uri", model_uri(run_id))
    c.set_terminated(run_id, "FINISHED")
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

    found = None if retrain else _find_logged(c, exp_id, family, variant, spec, dataset)
    if found is not None:
        log(f"reusing {family} '{variant}' from {model_uri(found[2])}")
        return found
    run_id = _open_run(c, exp_id, family, variant, spec, dataset, data_root, num_workers)
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
            meta, state = _close_run(c, run_id, d, time.time() - t0, example=dataset.x_train[:2])
        final = result.metrics or {}
    except BaseException as e:
        c.set_tag(run_id, "reconlab.error", f"{type(e).__name__}: {e}"[:4000])
        c.set_terminated(run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    score = (f"test acc {final['test_acc']:.3f}" if "test_acc" in final else
             f"test PSNR {final['test_psnr']:.2f} dB" if "test_psnr" in final else
             f"test negative ELBO {final['test_neg_elbo']:.1f} nats" if "test_neg_elbo" in final else "done")
    log(f"{family} '{variant}': {score} in {time.time() - t0:.0f}s")
    return meta, state, run_id


ensure_classifier = ensure_model  # the name the classifier jobs know it by


def ensure_models(c, exp_id: str, specs: dict, *, dataset, data_root, uri: str, storage_dir: str,
                  num_workers: int = 1, use_gpu: bool | None = None, retrain: bool = False, log=print,
                  concurrency: int | None = None, family: str = "classifier",
                  config: dict | None = None) -> dict[str, tuple]:
    """``ensure_model`` for many classifiers {name: TrainSpec}: each logged
    one is reused; the rest are trained by ``concurrency`` Ray Train runs at
    once (default: as many as the cluster's CPUs hold), each training its
    share one after another
    (``training.classifier.train_roster_per_worker``), so a worker group's
    start-up (seconds) is paid once per run, not once per model. Every model
    gets its own MLflow run, as ``ensure_model`` gives it. Returns {name:
    (meta, state_dict, run_id)}. ``config``: more for the Train loop's config
    (e.g. ``vae_models`` for intermediate classes)."""
    from concurrent.futures import ThreadPoolExecutor

    out, missing = {}, {}
    for name, spec in specs.items():
        found = None if retrain else _find_logged(c, exp_id, family, name, spec, dataset)
        if found is not None:
            log(f"reusing {family} '{name}' from {model_uri(found[2])}")
            out[name] = found
        else:
            missing[name] = spec
    if not missing:
        return out
    if concurrency is None:
        import ray

        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1)) // num_workers)
    runs = {name: _open_run(c, exp_id, family, name, spec, dataset, data_root, num_workers)
            for name, spec in missing.items()}
    shares = _balanced(missing, max(1, min(concurrency, len(missing))))
    log(f"training {len(missing)} {family} models with Ray Train in {len(shares)} run(s) at once "
        f"({num_workers} worker(s) each): {', '.join(missing)}")

    def fit_share(names: list[str]) -> dict[str, tuple]:
        from reconlab.training.classifier import train_roster_per_worker
        from reconlab.training.launch import fit_torch

        t0 = time.time()
        try:
            result = fit_torch(train_roster_per_worker, missing[names[0]], dataset=dataset.name, data_root=data_root,
                               num_workers=num_workers, use_gpu=use_gpu,
                               storage_path=os.path.join(storage_dir, "train"),
                               name=f"{family}-roster-{runs[names[0]][:8]}",
                               callbacks=[tracking.roster_report_callback(uri, {n: runs[n] for n in names})],
                               config={**(config or {}),
                                       "roster": [[n, dataclasses.asdict(missing[n])] for n in names]})
            if result.error is not None:
                raise result.error
            got = {}
            with result.checkpoint.as_directory() as d:
                for n in names:
                    got[n] = (*_close_run(c, runs[n], os.path.join(d, n), time.time() - t0,
                                          example=dataset.x_train[:2]), runs[n])
                    log(f"{family} '{n}': test acc {c.get_run(runs[n]).data.metrics.get('test_acc', float('nan')):.3f}")
            return got
        except BaseException as e:
            for n in names:
                if c.get_run(runs[n]).info.status == "RUNNING":
                    c.set_tag(runs[n], "reconlab.error", f"{type(e).__name__}: {e}"[:4000])
                    c.set_terminated(runs[n], "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            raise

    if len(shares) == 1:
        out.update(fit_share(shares[0]))
        return out
    with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="fit") as pool:
        for got in [f.result() for f in [pool.submit(fit_share, names) for names in shares]]:
            out.update(got)
    return {name: out[name] for name in specs}


def ensure_with_verifiers(c, exp_id: str, specs: dict, *, epochs: int | None = None, config: dict | None = None,
                          **kw) -> tuple[dict, dict[str, str]]:
    """``ensure_models`` for the classifiers ``specs`` and the verifier
    ensemble (``classifier.VERIFIERS``, trained in the same rosters), then
    ``ensure_model`` for the readability check's VAE
    (``vae.READER_VAE_SPEC``, as ``reader_vae``); ``epochs``, when set,
    replaces every model's (the smoke test). ``kw``: as ``ensure_models``.
    Returns (shared, {name: run id}): ``shared`` holds ``models`` and
    ``digests`` (``models.io.shared_model``) and the names
    ``inversion.verify.ensemble_of`` builds the ensemble from."""
    from reconlab.training.classifier import VERIFIERS
    from reconlab.training.vae import READER_VAE_SPEC, fit_vae

    def sized(s):
        return dataclasses.replace(s, epochs=epochs) if epochs else s

    every = {k: sized(v) for k, v in {**VERIFIERS, **specs}.items()}
    reader = sized(READER_VAE_SPEC)
    got = ensure_models(c, exp_id, every, config=config, **kw)
    got["reader_vae"] = ensure_model(c, exp_id, "reader_vae", reader, family="vae", fit=fit_vae, **kw)
    shared = {"models": {k: (meta, state) for k, (meta, state, _) in got.items()},
              "digests": {"reader_vae": reader.digest(), **{k: s.digest() for k, s in every.items()}},
              "verifiers": list(VERIFIERS), "projector": "reader_vae"}
    return shared, {k: run_id for k, (_, _, run_id) in got.items()}


def _cost(spec) -> float:
    """A model's relative training time: epochs, more with FGSM's second pass
    and with intermediate examples."""
    return spec.epochs * (2.5 if getattr(spec, "fgsm_eps", 0) > 0 else 1.0) * (1 + getattr(spec, "vae_mix", 0.0))


def _balanced(specs: dict, k: int) -> list[list[str]]:
    """``k`` shares of similar total cost (longest first onto the lightest share)."""
    shares: list[list[str]] = [[] for _ in range(k)]
    load = [0.0] * k
    for name in sorted(specs, key=lambda n: -_cost(specs[n])):
        i = load.index(min(load))
        shares[i].append(name)
        load[i] += _cost(specs[name])
    return [s for s in shares if s]
