import os
import shutil
import tempfile

import pytest
import torch

# Keep test numerics identical whatever the machine.
torch.set_num_threads(2)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")  # as the jobs' init_ray sets it

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session", autouse=True)
def new_stores_from_one_migration(tmp_path_factory):
    """Every new SQLite MLflow store a test opens in this process gets its
    tables from one store migrated once per session (its schema's SQL,
    replayed: milliseconds), instead of MLflow running its migrations again
    (2-8 s on this machine, for each of about a hundred stores). The schema
    is the one MLflow's migrations made; jobs the tests start as subprocesses
    create their stores exactly as users' jobs do."""
    import sqlite3

    import mlflow.store.db.utils as db_utils
    import mlflow.store.model_registry.sqlalchemy_store as registry_store

    from reconlab import tracking

    d = tmp_path_factory.mktemp("template-store")
    tracking.client(f"sqlite:///{d}/mlflow.db")  # MLflow's own migrations, once
    con = sqlite3.connect(d / "mlflow.db")
    script = "\n".join(line for line in con.iterdump()  # the rows migrations write, not the Default experiment
                       if not line.startswith(('INSERT INTO "experiments"', 'INSERT INTO "experiment_tags"')))
    con.close()
    migrate = db_utils._initialize_tables

    def replay(engine):
        if engine.url.get_backend_name() != "sqlite":
            return migrate(engine)
        raw = engine.raw_connection()
        try:
            raw.driver_connection.executescript(script)
            raw.commit()
        finally:
            raw.close()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(db_utils, "_initialize_tables", replay)
        mp.setattr(registry_store, "_initialize_tables", replay)
        yield


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def digits():
    from reconlab.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def smoke_ray_tmp():
    """A short RAY_TMPDIR for the smoke run (Ray's socket paths must stay
    under 107 bytes), so that its session logs can be grepped too."""
    d = tempfile.mkdtemp(prefix="rl-ray-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory, smoke_ray_tmp):
    """One inversion smoke run, shared: later tests check what it left behind
    (tests/test_inversion_job.py) and that none of the fake secrets in its
    environment got anywhere (tests/test_security.py)."""
    from jobutil import FAKE_SECRETS, run_job

    d = tmp_path_factory.mktemp("smoke")
    p = run_job("inversion_sweep.py", "--smoke-test", "--storage-path", str(d),
                env={**FAKE_SECRETS, "RAY_TMPDIR": smoke_ray_tmp})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return d, p
