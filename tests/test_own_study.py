"""A study written outside the repository, as the README's "Add your own
study" shows it (issue 28): with no edit under platform/, it is listed as an
installed study, runs with --smoke-test through Ray Tune + Optuna into
MLflow under an experiment name of its own, survives a store outage and a
SIGKILL of its driver (``reconlab sync``, then ``--resume``: one run per
trial), and gets a section in the report."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

import faults
from jobutil import REPO

EXPERIMENT = "my-momentum"  # no reconlab-<study> name: the report finds the study from the sweep run
TRIALS = 96  # its trials take ~0.2 s each: enough of them that the driver dies mid-sweep even when the
# first delivery round comes late (48 once all ended before it, on a loaded machine)


def readme_files() -> dict[str, str]:
    """The files of the README's "Add your own study", by name."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    found = re.findall(r"<!-- reconlab:own-study (\S+) -->\n```[a-z]*\n(.*?)```\n", text, re.S)
    return dict(found)


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """The README's study in a directory outside the repository, with the
    metadata ``pip install`` writes for a package declaring the entry point
    (``momentum = "momentum:STUDY"``), so it is installed as far as
    ``importlib.metadata`` can tell."""
    d = tmp_path_factory.mktemp("user")
    files = readme_files()
    assert set(files) == {"momentum/__init__.py", "momentum/space.yaml", "my_job.py"}
    for name, text in files.items():
        os.makedirs(d / os.path.dirname(name), exist_ok=True)
        (d / name).write_text(text)
    meta = d / "momentum-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: momentum\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text("[reconlab.studies]\nmomentum = momentum:STUDY\n")
    assert not str(d).startswith(REPO)
    return d


def ends(spool: str) -> int:
    """Trials the spool has seen end."""
    with open(spool) as f:
        return sum('"op": "end"' in line for line in f)


def env_for(user_dir, **extra) -> dict:
    e = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    e["PYTHONPATH"] = os.pathsep.join([str(user_dir), *filter(None, [e.get("PYTHONPATH")])])
    e.update(extra)
    return e


def reconlab(user_dir, *args, timeout=180):
    return subprocess.run([sys.executable, "-c", "import sys; from reconlab.cli import main; sys.exit(main())", *args],
                          capture_output=True, text=True, timeout=timeout, env=env_for(user_dir), cwd=user_dir)


def test_the_readme_study_is_listed_and_refused_like_a_built_in_one(user_dir, tmp_path):
    p = reconlab(user_dir, "studies")
    assert p.returncode == 0, p.stderr
    assert re.search(r"^momentum +Heavy-ball momentum on a quadratic$", p.stdout, re.M), p.stdout
    assert re.search(r"^ct +The CT case study on ASTRA$", p.stdout, re.M)
    # its bad input is the platform's: one line, exit 2, before Ray
    bad = tmp_path / "bad.yaml"
    bad.write_text((user_dir / "momentum" / "space.yaml").read_text().replace("fixed: {steps: 100}",
                                                                              "fixed: {stepz: 100}"))
    p = reconlab(user_dir, "run", "momentum", "--search-space", str(bad), "--storage-path", str(tmp_path / "s"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f"{bad}, key 'fixed.stepz' = 100: unknown trial parameter" in p.stderr
    assert not (tmp_path / "s").exists()
    p = reconlab(user_dir, "run", "nope")
    assert p.returncode == 2 and "'nope': not installed" in p.stderr and "momentum" in p.stderr


@pytest.mark.slow
def test_the_readme_study_runs_survives_an_outage_and_a_kill_and_is_reported(user_dir, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    port = faults.free_port()
    backend = f"sqlite:///{store}/mlflow.db"
    uri = f"http://127.0.0.1:{port}"
    job = [sys.executable, "my_job.py", "--smoke-test", "--experiment", EXPERIMENT, "--storage-path", str(store),
           "--tracking-uri", uri, "--num-samples", str(TRIALS)]
    pattern = str(store / "tune" / "momentum-*")
    server = faults.start_mlflow_server(port, backend)
    p = subprocess.Popen(job, cwd=user_dir, env=env_for(user_dir, RECONLAB_FLUSH_TIMEOUT_S="30"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # trials reach the store; the store goes away and trials end into the spool; the driver dies mid-sweep
        spool = faults.wait_for_delivered_lines(p, pattern, 8, timeout=240)
        assert spool, p.communicate()
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        ends_at_outage = ends(spool)
        t0 = time.time()
        while ends(spool) == ends_at_outage and p.poll() is None and time.time() - t0 < 120:
            time.sleep(0.02)
        faults.kill_group(p)
    finally:
        faults.kill_group(p)
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert ends_at_outage < ends(spool) < TRIALS  # a trial ended during the outage; the driver died mid-sweep
    # the store is back: `reconlab sync` (no study code) delivers what waited
    server = faults.start_mlflow_server(port, backend)
    try:
        s = reconlab(user_dir, "sync", str(store), "--tracking-uri", uri)
        assert s.returncode == 0, s.stderr
        delivered = int(re.search(r": (\d+) delivered, 0 left", s.stdout).group(1))
        assert delivered >= 2, s.stdout  # at least the end line and a report of the outage
        # --resume finishes the sweep: one FINISHED run per trial, every step once
        r = subprocess.run([*job, "--resume"], cwd=user_dir, env=env_for(user_dir), capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "Heavy-ball momentum on a quadratic: the best trials of 'momentum' by loss (min)" in r.stdout
        from reconlab import tracking
        from reconlab.sweep import study

        c, parent, runs = faults.sweep_runs(uri, EXPERIMENT, "momentum")
        assert len(runs) == TRIALS
        for tid, run in runs.items():
            assert run.info.status == "FINISHED", (tid, run.info.status)
            assert sorted(m.step for m in c.get_metric_history(run.info.run_id, "loss")) == list(range(1, 101))
            assert [a.path for a in c.list_artifacts(run.info.run_id)] == ["result.csv"]
        assert parent.info.status == "FINISHED"
        assert {k: parent.data.tags.get(k) for k in (study.TAG_STUDY, study.TAG_TITLE, study.TAG_COMMAND)} == {
            study.TAG_STUDY: "momentum", study.TAG_TITLE: "Heavy-ball momentum on a quadratic",
            study.TAG_COMMAND: "python my_job.py"}
        assert parent.data.metrics["trials"] == TRIALS
        table = c.download_artifacts(parent.info.run_id, "best_trials.md", str(tmp_path))
        best = min(runs.values(), key=lambda t: t.data.metrics["loss"])
        assert best.data.tags[tracking.TAG_TRIAL] in open(table).read().splitlines()[2]
        # the report: the study's own section, by default and for --experiment
        for extra in ([], ["--experiment", EXPERIMENT]):
            out = tmp_path / f"report{len(extra)}"
            b = subprocess.run([sys.executable, os.path.join(REPO, "dashboards", "build_report.py"), "--tracking-uri",
                                uri, "--storage-path", str(store), "--out", str(out), *extra], capture_output=True,
                               text=True, timeout=180, env=env_for(user_dir))
            assert b.returncode == 0, b.stderr
            page = (out / "index.html").read_text()
            section = page[page.index('<section id="momentum">'):]
            section = section[:section.index("</section>")]
            assert "<h2>Heavy-ball momentum on a quadratic</h2>" in section and "research: Polyak 1964" in section
            assert f"in <code>{EXPERIMENT}</code>" in section and "best_trials.md" in section
            assert f"trials: {TRIALS} finished" in section
            assert ('id="ct"' in page) == (not extra)  # installed studies without runs: only in the full report
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
