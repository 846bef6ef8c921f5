"""What registering a trained model costs a fit: ``models.registry.register``
(a pt2 MLflow model with signature and input example, registered and
tagged) against logging the weights-only ``model/`` directory, which every
fit already does, in one process.

    python bench/register_model.py [--repeats 5] [--builder classifier_small]

Prints the first registration in the process (imports, the exporter's
warm-up) apart from the median of the next ``--repeats``, each beside the
median weights-only log.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--builder", default="classifier_small")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import torch

    from reconlab import tracking
    from reconlab.models import build, registry
    from reconlab.models.io import save_model_dir
    from reconlab.training.classifier import VARIANTS

    with tempfile.TemporaryDirectory() as d:
        uri = f"sqlite:///{d}/mlflow.db"
        c = tracking.client(uri)
        exp = tracking.experiment_id(c, "bench", storage_dir=d, uri=uri)
        x = torch.rand(2, 1, 28, 28)
        spec = next(iter(VARIANTS.values()))
        weights, regs = [], []
        for i in range(a.repeats + 1):
            model = build(a.builder).eval()
            run = c.create_run(exp).info.run_id
            md = os.path.join(d, f"m{i}")
            os.makedirs(md)
            save_model_dir(md, model, spec)
            t = time.perf_counter()
            c.log_artifacts(run, md, artifact_path="model")
            weights.append(time.perf_counter() - t)
            t = time.perf_counter()
            registry.register(c, run, model, x, family="bench", variant=str(i), tags={})
            regs.append(time.perf_counter() - t)
    print(f"{a.builder}: first registration in the process {regs[0]:.2f} s; then median of {a.repeats}: "
          f"{statistics.median(regs[1:]):.2f} s (weights-only log {statistics.median(weights[1:]):.3f} s)")


if __name__ == "__main__":
    main()
