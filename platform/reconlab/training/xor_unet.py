"""The XOR-decryption family (Hauptmann & Adler): a U-Net trained with Ray Train
to map AES cipherimages back to images, MSE loss, Adam.

CTR cipherimages are made on the fly on each worker's device from the clean
images (a XOR with the position keystream), with fresh seeded noise every
epoch; CBC cipherimages are encrypted once with ``cryptography`` and only the
noise is drawn on the fly. Each global batch is split by rank, so N workers
see the batches one worker would. With ``amp`` on, the forward pass runs
under bfloat16 autocast on GPUs and on CPUs with native bfloat16 (AVX512-BF16
or AMX): 1.4x the images/s of float32 on a 2-core AVX512-BF16 machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from typing import Literal

import torch

from reconlab.operators.xor_aes import XorAES, bytes_to_image, clamp_finite, to_hwc_bytes


@dataclasses.dataclass(frozen=True)
class XorTrainSpec:
    """Everything that determines a trained XOR U-Net (the key enters by fingerprint)."""

    mode: Literal["ctr", "cbc"] = "ctr"
    noise: float = 0.0  # std of the Gaussian noise on cipherimages (paper: 0.01)
    width: int = 16
    depth: int = 3
    batch_norm: bool = True
    lr: float = 2e-3
    lr_schedule: Literal["constant", "cosine"] = "constant"  # the paper: constant; cosine decays per epoch
    batch_size: int = 32  # global batch, split over the workers
    epochs: int = 10
    max_train_images: int = 0  # 0: the whole training set
    amp: bool = True  # bfloat16 autocast on GPUs and bf16-capable CPUs (see autocast_dtype)
    inputs: Literal["cipher", "oracle"] = "cipher"  # oracle: + the per-pixel Bayes features (ours, not the paper's)
    seed: int = 0
    builder: str = "unet"

    def __post_init__(self):
        if self.mode not in ("ctr", "cbc"):
            raise ValueError(f"unknown mode {self.mode!r} (known: ctr, cbc)")
        if not (0 <= self.noise < 1 and math.isfinite(self.noise)):
            raise ValueError("noise must be in [0, 1)")
        if min(self.width, self.depth, self.batch_size, self.epochs) < 1:
            raise ValueError("width, depth, batch_size and epochs must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.max_train_images < 0:
            raise ValueError("lr must be positive and max_train_images >= 0")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r} (known: constant, cosine)")
        if self.inputs not in ("cipher", "oracle"):
            raise ValueError(f"unknown inputs {self.inputs!r} (known: cipher, oracle)")
        if self.inputs == "oracle" and (self.mode != "ctr" or self.noise <= 0):
            raise ValueError("oracle inputs need mode 'ctr' and noise > 0 (otherwise decryption is exact)")

    def lr_at(self, epoch: int) -> float:
        if self.lr_schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))

    def model_kwargs(self) -> dict:
        extra = 3 * (1 + 2 * ORACLE_CLASSES) if self.inputs == "oracle" else 0
        return {"in_channels": 12 + extra, "width": self.width, "depth": self.depth, "batch_norm": self.batch_norm}

    def digest(self, key_fingerprint: str) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "key": key_fingerprint}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


ORACLE_CLASSES = 10  # exponent classes of 8-bit values in float32: 0, then 2^-8 ... 2^0


class Cipherimages:
    """Makes the network inputs for a batch of clean images on ``device``: the
    (noisy) cipherimages, plus the oracle's per-pixel features if a
    :class:`~reconlab.operators.xor_oracle.BayesDecoder` is given."""

    def __init__(self, op: XorAES, x: torch.Tensor, device, noise: float, decoder=None, streamed: bool = False):
        self.op, self.noise, self.device = op, noise, device
        self.decoder = decoder.to(device) if decoder is not None else None
        if op.mode == "ctr":
            self.keystream = op.keystream(x.shape[-2], x.shape[-1]).to(device)
        elif not streamed:  # CBC in memory: encrypt once on the CPU (uint8, a quarter of the float size)
            self.cipher_bytes = op.encrypt_reference(x)

    def __call__(self, x_dev: torch.Tensor, idx: torch.Tensor | None, generator: torch.Generator | None):
        """``idx`` indexes the images given at construction; None (streamed
        batches) encrypts ``x_dev`` itself (CBC: with `cryptography` on the CPU)."""
        if self.op.mode == "ctr":
            b = to_hwc_bytes(x_dev) ^ self.keystream
        elif idx is None:
            b = self.op.encrypt_reference(x_dev.cpu()).to(self.device)
        else:
            b = self.cipher_bytes[idx].to(self.device)
        return self.inputs(bytes_to_image(b, self.noise, generator))

    @torch.no_grad()
    def inputs(self, cipher: torch.Tensor) -> torch.Tensor:
        if self.decoder is None:
            return cipher
        return torch.cat([cipher, self.decoder.features(cipher)], 1)


@torch.no_grad()
def predict(model, cipher: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    model.eval()
    out = [clamp_finite(model(cipher[i:i + batch_size]).float()) for i in range(0, len(cipher), batch_size)]
    return torch.cat(out)


def eval_cipherimages(op: XorAES, x_test: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    """The fixed, seeded test inputs every model and baseline is scored on."""
    g = torch.Generator().manual_seed(seed * 7919 + 17)
    return op.encrypt(x_test, noise=noise, generator=g)


def evaluate(model, inputs_test: torch.Tensor, x_test: torch.Tensor) -> dict:
    from reconlab.metrics import psnr, ssim

    dev = next(model.parameters()).device
    pred = predict(model, inputs_test.to(dev)).cpu()
    return {"test_psnr": psnr(pred, x_test).mean().item(), "test_ssim": ssim(pred, x_test).mean().item()}


def mean_baseline(x_train: torch.Tensor, x_test: torch.Tensor) -> dict:
    """The paper's trivial baseline: the training set's mean image for every input."""
    from reconlab.metrics import psnr, ssim

    m = x_train.mean(0, keepdim=True).expand_as(x_test)
    return {"test_psnr": psnr(m, x_test).mean().item(), "test_ssim": ssim(m, x_test).mean().item()}


FIGURE = "decryption.png"


def figure_png(op: XorAES, model, cipher: torch.Tensor, inputs: torch.Tensor, truth: torch.Tensor) -> bytes:
    """Like the paper's Fig. 1/2, one row per image: three of the twelve
    cipherimage channels (the high byte of R, G, B), ground truth, U-Net,
    decryption with the key (rounded to bytes, clamped)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dev = next(model.parameters()).device
    unet = predict(model, inputs.to(dev)).cpu()
    key = clamp_finite(op.decrypt(cipher))
    cols = [("cipher ch. 3", cipher[:, 3:4]), ("cipher ch. 7", cipher[:, 7:8]), ("cipher ch. 11", cipher[:, 11:12]),
            ("ground truth", truth), ("U-Net", unet), ("decryption", key)]
    fig, axes = plt.subplots(len(cipher), len(cols), figsize=(1.6 * len(cols), 1.6 * len(cipher)), squeeze=False)
    for i in range(len(cipher)):
        for j, (title, imgs) in enumerate(cols):
            im = imgs[i].clamp(0, 1).permute(1, 2, 0).numpy()
            axes[i, j].imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_axis_off()
            if i == 0:
                axes[i, j].set_title(title, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def memory_batches(x: torch.Tensor, spec: XorTrainSpec, epoch: int, rank: int, world: int):
    """(images, idx) per global batch of a seeded permutation; rank r takes every world-th."""
    g = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
    perm = torch.randperm(len(x), generator=g)
    for start in range(0, len(perm) - spec.batch_size + 1, spec.batch_size):
        idx = perm[start:start + spec.batch_size][rank::world]
        yield x[idx], idx


def stream_batches(shard, spec: XorTrainSpec, epoch: int, world: int):
    """(images, None) per batch of this worker's Ray Data shard (Parquet), shuffled locally."""
    from reconlab.data.parquet import decode

    per = max(1, spec.batch_size // world)
    for b in shard.iter_batches(batch_size=per, batch_format="numpy", drop_last=True,
                                local_shuffle_buffer_size=8 * per, local_shuffle_seed=spec.seed * 100_003 + epoch):
        yield decode(b)[0], None


def autocast_dtype(device) -> torch.dtype | None:
    """bfloat16 where the device computes it natively (CUDA; a CPU with
    AVX512-BF16 or AMX), else None: emulated bf16 is slower than float32."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16
    cpu = getattr(torch, "cpu", None)
    native = [getattr(cpu, f, None) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return torch.bfloat16 if kind == "cpu" and any(f is not None and f() for f in native) else None


def train_epoch(model, opt, batches, make, spec: XorTrainSpec, epoch: int, rank: int, device) -> tuple[float, int]:
    """One epoch over ``batches``; returns (mean loss, images this rank saw)."""
    for group in opt.param_groups:
        group["lr"] = spec.lr_at(epoch)
    noise_gen = torch.Generator(device=device).manual_seed(spec.seed * 1_000_003 + epoch * 1009 + rank)
    dtype = autocast_dtype(device) if spec.amp else None
    model.train()
    total, count = 0.0, 0
    for xb, idx in batches:
        xb = xb.to(device, non_blocking=True)
        inputs = make(xb, idx, noise_gen)  # in float32: the oracle's likelihoods need it
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            pred = model(inputs)
        loss = (pred.float() - xb).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(xb)
        count += len(xb)
    return total / max(count, 1), count


def finite_on_all_ranks(loss: float, world: int, device) -> bool:
    """Whether every rank's epoch loss is finite (ranks must agree to stop together)."""
    if world == 1:
        return math.isfinite(loss)
    import torch.distributed as dist

    bad = torch.tensor([0.0 if math.isfinite(loss) else 1.0], device=device)
    dist.all_reduce(bad)
    return bad.item() == 0


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker; resumes from the run's latest checkpoint."""
    import ray.train
    import ray.train.torch

    from reconlab.data import load_dataset
    from reconlab.models import build, save_model_dir
    from reconlab.training.launch import resume

    spec = XorTrainSpec(**config["spec"])
    op: XorAES = config["operator"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    torch.manual_seed(spec.seed)  # identical initial weights on every rank
    shard = ray.train.get_dataset_shard("train") if config.get("stream") else None
    if shard is not None:  # Parquet shards streamed by Ray Data; only the test split is loaded
        from reconlab.data.parquet import read_split, split_dir

        x_test, _ = read_split(split_dir(config["data_root"], "test"))
        ds = None
        x = x_test[:1]  # shape and keystream only
    else:
        ds = load_dataset(config["dataset"], config.get("data_root"))
        x = ds.x_train[:spec.max_train_images] if spec.max_train_images else ds.x_train
        x_test = ds.x_test
    model = build(spec.builder, **spec.model_kwargs())
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    start = resume(model, opt)  # a retried or resumed run continues, it does not repeat epochs
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    decoder = None
    if spec.inputs == "oracle":  # the known-plaintext attacker's knowledge, from training pairs only
        from reconlab.operators.xor_oracle import BayesDecoder, oracle_keystream

        if ds is None:
            raise ValueError("oracle inputs need the training set in memory (known pairs and the prior), not streamed")
        decoder = BayesDecoder(oracle_keystream(op, x, spec.noise, config.get("eval_seed", 0)), spec.noise, x)
    make = Cipherimages(op, x, device, spec.noise, decoder, streamed=shard is not None)
    c_test = eval_cipherimages(op, x_test, spec.noise, config.get("eval_seed", 0))
    in_test = make.inputs(c_test.to(device)).cpu()
    mean_psnr = None if shard is not None else mean_baseline(x, x_test)["test_psnr"]
    inner = getattr(model, "module", model)
    for epoch in range(start, spec.epochs):
        t0 = time.perf_counter()
        batches = (stream_batches(shard, spec, epoch, world) if shard is not None
                   else memory_batches(x, spec, epoch, rank, world))
        loss, seen = train_epoch(model, opt, batches, make, spec, epoch, rank, device)
        if not finite_on_all_ranks(loss, world, device):
            # every rank reports the worst score and stops: the trial ends as
            # diverged (FAILED in MLflow) and the searcher learns from it
            ray.train.report({"step": epoch + 1, "epoch": epoch, **diverged_scores(mean_psnr, **config.get("worst", {})),
                              "diverged_reason": f"training loss is not finite at epoch {epoch}"})
            return
        dt = time.perf_counter() - t0
        metrics = {"step": epoch + 1, "epoch": epoch, "train_loss": loss, "epoch_seconds": dt,
                   "images_per_s": seen * world / dt, **evaluate(inner, in_test, x_test)}
        if mean_psnr is not None:
            metrics["psnr_gain"] = metrics["test_psnr"] - mean_psnr
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                save_model_dir(tmp, inner, spec)
                torch.save({"optimizer": opt.state_dict(), "epoch": epoch}, os.path.join(tmp, "train_state.pt"))
                if epoch == spec.epochs - 1:
                    with open(os.path.join(tmp, FIGURE), "wb") as f:
                        f.write(figure_png(op, inner, c_test[:4], in_test[:4], x_test[:4]))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)


# Each metric's range and which way is better; a diverged trial reports the worst end
BOUNDS = {"test_psnr": (0.0, math.inf), "test_ssim": (-1.0, 1.0), "train_loss": (0.0, math.inf)}
LOWER_IS_BETTER = {"train_loss", "epoch_seconds"}


def diverged_scores(mean_psnr: float | None, metric: str = "test_psnr", mode: str = "max") -> dict:
    """The worst finite score of every metric (PSNR 0 dB: images in [0, 1];
    the gain over the mean baseline at that PSNR), and of the sweep's
    ``metric`` the worst for its ``mode``."""
    from reconlab.metrics import worst_value
    from reconlab.tracking import DIVERGED

    bounds = {**BOUNDS, **({"psnr_gain": (-mean_psnr, math.inf)} if mean_psnr is not None else {})}
    out = {k: worst_value(k, "min" if k in LOWER_IS_BETTER else "max", bounds) for k in bounds}
    out[metric] = worst_value(metric, mode, bounds)
    return {**out, DIVERGED: 1.0}


def fit_xor_unet(spec: XorTrainSpec, op: XorAES, *, dataset: str = "natural", data_root: str | None = None,
                 num_workers: int = 1, use_gpu: bool | None = None, storage_path: str, name: str,
                 callbacks: list | None = None, cpus_per_worker: int = 1, eval_seed: int = 0,
                 stream: bool = False, worst: dict | None = None):
    """Train one U-Net with a ``TorchTrainer``; returns the Ray Train Result.
    Running it again with the same ``name`` and ``storage_path`` resumes.
    ``stream``: read Parquet shards under ``data_root`` with Ray Data instead
    of loading ``dataset`` into every worker. ``worst``: the sweep's
    ``{"metric", "mode"}``, for the score a diverged run reports."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if use_gpu is None:
        use_gpu = torch.cuda.is_available()
    datasets = None
    if stream:  # Parquet shards under data_root/{train,test}, streamed by Ray Data
        from reconlab.data.parquet import ray_dataset, split_dir

        datasets = {"train": ray_dataset(split_dir(data_root, "train"))}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": dataclasses.asdict(spec), "operator": op, "dataset": dataset,
                           "data_root": data_root, "threads": cpus_per_worker, "eval_seed": eval_seed,
                           "stream": stream, "worst": worst or {}},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}),
        datasets=datasets,
        run_config=RunConfig(name=name, storage_path=storage_path, callbacks=callbacks or [],
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    return trainer.fit()
