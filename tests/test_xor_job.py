"""jobs/xor_decryption.py end to end (real Ray, real MLflow, real AES). Its
bad-input contract is in tests/test_bad_input.py."""

import pytest

from jobutil import find_needles, run_job, runs_by_kind

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def xor_smoke(tmp_path_factory):
    d = tmp_path_factory.mktemp("xor")
    (d / "README.md").write_text("# x\n<!-- reconlab:xor-table-i -->\nold\n<!-- /reconlab:xor-table-i -->\ntail\n")
    p = run_job("xor_decryption.py", "--smoke-test", "--storage-path", str(d), "--readme", str(d / "README.md"),
                env={"RECONLAB_XOR_KEY": ""})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return d, p


def test_smoke_prints_table_one_with_the_papers_numbers(xor_smoke):
    _, p = xor_smoke
    out = p.stdout
    assert "Table I, reproduced on 'natural'" in out
    for row in ("| U-Net (CTR) |", "| U-Net (CBC) |", "| mean of train set | 13.9 | 0.40 | 13.9 | 0.40 | 11.8 | 0.16 |",
                "| decryption with the key (CTR) | +inf | 1.00 |", "| keystream oracle + per-pixel Bayes (CTR) | +inf | 1.00 |"):
        assert row in out, row
    assert "noise-free keystream oracle from one known pair is exact: MET" in out
    assert "mlflow ui --host 127.0.0.1" in out


def test_smoke_writes_table_one_into_the_readme_block(xor_smoke):
    d, p = xor_smoke
    text = (d / "README.md").read_text()
    block = text.split("<!-- reconlab:xor-table-i -->\n")[1].split("<!-- /reconlab:xor-table-i -->")[0]
    assert text.startswith("# x\n") and text.endswith("<!-- /reconlab:xor-table-i -->\ntail\n")
    assert "old" not in block and block.startswith("| method | PSNR 0 |")
    assert block.split("\n\n<sub>")[0] in p.stdout  # the table the job printed
    assert "| U-Net (CTR) |" in block and "<sub>Written by jobs/xor_decryption.py" in block


def test_smoke_leaves_one_finished_run_per_trial_with_curve_figure_and_model(xor_smoke):
    d, _ = xor_smoke
    c, runs = runs_by_kind(f"sqlite:///{d}/mlflow.db", "reconlab-xor-smoke")
    (parent,) = runs["sweep"]
    assert parent.info.status == "FINISHED"
    assert {"table_i.md", "table_i.csv", "best_ctr_0", "best_cbc_0.01"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert parent.data.params["key_sha256"] and parent.data.params["key_source"] == "seed"
    trials = runs["trial"]
    settings = sorted((t.data.params["mode"], float(t.data.params["noise"])) for t in trials)
    assert settings == [("cbc", 0.0), ("cbc", 0.01), ("ctr", 0.0), ("ctr", 0.01)]  # one per stratum
    for t in trials:
        assert t.info.status == "FINISHED" and t.data.tags["mlflow.parentRunId"] == parent.info.run_id
        steps = [m.step for m in c.get_metric_history(t.info.run_id, "test_psnr")]
        assert steps == list(range(1, int(t.data.params["epochs"]) + 1)), steps
        arts = {a.path for a in c.list_artifacts(t.info.run_id)}
        assert "decryption.png" in arts and "model" in arts
        assert {a.path for a in c.list_artifacts(t.info.run_id, "model")} == {"model/model.json", "model/state_dict.pt"}


def test_no_key_material_anywhere_in_the_store(xor_smoke):
    """Neither the key (raw, hex, base64, Python's repr of the bytes, the
    whole digest it is derived from) nor the keystream is in MLflow, Ray's
    storage or the job's output. (The default key is derived from the logged
    seed, so it is public by construction; docs/security.md.)"""
    import base64
    import hashlib

    from reconlab.operators.xor_aes import XorAES

    d, p = xor_smoke
    op = XorAES.from_seed(0)
    digest = hashlib.sha256(b"reconlab/xor_aes/key/0").digest()
    assert op.key == digest[:16]  # the derivation this test knows is the job's
    needles = {"key": op.key, "key hex": op.key.hex().encode(), "key HEX": op.key.hex().upper().encode(),
               "key base64": base64.b64encode(op.key).rstrip(b"="),
               "key urlsafe base64": base64.urlsafe_b64encode(op.key).rstrip(b"="),
               "key repr": repr(op.key)[2:-1].encode(), "derivation digest hex": digest.hex().encode(),
               "keystream": op.keystream(32, 32).numpy().tobytes()[:64],
               "keystream base64": base64.b64encode(op.keystream(32, 32).numpy().tobytes()[:48])}
    hits, n_files = find_needles([d], needles, texts={"stdout": p.stdout, "stderr": p.stderr})
    assert n_files > 20
    assert not hits, f"key material in {hits}"


# Bad input (exit 2, one line, before Ray, nothing left behind): tests/test_bad_input.py
