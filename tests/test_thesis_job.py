"""jobs/thesis_comparison.py end to end (real Ray Train fits of a classifier
roster, real Ray Tune trials, real MLflow): one smoke run."""

import pytest
import torch

from jobutil import run_job, runs_by_kind


@pytest.mark.slow
def test_smoke_comparison_pairs_every_classifier_and_logs_the_verdicts(tmp_path):
    from reconlab import tracking

    p = run_job("thesis_comparison.py", "--smoke-test", "--storage-path", str(tmp_path / "store"), "--seed", "7")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "training 11 classifier models with Ray Train in 2 run(s) at once" in out
    assert "| tv_l2 | 0.1 | 30 | task1 |" in out and "| tv_l2 | 0.1 | 30 | task2 |" in out
    assert "| SGD inverts better than Adam (ch. 2) | bn |" in out
    assert "3-D spherical prototype head" in out and "VAE intermediate classes make Adam invert better" in out
    assert "sweep seed 7" in out
    assert "readability check: " in out and "% of real test digits pass)" in out
    c, runs = runs_by_kind(f"sqlite:///{tmp_path}/store/mlflow.db", "reconlab-thesis-smoke")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FINISHED" and parent.data.params["seed"] == "7"
    assert 0 <= float(parent.data.params["real_readable_rate"]) <= 1
    arts = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"verdicts.md", "verdicts.csv", "accuracy_by_config.md", "tv_l2", "vae_latent_tsne.png",
            "vae_intermediate_examples.png"} <= arts
    assert {a.path for a in c.list_artifacts(parent.info.run_id, "tv_l2")} >= {"tv_l2/adam_vae-bn_task1.png",
                                                                               "tv_l2/sphere3-bn_task2.png"}
    (trial,) = runs["trial"]
    m = trial.data.metrics
    assert trial.info.status == "FINISHED"
    assert [h.step for h in c.get_metric_history(trial.info.run_id, "acc_task1")] == [15, 30]
    for g in ("sgd-bn", "adam-bn", "adam_vae-bn", "sphere3-bn"):
        assert 0 <= m[f"readable_task1.{g}"] <= m[f"acc_task1.{g}"] <= 1 and -1 <= m[f"realism_task2.{g}"] <= 1
    # the VAE: its own Ray Train run, with the intermediate examples and the t-SNE of its latent space
    vaes = {r.data.tags[tracking.TAG_VARIANT]: r for r in runs["train"] if r.data.tags[tracking.TAG_FAMILY] == "vae"}
    assert set(vaes) == {"vae", "reader_vae"}  # the readability check's VAE: another seed, its own run
    assert vaes["reader_vae"].info.status == "FINISHED" and parent.data.params["model_uri.reader_vae"]
    vae = vaes["vae"]
    assert vae.info.status == "FINISHED" and "test_neg_elbo" in vae.data.metrics
    assert {"latent_tsne.png", "intermediate_examples.png", "intermediate_examples.json", "model"} <= {
        a.path for a in c.list_artifacts(vae.info.run_id)}
    assert parent.data.params["model_uri.vae"] == f"runs:/{vae.info.run_id}/model"
    # one run per classifier and verifier, trained by two roster runs, each with its epochs and model
    train = {r.data.tags[tracking.TAG_VARIANT]: r for r in runs["train"] if r.data.tags[tracking.TAG_FAMILY] != "vae"}
    assert set(train) == {"verifier", "verifier_mlp", "verifier_lenet_fgsm", "sgd-bn-s1", "sgd-bn-s2", "adam-bn-s1",
                          "adam-bn-s2", "adam_vae-bn-s1", "adam_vae-bn-s2", "sphere3-bn-s1", "sphere3-bn-s2"}
    assert train["adam_vae-bn-s1"].data.params["vae_mix"] == "0.5"
    for r in train.values():
        assert r.info.status == "FINISHED" and r.data.metrics["epoch"] == 1 and "test_acc" in r.data.metrics
        assert {a.path for a in c.list_artifacts(r.info.run_id, "model")} == {"model/model.json",
                                                                             "model/state_dict.pt"}
    assert "max_cos" in train["sphere3-bn-s1"].data.metrics
    # a model of a roster run is the model a fit of its own would give: its training, replayed here on one
    # thread as the Ray Train worker ran it, reaches the same test accuracy exactly
    from reconlab.data import load_dataset
    from reconlab.models import build
    from reconlab.training.classifier import evaluate, make_optimizer, recipe_spec, train_epoch

    spec = recipe_spec("sgd", "bn", 1, epochs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(spec.seed)
    model = build(spec.builder, **spec.model_kwargs())
    opt = make_optimizer(spec, model.parameters())
    ds = load_dataset("digits", None)
    try:
        for e in range(2):
            train_epoch(model, opt, ds.x_train, ds.y_train, spec, e, 0, 1, "cpu")
    finally:
        torch.set_num_threads(threads)
    assert evaluate(model, ds.x_test, ds.y_test)["test_acc"] == pytest.approx(
        train["sgd-bn-s1"].data.metrics["test_acc"], abs=1e-6)
