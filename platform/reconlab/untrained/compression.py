"""Compression baselines for the deep decoder's concise representations.

Heckel & Hand compare a deep decoder with N weights to wavelet thresholding
that keeps N / c coefficients per colour channel, at the compression factor
pixels x channels / N (reinhardh/supplement_deep_decoder ``compression.ipynb``:
``comparison``, ``rep_error_wavelet``; ``include/wavelet.py``). JPEG at a byte
budget is a further, practical baseline (one byte is not one float weight:
report both).

Images are tensors (c, H, W) in [0, 1]; c = 1 or 3.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import torch


def compression_factor(num_weights: int, image_shape: tuple[int, ...]) -> float:
    """Pixels x channels over weights: ``np.prod(img_np.shape) / nparms`` in
    ``compression.ipynb:comparison`` (3 x 512 x 512 with k = 64: 786,432 / 25,536 = 30.8)."""
    return float(np.prod(image_shape)) / num_weights


def _levels(shape: tuple[int, int], wavelet, level: int | None) -> int:
    import pywt

    if level is not None:
        return level
    # include/wavelet.py:_wavelet_threshold: the maximum level minus 3 ("skip coarsest scales"), at least 1
    return max(min(pywt.dwt_max_level(s, wavelet.dec_len) for s in shape) - 3, 1)


def _threshold_channel(x: np.ndarray, n_coeffs: int, wavelet, level: int, mode: str) -> np.ndarray:
    """Keep the approximation band and the n - |approximation| detail
    coefficients of largest magnitude (exactly that many, ties broken by
    position); zero the rest."""
    import pywt

    coeffs = pywt.wavedec2(x, wavelet, mode=mode, level=level)
    arr, slices = pywt.coeffs_to_array(coeffs)  # one array; slices[0] is the approximation
    approx = np.zeros(arr.shape, bool)
    approx[slices[0]] = True
    n_approx = int(approx.sum())
    if n_coeffs < n_approx:
        raise ValueError(f"n_coeffs={n_coeffs} is below the {n_approx} approximation coefficients that are always "
                         f"kept (use a larger level)")
    detail = np.where(approx, -1.0, np.abs(arr)).ravel()  # approximation entries sort last, never chosen
    keep = approx.ravel().copy()
    k = min(n_coeffs - n_approx, detail.size - n_approx)
    if k > 0:
        keep[np.argsort(-detail, kind="stable")[:k]] = True
    arr = np.where(keep.reshape(arr.shape), arr, 0.0)
    out = pywt.waverec2(pywt.array_to_coeffs(arr, slices, output_format="wavedec2"), wavelet, mode=mode)
    return out[: x.shape[0], : x.shape[1]]


def wavelet_threshold(image: torch.Tensor, n_coeffs: int, wavelet: str = "db1", level: int | None = None,
                      ycbcr: bool = True, mode: str = "periodization") -> torch.Tensor:
    """Hard wavelet thresholding keeping ``n_coeffs`` coefficients in each
    channel (the paper's baseline keeps N / c per channel for N weights),
    clipped to [0, 1].

    Defaults follow ``include/wavelet.py``: Haar (``db1``), ``level`` = maximum
    level - 3, the approximation band always kept and counted, one threshold
    over all detail bands, colour images thresholded in YCbCr ("Wavelet
    compression performs better in YCbCr space", ``compression.ipynb``; it
    rescales each YCbCr channel to [0, 1], which changes no choice of
    coefficients, and clips the channel there, which is kept).
    ``mode='periodization'`` makes the transform orthogonal with exactly H x W
    coefficients per channel for any wavelet, so "n coefficients" is a true
    count (the reference's default 'symmetric' mode adds boundary
    coefficients for wavelets longer than Haar)."""
    import pywt

    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be (c, H, W) with c in (1, 3), got {tuple(image.shape)}")
    if n_coeffs < 1:
        raise ValueError(f"n_coeffs must be >= 1, got {n_coeffs}")
    w = pywt.Wavelet(wavelet)
    x = image.detach().cpu().double().numpy()  # (c, H, W)
    colour = ycbcr and x.shape[0] == 3
    if colour:
        from skimage.color import rgb2ycbcr

        x = rgb2ycbcr(x.transpose(1, 2, 0)).transpose(2, 0, 1)
    lv = _levels(x.shape[1:], w, level)
    out = np.stack([_threshold_channel(ch, n_coeffs, w, lv, mode) for ch in x])
    if colour:  # denoise_wavelet clips each YCbCr channel to its own range before converting back
        out = np.clip(out, x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True))
        from skimage.color import ycbcr2rgb

        out = ycbcr2rgb(out.transpose(1, 2, 0)).transpose(2, 0, 1)
    return torch.from_numpy(np.clip(out, 0.0, 1.0)).to(image.dtype)


@dataclasses.dataclass
class JpegResult:
    image: torch.Tensor  # (c, H, W) in [0, 1], decoded
    n_bytes: int  # size of the JPEG file
    quality: int  # Pillow quality that produced it


def _encode(arr: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_at_bytes(image: torch.Tensor, n_bytes: int, q_min: int = 1, q_max: int = 95) -> JpegResult:
    """The highest Pillow JPEG quality in [q_min, q_max] whose file is at
    most ``n_bytes`` bytes (bisection; JPEG size grows with quality, and the
    result is checked against the budget), decoded back to [0, 1]. Pillow's
    defaults otherwise (4:2:0 chroma subsampling, standard tables). Raises if
    even ``q_min`` does not fit."""
    from PIL import Image

    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be (c, H, W) with c in (1, 3), got {tuple(image.shape)}")
    x = image.detach().cpu().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, c)
    arr = x[..., 0] if x.shape[2] == 1 else x
    data = _encode(arr, q_min)
    if len(data) > n_bytes:
        raise ValueError(f"even JPEG quality {q_min} needs {len(data)} bytes > n_bytes={n_bytes}")
    lo, best = q_min, data  # invariant: quality lo fits
    hi = q_max + 1  # smallest quality known not to fit (or past the range)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        d = _encode(arr, mid)
        if len(d) <= n_bytes:
            lo, best = mid, d
        else:
            hi = mid
    dec = np.asarray(Image.open(io.BytesIO(best)).convert("L" if arr.ndim == 2 else "RGB"), dtype=np.float32) / 255.0
    dec = dec[None] if dec.ndim == 2 else dec.transpose(2, 0, 1)
    return JpegResult(image=torch.from_numpy(np.ascontiguousarray(dec)), n_bytes=len(best), quality=lo)
