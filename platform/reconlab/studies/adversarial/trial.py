"""The adversarial sweep's trial: one point of one robustness curve.

A ``point`` names the attack and where on its curve the trial sits:

    gaussian_pixels 0.1     a fraction of pixels replaced by N(0.5, 0.2²), clamped (the report's noise)
    salt_and_pepper 0.3     a fraction of pixels set to 0 or 1
    fgsm 0.15               FGSM at eps
    one_pixel_de 5          the one-pixel attack (differential evolution) on 5 pixels
    one_pixel_random 5      the report's random search, the same number of model queries
    dag gaussian            DAG (the report's adaptation) on the Gaussian N2N denoiser
    pgd gaussian 4          PGD at eps = 4/255 on it (maximising the error against the clean image)

The first five attack the report's classifier on the first ``images`` test
images (``pixel_images`` for the one-pixel attacks) (misclassified ones count as wrong, unattacked); noise and the
one-pixel attacks run ``repeats`` seeds (seed, seed + 1, ...) on the same
images, so the one-pixel attacks pair up per (seed, image). The last two
attack a denoiser trained by Ray Train (``training.n2n``) on its first
``denoiser_images`` noisy test patches (the denoiser's evaluation noise, seeded). Every trial reports
``damage``, the attack's strength in its own unit: accuracy lost
(classifier), mean PSNR ratio - 1 (DAG), mean PSNR drop in dB (PGD); a
stratum's TPE study (DAG's gamma and iterations) maximises it.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from reconlab.models.io import shared_model  # each shared model built once per worker process
from reconlab.sweep.checkpoint import load_result, report_result

NOISE_ATTACKS = ("gaussian_pixels", "salt_and_pepper")
CLASSIFIER_ATTACKS = (*NOISE_ATTACKS, "fgsm", "one_pixel_de", "one_pixel_random")
DENOISER_ATTACKS = ("dag", "pgd")
ATTACKS = CLASSIFIER_ATTACKS + DENOISER_ATTACKS
DENOISERS = ("gaussian", "poisson", "impulse_n2n")
CLASSIFIER = "classifier"  # its key among the shared models
METRICS = ("damage", "accuracy", "clean_accuracy", "success_rate", "queries", "mean_ratio", "share_in_band",
           "linf", "l2", "psnr_denoised", "psnr_attacked", "psnr_drop", "seconds")
BAND = (0.95, 1.05)  # the report's "unchanged" ratios
EXAMPLES = 8  # images shown per trial


@dataclasses.dataclass(frozen=True)
class Point:
    attack: str
    level: float = 0.0  # fraction, eps, pixels, or eps x 255 (pgd)
    denoiser: str = ""


def parse_point(text: str) -> Point:
    parts = str(text).split()
    if not parts or parts[0] not in ATTACKS:
        raise ValueError(f"point {text!r}: unknown attack (known: {', '.join(ATTACKS)})")
    attack = parts[0]
    want = {"dag": 2, "pgd": 3}.get(attack, 2)
    if len(parts) != want:
        raise ValueError(f"point {text!r}: expected {want} words")
    if attack in DENOISER_ATTACKS:
        if parts[1] not in DENOISERS:
            raise ValueError(f"point {text!r}: unknown denoiser (known: {', '.join(DENOISERS)})")
        level = _number(text, parts[2]) if attack == "pgd" else 0.0
        if attack == "pgd" and not 0 < level <= 255:
            raise ValueError(f"point {text!r}: the PGD budget is eps x 255, in (0, 255]")
        return Point(attack, level, parts[1])
    level = _number(text, parts[1])
    if attack.startswith("one_pixel"):
        if level != int(level) or level < 1:
            raise ValueError(f"point {text!r}: the number of pixels must be a whole number >= 1")
    elif not 0 <= level <= 1:
        raise ValueError(f"point {text!r}: the level must be in [0, 1]")
    return Point(attack, level)


def _number(text: str, word: str) -> float:
    try:
        v = float(word)
    except ValueError:
        raise ValueError(f"point {text!r}: {word!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"point {text!r}: {word!r} is not finite")
    return v


@dataclasses.dataclass(frozen=True)
class AdversarialTrialConfig:
    point: str = "fgsm 0.1"
    images: int = 0  # test images attacked (0: all)
    pixel_images: int = 100  # ... by the one-pixel attacks, the costly ones (0: all)
    denoiser_images: int = 0  # test patches attacked by DAG and PGD (0: all)
    repeats: int = 3  # seeds per noise / one-pixel point
    popsize: int = 400  # DE population (the references' 400)
    maxiter: int = 100  # DE generations; the budget is popsize x (maxiter + 1) queries
    recombination: float = 1.0
    gamma: float = 0.1  # DAG step
    iterations: int = 40  # DAG iterations
    threshold: float = 0.04  # DAG: pixels whose channel-summed L1 error is below it are left alone
    pgd_steps: int = 10
    seed: int = 0

    def __post_init__(self):
        parse_point(self.point)
        if min(self.images, self.pixel_images, self.denoiser_images) < 0 or min(self.repeats, self.popsize, self.iterations, self.pgd_steps) < 1:
            raise ValueError("images must be >= 0; repeats, popsize, iterations and pgd_steps >= 1")
        if self.popsize < 4 or self.maxiter < 0:
            raise ValueError("DE needs popsize >= 4 and maxiter >= 0")
        if not 0 <= self.recombination <= 1:
            raise ValueError("recombination must be in [0, 1]")
        if not (self.gamma > 0 and math.isfinite(self.gamma)) or self.threshold < 0:
            raise ValueError("gamma must be a positive finite number and threshold >= 0")

    @classmethod
    def samples_per_stratum(cls, stratum: dict) -> int | None:
        """Only DAG has parameters to search (gamma, iterations): every other
        point runs once per stratum (None: the sweep's num_samples)."""
        point = stratum.get("point")
        return None if point is not None and parse_point(point).attack == "dag" else 1

    @property
    def queries(self) -> int:
        return self.popsize * (self.maxiter + 1)




@torch.no_grad()
def _correct(model, x, y, batch: int = 1024) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch]).argmax(1) == y[i:i + batch] for i in range(0, len(x), batch)])


