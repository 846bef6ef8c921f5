"""MLflow tracking: where results go, one parent run per sweep, one child run
per Tune trial, one run per training job.

Contracts (DESIGN.md): the sweep's parent run has ``reconlab.sweep``; each
trial run has ``mlflow.parentRunId`` and ``reconlab.trial_id``; training runs
have ``reconlab.family``. Trial runs are looked up by trial id before one is
created, so a retried or resumed trial continues its run instead of adding one.

Sweeps write their trial runs through ``reconlab.spool`` (a write-ahead file
and one delivery thread), so the tracking store never stalls the trial
scheduler and an outage or a killed driver loses nothing.
"""

from __future__ import annotations

import io
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Iterable

from reconlab.errors import InputError

TAG_SWEEP = "reconlab.sweep"
TAG_TRIAL = "reconlab.trial_id"
TAG_FAMILY = "reconlab.family"
TAG_VARIANT = "reconlab.variant"
TAG_SPEC = "reconlab.spec_digest"
TAG_DATA = "reconlab.data_fingerprint"
TAG_PARENT = "mlflow.parentRunId"


# --------------------------------------------------------------------------- where


def in_submitted_job() -> bool:
    """True when this driver runs under ``ray job submit`` (a temporary copy of
    the working directory that disappears with the job)."""
    return bool(os.environ.get("RAY_JOB_SUBMISSION_ID") or os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))


def results_dir(storage_path: str | None = None) -> str:
    """Absolute directory for local results (SQLite store, Ray results).

    ``--storage-path`` wins, then ``RECONLAB_HOME``; otherwise ``./reconlab_results``
    or, inside a submitted job, ``~/reconlab_results`` (the working directory
    is temporary there)."""
    if storage_path:
        return os.path.abspath(os.path.expanduser(storage_path))
    if os.environ.get("RECONLAB_HOME"):
        return os.path.abspath(os.path.expanduser(os.environ["RECONLAB_HOME"]))
    if in_submitted_job():
        return os.path.join(os.path.expanduser("~"), "reconlab_results")
    return os.path.abspath("reconlab_results")


def resolve_tracking_uri(arg: str | None, storage_dir: str) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file in ``storage_dir``."""
    uri = arg or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return "sqlite:///" + os.path.join(storage_dir, "mlflow.db")


def check_storage_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create storage directory ({e.strerror})", key="--storage-path", value=path) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError("storage directory is not writable", key="--storage-path", value=path)


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (exit 2) on a tracking URI that cannot work."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
                if r.status >= 400:
                    raise InputError(f"tracking server answered HTTP {r.status}", key="--tracking-uri", value=uri)
        except urllib.error.HTTPError as e:
            if e.code not in (401, 403):  # an auth-protected server is reachable
                raise InputError(f"tracking server answered HTTP {e.code}", key="--tracking-uri", value=uri) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise InputError(f"tracking server unreachable ({reason})", key="--tracking-uri", value=uri) from None
    elif scheme == "sqlite":
        path = uri.split("sqlite:///", 1)[-1]
        parent = os.path.dirname(os.path.abspath(path)) or "."
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create directory for the store ({e.strerror})", key="--tracking-uri",
                             value=uri) from None
        if not os.access(parent, os.W_OK):
            raise InputError("store directory is not writable", key="--tracking-uri", value=uri)
    elif scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        check_database(uri)
    elif scheme in ("file", "") and not uri.startswith("databricks"):
        raise InputError("use a sqlite:///, http(s):// or database URI (MLflow 3 refuses plain file stores)",
                         key="--tracking-uri", value=uri)


def check_database(uri: str) -> None:
    """Connect once to a database tracking store (driver installed, host
    answering, credentials accepted)."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 5} if "mssql" not in uri else {})
        with engine.connect():
            pass
    except ImportError as e:
        raise InputError(f"database driver not installed ({e.name})", key="--tracking-uri", value=uri) from None
    except Exception as e:
        first = str(getattr(e, "orig", e) or e).strip().splitlines()
        raise InputError(f"database unreachable ({first[0] if first else type(e).__name__})", key="--tracking-uri",
                         value=uri) from None


# --------------------------------------------------------------------------- client


def client(uri: str):
    """An MlflowClient. Against a server, a failing call gives up after a few
    seconds (not MLflow's default of minutes): the sweep's spool does the
    waiting, and reports the outage."""
    import mlflow

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def experiment_id(c, name: str, artifact_root: str | None = None) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return c.create_experiment(name, artifact_location=artifact_root)
    except Exception:  # created concurrently
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def find_runs(c, exp_id: str, tags: dict[str, str], status: str | None = None, max_results: int = 50):
    clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    if status:
        clauses.append(f"attributes.status = '{status}'")
    return c.search_runs([exp_id], " and ".join(clauses), max_results=max_results,
                         order_by=["attributes.start_time DESC"])


