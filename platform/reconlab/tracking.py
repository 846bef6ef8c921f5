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
import re
import sys
import tempfile
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
# MLflow 3's UI opens an experiment of this kind on its runs (not on GenAI traces)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
SOURCE_TAGS = (TAG_SOURCE_NAME, TAG_SOURCE_TYPE, TAG_GIT_COMMIT)


# --------------------------------------------------------------------------- where


def in_submitted_job() -> bool:
    """True when this driver runs under ``ray job submit`` (a temporary copy of
    the working directory that disappears with the job)."""
    return bool(os.environ.get("RAY_JOB_SUBMISSION_ID") or os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))


def results_dir(storage_path: str | None = None) -> str:
    """Absolute directory for local results (SQLite store, artifacts, Ray results).

    ``--storage-path`` wins, then ``RECONLAB_HOME``; otherwise ``./reconlab_results``
    or, inside a submitted job, ``~/reconlab_results`` (the working directory
    is temporary there). A URI (``s3://...``) is refused: the spool, the
    Optuna study and Tune's state must be files that outlive the driver, so a
    cluster shares a mounted filesystem (NFS, EFS, Filestore) instead."""
    for key, value in (("--storage-path", storage_path), ("RECONLAB_HOME", os.environ.get("RECONLAB_HOME"))):
        if value:
            if _SCHEME.match(value):
                raise InputError("a URI is not a storage directory: mount shared storage (NFS, EFS, Filestore) on "
                                 "every node and pass its path", key=key, value=redact(value))
            return os.path.abspath(os.path.expanduser(value))
    if in_submitted_job():
        return os.path.join(os.path.expanduser("~"), "reconlab_results")
    return os.path.abspath("reconlab_results")


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")
_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|secret|access_token|sslpassword)=)[^&#]*")


def redact(uri: str) -> str:
    """A URI fit to print, log or store: ``scheme://user:pw@host`` becomes
    ``scheme://user:***@host`` (a bare ``token@`` becomes ``***@``), and
    ``password=``/``token=`` query values become ``***``."""
    if not isinstance(uri, str):
        return uri

    def userinfo(m):
        user, sep, _ = m.group(2).partition(":")
        return f"{m.group(1)}{user}:***@" if sep else f"{m.group(1)}***@"

    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(userinfo, uri, count=1))


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
    """Fail fast (exit 2) on a tracking URI that cannot work. Every message
    shows the URI redacted (``redact``)."""
    shown = redact(uri)
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in ("http", "https"):
        check_server(uri, timeout)
    elif scheme == "sqlite":
        path = uri.split("sqlite:///", 1)[-1]
        parent = os.path.dirname(os.path.abspath(path)) or "."
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create directory for the store ({e.strerror})", key="--tracking-uri",
                             value=shown) from None
        if not os.access(parent, os.W_OK):
            raise InputError("store directory is not writable", key="--tracking-uri", value=shown)
    elif scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        check_database(uri)
    elif scheme in ("file", "") and not uri.startswith("databricks"):
        raise InputError("use a sqlite:///, http(s):// or database URI (MLflow 3 refuses plain file stores)",
                         key="--tracking-uri", value=shown)


