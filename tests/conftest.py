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


DEEP_DECODER_SMOKE = """\
name: dd
metric: psnr_best_fit
num_samples: 1
stratify: [method, sigma]
scheduler: {type: fifo}
resources_per_trial: {cpu: 1, gpu: 0}
fixed: {image: astronaut, crop: 64, iterations: 60, report_every: 20, stop_window: 10, stop_patience: 20,
        dip_channels: 16, dip_scales: 3, k: 16}
search:
  method: {type: choice, values: [decoder, dip]}
  sigma: {type: choice, values: [0.0, 25.0]}
  lr: {type: loguniform, low: 0.005, high: 0.02}
"""


@pytest.fixture(scope="session")
def two_jobs_one_new_store(tmp_path_factory):
    """The deep decoder's and the prototypes' smoke jobs, started at the same
    moment in one new storage directory (so both create its MLflow store at
    once): {job: CompletedProcess}, and the directory. Each job's own test
    checks its results; tests/test_tracking.py checks they both finished."""
    from jobutil import run_jobs_together

    d = tmp_path_factory.mktemp("two-jobs")
    space = d / "dd.yaml"
    space.write_text(DEEP_DECODER_SMOKE)
    store = d / "store"
    dd, proto = run_jobs_together(
        ("deep_decoder_sweep.py", "--smoke-test", "--search-space", str(space), "--storage-path", str(store)),
        ("prototype_sweep.py", "--smoke-test", "--storage-path", str(store)))
    return {"deep_decoder": dd, "prototypes": proto}, store
