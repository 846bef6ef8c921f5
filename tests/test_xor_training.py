"""The XOR family's U-Net and its Ray Train loop: learning, Parquet streamed
by Ray Data, and resuming from a checkpoint without repeating epochs."""

import dataclasses
import json
import os

import pytest
import torch

from reconlab.models import build
from reconlab.operators.xor_aes import XorAES
from reconlab.training.xor_unet import Cipherimages, XorTrainSpec, autocast_dtype, memory_batches, train_epoch

KEY, IV = bytes(range(16)), bytes(range(16, 32))


def test_unet_shapes_and_size_check():
    m = build("unet", width=4, depth=2)
    assert m(torch.rand(2, 12, 16, 16)).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="divisible by 2\\^depth = 4"):
        m(torch.rand(1, 12, 18, 18))
    assert sum(p.numel() for p in build("unet", width=16, depth=3).parameters()) > 400_000


def test_spec_rejects_bad_values():
    for bad in ({"mode": "ecb"}, {"noise": -0.1}, {"width": 0}, {"lr": float("nan")}):
        with pytest.raises(ValueError):
            XorTrainSpec(**bad)


def test_train_epoch_learns_ctr_decryption_in_process():
    """Two epochs on 1,024 natural patches: the loss falls and the run is
    reproducible; float32 is pinned, bfloat16 autocast (where the CPU has it)
    follows float32 closely."""
    from reconlab.data import load_dataset

    x = load_dataset("natural").x_train[::16][:1024]
    spec = XorTrainSpec(width=8, depth=2, epochs=2, batch_size=32, seed=0, amp=False)

    def run(spec=spec):
        torch.manual_seed(0)
        m = build("unet", **spec.model_kwargs())
        opt = torch.optim.Adam(m.parameters(), lr=spec.lr)
        make = Cipherimages(XorAES(KEY, IV, "ctr"), x, "cpu", 0.0)
        return [train_epoch(m, opt, memory_batches(x, spec, e, 0, 1), make, spec, e, 0, "cpu")[0] for e in range(2)]

    a = run()
    assert a == run()  # seeded: batches, noise and initial weights
    assert a[1] < 0.5 * a[0]
    assert a == pytest.approx([0.2011, 0.0535], abs=2e-3)  # pinned (torch 2.13 CPU)
    if autocast_dtype("cpu") is not None:
        bf16 = run(dataclasses.replace(spec, amp=True))
        assert bf16 != a and bf16 == pytest.approx(a, rel=0.1)


def test_bf16_autocast_only_where_the_cpu_has_it():
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert autocast_dtype("cpu") == (torch.bfloat16 if native else None)


@pytest.mark.slow
def test_fit_streams_parquet_and_resumes_without_repeating_epochs(tmp_path):
    """Ray Train + Ray Data on Parquet shards written here; a second fit with
    the same name continues at the next epoch."""
    import ray
    from ray.train import UserCallback

    from reconlab.data.parquet import write_shards
    from reconlab.training.xor_unet import fit_xor_unet

    g = torch.Generator().manual_seed(0)
    write_shards(str(tmp_path / "data" / "train"), torch.rand(64, 3, 16, 16, generator=g), torch.zeros(64, dtype=torch.int64), 16)
    write_shards(str(tmp_path / "data" / "test"), torch.rand(8, 3, 16, 16, generator=g), torch.zeros(8, dtype=torch.int64))
    log = tmp_path / "epochs.jsonl"

    class Record(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            with open(log, "a") as f:
                f.write(json.dumps(metrics[0]) + "\n")

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for epochs in (1, 2):
            spec = XorTrainSpec(width=4, depth=2, epochs=epochs, batch_size=16)
            r = fit_xor_unet(spec, XorAES(KEY, IV, "cbc"), dataset="parquet", data_root=str(tmp_path / "data"),
                             num_workers=1, use_gpu=False, storage_path=str(tmp_path / "ray"), name="xor-resume",
                             callbacks=[Record()], stream=True)
            assert r.error is None
    finally:
        ray.shutdown()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [m["epoch"] for m in rows] == [0, 1]  # epoch 0 was not repeated
    assert all(m["images_per_s"] > 0 and 0 < m["test_ssim"] < 1 for m in rows)


def test_oracle_inputs_carry_the_posterior_features():
    """The moonshot's inputs: 12 cipher channels + 63 oracle channels whose
    MMSE channels equal the per-pixel Bayes decoder's output."""
    from reconlab.operators.xor_oracle import BayesDecoder

    g = torch.Generator().manual_seed(0)
    x = (torch.randint(0, 256, (64, 3, 8, 8), generator=g) / 255.0).float()
    op = XorAES(KEY, IV, "ctr")
    spec = XorTrainSpec(noise=0.01, inputs="oracle", width=4, depth=2, epochs=1, batch_size=16)
    dec = BayesDecoder(op.keystream(8, 8), 0.01, x)
    make = Cipherimages(op, x, "cpu", 0.01, dec)
    inp = make(x[:16], torch.arange(16), torch.Generator().manual_seed(1))
    assert inp.shape == (16, spec.model_kwargs()["in_channels"], 8, 8) == (16, 75, 8, 8)
    mmse = dec.decode(inp[:, :12])
    assert torch.allclose(inp[:, 12::21], mmse, atol=1e-4)  # channel 0 of each colour's 21
    m = build("unet", **spec.model_kwargs())
    loss, n = train_epoch(m, torch.optim.Adam(m.parameters()), memory_batches(x, spec, 0, 0, 1), make, spec, 0, 0, "cpu")
    assert n == 64 and loss == loss
    with pytest.raises(ValueError, match="oracle inputs need mode 'ctr' and noise > 0"):
        XorTrainSpec(inputs="oracle", noise=0.0)