def attack_classifier(cfg: AdversarialTrialConfig, p: Point, model, x, y) -> tuple[dict, dict]:
    """Per-(seed, image) correctness after the attack, and the summary."""
    from reconlab.attacks import fgsm, one_pixel_de, one_pixel_random
    from reconlab.operators.noise import PixelReplacement, SaltAndPepper

    clean = _correct(model, x, y)
    rows, queries, adv = [], [], x
    seeds = [cfg.seed] if p.attack == "fgsm" else [cfg.seed + r for r in range(cfg.repeats)]
    for s in seeds:
        if p.attack == "fgsm":
            adv = fgsm(model, x, y, p.level)
            rows.append(_correct(model, adv, y))
        elif p.attack in NOISE_ATTACKS:
            noise = (PixelReplacement if p.attack == "gaussian_pixels" else SaltAndPepper)(p.level, seed=s)
            adv = noise(x)
            rows.append(_correct(model, adv, y))
        else:  # one-pixel: attack the correctly classified images only
            idx = clean.nonzero().flatten()
            ok = clean.clone()
            used = torch.zeros(len(x))
            if len(idx):
                if p.attack == "one_pixel_de":
                    r = one_pixel_de(model, x[idx], y[idx], pixels=int(p.level), popsize=cfg.popsize,
                                     maxiter=cfg.maxiter, recombination=cfg.recombination, seed=s)
                else:
                    r = one_pixel_random(model, x[idx], y[idx], pixels=int(p.level), queries=cfg.queries,
                                         batch=cfg.popsize, seed=s)
                ok[idx] = ~r.success.to(ok.device)
                used[idx] = r.queries.float()
                adv = x.clone()
                adv[idx] = r.adversarial
            rows.append(ok)
            queries.append(used)
    correct = torch.stack(rows).float().cpu()  # (seeds, images)
    acc = correct.mean().item()
    clean_acc = clean.float().mean().item()
    n_clean = clean.sum().item()
    broken = (correct < clean.float().cpu().unsqueeze(0)).float().sum(1) / max(n_clean, 1)
    final = {"accuracy": acc, "clean_accuracy": clean_acc, "damage": clean_acc - acc,
             "success_rate": broken.mean().item()}
    if queries:
        q = torch.stack(queries)
        final["queries"] = q[:, clean.cpu()].mean().item() if n_clean else 0.0
    k = min(EXAMPLES, len(x))  # the last seed's attacked images beside the clean ones
    return final, {"correct": correct, "clean": clean.float().cpu(), "examples": torch.stack([x[:k], adv[:k]]).cpu()}


