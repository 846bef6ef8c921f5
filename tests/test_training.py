"""The classifier family under a real Ray runtime and a real MLflow store."""

import dataclasses
import os

import pytest
import torch

from reconlab import tracking
from reconlab.models import load_model_dir
from reconlab.training.classifier import VARIANTS, fit_classifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_two_workers_match_one_worker_at_the_same_global_batch(ray_local, tmp_path, digits):
    from reconlab.training.classifier import accuracy

    spec = dataclasses.replace(VARIANTS["sgd"], epochs=4)
    acc = {}
    for n in (1, 2):
        r = fit_classifier(spec, num_workers=n, use_gpu=False, storage_path=str(tmp_path), name=f"w{n}", threads=1)
        assert r.error is None
        with r.checkpoint.as_directory() as d:
            acc[n] = accuracy(load_model_dir(d), digits.x_test, digits.y_test)
    assert acc[1] > 0.9
    assert abs(acc[1] - acc[2]) <= 0.01, acc


def test_training_run_is_logged_and_reused(ray_local, tmp_path, digits):
    from reconlab.training.logged import ensure_classifier

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = tracking.client(uri)
    exp = tracking.experiment_id(c, "t", storage_dir=str(tmp_path), uri=uri)
    spec = dataclasses.replace(VARIANTS["adam_fgsm"], epochs=2)
    meta, state, run_id = ensure_classifier(c, exp, "adam_fgsm", spec, dataset=digits, data_root=None, uri=uri,
                                            storage_dir=str(tmp_path), log=lambda m: None)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.TAG_FAMILY] == "classifier" and run.data.tags[tracking.TAG_VARIANT] == "adam_fgsm"
    assert run.data.params["fgsm_eps"] == "0.1" and run.data.params["fgsm_alpha"] == "0.5"
    hist = c.get_metric_history(run_id, "test_acc")
    assert sorted(m.step for m in hist) == [0, 1]  # one point per epoch, none doubled
    assert {a.path for a in c.list_artifacts(run_id, "model")} == {"model/model.json", "model/state_dict.pt"}
    assert meta["builder"] == "classifier_small" and set(state) == set(load_model_state_keys())
    # a second job with the same spec and data reuses it instead of training
    again = ensure_classifier(c, exp, "adam_fgsm", spec, dataset=digits, data_root=None, uri=uri,
                              storage_dir=str(tmp_path), log=lambda m: None)
    assert again[2] == run_id
    assert len(tracking.find_runs(c, exp, {tracking.TAG_FAMILY: "classifier"})) == 1
    # ... and it is a registered MLflow model (issue 30): pt2, no pickle, loads with MLflow and classifies as ours
    import mlflow.artifacts
    import mlflow.pytorch

    from reconlab.models import build
    from reconlab.models.registry import TAG_RUN

    from reconlab.models import registry

    (v,) = c.search_model_versions("name = 'reconlab-classifier-adam_fgsm'")
    want = {tracking.TAG_SPEC: spec.digest(), tracking.TAG_DATA: digits.fingerprint()}
    assert registry.find(c, exp, "classifier", "adam_fgsm", want) == run_id  # what the reuse above looked up
    assert registry.find(c, exp, "classifier", "adam_fgsm", {**want, tracking.TAG_SPEC: "other"}) is None
    assert v.tags[TAG_RUN] == run_id and v.tags[tracking.TAG_SPEC] == spec.digest()
    assert v.tags[tracking.TAG_DATA] == digits.fingerprint()
    assert c.get_run(run_id).data.tags["reconlab.registered_model"] == "models:/reconlab-classifier-adam_fgsm/1"
    mine = build(meta["builder"], **meta["kwargs"])
    mine.load_state_dict(state)
    theirs = mlflow.pytorch.load_model("models:/reconlab-classifier-adam_fgsm/1")
    x = digits.x_test[:64]
    assert torch.allclose(theirs(x), mine.eval()(x), atol=1e-5)
    assert (theirs(x).argmax(1) == digits.y_test[:64]).float().mean() > 0.5  # it classifies digits
    local = mlflow.artifacts.download_artifacts("models:/reconlab-classifier-adam_fgsm/1", dst_path=str(tmp_path / "m"))
    stored = {os.path.relpath(os.path.join(r, f), local) for r, _, fs in os.walk(local) for f in fs}
    assert "data/model.pt2" in stored and not [f for f in stored if f.endswith((".pkl", ".pickle", ".pth"))]


def load_model_state_keys():
    from reconlab.models import build

    return build("classifier_small").state_dict().keys()



def test_train_workers_ask_for_a_gpu_when_told_or_when_there_is_one(ray_local, monkeypatch):
    """A CPU-only head launching training on an autoscaling GPU cluster sees
    no GPU yet: RECONLAB_USE_GPU decides there, and the jobs forward it to
    every node; otherwise a GPU here or in the cluster does."""
    import ray

    from reconlab.sweep.runner import FORWARDED_ENV
    from reconlab.training.launch import USE_GPU_ENV, want_gpu

    assert USE_GPU_ENV in FORWARDED_ENV
    monkeypatch.delenv(USE_GPU_ENV, raising=False)
    assert want_gpu() == (torch.cuda.is_available() or ray.cluster_resources().get("GPU", 0) > 0)
    for value, expected in (("1", True), ("yes", True), ("0", False), ("false", False)):
        monkeypatch.setenv(USE_GPU_ENV, value)
        assert want_gpu() is expected


def test_a_non_finite_training_loss_fails_the_run_naming_the_epoch():
    from reconlab.training.launch import finite_loss

    assert finite_loss(0.5, 3) == 0.5
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(FloatingPointError, match="at epoch 3"):
            finite_loss(bad, 3)


def test_models_registered_from_several_threads_at_once_all_register(tmp_path):
    """``ensure_models`` closes its rosters' runs in threads: their exports run
    at once, and torch.export's process-wide state made some fail (two of
    seven in one smoke run) until registering was serialised."""
    from concurrent.futures import ThreadPoolExecutor

    from reconlab.models import build, registry

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = tracking.client(uri)
    exp = tracking.experiment_id(c, "t", storage_dir=str(tmp_path), uri=uri)
    runs = [c.create_run(exp).info.run_id for _ in range(4)]
    x = torch.rand(2, 1, 28, 28)

    def register(i):
        return registry.register(c, runs[i], build("classifier_small"), x, family="classifier", variant=f"t{i}",
                                 tags={})

    with ThreadPoolExecutor(4) as pool:
        uris = list(pool.map(register, range(4)))
    assert uris == [f"models:/reconlab-classifier-t{i}/1" for i in range(4)]
