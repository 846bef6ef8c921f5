"""Shared set-up for the benchmarks: small trained models, made in-process."""

import dataclasses
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

import torch  # noqa: E402


def shared_models(epochs: int = 2):
    """The ``shared`` payload a sweep trial receives, with quickly trained models."""
    from reconlab.data import load_dataset
    from reconlab.inversion.tasks import pick_sources
    from reconlab.models import build
    from reconlab.training import vae
    from reconlab.training.classifier import VARIANTS, VERIFIERS, make_optimizer, train_epoch

    ds = load_dataset("digits")
    shared = {"models": {}, "digests": {}, "verifiers": list(VERIFIERS), "projector": "reader_vae"}
    for v, spec in {"sgd": VARIANTS["sgd"], **VERIFIERS, "reader_vae": vae.READER_VAE_SPEC}.items():
        spec = dataclasses.replace(spec, epochs=epochs)
        torch.manual_seed(spec.seed)
        m = build(spec.builder, **spec.model_kwargs())
        if v == "reader_vae":
            opt = torch.optim.Adam(m.parameters(), lr=spec.lr)
            for e in range(epochs):
                vae.train_epoch(m, opt, ds.x_train, spec, e, 0, 1, "cpu")
        else:
            opt = make_optimizer(spec, m.parameters())
            for e in range(epochs):
                train_epoch(m, opt, ds.x_train, ds.y_train, spec, e, 0, 1, "cpu")
        shared["models"][v] = ({"builder": spec.builder, "kwargs": spec.model_kwargs()}, m.state_dict())
        shared["digests"][v] = spec.digest()
    shared["sources"] = pick_sources(ds.x_test, ds.y_test)
    shared["class_means"] = ds.class_means()
    return shared


def train_reports(fit, **kwargs) -> tuple[list[dict], float]:
    """Run ``fit(..., storage_path, name, callbacks)`` (a family's Ray Train
    ``fit_*``) on the platform's local Ray runtime; returns (every epoch's
    report, wall seconds). Reports reach the bench through a file: the
    callback runs in the Train controller's process."""
    import json
    import tempfile
    import time

    import ray
    from ray.train import UserCallback

    from reconlab.sweep.runner import init_ray

    class Collect(UserCallback):
        def __init__(self, path):
            self.path = path

        def after_report(self, run_context, metrics, checkpoint):
            with open(self.path, "a") as f:
                f.write(json.dumps(metrics[0]) + "\n")

    init_ray()  # the platform's local runtime, as the jobs start it
    try:
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "epochs.jsonl")
            t = time.perf_counter()
            r = fit(storage_path=tmp, name="bench", callbacks=[Collect(log)], **kwargs)
            wall = time.perf_counter() - t
            assert r.error is None, r.error
            with open(log) as f:
                return [json.loads(line) for line in f], wall
    finally:
        ray.shutdown()
