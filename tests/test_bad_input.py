"""Bad input, for both jobs, end to end: every case is a real subprocess of
``jobs/inversion_sweep.py`` or ``jobs/xor_decryption.py`` and must

- exit with status 2,
- write exactly one line to stderr, ``error: ...``, naming the file, key or value,
- do it before Ray starts (``RAY_TMPDIR`` points into the test's directory and
  must stay absent),
- leave nothing behind: the storage directory holds no MLflow store, no Tune
  or Train results (it is empty or absent).

``python tests/test_bad_input.py`` runs every case and prints the table of
docs/security.md's "Bad input" section (paths shortened) from the real messages.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Callable

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jobutil import REPO, run_job  # noqa: E402

pytestmark = pytest.mark.slow

INV, XOR, DD, CT = "inversion_sweep.py", "xor_decryption.py", "deep_decoder_sweep.py", "ct_case_study.py"
ADV, DEN, PROTO = "adversarial_sweep.py", "denoise_sweep.py", "prototype_sweep.py"
THESIS = "thesis_comparison.py"
INV_YAML = "name: x\nmetric: verifier_acc\n"
XOR_YAML = "name: x\nmetric: test_psnr\n"
DD_YAML = "name: x\nmetric: psnr_best_fit\n"
CT_YAML = "name: x\nmetric: psnr_val\n"
ADV_YAML = "name: x\nmetric: damage\n"
DEN_YAML = "name: x\nmetric: objective\n"
PROTO_YAML = "name: x\nmetric: f1\n"
THESIS_YAML = "name: x\nmetric: acc_task1\n"


# ----------------------------------------------------------------- data files
def _mnist(root, shape=(28, 28), truncate=0):
    from reconlab.data.mnist_idx import write_idx

    d = root / "mnist"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n, (img, lbl) in ((5, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
                          (3, ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))):
        write_idx(str(d / img), rng.integers(0, 256, (n, *shape), dtype=np.uint8))
        write_idx(str(d / lbl), rng.integers(0, 10, n).astype(np.uint8))
    if truncate:
        p = d / "train-images-idx3-ubyte"
        p.write_bytes(p.read_bytes()[:-truncate])


def mnist_truncated(root):
    _mnist(root, truncate=10)


def mnist_32x32(root):
    _mnist(root, shape=(32, 32))


def empty_dir(root):
    root.mkdir(parents=True)


def _stl10(root, n_train=2, n_test=1):
    from reconlab.data.stl10 import write_images

    d = root / "stl10_binary"
    d.mkdir(parents=True)
    write_images(str(d / "train_X.bin"), np.zeros((n_train, 3, 96, 96), np.uint8))
    write_images(str(d / "test_X.bin"), np.zeros((n_test, 3, 96, 96), np.uint8))
    return d


def stl10_truncated(root):
    d = _stl10(root)
    (d / "test_X.bin").write_bytes(b"\0" * 1000)


def stl10_bad_labels(root):
    d = _stl10(root)
    np.array([1, 11], np.uint8).tofile(d / "train_y.bin")


def stl10_one_unlabeled(root):
    from reconlab.data.stl10 import write_images

    d = _stl10(root)
    write_images(str(d / "unlabeled_X.bin"), np.zeros((1, 3, 96, 96), np.uint8))


def _parquet(root, train_shape=(3, 8, 8), test_shape=(3, 8, 8)):
    import torch

    from reconlab.data.parquet import write_shards

    for split, shape in (("train", train_shape), ("test", test_shape)):
        write_shards(str(root / split), torch.rand(4, *shape), torch.zeros(4, dtype=torch.int64))


def parquet_corrupt(root):
    _parquet(root)
    (root / "test" / "part-00000.parquet").write_bytes(b"PAR1 not really")


def parquet_mixed_in_shard(root):
    """Two rows of the same byte count but different shapes: (3, 8, 8) and (3, 4, 16)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _parquet(root)
    table = pa.table({"image": [bytes(192), bytes(192)], "label": [0, 1], "height": [8, 4], "width": [8, 16],
                      "channels": [3, 3]})
    pq.write_table(table, str(root / "train" / "part-00000.parquet"))


