"""jobs/inversion_sweep.py end to end: a real local Ray runtime and a real
MLflow SQLite store, as `make run --smoke-test` would use them."""


import pytest

from jobutil import run_job, runs_by_kind

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory):
    """One smoke run, shared: later tests check what it left behind."""
    d = tmp_path_factory.mktemp("smoke")
    p = run_job("inversion_sweep.py", "--smoke-test", "--storage-path", str(d))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return d, p


def test_smoke_run_prints_the_table_and_ui_hint(smoke_store):
    _, p = smoke_store
    out = p.stdout
    assert "best verifier_acc per classifier variant" in out
    for v in ("sgd", "adam", "adam_fgsm"):
        assert f"| {v} | 2 |" in out
    assert "SGD inverts better than Adam" in out and "FGSM training repairs Adam" in out
    assert "mlflow ui --host 127.0.0.1" in out


def test_smoke_run_leaves_one_run_per_trial_with_full_history(smoke_store):
    d, _ = smoke_store
    uri = f"sqlite:///{d}/mlflow.db"
    c, runs = runs_by_kind(uri, "reconlab-inversion-smoke")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FINISHED" and parent.data.tags["reconlab.sweep"] == "inversion"
    assert {"summary.md", "summary.csv", "search_space.json"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"best_sgd", "best_adam", "best_adam_fgsm"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert parent.data.params["seed"] == "0"
    trials = runs["trial"]
    assert len(trials) == 6 and len({t.data.tags["reconlab.trial_id"] for t in trials}) == 6
    for t in trials:
        assert t.info.status == "FINISHED"
        assert t.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {"lr", "optimizer", "variant", "steps", "seed"} <= set(t.data.params)
        steps = [m.step for m in c.get_metric_history(t.info.run_id, "verifier_acc")]
        every = int(t.data.params["report_every"])
        assert steps == list(range(every, every * len(steps) + 1, every)), steps  # gap- and duplicate-free
        assert "inversion_task1.png" in {a.path for a in c.list_artifacts(t.info.run_id)}
    assert sorted(r.data.tags["reconlab.variant"] for r in runs["train"]) == ["adam", "adam_fgsm", "sgd", "verifier"]


def test_second_run_reuses_the_logged_classifiers(smoke_store):
    d, _ = smoke_store
    p = run_job("inversion_sweep.py", "--smoke-test", "--storage-path", str(d), "--num-samples", "1")
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("reusing classifier") == 4 and "training classifier" not in p.stderr
    c, runs = runs_by_kind(f"sqlite:///{d}/mlflow.db", "reconlab-inversion-smoke")
    assert len(runs["train"]) == 4 and len(runs["sweep"]) == 2 and len(runs["trial"]) == 6 + 3


BAD_INPUT = [
    ("malformed yaml", "name: [oops\n", [], "malformed YAML"),
    ("unknown key", "name: x\nmetric: verifier_acc\nlearning_rate: 3\n", [], "key 'learning_rate' = 3: unknown key"),
    ("unknown variant", "name: x\nmetric: verifier_acc\nfixed: {variant: rmsprop}\n", [], "unknown classifier variant"),
    ("mnist without data", "name: x\nmetric: verifier_acc\ndataset: mnist\n", [], "--data-root"),
    ("unreachable tracking", "name: x\nmetric: verifier_acc\n", ["--tracking-uri", "http://127.0.0.1:9"],
     "key '--tracking-uri' = 'http://127.0.0.1:9': tracking server unreachable"),
    ("bad flag", "name: x\nmetric: verifier_acc\n", ["--num-samples", "0"], "key '--num-samples' = 0"),
]


@pytest.mark.parametrize("case,yaml_text,extra,message", BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(tmp_path, case, yaml_text, extra, message):
    space = tmp_path / "space.yaml"
    space.write_text(yaml_text)
    store = tmp_path / "store"
    p = run_job("inversion_sweep.py", "--search-space", str(space), "--storage-path", str(store), *extra, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (store / "mlflow.db").exists() and not (store / "tune").exists()


def test_unwritable_storage_path_exits_2(tmp_path):
    p = run_job("inversion_sweep.py", "--storage-path", "/proc/reconlab-nope", timeout=120)
    assert p.returncode == 2 and "--storage-path" in p.stderr and len(p.stderr.strip().splitlines()) == 1
