"""Known-plaintext baselines for AES-CTR cipherimages (not in the paper).

With a fixed key and IV, CTR encryption is ``cipher = plain XOR k`` with a
keystream ``k`` that depends only on the byte position. So:

1. :func:`estimate_keystream` recovers ``k`` from training pairs: exactly from
   one noise-free pair, and with noise as the per-byte maximum-likelihood
   estimate over many pairs (Gaussian noise: least squares over the 256
   candidates).
2. :class:`BayesDecoder` decodes each pixel-channel on its own: the posterior
   over the values the data can take (8-bit images: v = j/255, 256 of them),
   from its four noisy cipher bytes and a prior learned from training
   plaintexts; it returns the posterior mean (MMSE) or mode.

Values v and v/4 share a mantissa and differ by one level in a single cipher
byte, below 1 % noise: this decoder confuses such exponents; only spatial
context can tell them apart.
"""

from __future__ import annotations

import torch

from reconlab.operators.xor_aes import image_to_bytes, to_hwc_bytes


def estimate_keystream(x: torch.Tensor, cipher: torch.Tensor, noise: float) -> torch.Tensor:
    """(H, W, 12) uint8 keystream from clean images x (M, 3, H, W) and their
    cipherimages (M, 12, H, W). With ``noise`` == 0 the first pair is used
    (keystream = plain XOR cipher); otherwise the per-byte ML estimate

        k* = argmin_k  sum_i (c_i - (a_i XOR k) / 255)^2,

    computed from per-position sums over plaintext byte values a, so the 256
    candidates cost two matrix products instead of a loop over pairs."""
    plain = to_hwc_bytes(x)  # (M, H, W, 12)
    if noise == 0:
        return plain[0] ^ image_to_bytes(cipher[:1])[0]
    m, h, w, nb = plain.shape
    a = plain.reshape(m, -1).long().T  # (P, M) plaintext bytes
    c = cipher.permute(0, 2, 3, 1).reshape(m, -1).double().T  # (P, M) observed
    counts = torch.zeros(a.shape[0], 256, dtype=torch.float64).scatter_add_(1, a, torch.ones_like(c))
    sums = torch.zeros(a.shape[0], 256, dtype=torch.float64).scatter_add_(1, a, c)
    pred = (torch.arange(256)[:, None] ^ torch.arange(256)[None, :]).double() / 255.0  # [a, k] -> (a^k)/255
    sse = counts @ pred.pow(2) - 2 * sums @ pred  # (P, 256), up to a constant per position
    return sse.argmin(1).to(torch.uint8).reshape(h, w, nb)


ORACLE_PAIRS = 256  # known plaintext/cipher pairs for the noisy keystream estimate