def parquet_split_shapes_differ(root):
    _parquet(root, test_shape=(3, 16, 16))


def parquet_grayscale(root):
    _parquet(root, (1, 8, 8), (1, 8, 8))


def parquet_12x12(root):
    _parquet(root, (3, 12, 12), (3, 12, 12))


def parquet_missing_column(root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _parquet(root)
    pq.write_table(pa.table({"image": [bytes(192)], "label": [0]}), str(root / "test" / "part-00000.parquet"))


# ----------------------------------------------------------------- MLflow stores
def store_with_temp_artifacts(root):
    """An experiment 'e' whose artifacts would go to a temporary directory."""
    from reconlab import tracking

    root.mkdir(parents=True)
    c = tracking.client(f"sqlite:///{root}/mlflow.db")
    c.create_experiment("e", artifact_location=tempfile.mkdtemp(prefix="rl-vanishing-"))


def store_with_foreign_tune_dir(root):
    """A sweep 'x' in experiment 'e' whose tune-dir tag points outside the storage path."""
    from reconlab import tracking

    root.mkdir(parents=True)
    c = tracking.client(f"sqlite:///{root}/mlflow.db")
    exp = c.create_experiment("e", artifact_location="/srv/reconlab-artifacts")  # durable, outside the storage dir
    run = c.create_run(exp, tags={tracking.TAG_SWEEP: "x", "reconlab.tune_dir": "/srv/someone-else/tune/x"})
    c.set_terminated(run.info.run_id, "KILLED")


# ----------------------------------------------------------------- the table
@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    job: str
    yaml: str | bytes | None  # None: no --search-space (the job's default, or one given in args)
    args: tuple = ()  # "{space}", "{store}", "{data}", "{tmp}" are filled in
    message: str = ""  # must appear in the one stderr line
    example: str = ""  # for the table in docs/security.md
    data: Callable | None = None  # writes files under {data}
    env: dict = dataclasses.field(default_factory=dict)
    marks: tuple = ()


def both(name, yaml_inv, yaml_xor, args, message, example):
    return [Case(f"{name} [{job.split('_')[0]}]", job, y, args, message, example)
            for job, y in ((INV, yaml_inv), (XOR, yaml_xor))]


def inv(name, extra, message, example=None, **kw):
    return Case(name, INV, INV_YAML + extra, message=message, example=example or f"`{extra.strip()}`", **kw)


def xor(name, extra, message, example=None, **kw):
    return Case(name, XOR, XOR_YAML + extra, message=message, example=example or f"`{extra.strip()}`", **kw)


CASES = [
    # ---- both jobs: YAML, tracking URI, storage path, a flag
    *both("malformed YAML", "name: [oops\n", "name: [oops\n", (), "space.yaml: malformed YAML at line",
          "`name: [oops`"),
    *both("unreachable --tracking-uri", INV_YAML, XOR_YAML, ("--tracking-uri", "http://127.0.0.1:9"),
          "key '--tracking-uri' = 'http://127.0.0.1:9': tracking server unreachable", "`--tracking-uri http://127.0.0.1:9`"),
    *both("unwritable --storage-path", INV_YAML, XOR_YAML, ("--storage-path", "/proc/reconlab-nope"),
          "key '--storage-path' = '/proc/reconlab-nope': cannot create storage directory",
          "`--storage-path /proc/reconlab-nope`"),
    *both("--num-samples 0", INV_YAML, XOR_YAML, ("--num-samples", "0"), "key '--num-samples' = 0: must be >= 1",
          "`--num-samples 0`"),
    # ---- trust boundaries: URIs with credentials, storage URIs, where artifacts and resumed state come from
    *both("credentials in an https --tracking-uri", INV_YAML, XOR_YAML,
          ("--tracking-uri", "https://alice:s3cret-pw@127.0.0.1:9"),
          "key '--tracking-uri' = 'https://alice:***@127.0.0.1:9': tracking server unreachable",
          "`--tracking-uri https://alice:s3cret-pw@127.0.0.1:9`"),
    Case("credentials in a database --tracking-uri", INV, INV_YAML,
         ("--tracking-uri", "postgresql://alice:s3cret-pw@127.0.0.1:9/mlflow"),
         "key '--tracking-uri' = 'postgresql://alice:***@127.0.0.1:9/mlflow'",
         "`--tracking-uri postgresql://alice:s3cret-pw@127.0.0.1:9/mlflow`"),
    Case("malformed --tracking-uri", INV, INV_YAML, ("--tracking-uri", "http://alice:s3cret-pw@127.0.0.1:port"),
         "key '--tracking-uri' = 'http://alice:***@127.0.0.1:port': malformed URI",
         "`--tracking-uri http://alice:s3cret-pw@127.0.0.1:port`"),
    *both("--storage-path with a scheme", INV_YAML, XOR_YAML, ("--storage-path", "s3://bucket/reconlab"),
          "key '--storage-path' = 's3://bucket/reconlab': a URI is not a storage directory",
          "`--storage-path s3://bucket/reconlab`"),
    Case("experiment's artifacts in a temp dir", INV, INV_YAML,
         ("--tracking-uri", "sqlite:///{data}/mlflow.db", "--experiment", "e"),
         "key '--experiment' = 'e (artifacts: /", "an experiment `e` made with `artifact_location=/tmp/...`",
         data=store_with_temp_artifacts),
    Case("--resume of a sweep whose tune dir points elsewhere", INV, INV_YAML,
         ("--tracking-uri", "sqlite:///{data}/mlflow.db", "--experiment", "e", "--resume"),
         "key 'reconlab.tune_dir' = '/srv/someone-else/tune/x'", "tag `reconlab.tune_dir=/srv/someone-else/tune/x`",
         data=store_with_foreign_tune_dir),
    # ---- YAML structure
    Case("YAML not a mapping", INV, "- a\n- b\n", message="key '<root>' = ['a', 'b']: top level must be a mapping",
         example="`[a, b]`"),
    inv("duplicate key", "seed: 1\nseed: 2\n", "malformed YAML at line 4, column 1: found duplicate key 'seed'",
        "`seed: 1` twice"),
    inv("unknown top-level key", "learning_rate: 3\n", "key 'learning_rate' = 3: unknown key (allowed: "),
    inv("unknown key under fixed", "fixed: {restartz: 2}\n", "space.yaml, key 'fixed.restartz' = 2: unknown trial parameter"),
    inv("unknown key under search", "search: {lr: {type: uniform, low: 0.1, high: 0.2, sigma: 1}}\n",
        "key 'search.lr.sigma' = 1: unknown key"),
    inv("unknown key under scheduler", "scheduler: {patience: 3}\n", "key 'scheduler.patience' = 3: unknown key"),
    inv("unknown key under resources_per_trial", "resources_per_trial: {tpu: 1}\n",
        "key 'resources_per_trial.tpu' = 1: unknown key"),
    # ---- wrong types
    inv("string for an integer", "num_samples: ten\n", "key 'num_samples' = 'ten': expected an integer"),
    inv("list for a float", "fixed: {lr: [0.1, 0.2]}\n", "key 'fixed.lr' = [0.1, 0.2]: expected a number"),
    # ---- out of range
    inv("negative lr", "fixed: {lr: -0.1}\n", "key 'fixed.lr' = -0.1: lr must be a positive finite number"),
    inv("inverted range", "search: {lr: {type: loguniform, low: 0.1, high: 0.01}}\n",
        "key 'search.lr' = [0.1, 0.01]: empty or inverted range"),
    inv("empty choice", "search: {optimizer: {type: choice, values: []}}\n",
        "key 'search.optimizer.values' = []: empty choice"),
    inv("num_samples 0", "num_samples: 0\n", "key 'num_samples' = 0: must be >= 1"),
    inv("reduction_factor 1", "scheduler: {reduction_factor: 1}\n",
        "key 'scheduler' = {'type': 'asha', 'grace_period': 2, 'reduction_factor': 1}: need grace_period >= 1"),
    inv("infinite cpu", "resources_per_trial: {cpu: .inf}\n", "key 'resources_per_trial' = {'cpu': inf"),
    inv("custom resource named GPU", "resources_per_trial: {custom: {GPU: 1}}\n",
        "key 'resources_per_trial.custom.GPU' = 1.0: need a resource name other than CPU, GPU or memory"),
    inv("custom resource amount 0", "resources_per_trial: {custom: {gpu_slot: 0}}\n",
        "key 'resources_per_trial.custom.gpu_slot' = 0.0: need a resource name"),
    inv("seed out of range", "seed: -1\n", "key 'seed' = -1: must be in [0, 2147483647]"),
    Case("name with a path", INV, "name: ../../etc\nmetric: verifier_acc\n",
         message="key 'name' = '../../etc': must be 1-64 letters", example="`name: ../../etc`"),
    # ---- unknown names
    inv("unknown dataset", "dataset: imagenet\n", "space.yaml, key 'dataset' = 'imagenet': unknown dataset"),
    inv("unknown classifier variant", "fixed: {variant: rmsprop}\n", "unknown classifier variant 'rmsprop'"),
    Case("unknown metric", INV, "name: x\nmetric: accuracy\n", message="key 'metric' = 'accuracy': unknown metric",
         example="`metric: accuracy`"),
    xor("unknown XOR mode", "search:\n  mode: {type: choice, values: [ctr, ecb]}\n",
        "key 'search.mode.values[1]' = 'ecb': expected one of ['ctr', 'cbc']",
        example="`mode: {type: choice, values: [ctr, ecb]}`"),
    xor("XOR noise as a range", "search:\n  noise: {type: uniform, low: 0.0, high: 0.1}\n",
        "key 'search.noise' = {'type': 'uniform', 'low': 0.0, 'high': 0.1}: mode and noise must be fixed or a 'choice'",
        example="`noise: {type: uniform, low: 0.0, high: 0.1}`"),
    # ---- flags
    Case("missing --search-space file", INV, None, ("--search-space", "{tmp}/nope.yaml"), "nope.yaml: file not found",
         "`--search-space <dir>/nope.yaml`"),
    Case("unreachable database --tracking-uri", INV, INV_YAML, ("--tracking-uri", "postgresql://u@127.0.0.1:9/db"),
         "key '--tracking-uri'", "`--tracking-uri postgresql://u@127.0.0.1:9/db`"),
    Case("--tracking-uri a plain path", INV, INV_YAML, ("--tracking-uri", "{tmp}/mlruns"),
         "use a sqlite:///, http(s):// or database URI", "`--tracking-uri <dir>/mlruns`"),
    Case("--num-samples not an integer", INV, INV_YAML, ("--num-samples", "abc"),
         "argument --num-samples: invalid int value: 'abc'", "`--num-samples abc`"),
    Case("unknown flag", INV, INV_YAML, ("--samples", "3"), "unrecognized arguments: --samples 3",
         "`--samples 3`"),
    Case("--max-concurrent-trials 0", INV, INV_YAML, ("--max-concurrent-trials", "0"),
         "key '--max-concurrent-trials' = 0: must be >= 1", "`--max-concurrent-trials 0`"),
    Case("--num-workers 0", XOR, XOR_YAML, ("--num-workers", "0"), "key '--num-workers' = 0: must be >= 1",
         "`--num-workers 0`"),
    Case("bad $RECONLAB_XOR_KEY", XOR, XOR_YAML, (), "key 'RECONLAB_XOR_KEY' = '<hidden>': not a hex string",
         "`RECONLAB_XOR_KEY=zz`", env={"RECONLAB_XOR_KEY": "zz"}),
    # ---- data files
    inv("mnist without --data-root", "dataset: mnist\n", "key 'dataset' = 'mnist': the mnist dataset needs --data-root"),
    Case("mnist files missing", INV, INV_YAML + "dataset: mnist\n", ("--data-root", "{data}"),
         "train-images-idx3-ubyte: MNIST file not found", "`--data-root` an empty directory", data=empty_dir),
    Case("mnist IDX file truncated", INV, INV_YAML + "dataset: mnist\n", ("--data-root", "{data}"),
         "train-images-idx3-ubyte, key 'bytes' = 3926: IDX size mismatch",
         "`train-images-idx3-ubyte` cut by 10 bytes", data=mnist_truncated),
    Case("mnist images not 28x28", INV, INV_YAML + "dataset: mnist\n", ("--data-root", "{data}"),
         "key 'shape' = (5, 32, 32): expected images of shape (N, 28, 28)", "IDX images of 32x32",
         data=mnist_32x32),
    Case("RGB images for the inversion job", INV, INV_YAML + "dataset: natural\n", (),
         "key 'dataset'", "`dataset: natural`"),
    xor("grayscale images for XOR", "dataset: digits\n",
        "space.yaml, key 'dataset' = 'digits (1, 28, 28)': needs RGB images"),
    xor("images too small for the U-Net", "dataset: natural\nfixed: {depth: 6}\n",
        "space.yaml, key 'depth' = 6: 32x32 images do not fit a U-Net of depth 6", example="`fixed: {depth: 6}`"),
    Case("stl10 file truncated", XOR, XOR_YAML + "dataset: stl10\n", ("--data-root", "{data}"),
         "test_X.bin, key 'bytes' = 1000: not a whole number of 3x96x96 images", "`test_X.bin` of 1000 bytes",
         data=stl10_truncated),
    Case("stl10 labels out of range", XOR, XOR_YAML + "dataset: stl10\n", ("--data-root", "{data}"),
         "train_y.bin, key 'labels' = 2: need 2 labels in 1..10", "`train_y.bin` = [1, 11]", data=stl10_bad_labels),
    Case("stl10 unlabeled set of 1 image", XOR, XOR_YAML + "dataset: stl10\n", ("--data-root", "{data}"),
         "unlabeled_X.bin, key 'images' = 1: too few images for a 90/10 split", "`unlabeled_X.bin` with 1 image",
         data=stl10_one_unlabeled),
    Case("parquet shard unreadable", XOR, XOR_YAML + "dataset: parquet\n", ("--data-root", "{data}"),
         "part-00000.parquet: not a readable Parquet file", "`test/part-00000.parquet` = `PAR1 not really`",
         data=parquet_corrupt),
    Case("parquet shard missing columns", XOR, XOR_YAML + "dataset: parquet\n", ("--data-root", "{data}"),
         "key 'columns' = ['height', 'width', 'channels']: missing columns", "a shard with `image`, `label` only",
         data=parquet_missing_column),
    Case("parquet shard with mixed shapes", XOR, XOR_YAML + "dataset: parquet\n", ("--data-root", "{data}"),
         "key 'shape' = [(3, 4, 16), (3, 8, 8)]: mixed image shapes in one shard",
         "rows of (3, 8, 8) and (3, 4, 16) in one shard", data=parquet_mixed_in_shard),
    Case("parquet train/test shapes differ", XOR, XOR_YAML + "dataset: parquet\n", ("--data-root", "{data}"),
         "key 'shape' = [(3, 8, 8), (3, 16, 16)]: train and test image shapes differ",
         "train 3x8x8, test 3x16x16", data=parquet_split_shapes_differ),
    Case("parquet grayscale images for XOR", XOR, XOR_YAML + "dataset: parquet\n", ("--data-root", "{data}"),
         "key 'dataset' = 'parquet (1, 8, 8)': needs RGB images", "1x8x8 shards", data=parquet_grayscale),
    # ---- the untrained-network job (its shared checks are the same code as above)
    Case("unknown photograph for the deep decoder", DD,
         DD_YAML + "search:\n  image: {type: choice, values: [astronaut, lena]}\n",
         message="space.yaml, key 'search.image.values[1]' = 'lena': unknown image 'lena'",
         example="`image: {type: choice, values: [astronaut, lena]}`"),
    Case("crop not a multiple of the decoder's stride", DD, DD_YAML + "fixed: {crop: 48}\n",
         message="space.yaml, key 'fixed.crop' = 48: crop must be 0 or a multiple of the network's stride 32",
         example="`fixed: {crop: 48}`"),
    # ---- the CT case study
    Case("classifier hybrid on phantoms", CT, CT_YAML + "dataset: phantoms\nfixed: {method: hybrid}\n",
         message="space.yaml, key 'method' = ['hybrid']: hybrid invert the thesis's 28x28 digit classifiers; "
                 "phantoms has none",
         example="`dataset: phantoms` with `method: hybrid`"),
    Case("more CT validation + test images than the split holds", CT,
         CT_YAML + "fixed: {val_images: 300, test_images: 100}\n",
         message="key 'fixed.val_images' = 300: the test split has 360 images: too few for 300 validation + 100 test",
         example="`fixed: {val_images: 300, test_images: 100}` on digits"),
    # ---- adversarial robustness and denoisers
    Case("FGSM eps outside [0, 1]", ADV, ADV_YAML + "search:\n  point: {type: choice, values: [fgsm 0.1, fgsm 1.5]}\n",
         message="space.yaml, key 'search.point.values[1]' = 'fgsm 1.5': point 'fgsm 1.5': the level must be in [0, 1]",
         example="`point: ... [fgsm 0.1, fgsm 1.5]`"),
    Case("RGB patches for the prototype heads", PROTO, PROTO_YAML + "dataset: natural\n",
         message="key 'dataset' = 'natural (3, 32, 32)': needs 28x28 single-channel digits", example="`dataset: natural`"),
    Case("prototypes in one dimension", PROTO, PROTO_YAML + "fixed: {dim: 1}\n",
         message="dim must be >= 2", example="`fixed: {dim: 1}`"),
    # ---- the paired comparison
    Case("an unknown training recipe", THESIS, THESIS_YAML + "fixed: {recipes: [sgd, rmsprop]}\n",
         message="key 'fixed.recipes' = ('sgd', 'rmsprop'): recipes must be distinct values from",
         example="`fixed: {recipes: [sgd, rmsprop]}`"),
    Case("the BN prior on the plain CNN only", THESIS, THESIS_YAML + "fixed: {objective: tv_l2_bn, archs: [plain]}\n",
         message="no classifier to invert: objective tv_l2_bn needs BatchNorm layers", example="`archs: [plain]`"),
    Case("a negative sweep seed", THESIS, THESIS_YAML, ("--seed", "-1"), "key '--seed' = -1: must be in [0, ",
         "`--seed -1`"),
    Case("the images' seed as a trial value", THESIS, THESIS_YAML + "fixed: {seed: 3}\n",
         message="key 'fixed.seed': the images' seed is the sweep seed", example="`fixed: {seed: 3}`"),
    Case("RGB patches for the report's classifier", ADV, ADV_YAML + "dataset: natural\n",
         message="key 'dataset' = 'natural (3, 32, 32)': the report's classifier takes 28x28 single-channel digits",
         example="`dataset: natural`"),
    Case("unknown denoiser loss", DEN, DEN_YAML + "search:\n  arm: {type: choice, values: [gaussian/l3/noisy]}\n",
         message="key 'search.arm.values[0]' = 'gaussian/l3/noisy': arm 'gaussian/l3/noisy': unknown loss 'l3'",
         example="`arm: ... [gaussian/l3/noisy]`"),
    Case("patches too small for the N2N U-Net's levels", DEN, DEN_YAML + "dataset: natural\nfixed: {levels: 6}\n",
         message="key 'levels' = 6: 32x32 images do not fit an N2N U-Net of 6 levels (need multiples of 64)",
         example="`fixed: {levels: 6}` on 32x32 patches"),
    Case("parquet 12x12 images for a depth-3 U-Net", XOR, XOR_YAML + "dataset: parquet\n", ("--data-root", "{data}"),
         "key 'depth' = 3: 12x12 images do not fit a U-Net of depth 3", "3x12x12 shards", data=parquet_12x12),
]


def run_case(case: Case, tmp) -> tuple[subprocess.CompletedProcess, list]:
    """Run one case under ``tmp``; returns the process and what the storage
    directory and Ray's temp directory hold afterwards."""
    space, store, data, ray_tmp = tmp / "space.yaml", tmp / "store", tmp / "data", tmp / "ray"
    if case.yaml is not None:
        (space.write_bytes if isinstance(case.yaml, bytes) else space.write_text)(case.yaml)
    if case.data:
        case.data(data)
    fill = {"space": str(space), "store": str(store), "data": str(data), "tmp": str(tmp)}
    args = [a.format(**fill) for a in case.args]
    if case.yaml is not None:
        args = ["--search-space", str(space), *args]
    if "--storage-path" not in args:
        args += ["--storage-path", str(store)]
    p = run_job(case.job, *args, env={"RAY_TMPDIR": str(ray_tmp), "RECONLAB_XOR_KEY": "", **case.env}, timeout=180)
    left = [str(f.relative_to(tmp)) for d in (store, ray_tmp) if d.exists() for f in d.rglob("*")]
    left += [str(ray_tmp.relative_to(tmp))] if ray_tmp.exists() else []
    return p, left


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case run once, three at a time, each in its own process and
    directories (the cases share nothing): a job that stops before Ray spends
    its life importing, which leaves a core idle part of the time."""
    from concurrent.futures import ThreadPoolExecutor

    def one(case):
        return case.name, run_case(case, tmp_path_factory.mktemp("case"))

    tmp_path_factory.getbasetemp()  # made once here: three threads making it at once race (only one wins)
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, CASES))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_bad_input_exits_2_with_one_line_before_ray_and_leaves_nothing(outcomes, case):
    p, left = outcomes[case.name]
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert case.message in lines[0], lines[0]
    assert p.stdout == "", p.stdout[-2000:]
    assert left == [], f"left behind: {left}"  # no mlflow.db, no tune/ or train/, no Ray session
    assert "s3cret-pw" not in p.stderr  # credentials in a URI are redacted


def test_the_ray_tmpdir_check_would_see_ray_start(tmp_path):
    """The "before Ray starts" assertion is not vacuous: ``ray.init`` creates
    its session directory under RAY_TMPDIR first thing. (Under pytest's long
    temporary paths it then stops, as the socket paths exceed 107 bytes, so
    this costs no Ray runtime; a job that reached ``ray.init`` would fail the
    same way and leave the directory too.)"""
    code = "import ray; ray.init(address='local', num_cpus=1, include_dashboard=False); ray.shutdown()"
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "ray")}
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert (tmp_path / "ray").is_dir()


def test_the_bad_input_table_in_docs_security_lists_every_case(repo):
    doc = open(os.path.join(repo, "docs", "security.md")).read()
    section = doc.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    missing = [c.name for c in CASES if f"| {c.name} |" not in section]
    assert not missing, (f"docs/security.md's '## Bad input' table lacks: {missing} "
                         "(regenerate: python tests/test_bad_input.py)")


def _shorten(line: str, tmp) -> str:
    line = line.removeprefix("error: ").replace(f"{tmp}/data", "<data-root>").replace(f"{tmp}/space.yaml", "space.yaml")
    return line.replace(f"{tmp}/", "<dir>/").replace(REPO + "/", "")


if __name__ == "__main__":  # print the table of docs/security.md's "Bad input" from real runs
    import pathlib

    print("| case | example input | message (`error: ` + ...) |\n|---|---|---|")
    for c in CASES:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="bad-input-"))
        try:
            if c.marks:
                msg = "*(open: exit 1 after Ray starts; see below)*"
            else:
                p, left = run_case(c, tmp)
                lines = p.stderr.strip().splitlines()
                ok = p.returncode == 2 and len(lines) == 1 and not left
                msg = ("`" + _shorten(lines[0], tmp).replace("|", "\\|") + "`") if ok else f"FAILED rc={p.returncode}"
            print(f"| {c.name} | {c.example.replace('|', chr(92) + '|')} | {msg} |", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
