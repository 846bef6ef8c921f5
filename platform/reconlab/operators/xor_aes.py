"""AES-128 "cipherimages" (Hauptmann & Adler): the raw float32 bytes of an RGB
image, encrypted with a key and IV fixed across images, read back as uint8,
scaled by 1/255 and laid out as a 12-channel image.

    x (N, 3, H, W) float32 in [0, 1]
      -> HWC float32 bytes (little-endian; channel 4*c + b is byte b of colour c)
      -> AES-CTR or AES-CBC (``cryptography``)
      -> uint8 / 255 -> (N, 12, H, W)

With a fixed key and IV, CTR is a XOR with a keystream that depends only on
the byte position, so :meth:`XorAES.encrypt` does it as a pure torch op (on
the GPU if the images are there); the tests prove it byte-identical to
``cryptography``. CBC chains blocks and always goes through ``cryptography``.

Only ``fingerprint`` (SHA-256 of the key, 16 hex digits) may be logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Literal

import numpy as np
import torch

KEY_ENV = "RECONLAB_XOR_KEY"  # hex key; overrides the seed-derived one, never logged


def derive(seed: int, what: str) -> bytes:
    """16 bytes derived from a seed: the paper's "random but fixed" key and IV, reproducibly."""
    return hashlib.sha256(f"reconlab/xor_aes/{what}/{seed}".encode()).digest()[:16]


def parse_hex(text: str, name: str) -> bytes:
    from reconlab.errors import ConfigError

    try:
        b = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError("not a hex string", key=name, value="<hidden>") from None
    if len(b) != 16:
        raise ConfigError(f"need 16 bytes (32 hex digits) for AES-128, got {len(b)}", key=name, value="<hidden>")
    return b


@dataclasses.dataclass(frozen=True, repr=False)
class XorAES:
    """The forward operator for one key/IV; ``repr`` shows the fingerprint only."""

    key: bytes
    iv: bytes
    mode: Literal["ctr", "cbc"] = "ctr"

    def __post_init__(self):
        if len(self.key) != 16 or len(self.iv) != 16:
            raise ValueError("AES-128 needs a 16-byte key and a 16-byte IV")
        if self.mode not in ("ctr", "cbc"):
            raise ValueError(f"unknown mode {self.mode!r} (known: ctr, cbc)")

    @classmethod
    def from_seed(cls, seed: int, mode: str = "ctr", key_hex: str | None = None) -> "XorAES":
        key_hex = key_hex or os.environ.get(KEY_ENV)
        key = parse_hex(key_hex, KEY_ENV) if key_hex else derive(seed, "key")
        return cls(key, derive(seed, "iv"), mode)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"XorAES(mode={self.mode!r}, key_sha256={self.fingerprint})"

    def _cipher(self):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        m = modes.CTR(self.iv) if self.mode == "ctr" else modes.CBC(self.iv)
        return Cipher(algorithms.AES(self.key), m)

    # ---- reference path: per-image calls into `cryptography`
    def encrypt_bytes(self, plain: bytes) -> bytes:
        if self.mode == "cbc" and len(plain) % 16:
            raise ValueError(f"CBC needs a multiple of 16 bytes, got {len(plain)}")
        enc = self._cipher().encryptor()
        return enc.update(plain) + enc.finalize()

    def decrypt_bytes(self, cipher: bytes) -> bytes:
        dec = self._cipher().decryptor()
        return dec.update(cipher) + dec.finalize()

    def keystream(self, h: int, w: int) -> torch.Tensor:
        """CTR keystream for one image as uint8 (h, w, 12): the encryption of zeros."""
        if self.mode != "ctr":
            raise ValueError("only CTR mode has a position keystream")
        ks = self.encrypt_bytes(bytes(h * w * 12))
        return torch.frombuffer(bytearray(ks), dtype=torch.uint8).reshape(h, w, 12)

    def encrypt_reference(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> uint8 cipher bytes (N, H, W, 12), one `cryptography` call per image."""
        hwc = to_hwc_bytes(x).cpu().numpy()
        out = np.empty_like(hwc)
        for i in range(len(hwc)):
            out[i] = np.frombuffer(self.encrypt_bytes(hwc[i].tobytes()), np.uint8).reshape(hwc.shape[1:])
        return torch.from_numpy(out)

    # ---- torch path
    def encrypt(self, x: torch.Tensor, noise: float = 0.0, generator: torch.Generator | None = None,
                keystream: torch.Tensor | None = None) -> torch.Tensor:
        """Cipherimages (N, 12, H, W) in [0, 1], plus N(0, noise^2) if ``noise`` > 0.
        CTR runs as torch ops on ``x``'s device; pass ``keystream`` to reuse one."""
        if self.mode == "ctr":
            ks = keystream if keystream is not None else self.keystream(x.shape[-2], x.shape[-1])
            c = to_hwc_bytes(x) ^ ks.to(x.device)
        else:
            c = self.encrypt_reference(x).to(x.device)
        return bytes_to_image(c, noise, generator)

    def decrypt(self, c: torch.Tensor, keystream: torch.Tensor | None = None) -> torch.Tensor:
        """Decryption with the key: round each cipher value to the nearest byte,
        decrypt, and return the float32 images as they come out (may hold
        inf/NaN when noise flipped an exponent bit; see :func:`clamp_finite`)."""
        b = image_to_bytes(c)
        if self.mode == "ctr":
            ks = keystream if keystream is not None else self.keystream(c.shape[-2], c.shape[-1])
            plain = b ^ ks.to(b.device)
        else:
            bn = b.cpu().numpy()
            plain = torch.from_numpy(np.stack([
                np.frombuffer(self.decrypt_bytes(bi.tobytes()), np.uint8).reshape(bi.shape) for bi in bn]))
        return from_hwc_bytes(plain.to(c.device))


def to_hwc_bytes(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float32 -> (N, H, W, 12) uint8: the image's raw little-endian bytes."""
    if x.dtype != torch.float32 or x.dim() != 4:
        raise ValueError(f"need float32 (N, C, H, W) images, got {x.dtype} {tuple(x.shape)}")
    hwc = x.permute(0, 2, 3, 1).contiguous()
    b = hwc.view(torch.uint8)
    if not _LITTLE_ENDIAN:  # the byte layout is the little-endian one everywhere
        b = b.reshape(*hwc.shape, 4).flip(-1).reshape(b.shape)
    return b


def from_hwc_bytes(b: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_hwc_bytes`."""
    b = b.contiguous()
    if not _LITTLE_ENDIAN:
        b = b.reshape(*b.shape[:-1], -1, 4).flip(-1).reshape(b.shape).contiguous()
    return b.view(torch.float32).permute(0, 3, 1, 2).contiguous()


def bytes_to_image(b: torch.Tensor, noise: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, H, W, 12) uint8 -> (N, 12, H, W) float32 in [0, 1], optionally noisy."""
    c = b.permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    if noise > 0:
        dev = generator.device if generator is not None else c.device
        c = c + noise * torch.randn(c.shape, generator=generator, device=dev).to(c.device)
    return c


def image_to_bytes(c: torch.Tensor) -> torch.Tensor:
    """(N, 12, H, W) -> (N, H, W, 12) uint8, rounding to the nearest byte."""
    return (c * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def clamp_finite(x: torch.Tensor) -> torch.Tensor:
    """Map a decryption onto the image range: NaN -> 0, +-inf and huge values -> [0, 1]."""
    return torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)


_LITTLE_ENDIAN = np.little_endian
