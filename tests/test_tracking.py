"""Where results go and what a URI may show (issue 12): credentials
redacted, storage URIs refused, artifacts under the storage directory (never
``./mlruns``), an experiment whose artifacts would vanish refused, and a
resumed sweep's Tune directory derived from --storage-path."""

import os
import tempfile

import pytest

from reconlab import tracking
from reconlab.errors import InputError


@pytest.mark.parametrize("uri, shown", [
    ("postgresql://alice:s3cret@db.example.org:5432/mlflow", "postgresql://alice:***@db.example.org:5432/mlflow"),
    ("https://alice:p%40ss@mlflow.example.org", "https://alice:***@mlflow.example.org"),
    ("https://ghp_token@mlflow.example.org/", "https://***@mlflow.example.org/"),
    ("mysql+pymysql://u:pw@h/db?password=pw2&charset=utf8", "mysql+pymysql://u:***@h/db?password=***&charset=utf8"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:////tmp/a@b/mlflow.db", "sqlite:////tmp/a@b/mlflow.db"),
])
def test_redact(uri, shown):
    assert tracking.redact(uri) == shown


def test_a_malformed_https_uri_with_credentials_is_one_clean_line():
    with pytest.raises(InputError) as e:
        tracking.check_tracking_uri("https://alice:s3cret@mlflow.example.org:port")
    assert "malformed URI" in str(e.value) and "s3cret" not in str(e.value) and "alice:***@" in str(e.value)


def test_credentials_in_an_http_uri_go_in_a_header_not_the_url(tmp_path):
    """The pre-flight check of ``http://user:pw@host`` sends Basic auth (the
    server's answer, 401 here, counts as reachable)."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(401)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        tracking.check_tracking_uri(f"http://alice:s3cret@127.0.0.1:{srv.server_port}")
    finally:
        srv.shutdown()
    assert seen == [("/health", "Basic " + base64.b64encode(b"alice:s3cret").decode())]


@pytest.mark.parametrize("value", ["s3://bucket/reconlab", "gs://b/x", "file:///srv/x"])
def test_a_storage_uri_is_refused(value, monkeypatch):
    with pytest.raises(InputError, match="a URI is not a storage directory"):
        tracking.results_dir(value)
    monkeypatch.setenv("RECONLAB_HOME", value)
    with pytest.raises(InputError, match="key 'RECONLAB_HOME'"):
        tracking.results_dir(None)


def test_a_new_experiment_keeps_its_artifacts_under_the_storage_dir(tmp_path, monkeypatch):
    """Not in ./mlruns of whatever directory the job started in."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    store = tmp_path / "store"
    uri = f"sqlite:///{store}/mlflow.db"
    c = tracking.client(uri)
    exp = tracking.experiment_id(c, "my sweep/1", storage_dir=str(store), uri=uri)
    run = c.create_run(exp)
    tracking.log_bytes(c, run.info.run_id, b"x", "a/b.txt")
    assert c.get_experiment(exp).artifact_location == str(store / "artifacts" / "my_sweep_1")
    assert os.path.exists(store / "artifacts" / "my_sweep_1" / run.info.run_id / "artifacts" / "a" / "b.txt")
    assert os.listdir(cwd) == []
    assert tracking.artifact_root("http://127.0.0.1:5000", str(store), "x") is None  # the server's store


def test_an_experiment_whose_artifacts_would_vanish_is_refused_and_not_written_to(tmp_path):
    store = tmp_path / "store"
    uri = f"sqlite:///{store}/mlflow.db"
    c = tracking.client(uri)
    vanishing = tempfile.mkdtemp(prefix="rl-vanishing-")
    c.create_experiment("old", artifact_location=vanishing)
    with pytest.raises(InputError, match=r"key '--experiment' = 'old \(artifacts: /.*\)': .*will vanish"):
        tracking.experiment_id(c, "old", storage_dir=str(store), uri=uri)
    c.create_experiment("cwd", artifact_location=f"file://{vanishing}/mlruns/1")  # MLflow's default, made in a temp dir
    with pytest.raises(InputError, match="will vanish"):
        tracking.experiment_id(c, "cwd", storage_dir=str(store), uri=uri)
    assert os.listdir(vanishing) == []
    inside = c.create_experiment("inside", artifact_location=str(store / "artifacts" / "inside"))
    assert tracking.experiment_id(c, "inside", storage_dir=str(store), uri=uri) == inside


def test_resume_derives_the_tune_dir_and_refuses_a_tag_pointing_elsewhere(tmp_path):
    from reconlab.sweep.runner import TAG_TUNE_DIR, resume_sweep, start_parent, tune_dir_for
    from reconlab.sweep.spec import SweepSpec

    store = tmp_path / "store"
    uri = f"sqlite:///{store}/mlflow.db"
    c = tracking.client(uri)
    exp = tracking.experiment_id(c, "e", storage_dir=str(store), uri=uri)
    spec = SweepSpec(name="s", metric="acc", search={"lr": {"type": "uniform", "low": 0.1, "high": 0.2}})
    assert resume_sweep(c, exp, spec, str(store)) is None  # nothing to resume
    first = start_parent(c, exp, spec, storage_dir=str(store), resumed=None, extra_params={})
    assert first.tune_dir == tune_dir_for(str(store), "s", first.run_id)
    first.lock.release()
    again = resume_sweep(c, exp, spec, str(store))
    assert again.run_id == first.run_id and again.tune_dir == first.tune_dir
    with pytest.raises(InputError, match="held by another driver"):  # a second --resume while one runs
        resume_sweep(c, exp, spec, str(store))
    again.lock.release()
    c.set_tag(first.run_id, TAG_TUNE_DIR, "/srv/shared/evil")
    with pytest.raises(InputError, match=r"key 'reconlab.tune_dir' = '/srv/shared/evil'"):
        resume_sweep(c, exp, spec, str(store))


# ------------------------------------------------------------ a new SQLite store (issue 30)

def test_a_store_from_the_snapshot_is_the_store_mlflow_s_migrations_make(tmp_path):
    """``store_schema``'s snapshot is the schema MLflow's own migrations end
    in, statement for statement (when the installed MLflow is at the snapshot's revision;
    otherwise the snapshot is not used and MLflow migrates)."""
    from mlflow.tracking import MlflowClient

    from reconlab import store_schema
    from reconlab.store_schema_sql import REVISION, SQL

    migrated = tmp_path / "migrated.db"
    MlflowClient(tracking_uri=f"sqlite:///{migrated}").search_experiments(max_results=1)  # MLflow's migrations
    fast = tmp_path / "fast.db"
    if store_schema.head_revision() != REVISION:
        assert not store_schema.create(str(fast)) and not fast.exists()
        pytest.skip(f"MLflow is at another schema revision than the snapshot's {REVISION}: "
                    "regenerate it (python -m reconlab.store_schema)")
    assert store_schema.statements(store_schema.dump(str(migrated))) == store_schema.statements(SQL)
    assert store_schema.create(str(fast))
    assert store_schema.statements(store_schema.dump(str(fast))) == store_schema.statements(SQL)
    assert not store_schema.create(str(fast))  # never over an existing store
    c = tracking.client(f"sqlite:///{fast}")
    exp = tracking.experiment_id(c, "x", storage_dir=str(tmp_path), uri=f"sqlite:///{fast}")
    run = c.create_run(exp)
    c.log_metric(run.info.run_id, "acc", 0.5)
    assert c.get_run(run.info.run_id).data.metrics == {"acc": 0.5}
    assert {e.name for e in c.search_experiments()} == {"x", "Default"}


def _open_store(uri, storage, name, barrier):
    from reconlab import tracking as t

    barrier.wait()
    c = t.client(uri)
    return t.experiment_id(c, name, storage_dir=storage, uri=uri)


def test_processes_opening_one_new_store_at_once_all_get_it(tmp_path):
    """Four processes open the same new store at the same moment: one creates
    it (under the flock beside it) and every one gets its experiment. Two
    jobs started together used to die with ``duplicate column name``."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ctx = mp.get_context("spawn")
    with ctx.Manager() as m, ProcessPoolExecutor(4, mp_context=ctx) as pool:
        barrier = m.Barrier(4)
        ids = [f.result(timeout=120) for f in [pool.submit(_open_store, uri, str(tmp_path), f"e{i}", barrier)
                                                for i in range(4)]]
    assert len(set(ids)) == 4
    c = tracking.client(uri)
    assert {e.name for e in c.search_experiments()} == {"e0", "e1", "e2", "e3", "Default"}


def test_two_jobs_started_together_in_a_new_directory_both_finish(two_jobs_one_new_store):
    """Two different jobs started at the same moment in one new storage
    directory (conftest): both exit 0, every run they made is FINISHED, in
    one store."""
    jobs, store = two_jobs_one_new_store
    for name, p in jobs.items():
        assert p.returncode == 0, (name, p.stdout[-2000:] + p.stderr[-3000:])
        assert "duplicate column" not in p.stderr
    c = tracking.client(f"sqlite:///{store}/mlflow.db")
    exps = {e.name: e.experiment_id for e in c.search_experiments()}
    assert {"reconlab-deep-decoder-smoke", "reconlab-prototypes-smoke"} <= set(exps)
    runs = c.search_runs(list(exps.values()), max_results=1000)
    assert len(runs) >= 2 + 4 + 2 and {r.info.status for r in runs} == {"FINISHED"}
