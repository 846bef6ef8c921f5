"""Paired comparisons with intervals: the verdicts the jobs print.

A claim "A beats B" is judged on paired measurements (the same images,
seeds and budgets), from the Student-t confidence interval of the mean
difference d_i = a_i - b_i:

    mean(d) +- t_{(1+c)/2, n-1} * sd(d) / sqrt(n)

HOLDS when the whole interval is above ``margin``, DOES NOT HOLD when it is
wholly below, UNDECIDED when it straddles ``margin`` (or n < 2).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class PairedInterval:
    mean: float
    low: float
    high: float
    n: int
    confidence: float

    def verdict(self, margin: float = 0.0) -> str:
        if self.low > margin:
            return "HOLDS"
        if self.high < margin:
            return "DOES NOT HOLD"
        return "UNDECIDED"

    def __str__(self) -> str:
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}] ({self.confidence:.0%} CI, n = {self.n})"


def paired_interval(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedInterval:
    """The t-interval of mean(a - b); a[i] and b[i] measured on the same item."""
    from scipy import stats

    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    if n == 0:
        return PairedInterval(math.nan, -math.inf, math.inf, 0, confidence)
    mean = sum(d) / n
    if n < 2:
        return PairedInterval(mean, -math.inf, math.inf, n, confidence)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return PairedInterval(mean, mean - half, mean + half, n, confidence)


def paired_bootstrap(d, *, confidence: float = 0.95, n_boot: int = 4000, seed: int = 0) -> PairedInterval:
    """Percentile interval of the mean paired difference ``d`` (groups x
    items: e.g. classifier seeds x images, each entry a_gi - b_gi measured on
    the same image with classifiers of the same seed), by a two-level
    bootstrap: groups resampled with replacement, then items with
    replacement (the same items for every group, since the items are
    shared). Both sources of variation, which classifiers were trained and
    which images were drawn, widen the interval. ``n`` counts the entries."""
    import numpy as np

    d = np.asarray(d, dtype=float)
    if d.ndim != 2:
        raise ValueError(f"d must be 2-D (groups x items), got shape {d.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    g, n = d.shape
    if g * n == 0:
        return PairedInterval(math.nan, -math.inf, math.inf, 0, confidence)
    mean = float(d.mean())
    if g * n < 2:
        return PairedInterval(mean, -math.inf, math.inf, g * n, confidence)
    rng = np.random.default_rng(seed)
    gi = rng.integers(0, g, size=(n_boot, g))
    ii = rng.integers(0, n, size=(n_boot, n))
    # mean over the resampled groups and items: the per-group means of resampled items, averaged
    stats = np.empty(n_boot)
    for b in range(n_boot):
        stats[b] = d[gi[b]][:, ii[b]].mean()
    lo, hi = np.quantile(stats, [(1 - confidence) / 2, (1 + confidence) / 2])
    return PairedInterval(mean, float(lo), float(hi), g * n, confidence)
