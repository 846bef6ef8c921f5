"""The report (issue 17): one HTML page rebuilt from the MLflow runs that
exist, with the job's own tables, links to every run, Optuna's analysis and
the command for each study without runs."""

import base64
import os
import re
import subprocess
import sys

import pytest

from reconlab import dashboards, tracking
from reconlab.cli import run_job

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def report(smoke_store, tmp_path_factory):
    d, _ = smoke_store
    out = tmp_path_factory.mktemp("report")
    # the store named outright: an in-process MLflow client leaves MLFLOW_TRACKING_URI set behind it
    assert run_job(dashboards.main, ["--tracking-uri", f"sqlite:///{d}/mlflow.db", "--storage-path", str(d),
                                     "--out", str(out)]) == 0
    return d, out / "index.html"


@pytest.mark.slow
def test_the_report_holds_the_job_s_own_table_a_link_per_run_and_the_missing_families_commands(report):
    d, path = report
    page = path.read_text()
    uri = f"sqlite:///{d}/mlflow.db"
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("reconlab-inversion-smoke")
    # the latest sweep is the one the report shows (tests/test_inversion_job.py may have added a second)
    parent = tracking.find_runs(c, exp.experiment_id, {tracking.TAG_SWEEP: "inversion"})[0]
    # the job's table, number for number, and its verdicts: never derived again
    md = open(c.download_artifacts(parent.info.run_id, "summary.md", str(path.parent))).read()
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| variant"):
            cells = [x.strip() for x in line.strip("|").split("|")]
            assert "<tr>" + "".join(f"<td>{v}</td>" for v in cells) + "</tr>" in page, line
        elif line.startswith("- "):
            assert line[2:] in page
    # every trial's run is linked, and the sweep run
    trials = tracking.find_runs(c, exp.experiment_id, {tracking.TAG_PARENT: parent.info.run_id})
    assert len(trials) >= 3  # one per variant at least
    assert "runs/x?workflowType=machine_learning" in dashboards.run_url("u", "1", "x")
    for r in [parent, *trials]:
        assert dashboards.run_url(dashboards.UI, exp.experiment_id, r.info.run_id) in page
    n = len(trials)
    assert f"trials: {n} finished" in page and f"best readable_acc so far over {n} trials" in page
    assert "<li>variant sgd (" in page  # Optuna's studies, named by their stratum
    # installed studies without runs say the command that makes them; the sweep's section its study's title
    sections = dashboards.installed_sections()
    assert {"xor", "inversion", "ct", "denoise", "adversarial", "deep_decoder", "prototypes", "thesis"} <= set(sections)
    for f in sections.values():
        assert f'id="{f.key}"' in page
        if f.key != "inversion":
            assert f"run <code>{f.command}</code>" in page
    assert f"<h2>{sections['inversion'].title}</h2>" in page.replace("&#x27;", "'")
    # self-contained: every image is an embedded PNG
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) >= 7 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    assert "src=\"http" not in page and "<script" not in page


def test_the_job_s_markdown_is_escaped_and_its_tables_and_notes_render():
    html = dashboards.markdown_html("| a | b |\n|---|---|\n| <script>x</script> | **1.5** |\n\n- HOLDS `x`\n")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<td><b>1.5</b></td>" in html and "<li>HOLDS <code>x</code></li>" in html


def test_strata_are_named_as_the_searcher_names_its_studies():
    spec = {"stratify": ["mode", "noise"], "search": {"mode": {"values": ["ctr", "cbc"]},
                                                      "noise": {"values": [0.0, 0.01]}}}
    assert dashboards.strata_labels(spec) == {"stratum-0": "mode ctr, noise 0.0", "stratum-1": "mode ctr, noise 0.01",
                                              "stratum-2": "mode cbc, noise 0.0", "stratum-3": "mode cbc, noise 0.01"}


def test_bad_input_is_one_line_and_exit_2_and_creates_nothing(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, "dashboards", "build_report.py")]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # an in-process client sets it
    p = subprocess.run([*cmd, "--storage-path", str(tmp_path / "none")], capture_output=True, text=True, timeout=120,
                       env=env)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"error: key '--storage-path' = '{tmp_path / 'none'}': no MLflow store there yet (run `make run` or a job "
        "first)"]
    assert not (tmp_path / "none").exists()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.experiment_id(tracking.client(uri), "reconlab-xor", storage_dir=str(tmp_path), uri=uri)
    p = subprocess.run([*cmd, "--tracking-uri", uri, "--experiment", "reconlab-nope", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2 and p.stderr.strip() == "error: key '--experiment' = 'reconlab-nope': no such experiment in the store"
    p = subprocess.run([*cmd, "--tracking-uri", uri, "--experiment", "reconlab-xor", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2 and p.stderr.strip() == ("error: key '--experiment' = 'reconlab-xor': the experiment "
                                                      "holds no reconlab sweep run (tag reconlab.sweep)")
    assert not (tmp_path / "r").exists()
    # an empty store still gives a report: every installed study says its command
    p = subprocess.run([*cmd, "--tracking-uri", uri, "--out", str(tmp_path / "r")], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0 and p.stdout.startswith(f"report: {tmp_path / 'r' / 'index.html'}")
    assert (tmp_path / "r" / "index.html").read_text().count('class="missing"') == len(dashboards.installed_sections())
