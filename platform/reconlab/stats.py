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