def check_server(uri: str, timeout: float = 5.0) -> None:
    """An http(s) tracking server answers ``/health`` (401/403 count as up).
    Credentials in the URI go in an Authorization header, never in a message."""
    import base64
    from urllib.parse import unquote, urlsplit

    shown = redact(uri)
    try:
        parts = urlsplit(uri)
        parts.port  # raises ValueError on a malformed port
        if not parts.hostname:
            raise ValueError("no host")
    except ValueError as e:
        raise InputError(f"malformed URI ({str(e).split(':')[0]})", key="--tracking-uri", value=shown) from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    url = parts._replace(netloc=netloc).geturl().rstrip("/") + "/health"
    req = urllib.request.Request(url)
    if parts.username is not None:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        req.add_header("Authorization", "Basic " + base64.b64encode(cred).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            if r.status >= 400:
                raise InputError(f"tracking server answered HTTP {r.status}", key="--tracking-uri", value=shown)
    except urllib.error.HTTPError as e:
        if e.code not in (401, 403):  # an auth-protected server is reachable
            raise InputError(f"tracking server answered HTTP {e.code}", key="--tracking-uri", value=shown) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = redact(str(getattr(e, "reason", e)))
        raise InputError(f"tracking server unreachable ({reason})", key="--tracking-uri", value=shown) from None


def check_database(uri: str) -> None:
    """Connect once to a database tracking store (driver installed, host
    answering, credentials accepted)."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 5} if "mssql" not in uri else {})
        with engine.connect():
            pass
    except ImportError as e:
        raise InputError(f"database driver not installed ({e.name})", key="--tracking-uri",
                         value=redact(uri)) from None
    except Exception as e:
        first = [redact(line).replace(_password(uri), "***") if _password(uri) else redact(line)
                 for line in str(getattr(e, "orig", e) or e).strip().splitlines()]
        raise InputError(f"database unreachable ({first[0] if first else type(e).__name__})", key="--tracking-uri",
                         value=redact(uri)) from None


def _password(uri: str) -> str:
    m = _USERINFO.match(uri)
    return m.group(2).partition(":")[2] if m else ""


# --------------------------------------------------------------------------- client


def client(uri: str):
    """An MlflowClient. Against a server, a failing call gives up after a few
    seconds (not MLflow's default of minutes): the sweep's spool does the
    waiting, and reports the outage."""
    import mlflow

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    # MLflow prints "View run ... at: <server URL>" at every run's end: a
    # line per trial, with any credentials of the URI in it, and a store read
    if redact(uri) != uri:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    else:
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    return _create_store_once(uri, lambda: MlflowClient(tracking_uri=uri))


_READY: set[str] = set()  # SQLite stores this process has opened (so created, if they were new)


def _create_store_once(uri: str, make_client):
    """``make_client()`` (which opens the store), for a SQLite store under an
    exclusive ``flock`` beside its file: the first process to open a new
    store creates its tables (from ``store_schema``'s snapshot when it
    matches the installed MLflow, else by MLflow's migrations) while any
    other job started at the same moment waits, instead of racing it to
    ``duplicate column name``. Other stores (servers, databases) create
    themselves."""
    if not uri.startswith("sqlite:///") or uri in _READY:
        return make_client()
    import fcntl

    path = uri[len("sqlite:///"):].split("?", 1)[0]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not os.path.exists(path) or not os.path.getsize(path):
            from reconlab import store_schema

            store_schema.create(path)
        c = make_client()  # MLflow opens the store here (and migrates one that has no tables)
    finally:
        os.close(fd)  # drops the lock
    _READY.add(uri)
    return c


def artifact_root(uri: str, storage_dir: str, name: str) -> str | None:
    """Where a new experiment keeps its artifacts: with a tracking server, the
    server's artifact store (None: its default, ``mlflow-artifacts:`` when it
    serves them); otherwise ``<storage>/artifacts/<experiment>``, never the
    current directory (MLflow's ``./mlruns`` default)."""
    if uri.split(":", 1)[0].lower() in ("http", "https", "databricks"):
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"
    return os.path.join(storage_dir, "artifacts", safe)


def _local_path(location: str) -> str | None:
    """The local directory an artifact location names, or None for a remote one."""
    if location.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        return unquote(urlsplit(location).path)
    return None if _SCHEME.match(location) or ":" in location.split("/", 1)[0] else location


def volatile_dirs() -> list[str]:
    """Directories whose contents do not outlive a job: the system temp dir,
    Ray's, and (under ``ray job submit``) the job's working copy."""
    dirs = [tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm", os.environ.get("RAY_TMPDIR", "")]
    if in_submitted_job():
        dirs.append(os.getcwd())
    return [os.path.realpath(d) for d in dirs if d]


def is_under(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_artifact_location(name: str, location: str, storage_dir: str) -> None:
    """Refuse (exit 2) an experiment whose artifacts would land in a directory
    that vanishes (a temp dir, a submitted job's working copy), unless that is
    inside the storage directory itself."""
    path = _local_path(location or "")
    if path is None or is_under(path, storage_dir):
        return
    if not os.path.isabs(path) or any(is_under(path, d) for d in volatile_dirs()):
        raise InputError("the experiment keeps its artifacts in a temporary or relative directory that will vanish; "
                         "use another --experiment or --storage-path", key="--experiment",
                         value=f"{name} (artifacts: {location})")


def experiment_id(c, name: str, *, storage_dir: str, uri: str) -> str:
    """The experiment's id, created with its artifacts under the storage
    directory (or on the tracking server); an existing experiment whose
    artifacts would vanish is refused."""
    exp = c.get_experiment_by_name(name)
    if exp is None:
        try:
            exp = c.get_experiment(c.create_experiment(name, artifact_location=artifact_root(uri, storage_dir, name),
                                                       tags=dict([EXPERIMENT_KIND])))
        except Exception:  # created concurrently
            exp = c.get_experiment_by_name(name)
            if exp is None:
                raise
    # also a new one: a server without --artifacts-destination may hand out a local path
    check_artifact_location(name, exp.artifact_location, storage_dir)
    if EXPERIMENT_KIND[0] not in exp.tags:  # made before the tag existed, or by another tool: open it on runs
        c.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
    return exp.experiment_id


def source_tags(script: str | None = None) -> dict[str, str]:
    """MLflow's source tags for a run a job starts: ``mlflow.source.name``
    (the job's path in its checkout, e.g. ``jobs/inversion_sweep.py``),
    ``mlflow.source.type`` LOCAL, and ``mlflow.source.git.commit`` where the
    job lies in a git checkout (``ray job submit`` ships a copy without
    ``.git``: no commit then)."""
    import subprocess

    script = os.path.abspath(script or sys.argv[0] or "")
    folder = os.path.dirname(script)
    tags = {TAG_SOURCE_NAME: os.path.basename(script), TAG_SOURCE_TYPE: "LOCAL"}
    try:
        top, commit = subprocess.run(["git", "-C", folder, "rev-parse", "--show-toplevel", "HEAD"],
                                     capture_output=True, text=True, timeout=10, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError, ValueError):
        top = commit = None
    if top and commit:
        tags[TAG_SOURCE_NAME] = os.path.relpath(script, top)
        tags[TAG_GIT_COMMIT] = commit
    elif os.path.basename(folder) == "jobs":
        tags[TAG_SOURCE_NAME] = f"jobs/{os.path.basename(script)}"
    return tags


def dataset_input(name: str, digest: str, source: str | None = None):
    """The dataset a run trained or was scored on, as an MLflow dataset input
    (the UI's Dataset column): its name and digest (``Dataset.fingerprint``;
    MLflow shows the first 8 characters), context "training"."""
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    ds = Dataset(name=name, digest=digest[:36], source_type="code",
                 source=json.dumps({"dataset": name, "data_root": source}))
    return DatasetInput(ds, tags=[InputTag("mlflow.data.context", "training")])


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


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (tight layout); the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


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


ROSTER_KEY = "roster_model"  # a roster fit's report: which model it is about


def roster_report_callback(uri: str, run_ids: dict[str, str], step_key: str = "epoch"):
    """``train_report_callback`` for a Ray Train run that trains several models
    one after another (``training.classifier.train_roster_per_worker``):
    each report goes to the run of the model it names."""
    from ray.train import UserCallback

    class _MlflowRosterReport(UserCallback):
        def __init__(self):
            self._client = None

        def after_report(self, run_context, metrics, checkpoint):
            m = metrics[0]
            run_id = run_ids.get(m.get(ROSTER_KEY))
            if run_id is None:
                return
            if self._client is None:
                self._client = client(uri)
            self._client.log_batch(run_id, metrics=metrics_of(m, int(m.get(step_key, 0))))

        def __getstate__(self):
            return {"_client": None}

    return _MlflowRosterReport()


# --------------------------------------------------------------------------- sweeps

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


def announce(msg: str) -> None:
    print(f"[reconlab] {msg}", file=sys.stderr, flush=True)
