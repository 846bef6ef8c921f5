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
