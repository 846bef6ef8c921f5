"""reconlab.stats: the paired t-interval behind every HOLDS / DOES NOT HOLD /
UNDECIDED the jobs print."""

import math

import pytest

from reconlab.stats import paired_interval


def test_the_interval_is_scipys_paired_t_interval():
    from scipy import stats

    a, b = [29.1, 28.4, 30.2, 27.9, 29.5], [28.0, 28.5, 29.1, 27.0, 28.8]
    ci = paired_interval(a, b, confidence=0.9)
    want = stats.ttest_rel(a, b).confidence_interval(confidence_level=0.9)
    assert (ci.low, ci.high) == pytest.approx((want.low, want.high)) and ci.n == 5
    assert ci.mean == pytest.approx(sum(a) / 5 - sum(b) / 5)


@pytest.mark.parametrize("a, b, verdict", [([2, 3, 2.5, 3.1], [0, 0, 0, 0], "HOLDS"),
                                           ([-2, -3, -2.5, -3.1], [0, 0, 0, 0], "DOES NOT HOLD"),
                                           ([1, -1, 2, -2], [0, 0, 0, 0], "UNDECIDED"),
                                           ([5.0], [0.0], "UNDECIDED")])  # one pair: no interval
def test_the_verdict_comes_from_the_interval(a, b, verdict):
    assert paired_interval(a, b).verdict() == verdict


def test_a_margin_moves_the_bar_and_bad_input_is_refused():
    ci = paired_interval([2, 3, 2.5, 3.1], [0, 0, 0, 0])
    assert ci.verdict(margin=1.0) == "HOLDS" and ci.verdict(margin=5.0) == "DOES NOT HOLD"
    assert math.isnan(paired_interval([], []).mean)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_interval([1, 2], [1])