def attack_denoiser(cfg: AdversarialTrialConfig, p: Point, model, clean: torch.Tensor, noisy: torch.Tensor,
                    target: torch.Tensor) -> tuple[dict, dict]:
    """DAG toward another noisy copy, or PGD away from the clean image; per-image scores."""
    from reconlab.attacks import dag, pgd_denoiser
    from reconlab.metrics import psnr

    def den(z):
        with torch.no_grad():
            return torch.cat([model(z[i:i + 128]) for i in range(0, len(z), 128)]).clamp(0, 1)

    noisy, target = noisy.clamp(0, 1), target.clamp(0, 1)  # images in [0, 1], as the report's
    advs = []
    for i in range(0, len(noisy), 128):
        nb = noisy[i:i + 128]
        if p.attack == "dag":
            advs.append(dag(model, nb, target[i:i + 128], iterations=cfg.iterations, gamma=cfg.gamma,
                            threshold=cfg.threshold)[0])
        else:
            advs.append(pgd_denoiser(model, nb, clean[i:i + 128], eps=p.level / 255, steps=cfg.pgd_steps,
                                     seed=cfg.seed + i))
    adv = torch.cat(advs)
    p_den, p_adv = psnr(den(noisy), clean), psnr(den(adv), clean)
    delta = (adv - noisy).flatten(1)
    per = {"psnr_denoised": p_den.cpu(), "psnr_attacked": p_adv.cpu(), "ratio": (p_den / p_adv).cpu(),
           "linf": delta.abs().amax(1).cpu(), "l2": delta.norm(dim=1).cpu()}
    final = {k: per[k].mean().item() for k in ("psnr_denoised", "psnr_attacked", "linf", "l2")}
    final["psnr_drop"] = final["psnr_denoised"] - final["psnr_attacked"]
    final["mean_ratio"] = per["ratio"].mean().item()
    final["share_in_band"] = ((per["ratio"] >= BAND[0]) & (per["ratio"] <= BAND[1])).float().mean().item()
    final["damage"] = final["mean_ratio"] - 1 if p.attack == "dag" else final["psnr_drop"]
    k = min(EXAMPLES, len(adv))
    examples = torch.stack([noisy[:k], adv[:k], den(noisy[:k]), den(adv[:k]),
                            ((adv[:k] - noisy[:k]) * 0.5 / max(final["linf"], 1e-8) + 0.5).clamp(0, 1)])
    return final, {**per, "examples": examples.cpu()}


def denoiser_inputs(shared: dict, name: str, seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean, noisy, another noisy copy) of the denoiser's test patches, at its evaluation noise."""
    from reconlab.training.n2n import N2NSpec, eval_inputs

    meta, _ = shared["models"][f"denoiser:{name}"]
    spec = N2NSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["spec"].items()})
    x = shared["denoise_x"][:n] if n else shared["denoise_x"]
    return x, eval_inputs(spec, x, seed), eval_inputs(spec, x, seed + 1)


def run_trial(config: dict, shared: dict, report=None) -> tuple[dict, dict]:
    cfg = AdversarialTrialConfig(**config)
    p = parse_point(cfg.point)
    dev = shared.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    if p.attack in CLASSIFIER_ATTACKS:
        n = (cfg.pixel_images if p.attack.startswith("one_pixel") else cfg.images) or len(shared["x"])
        model = shared_model(shared, CLASSIFIER, dev)
        final, result = attack_classifier(cfg, p, model, shared["x"][:n].to(dev), shared["y"][:n].to(dev))
    else:
        model = shared_model(shared, f"denoiser:{p.denoiser}", dev)
        clean, noisy, target = denoiser_inputs(shared, p.denoiser, cfg.seed, cfg.denoiser_images)
        final, result = attack_denoiser(cfg, p, model, clean.to(dev), noisy.to(dev), target.to(dev))
    final = {"step": 1, **final, "seconds": time.perf_counter() - t0}
    if report is not None:
        report(final, result)
    return final, result


def tune_trainable(config: dict, shared: dict) -> None:
    """Ray Tune function trainable: one report with the per-image results as its checkpoint."""
    torch.set_num_threads(shared.get("threads", 1))
    run_trial(config, shared, report_result)


def files_of(result: dict) -> dict[str, bytes]:
    """The examples (a classifier attack's rows: clean, attacked; a denoiser
    attack's: noisy, adversarial, both denoised, the perturbation scaled to
    [0, 1]) and the per-image results."""
    from reconlab.tracking import png_bytes

    ex = result["examples"]
    name = ("examples_clean_attacked.png" if "correct" in result
            else "examples_noisy_adv_denoised_denoisedadv_perturbation.png")
    out = {name: png_bytes(ex.flatten(0, 1), nrow=ex.shape[1])}
    per = {k: v for k, v in result.items() if k != "examples" and v.dim() == 1}
    if "correct" in result:  # (seeds, images)
        per = {f"correct_seed{i}": row for i, row in enumerate(result["correct"])} | {"clean": result["clean"]}
    keys = list(per)
    lines = [",".join(["image"] + keys)] + [",".join([str(i)] + [f"{per[k][i].item():.5g}" for k in keys])
                                            for i in range(len(per[keys[0]]))]
    out["per_image.csv"] = ("\n".join(lines) + "\n").encode()
    return out


def artifacts_of(ref: dict) -> dict[str, bytes]:
    """The study's ``trial_files`` hook."""
    from ray.train import Checkpoint

    if not ref.get("checkpoint"):
        return {}
    with Checkpoint(ref["checkpoint"]).as_directory() as d:
        return files_of(load_result(d))
