"""After a job: every model it trained is a registered MLflow model whose newest
version is a pt2 program (``data/model.pt2``, no pickle among its files), loads with
``mlflow.pytorch.load_model`` and, for a classifier, classifies digits (its
accuracy on 200 test digits is printed).

    python bench/registry_check.py STORAGE_DIR      # e.g. after `make run`: reconlab_results
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings


def main(storage: str) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow.artifacts
    import mlflow.pytorch

    from reconlab import tracking
    from reconlab.data import load_dataset
    from reconlab.models.registry import registered_name

    c = tracking.client(f"sqlite:///{storage}/mlflow.db")
    digits = load_dataset("digits")
    x, y = digits.x_test[:200], digits.y_test[:200]
    trained = c.search_runs([e.experiment_id for e in c.search_experiments()], f"tags.`{tracking.TAG_FAMILY}` != ''")
    bad = 0
    for r in trained:
        family, variant = r.data.tags[tracking.TAG_FAMILY], r.data.tags[tracking.TAG_VARIANT]
        name = registered_name(family, variant)
        versions = c.search_model_versions(f"name = '{name}'")
        if not versions:
            print(f"{family} '{variant}' (run {r.info.run_id}): NOT REGISTERED")
            bad += 1
            continue
        v = max(versions, key=lambda v: int(v.version))
        with tempfile.TemporaryDirectory() as t:
            local = mlflow.artifacts.download_artifacts(f"models:/{name}/{v.version}", dst_path=t)
            files = {os.path.relpath(os.path.join(d, f), local) for d, _, fs in os.walk(local) for f in fs}
            # MLflow loads data/model.pt2 with torch.export.load; data/model.pth it would unpickle
            pt2 = "data/model.pt2" in files and not [f for f in files if f.endswith((".pth", ".pkl", ".pickle"))]
            if not pt2:  # never hand MLflow's loader a pickled module
                print(f"{name} v{v.version}: NOT pt2 ({sorted(files)})")
                bad += 1
                continue
            out = mlflow.pytorch.load_model(local)(x)
        out = out[0] if isinstance(out, tuple) else out
        acc = f", accuracy on 200 test digits {(out.argmax(1) == y).float().mean():.3f}" if family == "classifier" else ""
        print(f"{name} v{v.version}: pt2, loads, output {tuple(out.shape)}{acc}")
    print(f"{len(trained)} trained models, {len(trained) - bad} registered as pt2 and loading")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
