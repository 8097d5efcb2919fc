"""Confidence intervals and paired tests against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seesay.eval.stats import mcnemar_exact, paired_bootstrap, paired_difference, wilson_interval


def test_wilson_interval_hand_computed():
    # k=8, n=10, z=1.96: centre (0.8 + 0.19208) / 1.38416, spread 1.96 * sqrt(0.016 + 0.0096040) / 1.38416
    low, high = wilson_interval(8, 10)
    z = 1.959963984540054
    spread = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400)
    assert low == pytest.approx((0.8 + z * z / 20 - spread) / (1 + z * z / 10))
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)  # the textbook values
    assert wilson_interval(0, 5)[0] == pytest.approx(0.0, abs=1e-12) and wilson_interval(5, 5)[
        1
    ] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 0)
    with pytest.raises(ValueError):
        wilson_interval(6, 5)


def test_mcnemar_exact_hand_computed():
    a = [1, 0, 0, 0, 0, 0, 1, 1]  # a right only on question 0; b right only on 1..5
    b = [0, 1, 1, 1, 1, 1, 1, 1]
    assert mcnemar_exact(a, b) == pytest.approx(2 * (1 + 6) / 64)  # n=6 discordant, min=1: 0.21875
    assert mcnemar_exact([1, 1, 0], [1, 1, 0]) == 1.0  # no discordant pair
    assert mcnemar_exact([0] * 10, [1] * 10) == pytest.approx(2 / 1024)
    with pytest.raises(ValueError):
        mcnemar_exact([0.5, 1], [1, 1])


def test_paired_bootstrap_equals_a_direct_loop():
    rng = np.random.default_rng(3)
    a = (rng.random(50) < 0.6).astype(float)
    b = (rng.random(50) < 0.7).astype(float)
    diff, low, high = paired_bootstrap(a, b, n_boot=500, seed=11)
    draws = np.random.default_rng(11).integers(0, 50, size=(500, 50))
    means = [float((b[i] - a[i]).mean()) for i in draws]
    assert diff == pytest.approx(float((b - a).mean()))
    assert (low, high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert low <= diff <= high
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)  # identical methods: a zero-width interval
    assert paired_bootstrap(a, b, seed=11, n_boot=500) == (diff, low, high)  # fixed seed: reproducible


def test_paired_difference_reports_p_only_for_binary_scores():
    a, b = [1, 0, 1, 0], [1, 1, 1, 1]
    result = paired_difference(a, b, n_boot=200)
    assert result.diff == 0.5 and result.n == 4 and result.p_value == pytest.approx(0.5)
    assert paired_difference([0.3, 1.0], [0.6, 1.0], n_boot=50).p_value is None
    with pytest.raises(ValueError):
        paired_difference([1, 0], [1])


def test_mean_interval_wilson_for_binary_bootstrap_otherwise():
    from seesay.eval.stats import mean_interval, wilson_interval

    assert mean_interval([1, 0, 1, 1]) == (0.75, *wilson_interval(3, 4))
    soft = [0.0, 0.3, 1.0, 0.6, 1.0, 0.3]
    mean, low, high = mean_interval(soft, n_boot=2000, seed=1)
    assert mean == pytest.approx(sum(soft) / 6)
    assert 0.0 <= low < mean < high <= 1.0
    assert mean_interval(soft, n_boot=2000, seed=1) == (mean, low, high)  # fixed seed, same interval
    assert mean_interval([0.5] * 5)[1:] == (0.5, 0.5)  # no spread, no width
    with pytest.raises(ValueError, match="non-empty"):
        mean_interval([])
