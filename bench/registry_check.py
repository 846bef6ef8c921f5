"""After a job: every model it trained is a registered MLflow model whose newest
version loads with ``mlflow.pytorch.load_model``, classifies digits (a
classifier: its accuracy on 200 test digits) and holds no pickle.

    python bench/registry_check.py STORAGE_DIR      # e.g. after `make run`: reconlab_results
"""
import os, sys, tempfile, warnings, logging  # noqa: E401
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
warnings.filterwarnings("ignore")
logging.getLogger("mlflow").setLevel(logging.ERROR)
import torch, mlflow, mlflow.pytorch, mlflow.artifacts
from reconlab import tracking
from reconlab.data import load_dataset
uri = f"sqlite:///{sys.argv[1]}/mlflow.db"
c = tracking.client(uri)
d = load_dataset("digits")
x, y = d.x_test[:200], d.y_test[:200]
trained = c.search_runs([e.experiment_id for e in c.search_experiments()], f"tags.`{tracking.TAG_FAMILY}` != ''")
print(len(trained), "trained-model runs")
for r in trained:
    fam, var = r.data.tags[tracking.TAG_FAMILY], r.data.tags[tracking.TAG_VARIANT]
    name = f"reconlab-{fam}-{var}"
    vs = c.search_model_versions(f"name = '{name}'")
    v = max(vs, key=lambda v: int(v.version))
    m = mlflow.pytorch.load_model(f"models:/{name}/{v.version}")
    out = m(x)
    out = out[0] if isinstance(out, tuple) else out
    with tempfile.TemporaryDirectory() as t:
        local = mlflow.artifacts.download_artifacts(f"models:/{name}/{v.version}", dst_path=t)
        files = [f for _, _, fs in os.walk(local) for f in fs]
    pick = [f for f in files if f.endswith((".pkl", ".pickle", ".pth")) or f == "model.pth"]
    acc = (out.argmax(1) == y).float().mean().item() if fam == "classifier" else float("nan")
    print(f"{name} v{v.version}: loads, output {tuple(out.shape)}, accuracy on 200 test digits {acc:.3f}, pt2 {'model.pt2' in files}, pickles {pick}")
