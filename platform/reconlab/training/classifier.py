"""The classifier family, trained with Ray Train (DDP; GPUs when present,
CPU + gloo otherwise).

Variants (thesis ch. 2-3): plain SGD, plain Adam, Adam + FGSM adversarial
training with loss  alpha * J(x) + (1 - alpha) * J(x + eps * sign(grad_x J)),
and an independently trained verifier that scores inversions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from typing import Literal

import torch
import torch.nn.functional as F

from reconlab.tracking import ROSTER_KEY  # a roster fit's report: which model it is about


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """Everything that determines a trained classifier (hashed for reuse)."""

    builder: str = "classifier_small"
    width: int = 16
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 12
    batch_size: int = 64  # global batch, split over the workers
    fgsm_eps: float = 0.0  # > 0 turns on FGSM adversarial training
    fgsm_alpha: float = 0.5
    seed: int = 0
    # prototype heads (thesis ch. 4; models.prototypes): builder classifier_prototype
    geometry: Literal["sphere", "hyperbolic"] = "sphere"
    proto_dim: int = 3
    placement_seed: int = 0
    # VAE intermediate classes (thesis ch. 3; training.vae): the VAE's spec
    # digest ("" = none) and how many intermediate examples per training image
    vae: str = ""
    vae_mix: float = 0.0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch_size and lr must be positive")
        if not 0.0 <= self.fgsm_alpha <= 1.0 or self.fgsm_eps < 0:
            raise ValueError("fgsm_alpha must be in [0, 1] and fgsm_eps >= 0")
        if self.builder == "classifier_prototype" and (self.proto_dim < 2 or self.fgsm_eps > 0):
            raise ValueError("a prototype classifier needs proto_dim >= 2 and no FGSM training")
        if bool(self.vae) != (self.vae_mix > 0) or self.vae_mix < 0:
            raise ValueError("intermediate classes need both a VAE (vae) and vae_mix > 0")
        if self.vae and (self.fgsm_eps > 0 or self.builder == "classifier_prototype"):
            raise ValueError("intermediate classes train a softmax head without FGSM")

    def digest(self) -> str:
        fields = dataclasses.asdict(self)
        if self.builder != "classifier_prototype":  # a softmax head's digest as before prototype heads existed
            for k in PROTOTYPE_FIELDS:
                del fields[k]
        if not self.vae:  # and as before intermediate classes existed
            for k in VAE_FIELDS:
                del fields[k]
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def model_kwargs(self) -> dict:
        if self.builder == "classifier_prototype":
            return {"width": self.width, "dim": self.proto_dim, "geometry": self.geometry,
                    "placement_seed": self.placement_seed}
        return {"width": self.width}


PROTOTYPE_FIELDS = ("geometry", "proto_dim", "placement_seed")
VAE_FIELDS = ("vae", "vae_mix")

# The thesis's variants. The verifier differs in architecture, width and seed.
VARIANTS: dict[str, TrainSpec] = {
    "sgd": TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, seed=1),
    "adam": TrainSpec(optimizer="adam", lr=1e-3, seed=1),
    "adam_fgsm": TrainSpec(optimizer="adam", lr=1e-3, fgsm_eps=0.1, fgsm_alpha=0.5, seed=1),
    # the adversarial-denoising report's MNIST classifier and training (issue 13)
    "report": TrainSpec(builder="classifier_report", width=3, optimizer="sgd", lr=0.01, momentum=0.5, batch_size=64,
                        epochs=5, seed=2),
    "verifier": TrainSpec(builder="classifier_verifier", width=16, optimizer="sgd", lr=0.05, epochs=12, seed=1234),
}


# The verifier ensemble (issue 14, part 2): three architectures, three seeds,
# three training recipes, one of them FGSM-adversarially trained.
VERIFIERS: dict[str, TrainSpec] = {
    "verifier": VARIANTS["verifier"],
    "verifier_mlp": TrainSpec(builder="classifier_mlp", width=256, optimizer="adam", lr=1e-3, epochs=12, seed=4321),
    "verifier_lenet_fgsm": TrainSpec(builder="classifier_lenet", width=6, optimizer="sgd", lr=0.05, epochs=12,
                                     fgsm_eps=0.15, fgsm_alpha=0.5, seed=777),
}

# The paired comparison's classifiers (issue 14, part 1): a training recipe
# (thesis ch. 2-4) x an architecture x a seed.
RECIPES: dict[str, dict] = {
    "sgd": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
    "adam": {"optimizer": "adam", "lr": 1e-3},
    "adam_fgsm": {"optimizer": "adam", "lr": 1e-3, "fgsm_eps": 0.1, "fgsm_alpha": 0.5},
    "sphere3": {"builder": "classifier_prototype", "optimizer": "adam", "lr": 1e-3, "geometry": "sphere",
                "proto_dim": 3},
    # VAE intermediate classes (ch. 3): half as many mixtures as training digits, distribution loss
    "sgd_vae": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "vae_mix": 0.5},
    "adam_vae": {"optimizer": "adam", "lr": 1e-3, "vae_mix": 0.5},
    "hyperbolic5": {"builder": "classifier_prototype", "optimizer": "adam", "lr": 1e-3, "geometry": "hyperbolic",
                    "proto_dim": 5},
}
ARCHS = {"bn": "classifier_small", "plain": "classifier_plain"}  # SmallCNN with BatchNorm; the thesis's plain CNN


def recipe_spec(recipe: str, arch: str, seed: int, epochs: int | None = None, vae: str | None = None) -> TrainSpec:
    """The TrainSpec of one classifier in the paired comparison. Prototype
    heads sit on the BatchNorm SmallCNN ("bn") only; their placement follows
    the seed. ``vae``: the digest of the VAE behind a *_vae recipe (default:
    ``training.vae.VAE_SPEC``'s)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r} (known: {', '.join(RECIPES)})")
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r} (known: {', '.join(ARCHS)})")
    kw = dict(RECIPES[recipe])
    if kw.get("builder") == "classifier_prototype":
        if arch != "bn":
            raise ValueError(f"recipe {recipe!r} is a prototype head on the BatchNorm CNN: arch 'bn' only")
        kw["placement_seed"] = seed
    else:
        kw["builder"] = ARCHS[arch]
    if kw.get("vae_mix"):
        from reconlab.training.vae import VAE_SPEC

        kw["vae"] = vae or VAE_SPEC.digest()
    return TrainSpec(**kw, seed=seed, **({"epochs": epochs} if epochs else {}))


