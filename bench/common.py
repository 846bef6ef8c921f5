"""Shared set-up for the benchmarks: small trained models, made in-process."""

import dataclasses
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))


def shared_models(epochs: int = 2):
    """The ``shared`` payload a sweep trial receives, with quickly trained models."""
    from reconlab.data import load_dataset
    from reconlab.inversion.tasks import pick_sources
    from reconlab.training import classifier, vae

    ds = load_dataset("digits")
    shared = {"models": {}, "digests": {}, "verifiers": list(classifier.VERIFIERS), "projector": "reader_vae"}
    specs = {"sgd": classifier.VARIANTS["sgd"], **classifier.VERIFIERS, "reader_vae": vae.READER_VAE_SPEC}
    for v, spec in specs.items():
        spec = dataclasses.replace(spec, epochs=epochs)
        m = (vae if v == "reader_vae" else classifier).train_local(spec, ds)
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