def metrics_of(values: dict[str, Any], step: int, keys: Iterable[str] | None = None):
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    out = []
    for k, v in values.items():
        if keys is not None and k not in keys:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out.append(Metric(k, float(v), now, int(step)))
    return out


def params_of(values: dict[str, Any]):
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in sorted(values.items()) if not isinstance(v, (dict, list, bytes))]


def png_bytes(images, nrow: int) -> bytes:
    """(n, c, h, w) tensor in [0, 1] -> PNG of a grid with ``nrow`` images per row."""
    import numpy as np
    from PIL import Image

    x = images.detach().cpu().clamp(0, 1).numpy()
    n, c, h, w = x.shape
    rows = -(-n // nrow)
    pad = 2
    grid = np.ones((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), np.float32) * 0.5
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    arr = (grid.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[..., 0] if c == 1 else arr)
    scale = max(1, 256 // max(h, 1))
    img = img.resize((img.width * scale // 2, img.height * scale // 2), Image.NEAREST) if scale > 2 else img
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def log_bytes(c, run_id: str, data: bytes, artifact_file: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, os.path.basename(artifact_file))
        with open(path, "wb") as f:
            f.write(data)
        sub = os.path.dirname(artifact_file) or None
        c.log_artifact(run_id, path, artifact_path=sub)


# --------------------------------------------------------------------------- training


def train_report_callback(uri: str, run_id: str, step_key: str = "epoch"):
    """A Ray Train ``UserCallback`` (runs on the Train controller) that logs
    rank 0's metrics of every ``ray.train.report`` to the training run."""
    from ray.train import UserCallback

    class _MlflowTrainReport(UserCallback):
        def __init__(self):
            self._client = None

        def after_report(self, run_context, metrics, checkpoint):
            if self._client is None:
                self._client = client(uri)
            m = metrics[0]
            self._client.log_batch(run_id, metrics=metrics_of(m, int(m.get(step_key, 0))))

        def __getstate__(self):
            return {"_client": None}

    return _MlflowTrainReport()


# --------------------------------------------------------------------------- sweeps

_SPOOLS: dict[str, Any] = {}  # spool path -> the driver's open Spool


def register_spool(spool) -> None:
    _SPOOLS[spool.path] = spool


def spool_at(path: str):
    """The open spool registered under ``path`` (a function, so that pickled
    callbacks refer to this module instead of carrying the registry)."""
    return _SPOOLS[path]


def trial_callback(spool_path: str, metric_keys: Iterable[str]):
    """A Ray Tune callback: one MLflow child run per trial, every reported
    step, a final status (and artifacts), all through the sweep's write-ahead
    spool (``reconlab.spool``). It holds only the spool's path: Tune pickles
    its callbacks into the experiment and unpickles them on restore, and the
    open spool is looked up in this process."""
    from ray.tune import Callback

    keys = frozenset(metric_keys)

    class MlflowTrials(Callback):
        @property
        def spool(self):
            return spool_at(spool_path)

        def on_trial_start(self, iteration, trials, trial, **info):
            self.spool.start(trial.trial_id, str(trial), trial.config, trial.trainable_name)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            step = int(result.get("step", result.get("training_iteration", 0)))
            self.spool.metrics(trial.trial_id, step, {k: v for k, v in result.items() if k in keys})

        def on_trial_complete(self, iteration, trials, trial, **info):
            status, reason = trial_outcome(trial.last_result, None)
            self.spool.end(trial.trial_id, status, reason, trial_ref(trial))

        def on_trial_error(self, iteration, trials, trial, **info):
            self.spool.end(trial.trial_id, "FAILED", error_line(trial) or "trial raised an error", trial_ref(trial))

    return MlflowTrials()


DIVERGED = "diverged"  # a result key: the trial's loss went NaN/inf; its reason is under "diverged_reason"


def trial_outcome(last_result: dict | None, error: str | None) -> tuple[str, str | None]:
    """(MLflow status, reason) of an ended trial."""
    if error:
        return "FAILED", error
    r = last_result or {}
    if r.get(DIVERGED):
        return "FAILED", f"diverged: {r.get('diverged_reason') or 'loss is not finite'}"
    return "FINISHED", None


def error_line(trial) -> str | None:
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        with open(path) as f:
            lines = f.read().strip().splitlines()
            return lines[-1] if lines else None
    return None


def trial_ref(trial) -> dict:
    """What a spooled ``end`` line needs to render a trial's artifacts later:
    its config, last result (scalars) and checkpoint path."""
    from reconlab.spool import describe

    cp = trial.checkpoint
    return {"config": describe(trial.config), "last_result": describe(trial.last_result),
            "checkpoint": cp.path if cp is not None else None}


def announce(msg: str) -> None:
    print(f"[reconlab] {msg}", file=sys.stderr, flush=True)
