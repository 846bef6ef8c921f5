"""The VAE family (thesis ch. 3), trained with Ray Train (DDP; GPUs when
present), and the intermediate class examples it makes.

Intermediate examples: codes z1, z2 of two random training digits (the
encoder's means), a random weight alpha per pair, the decoded image of
z = alpha z1 + (1 - alpha) z2, and as its label the distribution with alpha
on z1's class and 1 - alpha on z2's (one class, weight 1, when both agree).
A classifier trained on the enriched set minimises the distribution loss,
the cross entropy between the target distribution and its softmax
(``training.classifier.train_epoch``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import torch


@dataclasses.dataclass(frozen=True)
class VAESpec:
    """Everything that determines a trained VAE (hashed for reuse)."""

    builder: str = "vae"
    latent: int = 16
    hidden: int = 400
    lr: float = 1e-3
    epochs: int = 30
    batch_size: int = 64  # global batch, split over the workers
    seed: int = 0

    def __post_init__(self):
        if min(self.latent, self.hidden, self.epochs, self.batch_size) < 1 or self.lr <= 0:
            raise ValueError("latent, hidden, epochs, batch_size and lr must be positive")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def model_kwargs(self) -> dict:
        return {"latent": self.latent, "hidden": self.hidden}


VAE_SPEC = VAESpec()  # the VAE behind the comparison's *_vae recipes
# The VAE that projects inversions onto real digits for the readability
# check (inversion.verify): another seed, so no classifier was trained on its samples.
READER_VAE_SPEC = VAESpec(seed=101)


def train_epoch(model, opt, x, spec: VAESpec, epoch: int, rank: int, world: int, device) -> float:
    """One epoch of the negative ELBO (per image, averaged over the batch);
    the permutation and the reparameterisation noise are seeded."""
    from reconlab.models.vae import negative_elbo

    g = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
    perm = torch.randperm(len(x), generator=g)
    gn = torch.Generator().manual_seed((spec.seed * 100_003 + epoch) * 64 + rank)
    inner = getattr(model, "module", model)
    model.train()
    total, count = 0.0, 0
    for start in range(0, len(perm) - spec.batch_size + 1, spec.batch_size):
        xb = x[perm[start:start + spec.batch_size][rank::world]].to(device)
        eps = torch.randn((len(xb), inner.mu.out_features), generator=gn).to(device)
        logits, mu, logvar = model(xb, eps)
        loss = negative_elbo(logits, xb, mu, logvar).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(xb)
        count += len(xb)
    return total / max(count, 1)


@torch.no_grad()
def heldout_neg_elbo(model, x: torch.Tensor, device="cpu") -> float:
    """Mean negative ELBO of ``x`` at the encoder's means (nats per image)."""
    from reconlab.models.vae import negative_elbo

    model.eval()
    mu, logvar = model.encode(x.to(device))
    return negative_elbo(model.decode_logits(mu), x.to(device), mu, logvar).mean().item()


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train.torch

    from reconlab.models import build
    from reconlab.training.launch import finite_loss, report_model, worker_start

    spec, rank, world, ds = worker_start(config, VAESpec)
    model = ray.train.torch.prepare_model(build(spec.builder, **spec.model_kwargs()))
    device = ray.train.torch.get_device()
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    every = max(1, -(-spec.epochs // 25))
    for epoch in range(spec.epochs):
        loss = finite_loss(train_epoch(model, opt, ds.x_train, spec, epoch, rank, world, device), epoch)
        last = epoch == spec.epochs - 1
        if not last and (epoch + 1) % every:
            continue
        inner = getattr(model, "module", model)
        report_model({"epoch": epoch, "train_loss": loss, "test_neg_elbo": heldout_neg_elbo(inner, ds.x_test, device)},
                     inner if last else None, spec)


def train_local(spec: VAESpec, ds, epochs: int | None = None):
    """``spec``'s VAE trained in this process for ``epochs`` (default
    ``spec.epochs``) as one Ray Train worker would, without Ray: for tests,
    benchmarks and notebooks. Returns the model in eval mode."""
    from reconlab.models import build

    torch.manual_seed(spec.seed)
    model = build(spec.builder, **spec.model_kwargs())
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    for e in range(spec.epochs if epochs is None else epochs):
        train_epoch(model, opt, ds.x_train, spec, e, 0, 1, "cpu")
    return model.eval()


def fit_vae(spec: VAESpec, *, dataset: str, data_root: str | None = None, num_workers: int = 1,
            use_gpu: bool | None = None, storage_path: str, name: str, callbacks: list | None = None,
            threads: int | None = None):
    """Train one VAE with Ray Train (``training.launch.fit_torch``); returns the Ray Train Result."""
    from reconlab.training.launch import fit_torch

    return fit_torch(train_loop_per_worker, spec, dataset=dataset, data_root=data_root, num_workers=num_workers,
                     use_gpu=use_gpu, storage_path=storage_path, name=name, callbacks=callbacks, threads=threads)


@torch.no_grad()
def intermediate_examples(vae, x: torch.Tensor, y: torch.Tensor, n: int, *, seed: int,
                          num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` decoded mixtures of random pairs of ``x``'s codes: (images (n, 1,
    28, 28), soft labels (n, num_classes), alpha (n,)), all from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(len(x), (n,), generator=g)
    j = torch.randint(len(x), (n,), generator=g)
    alpha = torch.rand(n, generator=g)
    vae.eval()
    mu, _ = vae.encode(x)
    z = alpha[:, None] * mu[i] + (1 - alpha[:, None]) * mu[j]
    labels = alpha[:, None] * torch.nn.functional.one_hot(y[i], num_classes).float()
    labels = labels + (1 - alpha[:, None]) * torch.nn.functional.one_hot(y[j], num_classes).float()
    return vae.decode(z, tuple(x.shape[1:])), labels, alpha


@torch.no_grad()
def latent_tsne_png(vae, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0) -> bytes:
    """The thesis's Figure 3.5: a t-SNE (scikit-learn) of the encoder's means
    of ``x``, coloured by class, as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    vae.eval()
    mu, _ = vae.encode(x)
    emb = TSNE(n_components=2, random_state=seed, init="pca", perplexity=min(30.0, (len(x) - 1) / 3)).fit_transform(
        mu.double().numpy())
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    sc = ax.scatter(emb[:, 0], emb[:, 1], c=y.numpy(), cmap="tab10", s=8)
    ax.legend(*sc.legend_elements(), title="digit", loc="best", fontsize=7)
    ax.set_title(f"t-SNE of the VAE's latent means ({len(x)} test digits)")
    ax.set_xticks([])
    ax.set_yticks([])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