def make_optimizer(spec: TrainSpec, params):
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)


@torch.no_grad()
def accuracy(model, x, y, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
    return correct / max(len(x), 1)


@torch.no_grad()
def evaluate(model, x, y, batch_size: int = 512) -> dict[str, float]:
    """Test accuracy, macro precision / recall / F1, and for a prototype head
    its prototypes' largest pairwise cosine and its gap to the best possible."""
    from reconlab.metrics import macro_prf
    from reconlab.models.prototypes import best_max_cosine, max_cosine

    model.eval()
    scores = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    pred = scores.argmax(1)
    out = {"test_acc": (pred == y).float().mean().item() if len(y) else 0.0, **macro_prf(pred, y, scores.shape[1])}
    protos = getattr(getattr(model, "module", model), "prototypes", None)
    if protos is not None:
        out["max_cos"] = max_cosine(protos.double().cpu())
        best = best_max_cosine(*protos.shape)
        if best is not None:
            out["max_cos_gap"] = out["max_cos"] - best
    return out


def train_epoch(model, opt, x, y, spec: TrainSpec, epoch: int, rank: int, world: int, device) -> float:
    """One epoch over a seeded permutation; each global batch is split across
    ranks (rank r takes every world-th sample), so N workers see the same
    global batches as one."""
    from reconlab.attacks import fgsm

    g = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
    perm = torch.randperm(len(x), generator=g)
    inner = getattr(model, "module", model)  # the bare module for input gradients
    model.train()
    total, count = 0.0, 0
    for start in range(0, len(perm) - spec.batch_size + 1, spec.batch_size):  # drop the ragged last batch
        idx = perm[start : start + spec.batch_size][rank::world]
        xb, yb = x[idx].to(device), y[idx].to(device)
        if spec.fgsm_eps > 0:
            x_adv = fgsm(inner, xb, yb, spec.fgsm_eps)
            logits = model(torch.cat([xb, x_adv]))  # one forward through DDP
            clean, adv = logits.split(len(xb))
            loss = spec.fgsm_alpha * F.cross_entropy(clean, yb) + (1 - spec.fgsm_alpha) * F.cross_entropy(adv, yb)
        elif hasattr(inner, "prototype_loss"):  # a prototype head: its geometry's loss on the embedding
            loss = inner.prototype_loss(model(xb, embed=True), yb)
        elif yb.dim() == 2:  # soft labels (intermediate classes): the distribution loss
            loss = -(yb * F.log_softmax(model(xb), dim=1)).sum(1).mean()
        else:
            loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
        count += len(idx)
    return total / max(count, 1)


MAX_REPORTS = 25  # a Ray Train report costs ~2 s on 2 cores: a long fit of short epochs reports every k-th


def report_every(epochs: int) -> int:
    """Report every k-th epoch (and the last), at most ~MAX_REPORTS reports a fit."""
    return max(1, -(-epochs // MAX_REPORTS))


def training_set(spec: TrainSpec, ds, vae_models: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) to train on: the dataset's training split, and with ``spec.vae``
    the VAE's intermediate examples appended, every label then a
    distribution (num_classes columns). ``vae_models``: {VAE digest: (meta,
    state_dict)}."""
    if not spec.vae:
        return ds.x_train, ds.y_train
    from reconlab.models import build
    from reconlab.training.vae import intermediate_examples

    if spec.vae not in (vae_models or {}):
        raise ValueError(f"classifier needs the VAE {spec.vae}, which was not given to the training run")
    meta, state = vae_models[spec.vae]
    vae = build(meta["builder"], **meta["kwargs"])
    vae.load_state_dict(state)
    n = round(spec.vae_mix * len(ds.x_train))
    x_mix, p_mix, _ = intermediate_examples(vae, ds.x_train, ds.y_train, n, seed=spec.seed,
                                            num_classes=ds.num_classes)
    onehot = F.one_hot(ds.y_train, ds.num_classes).float()
    return torch.cat([ds.x_train, x_mix]), torch.cat([onehot, p_mix])


def train_one(spec: TrainSpec, ds, rank: int, world: int, on_report, vae_models: dict | None = None) -> None:
    """Train one classifier on this Ray Train worker (DDP across the workers):
    ``on_report(metrics, model)`` every ``report_every`` epochs, with the bare
    model at the last epoch (None before)."""
    import ray.train.torch

    from reconlab.models import build
    from reconlab.training.launch import finite_loss

    x_train, y_train = training_set(spec, ds, vae_models)
    torch.manual_seed(spec.seed)  # the same initial weights on every rank, and as in a fit of its own
    model = build(spec.builder, **spec.model_kwargs())
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    opt = make_optimizer(spec, model.parameters())
    x_test, y_test = ds.x_test.to(device), ds.y_test.to(device)
    every = report_every(spec.epochs)
    for epoch in range(spec.epochs):
        loss = finite_loss(train_epoch(model, opt, x_train, y_train, spec, epoch, rank, world, device), epoch)
        last = epoch == spec.epochs - 1
        if not last and (epoch + 1) % every:
            continue
        on_report({"epoch": epoch, "train_loss": loss, **evaluate(model, x_test, y_test)},
                  getattr(model, "module", model) if last else None)


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker: one classifier, its model in the last
    report's checkpoint."""
    from reconlab.training.launch import report_model, worker_start

    spec, rank, world, ds = worker_start(config, TrainSpec)
    train_one(spec, ds, rank, world, lambda metrics, model: report_model(metrics, model, spec),
              config.get("vae_models"))




def train_roster_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker: the classifiers ``config["roster"]``
    ([name, spec dict] pairs) one after another in one Ray Train run (one
    worker group start-up for all), each exactly as ``train_loop_per_worker``
    would train it. Every report names its model (``ROSTER_KEY``); the last
    one carries a checkpoint with one model directory per name."""
    import os

    import ray.train

    from reconlab.models import save_model_dir
    from reconlab.training.launch import worker_start

    _, rank, world, ds = worker_start(config, TrainSpec)
    with tempfile.TemporaryDirectory() as out:
        for name, fields in config["roster"]:
            spec = TrainSpec(**fields)

            def on_report(metrics, model, name=name, spec=spec):
                if model is not None and rank == 0:
                    os.makedirs(os.path.join(out, name))
                    save_model_dir(os.path.join(out, name), model, spec)
                ray.train.report({**metrics, ROSTER_KEY: name})

            train_one(spec, ds, rank, world, on_report, config.get("vae_models"))
        ray.train.report({"models": len(config["roster"])},
                         checkpoint=ray.train.Checkpoint.from_directory(out) if rank == 0 else None)


def train_local(spec: TrainSpec, ds, epochs: int | None = None):
    """``spec``'s classifier trained in this process for ``epochs`` (default
    ``spec.epochs``) as one Ray Train worker would (seeded initial weights,
    the same epochs), without Ray or intermediate examples: for tests,
    benchmarks and notebooks. Returns the model in eval mode."""
    from reconlab.models import build

    torch.manual_seed(spec.seed)
    model = build(spec.builder, **spec.model_kwargs())
    opt = make_optimizer(spec, model.parameters())
    for e in range(spec.epochs if epochs is None else epochs):
        train_epoch(model, opt, ds.x_train, ds.y_train, spec, e, 0, 1, "cpu")
    return model.eval()


def fit_classifier(
    spec: TrainSpec,
    *,
    dataset: str = "digits",
    data_root: str | None = None,
    num_workers: int = 1,
    use_gpu: bool | None = None,
    storage_path: str,
    name: str,
    callbacks: list | None = None,
    threads: int | None = None,
    cpus_per_worker: int = 1,
):
    """Train one classifier with Ray Train (``training.launch.fit_torch``); returns the Ray Train Result."""
    from reconlab.training.launch import fit_torch

    return fit_torch(train_loop_per_worker, spec, dataset=dataset, data_root=data_root, num_workers=num_workers,
                     use_gpu=use_gpu, storage_path=storage_path, name=name, callbacks=callbacks, threads=threads,
                     cpus_per_worker=cpus_per_worker)
