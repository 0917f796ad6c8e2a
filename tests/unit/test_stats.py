"""Paired ratios, their spread, and the verdict on a difference."""

from __future__ import annotations

import pytest

from testbed.stats import NOISE, REAL, SINGLE, Ratio, paired_ratio


def test_paired_ratio_median_and_range() -> None:
    r = paired_ratio([450.0, 440.0, 460.0], [900.0, 910.0, 905.0])
    assert r.n == 3
    assert r.median == pytest.approx(450 / 900)
    assert r.low == pytest.approx(440 / 910)
    assert r.high == pytest.approx(460 / 905)
    assert r.spread == pytest.approx((460 / 905 - 440 / 910) / 2)


def test_pairs_cancel_a_drift_both_nodes_saw() -> None:
    # The host slowed down over the run: each node lost 20 %, but every pair ran side by side.
    r = paired_ratio([500.0, 450.0, 400.0], [1000.0, 900.0, 800.0])
    assert r.median == pytest.approx(0.5) and r.spread == pytest.approx(0.0)
    assert r.verdict() == REAL


def test_a_difference_smaller_than_the_spread_is_not_called_real() -> None:
    noisy = paired_ratio([1020.0, 950.0, 1060.0], [1000.0, 1000.0, 1000.0])  # +2 % ± 5.5 %
    assert noisy.verdict() == NOISE
    clear = paired_ratio([1100.0, 1090.0, 1110.0], [1000.0, 1000.0, 1000.0])  # +10 % ± 1 %
    assert clear.verdict() == REAL


def test_one_run_has_no_spread_and_no_verdict() -> None:
    r = paired_ratio([450.0], [900.0])
    assert r.spread is None and r.verdict() == SINGLE


def test_verdict_against_an_expected_ratio() -> None:
    r = Ratio(median=0.49, low=0.48, high=0.50, n=3)
    assert r.verdict(against=0.5) == NOISE and r.verdict() == REAL


def test_no_usable_pair_is_an_error() -> None:
    with pytest.raises(ValueError, match="no repetition"):
        paired_ratio([1.0], [0.0])
