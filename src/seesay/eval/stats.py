"""Uncertainty of accuracies and of paired differences between methods (same questions, two methods).

* ``wilson_interval(k, n)``: the Wilson score interval of a proportion k / n,
  ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``, z = 1.96 for 95%.
* ``paired_bootstrap(a, b)``: mean(b - a) over the same questions and its percentile bootstrap interval:
  resample question indices with replacement (``n_boot`` times, a fixed seed), take the 2.5% and 97.5%
  quantiles of the resampled mean differences.
* ``mean_interval(scores)``: the mean of per-question scores with its 95% interval: Wilson's for 0/1
  scores, else the percentile bootstrap of the mean (``n_boot`` resamples, a fixed seed).
* ``mcnemar_exact(a, b)``: the exact two-sided McNemar test on paired 0/1 outcomes: with n01 questions
  only ``b`` gets right and n10 only ``a`` does, ``p = min(1, 2 * P(X <= min(n01, n10)))``,
  X ~ Binomial(n01 + n10, 1/2); p = 1 when no question is discordant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n`` (default 95%)."""
    if n <= 0:
        raise ValueError(f"wilson_interval needs n >= 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    return (centre - spread) / denom, (centre + spread) / denom


def mean_interval(
    scores: Sequence[float], n_boot: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high) of per-question ``scores``: Wilson for 0/1 scores, else percentile bootstrap."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"mean_interval needs a non-empty 1-D sequence, got shape {x.shape}")
    if np.isin(x, (0, 1)).all() and level == 0.95:
        return (float(x.mean()), *wilson_interval(int(x.sum()), int(x.size)))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(x.mean()), float(low), float(high)


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"paired scores must be two 1-D sequences of one length, got {x.shape} and {y.shape}"
        )
    if x.size == 0:
        raise ValueError("paired scores are empty")
    return x, y


@dataclass(frozen=True)
class PairedDifference:
    """mean(b) - mean(a) with its 95% paired-bootstrap interval and the exact McNemar p (0/1 scores)."""

    diff: float
    low: float
    high: float
    p_value: float | None  # None when the scores are not all 0/1 (McNemar needs binary outcomes)
    n: int


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], n_boot: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean(b - a), low, high): the percentile bootstrap interval over resampled questions."""
    x, y = _paired(a, b)
    d = y - x
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))
    means = d[idx].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(d.mean()), float(low), float(high)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided McNemar p-value of paired 0/1 outcomes ``a`` and ``b``."""
    x, y = _paired(a, b)
    if not (np.isin(x, (0, 1)).all() and np.isin(y, (0, 1)).all()):
        raise ValueError("McNemar's test needs 0/1 outcomes")
    only_b = int(((x == 0) & (y == 1)).sum())
    only_a = int(((x == 1) & (y == 0)).sum())
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference(
    a: Sequence[float], b: Sequence[float], n_boot: int = 10_000, seed: int = 0
) -> PairedDifference:
    """``b`` against ``a`` on the same questions: difference, bootstrap CI and McNemar p."""
    x, y = _paired(a, b)
    diff, low, high = paired_bootstrap(x, y, n_boot=n_boot, seed=seed)
    binary = np.isin(x, (0, 1)).all() and np.isin(y, (0, 1)).all()
    return PairedDifference(diff, low, high, mcnemar_exact(x, y) if binary else None, int(x.size))
