"""Binomial intervals and rank correlations, from :mod:`scipy.stats`.

Thin wrappers that fix the conventions progression reports (NaN, not an exception, where the
quantity is undefined), so every caller gets the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = ["wilson_interval", "spearman"]


def wilson_interval(k, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n``.

    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``. ``k`` may be a float
    holding a whole number (a sum of 0/1 rejections); NaNs when ``n == 0``.

    Examples
    --------
    >>> lo, hi = wilson_interval(8, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.4902, 0.9433)
    """
    n = int(n)
    if n == 0:
        return float("nan"), float("nan")
    k_int = int(round(float(k)))
    if abs(float(k) - k_int) > 1e-9 or not 0 <= k_int <= n:
        raise ValueError(f"wilson_interval: expected a whole number of successes in [0, {n}], "
                         f"found {k!r}")
    ci = stats.binomtest(k_int, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def spearman(x, y, *, min_pairs: int = 5) -> float:
    """Spearman rank correlation over the pairs where both values are finite.

    ``scipy.stats.spearmanr`` (average ranks for ties); NaN with fewer than ``min_pairs``
    pairs or when either variable is constant (where scipy would warn and return NaN).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < min_pairs:
        return math.nan
    x, y = x[ok], y[ok]
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)
