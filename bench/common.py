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
    from reconlab.training.classifier import VARIANTS, make_optimizer, train_epoch

    ds = load_dataset("digits")
    shared = {"models": {}, "digests": {}}
    for v in ("sgd", "verifier"):
        spec = dataclasses.replace(VARIANTS[v], epochs=epochs)
        torch.manual_seed(spec.seed)
        m = build(spec.builder, **spec.model_kwargs())
        opt = make_optimizer(spec, m.parameters())
        for e in range(epochs):
            train_epoch(m, opt, ds.x_train, ds.y_train, spec, e, 0, 1, "cpu")
        shared["models"][v] = ({"builder": spec.builder, "kwargs": spec.model_kwargs()}, m.state_dict())
        shared["digests"][v] = spec.digest()
    shared["sources"] = pick_sources(ds.x_test, ds.y_test)
    shared["class_means"] = ds.class_means()
    return shared