def oracle_keystream(op, x_train: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    """The known-plaintext attacker's keystream: from one training pair without
    noise, from ``ORACLE_PAIRS`` seeded noisy pairs otherwise."""
    g = torch.Generator().manual_seed(seed * 31 + 5)
    idx = torch.randperm(len(x_train), generator=g)[:1 if noise == 0 else ORACLE_PAIRS]
    return estimate_keystream(x_train[idx], op.encrypt(x_train[idx], noise=noise, generator=g), noise)


def value_bytes(levels: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The values an 8-bit image can take (j / (levels-1)) and their 4 float32 bytes."""
    v = torch.arange(levels, dtype=torch.float32) / (levels - 1)
    return v, v.reshape(1, 1, 1, levels).contiguous().view(torch.uint8).reshape(levels, 4)


class BayesDecoder:
    """Per pixel-channel posterior over the 256 values, given the keystream."""

    def __init__(self, keystream: torch.Tensor, noise: float, x_train: torch.Tensor, smoothing: float = 1.0):
        if noise <= 0:
            raise ValueError("the Bayes decoder needs noise > 0 (without noise, decrypt with the keystream)")
        self.keystream, self.noise = keystream, noise
        self.values, self.bytes = value_bytes()
        # prior per colour channel from the training plaintexts' 8-bit levels
        levels = (x_train * 255).round().long().clamp(0, 255)
        counts = torch.stack([torch.bincount(levels[:, ch].flatten(), minlength=256) for ch in range(3)]).double()
        self.log_prior = (counts + smoothing).log() - (counts + smoothing).sum(1, keepdim=True).log()  # (3, 256)
        # exponent classes of the values: 0 alone, then one class per float32 exponent;
        # the values are sorted, so each class is a contiguous run, ending at ``class_ends``
        e = torch.frexp(self.values).exponent
        cls = (e - e[1:].min() + 1).long()
        cls[self.values == 0] = 0
        self.class_ends = torch.cat([torch.nonzero(cls[1:] != cls[:-1]).flatten(), torch.tensor([len(cls) - 1])])

    def to(self, device) -> "BayesDecoder":
        for k in ("keystream", "values", "bytes", "log_prior", "class_ends"):
            setattr(self, k, getattr(self, k).to(device))
        return self

    @property
    def num_features(self) -> int:
        """Channels of :meth:`features`: per colour, the MMSE plus per exponent class its log-mass and mean."""
        return 3 * (1 + 2 * len(self.class_ends))

    def features(self, cipher: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """What the per-pixel oracle knows, as image channels for a network with
        spatial context: for each colour, the posterior mean and, for each
        exponent class, log P(class) / 20 and E[v | class]. (N, num_features, H, W)."""
        outs = []
        for i in range(0, len(cipher), batch):
            p = self.log_posterior(cipher[i:i + batch]).exp()  # (n, 3, H, W, 256)
            mass = _run_sums(p, self.class_ends)  # (n, 3, H, W, K)
            first = _run_sums(p * self.values, self.class_ends)
            cond = first / (mass + 1e-6)
            mmse = first.sum(-1, keepdim=True)
            f = torch.cat([mmse, mass.clamp_min(1e-9).log().div(20.0), cond], -1)  # (n, 3, H, W, 1 + 2K)
            outs.append(f.permute(0, 1, 4, 2, 3).reshape(len(f), -1, *f.shape[2:4]))
        return torch.cat(outs)

    def log_posterior(self, cipher: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W, 256) log posterior over values. The Gaussian
        log-likelihood's only value-dependent terms are  (o . p_j) / s^2 and
        -|p_j|^2 / (2 s^2)  for predicted cipher bytes p_j: one batched matmul."""
        with torch.autocast(cipher.device.type, enabled=False):  # likelihoods ~1e4 apart: never in 16 bits
            return self._log_posterior(cipher.float())

    def _log_posterior(self, cipher: torch.Tensor) -> torch.Tensor:
        n, _, h, w = cipher.shape
        obs = cipher.permute(2, 3, 0, 1).reshape(h * w, n, 3, 4).transpose(1, 2).reshape(h * w * 3, n, 4)
        ks = self.keystream.reshape(h * w * 3, 1, 4).long()
        pred = (self.bytes.long()[None] ^ ks).float() / 255.0  # (B, 256, 4): pixel-channel b, value j
        s2 = self.noise**2
        ll = torch.bmm(obs.float(), pred.transpose(1, 2)) / s2 - pred.pow(2).sum(-1)[:, None, :] / (2 * s2)
        ll = ll + self.log_prior.float().repeat(h * w, 1)[:, None, :]  # colour varies fastest in b
        lp = ll - ll.logsumexp(-1, keepdim=True)  # (B, N, 256)
        return lp.reshape(h, w, 3, n, 256).permute(3, 2, 0, 1, 4)

    def decode(self, cipher: torch.Tensor, estimate: str = "mmse", batch: int = 16) -> torch.Tensor:
        """(N, 3, H, W) posterior mean ("mmse") or mode ("map")."""
        outs = []
        for i in range(0, len(cipher), batch):
            lp = self.log_posterior(cipher[i:i + batch])
            outs.append(lp.exp() @ self.values if estimate == "mmse" else self.values[lp.argmax(-1)])
        return torch.cat(outs)


def _run_sums(t: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Sums of contiguous runs along the last axis, the runs ending at ``ends``."""
    c = t.cumsum(-1).index_select(-1, ends)
    return torch.cat([c[..., :1], c[..., 1:] - c[..., :-1]], -1)
